//! `looptune-runtime`: what every backend shares, and measurement that does not care which
//! backend compiled a kernel.
//!
//! The crate is shaped around one promise: everything that executes generated code goes through
//! [`Kernel::call`], which checks the buffers it is given against the nest the kernel was
//! compiled from. Backends (`looptune-jit` for Cranelift, `looptune-cc` for C) produce a
//! [`Kernel`] from an entry address and the thing that owns the code; nothing else here names a
//! code generator.
//!
//! - [`target`] describes the host (architecture, CPU model, ISA features, threads) in a form the
//!   tuning log can record.
//! - [`backend`] is the seam: the object-safe [`Backend`] trait, a backend's [`BackendId`] (what
//!   a record stores) and [`BackendSpec`] (how a worker process rebuilds it).
//! - [`kernel`] is the safe call API; [`runtime`] the table of host functions kernels call back
//!   into (parallel-for on a rayon pool, heap temporaries), shared by every backend.
//! - [`measure`] compiles, checks and times candidates with any backend, by default in a worker
//!   process so that a crashing or hanging kernel costs one error record, not the tuning run.
//! - [`memory`] bounds what a measurement may allocate, before it allocates anything.
//! - [`peak`] times a backend's FMA ceiling loop with one protocol.

#![deny(missing_docs)]

pub mod backend;
#[cfg(feature = "baseline")]
pub mod baseline;
pub mod error;
pub mod kernel;
pub mod measure;
pub mod memory;
pub mod peak;
pub mod runtime;
pub mod target;

pub use backend::{Backend, BackendFactory, BackendId, BackendSpec};
pub use error::{CallError, CompileError, PeakError};
pub use kernel::Kernel;
pub use measure::{
    Costs, MeasureError, MeasureErrorKind, MeasureInput, MeasureOptions, MeasureResult, Measurer,
    WorkerCommand,
};
pub use memory::{MemoryError, MemoryLimit};
pub use peak::PeakResult;
pub use target::{IsaFeatures, Target};
