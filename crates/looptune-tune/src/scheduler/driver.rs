//! Whole-model tuning: the [`TaskScheduler`] picks a task, the ordinary tuning loop ([`tune`])
//! measures one batch of it into the shared log, and the result goes back to the scheduler.
//!
//! Each task's tuner is made when the task is first chosen, by a function of the caller (so a
//! model-guided tuner can be warm-started from the log as it stands then, records of the layers
//! tuned before it in this run included), and kept for the whole run (it keeps learning across
//! its rounds). A thin per-round wrapper around it adds two things the single-task loop does not
//! know about:
//! - the task's **fallback config** is proposed first, so the log itself holds the "before"
//!   figure of the model estimate and a rerun reads it back instead of measuring it again;
//! - **configs shared by similar tasks** (the same template): the best configs measured for the
//!   other tasks of the group, carried over by knob choices (the same register tile, loop order
//!   and annotations; split outer parts follow this task's extents) when they are points of this
//!   task's space, take up to [`ModelTuneOptions::shared_per_round`] places of a round. They are
//!   measured like any candidate and shown to the task's tuner, so a cost model learns from
//!   them too.
//!
//! Resuming is the single-task loop's: every round passes the log's records, so configs already
//! measured for a task are never proposed again, and the scheduler starts from the log's trial
//! counts and best throughputs.

use super::{Pick, SchedulerOptions, SchedulerTask, TaskScheduler};
use crate::finalists::Finalists;
use crate::task::WorkloadTask;
use crate::tuner::{Trial, Tuner};
use crate::tuning::{tune, StopReason, TuneError, TuneOptions};
use looptune_ir::Workload;
use looptune_log::{task_records, LogWriter, Record, RecordContext, TargetFingerprint};
use looptune_runtime::Measurer;
use looptune_space::{Config, ConfigValues};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Best configs of a task remembered for sharing with similar tasks.
const SHARED_TOP: usize = 8;

/// One task of a model: a layer, its multiplicity, the task and its fallback config.
pub struct ModelTask<'a> {
    /// The layer's name (`C2`).
    pub name: String,
    /// How many times the layer occurs in the model.
    pub multiplicity: u32,
    /// The task.
    pub task: &'a dyn WorkloadTask,
    /// The config a user gets without tuning; measured first (its throughput is the "before" of
    /// the model estimate).
    pub fallback: Option<Config>,
}

/// Budgets and parameters of whole-model tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTuneOptions {
    /// Configs to measure in this run, over all tasks.
    pub trials: usize,
    /// Configs per round (one round is one batch of one task).
    pub batch_size: usize,
    /// Stop starting rounds once this much wall time has passed.
    pub time_budget: Option<Duration>,
    /// The allocation rule (its `batch_size` is set from this struct's).
    pub scheduler: SchedulerOptions,
    /// Places of a round given to the best configs of similar tasks.
    pub shared_per_round: usize,
}

impl Default for ModelTuneOptions {
    fn default() -> ModelTuneOptions {
        ModelTuneOptions {
            trials: 200,
            batch_size: 8,
            time_budget: None,
            scheduler: SchedulerOptions::default(),
            shared_per_round: 2,
        }
    }
}

/// What whole-model tuning found for one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOutcome {
    /// The layer's name.
    pub name: String,
    /// Its workload.
    pub workload: Workload,
    /// How many times it occurs.
    pub multiplicity: u32,
    /// Throughput of the fallback config (log or this run), if measured and valid.
    pub fallback_gflops: Option<f64>,
    /// The best throughput of the log and this run.
    pub best_gflops: Option<f64>,
    /// Configs measured for the layer in this run.
    pub trials: usize,
    /// Configs of the layer in the log after this run (this run's included).
    pub logged_trials: usize,
    /// Failed configs of this run.
    pub errors: usize,
    /// Of `errors`, those that were not the kernel's fault (`Environment`: the worker, the
    /// options, the machine); a rerun measures them again.
    pub environment_errors: usize,
    /// Configs carried over from similar layers that were measured in this run.
    pub shared_trials: usize,
    /// Whether the best config came from a similar layer in this run.
    pub best_is_shared: bool,
}

impl LayerOutcome {
    fn latency(&self, gflops: Option<f64>) -> Option<f64> {
        gflops
            .filter(|gflops| *gflops > 0.0)
            .map(|gflops| self.workload.flops() / (gflops * 1e9))
    }

    /// Seconds of one run with the fallback config.
    pub fn fallback_latency_s(&self) -> Option<f64> {
        self.latency(self.fallback_gflops)
    }

