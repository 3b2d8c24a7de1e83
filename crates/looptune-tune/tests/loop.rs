//! The tuning loop on a small hand-made space: budgets and stop reasons, log records, resume.

#![forbid(unsafe_code)]

use looptune_ir::ops::{Layout, Workload};
use looptune_ir::Program;
use looptune_ir::{lower, Schedule};
use looptune_log::{read_log, LogWriter, RecordContext, TargetFingerprint};
use looptune_runtime::measure::{Costs, Isolation};
use looptune_runtime::{
    MeasureInput, MeasureOptions, MeasureResult, Measurer, MemoryError, Target,
};
use looptune_space::{Config, ConfigSpace, Factors, Knob, TaskKey, TemplateError};
use looptune_tune::{
    tune, Finalists, GridTuner, Measure, Observer, Progress, RandomTuner, StopReason, TuneOptions,
    TuningTask,
};

/// A 12x8x5 matmul whose space splits `i` and `j` (divisors): 6 * 4 = 24 configs.
struct SplitTask {
    workload: Workload,
    space: ConfigSpace,
}

impl SplitTask {
    fn new() -> SplitTask {
        let workload: Workload = "matmul:m=12,n=8,k=5".parse().unwrap();
        let mut space = ConfigSpace::new();
        space
            .add(Knob::split("tile_i", 12, &[Factors::Divisors]).unwrap())
            .unwrap();
        space
            .add(Knob::split("tile_j", 8, &[Factors::Divisors]).unwrap())
            .unwrap();
        SplitTask { workload, space }
    }
}

impl TuningTask for SplitTask {
    fn key(&self) -> TaskKey {
        TaskKey::of_workload(&self.workload)
    }

    fn flops(&self) -> f64 {
        self.workload.flops()
    }

    fn space(&self) -> &ConfigSpace {
        &self.space
    }

    fn measure_input(&self, config: &Config) -> Result<MeasureInput, TemplateError> {
        let program = self.workload.program(&Layout::default())?;
        let mut schedule = Schedule::new(&program);
        let c = schedule.stage("C")?;
        let [i, j] = [schedule.spatial_axes(c)[0], schedule.spatial_axes(c)[1]];
        let tile_i = config.split("tile_i")?[1];
        let tile_j = config.split("tile_j")?[1];
        schedule.tile(c, i, j, tile_i, tile_j)?;
        let nest = lower(&schedule)?;
        Ok(MeasureInput::new(program, nest, self.workload.flops()))
    }
}

fn measurer() -> Measurer {
    let options = MeasureOptions::quick().with_isolation(Isolation::InProcess);
    Measurer::new(options, Target::host(), cranelift(), None).expect("measurer")
}

/// A measurer with no timing noise: config `i` takes `seconds(i, n)` seconds on its `n`-th
/// measurement (from 0), and when `staged`, a candidate more than twice as slow as the best it
/// is told of is timed short, as staged timing does. It keeps what it was asked, for the tests
/// to check.
struct Scripted {
    seconds: fn(u128, usize) -> f64,
    staged: bool,
    /// The config and `best_s` of every measurement, in order.
    asked: Vec<(u128, Option<f64>)>,
    fresh_processes: usize,
}

impl Scripted {
    fn new(seconds: fn(u128, usize) -> f64, staged: bool) -> Scripted {
        Scripted {
            seconds,
            staged,
            asked: Vec::new(),
            fresh_processes: 0,
        }
    }
}

impl Measure for Scripted {
    fn check_memory(&self, _key: &str, _program: &Program) -> Result<(), MemoryError> {
        Ok(())
    }

    fn prepare(&mut self, _batch: &[(&Config, &MeasureInput)]) {}

    fn measure(&mut self, config: &Config, input: &MeasureInput) -> MeasureResult {
        let index = config.index();
        let times = self.asked.iter().filter(|(i, _)| *i == index).count();
        self.asked.push((index, input.best_s));
        let seconds = (self.seconds)(index, times);
        let mut costs = Costs::at_throughput(input.flops / seconds / 1e9, input.flops);
        costs.short = self.staged && input.best_s.is_some_and(|best| seconds > 2.0 * best);
        MeasureResult::known(Ok(costs))
    }

