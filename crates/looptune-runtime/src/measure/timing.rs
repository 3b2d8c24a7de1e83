//! Timing a kernel: warm-up, calls per repeat grown to a minimum duration, repeats, median.
//!
//! The protocol is TVM's time evaluator. After `warmup` untimed calls, `number` calls are timed
//! together; while such a repeat lasts less than `min_repeat_ms`, `number` grows (at least
//! doubling, straight to the estimate when the last repeat says how many calls fit) and the
//! repeat is discarded. The first repeat long enough counts (unlike TVM, which discards it: for
//! a kernel slower than `min_repeat_ms` that saves a whole call), and further repeats are timed
//! until there are `repeat`; each yields seconds per call, and the median is reported because
//! noise on a shared machine only ever slows runs down, in bursts.
//!
//! With a cache flush, every call is preceded by writing a buffer larger than the last-level
//! cache and timed on its own, the flush outside the timed interval. `number` is then not grown:
//! each cold call is long enough for the clock, and growing it would multiply the untimed flush
//! work.
//!
//! Staged (see [`super::Staging`]): when the caller gives a cutoff, the growth first aims at a
//! short repeat of `first_stage_ms`; a candidate slower than the cutoff per call in that repeat
//! stops there, with costs marked `short`, and the others grow on to the whole protocol.
//!
//! The deadline is checked between calls, never inside one: only a worker process can be
//! interrupted in the middle of a call (by being killed).

use super::result::Costs;
use super::MeasureOptions;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// `number` never grows past this, so a kernel that takes no measurable time cannot keep the
/// growth loop running forever.
const MAX_NUMBER: usize = 1 << 30;

/// The smallest cache-flush buffer, whatever the detected last-level cache.
const MIN_FLUSH_BYTES: usize = 64 << 20;

/// Why timing stopped without costs.
#[derive(Debug, thiserror::Error)]
pub enum TimingError<E: std::error::Error + 'static> {
    /// A call failed.
    #[error("a timed call failed: {0}")]
    Call(#[source] E),
    /// The deadline passed; `calls` calls had completed.
    #[error("the timeout passed after {calls} calls")]
    Deadline {
        /// Calls completed when the deadline was noticed.
        calls: usize,
    },
}

/// A buffer larger than the last-level cache, written through to evict the kernel's data.
pub(crate) struct CacheFlusher {
    buffer: Vec<u8>,
}

impl CacheFlusher {
    /// A flusher of twice the last-level cache, at least 64 MiB.
    pub(crate) fn new() -> CacheFlusher {
        let bytes =
            last_level_cache_bytes().map_or(MIN_FLUSH_BYTES, |llc| (2 * llc).max(MIN_FLUSH_BYTES));
        CacheFlusher {
            buffer: vec![1; bytes],
        }
    }

    /// Writes one byte of every cache line of the buffer, so each line is fetched and dirtied,
    /// evicting whatever the caches held.
    pub(crate) fn flush(&mut self) {
        for line in self.buffer.chunks_mut(64) {
            line[0] = line[0].wrapping_add(1);
        }
        black_box(&mut self.buffer);
    }
}

/// The size of the highest-level cache the OS reports for CPU 0 (Linux sysfs), if any.
fn last_level_cache_bytes() -> Option<usize> {
    let mut largest = None;
    for index in 0..8 {
        let path = format!("/sys/devices/system/cpu/cpu0/cache/index{index}/size");
        let Ok(text) = std::fs::read_to_string(path) else {
            break;
        };
        let text = text.trim();
        let (digits, scale) = match text.strip_suffix('K') {
            Some(digits) => (digits, 1 << 10),
            None => match text.strip_suffix('M') {
                Some(digits) => (digits, 1 << 20),
                None => (text, 1),
            },
        };
        if let Ok(value) = digits.parse::<usize>() {
            largest = largest.max(Some(value * scale));
        }
    }
    largest
}

