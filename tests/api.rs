//! The library's high-level API as a framework uses it: tune a workload with `Tuning`, call its
//! best kernel, deploy it from the log with `best_kernel`, and the deploy cases that must be a
//! visible fallback or a typed error (a log without the workload, a recorded config that is not
//! a point of today's space, a missing file).

#![forbid(unsafe_code)]

use looptune::deploy::{best_kernel, DeployError, Origin};
use looptune::log::Source;
use looptune::{BackendChoice, CraneliftBackend, Target, TunerKind, Tuning, Workload};
use std::path::Path;

/// `C = A · B` the obvious way.
fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for row in 0..m {
        for column in 0..n {
            c[row * n + column] = (0..k).map(|i| a[row * k + i] * b[i * n + column]).sum();
        }
    }
    c
}

/// Calls `kernel` on small-integer inputs (exact in f32) and compares it with the reference.
fn check_matmul(kernel: &looptune::Kernel, m: usize, n: usize, k: usize) {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut c = vec![f32::NAN; m * n];
    kernel
        .call(&[&a, &b], &mut [&mut c])
        .expect("the buffers have the kernel's lengths");
    assert_eq!(c, reference(&a, &b, m, n, k));
}

/// Tunes a 16x24x8 matmul for 4 trials on Cranelift into `log`.
fn tune_small(log: &Path) -> looptune::TuningReport {
    Tuning::new(Workload::matmul(16, 24, 8))
        .tuner(TunerKind::Random)
        .backend(BackendChoice::Cranelift)
        .trials(4)
        .seed(3)
        .log(log)
        .run()
        .expect("tuning a small matmul works")
}

#[test]
fn tuning_finds_the_looptune_worker_and_its_best_kernel_is_correct() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("small.tunelog");
    let tuned = tune_small(&log);
    assert_eq!(tuned.report.trials, 4);
    // Integration tests run from target/*/deps, next to which cargo built this version's
    // `looptune` binary: the worker is found, not replaced by measuring in-process.
    assert!(tuned.measuring.isolated, "{}", tuned.measuring.note);
    assert!(
        tuned.measuring.note.contains("looptune"),
        "{}",
        tuned.measuring.note
    );
    check_matmul(&tuned.best_kernel().expect("a config passed"), 16, 24, 8);

    // A rerun with the same log resumes: nothing is measured twice.
    let again = tune_small(&log);
    assert_eq!(again.report.resumed, 4);
}

#[test]
fn a_tuned_log_deploys_exactly_and_a_missing_workload_falls_back_visibly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("small.tunelog");
    let tuned = tune_small(&log);
    let backend = CraneliftBackend::new();
    let target = Target::host().with_threads(1);

    let deployed = best_kernel(&log, &Workload::matmul(16, 24, 8), &backend, &target)
        .expect("the log deploys");
    assert!(
        matches!(
            deployed.chosen.origin,
            Origin::Tuned {
                source: Source::Exact,
                ..
            }
        ),
        "{:?}",
        deployed.chosen.origin
    );
    let best = tuned.report.best.expect("a config passed");
    assert_eq!(deployed.chosen.config.to_values(), best.values);
    check_matmul(&deployed.kernel, 16, 24, 8);

    let other = Workload::matmul(8, 8, 8);
    let deployed = best_kernel(&log, &other, &backend, &target).expect("a fallback deploys");
    match &deployed.chosen.origin {
        Origin::Fallback { reason } => assert!(reason.contains(&other.to_string()), "{reason}"),
        origin => panic!("expected the fallback, got {origin:?}"),
    }
    check_matmul(&deployed.kernel, 8, 8, 8);
}

#[test]
fn a_recorded_config_outside_the_space_falls_back_with_a_warning() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("small.tunelog");
    tune_small(&log);
    // Every record's first split becomes one no space of this workload offers.
    let text = std::fs::read_to_string(&log).expect("the log was written");
    let damaged: String = text
        .lines()
        .map(|line| {
            let start = line.find("{\"split\":[").expect("a split knob") + "{\"split\":[".len();
            let end = start + line[start..].find(']').expect("a closed list");
            format!("{}999,999,999{}\n", &line[..start], &line[end..])
        })
        .collect();
    let damaged_log = dir.path().join("damaged.tunelog");
    std::fs::write(&damaged_log, damaged).expect("writable");

    let workload = Workload::matmul(16, 24, 8);
    let deployed = best_kernel(
        &damaged_log,
        &workload,
        &CraneliftBackend::new(),
        &Target::host().with_threads(1),
    )
    .expect("a fallback deploys");
    assert!(!deployed.chosen.origin.is_tuned());
    assert!(
        deployed
            .chosen
            .warnings
            .iter()
            .any(|warning| warning.contains("not points of today's space")),
        "{:?}",
        deployed.chosen.warnings
    );
    check_matmul(&deployed.kernel, 16, 24, 8);
}

#[test]
fn a_missing_file_is_a_typed_error_naming_it() {
    let missing = Path::new("/nonexistent/kernels.db");
    let error = best_kernel(
        missing,
        &Workload::matmul(8, 8, 8),
        &CraneliftBackend::new(),
        &Target::host(),
    )
    .err()
    .expect("a missing file is an error");
    assert!(matches!(error, DeployError::Read(_)), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/kernels.db"),
        "{error}"
    );
}