    /// Seconds of one run with the best config.
    pub fn tuned_latency_s(&self) -> Option<f64> {
        self.latency(self.best_gflops)
    }
}

/// What a whole-model tuning run did.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTuneReport {
    /// Per layer, in the order given.
    pub layers: Vec<LayerOutcome>,
    /// Configs measured in this run.
    pub trials: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Wall time.
    pub wall: Duration,
}

impl ModelTuneReport {
    fn model_latency(&self, layer_latency: impl Fn(&LayerOutcome) -> Option<f64>) -> Option<f64> {
        self.layers
            .iter()
            .map(|layer| layer_latency(layer).map(|s| s * f64::from(layer.multiplicity)))
            .sum()
    }

    /// The model's estimated latency with fallback configs: the sum over layers of multiplicity
    /// times fallback latency; `None` when a layer's fallback was not measured.
    pub fn before_s(&self) -> Option<f64> {
        self.model_latency(LayerOutcome::fallback_latency_s)
    }

    /// The model's estimated latency with the best configs found.
    pub fn after_s(&self) -> Option<f64> {
        self.model_latency(LayerOutcome::tuned_latency_s)
    }
}

/// A round as an observer sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundSummary {
    /// Rounds done, this one included.
    pub round: usize,
    /// The task's position and why it was chosen.
    pub pick: Pick,
    /// The layer's name.
    pub name: String,
    /// Configs measured in this round.
    pub trials: usize,
    /// Configs measured in the run so far.
    pub total_trials: usize,
    /// The run's trial budget.
    pub budget: usize,
    /// The layer's best throughput now.
    pub best_gflops: Option<f64>,
    /// The model's estimated latency now (`None` while a layer is unmeasured).
    pub model_latency_s: Option<f64>,
}

/// Watches whole-model tuning (progress lines, tests).
pub trait RoundObserver {
    /// Called after every round, once its records are in the log.
    fn round_done(&mut self, summary: &RoundSummary);

    /// Whether the run should stop now (Ctrl-C); polled before each candidate, as
    /// [`crate::Observer::interrupted`] is. The run then ends with
    /// [`StopReason::Interrupted`], what was measured in the log.
    fn interrupted(&self) -> bool {
        false
    }
}

/// The per-round observer of `tune`: it only passes the interruption on.
struct Interruption<'o>(&'o dyn RoundObserver);

impl crate::tuning::Observer for Interruption<'_> {
    fn batch_done(&mut self, _progress: &crate::tuning::Progress) {}

    fn interrupted(&self) -> bool {
        self.0.interrupted()
    }
}

impl RoundObserver for () {
    fn round_done(&mut self, _summary: &RoundSummary) {}
}

/// The driver's state of one task.
#[derive(Default)]
struct TaskRun {
    measured: HashSet<u128>,
    /// The best valid configs, fastest first, as knob values.
    top: Vec<(f64, ConfigValues)>,
    best: Option<(f64, u128)>,
    fallback_gflops: Option<f64>,
    shared: HashSet<u128>,
    offered: HashSet<ConfigValues>,
    trials: usize,
    errors: usize,
    environment_errors: usize,
    shared_trials: usize,
}

impl TaskRun {
    fn learn(&mut self, index: u128, values: &ConfigValues, gflops: Option<f64>, fallback: bool) {
        self.measured.insert(index);
        if fallback {
            self.fallback_gflops = gflops;
        }
        let Some(gflops) = gflops.filter(|g| g.is_finite()) else {
            return;
        };
        if self.best.is_none_or(|(best, _)| gflops > best) {
            self.best = Some((gflops, index));
        }
        let position = self.top.partition_point(|(kept, _)| *kept >= gflops);
        if position < SHARED_TOP {
            self.top.insert(position, (gflops, values.clone()));
            self.top.truncate(SHARED_TOP);
        }
    }
}

/// The per-round tuner: seeds first (fallback, shared configs), then the task's own tuner;
/// remembers the round's trials for the driver.
struct RoundTuner<'r, 'a> {
    inner: &'r mut (dyn Tuner + 'a),
    seeds: VecDeque<Config>,
    measured: &'r HashSet<u128>,
    trials: Vec<Trial>,
}

