//! The loop IR: the one contract between the front end and every back end.
//!
//! A [`LoopNest`] is what lowering produces from a schedule, what the reference interpreter runs,
//! what the JIT compiles and what the cost model reads features from. It is deliberately small:
//! counted loops from zero with constant extents (static shapes make every extent known), stores
//! of value expressions, guards, scoped temporary buffers and sequences.
//!
//! Semantics a back end must keep:
//! - Buffers are dense and row-major; indices are checked by the verifier, not by back ends.
//! - A loop runs its body for `var = 0, 1, ..., extent - 1`. The [`LoopKind`] is a request about
//!   how, never about what: an interpreter may run every loop serially and be correct.
//! - A [`LoopKind::Vectorized`] loop has no loop inside it; its iterations are independent.
//! - A [`LoopKind::Parallel`] loop is not nested in another parallel loop; its iterations are
//!   independent and write disjoint elements.
//! - `Select` evaluates only the chosen operand (see [`ValueExpr::Select`]).
//! - Both operands of `&&` and `||` in a [`Cond`] may be evaluated (no short circuit is
//!   promised), so every load inside a condition must be in bounds on its own.
//! - `Fma` may be fused (one rounding) or not; the interpreter computes it in `f64` and rounds
//!   on store, and comparisons against it allow for either.

use crate::dtype::DType;
use crate::expr::{BufferId, Cond, IndexExpr, ValueExpr, VarId};
use serde::{Deserialize, Serialize};

/// Copies of one body that nested unrolled loops may make at most, on every backend: an unrolled
/// loop inside unrolled loops multiplies the code (three nested loops of 64 would make 262,144
/// copies, a function gcc spends minutes on), so a backend emits one that would take the
/// product past this as an ordinary loop. Register tiles stay far below it (a few dozen copies).
pub const UNROLL_BUDGET: i64 = 1024;

/// Whether an unrolled loop of `extent` iterations, inside unrolled loops that already make
/// `copies` copies of it (0 or 1: none), is emitted unrolled within [`UNROLL_BUDGET`].
pub fn unrolls_within_budget(extent: i64, copies: i64) -> bool {
    copies.max(1).saturating_mul(extent) <= UNROLL_BUDGET
}

/// How a loop is to be executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoopKind {
    /// An ordinary counted loop.
    Serial,
    /// Emit the body `extent` times with the variable replaced by constants.
    Unrolled,
    /// Execute the iterations as SIMD lanes.
    Vectorized,
    /// Spread the iterations over threads.
    Parallel,
}

impl LoopKind {
    /// The keyword used by the printer.
    pub fn keyword(self) -> &'static str {
        match self {
            LoopKind::Serial => "for",
            LoopKind::Unrolled => "unroll",
            LoopKind::Vectorized => "vectorize",
            LoopKind::Parallel => "parallel",
        }
    }
}

/// Where a buffer's storage comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BufferRole {
    /// Supplied by the caller, read only.
    Input,
    /// Supplied by the caller, written by the kernel.
    Output,
    /// Owned by the kernel, live inside the [`Stmt::Alloc`] that declares it. Small temporaries
    /// indexed by constants after unrolling (register tiles) are meant to live in registers.
    Temp,
}

/// A buffer the nest reads or writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferDecl {
    /// A readable name, unique within the nest.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The extent of each dimension; the buffer holds their product elements.
    pub shape: Vec<i64>,
    /// Input, output or temporary.
    pub role: BufferRole,
}

impl BufferDecl {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product::<i64>().max(0) as usize
    }

    /// Whether the buffer has no elements (never true for a verified nest).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row-major strides, in elements.
    pub fn strides(&self) -> Vec<i64> {
        let mut strides = vec![1; self.shape.len()];
        for dim in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[dim] = strides[dim + 1] * self.shape[dim + 1];
        }
        strides
    }
}

/// A counted loop `for var in 0..extent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Loop {
    /// The loop counter.
    pub var: VarId,
    /// The trip count, at least 1 in a simplified nest.
    pub extent: i64,
    /// How to execute it.
    pub kind: LoopKind,
    /// What each iteration does.
    pub body: Stmt,
}

/// A statement of the loop IR.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// A counted loop.
    For(Box<Loop>),
    /// Statements executed in order.
    Seq(Vec<Stmt>),
    /// `buffer[indices] = value`.
    Store {
        /// The buffer written.
        buffer: BufferId,
        /// One index per dimension.
        indices: Vec<IndexExpr>,
        /// The value stored.
        value: ValueExpr,
    },
    /// Runs `then` only when `cond` holds (split tails, padding).
    If {
        /// The guard.
        cond: Cond,
        /// The guarded statement.
        then: Box<Stmt>,
    },
    /// Declares the storage of a [`BufferRole::Temp`] buffer for the duration of `body`. Its
    /// contents start undefined.
    Alloc {
        /// The buffer allocated.
        buffer: BufferId,
        /// Where it is live.
        body: Box<Stmt>,
    },
}

impl Stmt {
    /// An empty statement.
    pub fn nop() -> Stmt {
        Stmt::Seq(Vec::new())
    }

    /// Whether the statement does nothing.
    pub fn is_nop(&self) -> bool {
        matches!(self, Stmt::Seq(stmts) if stmts.iter().all(Stmt::is_nop))
    }

    /// Calls `visit` on this statement and every statement nested in it, outermost first.
    pub fn walk(&self, visit: &mut dyn FnMut(&Stmt)) {
        visit(self);
        match self {
            Stmt::For(body) => body.body.walk(visit),
            Stmt::Seq(stmts) => stmts.iter().for_each(|stmt| stmt.walk(visit)),
            Stmt::Store { .. } => {}
            Stmt::If { then, .. } => then.walk(visit),
            Stmt::Alloc { body, .. } => body.walk(visit),
        }
    }

    /// Whether any loop is nested in this statement (or is this statement).
    pub fn contains_loop(&self) -> bool {
        let mut found = false;
        self.walk(&mut |stmt| found |= matches!(stmt, Stmt::For(_)));
        found
    }
}

/// A variable's name, for printing and error messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VarDecl {
    /// The name, unique within the nest.
    pub name: String,
}

/// A lowered kernel: buffers, variables and the statement that computes the outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopNest {
    /// The kernel's name, for printing and symbol names.
    pub name: String,
    /// Every buffer, indexed by [`BufferId`].
    pub buffers: Vec<BufferDecl>,
    /// Every variable, indexed by [`VarId`].
    pub vars: Vec<VarDecl>,
    /// The caller-supplied inputs, in call order.
    pub inputs: Vec<BufferId>,
    /// The caller-supplied outputs, in call order (after the inputs).
    pub outputs: Vec<BufferId>,
    /// The computation.
    pub body: Stmt,
}

impl LoopNest {
    /// The declaration of `buffer`.
    pub fn buffer(&self, buffer: BufferId) -> &BufferDecl {
        &self.buffers[buffer.index()]
    }

    /// The name of `var`.
    pub fn var_name(&self, var: VarId) -> &str {
        &self.vars[var.index()].name
    }

    /// The buffers of the call signature: inputs, then outputs.
    pub fn params(&self) -> impl Iterator<Item = BufferId> + '_ {
        self.inputs.iter().chain(self.outputs.iter()).copied()
    }
}
