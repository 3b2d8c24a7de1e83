//! `looptune tune WORKLOAD`: search the workload's config space, measuring every candidate in a
//! worker process and appending it to the tuning log.
//!
//! Progress (trials, best GFLOP/s, errors) goes to stderr; the summary goes to stdout, as one
//! JSON object with `--json`. The peak is measured in the same run, before and after tuning
//! (the higher counts), so that the ratio compares numbers taken on the same machine state.

use super::backends::BackendArgs;
use super::input;
use super::logs::records_to_resume;
use super::measuring::{measurer, MeasureArgs};
use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use looptune::log::Record;
use looptune::log::{LogWriter, RecordContext, TargetFingerprint};
use looptune::runtime::{Backend, MeasureOptions, Target};
use looptune::space::Task;
use looptune::tune::{
    tune, Finalists, GaTuner, GridTuner, Observer, Progress, RandomTuner, TransferSet, TuneOptions,
    TuneReport, Tuner, XgbTuner, XgbTunerStats,
};
use std::path::PathBuf;

/// Which tuner proposes configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TunerKind {
    /// Uniform sampling without replacement.
    Random,
    /// The space in index order.
    Grid,
    /// XGBoost over loop-nest features, searched by simulated annealing.
    Xgb,
    /// Genetic: elites, crossover over knobs, mutation.
    Ga,
}

/// A tuner of one of the kinds, kept concrete so that the model-guided one can report where
/// its time went.
pub enum BuiltTuner<'a> {
    /// A model-free tuner.
    Plain(Box<dyn Tuner + 'a>),
    /// The model-guided tuner.
    Xgb(Box<XgbTuner<'a>>),
}

impl<'a> BuiltTuner<'a> {
    /// A tuner of `kind` for `task` from `seed`. The model-guided tuner is pre-trained on
    /// `transfer` (records of other shapes of the operator) when it is given and not empty.
    pub fn new(
        kind: TunerKind,
        task: &'a Task,
        seed: u64,
        transfer: Option<TransferSet>,
    ) -> anyhow::Result<BuiltTuner<'a>> {
        Ok(match kind {
            TunerKind::Random => BuiltTuner::Plain(Box::new(RandomTuner::new(task.space(), seed))),
            TunerKind::Grid => BuiltTuner::Plain(Box::new(GridTuner::new(task.space()))),
            TunerKind::Ga => {
                BuiltTuner::Plain(Box::new(GaTuner::with_defaults(task.space(), seed)))
            }
            TunerKind::Xgb => {
                let tuner = XgbTuner::with_defaults(task, seed)?;
                BuiltTuner::Xgb(Box::new(match transfer {
                    Some(set) => tuner.with_transfer(set),
                    None => tuner,
                }))
            }
        })
    }

    /// The tuner, to drive.
    pub fn as_tuner(&mut self) -> &mut (dyn Tuner + 'a) {
        match self {
            BuiltTuner::Plain(tuner) => tuner.as_mut(),
            BuiltTuner::Xgb(tuner) => tuner.as_mut(),
        }
    }

    /// Where the model-guided tuner spent its time; `None` for the others.
    pub fn xgb_stats(&self) -> Option<&XgbTunerStats> {
        match self {
            BuiltTuner::Plain(_) => None,
            BuiltTuner::Xgb(tuner) => Some(tuner.stats()),
        }
    }
}

/// Rows for transfer learning from `records` (a log's), for `task` on `target` with `backend`.
pub fn transfer_set(
    task: &Task,
    records: &[Record],
    target: &Target,
    backend: &dyn Backend,
) -> TransferSet {
    let fingerprint = TargetFingerprint::new(target, backend);
    TransferSet::from_records(task, records, &fingerprint)
}

/// Arguments of `looptune tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The workload, `op:key=value,...` (see `looptune ops`).
    workload: String,
    /// The tuner.
    #[arg(long, value_enum, default_value_t = TunerKind::Random)]
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
    /// same operator (transfer learning, on by default).
    #[arg(long)]
    no_transfer: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// An indicatif bar on stderr.
struct Bar(ProgressBar);

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

/// One tuning session: a task tuned with a tuner into a log, measured in a worker (or in this
/// process), with a progress bar on stderr. Shared by `looptune tune` and the main job.
pub struct Session<'a> {
    /// The task (its space sized for `backend`).
    pub task: &'a Task,
    /// The backend candidates are compiled with.
    pub backend: &'a std::sync::Arc<dyn Backend>,
    /// The tuner.
    pub tuner: TunerKind,
    /// Its seed.
    pub seed: u64,
    /// Threads of the target.
    pub threads: usize,
    /// The log appended to (and resumed from).
    pub log: &'a std::path::Path,
    /// Budgets.
    pub options: TuneOptions,
    /// How candidates are measured (isolation is set from `in_process`).
    pub measure: MeasureOptions,
    /// Measure in this process.
    pub in_process: bool,
}

