//! Checks a nest must pass before code is generated for it, beyond what the IR verifier checks:
//! the ones whose failure would make the safe call API unsound or codegen impossible.
//!
//! Parameters may be of any dtype the call API checks (`Kernel::call_data`); inputs must never be stored to
//! (they arrive as shared slices), every access must use as many indices as its buffer has
//! dimensions, and only temporaries may be allocated. Then the IR's verifier checks the rest of
//! the contract. (Bounds are the business of `bounds`, which checks at run time what it cannot
//! prove, so that [`crate::Kernel::call`] stays safe for every nest that compiles.)

use looptune_ir::{BufferId, BufferRole, LoopNest, Stmt, ValueExpr};
use looptune_runtime::CompileError;

/// Checks `nest`; see the module doc for what.
pub(crate) fn validate(nest: &LoopNest) -> Result<(), CompileError> {
    let mut seen = vec![false; nest.buffers.len()];
    for (ids, role) in [
        (&nest.inputs, BufferRole::Input),
        (&nest.outputs, BufferRole::Output),
    ] {
        for &id in ids {
            let decl = lookup(nest, id)?;
            if decl.role != role {
                return Err(CompileError::BadBufferRole {
                    buffer: decl.name.clone(),
                    problem: format!("listed as {role:?} but declared as {:?}", decl.role),
                });
            }
            if std::mem::replace(&mut seen[id.index()], true) {
                return Err(CompileError::BadBufferRole {
                    buffer: decl.name.clone(),
                    problem: "listed twice among the parameters".to_string(),
                });
            }
            super::function::clif_type(decl.dtype, &format!("parameter buffer `{}`", decl.name))?;
        }
    }
    let mut result = Ok(());
    nest.body.walk(&mut |stmt| {
        if result.is_ok() {
            result = check_stmt(nest, stmt);
        }
    });
    result?;
    looptune_ir::verify(nest).map_err(|error| CompileError::InvalidNest {
        nest: nest.name.clone(),
        message: error.to_string(),
    })?;
    Ok(())
}

fn lookup(nest: &LoopNest, id: BufferId) -> Result<&looptune_ir::BufferDecl, CompileError> {
    nest.buffers
        .get(id.index())
        .ok_or(CompileError::UnknownBuffer {
            id: id.0,
            declared: nest.buffers.len(),
        })
}

fn check_rank(nest: &LoopNest, id: BufferId, indices: usize) -> Result<(), CompileError> {
    let decl = lookup(nest, id)?;
    if decl.shape.len() != indices {
        return Err(CompileError::IndexRank {
            buffer: decl.name.clone(),
            expected: decl.shape.len(),
            actual: indices,
        });
    }
    Ok(())
}

fn check_values(nest: &LoopNest, expr: &ValueExpr) -> Result<(), CompileError> {
    let mut result = Ok(());
    expr.for_each_load(&mut |load| {
        if result.is_ok() {
            result = check_rank(nest, load.buffer, load.indices.len());
        }
    });
    result
}

fn check_stmt(nest: &LoopNest, stmt: &Stmt) -> Result<(), CompileError> {
    match stmt {
        Stmt::Store {
            buffer,
            indices,
            value,
        } => {
            check_rank(nest, *buffer, indices.len())?;
            let decl = lookup(nest, *buffer)?;
            if decl.role == BufferRole::Input {
                return Err(CompileError::StoreToInput {
                    buffer: decl.name.clone(),
                });
            }
            check_values(nest, value)
        }
        Stmt::If { cond, .. } => {
            let mut result = Ok(());
            cond.walk_values(&mut |value| {
                if result.is_ok() {
                    result = check_values(nest, value);
                }
            });
            result
        }
        Stmt::Alloc { buffer, .. } => {
            let decl = lookup(nest, *buffer)?;
            if decl.role != BufferRole::Temp {
                return Err(CompileError::BadBufferRole {
                    buffer: decl.name.clone(),
                    problem: format!("allocated by the nest but declared as {:?}", decl.role),
                });
            }
            Ok(())
        }
        Stmt::For(_) | Stmt::Seq(_) => Ok(()),
    }
}