/// Times `call` in this process under the measurer's protocol (warm-up, calls per repeat grown
/// to `min_repeat_ms`, `repeat` repeats, median; no cache flush), giving up after
/// `options.timeout`: how a kernel is timed on a user's own buffers, and how a baseline such
/// as a peer library's GEMM is timed exactly as candidates are.
pub fn time_in_process<E: std::error::Error + 'static>(
    options: &MeasureOptions,
    call: impl FnMut() -> Result<(), E>,
) -> Result<Costs, TimingError<E>> {
    time_calls(options, deadline_after(options.timeout), None, None, call)
}

/// `timeout` from now, or a century from now when the sum does not fit in an `Instant`.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Times `call` under `options` (see the module documentation), giving up at `deadline`; with
/// `best_s`, the seconds per call of the best candidate known, staging stops a candidate under
/// `options.staging.cutoff` of its throughput after a first stage ([`super::Staging`]).
pub(crate) fn time_calls<E: std::error::Error + 'static>(
    options: &MeasureOptions,
    deadline: Instant,
    best_s: Option<f64>,
    mut flusher: Option<&mut CacheFlusher>,
    mut call: impl FnMut() -> Result<(), E>,
) -> Result<Costs, TimingError<E>> {
    let mut calls = 0usize;
    let check_deadline = |calls: usize| {
        if Instant::now() > deadline {
            Err(TimingError::Deadline { calls })
        } else {
            Ok(())
        }
    };
    for _ in 0..options.warmup {
        call().map_err(TimingError::Call)?;
        calls += 1;
        check_deadline(calls)?;
    }

    // One repeat of `number` calls: the timed duration (flushes excluded).
    let mut timed_repeat = |number: usize, calls: &mut usize| -> Result<Duration, E> {
        let elapsed = match flusher.as_deref_mut() {
            Some(flusher) => {
                let mut total = Duration::ZERO;
                for _ in 0..number {
                    flusher.flush();
                    let start = Instant::now();
                    call()?;
                    total += start.elapsed();
                }
                total
            }
            None => {
                let start = Instant::now();
                for _ in 0..number {
                    call()?;
                }
                start.elapsed()
            }
        };
        *calls += number;
        Ok(elapsed)
    };

    // Unvalidated options (a caller of `time_in_process`) may hold any f64: saturate rather than
    // panic.
    let to_duration = |ms: f64| {
        Duration::try_from_secs_f64(ms / 1e3).unwrap_or(if ms > 0.0 {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    };
    let min_repeat = to_duration(options.min_repeat_ms);
    // The first stage (staged timing): one repeat of at least `first_stage_ms`, never longer
    // than a whole repeat, after which a candidate slower than `cutoff_s` per call (`best_s`
    // over the cutoff fraction) stops.
    let mut cutoff_s = best_s
        .filter(|_| options.staging.is_on())
        .map(|best_s| best_s / options.staging.cutoff)
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0);
    let mut wanted = match cutoff_s {
        Some(_) => to_duration(options.staging.first_stage_ms).min(min_repeat),
        None => min_repeat,
    };
    let mut number = options.number;
    let mut all_s = Vec::with_capacity(options.repeat);
    // With a cache flush every repeat counts as it is; otherwise repeats count from the first
    // that lasted `min_repeat` (it ran the final `number` of warm calls, like those after it).
    let mut counting = options.flush_cache;
    while all_s.len() < options.repeat {
        let elapsed = timed_repeat(number, &mut calls).map_err(TimingError::Call)?;
        check_deadline(calls)?;
        let per_call = elapsed.as_secs_f64() / number as f64;
        let long_enough = |wanted: Duration| counting || elapsed >= wanted || number >= MAX_NUMBER;
        if !long_enough(wanted) {
            number = grown_number(number, elapsed, wanted);
            continue;
        }
        if let Some(cutoff) = cutoff_s.take() {
            if per_call > cutoff {
                return Ok(Costs {
                    median_s: per_call,
                    min_s: per_call,
                    number,
                    repeat: 1,
                    all_s: vec![per_call],
                    short: true,
                });
            }
            wanted = min_repeat;
            if !long_enough(wanted) {
                number = grown_number(number, elapsed, wanted);
                continue;
            }
        }
        counting = true;
        all_s.push(per_call);
    }
    let (median_s, min_s) = median_and_min(&all_s);
    Ok(Costs {
        median_s,
        min_s,
        number,
        repeat: options.repeat,
        all_s,
        short: false,
    })
}

/// The next `number`: at least double, or straight to 1.2 times the estimate of how many calls
/// fill `min_repeat` when the last repeat (of `number` calls lasting `elapsed`) gives one.
fn grown_number(number: usize, elapsed: Duration, min_repeat: Duration) -> usize {
    let doubled = number.saturating_mul(2);
    let estimate = if elapsed.is_zero() {
        doubled
    } else {
        let per_call = elapsed.as_secs_f64() / number as f64;
        (1.2 * min_repeat.as_secs_f64() / per_call)
            .ceil()
            .min(MAX_NUMBER as f64) as usize
    };
    doubled.max(estimate).min(MAX_NUMBER)
}

/// The median (the mean of the middle two for an even count) and the minimum of `values`, which
/// is not empty.
fn median_and_min(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    (median, sorted[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn options(number: usize, repeat: usize, min_repeat_ms: f64) -> MeasureOptions {
        MeasureOptions {
            number,
            repeat,
            min_repeat_ms,
            warmup: 2,
            ..MeasureOptions::quick()
        }
    }

    fn far_deadline() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn number_grows_until_a_repeat_lasts_min_repeat() {
        let mut calls = 0usize;
        let costs = time_calls(&options(1, 3, 2.0), far_deadline(), None, None, || {
            calls += 1;
            std::thread::sleep(Duration::from_micros(100));
            Ok::<(), Infallible>(())
        })
        .expect("timing succeeds");
        // A repeat of 2 ms needs several calls of at least 100 us (a sleep overshoots, so
        // the count is only bounded loosely).
        assert!(costs.number >= 2, "{costs:?}");
        assert!(costs.number as f64 * costs.median_s >= 1.5e-3, "{costs:?}");
        assert_eq!(costs.repeat, 3);
        assert_eq!(costs.all_s.len(), 3);
        assert!(costs.min_s <= costs.median_s);
        assert!(costs.min_s >= 100e-6, "{costs:?}");
        assert!(calls >= 2 + 3 * costs.number);
    }

    #[test]
    fn a_slow_call_keeps_the_initial_number() {
        let costs = time_calls(&options(1, 2, 1.0), far_deadline(), None, None, || {
            std::thread::sleep(Duration::from_millis(2));
            Ok::<(), Infallible>(())
        })
        .expect("timing succeeds");
        assert_eq!(costs.number, 1);
    }

    #[test]
    fn the_deadline_stops_timing_between_calls() {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        let result = time_calls(&options(1, 1000, 1.0), deadline, None, None, || {
            std::thread::sleep(Duration::from_millis(5));
            Ok::<(), Infallible>(())
        });
        // Calls of at least 5 ms fit at most six times into 30 ms; the check after the call
        // that crosses the deadline stops timing (the exact count depends on the machine's load).
        let Err(TimingError::Deadline { calls }) = result else {
            panic!("a thousand repeats of 5 ms do not fit in 30 ms");
        };
        assert!((1..=7).contains(&calls), "{calls} calls");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn call_errors_stop_timing() {
        let mut left = 3;
        let result = time_calls(&options(1, 3, 1.0), far_deadline(), None, None, || {
            left -= 1;
            if left == 0 {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        });
        assert!(matches!(result, Err(TimingError::Call(std::fmt::Error))));
    }

    #[test]
    fn flushing_times_every_call_alone_and_keeps_number() {
        let mut flusher = CacheFlusher::new();
        assert!(flusher.buffer.len() >= MIN_FLUSH_BYTES);
        let mut flushed_options = options(2, 2, 1000.0);
        flushed_options.flush_cache = true;
        flushed_options.warmup = 0;
        let start = Instant::now();
        let costs = time_calls(
            &flushed_options,
            far_deadline(),
            None,
            Some(&mut flusher),
            || {
                std::thread::sleep(Duration::from_micros(200));
                Ok::<(), Infallible>(())
            },
        )
        .expect("timing succeeds");
        assert_eq!(costs.number, 2);
        // The timed interval excludes the flushes: well under the time the whole thing took
        // whenever a flush costs anything, and never below the sleep.
        assert!(costs.min_s >= 200e-6);
        assert!(costs.median_s * 4.0 <= start.elapsed().as_secs_f64());
    }

    /// Options with a first stage of 4 ms before repeats of 20 ms.
    fn staged(repeat: usize) -> MeasureOptions {
        MeasureOptions {
            staging: super::super::Staging {
                cutoff: 0.5,
                first_stage_ms: 4.0,
            },
            ..options(1, repeat, 20.0)
        }
    }

    #[test]
    fn a_candidate_slower_than_the_cutoff_stops_after_the_first_stage() {
        let mut calls = 0usize;
        let costs = time_calls(&staged(5), far_deadline(), Some(50e-6), None, || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
            Ok::<(), Infallible>(())
        })
        .expect("timing succeeds");
        assert!(costs.short, "{costs:?}");
        assert_eq!((costs.repeat, costs.all_s.len()), (1, 1));
        assert_eq!(costs.median_s, costs.all_s[0]);
        // One repeat of at least 4 ms (not 20): a few calls of 1 ms after the warm-up and
        // the growth, nowhere near five repeats of 20 ms.
        assert!(costs.number as f64 * costs.median_s >= 3.5e-3, "{costs:?}");
        assert!(calls < 40, "{calls} calls");
    }

    #[test]
    fn a_candidate_within_the_cutoff_gets_the_whole_protocol() {
        let costs = time_calls(&staged(3), far_deadline(), Some(0.5), None, || {
            std::thread::sleep(Duration::from_micros(500));
            Ok::<(), Infallible>(())
        })
        .expect("timing succeeds");
        assert!(!costs.short, "{costs:?}");
        assert_eq!(costs.all_s.len(), 3);
        // Every counted repeat is a whole one, not the first stage's short repeat.
        assert!(costs.number as f64 * costs.min_s >= 15e-3, "{costs:?}");
    }

    #[test]
    fn without_a_cutoff_or_with_staging_off_there_is_no_first_stage() {
        let off = MeasureOptions {
            staging: super::super::Staging::OFF,
            ..staged(2)
        };
        for (options, best_s) in [(staged(2), None), (off, Some(1e-9))] {
            let costs = time_calls(&options, far_deadline(), best_s, None, || {
                std::thread::sleep(Duration::from_micros(500));
                Ok::<(), Infallible>(())
            })
            .expect("timing succeeds");
            assert!(!costs.short, "{costs:?}");
            assert_eq!(costs.all_s.len(), 2);
        }
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median_and_min(&[3.0, 1.0, 2.0]), (2.0, 1.0));
        assert_eq!(median_and_min(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0));
    }

    #[test]
    fn growth_at_least_doubles_and_jumps_to_the_estimate() {
        let min_repeat = Duration::from_millis(10);
        assert_eq!(grown_number(4, Duration::from_millis(6), min_repeat), 8);
        assert_eq!(grown_number(1, Duration::from_micros(10), min_repeat), 1200);
        assert_eq!(grown_number(1, Duration::ZERO, min_repeat), 2);
    }
}
