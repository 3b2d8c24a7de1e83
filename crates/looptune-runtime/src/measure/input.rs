//! What is measured: a candidate's loop nest together with the program it must compute.
//!
//! The program travels with the nest because it is the specification: the reference the
//! kernel's output is compared with is computed from the program, never from the candidate.

use looptune_ir::{LoopNest, Program};
use serde::{Deserialize, Serialize};

/// One candidate to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureInput {
    /// The computation the nest must perform (the reference is derived from it).
    pub program: Program,
    /// The candidate: a lowering of some schedule of `program`.
    pub nest: LoopNest,
    /// Floating-point operations of one run, for throughput figures ([`super::Costs::gflops`]);
    /// zero when unknown.
    pub flops: f64,
    /// A deliberate failure, for testing the measurer's failure paths. Honoured only by a worker
    /// process started with `LOOPTUNE_ALLOW_FAULT_INJECTION=1` in its environment
    /// ([`super::FAULT_INJECTION_ENV`]); anywhere else a candidate carrying it is rejected as
    /// `InvalidConfig`, so it cannot take effect by accident.
    pub fault: Option<Fault>,
    /// Seconds per call of the best candidate of the same program known to the caller (a
    /// tuning run's best so far), if any: what the first stage of staged timing compares with
    /// ([`super::Staging`]). `None` times the candidate by the whole protocol.
    pub best_s: Option<f64>,
}

impl MeasureInput {
    /// A candidate without an injected fault.
    pub fn new(program: Program, nest: LoopNest, flops: f64) -> MeasureInput {
        MeasureInput {
            program,
            nest,
            flops,
            fault: None,
            best_s: None,
        }
    }

    /// The same candidate, to be compared with a best candidate taking `best_s` seconds per
    /// call (see [`MeasureInput::best_s`]); a value that is not a positive finite number is
    /// ignored.
    pub fn with_best(mut self, best_s: Option<f64>) -> MeasureInput {
        self.best_s = best_s.filter(|seconds| seconds.is_finite() && *seconds > 0.0);
        self
    }

    /// The same candidate carrying `fault` (tests only; see [`MeasureInput::fault`]).
    pub fn with_fault(mut self, fault: Fault) -> MeasureInput {
        self.fault = Some(fault);
        self
    }
}

/// A failure a worker can be asked to simulate when the candidate's kernel is first called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Fault {
    /// A store to an unmapped address: the worker dies of SIGSEGV.
    Segfault,
    /// An undefined instruction: the worker dies of SIGILL.
    IllegalInstruction,
    /// `abort()`: the worker dies of SIGABRT.
    Abort,
    /// The call never returns.
    Hang,
}
