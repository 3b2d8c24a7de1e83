//! The machine a kernel is compiled for and measured on.
//!
//! A [`Target`] is recorded in every tuning-log record (it derives serde), so it holds plain
//! data: the architecture, the CPU model's name, the ISA features that change the code we emit,
//! and the thread count parallel loops run on. Each backend turns it into its own settings (a
//! Cranelift ISA, compiler flags) that say exactly what the record says, which is how a host with
//! FMA can compile for a target without it (to test the mul+add fallback).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The host's hardware threads (1 when the OS cannot say).
pub fn hardware_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |count| count.get())
}

/// A thread count outside `1..=` the host's hardware threads.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{requested} must be from 1 to this host's {available} hardware thread{}", if *available == 1 { "" } else { "s" })]
pub struct ThreadsError {
    /// The count asked for.
    pub requested: usize,
    /// The host's hardware threads.
    pub available: usize,
}

/// The one rule for a thread count a user asks for (every `--threads` flag, the CLI's and the
/// examples'): from 1 to the host's hardware threads. More threads than cores only time the OS
/// scheduler (a peak of 64 threads on 2 cores read 158 GFLOP/s, and a kernel "110% of peak"),
/// so they are refused, naming both numbers.
pub fn check_threads(requested: usize) -> Result<usize, ThreadsError> {
    let available = hardware_threads();
    if requested == 0 || requested > available {
        return Err(ThreadsError {
            requested,
            available,
        });
    }
    Ok(requested)
}

/// The ISA features that change the code this back end emits (or that a reader of the tuning log
/// wants to see to compare machines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct IsaFeatures {
    /// SSE 4.1 (`insertps`, `roundps`, `blendv`); Cranelift's x64 SIMD baseline.
    pub sse41: bool,
    /// AVX: VEX encodings, unaligned memory operands for vector instructions.
    pub avx: bool,
    /// AVX2.
    pub avx2: bool,
    /// FMA3: `fma` becomes `vfmadd`; without it we emit a multiply and an add.
    pub fma: bool,
    /// AVX-512 F: 512-bit vectors and 32 vector registers for a backend that emits them (the
    /// C backend); Cranelift uses it for a few lane operations only.
    pub avx512f: bool,
}

/// The machine a kernel is compiled for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The architecture, as Rust spells it (`x86_64`, `aarch64`).
    pub arch: String,
    /// The CPU model name, e.g. `AMD EPYC 9R14`; `unknown` where the OS does not say.
    pub cpu_model: String,
    /// The ISA features code is generated for.
    pub features: IsaFeatures,
    /// Threads that parallel loops are spread over.
    pub threads: usize,
}

/// The name of each feature, in [`IsaFeatures`] field order (the names `/proc/cpuinfo`, Rust's
/// feature detection and gcc's `-m` flags share).
pub const FEATURE_NAMES: [&str; 5] = ["sse4.1", "avx", "avx2", "fma", "avx512f"];

impl IsaFeatures {
    /// The features as flags, in [`FEATURE_NAMES`] order.
    pub fn as_array(self) -> [bool; 5] {
        [self.sse41, self.avx, self.avx2, self.fma, self.avx512f]
    }

    /// Features from flags in [`FEATURE_NAMES`] order.
    pub fn from_array(values: [bool; 5]) -> IsaFeatures {
        IsaFeatures {
            sse41: values[0],
            avx: values[1],
            avx2: values[2],
            fma: values[3],
            avx512f: values[4],
        }
    }

    /// The host's features, as the running CPU reports them.
    pub fn host() -> IsaFeatures {
        host_features()
    }
}

impl Target {
    /// The host: its features as cranelift-native detects them, all its hardware threads.
    pub fn host() -> Target {
        let threads = hardware_threads();
        Target {
            arch: std::env::consts::ARCH.to_string(),
            cpu_model: host_cpu_model(),
            features: host_features(),
            threads,
        }
    }

    /// The same target with `threads` threads for parallel loops (at least one).
    pub fn with_threads(mut self, threads: usize) -> Target {
        self.threads = threads.max(1);
        self
    }

    /// The same target without FMA: `fma` is then emitted as a multiply and an add.
    pub fn without_fma(mut self) -> Target {
        self.features.fma = false;
        self
    }
}

/// The host's features, from the CPU itself (`cpuid` on x86-64).
fn host_features() -> IsaFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        IsaFeatures {
            sse41: std::arch::is_x86_feature_detected!("sse4.1"),
            avx: std::arch::is_x86_feature_detected!("avx"),
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            fma: std::arch::is_x86_feature_detected!("fma"),
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        IsaFeatures::default()
    }
}

/// The CPU model from `/proc/cpuinfo` (`model name` on x86, `CPU part` style keys elsewhere are
/// not worth decoding), or `unknown`.
fn host_cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_string())
        })
        .filter(|model| !model.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_target_round_trips_through_json() {
        let target = Target::host();
        assert!(target.threads >= 1);
        let text = serde_json::to_string(&target).expect("a target serializes");
        let back: Target = serde_json::from_str(&text).expect("and deserializes");
        assert_eq!(back, target);
    }

    #[test]
    fn features_round_trip_through_their_array() {
        let features = IsaFeatures::host();
        assert_eq!(IsaFeatures::from_array(features.as_array()), features);
    }
}
