//! The C backend under the measurer, in worker processes (this crate's `looptune-cc-worker`,
//! which rebuilds the backend from its spec: compiler, leading arguments, cache directory).
//! Good kernels get costs; a crash, a hang, wrong values and a compiler that refuses or is
//! missing each become their error kind, and the candidate after a failure is measured normally.
//! Crashes and hangs are injected (`allow_fault_injection`): the verifier keeps printed kernels
//! from crashing on their own.

#![forbid(unsafe_code)]

mod support;

use looptune_cc::cache::ObjectCache;
use looptune_cc::compiler::Family;
use looptune_cc::{CBackend, Compiler};
use looptune_ir::recipes::MatmulTiling;
use looptune_ir::{BinaryOp, LoopNest, Program, Stmt, ValueExpr, Workload};
use looptune_runtime::measure::{
    Fault, MeasureErrorKind, MeasureInput, MeasureOptions, MeasureResult, Measurer, WorkerCommand,
};
use looptune_runtime::{Backend, Target};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{default_schedule, tiled};

fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_looptune-cc-worker")).allow_fault_injection()
}

/// A measurer for `backend` on two threads, with workers of this crate.
fn measurer(options: MeasureOptions, backend: Arc<dyn Backend>) -> Measurer {
    Measurer::new(
        options,
        Target::host().with_threads(2),
        backend,
        Some(worker()),
    )
    .expect("valid options and a worker command")
}

fn input(text: &str, (program, nest): (Program, LoopNest)) -> MeasureInput {
    let workload: Workload = text.parse().expect("a workload");
    MeasureInput::new(program, nest, workload.flops())
}

/// The default schedule of `text`.
fn candidate(text: &str) -> MeasureInput {
    input(text, default_schedule(text))
}

/// The register-tiled matmul `text`, 8 lanes wide, parallel.
fn tiled_candidate(text: &str) -> MeasureInput {
    let tiling = MatmulTiling {
        tile_rows: 4,
        tile_columns: 8,
        unroll_reduction: 2,
        block_rows: 1,
        parallel: true,
    };
    input(text, tiled(text, tiling))
}

fn assert_ok(result: &MeasureResult) {
    let costs = result.outcome.as_ref().expect("the candidate measures");
    assert!(costs.median_s > 0.0 && costs.min_s > 0.0, "{costs:?}");
    assert!(costs.min_s <= costs.median_s, "{costs:?}");
    assert_eq!(costs.all_s.len(), costs.repeat);
    assert!(result.compile_ms.is_some() && result.check_ms.is_some());
    assert!(result.checked_elements > 0);
}

fn assert_error(result: &MeasureResult, kind: MeasureErrorKind, words: &[&str]) {
    let error = result.outcome.as_ref().expect_err("the candidate fails");
    assert_eq!(error.kind, kind, "{error}");
    for word in words {
        assert!(error.message.contains(word), "`{word}` not in: {error}");
    }
}

/// Applies `edit` to every statement of `stmt`, outermost first.
fn edit_stmts(stmt: &mut Stmt, edit: &mut dyn FnMut(&mut Stmt)) {
    edit(stmt);
    match stmt {
        Stmt::For(body) => edit_stmts(&mut body.body, edit),
        Stmt::Seq(stmts) => stmts.iter_mut().for_each(|stmt| edit_stmts(stmt, edit)),
        Stmt::If { then, .. } => edit_stmts(then, edit),
        Stmt::Alloc { body, .. } => edit_stmts(body, edit),
        Stmt::Store { .. } => {}
    }
}

/// `nest` with every computed (non-constant) value stored to an output doubled.
fn with_doubled_store(mut nest: LoopNest) -> LoopNest {
    let outputs = nest.outputs.clone();
    let mut changed = 0;
    edit_stmts(&mut nest.body, &mut |stmt| {
        if let Stmt::Store { buffer, value, .. } = stmt {
            if outputs.contains(buffer) && !matches!(value, ValueExpr::Const(_)) {
                let stored = std::mem::replace(value, ValueExpr::f32(0.0));
                *value = ValueExpr::binary(BinaryOp::Mul, stored, ValueExpr::f32(2.0));
                changed += 1;
            }
        }
    });
    assert!(
        changed > 0,
        "the nest stores a computed value to its output"
    );
    nest
}

/// A backend with the discovered compiler and a cache in a fresh temporary directory.
struct Fixture {
    dir: tempfile::TempDir,
    backend: Arc<CBackend>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = Arc::new(support::backend(dir.path()));
        Fixture { dir, backend }
    }

    fn measurer(&self, options: MeasureOptions) -> Measurer {
        measurer(options, self.backend.clone())
    }

    /// The objects in the cache with their inode numbers, sorted.
    fn objects(&self) -> Vec<(PathBuf, u64)> {
        use std::os::unix::fs::MetadataExt;
        let mut objects: Vec<(PathBuf, u64)> = std::fs::read_dir(self.dir.path())
            .expect("the cache exists")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "so"))
            .map(|path| {
                let inode = path.metadata().expect("metadata").ino();
                (path, inode)
            })
            .collect();
        objects.sort();
        objects
    }
}

