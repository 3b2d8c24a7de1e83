//! Vectorized loops as GCC vector-extension code, and the element accesses of register tiles.
//!
//! A vectorized loop's lanes are cut into groups of 16, 8 or 4 (the widest that fit, never
//! wider than [`EmitOptions::lanes`](super::EmitOptions::lanes)); the lanes left over run as
//! scalar code. Within a group each value is uniform (it does not depend on the loop variable:
//! a scalar, which C broadcasts where it meets a vector) or a vector. Accesses whose element
//! offset moves by exactly one per lane are one unaligned vector load or store, loads whose
//! offset moves by two (a stride-2 convolution's input) two loads and a shuffle; everything else
//! that depends on the lane (gathers, scatters, selects and guards whose condition differs
//! between lanes) is computed lane by lane, so each lane evaluates only what the interpreter
//! would evaluate for it and a masked-off lane never loads out of bounds.

use super::analysis::{contains_loop_or_alloc, offset_coefficient};
use super::index::Lin;
use super::prelude::{vector_type, vector_type_of, WIDTHS};
use super::{Binding, EmitError, Emitter, Result, Storage, VECTOR_UNROLL_LIMIT};
use looptune_ir::{
    BinaryOp, BufferId, Cond, DType, IndexExpr, Load, Loop, Stmt, UnaryOp, ValueExpr, VarId,
};

/// The lanes being printed: `var` takes the values `base, base + 1, ..., base + width - 1`.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub(super) var: VarId,
    pub(super) base: Binding,
    pub(super) width: usize,
}

impl Group {
    fn lane(&self, lane: usize) -> Binding {
        self.base.plus(lane as i64)
    }
}

/// A value inside a group.
pub(super) enum Lanes {
    /// The same scalar (a `float` expression) in every lane.
    Uniform(String),
    /// A vector of the group's width.
    Vector(String),
}

