//! The machine a kernel is compiled for and measured on.
//!
//! A [`Target`] is recorded in every tuning-log record (it derives serde), so it holds plain
//! data: the architecture, the CPU model's name, the ISA features that change the code we emit,
//! and the thread count parallel loops run on. Each backend turns it into its own settings (a
//! Cranelift ISA, compiler flags) that say exactly what the record says, which is how a host with
//! FMA can compile for a target without it (to test the mul+add fallback).

use serde::{Deserialize, Serialize};

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
        let threads = std::thread::available_parallelism()
            .map(|count| count.get())
            .unwrap_or(1);
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

/// Per-core cache sizes of the host, in bytes, as Linux reports them for CPU 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSizes {
    /// Level-1 data cache.
    pub l1d_bytes: i64,
    /// Level-2 cache (data or unified).
    pub l2_bytes: i64,
}

/// The host's level-1 data and level-2 cache sizes, from
/// `/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`; `None` where the OS does not
/// say (then templates assume typical sizes).
pub fn host_cache_sizes() -> Option<CacheSizes> {
    let directory = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let (mut l1d, mut l2) = (None, None);
    for entry in std::fs::read_dir(directory).ok()?.flatten() {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(bytes) = parse_cache_size(size.trim()) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => l1d = Some(bytes),
            ("2", "Data" | "Unified") => l2 = Some(bytes),
            _ => {}
        }
    }
    Some(CacheSizes {
        l1d_bytes: l1d?,
        l2_bytes: l2?,
    })
}

/// `32K`, `2048K`, `1M` or plain bytes, as sysfs prints cache sizes.
fn parse_cache_size(text: &str) -> Option<i64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((position, _)) => text.split_at(position),
        None => (text, ""),
    };
    let value: i64 = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    value.checked_mul(scale).filter(|&bytes| bytes > 0)
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
    fn cache_sizes_parse_as_sysfs_prints_them() {
        assert_eq!(parse_cache_size("32K"), Some(32 << 10));
        assert_eq!(parse_cache_size("2048K"), Some(2 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("12Q"), None);
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size("0K"), None);
        assert_eq!(parse_cache_size("99999999999999999999K"), None);
    }

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
