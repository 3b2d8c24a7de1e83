//! `looptune lower WORKLOAD`: the loop nest a workload lowers to under a schedule (the default
//! one unless `--schedule` says otherwise).
//!
//! This is the quickest way to see what the front end produces, and the text the snapshot tests
//! of `looptune-ir` compare against.

use super::input;
use super::schedule::ScheduleArgs;
use anyhow::Context;
use clap::Args;
use looptune::lower;

/// Arguments of `looptune lower`.
#[derive(Debug, Args)]
pub struct LowerArgs {
    /// The workload, `op:key=value,...`, e.g. `matmul:m=64,n=64,k=64` (see `looptune ops`).
    workload: String,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Make the outer loop of a recipe parallel, as `run --threads N` (N > 1) does.
    #[arg(long)]
    parallel: bool,
}

/// Parses the workload, lowers its schedule and prints the nest on stdout.
pub fn run(args: &LowerArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let schedule = args.schedule.build(&workload, args.parallel)?;
    // The schedules offered here always lower for a valid workload; a failure is a bug in
    // looptune, so it is reported as such (exit code 1), not as a usage error.
    let nest = lower(&schedule).with_context(|| {
        format!(
            "lowering the {} schedule of `{workload}`",
            args.schedule.name()
        )
    })?;
    println!("{nest}");
    Ok(())
}
