//! Vectorized loops as f32x4 code.
//!
//! The lanes of a vectorized loop are taken four at a time. Within a group, each value is either
//! uniform (it does not depend on the loop variable: a scalar, splatted where it meets a vector)
//! or a vector. Accesses whose element offset moves by exactly one element per lane become vector
//! loads and stores; everything else that depends on the lane (gathers, scatters, conversions,
//! selects and guards whose condition differs between lanes) is computed lane by lane, so every
//! loop the IR can express compiles, and the common ones compile to vector code. Lanes left over
//! after the last full group run as scalar code.

use super::analysis::{all_values_are, offset_coefficient, reads_memory};
use super::function::{access_flags, load_flags, FnGen, IVal, Storage};
use super::promote::VECTOR_UNROLL_LIMIT;
use cranelift_codegen::ir::{types, InstBuilder, Value};
use looptune_ir::{BufferId, DType, IndexExpr, Load, Loop, Stmt, ValueExpr, VarId};
use looptune_runtime::CompileError;

/// Lanes per vector: Cranelift's x86-64 back end has 128-bit vectors.
pub(crate) const LANES: i64 = 4;

/// The group of lanes being emitted: `var` takes the values `base, base + 1, ..., base + 3`.
#[derive(Clone, Copy)]
pub(crate) struct Group {
    var: VarId,
    base: IVal,
}

/// A value inside a vector group.
#[derive(Clone, Copy)]
enum Lanes {
    /// The same scalar in every lane.
    Uniform(Value),
    /// An f32x4 value.
    Vector(Value),
}

fn contains_alloc(stmt: &Stmt) -> bool {
    let mut found = false;
    stmt.walk(&mut |stmt| found |= matches!(stmt, Stmt::Alloc { .. }));
    found
}

