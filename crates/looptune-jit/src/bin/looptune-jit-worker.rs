//! The measurement worker of `looptune-jit`'s own tests: serves measurement requests on
//! stdin/stdout until stdin closes (see `looptune_runtime::measure::serve_stdio`), building the
//! Cranelift backend for them. The `looptune` binary has the same loop behind its hidden `worker`
//! subcommand, with every backend.

#![forbid(unsafe_code)]

use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, BackendSpec, CompileError};
use std::process::ExitCode;
use std::sync::Arc;

fn cranelift(spec: &BackendSpec) -> Result<Arc<dyn Backend>, CompileError> {
    Ok(Arc::new(CraneliftBackend::from_spec(spec)?))
}

fn main() -> ExitCode {
    match looptune_runtime::measure::serve_stdio(&cranelift) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("looptune-jit-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