    fn fresh_process(&mut self) {
        self.fresh_processes += 1;
    }
}

fn context(task: &SplitTask, tuner: &str) -> RecordContext {
    let fingerprint = TargetFingerprint::from_parts(&Target::host(), "cranelift", "test");
    RecordContext::new(&task.workload, fingerprint, tuner)
}

#[test]
fn random_tuning_logs_every_trial_and_resumes_without_remeasuring() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.jsonl");
    let task = SplitTask::new();
    let options = TuneOptions {
        trials: 10,
        batch_size: 4,
        ..TuneOptions::default()
    };

    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = RandomTuner::new(&task.space, 7);
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "random"),
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::TrialBudget);
    assert_eq!((report.trials, report.resumed, report.errors), (10, 0, 0));
    assert_eq!(report.curve.len(), 10);
    assert!(report.best.as_ref().is_some_and(|best| best.gflops > 0.0));
    let first = read_log(&path).unwrap();
    assert_eq!(first.records.len(), 10);

    // A rerun with the same log and seed measures only new configs, then runs out of space.
    let options = TuneOptions {
        trials: 100,
        batch_size: 4,
        ..TuneOptions::default()
    };
    // The first run is over: its writer, and the log's lock with it, goes.
    drop(writer);
    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = RandomTuner::new(&task.space, 7);
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "random"),
        &first.records,
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.resumed, 10);
    assert_eq!(report.trials, 14);
    assert_eq!(report.stop_reason, StopReason::SpaceExhausted);
    let all = read_log(&path).unwrap().records;
    let mut indices: Vec<u128> = all.iter().map(|record| record.config_index).collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), 24, "every config measured exactly once");
    assert_eq!(all.len(), 24);
}

#[test]
fn early_stopping_and_time_budget_end_the_run_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let task = SplitTask::new();
    let mut writer = LogWriter::open(dir.path().join("a.jsonl")).unwrap();
    let mut tuner = GridTuner::new(&task.space);
    let options = TuneOptions {
        trials: 24,
        batch_size: 1,
        early_stopping: Some(0),
        ..TuneOptions::default()
    };
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "grid"),
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::NoImprovement);
    assert_eq!(report.trials, 0);

    let options = TuneOptions {
        trials: 24,
        batch_size: 2,
        time_budget: Some(std::time::Duration::ZERO),
        ..TuneOptions::default()
    };
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "grid"),
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::TimeBudget);

    let options = TuneOptions {
        batch_size: 0,
        ..TuneOptions::default()
    };
    let error = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "grid"),
        &[],
        &options,
        &mut (),
    )
    .unwrap_err();
    assert!(error.to_string().contains("batch size 0"), "{error}");
}

#[test]
fn grid_tuning_walks_the_whole_space_in_index_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.jsonl");
    let task = SplitTask::new();
    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = GridTuner::new(&task.space);
    let options = TuneOptions {
        trials: 1000,
        batch_size: 5,
        ..TuneOptions::default()
    };
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "grid"),
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::SpaceExhausted);
    assert_eq!(report.trials, 24);
    let indices: Vec<u128> = read_log(&path)
        .unwrap()
        .records
        .iter()
        .map(|record| record.config_index)
        .collect();
    assert_eq!(indices, (0..24).collect::<Vec<u128>>());
}

/// The Cranelift backend, which these tests measure with (no compiler needed).
fn cranelift() -> std::sync::Arc<dyn looptune_runtime::Backend> {
    std::sync::Arc::new(looptune_jit::CraneliftBackend::new())
}

/// An observer that asks to stop once a batch is done, as the CLI does after a Ctrl-C.
struct StopAfterFirstBatch {
    batches: usize,
}

impl Observer for StopAfterFirstBatch {
    fn batch_done(&mut self, _progress: &Progress) {
        self.batches += 1;
    }

    fn interrupted(&self) -> bool {
        self.batches >= 1
    }
}

