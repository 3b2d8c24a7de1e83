//! Whole-model tuning on small layers, measured in process: the fallback first, configs shared
//! between layers of one operator, one log, and a resumed run that measures nothing twice.

#![forbid(unsafe_code)]

use looptune_ir::Workload;
use looptune_log::{read_log, read_log_to_resume, LogWriter, Record, TargetFingerprint};
use looptune_runtime::measure::Isolation;
use looptune_runtime::{MeasureOptions, Measurer, Target};
use looptune_space::Task;
use looptune_tune::scheduler::driver::{MakeTuner, ModelTuneError};
use looptune_tune::{
    tune_model, ModelTask, ModelTuneOptions, ModelTuneReport, RandomTuner, StopReason, Tuner,
};
use std::collections::HashSet;
use std::path::Path;

const LAYERS: [(&str, &str, u32); 4] = [
    (
        "a",
        "conv2d:n=1,ic=4,h=10,w=10,oc=8,kh=3,kw=3,stride=1,pad=1",
        2,
    ),
    (
        "b",
        "conv2d:n=1,ic=8,h=8,w=8,oc=8,kh=3,kw=3,stride=1,pad=1",
        1,
    ),
    (
        "c",
        "conv2d:n=1,ic=8,h=6,w=6,oc=16,kh=3,kw=3,stride=2,pad=1",
        3,
    ),
    ("d", "matmul:m=16,n=12,k=8", 1),
];

fn tasks() -> Vec<Task> {
    LAYERS
        .iter()
        .map(|(_, text, _)| Task::new(text.parse::<Workload>().unwrap()).unwrap())
        .collect()
}

fn model_tasks(tasks: &[Task]) -> Vec<ModelTask<'_>> {
    LAYERS
        .iter()
        .zip(tasks)
        .map(|((name, _, multiplicity), task)| ModelTask {
            name: name.to_string(),
            multiplicity: *multiplicity,
            task,
            fallback: Some(task.fallback_config().unwrap()),
        })
        .collect()
}

fn fingerprint() -> TargetFingerprint {
    TargetFingerprint::from_parts(&Target::host(), "cranelift", "test")
}

fn run(tasks: &[Task], log: &Path, trials: usize) -> ModelTuneReport {
    let existing: Vec<Record> = read_log_to_resume(log).unwrap().records;
    let options = MeasureOptions::quick().with_isolation(Isolation::InProcess);
    let mut measurer = Measurer::new(options, Target::host(), cranelift(), None).unwrap();
    let mut writer = LogWriter::open(log).unwrap();
    let mut make_tuner = |position: usize| -> Result<Box<dyn Tuner + '_>, String> {
        Ok(Box::new(RandomTuner::new(
            tasks[position].space(),
            position as u64,
        )))
    };
    tune_model(
        &model_tasks(tasks),
        &mut make_tuner,
        &mut measurer,
        &mut writer,
        &fingerprint(),
        &existing,
        &ModelTuneOptions {
            trials,
            batch_size: 3,
            ..ModelTuneOptions::default()
        },
        &mut (),
    )
    .unwrap()
}

/// (workload, config index) of every record of the log.
fn logged(log: &Path) -> Vec<(String, u128)> {
    read_log(log)
        .unwrap()
        .records
        .into_iter()
        .map(|record| (record.workload, record.config_index))
        .collect()
}

