//! What a measurement does: how often a kernel runs, how results are checked, where it runs.
//!
//! The defaults follow TVM's time evaluator (the protocol AutoTVM's published numbers use): one
//! warm-up call, `number` calls per repeat grown until a repeat lasts `min_repeat_ms`, five
//! repeats, the median reported. [`MeasureOptions::quick`] trades precision for speed in tests.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Where candidate kernels run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum Isolation {
    /// In a worker process: a crash becomes `RuntimeError`, a hang `Timeout`, and the tuner goes
    /// on (design invariant 5). The default.
    #[default]
    Worker,
    /// In the caller's process. Faster to start and easier to debug, but a crashing candidate
    /// takes the caller down with it and a hanging one hangs it: the timeout is only checked
    /// between kernel calls. Use it for trusted kernels (benchmarks, the CLI's `run`).
    InProcess,
}

/// How a kernel's output is compared with the reference before its time counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum CheckMode {
    /// The whole output against the reference interpreter when the program is small enough for
    /// it (see [`crate::measure::check::FULL_CHECK_POINTS`]), a sample of points otherwise.
    #[default]
    Auto,
    /// Always the whole output, however long the interpreter takes.
    Full,
    /// Always a sample of about `points` elements per output: every corner, the first and last
    /// index of each dimension with random others, and random points.
    Sampled {
        /// How many points to aim for per output.
        points: usize,
    },
}

/// The options of a [`crate::measure::Measurer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureOptions {
    /// Calls per repeat to start from; grown (at least doubling) until one repeat lasts
    /// `min_repeat_ms`. With `flush_cache` it is used as is.
    pub number: usize,
    /// Timed repeats; the median and minimum over them are reported.
    pub repeat: usize,
    /// The shortest a repeat may last, in milliseconds, so that timer resolution and one-off
    /// effects vanish in the average.
    pub min_repeat_ms: f64,
    /// Untimed calls before timing (code and data into the caches, the thread pool awake). The
    /// correctness check's call comes before these.
    pub warmup: usize,
    /// The longest one candidate (compile, check and timing) may take. A worker that has not
    /// replied by then (plus a small grace) is killed.
    pub timeout: Duration,
    /// Write a buffer larger than the last-level cache before every timed call, outside the
    /// timed interval, so each call starts from cold caches.
    pub flush_cache: bool,
    /// Idle time before each candidate, so that one candidate's heat (clock throttling) does not
    /// slow the next.
    pub cooldown: Duration,
    /// Where kernels run.
    pub isolation: Isolation,
    /// How outputs are checked.
    pub check: CheckMode,
    /// Timing in stages: how a candidate far slower than the best known one is recorded from a
    /// first short timing instead of the whole protocol.
    pub staging: Staging,
}

/// Timing in two stages (issue 16's cheap trials). A candidate is first timed by one repeat of
/// at least `first_stage_ms`; when its caller said how fast the best candidate of the same
/// program is ([`crate::measure::MeasureInput::best_s`]) and this one is under `cutoff` of that
/// throughput, its costs are that one repeat, marked [`crate::measure::Costs::short`], and it is
/// not timed further. Every other candidate goes on to the whole protocol (the first stage's
/// repeat counts as its first repeat when it lasted `min_repeat_ms`).
///
/// A short timing can only be wrong by the noise of one repeat: a candidate is cut when it
/// looks more than `1 / cutoff` times slower than the best, so with the default of one half it
/// would have to run twice as fast as it was timed to even tie with the best. The best config
/// of a run is therefore never one timed short.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Staging {
    /// The fraction of the best throughput under which a candidate stops after the first stage;
    /// 0 turns staging off (every candidate gets the whole protocol).
    pub cutoff: f64,
    /// The shortest the first stage's repeat may last, in milliseconds.
    pub first_stage_ms: f64,
}

impl Staging {
    /// No staging: every candidate is timed by the whole protocol.
    pub const OFF: Staging = Staging {
        cutoff: 0.0,
        first_stage_ms: 0.0,
    };

