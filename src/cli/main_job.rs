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

use super::logs::read_with_warnings;
use super::report::{self, Peaks};
use super::tune::{measurer, Session, TunerKind};
use anyhow::Context;
use looptune::ir::ops::MatmulParams;
use looptune::ir::random::random_inputs;
use looptune::jit::{measure_peak, MeasureOptions, Target};
use looptune::space::Task;
use looptune::tune::{TuneOptions, TuningTask};
use looptune::Workload;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// The embedded default set: a GEMM and ResNet-18's C2 convolution.
const DEFAULT_WORKLOADS: &[&str] = &[
    "matmul:m=512,n=512,k=512",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
];

/// The log the main job writes and resumes.
const DEFAULT_LOG: &str = "looptune-default.tunelog";

/// The report the main job writes next to its log.
const DEFAULT_REPORT: &str = "looptune-default.svg";

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
        let fallback_gflops = match fallback_measurer.measure_one(&input).outcome {
            Ok(costs) => Some(costs.gflops(task.flops())),
            Err(error) => {
                eprintln!("warning: the fallback config of `{workload}` failed: {error}");
                None
            }
        };
        let sgemm_gflops = match workload {
            Workload::Matmul(params) => Some(
                sgemm_gflops(&task, &params, &measure)
                    .with_context(|| format!("timing matrixmultiply's sgemm on `{workload}`"))?,
            ),
            _ => None,
        };
        rows.push((workload, report, fallback_gflops, sgemm_gflops));
    }
    let peak = measure_peak(threads).context("measuring the peak")?;
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
        "peak {:.2} GFLOP/s ({threads} thread), measured in this run; log: {}",
        peak.gflops,
        log.display()
    );
    println!("sgemm: the matrixmultiply crate, single thread, same timing protocol, this run");
    let report_path = log.with_file_name(DEFAULT_REPORT);
    let contents = read_with_warnings(&log.to_path_buf())?;
    report::write(
        &contents.records,
        log,
        &report_path,
        Peaks::default().with(threads, peak.gflops),
        "peak: the JIT's f32x4 FMA peak, measured with measure_peak in the main job's run",
    )?;
    println!("report: {}", report_path.display());
    Ok(())
}

/// GFLOP/s of `matrixmultiply::sgemm` on the matmul of `task`, on its reference inputs, timed
/// like a candidate (see [`median_seconds`]).
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
    let seconds = median_seconds(measure, || {
        sgemm(m, n, k, params.transpose_b, a, b, &mut c);
        black_box(&mut c);
    });
    Ok(task.flops() / seconds / 1e9)
}

/// `C = A B` (`B` stored `[n, k]` when `transpose_b`) with `matrixmultiply`, row-major, `c`
/// overwritten; the slices' lengths are checked against the shape before the call.
fn sgemm(m: usize, n: usize, k: usize, transpose_b: bool, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "sgemm buffers do not match {m}x{n}x{k}"
    );
    let (row_stride_b, column_stride_b) = if transpose_b { (1, k) } else { (n, 1) };
    // SAFETY: the lengths checked above cover every element the strides reach (A m x k with
    // row stride k, B k x n read with the strides of its stored layout, C m x n with row stride
    // n), and `c` is a unique borrow, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            row_stride_b as isize,
            column_stride_b as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Median seconds per call of `call` under the measurer's protocol (`warmup` calls, `number`
/// grown until a repeat lasts `min_repeat_ms`, `repeat` repeats, the median), so that the
/// baseline is timed as the candidates are.
fn median_seconds(options: &MeasureOptions, mut call: impl FnMut()) -> f64 {
    for _ in 0..options.warmup {
        call();
    }
    let min_repeat = Duration::from_secs_f64(options.min_repeat_ms / 1e3);
    let mut number = options.number.max(1);
    let mut timed = |number: usize| {
        let start = Instant::now();
        for _ in 0..number {
            call();
        }
        start.elapsed()
    };
    let mut all_s = Vec::with_capacity(options.repeat);
    loop {
        let elapsed = timed(number);
        if elapsed >= min_repeat || number >= 1 << 30 {
            all_s.push(elapsed.as_secs_f64() / number as f64);
            break;
        }
        number = number.saturating_mul(2);
    }
    while all_s.len() < options.repeat.max(1) {
        all_s.push(timed(number).as_secs_f64() / number as f64);
    }
    all_s.sort_by(f64::total_cmp);
    all_s[all_s.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_matches_the_definition_in_both_layouts_of_b() {
        let (m, n, k) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        for transpose_b in [false, true] {
            let mut c = vec![f32::NAN; m * n];
            sgemm(m, n, k, transpose_b, &a, &b, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let expected: f32 = (0..k)
                        .map(|p| {
                            let b_value = if transpose_b {
                                b[j * k + p]
                            } else {
                                b[p * n + j]
                            };
                            a[i * k + p] * b_value
                        })
                        .sum();
                    assert_eq!(c[i * n + j], expected, "{transpose_b} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn the_median_of_repeats_grows_calls_to_the_minimum_repeat() {
        let options = MeasureOptions {
            repeat: 3,
            min_repeat_ms: 2.0,
            ..MeasureOptions::default()
        };
        let mut calls = 0usize;
        let seconds = median_seconds(&options, || {
            calls += 1;
            std::thread::sleep(Duration::from_micros(200));
        });
        assert!(seconds >= 200e-6, "{seconds}");
        // Each repeat lasts at least 2 ms, so at least 8 calls of 200 us were timed per repeat.
        assert!(calls >= options.warmup + 3 * 8, "{calls} calls");
    }
}
