//! The high-level tuning API: a workload and a few options in, a report and the best kernel
//! out. The one entry point the command line, the examples and a framework use; underneath it
//! is `looptune-tune`'s one tuning loop.
//!
//! ```no_run
//! use looptune::{Tuning, TunerKind, Workload};
//! use std::time::Duration;
//!
//! looptune::serve_worker_if_requested(); // this executable measures candidates, isolated
//! let report = Tuning::new(Workload::matmul(256, 256, 256))
//!     .tuner(TunerKind::Xgb)
//!     .trials(200)
//!     .time_budget(Duration::from_secs(30))
//!     .log("matmul.tunelog")
//!     .run()?;
//! println!("{} GFLOP/s", report.best_gflops().unwrap_or(0.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A user's operator (a [`CustomTask`]: a program written with `compute`, its space and
//! template) is tuned the same way, `Tuning::new(custom_task)`, with a model-free tuner (the
//! `xgb` tuner's features are those of the built-in templates). A rerun with the same log
//! resumes: what the log holds for the task and target is not measured again. Where candidates
//! are measured is [`crate::measuring`]'s business.

use crate::backend::{select, BackendChoice, Selected};
use crate::measuring::{measurer, Measuring, WorkerChoice};
use crate::task::{Tunable, TunedTask};
use looptune_cost::CostError;
use looptune_log::{read_log_to_resume, LogError, LogWriter, RecordContext, TargetFingerprint};
use looptune_runtime::measure::MeasurerError;
use looptune_runtime::MeasureInput;
use looptune_runtime::{Backend, CompileError, Kernel, MeasureOptions, Target};
use looptune_space::{Config, ConfigSpace, TaskKey, TemplateError};
use looptune_tune::{
    tune, BuiltTuner, Finalists, Observer, TransferSet, TuneError, TuneOptions, TuneReport,
    TunerKind, TuningTask, XgbTunerStats,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The log [`Tuning`] writes unless told otherwise.
pub const DEFAULT_LOG: &str = "looptune.tunelog";

impl TuningTask for TunedTask {
    fn key(&self) -> TaskKey {
        TunedTask::key(self)
    }

    fn flops(&self) -> f64 {
        TunedTask::flops(self)
    }

    fn space(&self) -> &ConfigSpace {
        TunedTask::space(self)
    }

    fn measure_input(&self, config: &Config) -> Result<MeasureInput, TemplateError> {
        match self {
            TunedTask::Builtin(task) => task.measure_input(config),
            TunedTask::Custom(task) => task.measure_input(config),
        }
    }
}

/// A tuning run of one task, configured by its methods and started by [`Tuning::run`].
pub struct Tuning<'o> {
    tunable: Tunable,
    tuner: TunerKind,
    seed: u64,
    threads: usize,
    backend: BackendArg,
    log: PathBuf,
    options: TuneOptions,
    measure: MeasureOptions,
    worker: WorkerChoice,
    transfer: bool,
    observer: Option<&'o mut dyn Observer>,
}

/// The backend of a run: chosen by name, or given.
enum BackendArg {
    Choice(BackendChoice),
    Given(Selected),
}

