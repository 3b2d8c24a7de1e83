//! `looptune lower WORKLOAD`: the loop nest a workload lowers to under a schedule (the default
//! one unless `--schedule` says otherwise).
//!
//! This is the quickest way to see what the front end produces, and the text the snapshot tests
//! of `looptune-ir` compare against. `--emit c` prints the C the C backend compiles instead.

use super::backends::BackendArgs;
use super::input;
use super::schedule::ScheduleArgs;
use anyhow::Context;
use clap::{Args, ValueEnum};
use looptune::backend::BackendChoice;
use looptune::lower;
use looptune::runtime::Target;

/// What `lower` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// The loop nest, in the loop IR's text form.
    Nest,
    /// The C source the C backend compiles for this host.
    C,
}

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
    /// What to print.
    #[arg(long, value_enum, default_value_t = Emit::Nest)]
    emit: Emit,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Parses the workload, lowers its schedule and prints the nest on stdout.
pub fn run(args: &LowerArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    // `--emit c` is the C backend's text, so it needs that backend: another explicit choice
    // contradicts it. Without `--log` the backend only matters for `--emit c` (a log's config
    // is read in the backend's space), so printing a nest probes no compiler.
    let choice = match (args.emit, args.backend.backend) {
        (Emit::C, BackendChoice::Cranelift) => {
            return Err(super::Usage(
                "--emit c prints the C backend's source; it cannot go with --backend cranelift"
                    .to_string(),
            )
            .into())
        }
        (Emit::C, _) => BackendChoice::C,
        (Emit::Nest, choice) if args.schedule.uses_log() => choice,
        (Emit::Nest, _) => BackendChoice::Cranelift,
    };
    let selected = super::backends::resolve(choice)?;
    let schedule = args
        .schedule
        .build(&workload, args.parallel, selected.backend.as_ref())?;
    // The schedules offered here always lower for a valid workload; a failure is a bug in
    // looptune, so it is reported as such (exit code 1), not as a usage error.
    let nest = lower(&schedule).with_context(|| {
        format!(
            "lowering the {} schedule of `{workload}`",
            args.schedule.name()
        )
    })?;
    match (args.emit, &selected.c) {
        (Emit::C, Some(c)) => {
            let threads = if args.parallel { 2 } else { 1 };
            let source = c
                .source(&nest, &Target::host().with_threads(threads))
                .context("printing the nest as C")?;
            print!("{source}");
        }
        _ => println!("{nest}"),
    }
    Ok(())
}
