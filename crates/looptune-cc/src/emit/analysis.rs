//! Questions the printer asks about the nest before printing a piece of it: whether a value
//! depends on a vector loop's variable, how an access moves with it, whether a temporary is
//! touched by a loop that will run in another function, and which buffers a function uses.

use looptune_ir::{BufferId, IndexExpr, LoopKind, LoopNest, Stmt, ValueExpr, VarId};

/// The coefficient of `var` in the flattened (row-major) element offset of an access.
pub(crate) fn offset_coefficient(
    nest: &LoopNest,
    buffer: BufferId,
    indices: &[IndexExpr],
    var: VarId,
) -> Option<i64> {
    let strides = nest.buffer(buffer).strides();
    let mut total: i64 = 0;
    for (index, stride) in indices.iter().zip(strides) {
        total = total.checked_add(index.linear_coefficient(var)?.checked_mul(stride)?)?;
    }
    Some(total)
}

/// Whether `stmt` holds a loop or an allocation (which a vectorized loop's body must not).
pub(crate) fn contains_loop_or_alloc(stmt: &Stmt) -> bool {
    let mut found = false;
    stmt.walk(&mut |stmt| found |= matches!(stmt, Stmt::For(_) | Stmt::Alloc { .. }));
    found
}

/// Calls `visit` on every buffer that `stmt` loads from or stores to, outside the bodies of
/// parallel loops that will be outlined when `outlined_apart` (they are other functions).
pub(crate) fn for_each_access_here(
    stmt: &Stmt,
    outlined_apart: bool,
    visit: &mut dyn FnMut(BufferId),
) {
    match stmt {
        Stmt::For(lp) if outlined_apart && lp.kind == LoopKind::Parallel && lp.extent > 1 => {}
        Stmt::For(lp) => for_each_access_here(&lp.body, outlined_apart, visit),
        Stmt::Seq(stmts) => stmts
            .iter()
            .for_each(|stmt| for_each_access_here(stmt, outlined_apart, visit)),
        Stmt::Alloc { body, .. } => for_each_access_here(body, outlined_apart, visit),
        Stmt::If { cond, then } => {
            cond.walk_values(&mut |expr| {
                if let ValueExpr::Load(load) = expr {
                    visit(load.buffer);
                }
            });
            for_each_access_here(then, outlined_apart, visit);
        }
        Stmt::Store { .. } => for_each_access(stmt, visit),
    }
}

/// Calls `visit` on every buffer that `stmt` loads from or stores to.
pub(crate) fn for_each_access(stmt: &Stmt, visit: &mut dyn FnMut(BufferId)) {
    let value = |expr: &ValueExpr, visit: &mut dyn FnMut(BufferId)| {
        expr.for_each_load(&mut |load| visit(load.buffer))
    };
    stmt.walk(&mut |stmt| match stmt {
        Stmt::Store {
            buffer,
            indices: _,
            value: stored,
        } => {
            visit(*buffer);
            value(stored, visit);
        }
        Stmt::If { cond, .. } => cond.walk_values(&mut |expr| {
            if let ValueExpr::Load(load) = expr {
                visit(load.buffer);
            }
        }),
        _ => {}
    });
}

/// Whether `buffer` is accessed inside a parallel loop of `stmt` that will be outlined into a
/// function of its own (one with more than one iteration), where a register tile of the
/// enclosing function cannot be seen.
pub(crate) fn accessed_in_parallel_loop(stmt: &Stmt, buffer: BufferId) -> bool {
    let mut found = false;
    stmt.walk(&mut |stmt| {
        if let Stmt::For(lp) = stmt {
            if lp.kind == LoopKind::Parallel && lp.extent > 1 {
                for_each_access(&lp.body, &mut |accessed| found |= accessed == buffer);
            }
        }
    });
    found
}
