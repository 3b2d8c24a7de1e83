//! Bounds of index expressions, and run-time checks for accesses that cannot be bounded.
//!
//! Generated code must never touch memory outside the caller's buffers, because
//! [`crate::Kernel::call`] is safe. The IR verifier proves most accesses in bounds, but not all
//! (it cannot relate a guard `a + 2b < 3` to an index `3a + 6b`), and it does not need to: such
//! nests are legal. So codegen bounds each access itself with interval arithmetic over the loop
//! ranges, and where the interval is not inside the buffer it emits a check of the flattened
//! offset that traps (`ud2`, SIGILL) instead of reading or writing out of bounds. The check is
//! one compare and a never-taken branch, and lowered nests put it only on guarded tail accesses.

use super::function::FnGen;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, TrapCode};
use looptune_ir::{BufferId, IndexExpr, IndexOp};
use looptune_runtime::CompileError;

/// The trap raised by a failed bounds check.
pub(crate) const OUT_OF_BOUNDS: TrapCode = TrapCode::unwrap_user(1);

/// An inclusive range of values, in `i128` so that products of `i64` bounds cannot overflow.
type Interval = (i128, i128);

fn floor_div(a: i128, b: i128) -> i128 {
    let quotient = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        quotient - 1
    } else {
        quotient
    }
}

impl FnGen<'_, '_> {
    /// The values `expr` can take where it is emitted, or `None` when unknown.
    fn interval(&self, expr: &IndexExpr) -> Option<Interval> {
        match expr {
            IndexExpr::Const(value) => Some((i128::from(*value), i128::from(*value))),
            IndexExpr::Var(var) => {
                let binding = self.env.get(var.index()).copied().flatten()?;
                if binding.dynamic.is_none() {
                    let value = i128::from(binding.offset);
                    return Some((value, value));
                }
                let (low, high) = self.ranges.get(var.index()).copied().flatten()?;
                Some((i128::from(low), i128::from(high)))
            }
            IndexExpr::Binary(op, a, b) => {
                let (a_low, a_high) = self.interval(a)?;
                let (b_low, b_high) = self.interval(b)?;
                match op {
                    IndexOp::Add => Some((a_low + b_low, a_high + b_high)),
                    IndexOp::Sub => Some((a_low - b_high, a_high - b_low)),
                    IndexOp::Mul => {
                        let products = [
                            a_low * b_low,
                            a_low * b_high,
                            a_high * b_low,
                            a_high * b_high,
                        ];
                        Some((*products.iter().min()?, *products.iter().max()?))
                    }
                    IndexOp::Min => Some((a_low.min(b_low), a_high.min(b_high))),
                    IndexOp::Max => Some((a_low.max(b_low), a_high.max(b_high))),
                    IndexOp::FloorDiv if b_low == b_high && b_low != 0 => {
                        let first = floor_div(a_low, b_low);
                        let second = floor_div(a_high, b_low);
                        Some((first.min(second), first.max(second)))
                    }
                    IndexOp::FloorMod if b_low == b_high && b_low > 0 => {
                        if floor_div(a_low, b_low) == floor_div(a_high, b_low) {
                            Some((a_low.rem_euclid(b_low), a_high.rem_euclid(b_low)))
                        } else {
                            Some((0, b_low - 1))
                        }
                    }
                    IndexOp::FloorMod if b_low == b_high && b_low < 0 => Some((b_low + 1, 0)),
                    IndexOp::FloorDiv | IndexOp::FloorMod => None,
                }
            }
        }
    }

    /// Checks that elements `offset .. offset + span` of `buffer` exist, where `offset` is the
    /// flattened offset of `indices`: statically when the interval allows, else with a run-time
    /// check that traps. Returns whether the access was bounded statically, i.e. is in bounds
    /// wherever in the function it is placed.
    pub fn check_bounds(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        offset: super::function::IVal,
        span: i64,
    ) -> Result<bool, CompileError> {
        let decl = self.nest.buffer(buffer);
        let last_start = decl.len() as i64 - span;
        let strides = decl.strides();
        let mut total: Option<Interval> = Some((0, 0));
        for (index, stride) in indices.iter().zip(strides) {
            total = match (total, self.interval(index)) {
                (Some((low, high)), Some((index_low, index_high))) => {
                    let stride = i128::from(stride);
                    Some((low + index_low * stride, high + index_high * stride))
                }
                _ => None,
            };
        }
        if let Some((low, high)) = total {
            if low >= 0 && high <= i128::from(last_start) {
                return Ok(true);
            }
        }
        if last_start < 0 {
            // Not even one access fits: the buffer is smaller than the access.
            let always = self
                .builder
                .ins()
                .iconst(cranelift_codegen::ir::types::I8, 1);
            self.builder.ins().trapnz(always, OUT_OF_BOUNDS);
            return Ok(false);
        }
        let value = self.materialize(offset);
        // Unsigned, so that negative offsets fail the same comparison.
        let outside = self
            .builder
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThan, value, last_start);
        self.builder.ins().trapnz(outside, OUT_OF_BOUNDS);
        Ok(false)
    }
}