impl<'n> FnGen<'n, '_> {
    /// Emits a vectorized loop.
    pub fn vectorized_loop(&mut self, lp: &'n Loop) -> Result<(), CompileError> {
        if lp.body.contains_loop() || contains_alloc(&lp.body) {
            // Outside the IR's contract for vectorized loops; iterations in order are correct.
            if lp.extent <= VECTOR_UNROLL_LIMIT {
                return (0..lp.extent).try_for_each(|lane| {
                    self.with_var(lp.var, IVal::constant(lane), |this| this.stmt(&lp.body))
                });
            }
            return self.serial_loop(lp.var, lp.extent, &lp.body);
        }
        let full = lp.extent / LANES * LANES;
        if lp.extent <= VECTOR_UNROLL_LIMIT {
            for base in (0..full).step_by(LANES as usize) {
                let group = Group {
                    var: lp.var,
                    base: IVal::constant(base),
                };
                self.vector_stmt(&lp.body, group)?;
            }
        } else {
            let start = self.builder.ins().iconst(types::I64, 0);
            // Lanes of the loop over groups reach `full - 1`; a group's first lane `full - 4`,
            // which is the range vector accesses are bounded with (see `group_offset`).
            self.with_range(lp.var, (0, full - 1), |this| {
                this.counted_loop(start, IVal::constant(full), LANES, |this, counter| {
                    let group = Group {
                        var: lp.var,
                        base: IVal::value(counter),
                    };
                    this.vector_stmt(&lp.body, group)
                })
            })?;
        }
        for lane in full..lp.extent {
            self.with_var(lp.var, IVal::constant(lane), |this| this.stmt(&lp.body))?;
        }
        Ok(())
    }

    /// Runs `emit` once per lane with the variable bound to that lane.
    fn per_lane<T>(
        &mut self,
        group: Group,
        mut emit: impl FnMut(&mut Self) -> Result<T, CompileError>,
    ) -> Result<Vec<T>, CompileError> {
        (0..LANES)
            .map(|lane| self.with_var(group.var, group.base.plus(lane), &mut emit))
            .collect()
    }

    /// Builds an f32x4 from four scalars.
    fn assemble(&mut self, lanes: &[Value]) -> Value {
        let mut vector = self.builder.ins().splat(types::F32X4, lanes[0]);
        for (lane, value) in lanes.iter().enumerate().skip(1) {
            vector = self.builder.ins().insertlane(vector, *value, lane as u8);
        }
        vector
    }

    fn splat_if_uniform(&mut self, value: Lanes) -> Value {
        match value {
            Lanes::Uniform(scalar) => self.builder.ins().splat(types::F32X4, scalar),
            Lanes::Vector(vector) => vector,
        }
    }

    fn vector_stmt(&mut self, stmt: &'n Stmt, group: Group) -> Result<(), CompileError> {
        match stmt {
            Stmt::Seq(stmts) => stmts
                .iter()
                .try_for_each(|stmt| self.vector_stmt(stmt, group)),
            Stmt::If { cond, then } if !cond.uses_var(group.var) => {
                let holds = self.cond(cond)?;
                self.guarded(holds, |this| this.vector_stmt(then, group))
            }
            Stmt::Store {
                buffer,
                indices,
                value,
            } if self.nest.buffer(*buffer).dtype == DType::F32
                && all_values_are(self.nest, value, DType::F32) =>
            {
                self.vector_store(*buffer, indices, value, group)
            }
            // Lane-dependent guards, other dtypes: one lane at a time.
            _ => self.per_lane(group, |this| this.stmt(stmt)).map(|_| ()),
        }
    }

    /// The constant tile elements an access touches in each lane.
    fn tile_lanes(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        group: Group,
    ) -> Result<Vec<usize>, CompileError> {
        self.per_lane(group, |this| this.tile_element(buffer, indices))
    }

    /// Whether a grouped tile holds `elements` as exactly one of its f32x4 variables.
    fn whole_group(&self, buffer: BufferId, elements: &[usize]) -> bool {
        let grouped = matches!(self.storage.get(buffer.index()), Some(Some(Storage::Registers(tile))) if tile.grouped);
        // A group past the tile's end is read lane by lane, each lane a trap (`tile_read`).
        grouped
            && elements[0].is_multiple_of(4)
            && elements[0] + elements.len() <= self.nest.buffer(buffer).len()
            && elements
                .iter()
                .enumerate()
                .all(|(lane, element)| *element == elements[0] + lane)
    }

    fn vector_store(
        &mut self,
        buffer: BufferId,
        indices: &'n [IndexExpr],
        value: &'n ValueExpr,
        group: Group,
    ) -> Result<(), CompileError> {
        let computed = self.lanes(value, group)?;
        let vector = self.splat_if_uniform(computed);
        let memory_base = match self.storage_of(buffer)? {
            Storage::Memory { base } => Some(*base),
            Storage::Registers(_) => None,
        };
        let Some(base) = memory_base else {
            let elements = self.tile_lanes(buffer, indices, group)?;
            if self.whole_group(buffer, &elements) {
                let (_, var) = self.tile_slot(buffer, elements[0])?;
                self.builder.def_var(var, vector);
                return Ok(());
            }
            for (lane, element) in elements.into_iter().enumerate() {
                let scalar = self.builder.ins().extractlane(vector, lane as u8);
                self.tile_write(buffer, element, scalar)?;
            }
            return Ok(());
        };
        let decl = self.nest.buffer(buffer);
        let flags = access_flags(decl.role);
        if offset_coefficient(decl, indices, group.var) == Some(1) {
            self.group_offset(buffer, indices, group)?;
            let (address, immediate) = self.with_var(group.var, group.base, |this| {
                this.element_address(base, buffer, indices, 4)
            })?;
            self.builder.ins().store(flags, vector, address, immediate);
            return Ok(());
        }
        // A scatter: lanes are stored in order, so lanes that hit the same element leave the
        // last lane's value, as a serial loop would.
        for lane in 0..LANES {
            let scalar = self.builder.ins().extractlane(vector, lane as u8);
            self.with_var(group.var, group.base.plus(lane), |this| {
                let offset = this.element_offset(buffer, indices)?;
                this.check_bounds(buffer, indices, offset, 1)?;
                let (address, immediate) = this.element_address(base, buffer, indices, 4)?;
                this.builder.ins().store(flags, scalar, address, immediate);
                Ok(())
            })?;
        }
        Ok(())
    }

    fn lanes(&mut self, expr: &'n ValueExpr, group: Group) -> Result<Lanes, CompileError> {
        if !expr.uses_var(group.var) {
            return Ok(Lanes::Uniform(self.value(expr)?));
        }
        match expr {
            ValueExpr::Load(load) => self.vector_load(load, group),
            ValueExpr::Binary(op, a, b) => {
                let a = self.lanes(a, group)?;
                let b = self.lanes(b, group)?;
                if let (Lanes::Uniform(a), Lanes::Uniform(b)) = (a, b) {
                    return Ok(Lanes::Uniform(self.binary(*op, DType::F32, a, b)?));
                }
                let a = self.splat_if_uniform(a);
                let b = self.splat_if_uniform(b);
                Ok(Lanes::Vector(self.binary(*op, DType::F32, a, b)?))
            }
            ValueExpr::Unary(op, a) => match self.lanes(a, group)? {
                Lanes::Uniform(a) => Ok(Lanes::Uniform(self.unary(*op, DType::F32, a)?)),
                Lanes::Vector(a) => Ok(Lanes::Vector(self.unary(*op, DType::F32, a)?)),
            },
            ValueExpr::Fma(a, b, c) => {
                let (a, b) = (self.lanes(a, group)?, self.lanes(b, group)?);
                // The uniform multiplicand (a broadcast) goes first, so that the vector one is
                // `vfmadd231ps`'s last operand, the one that can be a memory operand.
                let (a, b) = match (a, b) {
                    (Lanes::Vector(_), Lanes::Uniform(_)) => (b, a),
                    other => other,
                };
                let parts = [a, b, self.lanes(c, group)?];
                if let [Lanes::Uniform(a), Lanes::Uniform(b), Lanes::Uniform(c)] = parts {
                    return Ok(Lanes::Uniform(self.fma(DType::F32, a, b, c)?));
                }
                let [a, b, c] = parts.map(|part| self.splat_if_uniform(part));
                Ok(Lanes::Vector(self.fma(DType::F32, a, b, c)?))
            }
            ValueExpr::Select(cond, a, b) if !cond.uses_var(group.var) => {
                let holds = self.cond(cond)?;
                if reads_memory(a) || reads_memory(b) {
                    let chosen = self.branchy_select(
                        holds,
                        types::F32X4,
                        |this| {
                            let value = this.lanes(a, group)?;
                            Ok(this.splat_if_uniform(value))
                        },
                        |this| {
                            let value = this.lanes(b, group)?;
                            Ok(this.splat_if_uniform(value))
                        },
                    )?;
                    return Ok(Lanes::Vector(chosen));
                }
                let a = self.lanes(a, group)?;
                let b = self.lanes(b, group)?;
                let a = self.splat_if_uniform(a);
                let b = self.splat_if_uniform(b);
                Ok(Lanes::Vector(self.builder.ins().select(holds, a, b)))
            }
            // Lane-dependent selects, conversions: one lane at a time.
            _ => {
                let lanes = self.per_lane(group, |this| this.value(expr))?;
                Ok(Lanes::Vector(self.assemble(&lanes)))
            }
        }
    }

    /// The element offset of lane 0 of a contiguous access, bounds-checked for all four lanes,
    /// and whether that check was static.
    fn group_offset(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        group: Group,
    ) -> Result<(IVal, bool), CompileError> {
        let first_lane_range = self
            .ranges
            .get(group.var.index())
            .copied()
            .flatten()
            .map(|(low, high)| (low, high - (LANES - 1)));
        self.with_var(group.var, group.base, |this| {
            let offset = this.element_offset(buffer, indices)?;
            let bounded = match first_lane_range {
                Some(range) => this.with_range(group.var, range, |this| {
                    this.check_bounds(buffer, indices, offset, LANES)
                })?,
                None => this.check_bounds(buffer, indices, offset, LANES)?,
            };
            Ok((offset, bounded))
        })
    }

    fn vector_load(&mut self, load: &'n Load, group: Group) -> Result<Lanes, CompileError> {
        let memory_base = match self.storage_of(load.buffer)? {
            Storage::Memory { base } => Some(*base),
            Storage::Registers(_) => None,
        };
        let Some(base) = memory_base else {
            let elements = self.tile_lanes(load.buffer, &load.indices, group)?;
            if self.whole_group(load.buffer, &elements) {
                let (_, var) = self.tile_slot(load.buffer, elements[0])?;
                return Ok(Lanes::Vector(self.builder.use_var(var)));
            }
            let lanes = elements
                .into_iter()
                .map(|element| self.tile_read(load.buffer, element))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Lanes::Vector(self.assemble(&lanes)));
        };
        let decl = self.nest.buffer(load.buffer);
        let decl_role = decl.role;
        match offset_coefficient(decl, &load.indices, group.var) {
            Some(1) => {
                let (_, bounded) = self.group_offset(load.buffer, &load.indices, group)?;
                let flags = load_flags(decl_role, bounded);
                let (address, immediate) = self.with_var(group.var, group.base, |this| {
                    this.element_address(base, load.buffer, &load.indices, 4)
                })?;
                Ok(Lanes::Vector(self.builder.ins().load(
                    types::F32X4,
                    flags,
                    address,
                    immediate,
                )))
            }
            Some(0) => {
                let scalar = self.with_var(group.var, group.base, |this| this.load_scalar(load))?;
                Ok(Lanes::Uniform(scalar))
            }
            _ => {
                let lanes = self.per_lane(group, |this| this.load_scalar(load))?;
                Ok(Lanes::Vector(self.assemble(&lanes)))
            }
        }
    }
}
