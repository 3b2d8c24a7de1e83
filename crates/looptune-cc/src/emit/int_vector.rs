//! Vector code for `i32` lanes: the accumulators of quantized kernels.
//!
//! A vectorized store of `i32` values computes in `lt_i32xW` vectors as wide as the `f32` ones:
//! sums, differences and products wrap (they are computed on unsigned lanes), minimum and
//! maximum select, a contiguous `u8`, `i8` or `i16` load widened to `i32` is one vector load
//! and one conversion, and the pair product of a quantized GEMM,
//!
//! ```text
//! i32(x0) * i32(Y[.., 2 l]) + i32(x1) * i32(Y[.., 2 l + 1])      (x0, x1 the same in every lane)
//! ```
//!
//! with `Y` an `i16` buffer whose two elements of lane `l` sit side by side, is one `lt_madd`
//! (`vpmaddwd`: both products and their sum, exact in `i32`). Anything else that depends on the
//! lane is computed lane by lane, as in the `f32` vector code.

use super::analysis::offset_coefficient;
use super::index::Lin;
use super::vector::{Group, Lanes};
use super::{Emitter, Result, Storage};
use looptune_ir::{BinaryOp, DType, Load, ValueExpr};

impl Emitter<'_> {
    /// An `i32` value in `group`: uniform (a scalar) or a vector.
    pub(super) fn int_lanes(&mut self, expr: &ValueExpr, group: &Group) -> Result<Lanes> {
        let width = group.width;
        if !expr.uses_var(group.var) {
            return Ok(Lanes::Uniform(self.value(expr)?));
        }
        if let Some(madd) = self.pair_product(expr, group)? {
            return Ok(Lanes::Vector(madd));
        }
        match expr {
            ValueExpr::Load(load) if self.nest.buffer(load.buffer).dtype == DType::I32 => {
                self.int_load(load, group, "lt_loadi")
            }
            ValueExpr::Cast(DType::I32, inner) => match &**inner {
                // A widened select (padding folded into a load) is a select of widened values.
                ValueExpr::Select(cond, a, b) if !cond.uses_var(group.var) => {
                    let widened =
                        |value: &ValueExpr| ValueExpr::Cast(DType::I32, Box::new(value.clone()));
                    let select =
                        ValueExpr::Select(cond.clone(), Box::new(widened(a)), Box::new(widened(b)));
                    self.int_lanes(&select, group)
                }
                ValueExpr::Load(load) => {
                    let helper = match self.nest.buffer(load.buffer).dtype {
                        DType::U8 => "lt_widen_u8_",
                        DType::I8 => "lt_widen_i8_",
                        DType::I16 => "lt_widen_i16_",
                        _ => return self.int_assemble(expr, group),
                    };
                    self.int_load(load, group, helper)
                }
                _ => self.int_assemble(expr, group),
            },
            ValueExpr::Binary(
                op
                @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Min | BinaryOp::Max),
                a,
                b,
            ) => {
                let (a, b) = (self.int_lanes(a, group)?, self.int_lanes(b, group)?);
                let (a, b) = (self.as_int_vector(a, width), self.as_int_vector(b, width));
                let name = match op {
                    BinaryOp::Add => "add",
                    BinaryOp::Sub => "sub",
                    BinaryOp::Mul => "mul",
                    BinaryOp::Min => "min",
                    _ => "max",
                };
                Ok(Lanes::Vector(format!("lt_{name}i{width}({a}, {b})")))
            }
            ValueExpr::Select(cond, a, b) if !cond.uses_var(group.var) => {
                match self.known_cond(cond)? {
                    Some(true) => self.int_lanes(a, group),
                    Some(false) => self.int_lanes(b, group),
                    None => {
                        // C's conditional operator evaluates only the chosen operand.
                        let cond = self.cond(cond)?;
                        let a = self.int_lanes(a, group)?;
                        let a = self.as_int_vector(a, width);
                        let b = self.int_lanes(b, group)?;
                        let b = self.as_int_vector(b, width);
                        Ok(Lanes::Vector(format!("({cond} ? {a} : {b})")))
                    }
                }
            }
            // `a * b + c` (lowering fuses a product added to an accumulator), wrapping.
            ValueExpr::Fma(a, b, c) => {
                let (a, b) = (self.int_lanes(a, group)?, self.int_lanes(b, group)?);
                let (a, b) = (self.as_int_vector(a, width), self.as_int_vector(b, width));
                let c = self.int_lanes(c, group)?;
                let c = self.as_int_vector(c, width);
                Ok(Lanes::Vector(format!("lt_fmai{width}({a}, {b}, {c})")))
            }
            ValueExpr::Binary(BinaryOp::MulShr(shift), a, b) => {
                let (a, b) = (self.int_lanes(a, group)?, self.int_lanes(b, group)?);
                let (a, b) = (self.as_int_vector(a, width), self.as_int_vector(b, width));
                let rounding = if *shift == 0 { 0 } else { 1i64 << (shift - 1) };
                Ok(Lanes::Vector(format!(
                    "lt_mulshr{width}({a}, {b}, {shift}, {rounding}LL)"
                )))
            }
            _ => self.int_assemble(expr, group),
        }
    }

    /// Stores `value`, an `i32` expression narrowed to the buffer's `u8`, `i8` or `i16`
    /// (`Cast(narrow, value)`), for the group's lanes: one vector conversion and one store
    /// when the lanes are contiguous in memory. `false` (nothing printed) otherwise.
    pub(super) fn narrowing_store(
        &mut self,
        buffer: looptune_ir::BufferId,
        indices: &[looptune_ir::IndexExpr],
        value: &ValueExpr,
        group: &Group,
    ) -> Result<bool> {
        let helper = match self.nest.buffer(buffer).dtype {
            DType::U8 => "lt_store_u8_",
            DType::I8 => "lt_store_i8_",
            DType::I16 => "lt_store_i16_",
            _ => return Ok(false),
        };
        let ValueExpr::Cast(_, inner) = value else {
            return Ok(false);
        };
        if self.dtype(inner) != DType::I32 {
            return Ok(false);
        }
        let Storage::Pointer { name } = self.storage(buffer)? else {
            return Ok(false);
        };
        // Contiguous: by the index's coefficient, or (a fused index, `f / 2` and `f % 2`) by
        // each lane's offset.
        let offset = if offset_coefficient(self.nest, buffer, indices, group.var) == Some(1) {
            self.with_var(group.var, group.base.clone(), |this| {
                this.offset(buffer, indices)
            })?
        } else {
            match self.lane_offsets(buffer, indices, group) {
                Ok(offsets) if consecutive(&offsets) => offsets[0].clone(),
                _ => return Ok(false),
            }
        };
        let width = group.width;
        let computed = self.int_lanes(inner, group)?;
        let vector = self.as_int_vector(computed, width);
        let pointer = self.vector_pointer(&name, buffer, &offset, width);
        self.line(&format!("{helper}{width}({pointer}, {vector});"));
        Ok(true)
    }

    /// An `i32` value as a vector of the group's width.
    pub(super) fn as_int_vector(&self, value: Lanes, width: usize) -> String {
        match value {
            Lanes::Uniform(scalar) => format!("lt_splati{width}({scalar})"),
            Lanes::Vector(vector) => vector,
        }
    }

    /// The lanes of `expr` computed one by one into an `i32` vector.
    fn int_assemble(&mut self, expr: &ValueExpr, group: &Group) -> Result<Lanes> {
        let lanes = self.per_lane(group, |this| this.value(expr))?;
        Ok(Lanes::Vector(format!(
            "((lt_i32x{}){{{}}})",
            group.width,
            lanes.join(", ")
        )))
    }

    /// A load of the group's lanes through `helper` (`lt_loadi` for `i32`, a widening load for
    /// narrower types) when they are contiguous in memory; a tile's vector; else lane by lane.
    fn int_load(&mut self, load: &Load, group: &Group, helper: &str) -> Result<Lanes> {
        let width = group.width;
        let expr = ValueExpr::Load(load.clone());
        match self.storage(load.buffer)? {
            Storage::Pointer { name }
                if offset_coefficient(self.nest, load.buffer, &load.indices, group.var)
                    == Some(1) =>
            {
                let offset = self.with_var(group.var, group.base.clone(), |this| {
                    this.offset(load.buffer, &load.indices)
                })?;
                let pointer = self.vector_pointer(&name, load.buffer, &offset, width);
                Ok(Lanes::Vector(format!("{helper}{width}({pointer})")))
            }
            Storage::Tile(tile) if self.nest.buffer(load.buffer).dtype == DType::I32 => {
                let offsets = self.lane_offsets(load.buffer, &load.indices, group)?;
                let elements = self.tile_elements(&offsets)?;
                if let Some(slot) = self.tiles[tile].whole(&elements) {
                    return Ok(Lanes::Vector(slot));
                }
                self.int_assemble(&expr, group)
            }
            Storage::Recording(recording) => {
                let offsets = self.lane_offsets(load.buffer, &load.indices, group)?;
                self.recordings[recording].record(&offsets);
                Ok(Lanes::Vector(format!("((lt_i32x{width}){{0}})")))
            }
            // Two rows interleaved (a quantized GEMM's weight pairs): two half loads, zipped.
            Storage::Pointer { name } if helper.starts_with("lt_widen_") => {
                let zipped = self
                    .lane_offsets(load.buffer, &load.indices, group)
                    .ok()
                    .and_then(|offsets| zipped(&offsets));
                match zipped {
                    Some((first, second)) => {
                        let first = self.vector_pointer(&name, load.buffer, &first, width / 2);
                        let second = self.vector_pointer(&name, load.buffer, &second, width / 2);
                        Ok(Lanes::Vector(format!(
                            "{helper}zip{width}({first}, {second})"
                        )))
                    }
                    None => self.int_assemble(&expr, group),
                }
            }
            _ => self.int_assemble(&expr, group),
        }
    }

    /// The pair product of the module documentation as one `lt_madd`, if `expr` is one.
    fn pair_product(&mut self, expr: &ValueExpr, group: &Group) -> Result<Option<String>> {
        let ValueExpr::Binary(BinaryOp::Add, first, second) = expr else {
            return Ok(None);
        };
        let (Some((x0, y0)), Some((x1, y1))) = (
            self.widened_product(first, group),
            self.widened_product(second, group),
        ) else {
            return Ok(None);
        };
        if y0.buffer != y1.buffer {
            return Ok(None);
        }
        let Storage::Pointer { name } = self.storage(y0.buffer)? else {
            return Ok(None);
        };
        let nest = self.nest;
        let stride = |load: &Load| offset_coefficient(nest, load.buffer, &load.indices, group.var);
        if stride(y0) != Some(2) || stride(y1) != Some(2) {
            return Ok(None);
        }
        let (y0, y1) = (y0.clone(), y1.clone());
        let (x0, x1) = (x0.clone(), x1.clone());
        let (offset0, offset1) = self.with_var(group.var, group.base.clone(), |this| {
            Ok((
                this.offset(y0.buffer, &y0.indices)?,
                this.offset(y1.buffer, &y1.indices)?,
            ))
        })?;
        // The two elements of each lane must be adjacent, the first one first.
        let difference = offset1
            .add_scaled(&offset0, -1)
            .and_then(|lin| lin.as_const());
        if difference != Some(1) {
            return Ok(None);
        }
        let width = group.width;
        let pair = match self.adjacent_pair(&x0, &x1)? {
            // Side by side in memory (the pairs of `A`): one 32-bit load, broadcast.
            Some(pointer) => format!("lt_splati{width}(lt_load_pair({pointer}))"),
            None => {
                let (x0, x1) = (self.value(&x0)?, self.value(&x1)?);
                format!("lt_splati{width}(lt_pair({x0}, {x1}))")
            }
        };
        let pointer = self.vector_pointer(&name, y0.buffer, &offset0, 2 * width);
        Ok(Some(format!("lt_madd{width}({pair}, {pointer})")))
    }

    /// The address of `x0` when `x0` and `x1` are loads of adjacent elements (`x0` first) of
    /// one buffer in memory: the pair is then one 32-bit word.
    fn adjacent_pair(&mut self, x0: &ValueExpr, x1: &ValueExpr) -> Result<Option<String>> {
        let (ValueExpr::Load(first), ValueExpr::Load(second)) = (x0, x1) else {
            return Ok(None);
        };
        if first.buffer != second.buffer {
            return Ok(None);
        }
        let Storage::Pointer { name } = self.storage(first.buffer)? else {
            return Ok(None);
        };
        let offset0 = self.offset(first.buffer, &first.indices)?;
        let offset1 = self.offset(second.buffer, &second.indices)?;
        let difference = offset1
            .add_scaled(&offset0, -1)
            .and_then(|lin| lin.as_const());
        if difference != Some(1) {
            return Ok(None);
        }
        Ok(Some(self.vector_pointer(&name, first.buffer, &offset0, 2)))
    }

    /// `i32(x) * i32(y)` (either order) with `x` an `i16` value the same in every lane and `y`
    /// a load of an `i16` buffer that depends on the lane.
    fn widened_product<'e>(
        &self,
        expr: &'e ValueExpr,
        group: &Group,
    ) -> Option<(&'e ValueExpr, &'e Load)> {
        let ValueExpr::Binary(BinaryOp::Mul, a, b) = expr else {
            return None;
        };
        let widened = |value: &'e ValueExpr| match value {
            ValueExpr::Cast(DType::I32, inner) if self.dtype(inner) == DType::I16 => Some(&**inner),
            _ => None,
        };
        let (a, b) = (widened(a)?, widened(b)?);
        let split = |uniform: &'e ValueExpr, lanes: &'e ValueExpr| match lanes {
            ValueExpr::Load(load) if !uniform.uses_var(group.var) && lanes.uses_var(group.var) => {
                Some((uniform, load))
            }
            _ => None,
        };
        split(a, b).or_else(|| split(b, a))
    }
}

/// Whether `offsets` (one per lane) are consecutive elements.
fn consecutive(offsets: &[Lin]) -> bool {
    offsets.iter().enumerate().all(|(lane, offset)| {
        offset
            .clone()
            .add_scaled(&offsets[0], -1)
            .and_then(|step| step.as_const())
            == Some(lane as i64)
    })
}

/// The starts of two contiguous runs whose elements the lanes read interleaved, lane `2m` at
/// `first + m` and lane `2m + 1` at `second + m`, if `offsets` (one per lane) are that.
fn zipped(offsets: &[Lin]) -> Option<(Lin, Lin)> {
    if offsets.len() < 2 || !offsets.len().is_multiple_of(2) {
        return None;
    }
    for (lane, offset) in offsets.iter().enumerate() {
        let step = offset
            .clone()
            .add_scaled(&offsets[lane % 2], -1)?
            .as_const()?;
        if step != (lane / 2) as i64 {
            return None;
        }
    }
    Some((offsets[0].clone(), offsets[1].clone()))
}
