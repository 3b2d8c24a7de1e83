//! `looptune-ir`: what a tensor program is, how it is scheduled, and what it lowers to.
//!
//! The crate holds the front end and the loop IR side by side, the way Cranelift keeps its IR,
//! verifier, printer and interpreter together: a compute definition ([`program`]) is scheduled
//! ([`schedule`]), lowered ([`lower`]) to a [`LoopNest`] ([`loop_nest`]), simplified
//! ([`simplify`]), checked ([`verify`]), printed ([`print`]) and run by the reference interpreter
//! ([`interp`]). The direct evaluator ([`eval`]) computes a program without any schedule and is
//! the oracle the interpreter itself is tested against.
//!
//! It knows nothing about code generation: back ends consume [`LoopNest`] and nothing else.

#![deny(missing_docs)]

pub mod dtype;
pub mod expr;
pub mod interp;
pub mod loop_nest;
pub mod print;

#[cfg(test)]
mod test_nests;

pub use dtype::{DType, Scalar};
pub use expr::{
    BinaryOp, BufferId, CmpOp, Cond, IndexExpr, IndexOp, Load, UnaryOp, ValueExpr, VarId,
};
pub use interp::InterpError;
pub use loop_nest::{BufferDecl, BufferRole, Loop, LoopKind, LoopNest, Stmt, VarDecl};
pub use print::Printed;
