//! Quickstart: tune a matrix product for a few seconds, then call the tuned kernel on your own
//! buffers.
//!
//! ```sh
//! cargo run --release --example quickstart                  # about 10 s of tuning
//! cargo run --release --example quickstart -- --seconds 3   # less
//! ```
//!
//! The steps are the ones `looptune tune` takes, through the library's tuning API: a workload,
//! a [`Tuning`] with a tuner (XGBoost over loop-nest features, or random) and a time budget,
//! which checks every candidate against the operator's definition before timing it (in a worker
//! process: this executable, made one by `serve_worker_if_requested`), appends every
//! measurement to a tuning log and resumes from it when run again. The best kernel is then
//! called on buffers of our own, checked against a plain triple loop and timed. The log can be
//! deployed without the tuning half of looptune: see `examples/deploy.rs`.

#![forbid(unsafe_code)]

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use looptune::runtime::measure::time_in_process;
use looptune::runtime::MeasureOptions;
use looptune::tune::{Observer, Progress, TunerKind};
use looptune::{Tuning, Workload};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Which tuner proposes configs (the two this example offers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TunerArg {
    /// XGBoost over loop-nest features, searched by simulated annealing (random for the
    /// first 8 configs).
    Xgb,
    /// Uniform sampling without replacement.
    Random,
}

/// Tune C = A · B for a few seconds and call the tuned kernel.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of tuning (no batch starts after this).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Most configs to measure in this run.
    #[arg(long, default_value_t = 200)]
    trials: usize,
    /// Rows of A and C.
    #[arg(long, default_value_t = 256)]
    m: i64,
    /// Columns of B and C.
    #[arg(long, default_value_t = 256)]
    n: i64,
    /// Columns of A, rows of B.
    #[arg(long, default_value_t = 256)]
    k: i64,
    /// The tuner.
    #[arg(long, value_enum, default_value_t = TunerArg::Xgb)]
    tuner: TunerArg,
    /// The tuning log: appended to, and resumed from when it exists.
    #[arg(long, default_value = "quickstart.tunelog")]
    log: PathBuf,
    /// Seed of the tuner.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Prints one line per batch on stderr.
struct Lines;

impl Observer for Lines {
    fn batch_done(&mut self, progress: &Progress) {
        let best = progress
            .best_gflops
            .map_or("-".to_string(), |gflops| format!("{gflops:.2} GFLOP/s"));
        eprintln!(
            "  {}/{} configs, best {best}, {} failed",
            progress.trials, progress.budget, progress.errors
        );
    }
}

/// Errors are printed as a chain of causes (`error: reading x: No such file`) and exit code 1,
/// never a panic.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", looptune::error_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // Started as the measurement worker, this serves candidates and exits; else it returns.
    looptune::serve_worker_if_requested();
    let args = Args::parse();
    if !(args.seconds.is_finite() && args.seconds >= 0.0) {
        bail!(
            "--seconds {} must be a number of seconds, at least 0",
            args.seconds
        );
    }

    // 1. Tune into the log: the backend is `auto` (C through the system compiler when one
    //    works, else Cranelift), the register-tiled matmul template's space is sized for its
    //    vectors, one thread.
    let workload = Workload::matmul(args.m, args.n, args.k);
    let mut lines = Lines;
    let tuned = Tuning::new(workload)
        .tuner(match args.tuner {
            TunerArg::Xgb => TunerKind::Xgb,
            TunerArg::Random => TunerKind::Random,
        })
        .seed(args.seed)
        .trials(args.trials)
        .time_budget(Duration::from_secs_f64(args.seconds))
        .log(&args.log)
        // Fewer and shorter repeats than `looptune tune`: more configs in a short budget.
        .measure_options(MeasureOptions {
            repeat: 3,
            min_repeat_ms: 20.0,
            ..MeasureOptions::default()
        })
        .observer(&mut lines)
        .run()?;
    for note in tuned.notes() {
        eprintln!("{note}");
    }
    let report = &tuned.report;
    println!(
        "workload    {workload} ({} raw points in its space)",
        tuned.task.space().size()
    );
    println!(
        "tuned       {} configs ({} failed, {} resumed from the log), stopped: {}",
        report.trials, report.errors, report.resumed, report.stop_reason
    );
    let Some(best) = &report.best else {
        bail!("no config passed its check; nothing to call");
    };
    println!(
        "best        {:.2} GFLOP/s as measured while tuning",
        best.gflops
    );

    // 2. The best config, compiled for this machine, called on our own buffers and checked
    //    against a plain triple loop.
    let kernel = tuned.best_kernel()?;

    let (m, n, k) = (args.m as usize, args.n as usize, args.k as usize);
    let a: Vec<f32> = (0..m * k)
        .map(|index| ((index * 7 % 23) as f32 - 11.0) / 11.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|index| ((index * 5 % 19) as f32 - 9.0) / 9.0)
        .collect();
    let mut c = vec![0.0f32; m * n];
    kernel.call(&[&a, &b], &mut [&mut c])?;
    let started = Instant::now();
    let expected = reference_matmul(&a, &b, m, n, k);
    let reference_time = started.elapsed();
    let scale = expected
        .iter()
        .fold(0f32, |acc, x| acc.max(x.abs()))
        .max(1.0);
    let worst = c
        .iter()
        .zip(&expected)
        .map(|(got, want)| (got - want).abs() / scale)
        .fold(0f32, f32::max);
    if worst > 1e-5 {
        bail!("the tuned kernel differs from the triple loop by {worst:e} (relative)");
    }
    println!(
        "checked     {} elements against a triple loop (worst relative error {worst:.1e})",
        c.len()
    );

    // 3. Time it.
    let flops = workload.flops();
    let per_call = Duration::from_secs_f64(
        time_in_process(&MeasureOptions::default(), || {
            kernel.call(&[&a, &b], &mut [&mut c])
        })?
        .median_s,
    );
    println!(
        "kernel      {:.3} ms per call, {:.2} GFLOP/s on our buffers; the triple loop: {:.2} GFLOP/s",
        per_call.as_secs_f64() * 1e3,
        flops / per_call.as_secs_f64() / 1e9,
        flops / reference_time.as_secs_f64() / 1e9
    );
    println!("log         {}", args.log.display());
    Ok(())
}

/// `C = A · B` the obvious way, accumulating in `f64`.
fn reference_matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for row in 0..m {
        for column in 0..n {
            let mut total = 0f64;
            for inner in 0..k {
                total += f64::from(a[row * k + inner]) * f64::from(b[inner * n + column]);
            }
            c[row * n + column] = total as f32;
        }
    }
    c
}
