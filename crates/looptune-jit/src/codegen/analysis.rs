//! Questions codegen asks about expressions before emitting them: the dtype of a value, whether
//! it depends on a variable, whether evaluating it may read memory, and how an index moves with a
//! vector lane.

use looptune_ir::{BufferDecl, Cond, DType, IndexExpr, IndexOp, LoopNest, ValueExpr, VarId};

/// The dtype a value expression produces (its leaves' dtype; the verifier keeps them equal).
pub(crate) fn value_dtype(nest: &LoopNest, expr: &ValueExpr) -> DType {
    match expr {
        ValueExpr::Const(scalar) => scalar.dtype,
        ValueExpr::Load(load) => nest
            .buffers
            .get(load.buffer.index())
            .map_or(DType::F32, |decl| decl.dtype),
        ValueExpr::Binary(_, a, _)
        | ValueExpr::Unary(_, a)
        | ValueExpr::Fma(a, _, _)
        | ValueExpr::Select(_, a, _) => value_dtype(nest, a),
        ValueExpr::Cast(dtype, _) | ValueExpr::FromIndex(dtype, _) => *dtype,
    }
}

/// Whether every value node of `expr` (conditions included) has dtype `dtype`.
pub(crate) fn all_values_are(nest: &LoopNest, expr: &ValueExpr, dtype: DType) -> bool {
    let mut uniform = true;
    expr.walk(&mut |node| uniform &= value_dtype(nest, node) == dtype);
    uniform
}

/// Whether evaluating `expr` reads memory, which is what makes eager evaluation of both sides of
/// a select unsafe (the untaken side may index out of bounds).
pub(crate) fn reads_memory(expr: &ValueExpr) -> bool {
    let mut found = false;
    expr.walk(&mut |node| found |= matches!(node, ValueExpr::Load(_)));
    found
}

/// Whether evaluating `cond` reads memory.
pub(crate) fn cond_reads_memory(cond: &Cond) -> bool {
    let mut found = false;
    cond.walk_values(&mut |node| found |= matches!(node, ValueExpr::Load(_)));
    found
}

/// Whether `expr` reads `var` anywhere (indices, `FromIndex`, conditions).
pub(crate) fn value_uses_var(expr: &ValueExpr, var: VarId) -> bool {
    let mut found = false;
    expr.for_each_index(&mut |index| found |= index.uses_var(var));
    found
}

/// Whether `cond` reads `var` anywhere.
pub(crate) fn cond_uses_var(cond: &Cond, var: VarId) -> bool {
    let mut found = false;
    cond.for_each_index(&mut |index| found |= index.uses_var(var));
    found
}

/// The coefficient `c` with `expr = c * var + (terms free of var)`, or `None` when `expr` is not
/// of that form with a constant `c` (e.g. `var / 2`, `var * n`).
pub(crate) fn linear_coefficient(expr: &IndexExpr, var: VarId) -> Option<i64> {
    match expr {
        IndexExpr::Const(_) => Some(0),
        IndexExpr::Var(other) => Some(i64::from(*other == var)),
        IndexExpr::Binary(op, a, b) => {
            if !expr.uses_var(var) {
                return Some(0);
            }
            match op {
                IndexOp::Add => {
                    linear_coefficient(a, var)?.checked_add(linear_coefficient(b, var)?)
                }
                IndexOp::Sub => {
                    linear_coefficient(a, var)?.checked_sub(linear_coefficient(b, var)?)
                }
                IndexOp::Mul => match (a.as_const(), b.as_const()) {
                    (Some(k), _) => linear_coefficient(b, var)?.checked_mul(k),
                    (_, Some(k)) => linear_coefficient(a, var)?.checked_mul(k),
                    _ => None,
                },
                IndexOp::FloorDiv | IndexOp::FloorMod | IndexOp::Min | IndexOp::Max => None,
            }
        }
    }
}

/// The coefficient of `var` in the flattened (row-major) element offset of an access.
pub(crate) fn offset_coefficient(
    decl: &BufferDecl,
    indices: &[IndexExpr],
    var: VarId,
) -> Option<i64> {
    let strides = decl.strides();
    let mut total: i64 = 0;
    for (index, stride) in indices.iter().zip(strides) {
        total = total.checked_add(linear_coefficient(index, var)?.checked_mul(stride)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_coefficients_follow_affine_arithmetic_and_refuse_the_rest() {
        let v = VarId(0);
        let w = VarId(1);
        let expr = IndexExpr::Var(w) * 8 + IndexExpr::Var(v) * 3 - IndexExpr::Var(v);
        assert_eq!(linear_coefficient(&expr, v), Some(2));
        assert_eq!(linear_coefficient(&expr, w), Some(8));
        assert_eq!(linear_coefficient(&IndexExpr::Var(v).floor_div(2), v), None);
        assert_eq!(
            linear_coefficient(&IndexExpr::Var(w).floor_div(2), v),
            Some(0)
        );
        assert_eq!(
            linear_coefficient(&(IndexExpr::Var(v) * IndexExpr::Var(w)), v),
            None
        );
    }
}