impl Session<'_> {
    /// Tunes (transfer on), returning the report and the tuner's name.
    pub fn run(&self) -> anyhow::Result<(TuneReport, String)> {
        let (report, name, _) = self.run_with(true)?;
        Ok((report, name))
    }

    /// Tunes, pre-training the `xgb` tuner on the log's other shapes when `transfer`; returns
    /// the report, the tuner's name and, for `xgb`, where its time went.
    pub fn run_with(
        &self,
        transfer: bool,
    ) -> anyhow::Result<(TuneReport, String, Option<XgbTunerStats>)> {
        let workload = *self.task.workload();
        let target = Target::host().with_threads(self.threads);
        // Lock the log before reading it, so that a second run on the same log is refused
        // before it reads anything (and never measures what the first is measuring).
        let mut writer =
            LogWriter::open(self.log).with_context(|| format!("opening {}", self.log.display()))?;
        let existing = records_to_resume(self.log)?;
        let mut measurer = measurer(&target, self.backend, self.measure.clone(), self.in_process)?;
        let transfer = (transfer && self.tuner == TunerKind::Xgb)
            .then(|| transfer_set(self.task, &existing, &target, self.backend.as_ref()));
        let mut built = BuiltTuner::new(self.tuner, self.task, self.seed, transfer)?;
        let tuner = built.as_tuner();
        let context = RecordContext::new(
            &workload,
            TargetFingerprint::new(&target, self.backend.as_ref()),
            tuner.name(),
        );
        let bar = ProgressBar::new(self.options.trials as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} trials, {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("tuning {workload}"));
        let mut observer = Bar(bar);
        let report = tune(
            self.task,
            tuner,
            &mut measurer,
            &mut writer,
            &context,
            &existing,
            &self.options,
            &mut observer,
        )?;
        observer.0.finish_and_clear();
        let stats = built.xgb_stats().cloned();
        Ok((report, context.tuner, stats))
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
    let target = Target::host().with_threads(threads);
    let task = looptune::backend::task_for(workload, selected.backend.as_ref(), &target)
        .with_context(|| format!("building the task of `{workload}`"))?;
    let session = Session {
        task: &task,
        backend: &selected.backend,
        tuner: args.tuner,
        seed: args.seed,
        threads,
        log: &args.log,
        options: TuneOptions {
            trials: args.trials as usize,
            batch_size: args.batch_size as usize,
            early_stopping: args.early_stop.map(|n| n as usize),
            time_budget,
            finalists: Finalists {
                configs: args.finalists as usize,
                rounds: args.finalist_rounds as usize,
            },
        },
        measure,
        in_process: args.measure.in_process,
    };
    let ((report, tuner, stats), peak) =
        super::peak::bracketed(threads, || session.run_with(!args.no_transfer))?;
    let best_gflops = report.best.as_ref().map(|best| best.gflops);
    let compile_s = selected.compile_seconds();
    let backend = selected.backend.id();
    if args.json {
        let summary = serde_json::json!({
            "workload": workload.to_string(),
            "tuner": tuner,
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
        if report.environment_errors > 0 {
            println!(
                "retry       {} of the errors were not the kernels' fault (the worker, the \
                 options, the machine); they are logged as Environment and a rerun measures \
                 them again",
                report.environment_errors
            );
        }
        if report.remeasured > 0 {
            println!(
                "finalists   {} measurements of the best configs again, side by side; a config \
                 measured more than once counts at its median",
                report.remeasured
            );
        }
        match best_gflops {
            Some(gflops) => println!(
                "best        {gflops:.2} GFLOP/s, {:.1}% of peak {:.1} GFLOP/s ({threads} thread(s))",
                100.0 * gflops / peak.gflops,
                peak.gflops
            ),
            None => println!("best        none: no config passed its check"),
        }
        println!(
            "stopped     {} after {:.1} s ({:.2} trials/s; {:.1} s compiling)",
            report.stop_reason,
            report.wall.as_secs_f64(),
            report.trials as f64 / report.wall.as_secs_f64().max(1e-9),
            compile_s
        );
        if let Some(stats) = &stats {
            println!(
                "model       {} fits in {:.1} s, {} annealing rounds in {:.1} s ({} candidates scored, {} of them lowered, the rest from the feature cache); transfer: {} rows of {} other workloads",
                stats.fits,
                stats.fit_time.as_secs_f64(),
                stats.rounds,
                stats.anneal_time.as_secs_f64(),
                stats.scored,
                stats.extracted,
                stats.transfer_rows,
                stats.transfer_workloads
            );
        }
        println!("log         {}", args.log.display());
    }
    Ok(())
}
