//! The main job, `looptune` with no arguments: tune an embedded default set of workloads on a
//! budget of about a minute, write the log, and print a table per workload.
//!
//! The table gives, for each workload, the best GFLOP/s found, its ratio to `looptune peak`
//! measured in the same run, and its speed-up over the template's fallback config (the
//! heuristic a user gets without tuning), measured in the same run too. The log,
//! `looptune-default.tunelog` in the current directory, is resumed by a rerun.

use super::tune::{measurer, Session, TunerKind};
use anyhow::Context;
use looptune::jit::{measure_peak, MeasureOptions, Target};
use looptune::space::Task;
use looptune::tune::{TuneOptions, TuningTask};
use looptune::Workload;
use std::path::Path;
use std::time::Duration;

/// The embedded default set: a GEMM and ResNet-18's C2 convolution.
const DEFAULT_WORKLOADS: &[&str] = &[
    "matmul:m=512,n=512,k=512",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
];

/// The log the main job writes and resumes.
const DEFAULT_LOG: &str = "looptune-default.tunelog";

/// Seconds of tuning per workload.
const SECONDS_PER_WORKLOAD: f64 = 25.0;

/// Runs the main job.
pub fn run() -> anyhow::Result<()> {
    let log = Path::new(DEFAULT_LOG);
    let threads = 1;
    // Cheaper timing than `tune`'s default, so that a minute holds a real search.
    let measure = MeasureOptions {
        repeat: 3,
        min_repeat_ms: 20.0,
        ..MeasureOptions::default()
    };
    eprintln!(
        "looptune: tuning {} default workloads for about {SECONDS_PER_WORKLOAD:.0} s each on {threads} thread; log: {}",
        DEFAULT_WORKLOADS.len(),
        log.display()
    );
    let mut rows = Vec::new();
    for text in DEFAULT_WORKLOADS {
        let workload: Workload = text.parse()?;
        let task =
            Task::new(workload).with_context(|| format!("building the task of `{workload}`"))?;
        let session = Session {
            task: &task,
            tuner: TunerKind::Random,
            seed: 0,
            threads,
            log,
            options: TuneOptions {
                trials: 10_000,
                batch_size: 8,
                early_stopping: None,
                time_budget: Some(Duration::from_secs_f64(SECONDS_PER_WORKLOAD)),
            },
            measure: measure.clone(),
            in_process: false,
        };
        let (report, _) = session.run()?;
        let fallback = task
            .fallback_config()
            .context("the template's fallback config")?;
        let target = Target::host().with_threads(threads);
        let mut fallback_measurer = measurer(&target, measure.clone(), false)?;
        let input = task.measure_input(&fallback).map_err(anyhow::Error::msg)?;
        let fallback_gflops = fallback_measurer
            .measure_one(&input)
            .outcome
            .ok()
            .map(|costs| costs.gflops(task.flops()));
        rows.push((workload, report, fallback_gflops));
    }
    let peak = measure_peak(threads).context("measuring the peak")?;
    let width = rows
        .iter()
        .map(|(workload, ..)| workload.to_string().len())
        .max()
        .unwrap_or(8);
    println!(
        "{:<width$} {:>7} {:>9} {:>8} {:>10} {:>9}",
        "workload", "trials", "GFLOP/s", "of peak", "fallback", "speed-up"
    );
    for (workload, report, fallback) in &rows {
        let best = report.best.as_ref().map(|best| best.gflops);
        let cell = |value: Option<f64>, suffix: &str| {
            value.map_or("-".to_string(), |v| format!("{v:.2}{suffix}"))
        };
        println!(
            "{:<width$} {:>7} {:>9} {:>8} {:>10} {:>9}",
            workload.to_string(),
            report.trials + report.resumed,
            cell(best, ""),
            cell(best.map(|b| 100.0 * b / peak.gflops), "%"),
            cell(*fallback, ""),
            cell(best.zip(*fallback).map(|(b, f)| b / f), "x"),
        );
    }
    println!(
        "peak {:.2} GFLOP/s ({threads} thread), measured in this run; log: {}",
        peak.gflops,
        log.display()
    );
    Ok(())
}