impl Emitter<'_> {
    /// Prints a vectorized loop.
    pub(super) fn vectorized_loop(&mut self, lp: &Loop) -> Result<()> {
        if contains_loop_or_alloc(&lp.body) {
            // Outside the IR's contract for vectorized loops; iterations in order are correct.
            if lp.extent <= VECTOR_UNROLL_LIMIT {
                return (0..lp.extent).try_for_each(|lane| {
                    self.with_var(lp.var, Binding::constant(lane), |this| this.stmt(&lp.body))
                });
            }
            return self.serial_loop(lp.var, lp.extent, &lp.body);
        }
        let widths: Vec<usize> = WIDTHS
            .into_iter()
            .filter(|width| *width <= self.options.lanes)
            .collect();
        let mut start = 0;
        if lp.extent > VECTOR_UNROLL_LIMIT {
            let width = widths[0];
            let full = lp.extent / width as i64 * width as i64;
            let base = self.counter(lp.var, (0, full - width as i64));
            let name = self.names.vars[lp.var.index()].clone();
            self.line(&format!(
                "for (lt_i64 {name} = 0; {name} < {full}; {name} += {width}) {{"
            ));
            self.f.indent += 1;
            let group = Group {
                var: lp.var,
                base,
                width,
            };
            self.vector_stmt(&lp.body, &group)?;
            self.f.indent -= 1;
            self.line("}");
            start = full;
        }
        while start < lp.extent {
            let rest = (lp.extent - start) as usize;
            match widths.iter().find(|width| **width <= rest) {
                Some(&width) => {
                    let group = Group {
                        var: lp.var,
                        base: Binding::constant(start),
                        width,
                    };
                    self.vector_stmt(&lp.body, &group)?;
                    start += width as i64;
                }
                None => {
                    self.with_var(lp.var, Binding::constant(start), |this| this.stmt(&lp.body))?;
                    start += 1;
                }
            }
        }
        Ok(())
    }

    /// Runs `emit` once per lane of `group` with the variable bound to that lane.
    pub(super) fn per_lane<T>(
        &mut self,
        group: &Group,
        mut emit: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        (0..group.width)
            .map(|lane| self.with_var(group.var, group.lane(lane), &mut emit))
            .collect()
    }

    fn vector_stmt(&mut self, stmt: &Stmt, group: &Group) -> Result<()> {
        match stmt {
            Stmt::Seq(stmts) => stmts
                .iter()
                .try_for_each(|stmt| self.vector_stmt(stmt, group)),
            Stmt::If { cond, then } if !cond.uses_var(group.var) => match self.known_cond(cond)? {
                Some(true) => self.vector_stmt(then, group),
                Some(false) => Ok(()),
                None => {
                    let cond = self.cond(cond)?;
                    self.line(&format!("if {} {{", super::parenthesised(&cond)));
                    self.f.indent += 1;
                    self.vector_stmt(then, group)?;
                    self.f.indent -= 1;
                    self.line("}");
                    Ok(())
                }
            },
            Stmt::If { cond, then } => match self.known_in_every_lane(cond, group)? {
                Some(true) => self.vector_stmt(then, group),
                Some(false) => Ok(()),
                // A guard that differs between lanes: one lane at a time.
                None => self.per_lane(group, |this| this.stmt(stmt)).map(|_| ()),
            },
            Stmt::Store {
                buffer,
                indices,
                value,
            } if self.nest.buffer(*buffer).dtype == DType::F32 && self.all_f32(value) => {
                self.vector_store(*buffer, indices, value, group)
            }
            Stmt::Store {
                buffer,
                indices,
                value,
            } if self.nest.buffer(*buffer).dtype == DType::I32 => {
                let computed = self.int_lanes(value, group)?;
                let vector = self.as_int_vector(computed, group.width);
                self.store_lanes(*buffer, indices, &vector, DType::I32, group)
            }
            Stmt::Store {
                buffer,
                indices,
                value,
            } if self.narrowing_store(*buffer, indices, value, group)? => Ok(()),
            // Other integer values: lane by lane.
            _ => self.per_lane(group, |this| this.stmt(stmt)).map(|_| ()),
        }
    }

    /// Whether every value in `expr` (conditions included) is an `f32`, the type the vector
    /// code computes in.
    fn all_f32(&self, expr: &ValueExpr) -> bool {
        let mut all = true;
        expr.walk(&mut |value| all &= self.dtype(value) == DType::F32);
        all
    }

    /// The value of a lane-dependent condition when the bindings decide it the same way in
    /// every lane of the group (a split's tail guard in a group wholly inside or outside it).
    fn known_in_every_lane(&mut self, cond: &Cond, group: &Group) -> Result<Option<bool>> {
        let lanes = self.per_lane(group, |this| this.known_cond(cond))?;
        Ok(match lanes[0] {
            Some(holds) if lanes.iter().all(|lane| *lane == Some(holds)) => Some(holds),
            _ => None,
        })
    }

    /// The element offset of an access in each lane.
    pub(super) fn lane_offsets(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        group: &Group,
    ) -> Result<Vec<Lin>> {
        self.per_lane(group, |this| this.offset(buffer, indices))
    }

    fn as_vector(&self, value: Lanes, width: usize) -> String {
        match value {
            Lanes::Uniform(scalar) => format!("lt_splat{width}({scalar})"),
            Lanes::Vector(vector) => vector,
        }
    }

    fn vector_store(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        value: &ValueExpr,
        group: &Group,
    ) -> Result<()> {
        let computed = self.lanes(value, group)?;
        let vector = self.as_vector(computed, group.width);
        self.store_lanes(buffer, indices, &vector, DType::F32, group)
    }

    /// Stores `vector`, the group's lanes of `dtype` (`f32` or `i32`), to `buffer[indices]`:
    /// one vector store where the lanes are contiguous, a tile variable, or lane by lane.
    fn store_lanes(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        vector: &str,
        dtype: DType,
        group: &Group,
    ) -> Result<()> {
        let width = group.width;
        let suffix = if dtype == DType::F32 { "" } else { "i" };
        match self.storage(buffer)? {
            Storage::Pointer { name } => {
                if offset_coefficient(self.nest, buffer, indices, group.var) == Some(1) {
                    let offset = self.with_var(group.var, group.base.clone(), |this| {
                        this.offset(buffer, indices)
                    })?;
                    let pointer = self.vector_pointer(&name, buffer, &offset, width);
                    self.line(&format!("lt_store{suffix}{width}({pointer}, {vector});"));
                    return Ok(());
                }
                // A scatter: lanes are stored in order, so lanes that hit the same element
                // leave the last lane's value, as a serial loop would.
                let offsets = self.lane_offsets(buffer, indices, group)?;
                let targets = offsets
                    .iter()
                    .map(|offset| format!("{name}[{}]", offset.to_c()))
                    .collect();
                self.scatter(vector, dtype, width, targets);
            }
            Storage::Tile(tile) => {
                let offsets = self.lane_offsets(buffer, indices, group)?;
                let elements = self.tile_elements(&offsets)?;
                if let Some(slot) = self.tiles[tile].whole(&elements) {
                    self.line(&format!("{slot} = {vector};"));
                    return Ok(());
                }
                let targets = elements
                    .iter()
                    .map(|element| self.tile_lvalue(tile, *element))
                    .collect::<Result<Vec<_>>>()?;
                self.scatter(vector, dtype, width, targets);
            }
            Storage::Recording(recording) => {
                let offsets = self.lane_offsets(buffer, indices, group)?;
                self.recordings[recording].record(&offsets);
            }
        }
        Ok(())
    }

    /// Stores the lanes of `vector` to `targets`, in lane order.
    fn scatter(&mut self, vector: &str, dtype: DType, width: usize, targets: Vec<String>) {
        let temp = self.temp_name("v");
        self.line("{");
        self.f.indent += 1;
        self.line(&format!(
            "const {} {temp} = {vector};",
            vector_type_of(dtype, width)
        ));
        for (lane, target) in targets.into_iter().enumerate() {
            self.line(&format!("{target} = {temp}[{lane}];"));
        }
        self.f.indent -= 1;
        self.line("}");
    }

    /// A vector of the group's lanes computed one by one.
    fn assemble(
        &mut self,
        group: &Group,
        lane: impl FnMut(&mut Self) -> Result<String>,
    ) -> Result<Lanes> {
        let lanes = self.per_lane(group, lane)?;
        Ok(Lanes::Vector(format!(
            "(({}){{{}}})",
            vector_type(group.width),
            lanes.join(", ")
        )))
    }

    fn lanes(&mut self, expr: &ValueExpr, group: &Group) -> Result<Lanes> {
        let width = group.width;
        if !expr.uses_var(group.var) {
            return Ok(Lanes::Uniform(self.value(expr)?));
        }
        match expr {
            ValueExpr::Load(load) => self.vector_load(load, group),
            ValueExpr::Binary(op, a, b) => {
                let (a, b) = (self.lanes(a, group)?, self.lanes(b, group)?);
                if let (Lanes::Uniform(a), Lanes::Uniform(b)) = (&a, &b) {
                    return Ok(Lanes::Uniform(match op {
                        BinaryOp::Min => format!("lt_fmin({a}, {b})"),
                        BinaryOp::Max => format!("lt_fmax({a}, {b})"),
                        _ => format!("({a} {} {b})", op.symbol()),
                    }));
                }
                Ok(Lanes::Vector(match op {
                    BinaryOp::Min | BinaryOp::Max => {
                        let name = if *op == BinaryOp::Min { "min" } else { "max" };
                        let (a, b) = (self.as_vector(a, width), self.as_vector(b, width));
                        format!("lt_{name}{width}({a}, {b})")
                    }
                    // A scalar operand of a vector operation is broadcast by C itself.
                    _ => format!("({} {} {})", code(&a), op.symbol(), code(&b)),
                }))
            }
            ValueExpr::Unary(UnaryOp::Sqrt, _) => self.assemble(group, |this| this.value(expr)),
            ValueExpr::Unary(op, a) => Ok(match (self.lanes(a, group)?, op) {
                (Lanes::Uniform(a), _) => Lanes::Uniform(match op {
                    UnaryOp::Neg => format!("(-{a})"),
                    _ => format!("__builtin_fabsf({a})"),
                }),
                (Lanes::Vector(a), UnaryOp::Neg) => Lanes::Vector(format!("(-{a})")),
                (Lanes::Vector(a), _) => Lanes::Vector(format!("lt_abs{width}({a})")),
            }),
            ValueExpr::Fma(a, b, c) => {
                let (a, b) = (self.lanes(a, group)?, self.lanes(b, group)?);
                // The broadcast multiplicand first: `s * v + acc`, which compilers contract
                // into one FMA with the vector operand possibly from memory.
                let (a, b) = match (a, b) {
                    (Lanes::Vector(a), Lanes::Uniform(b)) => (Lanes::Uniform(b), Lanes::Vector(a)),
                    other => other,
                };
                let c = self.lanes(c, group)?;
                let text = format!("({} * {} + {})", code(&a), code(&b), code(&c));
                Ok(match (a, b, c) {
                    (Lanes::Uniform(_), Lanes::Uniform(_), Lanes::Uniform(_)) => {
                        Lanes::Uniform(text)
                    }
                    _ => Lanes::Vector(text),
                })
            }
            ValueExpr::Select(cond, a, b) if !cond.uses_var(group.var) => {
                match self.known_cond(cond)? {
                    Some(true) => self.lanes(a, group),
                    Some(false) => self.lanes(b, group),
                    None => {
                        // C's conditional operator evaluates only the chosen operand.
                        let cond = self.cond(cond)?;
                        let a = self.lanes(a, group)?;
                        let a = self.as_vector(a, width);
                        let b = self.lanes(b, group)?;
                        let b = self.as_vector(b, width);
                        Ok(Lanes::Vector(format!("({cond} ? {a} : {b})")))
                    }
                }
            }
            ValueExpr::Select(cond, a, b) => match self.known_in_every_lane(cond, group)? {
                Some(true) => self.lanes(a, group),
                Some(false) => self.lanes(b, group),
                None => self.assemble(group, |this| this.value(expr)),
            },
            ValueExpr::Cast(_, a) => self.lanes(a, group),
            // Selects whose condition differs between lanes, index conversions: lane by lane,
            // each lane evaluating only its chosen operand.
            _ => self.assemble(group, |this| this.value(expr)),
        }
    }

    fn vector_load(&mut self, load: &Load, group: &Group) -> Result<Lanes> {
        let width = group.width;
        match self.storage(load.buffer)? {
            Storage::Pointer { name } => {
                match offset_coefficient(self.nest, load.buffer, &load.indices, group.var) {
                    Some(1) => {
                        let offset = self.with_var(group.var, group.base.clone(), |this| {
                            this.offset(load.buffer, &load.indices)
                        })?;
                        let pointer = self.vector_pointer(&name, load.buffer, &offset, width);
                        Ok(Lanes::Vector(format!("lt_load{width}({pointer})")))
                    }
                    Some(0) => self
                        .with_var(group.var, group.base.clone(), |this| this.load_scalar(load))
                        .map(Lanes::Uniform),
                    // A stride-2 convolution's input along its output width.
                    Some(2) => {
                        let offset = self.with_var(group.var, group.base.clone(), |this| {
                            this.offset(load.buffer, &load.indices)
                        })?;
                        let pointer =
                            self.vector_pointer(&name, load.buffer, &offset, 2 * width - 1);
                        Ok(Lanes::Vector(format!("lt_stride2_{width}({pointer})")))
                    }
                    _ => self.assemble(group, |this| this.load_scalar(load)),
                }
            }
            Storage::Tile(tile) => {
                let offsets = self.lane_offsets(load.buffer, &load.indices, group)?;
                let elements = self.tile_elements(&offsets)?;
                if let Some(slot) = self.tiles[tile].whole(&elements) {
                    return Ok(Lanes::Vector(slot));
                }
                let lanes = elements
                    .iter()
                    .map(|element| self.tile_lvalue(tile, *element))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Lanes::Vector(format!(
                    "(({}){{{}}})",
                    vector_type(width),
                    lanes.join(", ")
                )))
            }
            Storage::Recording(recording) => {
                let offsets = self.lane_offsets(load.buffer, &load.indices, group)?;
                self.recordings[recording].record(&offsets);
                Ok(Lanes::Vector(format!("(({}){{0}})", vector_type(width))))
            }
        }
    }

    // ----- register tiles -----

    pub(super) fn tile_elements(&self, offsets: &[Lin]) -> Result<Vec<i64>> {
        offsets
            .iter()
            .map(|offset| {
                offset.as_const().ok_or_else(|| EmitError::Internal {
                    nest: self.nest.name.clone(),
                    message: format!("register tile indexed by `{}`", offset.to_c()),
                })
            })
            .collect()
    }

    /// The variable (or vector lane) holding one tile element.
    pub(super) fn tile_lvalue(&self, tile: usize, element: i64) -> Result<String> {
        self.tiles[tile]
            .element(element)
            .ok_or_else(|| EmitError::Internal {
                nest: self.nest.name.clone(),
                message: format!("register tile element {element} was not recorded"),
            })
    }

    /// Reads one element of a tile.
    pub(super) fn tile_read(&self, tile: usize, offset: &Lin) -> Result<String> {
        let element = self.tile_elements(std::slice::from_ref(offset))?[0];
        self.tile_lvalue(tile, element)
    }

    /// The lvalue of one element of a tile.
    pub(super) fn tile_element(&self, tile: usize, offset: &Lin) -> Result<String> {
        self.tile_read(tile, offset)
    }
}

/// The C code of a value in a group: a scalar or a vector expression.
fn code(value: &Lanes) -> &str {
    match value {
        Lanes::Uniform(text) | Lanes::Vector(text) => text,
    }
}

/// `name + offset` as pointer arithmetic (just `name` at offset 0).
impl Emitter<'_> {
    /// The address of a `width`-lane access at `offset` into `buffer`, checked when the nest is
    /// printed checked.
    pub(super) fn vector_pointer(
        &self,
        name: &str,
        buffer: BufferId,
        offset: &Lin,
        width: usize,
    ) -> String {
        if self.checked {
            format!("{name} + {}", self.access_offset(buffer, offset, width))
        } else {
            pointer_plus(name, offset)
        }
    }
}

fn pointer_plus(name: &str, offset: &Lin) -> String {
    match offset.as_const() {
        Some(0) => name.to_string(),
        _ => format!("{name} + {}", offset.to_c_operand()),
    }
}
