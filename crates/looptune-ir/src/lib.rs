//! `looptune-ir`: what a tensor program is, how it is scheduled, and what it lowers to.
//!
//! The crate holds the front end and the loop IR side by side, the way Cranelift keeps its IR,
//! verifier, printer and interpreter together: a compute definition ([`program`], with the
//! operator library in [`ops`]) is scheduled ([`schedule`]), lowered ([`lower`](mod@lower)) to a
//! [`LoopNest`] ([`loop_nest`]), simplified ([`simplify`](mod@simplify)), checked ([`verify`](mod@verify)), printed
//! ([`print`](mod@print)) and run by the reference interpreter ([`interp`]). The direct evaluator
//! ([`eval`]) computes a program without any schedule and is the oracle the interpreter itself
//! is tested against.
//!
//! It knows nothing about code generation: back ends consume [`LoopNest`] and nothing else.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod data;
pub mod dtype;
pub mod error;
pub mod eval;
pub mod expr;
pub mod interp;
pub mod loop_nest;
pub mod lower;
pub mod ops;
pub mod partition;
pub mod print;
pub mod program;
pub mod random;
pub mod recipes;
pub mod schedule;
pub mod simplify;
pub mod verify;
mod workloads;

#[cfg(test)]
mod test_nests;

pub use data::{Data, DataMut, DataRef};
pub use dtype::{DType, Scalar};
pub use error::{IrError, LowerError, ScheduleError};
pub use expr::{
    BinaryOp, BufferId, CmpOp, Cond, IndexExpr, IndexOp, Load, UnaryOp, ValueExpr, VarId,
};
pub use interp::InterpError;
pub use loop_nest::{
    unrolls_within_budget, BufferDecl, BufferRole, Loop, LoopKind, LoopNest, Stmt, VarDecl,
    UNROLL_BUDGET,
};
pub use lower::lower;
pub use ops::{Layout, Workload};
pub use print::Printed;
pub use program::{Program, ProgramBuilder, Tensor};
pub use schedule::{AxisId, Schedule, StageId};
pub use simplify::simplify;
pub use verify::{verify, VerifyError};
