//! The measurement worker of `looptune-cc`'s own tests: serves measurement requests on
//! stdin/stdout until stdin closes (see `looptune_runtime::measure::serve_stdio`), building the
//! C backend from each request's spec (compiler, its leading arguments, cache directory). The
//! `looptune` binary has the same loop behind its hidden `worker` subcommand, with every backend.
//!
//! `looptune-cc-worker --detect` instead runs [`CBackend::detect`] (compiler discovery from `CC`
//! and `PATH`, then the probe) and prints the backend it accepted, or why it refused, with exit
//! status 1: the environment-dependent path, checked in a child process whose environment can
//! differ from the tests'.

#![forbid(unsafe_code)]

use looptune_cc::CBackend;
use looptune_runtime::{Backend, BackendSpec, CompileError};
use std::process::ExitCode;
use std::sync::Arc;

fn c_backend(spec: &BackendSpec) -> Result<Arc<dyn Backend>, CompileError> {
    Ok(Arc::new(CBackend::from_spec(spec)?))
}

fn detect() -> ExitCode {
    match CBackend::detect() {
        Ok(backend) => {
            println!("{}", backend.id().version);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("looptune-cc-worker: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [flag] if flag == "--detect" => return detect(),
        _ => {
            eprintln!("looptune-cc-worker: unexpected arguments {args:?} (usage: [--detect])");
            return ExitCode::FAILURE;
        }
    }
    match looptune_runtime::measure::serve_stdio(&c_backend) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("looptune-cc-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
