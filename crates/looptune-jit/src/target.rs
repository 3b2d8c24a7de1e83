//! The machine a kernel is compiled for and measured on.
//!
//! A [`Target`] is recorded in every tuning-log record (it derives serde), so it holds plain
//! data: the architecture, the CPU model's name, the ISA features that change the code we emit,
//! and the thread count parallel loops run on. [`Target::isa`] turns it back into a Cranelift ISA
//! whose flags say exactly what the record says, which is how a host with FMA can compile for a
//! target without it (to test the mul+add fallback).

use crate::error::CompileError;
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
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
    /// AVX-512 F (Cranelift uses it for a few lane operations; vectors stay 128-bit).
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

/// The Cranelift ISA flag behind each feature, in [`IsaFeatures`] field order.
const FEATURE_FLAGS: [&str; 5] = ["has_sse41", "has_avx", "has_avx2", "has_fma", "has_avx512f"];

impl IsaFeatures {
    fn as_array(self) -> [bool; 5] {
        [self.sse41, self.avx, self.avx2, self.fma, self.avx512f]
    }

    fn from_array(values: [bool; 5]) -> IsaFeatures {
        IsaFeatures {
            sse41: values[0],
            avx: values[1],
            avx2: values[2],
            fma: values[3],
            avx512f: values[4],
        }
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

    /// Builds the Cranelift ISA for this target, with `opt_level=speed`.
    ///
    /// Fails when the target is not this host's architecture or asks for a feature the host
    /// lacks: code for it could be compiled but not run here.
    pub fn isa(&self) -> Result<OwnedTargetIsa, CompileError> {
        if self.arch != std::env::consts::ARCH {
            return Err(CompileError::Target {
                message: format!(
                    "target architecture `{}` is not the host's `{}`",
                    self.arch,
                    std::env::consts::ARCH
                ),
            });
        }
        let host = host_features().as_array();
        let wanted = self.features.as_array();
        let mut isa_builder =
            cranelift_native::builder().map_err(|message| CompileError::Target {
                message: message.to_string(),
            })?;
        for ((flag, host_has), want) in FEATURE_FLAGS.iter().zip(host).zip(wanted) {
            if want && !host_has {
                return Err(CompileError::Target {
                    message: format!("the target asks for `{flag}` but the host lacks it"),
                });
            }
            if !want && host_has {
                isa_builder
                    .set(flag, "false")
                    .map_err(|error| CompileError::Target {
                        message: format!("cannot clear `{flag}`: {error}"),
                    })?;
            }
        }
        isa_builder
            .finish(shared_flags()?)
            .map_err(|error| CompileError::Target {
                message: format!("building the ISA: {error}"),
            })
    }
}

/// The target-independent Cranelift flags every kernel is compiled with.
fn shared_flags() -> Result<settings::Flags, CompileError> {
    let mut builder = settings::builder();
    // The verifier catches our own codegen bugs; it costs compile time, so release builds (the
    // ones that tune) skip it and debug builds (the ones that test) keep it.
    let verifier = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    let pairs = [
        ("opt_level", "speed"),
        ("enable_verifier", verifier),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
        // Temporaries up to 64 KiB live on the stack; inline probes keep a frame that large from
        // jumping over a thread's guard page.
        ("enable_probestack", "true"),
        ("probestack_strategy", "inline"),
    ];
    for (name, value) in pairs {
        builder
            .set(name, value)
            .map_err(|error| CompileError::Target {
                message: format!("setting `{name}={value}`: {error}"),
            })?;
    }
    Ok(settings::Flags::new(builder))
}

/// The host's features as cranelift-native sets them (so they are exactly what Cranelift will
/// use, not what another detector thinks).
fn host_features() -> IsaFeatures {
    let Ok(isa_builder) = cranelift_native::builder() else {
        return IsaFeatures::default();
    };
    let Ok(isa) = isa_builder.finish(settings::Flags::new(settings::builder())) else {
        return IsaFeatures::default();
    };
    let flags = isa.isa_flags();
    let mut values = [false; 5];
    for (slot, name) in values.iter_mut().zip(FEATURE_FLAGS) {
        *slot = flags
            .iter()
            .any(|flag| flag.name == name && flag.as_bool() == Some(true));
    }
    IsaFeatures::from_array(values)
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
    fn host_target_builds_an_isa_and_round_trips_through_json() {
        let target = Target::host();
        assert!(target.threads >= 1);
        assert!(target.isa().is_ok());
        let text = serde_json::to_string(&target).expect("a target serializes");
        let back: Target = serde_json::from_str(&text).expect("and deserializes");
        assert_eq!(back, target);
    }

    #[test]
    fn clearing_fma_clears_the_isa_flag() {
        let isa = Target::host().without_fma().isa().expect("isa without fma");
        let has_fma = isa
            .isa_flags()
            .iter()
            .any(|flag| flag.name == "has_fma" && flag.as_bool() == Some(true));
        assert!(!has_fma);
    }

    #[test]
    fn a_feature_the_host_lacks_is_refused_by_name() {
        let mut target = Target::host();
        if target.features.avx512f {
            // Nothing to refuse on a host that has everything we know of.
            return;
        }
        target.features.avx512f = true;
        let Err(error) = target.isa() else {
            panic!("avx512f is not on this host, yet an ISA was built");
        };
        assert!(error.to_string().contains("has_avx512f"), "{error}");
    }
}
