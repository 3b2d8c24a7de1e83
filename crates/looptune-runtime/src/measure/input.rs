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
}

impl MeasureInput {
    /// A candidate without an injected fault.
    pub fn new(program: Program, nest: LoopNest, flops: f64) -> MeasureInput {
        MeasureInput {
            program,
            nest,
            flops,
            fault: None,
        }
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
