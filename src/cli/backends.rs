//! The `--backend auto|c|cranelift` flag of every command that compiles, and what it resolves
//! to: one definition instead of a copy per command.

use clap::Args;
use looptune::backend::{select, BackendChoice, Selected};

/// Which backend compiles kernels.
#[derive(Clone, Copy, Debug, Args)]
pub struct BackendArgs {
    /// The code generator: `auto` (C through the system compiler when one is found and its
    /// probe kernel runs correctly, else Cranelift), `c` (full-width vectors; an error without
    /// a working compiler) or `cranelift` (128-bit vectors, nothing to install).
    #[arg(long, default_value_t = BackendChoice::Auto, value_parser = parse_choice)]
    pub backend: BackendChoice,
}

fn parse_choice(text: &str) -> Result<BackendChoice, String> {
    text.parse()
        .map_err(|error: looptune::backend::UnknownBackend| error.to_string())
}

impl BackendArgs {
    /// Resolves the choice; `auto` says on stderr what it chose and why.
    pub fn select(&self) -> anyhow::Result<Selected> {
        resolve(self.backend)
    }
}

/// Resolves `choice`, saying on stderr what `auto` chose.
pub fn resolve(choice: BackendChoice) -> anyhow::Result<Selected> {
    let selected = select(choice).map_err(|error| {
        anyhow::anyhow!("--backend {choice}: the C backend is not available: {error}")
    })?;
    if let Some(note) = &selected.note {
        eprintln!("{note}");
    }
    Ok(selected)
}
