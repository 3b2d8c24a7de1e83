//! The tuning loop: propose, measure, log, keep the best, stop on a budget.
//!
//! Each batch is proposed by the tuner, turned into kernels by the task, measured (checked
//! against the reference before its time counts), appended to the log in one write and one
//! sync, and only then shown to the tuner. Killing a run therefore loses at most the batch in
//! flight, and a rerun with the same log resumes: configs already recorded for this workload and
//! target are skipped, and the best recorded one is the starting best.

use crate::finalists::{measure_again, Finalists};
use crate::noise::Noise;
use crate::task::TuningTask;
use crate::tuner::{Trial, Tuner};
use looptune_ir::Program;
use looptune_log::{best, measured, LogError, LogWriter, Measured, Record, RecordContext};
use looptune_runtime::{
    MeasureError, MeasureErrorKind, MeasureInput, MeasureResult, Measurer, MemoryError,
};
use looptune_space::{Config, ConfigValues, TaskKey};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Budgets of a tuning run.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneOptions {
    /// Configs to measure in this run (resumed records do not count).
    pub trials: usize,
    /// Configs proposed and measured together; the log is synced once per batch.
    pub batch_size: usize,
    /// Stop after this many measured configs in a row without a new best.
    pub early_stopping: Option<usize>,
    /// Stop starting batches once this much wall time has passed.
    pub time_budget: Option<Duration>,
    /// The best configs measured again, side by side, once the search stops (not after an
    /// interruption); their measurements are logged and are not trials. Off by default in the
    /// library, so that a run's records are exactly its trials; the CLI turns it on.
    pub finalists: Finalists,
}

impl Default for TuneOptions {
    fn default() -> TuneOptions {
        TuneOptions {
            trials: 100,
            batch_size: 16,
            early_stopping: None,
            time_budget: None,
            finalists: Finalists::NONE,
        }
    }
}

/// Why a tuning run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// `trials` configs were measured.
    TrialBudget,
    /// The tuner has nothing left to propose (every valid config is measured).
    SpaceExhausted,
    /// `early_stopping` configs in a row brought no improvement.
    NoImprovement,
    /// The wall-clock budget ran out.
    TimeBudget,
    /// The [`Observer`] asked to stop ([`Observer::interrupted`]: the user pressed Ctrl-C).
    /// What was measured before is in the log; the candidates of the batch in flight that were
    /// not measured yet were abandoned, and a rerun measures them.
    Interrupted,
}

impl StopReason {
    /// A stable snake_case name, for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::TrialBudget => "trial_budget",
            StopReason::SpaceExhausted => "space_exhausted",
            StopReason::NoImprovement => "no_improvement",
            StopReason::TimeBudget => "time_budget",
            StopReason::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The best config known to a run.
#[derive(Clone, Debug, PartialEq)]
pub struct BestConfig {
    /// Its index in the space.
    pub index: u128,
    /// Its knob values.
    pub values: ConfigValues,
    /// Its throughput.
    pub gflops: f64,
}

/// What a tuning run did.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneReport {
    /// Configs measured in this run.
    pub trials: usize,
    /// Records of this task and target that were already in the log.
    pub resumed: usize,
    /// Configs of this run that failed (compile error, crash, timeout, wrong answer, invalid,
    /// environment).
    pub errors: usize,
    /// Of `errors`, those that were not the candidate's fault (the worker, the options, the
    /// machine): logged as `Environment` and measured again by a resumed run.
    pub environment_errors: usize,
    /// The best config of the log and this run together, ranked as every query of the log
    /// ranks them (a config measured more than once at the median of its measurements).
    pub best: Option<BestConfig>,
    /// Measurements of finalists taken after the search ([`TuneOptions::finalists`]).
    pub remeasured: usize,
    /// Best throughput after each trial of this run (0 before anything succeeded).
    pub curve: Vec<f64>,
    /// Wall seconds from the start of the run to the end of each trial (the clock of `curve`).
    pub seconds: Vec<f64>,
    /// Trials timed by a first stage only: far slower than the run's best so far, recorded from
    /// one short repeat (see [`looptune_runtime::measure::Staging`]).
    pub short: usize,
    /// How noisy this run's measurements (trials and finalists) were.
    pub noise: Noise,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Wall time of the run.
    pub wall: Duration,
}

/// State shown to an [`Observer`] after each batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Configs measured in this run so far.
    pub trials: usize,
    /// The trial budget.
    pub budget: usize,
    /// Failures so far.
    pub errors: usize,
    /// Best throughput so far (log included).
    pub best_gflops: Option<f64>,
}

