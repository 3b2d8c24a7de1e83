//! The seam between search and code generation.
//!
//! Measurement, tuning and deploy hold an `Arc<dyn Backend>` and never name a code generator, so
//! the Cranelift JIT (`looptune-jit`) and the C backend (`looptune-cc`) are interchangeable. A
//! backend's [`BackendId`] (name and version, and for C the compiler and its flags) goes into
//! every tuning-log record next to the target: kernels made by different generators are
//! different kernels. Its [`BackendSpec`] is how a measurement worker process builds the same
//! backend again on its side of the pipe.

use crate::error::CompileError;
use crate::kernel::Kernel;
use crate::target::Target;
use looptune_ir::LoopNest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A code generator for loop nests.
pub trait Backend: Send + Sync {
    /// Compiles `nest` for `target` into a kernel callable through [`Kernel::call`].
    fn compile(&self, nest: &LoopNest, target: &Target) -> Result<Kernel, CompileError>;

    /// Prepares a batch of nests that are about to be compiled one by one (the C backend
    /// compiles them in parallel into its object cache, so that the measurement worker only
    /// loads them). The default does nothing; failures are left for [`Backend::compile`] to
    /// report per nest.
    fn prepare(&self, nests: &[&LoopNest], target: &Target) {
        let _ = (nests, target);
    }

    /// What this backend is, as tuning logs record it.
    fn id(&self) -> BackendId;

    /// How to build this backend again in another process.
    fn spec(&self) -> BackendSpec;

    /// The f32 lanes of the widest vectors this backend emits for `target` (4 for Cranelift's
    /// 128-bit code; 8 with AVX2 and 16 with AVX-512 for the C backend): search spaces size
    /// register tiles from it.
    fn vector_lanes(&self, target: &Target) -> usize;

    /// The vector registers the code this backend emits for `target` can use.
    fn vector_registers(&self, target: &Target) -> usize;
}

/// A backend's identity in a tuning-log record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendId {
    /// A short stable name: `cranelift` or `c`.
    pub name: String,
    /// Everything that changes the machine code for the same nest: the generator's version,
    /// and for C the compiler's name, version and flags.
    pub version: String,
}

/// How to rebuild a backend in another process: its name and its own settings as text (the
/// backend's business; a worker hands both to a [`BackendFactory`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendSpec {
    /// The backend's name, as in [`BackendId::name`].
    pub name: String,
    /// The backend's settings, e.g. the C compiler's path and flags.
    pub settings: Vec<String>,
}

/// Builds backends from specs: what a measurement worker is given, so that one worker binary
/// serves every backend its crate graph knows.
pub type BackendFactory = dyn Fn(&BackendSpec) -> Result<Arc<dyn Backend>, CompileError> + Sync;