impl<'o> Tuning<'o> {
    /// A run of `task` (a [`Workload`](crate::Workload) or a
    /// [`CustomTask`](crate::CustomTask)) with the defaults: the random tuner, seed 0, one
    /// thread, the `auto` backend, 100 trials in batches of 8, no time budget, the log
    /// [`DEFAULT_LOG`], TVM's measuring protocol, a worker process found as
    /// [`crate::measuring`] says, and transfer from the log's other shapes of the operator when
    /// the tuner is `xgb`.
    pub fn new(task: impl Into<Tunable>) -> Tuning<'o> {
        Tuning {
            tunable: task.into(),
            tuner: TunerKind::Random,
            seed: 0,
            threads: 1,
            backend: BackendArg::Choice(BackendChoice::Auto),
            log: PathBuf::from(DEFAULT_LOG),
            // The best few configs measured again side by side once the search stops, so that
            // a busy moment of the machine does not decide which config the log calls best.
            options: TuneOptions {
                batch_size: 8,
                finalists: Finalists::default(),
                ..TuneOptions::default()
            },
            measure: MeasureOptions::tuning(),
            worker: WorkerChoice::Find,
            transfer: true,
            observer: None,
        }
    }

    /// The tuner.
    pub fn tuner(mut self, tuner: TunerKind) -> Self {
        self.tuner = tuner;
        self
    }

    /// Seed of the tuner's decisions (the same seed makes the same proposals).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Threads for the kernels' parallel loops; part of the target records belong to.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The backend, by choice (`auto` takes C when a compiler passes its probe).
    pub fn backend(mut self, choice: BackendChoice) -> Self {
        self.backend = BackendArg::Choice(choice);
        self
    }

    /// A backend already chosen (the command line selects once and reports the choice).
    pub fn selected_backend(mut self, selected: Selected) -> Self {
        self.backend = BackendArg::Given(selected);
        self
    }

    /// The tuning log, appended to and resumed from (created when missing).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = path.into();
        self
    }

    /// Configs to measure in this run (the log's records do not count).
    pub fn trials(mut self, trials: usize) -> Self {
        self.options.trials = trials;
        self
    }

    /// Configs measured per batch; the log is synced once per batch.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.options.batch_size = batch_size;
        self
    }

    /// Stop after this many trials in a row without a new best.
    pub fn early_stopping(mut self, patience: usize) -> Self {
        self.options.early_stopping = Some(patience);
        self
    }

    /// Start no batch after this much wall time.
    pub fn time_budget(mut self, budget: Duration) -> Self {
        self.options.time_budget = Some(budget);
        self
    }

    /// How many of the best configs are measured again once the search stops, and in how
    /// many rounds ([`Finalists::default`] unless set; [`Finalists::NONE`] for none, so that
    /// the log holds exactly the trials).
    pub fn finalists(mut self, finalists: Finalists) -> Self {
        self.options.finalists = finalists;
        self
    }

    /// How each candidate is timed (repeats, minimum repeat length, staging, timeout;
    /// [`MeasureOptions::tuning`] unless set); the isolation part is set by [`Tuning::worker`].
    pub fn measure_options(mut self, options: MeasureOptions) -> Self {
        self.measure = options;
        self
    }

    /// Where candidates are measured (by default a worker process found for you).
    pub fn worker(mut self, worker: WorkerChoice) -> Self {
        self.worker = worker;
        self
    }

    /// Whether the `xgb` tuner pre-trains on the log's records of other shapes of the same
    /// operator (on by default).
    pub fn transfer(mut self, transfer: bool) -> Self {
        self.transfer = transfer;
        self
    }

    /// Watches the run: progress after each batch, and a way to stop it (Ctrl-C).
    pub fn observer(mut self, observer: &'o mut dyn Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tunes, appending every measured candidate to the log.
    pub fn run(self) -> Result<TuningReport, TuningError> {
        if self.threads == 0 {
            return Err(TuningError::Options("threads 0; at least 1".to_string()));
        }
        let selected = match self.backend {
            BackendArg::Given(selected) => selected,
            BackendArg::Choice(choice) => select(choice).map_err(TuningError::Backend)?,
        };
        let backend = Arc::clone(&selected.backend);
        let target = Target::host().with_threads(self.threads);
        let key = self.tunable.key();
        let task = self
            .tunable
            .task_for(backend.as_ref(), &target)
            .map_err(|source| TuningError::Template {
                workload: key.to_string(),
                source: Box::new(source),
            })?;
        if self.tuner == TunerKind::Xgb && task.builtin().is_none() {
            return Err(xgb_refused(&key));
        }
        // Lock the log before reading it, so that a second run on the same log is refused
        // before it reads anything (and never measures what the first is measuring).
        let mut writer = LogWriter::open(&self.log).map_err(TuningError::Log)?;
        let contents = read_log_to_resume(&self.log).map_err(TuningError::Log)?;
        let warnings = contents.warnings.iter().map(ToString::to_string).collect();
        let existing = contents.records;
        let (mut measurer, measuring) = measurer(&target, &backend, self.measure, &self.worker)
            .map_err(TuningError::Measurer)?;
        let fingerprint = TargetFingerprint::new(&target, backend.as_ref());
        let mut shipped_from = false;
        let mut built = match &task {
            TunedTask::Builtin(builtin) => {
                // The log's records of other shapes of the operator, and the records looptune
                // ships of the shapes the log does not cover yet (never cold).
                let transfer = (self.transfer && self.tuner == TunerKind::Xgb).then(|| {
                    let (set, shipped) =
                        TransferSet::from_log_and_shipped(builtin, &existing, &fingerprint);
                    shipped_from = shipped;
                    set
                });
                BuiltTuner::new(self.tuner, builtin, self.seed, transfer)
                    .map_err(TuningError::Model)?
            }
            TunedTask::Custom(custom) => {
                BuiltTuner::model_free(self.tuner, custom.space(), self.seed)
                    .ok_or_else(|| xgb_refused(&key))?
            }
        };
        let tuner = built.as_tuner();
        let context = match &task {
            TunedTask::Builtin(builtin) => {
                RecordContext::new(builtin.workload(), fingerprint, tuner.name())
            }
            TunedTask::Custom(custom) => {
                RecordContext::with_key(custom.key(), custom.flops(), fingerprint, tuner.name())
            }
        };
        let mut quiet = ();
        let observer: &mut dyn Observer = match self.observer {
            Some(observer) => observer,
            None => &mut quiet,
        };
        let report = tune(
            &task,
            tuner,
            &mut measurer,
            &mut writer,
            &context,
            &existing,
            &self.options,
            observer,
        )
        .map_err(TuningError::Tune)?;
        let xgb = built.xgb_stats().cloned();
        drop(built);
        Ok(TuningReport {
            report,
            tuner: self.tuner,
            log: self.log,
            warnings,
            measuring,
            shipped_transfer: shipped_from
                && xgb.as_ref().is_some_and(|stats| stats.transfer_rows > 0),
            xgb,
            target,
            selected,
            task,
        })
    }
}

