//! `looptune ship-records`: measures the records looptune ships (see `looptune::tune::shipped`)
//! again on this machine: random configs of every reference workload, tuned by the library's one
//! loop into one tuning log. `--trials` is what each workload has in the end: a rerun measures
//! only what the log lacks, so a run cut short (Ctrl-C loses at most the batch in flight) is
//! finished by running the same command again, and a set is extended to new reference
//! workloads without measuring the old ones again.

use super::backends::BackendArgs;
use super::measuring::MeasureArgs;
use anyhow::Context;
use clap::Args;
use looptune::tune::{reference_workloads, Finalists};
use looptune::{TunerKind, Tuning};
use std::path::PathBuf;

/// Arguments of `looptune ship-records`.
#[derive(Debug, Args)]
pub struct ShipRecordsArgs {
    /// The tuning log to write (resumed when it exists); the shipped sets are
    /// crates/looptune-tune/records/c-avx2.tunelog (the C backend on an AVX2 host) and
    /// crates/looptune-tune/records/cranelift.tunelog (the Cranelift JIT, any x86-64 host).
    #[arg(long)]
    out: PathBuf,
    /// Records each reference workload has in the log in the end (those already there for the
    /// same backend count).
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
    let workloads = reference_workloads();
    let backend = selected.backend.id().name;
    let existing = super::logs::records_to_resume(&args.out)?;
    for (number, workload) in workloads.iter().cloned().enumerate() {
        super::input::fits_in_memory(&workload)?;
        let key = looptune::TaskKey::of_workload(&workload);
        let have = existing
            .iter()
            .filter(|record| record.workload == key.as_str() && record.target.backend == backend)
            .count();
        let missing = (args.trials as usize).saturating_sub(have);
        if missing == 0 {
            println!(
                "{:>2}/{}  {workload}: {have} records in the log already",
                number + 1,
                workloads.len()
            );
            continue;
        }
        // Random configs are what a model learns rankings from without the bias of a search;
        // no finalists, so that every record is one trial.
        let tuned = Tuning::new(workload)
            .selected_backend(selected.clone())
            .tuner(TunerKind::Random)
            .seed(args.seed)
            .log(&args.out)
            .trials(missing)
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
            workloads.len(),
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