impl Tuner for RoundTuner<'_, '_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        let mut batch: Vec<Config> = Vec::with_capacity(batch_size);
        let mut taken = HashSet::new();
        while batch.len() < batch_size {
            let Some(seed) = self.seeds.pop_front() else {
                break;
            };
            let index = seed.index();
            if !already_measured(index) && !self.measured.contains(&index) && taken.insert(index) {
                batch.push(seed);
            }
        }
        let measured = self.measured;
        let rest = self.inner.next_batch(batch_size - batch.len(), &|index| {
            already_measured(index) || measured.contains(&index) || taken.contains(&index)
        });
        batch.extend(rest);
        batch
    }

    fn update(&mut self, trials: &[Trial]) {
        self.inner.update(trials);
        self.trials.extend_from_slice(trials);
    }
}

/// The best configs of the other tasks of `task`'s group, carried into `task`'s space by knob
/// choices, best first, that `task` has neither measured nor been offered, and that are not
/// among `queued`.
fn shared_seeds(
    tasks: &[ModelTask<'_>],
    runs: &[TaskRun],
    task: usize,
    count: usize,
    queued: &VecDeque<Config>,
) -> Vec<Config> {
    // Knob choices mean the same only within one template (a 1x1 conv2d is a GEMM, the other
    // conv2d layers are direct convolutions).
    let template = looptune_space::templates::template_name(tasks[task].task.workload());
    let space = tasks[task].task.space();
    // Rank the siblings' configs by how close they are to their own task's best, so that every
    // sibling's best comes before any sibling's second best.
    let mut candidates: Vec<(usize, f64, Config)> = Vec::new();
    for (other, run) in runs.iter().enumerate() {
        if other == task
            || looptune_space::templates::template_name(tasks[other].task.workload()) != template
        {
            continue;
        }
        let other_space = tasks[other].task.space();
        for (rank, (_, values)) in run.top.iter().enumerate() {
            let Ok(config) = other_space.from_values(values) else {
                continue;
            };
            let Ok(carried) = space.from_choices(config.choices()) else {
                continue;
            };
            let gflops = run.top.first().map_or(0.0, |best| best.0);
            candidates.push((rank, -gflops, carried));
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.total_cmp(&b.1)));
    let mut seeds = Vec::new();
    let mut seen: HashSet<u128> = queued.iter().map(Config::index).collect();
    for (_, _, config) in candidates {
        if seeds.len() == count {
            break;
        }
        let values = config.to_values();
        if runs[task].measured.contains(&config.index())
            || runs[task].offered.contains(&values)
            || !seen.insert(config.index())
        {
            continue;
        }
        seeds.push(config);
    }
    seeds
}

/// Why whole-model tuning could not go on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelTuneError {
    /// The tuning loop failed (the log could not be appended to, options cannot work).
    #[error(transparent)]
    Tune(#[from] TuneError),
    /// The tuner of a task could not be made.
    #[error("could not make the tuner of `{task}`: {message}")]
    Tuner {
        /// The layer's name.
        task: String,
        /// Why.
        message: String,
    },
}

/// Makes the tuner of the task at a position, when it is first chosen.
pub type MakeTuner<'m, 'a> = dyn FnMut(usize) -> Result<Box<dyn Tuner + 'a>, String> + 'm;

/// Tunes every task of a model into one log, a batch at a time, the task of each batch chosen by
/// the [`TaskScheduler`] (see the module doc). `make_tuner` makes a task's tuner when it is first
/// chosen; `existing` holds the log's records (for resuming); `target` is the fingerprint every
/// record carries.
#[allow(clippy::too_many_arguments)]
pub fn tune_model<'a>(
    tasks: &[ModelTask<'a>],
    make_tuner: &mut MakeTuner<'_, 'a>,
    measurer: &mut Measurer,
    log: &mut LogWriter,
    target: &TargetFingerprint,
    existing: &[Record],
    options: &ModelTuneOptions,
    observer: &mut dyn RoundObserver,
) -> Result<ModelTuneReport, ModelTuneError> {
    if options.batch_size == 0 {
        return Err(TuneError::Options("batch size 0; it must be at least 1".to_string()).into());
    }
    let started = Instant::now();
    let mut scheduler = TaskScheduler::new(
        tasks
            .iter()
            .map(|entry| SchedulerTask {
                name: entry.name.clone(),
                group: entry.task.workload().op_name().to_string(),
                flops: entry.task.workload().flops(),
                multiplicity: entry.multiplicity,
            })
            .collect(),
        SchedulerOptions {
            batch_size: options.batch_size,
            ..options.scheduler.clone()
        },
    );
    let mut runs: Vec<TaskRun> = Vec::with_capacity(tasks.len());
    for (position, entry) in tasks.iter().enumerate() {
        let fallback_index = entry.fallback.as_ref().map(Config::index);
        let mut run = TaskRun::default();
        for record in task_records(existing, entry.task.workload(), target)
            .into_iter()
            .filter(|record| record.counts_as_measured())
        {
            run.learn(
                record.config_index,
                &record.config,
                record.gflops,
                Some(record.config_index) == fallback_index,
            );
        }
        scheduler.resume(position, run.measured.len(), run.best.map(|(g, _)| g));
        runs.push(run);
    }
    let mut tuners: Vec<Option<(Box<dyn Tuner + 'a>, RecordContext)>> =
        tasks.iter().map(|_| None).collect();
    let mut trials = 0;
    let mut rounds = 0;
    let stop_reason = loop {
        if observer.interrupted() {
            break StopReason::Interrupted;
        }
        if trials >= options.trials {
            break StopReason::TrialBudget;
        }
        if options
            .time_budget
            .is_some_and(|budget| started.elapsed() >= budget)
        {
            break StopReason::TimeBudget;
        }
        let Some(pick) = scheduler.next() else {
            break StopReason::SpaceExhausted;
        };
        let position = pick.task;
        let entry = &tasks[position];
        if tuners[position].is_none() {
            let tuner = make_tuner(position).map_err(|message| ModelTuneError::Tuner {
                task: entry.name.clone(),
                message,
            })?;
            let context = RecordContext::new(entry.task.workload(), target.clone(), tuner.name());
            tuners[position] = Some((tuner, context));
        }
        let Some((tuner, context)) = tuners[position].as_mut() else {
            continue;
        };
        let wanted = options.batch_size.min(options.trials - trials);
        let mut seeds: VecDeque<Config> = VecDeque::new();
        if let Some(fallback) = &entry.fallback {
            if !runs[position].measured.contains(&fallback.index()) {
                seeds.push_back(fallback.clone());
            }
        }
        let share = options
            .shared_per_round
            .min(wanted.saturating_sub(seeds.len()));
        let shared = shared_seeds(tasks, &runs, position, share, &seeds);
        for config in &shared {
            runs[position].offered.insert(config.to_values());
            runs[position].shared.insert(config.index());
        }
        seeds.extend(shared);
        let mut round_tuner = RoundTuner {
            inner: tuner.as_mut(),
            seeds,
            measured: &runs[position].measured,
            trials: Vec::new(),
        };
        let round_options = TuneOptions {
            trials: wanted,
            batch_size: wanted,
            early_stopping: None,
            time_budget: None,
            // A round is a slice of a task's search, not its end.
            finalists: Finalists::NONE,
        };
        let report = tune(
            entry.task,
            &mut round_tuner,
            measurer,
            log,
            context,
            existing,
            &round_options,
            &mut Interruption(&*observer),
        )?;
        let round_trials = std::mem::take(&mut round_tuner.trials);
        let fallback_index = entry.fallback.as_ref().map(Config::index);
        let run = &mut runs[position];
        for trial in &round_trials {
            let index = trial.config.index();
            run.learn(
                index,
                &trial.config.to_values(),
                trial.gflops,
                Some(index) == fallback_index,
            );
            run.errors += usize::from(trial.gflops.is_none());
            run.shared_trials += usize::from(run.shared.contains(&index));
        }
        run.trials += report.trials;
        run.environment_errors += report.environment_errors;
        trials += report.trials;
        rounds += 1;
        let exhausted = report.stop_reason == StopReason::SpaceExhausted || report.trials == 0;
        scheduler.record(position, report.trials, run.best.map(|(g, _)| g), exhausted);
        observer.round_done(&RoundSummary {
            round: rounds,
            pick,
            name: entry.name.clone(),
            trials: report.trials,
            total_trials: trials,
            budget: options.trials,
            best_gflops: scheduler.best_gflops(position),
            model_latency_s: scheduler.model_latency_s(),
        });
        if report.stop_reason == StopReason::Interrupted {
            break StopReason::Interrupted;
        }
    };
    let layers = tasks
        .iter()
        .zip(&runs)
        .map(|(entry, run)| LayerOutcome {
            name: entry.name.clone(),
            workload: *entry.task.workload(),
            multiplicity: entry.multiplicity,
            fallback_gflops: run.fallback_gflops,
            best_gflops: run.best.map(|(g, _)| g),
            trials: run.trials,
            logged_trials: run.measured.len(),
            errors: run.errors,
            environment_errors: run.environment_errors,
            shared_trials: run.shared_trials,
            best_is_shared: run
                .best
                .is_some_and(|(_, index)| run.shared.contains(&index)),
        })
        .collect();
    Ok(ModelTuneReport {
        layers,
        trials,
        rounds,
        stop_reason,
        wall: started.elapsed(),
    })
}
