//! Measuring candidates: compile, check against the reference, time, in isolation.
//!
//! A [`Measurer`] takes batches of [`MeasureInput`]s (a program and a candidate nest) and
//! returns a [`MeasureResult`] for each: [`Costs`] (median and minimum seconds per call), or a
//! [`MeasureError`] whose [`MeasureErrorKind`] the tuning log stores. Every step is here, each in
//! its own module:
//!
//! - `options`: the knobs, TVM's defaults (`number`, `repeat`, `min_repeat_ms`, warm-up,
//!   timeout, cache flush, cooldown), isolation and check mode.
//! - [`check`]: the reference (interpreter on the whole output for small programs, direct
//!   evaluator on a sample of corners, edges and random points for large ones) and the
//!   comparison that makes a kernel's time count only if its answer is right.
//! - `timing`: warm-up, `number` grown until a repeat lasts `min_repeat_ms`, repeats, median.
//! - `pipeline`: verify, compile, check, time one candidate in the current process.
//! - `protocol` and `worker`: the worker process. By default the pipeline runs in a child
//!   process the measurer spawns from a [`WorkerCommand`] and talks to over pipes (length-prefixed
//!   bincode 2 frames), so a kernel that crashes becomes `RuntimeError` naming the signal and
//!   one that hangs becomes `Timeout`, the worker is restarted and the run goes on (design
//!   invariant 5). [`serve_stdio`] is the worker's side; a binary's `main` calls it.
//!
//! **Invariant:** measurement is the only code that executes generated machine code, and by
//! default it does so in another process.

pub mod check;
mod input;
mod measurer;
mod options;
mod pipeline;
mod protocol;
mod result;
mod timing;
mod worker;

pub use input::{Fault, MeasureInput};
pub use measurer::{Measurer, MeasurerError};
pub use options::{
    CheckMode, Isolation, MeasureOptions, OptionsError, Staging, MAX_MIN_REPEAT_MS, MAX_TIMEOUT,
};
pub use protocol::{ProtocolError, PROTOCOL_VERSION};
pub use result::{Costs, MeasureError, MeasureErrorKind, MeasureResult};
pub use timing::{time_in_process, TimingError};
pub use worker::{serve, serve_stdio, WorkerCommand, WorkerError};

/// The environment variable that lets a worker process honour [`MeasureInput::fault`]; it must
/// be set to `1` in the worker's environment ([`WorkerCommand::allow_fault_injection`]).
pub const FAULT_INJECTION_ENV: &str = "LOOPTUNE_ALLOW_FAULT_INJECTION";
