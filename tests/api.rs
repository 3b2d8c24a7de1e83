//! The library's high-level API as a framework uses it: tune a workload with `Tuning`, call its
//! best kernel, deploy it from the log with `best_kernel`, and the deploy cases that must be a
//! visible fallback or a typed error (a log without the workload, a recorded config that is not
//! a point of today's space, a database of another target, a missing file).

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

    let deployed =
        best_kernel(&log, Workload::matmul(16, 24, 8), &backend, &target).expect("the log deploys");
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
    let deployed = best_kernel(&log, other, &backend, &target).expect("a fallback deploys");
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
        workload,
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
        Workload::matmul(8, 8, 8),
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

/// `Y[i, j] = max(X[i, j] * 2 + 1, 0)`, a user's operator of 6 x 16 elements, whose template
/// splits the columns by the `tile_j` knob.
fn doubled_relu() -> looptune::CustomTask {
    use looptune::ir::{DType, ProgramBuilder, ValueExpr};
    use looptune::space::{Factors, Knob, TemplateError};
    use looptune::{Config, ConfigSpace, CustomTask, Program, Schedule};

    let mut builder = ProgramBuilder::new("doubled_relu");
    let x = builder
        .placeholder("X", &[6, 16], DType::F32)
        .expect("a valid placeholder");
    let y = builder
        .compute("Y", DType::F32, &[("i", 6), ("j", 16)], |axes| {
            (x.at(&[axes[0].clone(), axes[1].clone()]) * ValueExpr::f32(2.0) + ValueExpr::f32(1.0))
                .max(ValueExpr::f32(0.0))
        })
        .expect("a valid stage");
    let program = builder.build(&[&y]).expect("a valid program");
    let mut space = ConfigSpace::new();
    space
        .add(Knob::split("tile_j", 16, &[Factors::Divisors]).expect("a valid knob"))
        .expect("a new knob");
    fn schedule(program: &Program, config: &Config) -> Result<Schedule, TemplateError> {
        let inner = config.split("tile_j")?[1];
        let mut schedule = Schedule::new(program);
        let output = schedule.stage("Y")?;
        let columns = schedule.spatial_axes(output)[1];
        schedule.split(output, columns, inner)?;
        Ok(schedule)
    }
    CustomTask::new("doubled_relu", program, space, 3.0 * 96.0, schedule)
        .expect("a valid custom task")
}

#[test]
fn a_custom_operator_is_tuned_exported_and_dispatched_from_the_db_like_a_matmul() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("custom.tunelog");
    let task = doubled_relu();
    let tuned = Tuning::new(task.clone())
        .backend(BackendChoice::Cranelift)
        .trials(3)
        .log(&log)
        .run()
        .expect("tuning a custom operator works");
    assert_eq!(tuned.report.trials, 3);
    let best = tuned.report.best.expect("a config passed");

    // The xgb tuner reads built-in templates' nests: refused with a typed error, not a panic.
    let refused = Tuning::new(task.clone())
        .tuner(TunerKind::Xgb)
        .backend(BackendChoice::Cranelift)
        .log(dir.path().join("xgb.tunelog"))
        .run()
        .expect_err("xgb is refused for a custom task");
    assert!(
        refused.to_string().contains("custom:doubled_relu"),
        "{refused}"
    );

    let records = looptune::log::read_log(&log)
        .expect("the log reads")
        .records;
    let db = dir.path().join("kernels.db");
    looptune::log::export_db(&records, &db).expect("the db is written");
    let deployed = best_kernel(
        &db,
        &task,
        &CraneliftBackend::new(),
        &Target::host().with_threads(1),
    )
    .expect("the custom operator deploys from the db");
    assert!(
        deployed.chosen.origin.is_tuned(),
        "{:?}",
        deployed.chosen.origin
    );
    assert_eq!(deployed.chosen.task.key(), "custom:doubled_relu");
    assert_eq!(deployed.chosen.config.to_values(), best.values);

    let x: Vec<f32> = (0..96).map(|i| (i % 9) as f32 - 4.0).collect();
    let mut y = vec![f32::NAN; 96];
    deployed
        .kernel
        .call(&[&x], &mut [&mut y])
        .expect("the buffers have the kernel's lengths");
    let expected: Vec<f32> = x.iter().map(|v| (v * 2.0 + 1.0).max(0.0)).collect();
    assert_eq!(y, expected);
}

#[test]
fn a_kernel_cache_compiles_each_task_once_and_shares_it_across_threads() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("small.tunelog");
    tune_small(&log);
    let cache = looptune::KernelCache::open(
        &log,
        std::sync::Arc::new(CraneliftBackend::new()),
        Target::host().with_threads(1),
    )
    .expect("the log opens");
    let workload = Workload::matmul(16, 24, 8);
    let kernels: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| cache.get(workload).expect("the kernel deploys")))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("no thread panicked"))
            .collect()
    });
    for deployed in &kernels {
        assert!(std::sync::Arc::ptr_eq(deployed, &kernels[0]));
        check_matmul(&deployed.kernel, 16, 24, 8);
    }
    assert!(kernels[0].chosen.origin.is_tuned());
    // Another task is another kernel, a fallback here, and says so.
    let other = cache
        .get(Workload::matmul(8, 8, 8))
        .expect("a fallback deploys");
    assert!(!std::sync::Arc::ptr_eq(&other, &kernels[0]));
    assert!(!other.chosen.origin.is_tuned());
}

