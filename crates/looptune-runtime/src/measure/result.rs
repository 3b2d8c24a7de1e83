//! What a measurement found: costs, or an error that says why there are none.
//!
//! Both derive serde because the tuning log stores them: a failed candidate is data (an error
//! record), never a panic and never the end of the run.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The timing of a kernel that passed its check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// The median over repeats of the seconds per call.
    pub median_s: f64,
    /// The fastest repeat's seconds per call.
    pub min_s: f64,
    /// Calls per repeat.
    pub number: usize,
    /// Repeats timed.
    pub repeat: usize,
    /// Seconds per call of every repeat, in the order they ran.
    pub all_s: Vec<f64>,
    /// Timed by the first stage only: the candidate was far slower than the best known one
    /// (see [`super::Staging`]), so `all_s` holds that one short repeat. Such costs rank a
    /// candidate well enough to leave it behind, never to pick it.
    #[serde(default)]
    pub short: bool,
}

impl Costs {
    /// The costs of a kernel doing `flops` operations per call at `gflops` GFLOP/s, as one
    /// repeat of one call: a throughput known without timing (a cache of earlier
    /// measurements, a synthetic record in a test). `gflops` must be positive.
    pub fn at_throughput(gflops: f64, flops: f64) -> Costs {
        let seconds = flops / (gflops * 1e9);
        Costs {
            median_s: seconds,
            min_s: seconds,
            number: 1,
            repeat: 1,
            all_s: vec![seconds],
            short: false,
        }
    }

    /// Throughput at the median time for a kernel doing `flops` floating-point operations per
    /// call, in GFLOP/s.
    pub fn gflops(&self, flops: f64) -> f64 {
        flops / self.median_s / 1e9
    }
}

/// Why a candidate has no costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MeasureErrorKind {
    /// The back end could not compile the nest.
    CompileError,
    /// The kernel crashed (the worker died of a signal or exited) or could not be called.
    RuntimeError,
    /// The candidate did not finish within the timeout.
    Timeout,
    /// The kernel's output differs from the reference.
    WrongAnswer,
    /// The candidate is malformed: its nest does not verify, does not fit its program, or the
    /// request cannot be honoured.
    InvalidConfig,
    /// Not the kernel's fault: the options of the run, the worker process, the machine's
    /// memory or another part of the environment failed. A record of this kind says nothing
    /// about the config, so a resumed run measures it again.
    Environment,
}

impl MeasureErrorKind {
    /// Whether the error says something about the candidate itself. Only such records count as
    /// measured when a run resumes; the others ([`MeasureErrorKind::Environment`]) are retried.
    pub fn is_the_candidates(self) -> bool {
        self != MeasureErrorKind::Environment
    }
}

impl fmt::Display for MeasureErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MeasureErrorKind::CompileError => "CompileError",
            MeasureErrorKind::RuntimeError => "RuntimeError",
            MeasureErrorKind::Timeout => "Timeout",
            MeasureErrorKind::WrongAnswer => "WrongAnswer",
            MeasureErrorKind::InvalidConfig => "InvalidConfig",
            MeasureErrorKind::Environment => "Environment",
        })
    }
}

/// A failed measurement: its kind and a message naming what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("{kind}: {message}")]
pub struct MeasureError {
    /// The category, for queries over the tuning log.
    pub kind: MeasureErrorKind,
    /// What happened, naming the offending value (the signal, the element, the buffer).
    pub message: String,
}

impl MeasureError {
    /// An error of `kind` with `message`.
    pub fn new(kind: MeasureErrorKind, message: impl Into<String>) -> MeasureError {
        MeasureError {
            kind,
            message: message.into(),
        }
    }
}

/// The result of measuring one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureResult {
    /// The costs, or why there are none.
    pub outcome: Result<Costs, MeasureError>,
    /// Time to compile the kernel, when compiling finished.
    pub compile_ms: Option<f64>,
    /// Time to run the kernel once and compare its output, when that finished.
    pub check_ms: Option<f64>,
    /// Time spent computing the reference for this candidate's program (zero when it was
    /// cached from an earlier candidate of the same program).
    pub reference_ms: f64,
    /// Output elements compared with the reference (all of them, or the sample).
    pub checked_elements: usize,
    /// Wall time of the whole candidate as the caller saw it: cooldown excluded, worker
    /// start-up, messages and reference included.
    pub total_ms: f64,
}

impl MeasureResult {
    /// A result known without measuring (see [`Costs::at_throughput`]): `outcome`, and no
    /// compile, check or reference time.
    pub fn known(outcome: Result<Costs, MeasureError>) -> MeasureResult {
        MeasureResult {
            outcome,
            compile_ms: None,
            check_ms: None,
            reference_ms: 0.0,
            checked_elements: 0,
            total_ms: 0.0,
        }
    }

    /// Whether the candidate has costs.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The error kind, if the candidate failed.
    pub fn error_kind(&self) -> Option<MeasureErrorKind> {
        self.outcome.as_ref().err().map(|error| error.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_their_kind_and_round_trip_through_json() {
        let error = MeasureError::new(MeasureErrorKind::Timeout, "no reply within 1 s");
        assert_eq!(error.to_string(), "Timeout: no reply within 1 s");
        let result = MeasureResult {
            outcome: Err(error),
            compile_ms: Some(1.5),
            check_ms: None,
            reference_ms: 0.0,
            checked_elements: 0,
            total_ms: 1000.0,
        };
        let text = serde_json::to_string(&result).expect("serializes");
        let back: MeasureResult = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, result);
        assert_eq!(back.error_kind(), Some(MeasureErrorKind::Timeout));
    }
}
