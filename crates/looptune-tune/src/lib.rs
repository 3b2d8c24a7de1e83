//! `looptune-tune`: search over a task's config space by measuring candidates.
//!
//! A [`Tuner`] proposes batches of configs and learns from their results; the tuning loop
//! ([`tune`]) turns each config into a kernel, has the [`Measurer`](looptune_runtime::Measurer)
//! check and time it (in a worker process by default), appends one record per candidate to the
//! tuning log, and stops on an explicit budget with a typed [`StopReason`], in the manner of
//! egg's `Runner`.
//!
//! Whole-model tuning ([`tune_model`]) runs a model's tasks under the [`TaskScheduler`]; a
//! [`Shard`] keeps a deterministic share of them ([`shard`]) so that many machines can tune one
//! model, each into its own log, merged afterwards by `looptune-log`.
//!
//! **Invariant:** the tuning log is the only persistent state of a tuning run: a rerun with the
//! same log skips every config already measured for the task and target and continues from the
//! best found.
//!
//! **Invariant:** tuners never see wall-clock time, only throughput of measured configs, so the
//! same seed makes the same proposals whatever the machine's load (the measurements differ).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chain;
pub mod cliquenet;
pub mod finalists;
pub mod model;
pub mod models;
pub mod noise;
pub mod scheduler;
pub mod shard;
pub mod shipped;
pub mod task;
pub mod tuner;
pub mod tuning;

pub use chain::{time_chain, time_chains, ChainError, ChainLayer};
pub use cliquenet::{CliqueBlock, CliqueConv, RunError};
pub use finalists::Finalists;
pub use model::{TransferSet, XgbTuner, XgbTunerOptions, XgbTunerStats};
pub use models::{Layer, Network};
pub use noise::Noise;
pub use scheduler::driver::{
    tune_model, ModelTask, ModelTuneError, ModelTuneOptions, ModelTuneReport,
};
pub use scheduler::{SchedulerOptions, TaskScheduler};
pub use shard::{partition, Shard, ShardError, ShardSpec, TaskCost};
pub use shipped::{reference_workloads, ShippedSet, SHIPPED, STANDALONE_WORKLOADS};
pub use task::{TuningTask, WorkloadTask};
pub use tuner::{
    BuiltTuner, GaOptions, GaTuner, GridTuner, RandomTuner, Trial, Tuner, TunerKind, UnknownTuner,
};
pub use tuning::{
    tune, Measure, NoLog, Observer, Progress, RecordSink, StopReason, TuneError, TuneOptions,
    TuneReport, TuningRun,
};