/// The refusal of the `xgb` tuner for a user's operator `key`.
fn xgb_refused(key: &TaskKey) -> TuningError {
    TuningError::Options(format!(
        "the xgb tuner learns from built-in templates' loop nests; tune `{key}` with random, \
         grid or ga"
    ))
}

/// What a tuning run did, and what is needed to use its result.
#[derive(Debug)]
pub struct TuningReport {
    /// The loop's report: trials, errors, the best config, the curve, the stop reason.
    pub report: TuneReport,
    /// The tuner that ran.
    pub tuner: TunerKind,
    /// The log written.
    pub log: PathBuf,
    /// Damaged lines of the log that were skipped when resuming.
    pub warnings: Vec<String>,
    /// Where candidates were measured (a worker, or this process and why).
    pub measuring: Measuring,
    /// Where the `xgb` tuner's time went; `None` for the others.
    pub xgb: Option<XgbTunerStats>,
    /// Whether the `xgb` tuner's transfer rows include records looptune ships (of shapes the
    /// log did not cover yet), not only the log's.
    pub shipped_transfer: bool,
    /// The target the records belong to.
    pub target: Target,
    /// The backend the candidates were compiled with, and why `auto` chose it.
    pub selected: Selected,
    /// The task tuned (for a workload: its space and template, sized for the backend).
    pub task: TunedTask,
}

impl TuningReport {
    /// The best throughput of the log and this run together.
    pub fn best_gflops(&self) -> Option<f64> {
        self.report.best.as_ref().map(|best| best.gflops)
    }

    /// The best config of the log and this run, compiled for the target: the kernel to call.
    pub fn best_kernel(&self) -> Result<Kernel, TuningError> {
        let best = self
            .report
            .best
            .as_ref()
            .ok_or(TuningError::NothingPassed)?;
        let template = |source: TemplateError| TuningError::Template {
            workload: self.task.key().to_string(),
            source: Box::new(source),
        };
        let config = self
            .task
            .space()
            .from_values(&best.values)
            .map_err(|error| template(error.into()))?;
        let nest = self.task.lower(&config).map_err(template)?;
        self.selected
            .backend
            .compile(&nest, &self.target)
            .map_err(TuningError::Backend)
    }

    /// What to tell the user about the run, one line each: why `auto` chose its backend,
    /// damaged log lines skipped, and where candidates were measured.
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.selected.note.iter().cloned().collect();
        notes.extend(
            self.warnings
                .iter()
                .map(|warning| format!("warning: {warning}")),
        );
        notes.push(self.measuring.note.clone());
        notes
    }

    /// The backend used.
    pub fn backend(&self) -> &dyn Backend {
        self.selected.backend.as_ref()
    }

    /// The log written.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// Why a tuning run could not start or go on, or its result cannot be used. A failing
/// candidate is none of these: it is an error record in the log.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TuningError {
    /// An option that cannot work.
    #[error("invalid tuning options: {0}")]
    Options(String),
    /// The backend could not be chosen, or could not compile the best config.
    #[error(transparent)]
    Backend(CompileError),
    /// The task's template failed.
    #[error("the template of `{workload}`: {source}")]
    Template {
        /// The workload's text, or the custom task's key.
        workload: String,
        /// What went wrong.
        #[source]
        source: Box<TemplateError>,
    },
    /// The log could not be opened, locked or read (the error names the log).
    #[error(transparent)]
    Log(LogError),
    /// The measuring options cannot work.
    #[error(transparent)]
    Measurer(MeasurerError),
    /// The `xgb` tuner's model options cannot work.
    #[error(transparent)]
    Model(CostError),
    /// The loop stopped on an error (the log could not be appended to, the task does not fit
    /// in memory).
    #[error(transparent)]
    Tune(TuneError),
    /// No config of the log or the run passed its check, so there is no best kernel.
    #[error("no config passed its check; there is no best kernel")]
    NothingPassed,
}