#[test]
fn every_layer_starts_from_its_fallback_shares_configs_and_resumes_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("model.jsonl");
    let tasks = tasks();
    let first = run(&tasks, &log, 18);
    assert_eq!(first.trials, 18);
    assert_eq!(first.stop_reason, StopReason::TrialBudget);
    assert!(first.rounds >= tasks.len(), "warm-up covers every layer");
    let records = read_log(&log).unwrap().records;
    for (layer, task) in first.layers.iter().zip(&tasks) {
        assert!(layer.trials >= 3, "{layer:?}");
        assert!(layer.fallback_gflops.is_some(), "{layer:?}");
        let fallback = task.fallback_config().unwrap().index();
        let first_record = records
            .iter()
            .find(|record| record.workload == task.key().as_str())
            .unwrap();
        assert_eq!(first_record.config_index, fallback, "{}", layer.name);
        // The best includes the fallback, so tuning never makes a layer slower.
        assert!(layer.best_gflops >= layer.fallback_gflops, "{layer:?}");
    }
    // Conv layers after the first get configs of the earlier ones; the matmul has no sibling.
    assert!(first.layers[1].shared_trials > 0, "{:?}", first.layers[1]);
    assert!(first.layers[2].shared_trials > 0, "{:?}", first.layers[2]);
    assert_eq!(first.layers[3].shared_trials, 0);
    let (before, after) = (first.before_s().unwrap(), first.after_s().unwrap());
    assert!(after <= before, "{after} > {before}");
    let by_hand: f64 = first
        .layers
        .iter()
        .map(|layer| f64::from(layer.multiplicity) * layer.fallback_latency_s().unwrap())
        .sum();
    assert!((before - by_hand).abs() <= 1e-12 * by_hand);
    assert_eq!(logged(&log).len(), 18);

    let second = run(&tasks, &log, 9);
    assert_eq!(second.trials, 9);
    let all = logged(&log);
    assert_eq!(all.len(), 27);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        27,
        "a config was measured twice for one layer"
    );
    for (old, new) in first.layers.iter().zip(&second.layers) {
        assert_eq!(new.logged_trials, old.logged_trials + new.trials);
        // The log keeps numbers bit for bit, so what is read back equals what was measured.
        assert_eq!(
            new.fallback_gflops, old.fallback_gflops,
            "the fallback is read back from the log, not measured again"
        );
        assert!(new.best_gflops >= old.best_gflops, "{old:?} -> {new:?}");
    }
}

#[test]
fn a_tuner_that_cannot_be_made_is_an_error_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("model.jsonl");
    let tasks = tasks();
    let mut measurer = Measurer::new(
        MeasureOptions::quick().with_isolation(Isolation::InProcess),
        Target::host(),
        cranelift(),
        None,
    )
    .unwrap();
    let mut writer = LogWriter::open(&log).unwrap();
    let make_tuner: &mut MakeTuner<'_, '_> =
        &mut |_position: usize| -> Result<Box<dyn Tuner + '_>, String> {
            Err("no model".to_string())
        };
    let error = tune_model(
        &model_tasks(&tasks),
        make_tuner,
        &mut measurer,
        &mut writer,
        &fingerprint(),
        &[],
        &ModelTuneOptions::default(),
        &mut (),
    )
    .unwrap_err();
    assert!(matches!(error, ModelTuneError::Tuner { .. }));
    assert_eq!(
        error.to_string(),
        "could not make the tuner of `a`: no model"
    );
}

/// The Cranelift backend, which these tests measure with (no compiler needed).
fn cranelift() -> std::sync::Arc<dyn looptune_runtime::Backend> {
    std::sync::Arc::new(looptune_jit::CraneliftBackend::new())
}

#[test]
fn failures_that_are_not_the_kernels_are_counted_per_layer_as_environment_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("model.jsonl");
    let tasks = tasks();
    let matmul = &tasks[3..];
    let model = vec![ModelTask {
        name: "d".to_string(),
        multiplicity: 1,
        task: &matmul[0],
        fallback: None,
    }];
    // A memory limit that admits the program (the check made once, before any candidate) but
    // no candidate (the program plus the nest's own buffers): every candidate is refused as
    // an Environment error, the machine's limit rather than the kernel's fault.
    let config = matmul[0].fallback_config().unwrap();
    let program = looptune_tune::TuningTask::measure_input(&matmul[0], &config)
        .unwrap()
        .program;
    let limit = looptune_runtime::memory::program_measurement_bytes(&program);
    let mut measurer = Measurer::new(
        MeasureOptions::quick().with_isolation(Isolation::InProcess),
        Target::host(),
        cranelift(),
        None,
    )
    .unwrap()
    .with_memory_limit(looptune_runtime::MemoryLimit::bytes(limit));
    let mut writer = LogWriter::open(&log).unwrap();
    let mut make_tuner = |_position: usize| -> Result<Box<dyn Tuner + '_>, String> {
        Ok(Box::new(RandomTuner::new(matmul[0].space(), 1)))
    };
    let report = tune_model(
        &model,
        &mut make_tuner,
        &mut measurer,
        &mut writer,
        &fingerprint(),
        &[],
        &ModelTuneOptions {
            trials: 4,
            batch_size: 2,
            ..ModelTuneOptions::default()
        },
        &mut (),
    )
    .unwrap();
    let layer = &report.layers[0];
    assert_eq!(layer.trials, 4, "{layer:?}");
    assert_eq!(layer.errors, 4, "{layer:?}");
    assert_eq!(layer.environment_errors, 4, "{layer:?}");
}
