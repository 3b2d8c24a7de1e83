//! The `looptune` command line: argument definitions, dispatch and exit codes.
//!
//! Each subcommand lives in its own module and returns `anyhow::Result`. Errors caused by what
//! the user typed (a malformed workload, an unknown key, a zero dimension) are wrapped in
//! [`Usage`] so that `main` can tell them from failures of looptune itself: the former exit with
//! code 2, like clap's own argument errors, the latter with code 1. No input makes the tool
//! panic; every message names the bad part of the input.
//!
//! Only commands that do something real exist here: there are no stubs for features that have
//! not landed.

mod backends;
mod bench;
mod compare;
mod export_c;
mod input;
mod interrupt;
mod logs;
mod lower;
mod main_job;
mod measuring;
mod memory;
mod ops;
mod peak;
mod report;
mod run;
mod schedule;
mod ship_records;
mod tune;
mod tune_model;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Makes tensor programs fast on the host CPU by search (AutoTVM in Rust).
#[derive(Debug, Parser)]
#[command(name = "looptune", version, about, long_about = None)]
struct Cli {
    /// Without a command: the main job, tuning an embedded default set of workloads for about
    /// a minute and printing a table.
    #[command(subcommand)]
    command: Option<Command>,
    /// The main job's backend (commands that compile take their own `--backend`).
    #[command(flatten)]
    backend: backends::BackendArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the operators and their parameters (the keys of a workload string).
    Ops,
    /// Print the lowered loop nest of a workload under its default (naive) schedule, or under a
    /// hand-written one (`--schedule`).
    Lower(lower::LowerArgs),
    /// Compile a workload's schedule (the default, a hand-written one, or a log's best) with the
    /// chosen backend, check its output against the operator's definition and time it, next to
    /// the full-width peak measured in the same run.
    Run(run::RunArgs),
    /// Time a log's best config (or the fallback) against matrixmultiply's sgemm and the
    /// full-width peak, interleaved over several rounds in one process.
    Bench(bench::BenchArgs),
    /// Measure the host's full-width FMA throughput (the C backend's widest vectors) next to
    /// Cranelift's f32x4 one: the ceilings every kernel is judged against.
    Peak(peak::PeakArgs),
    /// Search a workload's config space, measuring each candidate (checked against the
    /// reference first) and appending it to a tuning log; a rerun resumes from the log.
    Tune(tune::TuneArgs),
    /// Tune every layer of a built-in network (resnet18, mobilenet, bert-base, cliquenet) into one log, the
    /// layer of each batch chosen where the model's estimated latency gains most; report the
    /// estimate before (fallback configs) and after. A rerun resumes from the log.
    TuneModel(tune_model::TuneModelArgs),
    /// Compare tuners over several seeds on the same workloads: median trials to reach 95% of
    /// the best any run found, and median best after 200 trials (each config measured once and
    /// shared by every run that proposes it).
    TuneCompare(compare::CompareArgs),
    /// Measure the records looptune ships (random configs of every reference workload, what the
    /// `xgb` tuner starts from when a log holds nothing of an operator) again, into a log.
    ShipRecords(ship_records::ShipRecordsArgs),
    /// Print the best valid record per workload and target of a tuning log.
    Best(logs::BestArgs),
    /// Print the knobs of the best config a tuning log holds for a workload and its lowered
    /// loop nest.
    Show(logs::ShowArgs),
    /// Merge tuning logs into a new one, dropping duplicate records.
    Merge(logs::MergeArgs),
    /// Write the best config per workload and target of tuning logs to a compact deploy
    /// database (bincode), loadable without a JSON parser.
    ExportDb(logs::ExportDbArgs),
    /// Write the best kernels of a tuning log or deploy database as a standalone Rust crate:
    /// one C file and header, a build script using the `cc` crate, a safe wrapper per kernel
    /// and tests against plain reference loops; no looptune crate in its tree.
    ExportC(export_c::ExportCArgs),
    /// Draw a tuning log as an SVG (or an HTML page with a table): best GFLOP/s against trials
    /// per workload and tuner, and each workload's best against the peak.
    Report(report::ReportArgs),
    /// Serve measurement requests on stdin/stdout until stdin closes: the worker process that
    /// measurer starts so that a crashing kernel cannot take the caller down.
    #[command(hide = true)]
    Worker,
}

/// An error in what the user typed, as opposed to a failure of looptune itself.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit code for errors in the command line, the same one clap uses for its own.
const EXIT_USAGE: u8 = 2;

/// Parses the arguments, runs the command and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return finish(main_job::run(&cli.backend));
    };
    let outcome = match command {
        Command::Ops => ops::run(),
        Command::Lower(args) => lower::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Peak(args) => peak::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Tune(args) => tune::run(&args),
        Command::TuneModel(args) => tune_model::run(&args),
        Command::TuneCompare(args) => compare::run(&args),
        Command::ShipRecords(args) => ship_records::run(&args),
        Command::Best(args) => logs::best(&args),
        Command::Show(args) => logs::show(&args),
        Command::Merge(args) => logs::merge_logs(&args),
        Command::ExportDb(args) => logs::export(&args),
        Command::ExportC(args) => export_c::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Worker => interrupt::ignore_in_worker()
            .and_then(|()| looptune::backend::serve_worker().context("measurement worker")),
    };
    finish(outcome)
}

/// Prints an error and picks the exit code: 2 for errors in what the user typed, 1 otherwise.
fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", looptune::error_line(err.as_ref()));
            if err.downcast_ref::<Usage>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