/// Watches a tuning run (progress bars, tests).
pub trait Observer {
    /// Called after every batch, once it is in the log.
    fn batch_done(&mut self, progress: &Progress);

    /// Whether the run should stop now. Polled before each candidate: once it says yes, the
    /// run writes what the batch in flight measured so far, abandons the rest of it and ends
    /// with [`StopReason::Interrupted`]. A Ctrl-C handler sets a flag this reads.
    fn interrupted(&self) -> bool {
        false
    }
}

impl Observer for () {
    fn batch_done(&mut self, _progress: &Progress) {}
}

/// Why a tuning run could not go on. A failing candidate is not one of these: it is an error
/// record in the log.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TuneError {
    /// Appending to the log failed; what was measured in the failed batch is lost, the log
    /// holds everything before it.
    #[error("could not append to the tuning log: {0}")]
    Log(#[from] LogError),
    /// Options that cannot work.
    #[error("invalid tuning options: {0}")]
    Options(String),
    /// The task is too large to measure on this machine (nothing was allocated or logged).
    #[error(transparent)]
    Memory(looptune_runtime::MemoryError),
}

/// What the loop needs from a measurer: the [`Measurer`] itself, or a wrapper around one (such
/// as a cache shared by several runs, as `looptune tune-compare` keeps).
pub trait Measure {
    /// Refuses a program too large for this machine before anything is allocated.
    fn check_memory(&self, key: &str, program: &Program) -> Result<(), MemoryError>;

    /// Prepares a batch about to be measured one by one (the C backend compiles it).
    fn prepare(&mut self, batch: &[(&Config, &MeasureInput)]);

    /// Compiles, checks and times `config`, whose program and nest are `input`.
    fn measure(&mut self, config: &Config, input: &MeasureInput) -> MeasureResult;

    /// Measures what follows in a new worker process (its buffers elsewhere in memory), so
    /// that rounds of the same configs sample more than one memory placement. Nothing by
    /// default (a measurer without a worker, a cache).
    fn fresh_process(&mut self) {}
}

impl Measure for Measurer {
    fn check_memory(&self, key: &str, program: &Program) -> Result<(), MemoryError> {
        Measurer::check_memory(self, key, program)
    }

    fn prepare(&mut self, batch: &[(&Config, &MeasureInput)]) {
        Measurer::prepare(self, batch.iter().map(|(_, input)| *input));
    }

    fn measure(&mut self, _config: &Config, input: &MeasureInput) -> MeasureResult {
        self.measure_one(input)
    }

    fn fresh_process(&mut self) {
        self.stop_worker();
    }
}

/// Where the loop appends each batch's records: a [`LogWriter`], or nowhere ([`NoLog`]) for a
/// caller that keeps its own records.
pub trait RecordSink {
    /// Appends one batch, durably.
    fn append_batch(&mut self, records: &[Record]) -> Result<(), LogError>;
}

impl RecordSink for LogWriter {
    fn append_batch(&mut self, records: &[Record]) -> Result<(), LogError> {
        LogWriter::append_batch(self, records)
    }
}

/// A [`RecordSink`] that keeps nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLog;

impl RecordSink for NoLog {
    fn append_batch(&mut self, _records: &[Record]) -> Result<(), LogError> {
        Ok(())
    }
}

/// Tunes `task` with `tuner`, measuring with `measurer` and appending to `log`. `existing` holds
/// the records already in the log (for resuming); `context` says what every record shares.
#[allow(clippy::too_many_arguments)]
pub fn tune(
    task: &dyn TuningTask,
    tuner: &mut dyn Tuner,
    measurer: &mut dyn Measure,
    log: &mut dyn RecordSink,
    context: &RecordContext,
    existing: &[Record],
    options: &TuneOptions,
    observer: &mut dyn Observer,
) -> Result<TuneReport, TuneError> {
    let mut run = TuningRun::new(task, context, existing, options.clone())?;
    loop {
        if let Some(stop_reason) = run.step(tuner, measurer, log, observer)? {
            return run.finish(stop_reason, measurer, log, observer);
        }
    }
}

