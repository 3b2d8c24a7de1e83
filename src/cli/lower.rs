//! `looptune lower WORKLOAD`: the loop nest a workload lowers to under its default schedule.
//!
//! This is the quickest way to see what the front end produces, and the text the snapshot tests
//! of `looptune-ir` compare against.

use super::input;
use anyhow::Context;
use clap::Args;
use looptune::{lower, Schedule};

/// Arguments of `looptune lower`.
#[derive(Debug, Args)]
pub struct LowerArgs {
    /// The workload, `op:key=value,...`, e.g. `matmul:m=64,n=64,k=64` (see `looptune ops`).
    workload: String,
    /// Data-layout choices of the operator definition, e.g. `pack=8` to pack the matrix read
    /// along `n` into panels of 8 columns (matmul, dense).
    #[arg(long, default_value = "")]
    layout: String,
}

/// Parses the workload, lowers its default schedule and prints the nest on stdout.
pub fn run(args: &LowerArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let layout = input::layout(&args.layout)?;
    let program = input::program(&workload, &layout)?;
    let schedule = Schedule::new(&program);
    // The default schedule of a valid workload always lowers; a failure here is a bug in
    // looptune, so it is reported as such (exit code 1), not as a usage error.
    let nest = lower(&schedule)
        .with_context(|| format!("lowering the default schedule of `{workload}`"))?;
    println!("{nest}");
    Ok(())
}
