//! Questions codegen asks about expressions before emitting them: the dtype of a value, whether
//! it depends on a variable, whether evaluating it may read memory, and how an index moves with a
//! vector lane.

use looptune_ir::{BufferDecl, Cond, DType, IndexExpr, LoopNest, ValueExpr, VarId};

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

/// The coefficient of `var` in the flattened (row-major) element offset of an access.
pub(crate) fn offset_coefficient(
    decl: &BufferDecl,
    indices: &[IndexExpr],
    var: VarId,
) -> Option<i64> {
    let strides = decl.strides();
    let mut total: i64 = 0;
    for (index, stride) in indices.iter().zip(strides) {
        total = total.checked_add(index.linear_coefficient(var)?.checked_mul(stride)?)?;
    }
    Some(total)
}