    /// Whether a first stage can stop a candidate.
    pub fn is_on(&self) -> bool {
        self.cutoff > 0.0
    }
}

impl Default for Staging {
    /// Candidates under half the best throughput stop after a first repeat of 20 ms: as long
    /// as a repeat of [`MeasureOptions::tuning`], so that a candidate that goes on counts it as
    /// its first repeat and staging costs it nothing.
    fn default() -> Staging {
        Staging {
            cutoff: 0.5,
            first_stage_ms: 20.0,
        }
    }
}

impl Default for MeasureOptions {
    fn default() -> MeasureOptions {
        MeasureOptions {
            number: 1,
            repeat: 5,
            min_repeat_ms: 50.0,
            warmup: 1,
            timeout: Duration::from_secs(10),
            flush_cache: false,
            cooldown: Duration::ZERO,
            isolation: Isolation::Worker,
            check: CheckMode::Auto,
            staging: Staging::default(),
        }
    }
}

/// The longest `min_repeat_ms` accepted: one hour. A repeat is a few calls of one kernel;
/// anything longer is a typo, and a `Duration` cannot hold every finite f64.
pub const MAX_MIN_REPEAT_MS: f64 = 3_600_000.0;

/// The longest `timeout` accepted: one week, so that adding it to an `Instant` cannot overflow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// An option value a measurer cannot work with.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum OptionsError {
    /// `number` or `repeat` was zero.
    #[error("measure option `{option}` must be at least 1, got {value}")]
    ZeroCount {
        /// The option's name.
        option: &'static str,
        /// The value given.
        value: usize,
    },
    /// `min_repeat_ms` was negative, NaN, infinite or more than [`MAX_MIN_REPEAT_MS`].
    #[error(
        "measure option `min_repeat_ms` must be a finite number from 0 to {MAX_MIN_REPEAT_MS}, got {value}"
    )]
    MinRepeat {
        /// The value given.
        value: f64,
    },
    /// `timeout` was zero.
    #[error("measure option `timeout` must be positive, got {value:?}")]
    ZeroTimeout {
        /// The value given.
        value: Duration,
    },
    /// `timeout` was longer than [`MAX_TIMEOUT`].
    #[error("measure option `timeout` must be at most {MAX_TIMEOUT:?}, got {value:?}")]
    LongTimeout {
        /// The value given.
        value: Duration,
    },
    /// The staging cutoff was not a fraction from 0 (off) to below 1, or the first stage's
    /// minimum length was negative, NaN or more than [`MAX_MIN_REPEAT_MS`].
    #[error(
        "measure option `staging` needs a cutoff from 0 (off) to below 1 and a first stage from 0 to {MAX_MIN_REPEAT_MS} ms, got cutoff {cutoff} and first stage {first_stage_ms} ms"
    )]
    Staging {
        /// The cutoff given.
        cutoff: f64,
        /// The first stage's length given.
        first_stage_ms: f64,
    },
    /// A sampled check with no points.
    #[error("check mode `Sampled` needs at least 1 point, got {points}")]
    NoSamplePoints {
        /// The value given.
        points: usize,
    },
}

impl MeasureOptions {
    /// Cheap settings for tests and smoke runs: one warm-up call, three repeats of at least
    /// 1 ms, a 5 s timeout. Numbers measured this way are noisy.
    pub fn quick() -> MeasureOptions {
        MeasureOptions {
            repeat: 3,
            min_repeat_ms: 1.0,
            timeout: Duration::from_secs(5),
            ..MeasureOptions::default()
        }
    }

    /// The protocol of a tuning run's trials: three repeats of at least 20 ms, staged. Measured
    /// on the Zen 3 host (docs/benchmarks.md, "Cheap trials"): the same six 512^3 matmul
    /// configs measured six times each, in one process per protocol, varied by a median 5-6%
    /// (coefficient of variation) with this protocol and 6-7% with the default five repeats of
    /// 50 ms, while the whole machine's speed moved by up to 15% between processes. Longer
    /// timing does not buy precision there; the finalists' side-by-side rounds do.
    pub fn tuning() -> MeasureOptions {
        MeasureOptions {
            repeat: 3,
            min_repeat_ms: 20.0,
            ..MeasureOptions::default()
        }
    }

