//! Which temporaries become register tiles.
//!
//! A [`Stmt::Alloc`]'d temporary is kept in SSA variables when every access to it inside its
//! scope has indices that are compile-time constants once unrolled loops are unrolled (and
//! vectorized loops split into lanes): the accumulator block of a BLIS-style micro-kernel, whose
//! indices are the unrolled `i` and the vectorized `j`. Cranelift's register allocator then
//! keeps it in XMM registers across the reduction loop, with no loads or stores of it inside.

use looptune_ir::{
    unrolls_within_budget, BufferId, DType, LoopKind, LoopNest, Stmt, ValueExpr, VarId,
};

/// Temporaries larger than this stay in memory: far more values than registers would only move
/// the spills from our code to the register allocator's.
pub(crate) const MAX_TILE_ELEMENTS: usize = 256;

/// Vectorized loops up to this many lanes are emitted group by group with constant lanes;
/// longer ones become a loop over groups (and their variable is then not a constant).
pub(crate) const VECTOR_UNROLL_LIMIT: i64 = 64;

/// How a temporary is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TilePlan {
    /// In memory (stack or heap).
    Memory,
    /// One SSA variable per element.
    Scalars,
    /// One f32x4 SSA variable per group of four elements.
    Groups,
}

/// Whether a loop is emitted with its variable bound to constants, inside unrolled loops that
/// make `copies` copies of it.
pub(crate) fn binds_constants(kind: LoopKind, extent: i64, copies: i64) -> bool {
    extent == 1
        || (kind == LoopKind::Unrolled && unrolls_within_budget(extent, copies))
        || (kind == LoopKind::Vectorized && extent <= VECTOR_UNROLL_LIMIT)
}

/// Decides how to store `buffer`, allocated around `body`, given which variables are already
/// constants where the allocation is emitted and the copies the unrolled loops around it make.
pub(crate) fn plan(
    nest: &LoopNest,
    buffer: BufferId,
    body: &Stmt,
    is_constant: &dyn Fn(VarId) -> bool,
    copies: i64,
) -> TilePlan {
    let decl = nest.buffer(buffer);
    if decl.len() > MAX_TILE_ELEMENTS {
        return TilePlan::Memory;
    }
    let mut walker = Walker {
        buffer,
        is_constant,
        inner_constants: Vec::new(),
        vector_vars: Vec::new(),
        in_parallel: false,
        copies,
        promotable: true,
        touched_by_vectors: false,
    };
    walker.stmt(body);
    match (
        walker.promotable,
        walker.touched_by_vectors && decl.dtype == DType::F32,
    ) {
        (false, _) => TilePlan::Memory,
        (true, true) => TilePlan::Groups,
        (true, false) => TilePlan::Scalars,
    }
}

struct Walker<'a> {
    buffer: BufferId,
    is_constant: &'a dyn Fn(VarId) -> bool,
    inner_constants: Vec<VarId>,
    vector_vars: Vec<VarId>,
    in_parallel: bool,
    /// Copies the enclosing unrolled loops make (as the code generator counts them).
    copies: i64,
    promotable: bool,
    touched_by_vectors: bool,
}

impl Walker<'_> {
    fn access(&mut self, indices: &[looptune_ir::IndexExpr]) {
        if self.in_parallel {
            // The parallel body is another function; it cannot see our SSA variables.
            self.promotable = false;
        }
        for index in indices {
            index.for_each_var(&mut |var| {
                if !((self.is_constant)(var) || self.inner_constants.contains(&var)) {
                    self.promotable = false;
                }
                if self.vector_vars.contains(&var) {
                    self.touched_by_vectors = true;
                }
            });
        }
    }

    fn value(&mut self, value: &ValueExpr) {
        let mut accesses = Vec::new();
        value.for_each_load(&mut |load| {
            if load.buffer == self.buffer {
                accesses.push(load.indices.clone());
            }
        });
        for indices in accesses {
            self.access(&indices);
        }
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match stmt {
            Stmt::For(lp) => {
                let constant = binds_constants(lp.kind, lp.extent, self.copies);
                let unrolled = lp.kind == LoopKind::Unrolled && constant && lp.extent > 1;
                let vector = lp.kind == LoopKind::Vectorized && constant && lp.extent > 1;
                let parallel = lp.kind == LoopKind::Parallel && lp.extent > 1;
                if constant {
                    self.inner_constants.push(lp.var);
                }
                if vector {
                    self.vector_vars.push(lp.var);
                }
                let (was_parallel, outer_copies) = (self.in_parallel, self.copies);
                self.in_parallel |= parallel;
                if unrolled {
                    self.copies = outer_copies.max(1) * lp.extent;
                }
                self.stmt(&lp.body);
                self.in_parallel = was_parallel;
                self.copies = outer_copies;
                if vector {
                    self.vector_vars.pop();
                }
                if constant {
                    self.inner_constants.pop();
                }
            }
            Stmt::Seq(stmts) => stmts.iter().for_each(|stmt| self.stmt(stmt)),
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                if *buffer == self.buffer {
                    self.access(indices);
                }
                self.value(value);
            }
            Stmt::If { cond, then } => {
                let mut accesses = Vec::new();
                cond.walk_values(&mut |value| {
                    if let ValueExpr::Load(load) = value {
                        if load.buffer == self.buffer {
                            accesses.push(load.indices.clone());
                        }
                    }
                });
                for indices in accesses {
                    self.access(&indices);
                }
                self.stmt(then);
            }
            Stmt::Alloc { body, .. } => self.stmt(body),
        }
    }
}
