//! `looptune-jit`: turns a [`LoopNest`](looptune_ir::LoopNest) into machine code for the host
//! CPU and calls it safely.
//!
//! The crate is shaped around one promise: everything that executes generated code goes through
//! [`Kernel::call`], which checks the buffers it is given against the nest it was compiled from.
//! All `unsafe` of looptune lives here, each block with the argument for why it is sound.
//!
//! - [`target`] describes the host (architecture, CPU model, ISA features, threads) in a form the
//!   tuning log can record, and builds the Cranelift ISA for it.
//! - [`codegen`] lowers the loop IR to Cranelift IR: unrolled loops become straight-line code,
//!   vectorized loops f32x4 code, small temporaries indexed by constants SSA variables (register
//!   tiles), parallel loops outlined functions run on a rayon pool.
//! - [`kernel`] owns a compiled module and is the safe call API.
//! - [`backend`] is the seam where a second code generator can be added.
//! - [`peak`] measures the backend's own f32x4 FMA ceiling on this host.
//! - [`measure`] compiles, checks and times candidates, by default in a worker process so that
//!   a crashing or hanging kernel costs one error record, not the tuning run.

#![deny(missing_docs)]

pub mod backend;
#[cfg(feature = "baseline")]
pub mod baseline;
pub mod codegen;
pub mod error;
pub mod kernel;
pub mod measure;
pub mod peak;
mod runtime;
pub mod target;

pub use backend::{Backend, CraneliftBackend};
pub use error::{CallError, CompileError, PeakError};
pub use kernel::Kernel;
pub use measure::{
    Costs, MeasureError, MeasureErrorKind, MeasureInput, MeasureOptions, MeasureResult, Measurer,
    WorkerCommand,
};
pub use peak::{measure_peak, PeakResult};
pub use target::{IsaFeatures, Target};
