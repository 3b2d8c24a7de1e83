//! The main job, `looptune` with no arguments: tune an embedded default set of workloads on a
//! budget of about a minute, write the log and its report, and print a table per workload.
//!
//! The table gives, for each workload, the best GFLOP/s found, its ratio to `looptune peak`
//! measured in the same run, its speed-up over the template's fallback config (the heuristic a
//! user gets without tuning), and for GEMMs its ratio to the `matrixmultiply` crate's `sgemm`
//! (single thread, same shape, timed with the same protocol), all measured in the same run. The
//! log, `looptune-default.tunelog` in the current directory, is resumed by a rerun; the report
//! (`looptune report`'s SVG) is written next to it as `looptune-default.svg`.
//!
//! `matrixmultiply` is a baseline only: its result is timed, never returned as a kernel.

use super::backends::BackendArgs;
use super::logs::read_with_warnings;
use super::measuring::{measurer, worker};
use super::report::{self, Peaks};
use super::tune::Bar;
use anyhow::Context;
use looptune::ir::ops::MatmulParams;
use looptune::ir::random::random_inputs;
use looptune::runtime::baseline::{sgemm, BaselineError};
use looptune::runtime::measure::time_in_process;
use looptune::runtime::{MeasureOptions, Target};
use looptune::space::Task;
use looptune::tune::{TunerKind, TuningTask};
use looptune::{Tuning, Workload};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The embedded default set: a GEMM and ResNet-18's C2 convolution.
const DEFAULT_WORKLOADS: &[&str] = &[
    "matmul:m=512,n=512,k=512",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
];

/// The log the main job writes and resumes.
const DEFAULT_LOG: &str = "looptune-default.tunelog";

/// The report the main job writes next to its log.
const DEFAULT_REPORT: &str = "looptune-default.svg";

/// Most trials per workload: the time budget ends the run first.
const TRIALS: usize = 10_000;

/// Seconds of tuning per workload.
const SECONDS_PER_WORKLOAD: f64 = 25.0;

/// Runs the main job with the backend `backend` chooses (`auto`: C when a compiler works).
pub fn run(backend: &BackendArgs) -> anyhow::Result<()> {
    let log = Path::new(DEFAULT_LOG);
    let threads = 1;
    let selected = backend.select()?;
    let target = Target::host().with_threads(threads);
    // A tuning run's protocol: a minute holds a real search.
    let measure = MeasureOptions::tuning();
    eprintln!(
        "looptune: tuning {} default workloads for about {SECONDS_PER_WORKLOAD:.0} s each on {threads} thread; log: {}",
        DEFAULT_WORKLOADS.len(),
        log.display()
    );
    // The peak before and after the tuning, the higher kept (see `peak::bracketed`).
    let (rows, peak) = super::peak::bracketed(threads, || {
        let mut rows = Vec::new();
        for text in DEFAULT_WORKLOADS {
            let workload: Workload = text.parse()?;
            let mut bar = Bar::new(TRIALS, &workload);
            let tuned = Tuning::new(workload)
                .selected_backend(selected.clone())
                .tuner(TunerKind::Random)
                .threads(threads)
                .log(log)
                .trials(TRIALS)
                .time_budget(Duration::from_secs_f64(SECONDS_PER_WORKLOAD))
                .measure_options(measure.clone())
                .worker(worker(false)?)
                .observer(&mut bar)
                .run()?;
            bar.finish();
            for warning in &tuned.warnings {
                eprintln!("warning: {warning}");
            }
            let task = tuned
                .task
                .builtin()
                .context("the main job tunes built-in workloads")?;
            let fallback = task
                .fallback_config()
                .context("the template's fallback config")?;
            let mut fallback_measurer =
                measurer(&target, &selected.backend, measure.clone(), false)?;
            let input = task.measure_input(&fallback)?;
            let fallback_gflops = match fallback_measurer.measure_one(&input).outcome {
                Ok(costs) => Some(costs.gflops(task.flops())),
                Err(error) => {
                    eprintln!("warning: the fallback config of `{workload}` failed: {error}");
                    None
                }
            };
            let sgemm_gflops = match workload {
                Workload::Matmul(params) => {
                    Some(sgemm_gflops(task, &params, &measure).with_context(|| {
                        format!("timing matrixmultiply's sgemm on `{workload}`")
                    })?)
                }
                _ => None,
            };
            rows.push((workload, tuned.report, fallback_gflops, sgemm_gflops));
        }
        Ok(rows)
    })?;
    let width = rows
        .iter()
        .map(|(workload, ..)| workload.to_string().len())
        .max()
        .unwrap_or(8);
    println!(
        "{:<width$} {:>7} {:>9} {:>8} {:>10} {:>9} {:>8} {:>9}",
        "workload", "trials", "GFLOP/s", "of peak", "fallback", "speed-up", "sgemm", "vs sgemm"
    );
    for (workload, report, fallback, sgemm) in &rows {
        let best = report.best.as_ref().map(|best| best.gflops);
        let cell = |value: Option<f64>, suffix: &str| {
            value.map_or("-".to_string(), |v| format!("{v:.2}{suffix}"))
        };
        println!(
            "{:<width$} {:>7} {:>9} {:>8} {:>10} {:>9} {:>8} {:>9}",
            workload.to_string(),
            report.trials + report.resumed,
            cell(best, ""),
            cell(best.map(|b| 100.0 * b / peak.gflops), "%"),
            cell(*fallback, ""),
            cell(best.zip(*fallback).map(|(b, f)| b / f), "x"),
            cell(*sgemm, ""),
            cell(best.zip(*sgemm).map(|(b, s)| b / s), "x"),
        );
    }
    println!(
        "backend {}; peak {:.2} GFLOP/s ({threads} thread, {} f32 lanes), measured in this run; log: {}",
        selected.backend.id().version,
        peak.gflops,
        peak.lanes,
        log.display()
    );
    println!("sgemm: the matrixmultiply crate, single thread, same timing protocol, this run");
    let report_path = log.with_file_name(DEFAULT_REPORT);
    let contents = read_with_warnings(log)?;
    report::write(
        &contents.records,
        log,
        &report_path,
        Peaks::default().with(threads, peak.gflops),
        "peak: the host's full-width FMA peak, measured before and after tuning in this run (the higher)",
    )?;
    println!("report: {}", report_path.display());
    Ok(())
}

/// GFLOP/s of `matrixmultiply::sgemm` on the matmul of `task`, on its reference inputs, timed
/// like a candidate (the measurer's protocol, in this process).
fn sgemm_gflops(
    task: &Task,
    params: &MatmulParams,
    measure: &MeasureOptions,
) -> anyhow::Result<f64> {
    let program = task.reference_program()?;
    let inputs = random_inputs(&program, 0);
    let [a, b] = inputs.as_slice() else {
        anyhow::bail!("a matmul has two inputs, this one {}", inputs.len());
    };
    let dims = |value: i64| usize::try_from(value).context("a matmul extent");
    let (m, n, k) = (dims(params.m)?, dims(params.n)?, dims(params.k)?);
    let mut c = vec![0.0f32; m * n];
    let costs = time_in_process(measure, || {
        sgemm((m, n, k), params.transpose_b, a, b, &mut c)?;
        black_box(&mut c);
        Ok::<(), BaselineError>(())
    })?;
    Ok(task.flops() / costs.median_s / 1e9)
}