#[test]
fn an_interrupted_run_stops_after_the_batch_in_flight_with_it_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interrupted.jsonl");
    let task = SplitTask::new();
    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = RandomTuner::new(&task.space, 3);
    let options = TuneOptions {
        trials: 100,
        batch_size: 3,
        ..TuneOptions::default()
    };
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "random"),
        &[],
        &options,
        &mut StopAfterFirstBatch { batches: 0 },
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert_eq!(report.stop_reason.as_str(), "interrupted");
    assert_eq!(report.trials, 3);
    assert_eq!(read_log(&path).unwrap().records.len(), 3);
}

#[test]
fn finalists_are_measured_again_side_by_side_and_ranked_at_their_median() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.jsonl");
    let task = SplitTask::new();
    let options = TuneOptions {
        trials: 8,
        batch_size: 4,
        finalists: Finalists {
            configs: 3,
            rounds: 2,
        },
        ..TuneOptions::default()
    };
    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = RandomTuner::new(&task.space, 3);
    let context = context(&task, "random");
    // Each config's time drifts from one measurement to the next (by at most 10%), never
    // enough for a config left out to overtake the finalists (so there is one pass), but
    // enough that a median differs from a first measurement.
    let mut measurer = Scripted::new(
        |index, times| {
            (1.0 + index as f64) * (1.0 + 0.1 * ((index as usize + times) % 3) as f64 / 2.0)
        },
        false,
    );
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer,
        &mut writer,
        &context,
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!((report.trials, report.remeasured), (8, 6));
    let records = read_log(&path).unwrap().records;
    assert_eq!(
        records.len(),
        8 + 6,
        "the trials, then two rounds of three finalists"
    );
    // The finalists are the three best configs of the trials, measured in the same order in
    // every round.
    let trials = &records[..8];
    let top: Vec<u128> = looptune_log::top_k(trials, task.workload, &context.target, 3)
        .iter()
        .map(|record| record.config_index)
        .collect();
    let rounds: Vec<u128> = records[8..]
        .iter()
        .map(|record| record.config_index)
        .collect();
    assert_eq!(rounds, [top.clone(), top].concat());
    // The report's best is the log's best under the rule every query uses.
    let best = looptune_log::best(&records, task.workload, &context.target).unwrap();
    let reported = report.best.unwrap();
    assert_eq!(reported.index, best.config_index);
    assert_eq!(Some(reported.gflops), best.gflops);
    // A finalist measured three times counts at its median measurement.
    let times = |index: u128| {
        let mut times: Vec<f64> = records
            .iter()
            .filter(|record| record.config_index == index)
            .filter_map(|record| record.median_s())
            .collect();
        times.sort_by(f64::total_cmp);
        times
    };
    let best_times = times(best.config_index);
    assert_eq!(best_times.len(), 3);
    assert_eq!(best.median_s(), Some(best_times[1]));
}

#[test]
fn each_finalist_round_runs_in_a_fresh_process_and_a_lucky_outsider_is_measured_again() {
    let task = SplitTask::new();
    let options = TuneOptions {
        trials: 24,
        batch_size: 8,
        finalists: Finalists {
            configs: 2,
            rounds: 2,
        },
        ..TuneOptions::default()
    };
    let run = |seconds: fn(u128, usize) -> f64| {
        let mut measurer = Scripted::new(seconds, false);
        let mut tuner = GridTuner::new(&task.space);
        let report = tune(
            &task,
            &mut tuner,
            &mut measurer,
            &mut looptune_tune::NoLog,
            &context(&task, "grid"),
            &[],
            &options,
            &mut (),
        )
        .unwrap();
        (report, measurer)
    };
    // Steady times (config i takes 1 + i seconds): configs 0 and 1 are the finalists, measured
    // twice more, each round in a fresh process, and the best stays config 0.
    let (report, measurer) = run(|index, _| 1.0 + index as f64);
    assert_eq!((report.trials, report.remeasured), (24, 4));
    assert_eq!(measurer.fresh_processes, 2);
    assert_eq!(report.best.map(|best| best.index), Some(0));
    // Configs 0 and 1 were lucky the first time (then 30 s); config 2 (3 s) becomes the best
    // without ever being measured next to them, so the best two (2 and 3) are measured again.
    let (report, measurer) = run(|index, times| match (index, times) {
        (0 | 1, 0) => 1.0 + index as f64,
        (0 | 1, _) => 30.0,
        _ => 1.0 + index as f64,
    });
    assert_eq!(report.remeasured, 8);
    assert_eq!(measurer.fresh_processes, 4);
    let again: Vec<u128> = measurer.asked[24..].iter().map(|(i, _)| *i).collect();
    assert_eq!(again, [0, 1, 0, 1, 2, 3, 2, 3]);
    assert_eq!(report.best.map(|best| best.index), Some(2));
}

