//! The Cranelift JIT as a [`Backend`]: no toolchain needed, a few milliseconds per kernel,
//! 128-bit vectors.

use crate::codegen;
use looptune_ir::LoopNest;
use looptune_runtime::{Backend, BackendId, BackendSpec, CompileError, Kernel, Target};

/// The backend's name in tuning logs and on the command line.
pub const NAME: &str = "cranelift";

/// The `cranelift-codegen` release this crate is built with (the workspace's `Cargo.lock`; a
/// test keeps the two equal).
pub const CRANELIFT_VERSION: &str = "0.135.8";

/// The change the workspace's vendored copy of `cranelift-codegen` makes to that release
/// (`vendor/README.md`; a test checks that the vendored source still carries it).
pub const CRANELIFT_PATCH: &str = "f32x4 fma as vfmadd231ps";

/// What [`Backend::id`] reports as the version: this crate, the Cranelift release and the
/// vendored patch, since each changes the machine code of the same nest. Records written before
/// the patch said `looptune-jit 0.1.0 / cranelift 0.135`; deploy still reads them as a
/// compatible target (the version may differ), while a resumed run measures their configs
/// again, as kernels of another code generator.
pub const VERSION: &str = concat!(
    "looptune-jit ",
    env!("CARGO_PKG_VERSION"),
    " / cranelift-codegen 0.135.8 + looptune patch (f32x4 fma as vfmadd231ps)"
);

/// The Cranelift JIT backend.
#[derive(Clone, Debug, Default)]
pub struct CraneliftBackend {
    keep_clif: bool,
}

impl CraneliftBackend {
    /// A backend with default options.
    pub fn new() -> CraneliftBackend {
        CraneliftBackend::default()
    }

    /// Keeps the optimized CLIF text of each compiled kernel ([`Kernel::source`]); off by
    /// default because printing costs compile time.
    pub fn keep_clif(mut self, keep: bool) -> CraneliftBackend {
        self.keep_clif = keep;
        self
    }

    /// Rebuilds the backend a [`BackendSpec`] of this backend describes.
    pub fn from_spec(spec: &BackendSpec) -> Result<CraneliftBackend, CompileError> {
        if spec.name != NAME {
            return Err(CompileError::UnknownBackend {
                name: spec.name.clone(),
                known: NAME.to_string(),
            });
        }
        Ok(CraneliftBackend::new())
    }
}

impl Backend for CraneliftBackend {
    fn compile(&self, nest: &LoopNest, target: &Target) -> Result<Kernel, CompileError> {
        let compiled = codegen::compile(nest, target, self.keep_clif)?;
        // SAFETY: `codegen::compile` finalized `entry` in `module` with the entry signature
        // `(args, runtime)` in the platform's default (C) calling convention, after validating
        // the nest (no stores to inputs, index ranks) and bounding every access it could not
        // prove in bounds with a trapping check; the module owns the code and goes with it.
        let kernel = unsafe {
            Kernel::from_entry(
                nest,
                compiled.entry,
                compiled.uses_parallel,
                target.threads,
                compiled.clif,
                Box::new(compiled.module),
            )
        };
        Ok(kernel)
    }

    fn id(&self) -> BackendId {
        BackendId {
            name: NAME.to_string(),
            version: VERSION.to_string(),
        }
    }

    fn spec(&self) -> BackendSpec {
        BackendSpec {
            name: NAME.to_string(),
            settings: Vec::new(),
        }
    }

    fn vector_lanes(&self, _target: &Target) -> usize {
        4
    }

    fn vector_registers(&self, _target: &Target) -> usize {
        16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace root, two levels above this crate.
    fn workspace_file(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(relative);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
    }

    #[test]
    fn the_version_names_the_cranelift_release_in_the_lock_file() {
        let lock = workspace_file("Cargo.lock");
        let entry = format!("name = \"cranelift-codegen\"\nversion = \"{CRANELIFT_VERSION}\"");
        assert!(
            lock.contains(&entry),
            "Cargo.lock does not build cranelift-codegen {CRANELIFT_VERSION}; update \
             CRANELIFT_VERSION and VERSION"
        );
        assert!(VERSION.contains(CRANELIFT_VERSION), "{VERSION}");
        assert!(VERSION.contains(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert_eq!(CraneliftBackend::new().id().version, VERSION);
    }

    #[test]
    fn the_version_names_the_patch_the_vendored_source_carries() {
        let manifest = workspace_file("vendor/cranelift-codegen/Cargo.toml");
        assert!(
            manifest.contains(&format!("version = \"{CRANELIFT_VERSION}\"")),
            "the vendored cranelift-codegen is not {CRANELIFT_VERSION}"
        );
        let lowering = workspace_file("vendor/cranelift-codegen/src/isa/x64/lower.isle");
        assert!(
            lowering.contains("looptune patch") && lowering.contains("x64_vfmadd231ps_a"),
            "the vendored lowering lost its patch; drop CRANELIFT_PATCH from VERSION"
        );
        assert!(VERSION.contains(CRANELIFT_PATCH), "{VERSION}");
    }
}