/// One tuning run advanced a batch at a time: what [`tune`] drives to the end, and what a
/// caller that interleaves several runs (`tune-compare`'s lockstep) steps itself.
pub struct TuningRun<'t> {
    task: &'t dyn TuningTask,
    context: &'t RecordContext,
    options: TuneOptions,
    key: TaskKey,
    started: Instant,
    done: Measured,
    resumed: usize,
    best: Option<BestConfig>,
    errors: usize,
    environment_errors: usize,
    trials: usize,
    since_improvement: usize,
    curve: Vec<f64>,
    seconds: Vec<f64>,
    short: usize,
    checked_memory: bool,
    /// This task's records, the log's and this run's: what the finalists are chosen from.
    task_records: Vec<Record>,
    /// How many of `task_records` came from the log (this run's follow them).
    logged_records: usize,
    remeasured: usize,
}

impl<'t> TuningRun<'t> {
    /// A run of `task` resuming from `existing` (the log's records), under `options`.
    pub fn new(
        task: &'t dyn TuningTask,
        context: &'t RecordContext,
        existing: &[Record],
        options: TuneOptions,
    ) -> Result<TuningRun<'t>, TuneError> {
        if options.batch_size == 0 {
            return Err(TuneError::Options(
                "batch size 0; it must be at least 1".to_string(),
            ));
        }
        let key = task.key();
        let done = measured(existing, &key, &context.target);
        let best = best(existing, &key, &context.target).and_then(|record| {
            Some(BestConfig {
                index: record.config_index,
                values: record.config.clone(),
                gflops: record.gflops?,
            })
        });
        let task_records: Vec<Record> = existing
            .iter()
            .filter(|record| record.is_of_task(&key, &context.target))
            .cloned()
            .collect();
        Ok(TuningRun {
            task,
            context,
            options,
            logged_records: task_records.len(),
            task_records,
            remeasured: 0,
            key,
            started: Instant::now(),
            resumed: done.len(),
            done,
            best,
            errors: 0,
            environment_errors: 0,
            trials: 0,
            since_improvement: 0,
            curve: Vec::new(),
            seconds: Vec::new(),
            short: 0,
            checked_memory: false,
        })
    }

    /// Best throughput after each trial of this run so far (0 before anything succeeded).
    pub fn curve(&self) -> &[f64] {
        &self.curve
    }

    /// Wall seconds from the start of the run to the end of each trial so far.
    pub fn seconds(&self) -> &[f64] {
        &self.seconds
    }

    /// Proposes, measures, logs and learns one batch; `Some(reason)` once the run is over
    /// (nothing was measured in that call unless the reason is [`StopReason::Interrupted`]).
    pub fn step(
        &mut self,
        tuner: &mut dyn Tuner,
        measurer: &mut dyn Measure,
        log: &mut dyn RecordSink,
        observer: &mut dyn Observer,
    ) -> Result<Option<StopReason>, TuneError> {
        let options = &self.options;
        if observer.interrupted() {
            return Ok(Some(StopReason::Interrupted));
        }
        if self.trials >= options.trials {
            return Ok(Some(StopReason::TrialBudget));
        }
        if options
            .early_stopping
            .is_some_and(|patience| self.since_improvement >= patience)
        {
            return Ok(Some(StopReason::NoImprovement));
        }
        if options
            .time_budget
            .is_some_and(|budget| self.started.elapsed() >= budget)
        {
            return Ok(Some(StopReason::TimeBudget));
        }
        let wanted = options.batch_size.min(options.trials - self.trials);
        let done = &self.done;
        let batch = tuner.next_batch(wanted, &|index| done.contains_index(index));
        if batch.is_empty() {
            return Ok(Some(StopReason::SpaceExhausted));
        }
        // A log written by an older space may know a config under another index.
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|config| !self.done.contains_config(&config.to_values()))
            .collect();
        let mut records = Vec::with_capacity(batch.len());
        let mut batch_trials = Vec::with_capacity(batch.len());
        let inputs: Vec<_> = batch
            .iter()
            .map(|config| self.task.measure_input(config))
            .collect();
        if !self.checked_memory {
            // Refuse a task too large for this machine once, before anything is allocated,
            // rather than recording the same refusal for every candidate.
            if let Some(Ok(input)) = inputs.first() {
                measurer
                    .check_memory(self.key.as_str(), &input.program)
                    .map_err(TuneError::Memory)?;
                self.checked_memory = true;
            }
        }
        let prepared: Vec<_> = batch
            .iter()
            .zip(&inputs)
            .filter_map(|(config, input)| Some((config, input.as_ref().ok()?)))
            .collect();
        measurer.prepare(&prepared);
        let mut interrupted = false;
        for (config, input) in batch.into_iter().zip(inputs) {
            if observer.interrupted() {
                interrupted = true;
                break;
            }
            let candidate_started = SystemTime::now();
            let result = match input {
                Ok(input) => {
                    // The best so far, for staged timing: a candidate far slower than it is
                    // recorded from a first short timing.
                    let best_s = self
                        .best
                        .as_ref()
                        .map(|best| input.flops / (best.gflops * 1e9));
                    measurer.measure(&config, &input.with_best(best_s))
                }
                Err(error) => invalid_config(error.to_string()),
            };
            let record = Record::from_measurement(
                self.context,
                config.index(),
                config.to_values(),
                &result,
                candidate_started,
                SystemTime::now(),
            );
            self.trials += 1;
            self.since_improvement += 1;
            if record.gflops.is_none() {
                self.errors += 1;
            }
            if record.is_short() {
                self.short += 1;
            }
            if !record.counts_as_measured() {
                self.environment_errors += 1;
            }
            if let Some(gflops) = record.gflops {
                if self.best.as_ref().is_none_or(|best| gflops > best.gflops) {
                    self.best = Some(BestConfig {
                        index: config.index(),
                        values: record.config.clone(),
                        gflops,
                    });
                    self.since_improvement = 0;
                }
            }
            self.curve
                .push(self.best.as_ref().map_or(0.0, |best| best.gflops));
            self.seconds.push(self.started.elapsed().as_secs_f64());
            batch_trials.push(Trial {
                config,
                gflops: record.gflops,
            });
            records.push(record);
        }
        log.append_batch(&records)?;
        for record in &records {
            self.done.indices.insert(record.config_index);
            self.done.configs.insert(record.config.clone());
        }
        self.task_records.extend(records.iter().cloned());
        tuner.update(&batch_trials);
        observer.batch_done(&Progress {
            trials: self.trials,
            budget: self.options.trials,
            errors: self.errors,
            best_gflops: self.best.as_ref().map(|best| best.gflops),
        });
        Ok(interrupted.then_some(StopReason::Interrupted))
    }

    /// Ends the run for `stop_reason`: measures the finalists again ([`TuneOptions::finalists`],
    /// not after an interruption) and reports, the best ranked by the log's own rule.
    pub fn finish(
        &mut self,
        stop_reason: StopReason,
        measurer: &mut dyn Measure,
        log: &mut dyn RecordSink,
        observer: &mut dyn Observer,
    ) -> Result<TuneReport, TuneError> {
        if stop_reason != StopReason::Interrupted {
            let again = measure_again(
                self.task,
                measurer,
                log,
                self.context,
                &self.task_records,
                self.options.finalists,
                observer,
            )?;
            self.remeasured += again.len();
            self.task_records.extend(again);
            if let Some(record) = best(&self.task_records, &self.key, &self.context.target) {
                if let Some(gflops) = record.gflops {
                    self.best = Some(BestConfig {
                        index: record.config_index,
                        values: record.config.clone(),
                        gflops,
                    });
                }
            }
        }
        Ok(self.report(stop_reason))
    }

    /// The report of the run so far, ended for `stop_reason` (without finalists: see
    /// [`TuningRun::finish`]).
    pub fn report(&self, stop_reason: StopReason) -> TuneReport {
        TuneReport {
            trials: self.trials,
            resumed: self.resumed,
            errors: self.errors,
            environment_errors: self.environment_errors,
            best: self.best.clone(),
            remeasured: self.remeasured,
            curve: self.curve.clone(),
            seconds: self.seconds.clone(),
            short: self.short,
            noise: Noise::of(&self.task_records[self.logged_records..]),
            stop_reason,
            wall: self.started.elapsed(),
        }
    }
}

impl TuneReport {
    /// The trial (from 1) and the wall seconds at which this run's best so far first reached
    /// `share` of its final best, if it did: how fast the search got close.
    pub fn time_to(&self, share: f64) -> Option<(usize, f64)> {
        let target = share * self.best.as_ref()?.gflops;
        let trial = self.curve.iter().position(|&best| best >= target)?;
        Some((trial + 1, *self.seconds.get(trial)?))
    }
}

/// The result of a config whose template or lowering failed: never measured.
fn invalid_config(message: String) -> MeasureResult {
    MeasureResult {
        outcome: Err(MeasureError::new(MeasureErrorKind::InvalidConfig, message)),
        compile_ms: None,
        check_ms: None,
        reference_ms: 0.0,
        checked_elements: 0,
        total_ms: 0.0,
    }
}