#[test]
fn staged_timing_is_told_the_best_so_far_and_a_short_trial_never_becomes_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.jsonl");
    let task = SplitTask::new();
    let options = TuneOptions {
        trials: 24,
        batch_size: 4,
        ..TuneOptions::default()
    };
    // In the grid's order: config 0 takes 1 s, config 5 the best 0.5 s, config i 1 + i s.
    let seconds = |index: u128, _| if index == 5 { 0.5 } else { 1.0 + index as f64 };
    let mut measurer = Scripted::new(seconds, true);
    let mut writer = LogWriter::open(&path).unwrap();
    let report = tune(
        &task,
        &mut GridTuner::new(&task.space),
        &mut measurer,
        &mut writer,
        &context(&task, "grid"),
        &[],
        &options,
        &mut (),
    )
    .unwrap();
    // The first candidate has no best to compare with; every later one is told the best time
    // known when it is measured: config 0's 1 s, then config 5's 0.5 s.
    let told: Vec<(u128, Option<f64>)> = measurer
        .asked
        .iter()
        .map(|&(index, best_s)| (index, best_s.map(|s| (s * 1e6).round() / 1e6)))
        .collect();
    assert_eq!(told[0], (0, None));
    assert!(
        told[1..=5].iter().all(|(_, best_s)| *best_s == Some(1.0)),
        "{told:?}"
    );
    assert!(
        told[6..].iter().all(|(_, best_s)| *best_s == Some(0.5)),
        "{told:?}"
    );
    let flops = task.workload.flops();
    // Configs more than twice as slow as the best were timed short, and logged so.
    let records = read_log(&path).unwrap().records;
    let short: Vec<u128> = records
        .iter()
        .filter(|record| record.is_short())
        .map(|record| record.config_index)
        .collect();
    assert_eq!(short, (2..24).filter(|&i| i != 5).collect::<Vec<u128>>());
    assert_eq!(report.short, short.len());
    let best = report.best.expect("a best");
    assert_eq!(best.index, 5);
    assert!((best.gflops - flops / 0.5 / 1e9).abs() < 1e-12);
    // A resumed run counts the short trials as measured: nothing is measured again.
    drop(writer);
    let mut writer = LogWriter::open(&path).unwrap();
    let mut again = Scripted::new(seconds, true);
    let report = tune(
        &task,
        &mut GridTuner::new(&task.space),
        &mut again,
        &mut writer,
        &context(&task, "grid"),
        &records,
        &options,
        &mut (),
    )
    .unwrap();
    assert_eq!((report.resumed, report.trials), (24, 0));
    assert_eq!(report.stop_reason, StopReason::SpaceExhausted);
    assert!(again.asked.is_empty());
    assert_eq!(report.best.map(|best| best.index), Some(5));
}

#[test]
fn an_interrupted_run_measures_no_finalists() {
    struct Stop;
    impl Observer for Stop {
        fn batch_done(&mut self, _progress: &Progress) {}
        fn interrupted(&self) -> bool {
            true
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tune.jsonl");
    let task = SplitTask::new();
    let options = TuneOptions {
        trials: 8,
        finalists: Finalists::default(),
        ..TuneOptions::default()
    };
    let mut writer = LogWriter::open(&path).unwrap();
    let mut tuner = RandomTuner::new(&task.space, 3);
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
        &mut writer,
        &context(&task, "random"),
        &[],
        &options,
        &mut Stop,
    )
    .unwrap();
    assert_eq!(report.stop_reason, StopReason::Interrupted);
    assert_eq!(report.remeasured, 0);
}