    /// The same options with `isolation`.
    pub fn with_isolation(mut self, isolation: Isolation) -> MeasureOptions {
        self.isolation = isolation;
        self
    }

    /// The same options with `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> MeasureOptions {
        self.timeout = timeout;
        self
    }

    /// The same options with `check`.
    pub fn with_check(mut self, check: CheckMode) -> MeasureOptions {
        self.check = check;
        self
    }

    /// The same options with `staging`.
    pub fn with_staging(mut self, staging: Staging) -> MeasureOptions {
        self.staging = staging;
        self
    }

    /// Checks that every value is usable, naming the first that is not.
    pub fn validate(&self) -> Result<(), OptionsError> {
        for (option, value) in [("number", self.number), ("repeat", self.repeat)] {
            if value == 0 {
                return Err(OptionsError::ZeroCount { option, value });
            }
        }
        if !(self.min_repeat_ms.is_finite()
            && (0.0..=MAX_MIN_REPEAT_MS).contains(&self.min_repeat_ms))
        {
            return Err(OptionsError::MinRepeat {
                value: self.min_repeat_ms,
            });
        }
        if self.timeout.is_zero() {
            return Err(OptionsError::ZeroTimeout {
                value: self.timeout,
            });
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(OptionsError::LongTimeout {
                value: self.timeout,
            });
        }
        let Staging {
            cutoff,
            first_stage_ms,
        } = self.staging;
        if !((0.0..1.0).contains(&cutoff) && (0.0..=MAX_MIN_REPEAT_MS).contains(&first_stage_ms)) {
            return Err(OptionsError::Staging {
                cutoff,
                first_stage_ms,
            });
        }
        if let CheckMode::Sampled { points: 0 } = self.check {
            return Err(OptionsError::NoSamplePoints { points: 0 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_quick_preset_are_valid() {
        assert_eq!(MeasureOptions::default().validate(), Ok(()));
        assert_eq!(MeasureOptions::quick().validate(), Ok(()));
        assert_eq!(MeasureOptions::tuning().validate(), Ok(()));
        assert_eq!(MeasureOptions::default().isolation, Isolation::Worker);
    }

    #[test]
    fn bad_values_are_named() {
        let options = MeasureOptions {
            repeat: 0,
            ..MeasureOptions::quick()
        };
        let error = options.validate().unwrap_err();
        assert_eq!(
            error.to_string(),
            "measure option `repeat` must be at least 1, got 0"
        );
        let options = MeasureOptions {
            min_repeat_ms: f64::NAN,
            ..MeasureOptions::quick()
        };
        assert!(matches!(
            options.validate(),
            Err(OptionsError::MinRepeat { .. })
        ));
        let options = MeasureOptions {
            min_repeat_ms: 1e300,
            ..MeasureOptions::quick()
        };
        assert!(matches!(
            options.validate(),
            Err(OptionsError::MinRepeat { .. })
        ));
        let options = MeasureOptions::quick().with_timeout(Duration::from_secs(u64::MAX));
        assert!(matches!(
            options.validate(),
            Err(OptionsError::LongTimeout { .. })
        ));
        for (cutoff, first_stage_ms) in [(1.0, 10.0), (-0.1, 10.0), (f64::NAN, 10.0), (0.5, -1.0)] {
            let options = MeasureOptions::quick().with_staging(Staging {
                cutoff,
                first_stage_ms,
            });
            assert!(
                matches!(options.validate(), Err(OptionsError::Staging { .. })),
                "{cutoff} {first_stage_ms}"
            );
        }
        assert_eq!(
            MeasureOptions::quick()
                .with_staging(Staging::OFF)
                .validate(),
            Ok(())
        );
        let options = MeasureOptions::quick().with_timeout(Duration::ZERO);
        assert!(matches!(
            options.validate(),
            Err(OptionsError::ZeroTimeout { .. })
        ));
    }
}
