//! A kernel's memory figures, shared by `bench` and `tune-model`: the compulsory traffic of a
//! workload (every input read once, every output written once, at its element size) and the
//! bandwidth of a plain copy of as many bytes, timed in the same process. A memory-bound kernel
//! (a depthwise convolution) is judged by its GB/s against that copy, not by its GFLOP/s.

use anyhow::Context;
use looptune::runtime::measure::time_in_process;
use looptune::runtime::MeasureOptions;
use looptune::{Layout, Workload};
use std::hint::black_box;

/// Bytes a run of `workload` must move at least: its inputs and outputs once each.
pub fn compulsory_bytes(workload: &Workload) -> anyhow::Result<usize> {
    let program = super::input::program(workload, &Layout::default())?;
    let tensor_bytes = |tensor| {
        let decl = program.tensor(tensor);
        decl.len() * decl.dtype.size_bytes()
    };
    Ok(program
        .inputs()
        .into_iter()
        .chain(program.outputs.iter().copied())
        .map(tensor_bytes)
        .sum())
}

/// A copy of `bytes` bytes (half read, half written), ready to be timed again and again.
pub struct TimedCopy {
    source: Vec<f32>,
    target: Vec<f32>,
}

impl TimedCopy {
    /// Buffers for a copy that moves `bytes` bytes in all.
    pub fn new(bytes: usize) -> TimedCopy {
        let floats = bytes
            .div_ceil(std::mem::size_of::<f32>())
            .div_ceil(2)
            .max(1);
        TimedCopy {
            source: vec![1.0; floats],
            target: vec![0.0; floats],
        }
    }

    /// GB/s of the copy under `options` (bytes read plus bytes written, over the median time).
    pub fn gbytes_per_s(&mut self, options: &MeasureOptions) -> anyhow::Result<f64> {
        let costs = time_in_process(options, || {
            self.target.copy_from_slice(black_box(&self.source));
            black_box(&mut self.target);
            Ok::<(), std::convert::Infallible>(())
        })
        .context("timing the copy")?;
        let moved = 2 * self.source.len() * std::mem::size_of::<f32>();
        Ok(moved as f64 / costs.median_s / 1e9)
    }
}

/// Whether `workload` is judged by its bandwidth: a depthwise convolution does a few
/// multiply-adds per byte it moves, so memory, not arithmetic, bounds it.
pub fn is_memory_bound(workload: &Workload) -> bool {
    matches!(
        workload,
        Workload::DepthwiseConv2d(_) | Workload::QDepthwiseConv2d(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(text: &str) -> Workload {
        text.parse().expect(text)
    }

    #[test]
    fn compulsory_bytes_count_each_input_and_output_once_at_its_element_size() {
        // A 2x4, B 4x3, C 2x3, all f32.
        let bytes = compulsory_bytes(&workload("matmul:m=2,n=3,k=4")).unwrap();
        assert_eq!(bytes, (8 + 12 + 6) * 4);
        // A u8 2x4, W i8 4x3, bias i32 3, Y u8 2x3.
        let bytes = compulsory_bytes(&workload("qmatmul:m=2,n=3,k=4")).unwrap();
        assert_eq!(bytes, 8 + 12 + 3 * 4 + 6);
    }

    #[test]
    fn only_depthwise_convolutions_are_judged_by_bandwidth() {
        assert!(is_memory_bound(&workload(
            "depthwise_conv2d:n=1,c=8,h=5,w=5,kh=3,kw=3,pad=1"
        )));
        assert!(is_memory_bound(&workload(
            "qdepthwise_conv2d:n=1,c=8,h=5,w=5,kh=3,kw=3,pad=1,block=8"
        )));
        assert!(!is_memory_bound(&workload("matmul:m=2,n=3,k=4")));
        assert!(!is_memory_bound(&workload(
            "conv2d:n=1,ic=8,h=5,w=5,oc=8,kh=3,kw=3,pad=1"
        )));
    }

    #[test]
    fn a_copy_moves_at_least_the_bytes_asked_and_reports_a_positive_rate() {
        let mut copy = TimedCopy::new(1001);
        assert!(2 * copy.source.len() * 4 >= 1001);
        let options = MeasureOptions {
            repeat: 2,
            min_repeat_ms: 1.0,
            ..MeasureOptions::default()
        };
        let rate = copy.gbytes_per_s(&options).unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
        assert_eq!(copy.target, copy.source);
    }
}
