//! Quickstart: tune a matrix product for a few seconds, then call the tuned kernel on your own
//! buffers.
//!
//! ```sh
//! cargo run --release --example quickstart                  # about 10 s of tuning
//! cargo run --release --example quickstart -- --seconds 3   # less
//! ```
//!
//! The steps are the ones `looptune tune` takes, written out with the library: a workload and
//! its task (the operator's template and config space), a measurer that checks every candidate
//! against the operator's definition before timing it (in a worker process: this executable,
//! started with `--measure-worker`), a tuner (XGBoost over loop-nest features, or random), and
//! `tune`, which appends every measurement to a tuning log and resumes from it when run again.
//! The best config is then compiled, called on buffers of our own, checked against a plain
//! triple loop and timed. The log can be deployed without the tuning half of looptune: see
//! `examples/deploy.rs`.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use looptune::backend::{select, serve_worker, task_for, BackendChoice};
use looptune::ir::ops::MatmulParams;
use looptune::log::{read_log_to_resume, LogWriter, RecordContext, TargetFingerprint};
use looptune::runtime::measure::{time_in_process, Isolation, WorkerCommand};
use looptune::runtime::{Backend, MeasureOptions, Measurer, Target};
use looptune::tune::{tune, Observer, Progress, RandomTuner, TuneOptions, Tuner, XgbTuner};
use looptune::Workload;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The argument that makes this executable serve as the measurer's worker process.
const WORKER_ARG: &str = "--measure-worker";

/// Which tuner proposes configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TunerKind {
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
    #[arg(long, value_enum, default_value_t = TunerKind::Xgb)]
    tuner: TunerKind,
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
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some(WORKER_ARG) {
        return serve_worker().context("measurement worker");
    }
    let args = Args::parse();
    if !(args.seconds.is_finite() && args.seconds >= 0.0) {
        bail!(
            "--seconds {} must be a number of seconds, at least 0",
            args.seconds
        );
    }

    // 1. The backend (C through the system compiler when one works, else Cranelift), the
    //    workload and its task: the register-tiled matmul template, its space sized for the
    //    backend's vectors. One thread: the kernel and the log's records are single-threaded.
    let selected = select(BackendChoice::Auto)?;
    if let Some(note) = &selected.note {
        eprintln!("{note}");
    }
    let backend = selected.backend;
    let target = Target::host().with_threads(1);
    let workload = Workload::Matmul(MatmulParams {
        m: args.m,
        n: args.n,
        k: args.k,
        transpose_b: false,
    });
    let task = task_for(workload, backend.as_ref(), &target)
        .with_context(|| format!("building the task of `{workload}`"))?;
    println!(
        "workload    {workload} ({} template, {} raw points)",
        task.template_name(),
        task.space().size()
    );

    // 2. Tune into the log.
    // The log resumed from (nothing yet on a first run).
    let contents =
        read_log_to_resume(&args.log).with_context(|| format!("reading {}", args.log.display()))?;
    for warning in &contents.warnings {
        eprintln!("warning: {warning}");
    }
    let existing = contents.records;
    let mut writer =
        LogWriter::open(&args.log).with_context(|| format!("opening {}", args.log.display()))?;
    let mut measurer = measurer(&target, &backend)?;
    let mut tuner: Box<dyn Tuner + '_> = match args.tuner {
        TunerKind::Xgb => Box::new(XgbTuner::with_defaults(&task, args.seed)?),
        TunerKind::Random => Box::new(RandomTuner::new(task.space(), args.seed)),
    };
    let context = RecordContext::new(
        &workload,
        TargetFingerprint::new(&target, backend.as_ref()),
        tuner.name(),
    );
    let options = TuneOptions {
        trials: args.trials,
        batch_size: 8,
        early_stopping: None,
        time_budget: Some(Duration::from_secs_f64(args.seconds)),
    };
    let report = tune(
        &task,
        tuner.as_mut(),
        &mut measurer,
        &mut writer,
        &context,
        &existing,
        &options,
        &mut Lines,
    )?;
    println!(
        "tuned       {} configs ({} failed, {} resumed from the log), stopped: {}",
        report.trials, report.errors, report.resumed, report.stop_reason
    );
    let Some(best) = report.best else {
        bail!("no config passed its check; nothing to call");
    };
    println!(
        "best        {:.2} GFLOP/s as measured while tuning",
        best.gflops
    );

    // 3. Compile the best config for this machine.
    let config = task.space().from_values(&best.values)?;
    println!("config      {config}");
    let kernel = backend.compile(&task.lower(&config)?, &target)?;

    // 4. Call it on our own buffers and check it against a plain triple loop.
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

    // 5. Time it.
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

/// A measurer whose worker is this executable.
fn measurer(target: &Target, backend: &std::sync::Arc<dyn Backend>) -> Result<Measurer> {
    let exe = std::env::current_exe().context("locating this example for its worker")?;
    let options = MeasureOptions {
        // Fewer and shorter repeats than `looptune tune`: more configs in a short budget.
        repeat: 3,
        min_repeat_ms: 20.0,
        timeout: Duration::from_secs(10),
        ..MeasureOptions::default()
    }
    .with_isolation(Isolation::Worker);
    Ok(Measurer::new(
        options,
        target.clone(),
        std::sync::Arc::clone(backend),
        Some(WorkerCommand::new(exe).arg(WORKER_ARG)),
    )?)
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
