//! The Cranelift JIT as a [`Backend`]: no toolchain needed, a few milliseconds per kernel,
//! 128-bit vectors.

use crate::codegen;
use looptune_ir::LoopNest;
use looptune_runtime::{Backend, BackendId, BackendSpec, CompileError, Kernel, Target};

/// The backend's name in tuning logs and on the command line.
pub const NAME: &str = "cranelift";

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
            // Unchanged since the first logs, so that they still resume and dispatch.
            version: concat!(
                "looptune-jit ",
                env!("CARGO_PKG_VERSION"),
                " / cranelift 0.135"
            )
            .to_string(),
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
