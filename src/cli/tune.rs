//! `looptune tune WORKLOAD`: search the workload's config space, measuring every candidate in a
//! worker process and appending it to the tuning log.
//!
//! Progress (trials, best GFLOP/s, errors) goes to stderr; the summary goes to stdout, as one
//! JSON object with `--json`. The peak is measured in the same run, before and after tuning
//! (the higher counts), so that the ratio compares numbers taken on the same machine state.

use super::backends::BackendArgs;
use super::input;
use super::measuring::{worker, MeasureArgs};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use looptune::tune::{Finalists, Noise, Observer, Progress, TunerKind};
use looptune::{Tuning, Workload};
use std::path::PathBuf;

/// The tuner flag's values: the library's names, parsed by the library.
pub fn tuner_parser() -> impl clap::builder::TypedValueParser<Value = TunerKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(TunerKind::ALL.map(TunerKind::name))
        .try_map(|name| name.parse::<TunerKind>())
}

/// Arguments of `looptune tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The workload, `op:key=value,...` (see `looptune ops`).
    workload: String,
    /// The tuner: random (uniform sampling without replacement), grid (the space in index
    /// order), xgb (XGBoost over loop-nest features, searched by simulated annealing) or ga
    /// (genetic: elites, crossover over knobs, mutation).
    #[arg(long, value_parser = tuner_parser(), default_value = "random")]
    tuner: TunerKind,
    /// Configs to measure in this run (configs already in the log do not count).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    trials: u32,
    /// The tuning log to append to (created if missing; a rerun resumes from it).
    #[arg(long)]
    log: PathBuf,
    /// Seed of the tuner's decisions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads for parallel loops of the kernels and for the peak measurement.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Configs measured per batch (the log is synced once per batch).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Stop after this many trials in a row without a new best.
    #[arg(long)]
    early_stop: Option<u32>,
    /// Stop starting batches after this many seconds.
    #[arg(long)]
    time_budget: Option<f64>,
    /// Once the search stops, measure this many of the best configs again, side by side, so
    /// that a busy moment of the machine does not decide which config the log calls best (0 or
    /// 1: none). Their measurements are logged and are not trials.
    #[arg(long, default_value_t = Finalists::default().configs as u32,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    finalists: u32,
    /// Rounds of `--finalists`, each measuring every finalist once.
    #[arg(long, default_value_t = Finalists::default().rounds as u32,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    finalist_rounds: u32,
    #[command(flatten)]
    measure: MeasureArgs,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Do not pre-train the `xgb` tuner's model on the log's records of other shapes of the
    /// same operator, nor, when the log has none, on the records looptune ships (transfer
    /// learning, on by default).
    #[arg(long)]
    no_transfer: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// An indicatif bar on stderr, the observer of `tune` and the main job.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar of `trials` for `workload`.
    pub fn new(trials: usize, workload: &Workload) -> Bar {
        let bar = ProgressBar::new(trials as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} trials, {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("tuning {workload}"));
        Bar(bar)
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Observer for Bar {
    fn batch_done(&mut self, progress: &Progress) {
        self.0.set_position(progress.trials as u64);
        let best = progress
            .best_gflops
            .map_or("-".to_string(), |gflops| format!("{gflops:.2}"));
        self.0
            .set_message(format!("best {best} GFLOP/s, {} errors", progress.errors));
    }

    fn interrupted(&self) -> bool {
        super::interrupt::requested()
    }
}

/// Runs `looptune tune`.
pub fn run(args: &TuneArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let time_budget = input::time_budget(args.time_budget)?;
    let measure = args.measure.options()?;
    let threads = super::input::threads(args.threads)?;
    input::fits_in_memory(&workload)?;
    super::interrupt::install()?;
    let selected = args.backend.select()?;
    let mut bar = Bar::new(args.trials as usize, &workload);
    let mut tuning = Tuning::new(workload)
        .selected_backend(selected.clone())
        .tuner(args.tuner)
        .seed(args.seed)
        .threads(threads)
        .log(&args.log)
        .trials(args.trials as usize)
        .batch_size(args.batch_size as usize)
        .measure_options(measure.clone())
        .worker(worker(args.measure.in_process)?)
        .transfer(!args.no_transfer)
        .finalists(Finalists {
            configs: args.finalists as usize,
            rounds: args.finalist_rounds as usize,
        })
        .observer(&mut bar);
    if let Some(patience) = args.early_stop {
        tuning = tuning.early_stopping(patience as usize);
    }
    if let Some(budget) = time_budget {
        tuning = tuning.time_budget(budget);
    }
    let (tuned, peak) = super::peak::bracketed(threads, || Ok(tuning.run()?))?;
    bar.finish();
    for warning in &tuned.warnings {
        eprintln!("warning: {warning}");
    }
    let (report, tuner, stats) = (&tuned.report, tuned.tuner, &tuned.xgb);
    let best_gflops = report.best.as_ref().map(|best| best.gflops);
    let compile_s = selected.compile_seconds();
    let backend = selected.backend.id();
    if args.json {
        let summary = serde_json::json!({
            "workload": workload.to_string(),
            "tuner": tuner.name(),
            "backend": backend.name,
            "backend_version": backend.version,
            "compile_s": compile_s,
            "trials": report.trials,
            "resumed": report.resumed,
            "errors": report.errors,
            "environment_errors": report.environment_errors,
            "remeasured": report.remeasured,
            "best_gflops": best_gflops,
            "peak_gflops": peak.gflops,
            "ratio_to_peak": best_gflops.map(|gflops| gflops / peak.gflops),
            "best_config": report.best.as_ref().map(|best| &best.values),
            "stop_reason": report.stop_reason.as_str(),
            "wall_s": report.wall.as_secs_f64(),
            "short_trials": report.short,
            "trials_to_90": report.time_to(0.9).map(|(trials, _)| trials),
            "seconds_to_90": report.time_to(0.9).map(|(_, seconds)| seconds),
            "noise": {
                "repeat_spread": report.noise.repeat_spread,
                "remeasure_cv": report.noise.remeasure_cv,
                "remeasured_configs": report.noise.remeasured_configs,
            },
            "trials_per_s": report.trials as f64 / report.wall.as_secs_f64().max(1e-9),
            "threads": threads,
            "log": args.log.display().to_string(),
            "model": stats.as_ref().map(|stats| serde_json::json!({
                "fits": stats.fits,
                "fit_s": stats.fit_time.as_secs_f64(),
                "anneal_rounds": stats.rounds,
                "anneal_s": stats.anneal_time.as_secs_f64(),
                "scored": stats.scored,
                "extracted": stats.extracted,
                "transfer_rows": stats.transfer_rows,
                "transfer_workloads": stats.transfer_workloads,
                "transfer_shipped": tuned.shipped_transfer,
            })),
        });
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("workload    {workload}");
        println!("backend     {} ({})", backend.name, backend.version);
        println!(
            "tuner       {tuner} ({} trials this run, {} from the log, {} errors)",
            report.trials, report.resumed, report.errors
        );
        print_retry_line(report.environment_errors);
        if report.remeasured > 0 {
            println!(
                "finalists   {} measurements of the best configs again, side by side; a config \
                 measured more than once counts at its median",
                report.remeasured
            );
        }
        match best_gflops {
            Some(gflops) => {
                let (unit, of_peak) = super::peak::throughput_unit(&workload);
                println!(
                    "best        {gflops:.2} {unit}, {:.1}% {of_peak} {:.1} GFLOP/s ({threads} \
                     thread(s))",
                    100.0 * gflops / peak.gflops,
                    peak.gflops
                )
            }
            None => println!("best        none: no config passed its check"),
        }
        println!(
            "stopped     {} after {:.1} s ({:.2} trials/s; {:.1} s compiling)",
            report.stop_reason,
            report.wall.as_secs_f64(),
            report.trials as f64 / report.wall.as_secs_f64().max(1e-9),
            compile_s
        );
        if let Some((trials, seconds)) = report.time_to(0.9) {
            println!("90% of best after {trials} trials, {seconds:.1} s");
        }
        if report.short > 0 {
            println!(
                "staged      {} of the trials were timed short: under {} of the best so far after \
                 a first repeat of {} ms, and not timed further",
                report.short, measure.staging.cutoff, measure.staging.first_stage_ms
            );
        }
        println!("noise       {}", noise_text(&report.noise));
        if let Some(stats) = &stats {
            println!(
                "model       {} fits in {:.1} s, {} annealing rounds in {:.1} s ({} candidates scored, {} of them lowered, the rest from the feature cache); transfer: {} rows of {} workloads{}",
                stats.fits,
                stats.fit_time.as_secs_f64(),
                stats.rounds,
                stats.anneal_time.as_secs_f64(),
                stats.scored,
                stats.extracted,
                stats.transfer_rows,
                stats.transfer_workloads,
                if tuned.shipped_transfer {
                    " (with records shipped with looptune, of shapes the log lacks)"
                } else {
                    ""
                }
            );
        }
        println!("log         {}", args.log.display());
    }
    Ok(())
}

/// The noise line: the spread of repeats inside one measurement and how far a config measured
/// again varied, or why a figure is missing.
fn noise_text(noise: &Noise) -> String {
    let repeats =
        noise
            .repeat_spread
            .map_or("no measurement had two repeats".to_string(), |spread| {
                format!(
                    "repeats of one measurement spread by a median {:.1}%",
                    100.0 * spread
                )
            });
    let again = noise.remeasure_cv.map_or(
        "no config was measured twice".to_string(),
        |cv| {
            format!(
                "a config measured again varied by a median {:.1}% (coefficient of variation, {} configs)",
                100.0 * cv,
                noise.remeasured_configs
            )
        },
    );
    format!("{repeats}; {again}")
}

/// The line `tune` and `tune-model` print when some errors were not the kernels' fault: they
/// are logged as `Environment`, and a rerun on the same log measures those configs again.
pub(super) fn print_retry_line(environment_errors: usize) {
    if environment_errors > 0 {
        println!(
            "retry       {environment_errors} of the errors were not the kernels' fault (the \
             worker, the options, the machine); they are logged as Environment and a rerun \
             measures them again"
        );
    }
}