/// A deploy database exported from `log` with every record's target changed by `change`.
fn db_of_another_target(
    log: &Path,
    db: &Path,
    change: impl Fn(&mut looptune::TargetFingerprint),
) -> std::path::PathBuf {
    let mut records = looptune::log::read_log(log).expect("the log reads").records;
    for record in &mut records {
        change(&mut record.target);
    }
    looptune::log::export_db(&records, db).expect("the db is written");
    db.to_path_buf()
}

#[test]
fn a_db_of_another_target_is_a_visible_fallback_and_a_compatible_one_is_said() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("small.tunelog");
    tune_small(&log);
    let workload = Workload::matmul(16, 24, 8);
    let open = |db: &Path| {
        looptune::KernelCache::open(
            db,
            std::sync::Arc::new(CraneliftBackend::new()),
            Target::host().with_threads(1),
        )
        .expect("the db opens")
    };

    // Another architecture: nothing of it is used; the fallback runs, and says why.
    let foreign = db_of_another_target(&log, &dir.path().join("riscv.db"), |target| {
        target.arch = "riscv64".to_string();
    });
    let deployed = open(&foreign).get(workload).expect("a fallback deploys");
    match &deployed.chosen.origin {
        Origin::Fallback { reason } => {
            assert!(reason.contains(&workload.to_string()), "{reason}");
        }
        origin => panic!("expected the fallback, got {origin:?}"),
    }
    assert!(
        deployed
            .chosen
            .warnings
            .iter()
            .any(|warning| warning.contains("incompatible target") && warning.contains("riscv64")),
        "{:?}",
        deployed.chosen.warnings
    );
    check_matmul(&deployed.kernel, 16, 24, 8);

    // Another CPU model with the same features and backend: used, and said so.
    let sibling = db_of_another_target(&log, &dir.path().join("sibling.db"), |target| {
        target.cpu_model = "Another CPU".to_string();
    });
    let deployed = open(&sibling).get(workload).expect("the db deploys");
    match &deployed.chosen.origin {
        Origin::Tuned {
            source: Source::CompatibleTarget { differences, .. },
            ..
        } => assert!(
            differences
                .iter()
                .any(|difference| difference.contains("Another CPU")),
            "{differences:?}"
        ),
        origin => panic!("expected a compatible target, got {origin:?}"),
    }
    check_matmul(&deployed.kernel, 16, 24, 8);
}

/// A conv2d deployed with `prepacked=true` packs its OIHW weights once, when it is made, and
/// then computes what the kernel that packs them per call computes; a kernel of another
/// workload or weights of the wrong count are typed errors.
#[test]
fn a_prepacked_conv_packs_its_weights_once_and_computes_the_same() {
    use looptune::ir::ops::Conv2dParams;
    use looptune::{PrepackError, PrepackedConv};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("empty.tunelog");
    std::fs::write(&log, "").expect("writable");
    let Workload::Conv2d(params) =
        "conv2d:ic=16,h=6,w=7,oc=8,kh=3,kw=3,pad=1,bias=true,relu=true,block=8"
            .parse::<Workload>()
            .expect("a workload")
    else {
        unreachable!("a conv2d")
    };
    let prepacked = Workload::Conv2d(Conv2dParams {
        prepacked: true,
        ..params
    });
    let (backend, target) = (CraneliftBackend::new(), Target::host().with_threads(1));
    let packed_kernel =
        std::sync::Arc::new(best_kernel(&log, prepacked, &backend, &target).expect("deploys"));
    let plain = std::sync::Arc::new(
        best_kernel(&log, Workload::Conv2d(params), &backend, &target).expect("deploys"),
    );
    let x: Vec<f32> = (0..16 * 6 * 7)
        .map(|i| (i % 11) as f32 / 8.0 - 0.6)
        .collect();
    let weights: Vec<f32> = (0..8 * 16 * 9)
        .map(|i| (i % 7) as f32 / 4.0 - 0.7)
        .collect();
    let bias: Vec<f32> = (0..8).map(|i| i as f32 / 8.0 - 0.5).collect();
    let conv = PrepackedConv::new(std::sync::Arc::clone(&packed_kernel), &params, &weights)
        .expect("the weights pack");
    assert!(conv.packing_time() > std::time::Duration::ZERO);
    assert_eq!(conv.weights().len(), weights.len());
    let mut once = vec![f32::NAN; 8 * 6 * 7];
    conv.call(&[&x, &bias], &mut [&mut once]).expect("a call");
    let mut per_call = vec![f32::NAN; 8 * 6 * 7];
    plain
        .kernel
        .call(&[&x, &weights, &bias], &mut [&mut per_call])
        .expect("a call");
    looptune::ir::eval::compare(&once, &per_call, 1e-5).expect("the same convolution");
    assert!(once.iter().any(|&value| value > 0.0));

    let error = PrepackedConv::new(std::sync::Arc::clone(&plain), &params, &weights)
        .err()
        .expect("not the pre-packed kernel");
    assert!(matches!(error, PrepackError::WrongKernel { .. }), "{error}");
    let error = PrepackedConv::new(packed_kernel, &params, &weights[1..])
        .err()
        .expect("too few weights");
    assert!(
        error.to_string().contains("weights given for OIHW"),
        "{error}"
    );
}
