//! `looptune ship-records`: measures the records looptune ships (see `looptune::tune::shipped`)
//! again on this machine: random configs of every reference workload, tuned by the library's one
//! loop into one tuning log. A rerun resumes from the log, so a run cut short (Ctrl-C loses at
//! most the batch in flight) is finished by running the same command again.

use super::backends::BackendArgs;
use super::measuring::MeasureArgs;
use anyhow::Context;
use clap::Args;
use looptune::tune::{Finalists, REFERENCE_WORKLOADS};
use looptune::{TunerKind, Tuning};
use std::path::PathBuf;

/// Arguments of `looptune ship-records`.
#[derive(Debug, Args)]
pub struct ShipRecordsArgs {
    /// The tuning log to write (resumed when it exists); the shipped set of the C backend on an
    /// AVX2 host is crates/looptune-tune/records/c-avx2.tunelog.
    #[arg(long)]
    out: PathBuf,
    /// Random configs measured per reference workload.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    trials: u32,
    /// Seed of the random tuner.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    measure: MeasureArgs,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Runs `looptune ship-records`.
pub fn run(args: &ShipRecordsArgs) -> anyhow::Result<()> {
    let measure = args.measure.options()?;
    let selected = args.backend.select()?;
    for (number, text) in REFERENCE_WORKLOADS.iter().enumerate() {
        let workload = super::input::workload(text)?;
        super::input::fits_in_memory(&workload)?;
        // Random configs are what a model learns rankings from without the bias of a search;
        // no finalists, so that every record is one trial.
        let tuned = Tuning::new(workload)
            .selected_backend(selected.clone())
            .tuner(TunerKind::Random)
            .seed(args.seed)
            .log(&args.out)
            .trials(args.trials as usize)
            .finalists(Finalists::NONE)
            .transfer(false)
            .measure_options(measure.clone())
            .worker(super::measuring::worker(args.measure.in_process)?)
            .run()
            .with_context(|| format!("measuring `{workload}`"))?;
        let report = &tuned.report;
        println!(
            "{:>2}/{}  {workload}: {} trials ({} from the log), {} errors, best {}",
            number + 1,
            REFERENCE_WORKLOADS.len(),
            report.trials,
            report.resumed,
            report.errors,
            tuned
                .best_gflops()
                .map_or("none".to_string(), |gflops| format!("{gflops:.2} GFLOP/s"))
        );
    }
    println!("log         {}", args.out.display());
    Ok(())
}