#[test]
fn good_kernels_are_compiled_in_the_parent_and_measured_by_one_worker() {
    let fixture = Fixture::new();
    let mut measurer = fixture.measurer(MeasureOptions::quick());
    let inputs = [
        candidate("matmul:m=33,n=20,k=17"),
        tiled_candidate("matmul:m=24,n=40,k=19"),
        candidate("conv2d:n=1,ic=3,h=9,w=7,oc=5,kh=3,kw=3,stride=2,pad=1"),
        candidate("dense:m=7,n=13,k=11,bias=true,relu=true"),
    ];
    // What `measure` does first: the batch compiled here, in parallel.
    let nests: Vec<&LoopNest> = inputs.iter().map(|input| &input.nest).collect();
    fixture.backend.prepare(&nests, measurer.target());
    let before = fixture.objects();
    assert_eq!(before.len(), 4);
    let results = measurer.measure(&inputs);
    for result in &results {
        assert_ok(result);
    }
    assert_eq!(results[0].checked_elements, 33 * 20);
    assert_eq!(results[1].checked_elements, 24 * 40);
    assert_eq!(measurer.worker_starts(), 1);
    assert_eq!(fixture.backend.objects_compiled(), 4);
    // The worker, with the cache directory from the spec, loaded those very files: a compile
    // there would have renamed a new object (a new inode) into place.
    assert_eq!(fixture.objects(), before);
}

#[test]
fn a_crashing_candidate_is_a_runtime_error_and_the_next_one_runs() {
    let fixture = Fixture::new();
    let mut measurer = fixture.measurer(MeasureOptions::quick());
    let good = tiled_candidate("matmul:m=16,n=24,k=8");
    let results = measurer.measure(&[
        good.clone().with_fault(Fault::Segfault),
        good.clone(),
        good.clone().with_fault(Fault::Abort),
        good,
    ]);
    assert_error(
        &results[0],
        MeasureErrorKind::RuntimeError,
        &["worker died", "SIGSEGV", "matmul"],
    );
    assert_ok(&results[1]);
    assert_error(&results[2], MeasureErrorKind::RuntimeError, &["SIGABRT"]);
    assert_ok(&results[3]);
    assert_eq!(measurer.worker_starts(), 3);
}

#[test]
fn a_hanging_candidate_times_out_and_the_next_one_runs() {
    let fixture = Fixture::new();
    let timeout = Duration::from_millis(800);
    let mut measurer = fixture.measurer(MeasureOptions::quick().with_timeout(timeout));
    let good = candidate("matmul:m=8,n=12,k=5");
    let start = Instant::now();
    let results = measurer.measure(&[good.clone().with_fault(Fault::Hang), good]);
    assert_error(
        &results[0],
        MeasureErrorKind::Timeout,
        &["worker was killed"],
    );
    assert!(results[0].total_ms >= timeout.as_secs_f64() * 1e3);
    assert_ok(&results[1]);
    assert_eq!(measurer.worker_starts(), 2);
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_doubled_store_is_a_wrong_answer_naming_the_element() {
    let fixture = Fixture::new();
    let good = candidate("matmul:m=6,n=7,k=5");
    let tiled_good = tiled_candidate("matmul:m=9,n=16,k=6");
    let wrong = |good: &MeasureInput| {
        MeasureInput::new(
            good.program.clone(),
            with_doubled_store(good.nest.clone()),
            good.flops,
        )
    };
    let results = fixture.measurer(MeasureOptions::quick()).measure(&[
        wrong(&good),
        wrong(&tiled_good),
        good,
        tiled_good,
    ]);
    for result in &results[..2] {
        assert_error(
            result,
            MeasureErrorKind::WrongAnswer,
            &["output `C` element 0 at [0, 0]", "the reference says"],
        );
        assert!(result.compile_ms.is_some());
    }
    assert_ok(&results[2]);
    assert_ok(&results[3]);
}

#[test]
fn a_compiler_that_refuses_the_kernel_is_a_compile_error_with_its_diagnostics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let refusing =
        support::shell_compiler(dir.path(), "refusing-cc.sh", support::REFUSING_COMPILER);
    let backend = CBackend::with(refusing, ObjectCache::new(dir.path().join("objects")));
    let mut measurer = measurer(MeasureOptions::quick(), Arc::new(backend));
    let results = measurer.measure(&[
        candidate("matmul:m=4,n=4,k=4"),
        candidate("matmul:m=5,n=4,k=4"),
    ]);
    for result in &results {
        assert_error(
            result,
            MeasureErrorKind::CompileError,
            &["refusing-cc.sh", "`matmul`", "refuses every kernel"],
        );
        assert_eq!(result.compile_ms, None);
    }
    // The worker reported both and lives on.
    assert_eq!(measurer.worker_starts(), 1);
}

#[test]
fn a_compiler_missing_in_the_worker_is_a_compile_error_naming_it() {
    // A compiler that passed discovery in the parent and is gone when the worker rebuilds the
    // backend from its spec (uninstalled, or a parent on another machine's path).
    let dir = tempfile::tempdir().expect("temp dir");
    let vanished = Compiler {
        program: PathBuf::from("/nonexistent/cc"),
        leading_args: Vec::new(),
        version: "cc (vanished) 1.0".to_string(),
        family: Family::Gcc,
    };
    let backend = CBackend::with(vanished, ObjectCache::new(dir.path()));
    let mut measurer = measurer(MeasureOptions::quick(), Arc::new(backend));
    let result = measurer.measure_one(&candidate("matmul:m=4,n=4,k=4"));
    assert_error(
        &result,
        MeasureErrorKind::CompileError,
        &["the worker cannot build the backend", "/nonexistent/cc"],
    );
}
