//! The Cranelift ISA for a [`Target`]: flags that say exactly what the target says, so a host
//! with FMA can compile for a target without it (to test the mul+add fallback).

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use looptune_runtime::{CompileError, IsaFeatures, Target};

/// The Cranelift ISA flag behind each feature, in [`IsaFeatures`] field order.
const FEATURE_FLAGS: [&str; 5] = ["has_sse41", "has_avx", "has_avx2", "has_fma", "has_avx512f"];

/// Builds the Cranelift ISA for this target, with `opt_level=speed`.
///
/// Fails when the target is not this host's architecture or asks for a feature the host
/// lacks: code for it could be compiled but not run here.
pub fn isa(target: &Target) -> Result<OwnedTargetIsa, CompileError> {
    if target.arch != std::env::consts::ARCH {
        return Err(CompileError::Target {
            message: format!(
                "target architecture `{}` is not the host's `{}`",
                target.arch,
                std::env::consts::ARCH
            ),
        });
    }
    let host = IsaFeatures::host().as_array();
    let wanted = target.features.as_array();
    let mut isa_builder = cranelift_native::builder().map_err(|message| CompileError::Target {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_target_builds_an_isa() {
        assert!(isa(&Target::host()).is_ok());
    }

    #[test]
    fn clearing_fma_clears_the_isa_flag() {
        let isa = isa(&Target::host().without_fma()).expect("isa without fma");
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
        let Err(error) = isa(&target) else {
            panic!("avx512f is not on this host, yet an ISA was built");
        };
        assert!(error.to_string().contains("has_avx512f"), "{error}");
    }
}
