//! The tuning loop on a small hand-made space: budgets and stop reasons, log records, resume.

#![forbid(unsafe_code)]

use looptune_ir::ops::{Layout, Workload};
use looptune_ir::{lower, Schedule};
use looptune_log::{read_log, LogWriter, RecordContext, TargetFingerprint};
use looptune_runtime::measure::Isolation;
use looptune_runtime::{MeasureInput, MeasureOptions, Measurer, Target};
use looptune_space::{Config, ConfigSpace, Factors, Knob, TaskKey, TemplateError};
use looptune_tune::{
    tune, Finalists, GridTuner, Observer, Progress, RandomTuner, StopReason, TuneOptions,
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
    let report = tune(
        &task,
        &mut tuner,
        &mut measurer(),
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
