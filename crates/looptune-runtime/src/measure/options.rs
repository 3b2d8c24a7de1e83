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
        let options = MeasureOptions::quick().with_timeout(Duration::ZERO);
        assert!(matches!(
            options.validate(),
            Err(OptionsError::ZeroTimeout { .. })
        ));
    }
}
