//! The measurement worker of `looptune-jit`'s own tests: serves measurement requests on
//! stdin/stdout until stdin closes (see `looptune_jit::measure::serve_stdio`). The `looptune`
//! binary has the same loop behind its hidden `worker` subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    match looptune_jit::measure::serve_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("looptune-jit-worker: {error}");
            ExitCode::FAILURE
        }
    }
}
