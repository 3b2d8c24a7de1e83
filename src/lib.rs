//! `looptune`: makes tensor programs fast on the host CPU by search, in the manner of AutoTVM.
//!
//! This package is deliberately thin (as ripgrep's root package is): it holds the `looptune`
//! command-line tool and this facade, which only re-exports the workspace's library crates so
//! that a user depends on one crate and finds the most-used types at its top level. All logic
//! lives in the member crates, each doing one job:
//!
//! - [`ir`]: compute definitions, the operator library, schedules, lowering to the loop IR, the
//!   simplifier, verifier, printer and the reference interpreter.
//! - [`runtime`]: what every backend shares: the host [`Target`], the [`Backend`] trait, the
//!   safe [`Kernel::call`], and the [`Measurer`] that checks and times kernels of any backend
//!   (in a worker process by default).
//! - [`jit`]: the Cranelift backend (128-bit vectors, milliseconds to compile, no toolchain).
//! - [`cc`]: the C backend (full-width vectors through the system C compiler, cached objects).
//! - [`backend`]: choosing between them (`auto`, `c`, `cranelift`) and the worker that serves
//!   both.
//! - [`space`]: knobs, config spaces and one schedule template per operator.
//! - [`log`]: the JSON-lines tuning log, queries over it, deploy-time dispatch and the bincode
//!   deploy database.
//! - `tune` (feature `tune`, on by default): tuners, the XGBoost cost model and the tuning
//!   loop. Without it nothing links XGBoost or a command-line crate.
//!
//! Four modules of this package are policy over those crates rather than re-exports, because
//! only this package knows both backends: `tuning` (feature `tune`: [`Tuning`], the
//! high-level tuning API), [`measuring`] (the measurer and where its worker process comes
//! from), [`deploy`] (a log's or database's best kernel for a workload, or a said fallback)
//! and [`export`] (a log's best kernels as a standalone Rust crate, through the C backend).
//! The README's library example, tuning a matmul and calling its best kernel, is a doc test of
//! this crate.
//!
//! ```
//! use looptune::{lower, Backend, CraneliftBackend, Layout, Schedule, Target, Workload};
//!
//! let workload: Workload = "matmul:m=8,n=8,k=8".parse()?;
//! let program = workload.program(&Layout::default())?;
//! let nest = lower(&Schedule::new(&program))?;
//! assert!(nest.to_string().starts_with("kernel matmul"));
//!
//! // Compile it for this machine and call it on your own buffers.
//! let kernel = CraneliftBackend::new().compile(&nest, &Target::host())?;
//! let (a, b) = (vec![1.0f32; 64], vec![2.0f32; 64]);
//! let mut c = vec![0.0f32; 64];
//! kernel.call(&[&a, &b], &mut [&mut c])?;
//! assert!(c.iter().all(|&x| x == 16.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod deploy;
mod error_line;
pub mod export;
pub mod measuring;
pub mod task;
#[cfg(feature = "tune")]
pub mod tuning;

pub use looptune_cc as cc;
pub use looptune_ir as ir;
pub use looptune_jit as jit;
pub use looptune_log as log;
pub use looptune_runtime as runtime;
pub use looptune_space as space;
#[cfg(feature = "tune")]
pub use looptune_tune as tune;

pub use backend::BackendChoice;
pub use deploy::{
    best_config, best_kernel, DeployError, Deployed, KernelCache, Origin, PrepackError,
    PrepackedConv,
};
pub use error_line::error_line;
pub use export::{export_c, ExportCError, ExportReport};
pub use looptune_cc::CBackend;
pub use looptune_ir::{lower, IrError, Layout, LoopNest, LowerError, Program, Schedule, Workload};
pub use looptune_jit::CraneliftBackend;
pub use looptune_log::{
    DeployDb, Dispatcher, LogError, LogWriter, Record, RecordContext, TargetFingerprint,
};
pub use looptune_runtime::{
    Backend, Kernel, MeasureInput, MeasureOptions, MeasureResult, Measurer, Target,
};
pub use looptune_space::{Config, ConfigSpace, CustomTask, Task, TaskKey};
#[cfg(feature = "tune")]
pub use looptune_tune::{Observer, Progress, StopReason, TuneOptions, TuneReport, TunerKind};
pub use measuring::{serve_worker_if_requested, WorkerChoice};
pub use task::{Tunable, TunedTask};
#[cfg(feature = "tune")]
pub use tuning::{Tuning, TuningError, TuningReport};

/// The README's code blocks, run as doc tests: its library example tunes a small matmul and
/// calls its best kernel, so the README cannot drift from the API.
#[cfg(all(doctest, feature = "tune"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
