//! Timing a backend's FMA ceiling: the loop is the backend's, the protocol is shared.
//!
//! Each backend generates its own loop of vector FMAs over independent accumulators (enough
//! chains to cover the FMA latency on every port) and hands [`time_peak`] a closure that runs it
//! for a number of iterations. Tuned kernels are judged against the widest backend's number,
//! measured in the same run, rather than a datasheet's.

use crate::error::PeakError;
use serde::{Deserialize, Serialize};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Timed repeats; the median is reported.
const REPEATS: usize = 7;
/// A repeat lasts at least this long, so timer resolution and frequency ramp-up do not matter.
const MIN_REPEAT: Duration = Duration::from_millis(20);

/// The measured ceiling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeakResult {
    /// Median throughput over all threads, in GFLOP/s (an FMA counts as two operations per lane).
    pub gflops: f64,
    /// Threads that ran the loop concurrently.
    pub threads: usize,
    /// Vector lanes per instruction.
    pub lanes: usize,
    /// Independent accumulator chains per thread.
    pub chains: usize,
    /// Whether fused multiply-add was used (else a multiply and an add).
    pub fma: bool,
}

/// The shape of a peak loop: what one iteration computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeakLoop {
    /// f32 lanes per vector.
    pub lanes: usize,
    /// Independent accumulator chains.
    pub chains: usize,
    /// Whether the loop uses fused multiply-add.
    pub fma: bool,
}

/// Times `run(iterations)` (one thread running the loop once) on `threads` threads at once and
/// reports the median throughput. The iteration count grows until one run lasts 20 ms (which is
/// also the warm-up); with several threads, a repeat is timed over the whole parallel region,
/// from releasing the threads to the last one finishing.
pub fn time_peak(
    threads: usize,
    shape: PeakLoop,
    run: &(dyn Fn(i64) + Sync),
) -> Result<PeakResult, PeakError> {
    if threads == 0 {
        return Err(PeakError::NoThreads { threads });
    }
    let mut iterations: i64 = 1 << 16;
    loop {
        let start = Instant::now();
        run(iterations);
        if start.elapsed() >= MIN_REPEAT || iterations >= 1 << 34 {
            break;
        }
        iterations *= 2;
    }
    let flops_per_thread = iterations as f64 * (shape.chains * shape.lanes * 2) as f64;
    let mut samples: Vec<f64> = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let elapsed = if threads == 1 {
            let start = Instant::now();
            run(iterations);
            start.elapsed()
        } else {
            let barrier = Barrier::new(threads + 1);
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            run(iterations);
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                // A thread that panicked did not run its share: the repeat has no sample.
                let finished = handles.into_iter().all(|handle| handle.join().is_ok());
                finished.then(|| start.elapsed())
            })
            .ok_or(PeakError::ThreadFailed)?
        };
        samples.push(flops_per_thread * threads as f64 / elapsed.as_secs_f64() / 1e9);
    }
    samples.sort_by(f64::total_cmp);
    Ok(PeakResult {
        gflops: samples[samples.len() / 2],
        threads,
        lanes: shape.lanes,
        chains: shape.chains,
        fma: shape.fma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_an_error_naming_the_count() {
        let shape = PeakLoop {
            lanes: 4,
            chains: 1,
            fma: true,
        };
        let error = time_peak(0, shape, &|_| {}).expect_err("no threads");
        assert!(error.to_string().contains("got 0"), "{error}");
    }
}
