//! The seam between search and code generation.
//!
//! Search and measurement hold a [`Backend`] and never name Cranelift, so a second code
//! generator (LLVM, a C emitter) can be added without touching them. The backend's name and
//! version go into every tuning-log record next to the target.

use crate::codegen;
use crate::error::CompileError;
use crate::kernel::Kernel;
use crate::target::Target;
use looptune_ir::LoopNest;

/// A code generator for loop nests.
pub trait Backend {
    /// What compiling produces.
    type Kernel;

    /// Compiles `nest` for `target`.
    fn compile(&self, nest: &LoopNest, target: &Target) -> Result<Self::Kernel, CompileError>;

    /// A short stable name, recorded in tuning logs (`cranelift`).
    fn name(&self) -> &'static str;

    /// The version of the generator, recorded in tuning logs: results measured with different
    /// code generators are not comparable.
    fn version(&self) -> &'static str;
}

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

    /// Keeps the optimized CLIF text of each compiled kernel ([`Kernel::clif`]); off by default
    /// because printing costs compile time.
    pub fn keep_clif(mut self, keep: bool) -> CraneliftBackend {
        self.keep_clif = keep;
        self
    }
}

impl Backend for CraneliftBackend {
    type Kernel = Kernel;

    fn compile(&self, nest: &LoopNest, target: &Target) -> Result<Kernel, CompileError> {
        let compiled = codegen::compile(nest, target, self.keep_clif)?;
        Ok(Kernel::new(nest, compiled, target.threads))
    }

    fn name(&self) -> &'static str {
        "cranelift"
    }

    fn version(&self) -> &'static str {
        concat!(
            "looptune-jit ",
            env!("CARGO_PKG_VERSION"),
            " / cranelift 0.135"
        )
    }
}
