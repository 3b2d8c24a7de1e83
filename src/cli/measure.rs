//! Timing a compiled kernel in this process, the way TVM's time evaluator does.
//!
//! One warm-up call, then the number of calls per repeat is doubled until a repeat lasts at
//! least [`MIN_REPEAT`] (so timer resolution and one-off effects vanish in the average), then
//! [`REPEATS`] repeats are timed and the median per-call time is reported (the median, because
//! noise on a shared machine only ever makes runs slower, in bursts).
//!
//! This is the in-process timing of `looptune run`; the isolated `Measurer` of the tuning loop
//! is a separate concern of `looptune-jit`.

use looptune::jit::{CallError, Kernel};
use std::time::{Duration, Instant};

/// A repeat lasts at least this long.
pub const MIN_REPEAT: Duration = Duration::from_millis(50);
/// Timed repeats; the median is reported.
pub const REPEATS: usize = 5;

/// What timing a kernel found.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Median seconds per call.
    pub median_seconds: f64,
    /// Fastest repeat's seconds per call.
    pub min_seconds: f64,
    /// Calls per repeat.
    pub number: u64,
    /// Repeats timed.
    pub repeats: usize,
}

/// Times `kernel` on the given buffers; see the module documentation for the protocol.
pub fn time_kernel(
    kernel: &Kernel,
    inputs: &[&[f32]],
    outputs: &mut [&mut [f32]],
) -> Result<Timing, CallError> {
    let mut repeat = |number: u64| -> Result<Duration, CallError> {
        let start = Instant::now();
        for _ in 0..number {
            kernel.call(inputs, outputs)?;
        }
        Ok(start.elapsed())
    };
    repeat(1)?;
    let mut number: u64 = 1;
    // Doubling stops at 2^40 calls, far beyond any kernel that does work, so a kernel that
    // takes no measurable time cannot make this loop run forever.
    while repeat(number)? < MIN_REPEAT && number < 1 << 40 {
        number *= 2;
    }
    let mut per_call: Vec<f64> = (0..REPEATS)
        .map(|_| repeat(number).map(|elapsed| elapsed.as_secs_f64() / number as f64))
        .collect::<Result<_, _>>()?;
    per_call.sort_by(f64::total_cmp);
    Ok(Timing {
        median_seconds: per_call[per_call.len() / 2],
        min_seconds: per_call[0],
        number,
        repeats: REPEATS,
    })
}
