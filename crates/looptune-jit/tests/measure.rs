//! The measurer end to end: good kernels are checked and timed; crashing, hanging, wrong,
//! malformed and uncompilable candidates each become their error kind, and the candidate after
//! a failure is measured normally by the same measurer.
//!
//! Workers are this crate's `looptune-jit-worker` binary, started with fault injection allowed
//! so that candidates can ask it to crash or hang (a kernel that really crashes is hard to write
//! on purpose once the verifier guards every nest).

#![forbid(unsafe_code)]

use looptune_ir::ops::MatmulParams;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{lower, LoopNest, Schedule, Stmt, ValueExpr, Workload};
use looptune_runtime::measure::{
    CheckMode, Fault, Isolation, MeasureErrorKind, MeasureInput, MeasureOptions, MeasureResult,
    Measurer, MeasurerError, OptionsError, WorkerCommand, WorkerError, FAULT_INJECTION_ENV,
};
use looptune_runtime::Target;
use std::time::{Duration, Instant};

fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_looptune-jit-worker")).allow_fault_injection()
}

fn measurer(options: MeasureOptions) -> Measurer {
    Measurer::new(
        options,
        Target::host().with_threads(1),
        cranelift(),
        Some(worker()),
    )
    .expect("valid options and a worker command")
}

/// The default schedule of `text`'s workload.
fn candidate(text: &str) -> MeasureInput {
    let workload: Workload = text.parse().expect("a workload");
    let program = workload.program(&Default::default()).expect("a program");
    let nest = lower(&Schedule::new(&program)).expect("the default schedule lowers");
    MeasureInput::new(program, nest, workload.flops())
}

/// The register-tiled matmul recipe (packed B, accumulator tile, FMA, unrolled rows).
fn tiled_matmul(m: i64, n: i64, k: i64) -> MeasureInput {
    let params = MatmulParams {
        m,
        n,
        k,
        transpose_b: false,
    };
    let schedule = register_tiled_matmul(params, MatmulTiling::default()).expect("the recipe");
    let nest = lower(&schedule).expect("the recipe lowers");
    MeasureInput::new(
        schedule.program().clone(),
        nest,
        Workload::Matmul(params).flops(),
    )
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

/// `nest` with every store of a constant to an output storing `value` instead.
fn with_output_constant(mut nest: LoopNest, value: f32) -> LoopNest {
    let outputs = nest.outputs.clone();
    let mut changed = 0;
    edit_stmts(&mut nest.body, &mut |stmt| {
        if let Stmt::Store {
            buffer,
            value: stored @ ValueExpr::Const(_),
            ..
        } = stmt
        {
            if outputs.contains(buffer) {
                *stored = ValueExpr::f32(value);
                changed += 1;
            }
        }
    });
    assert!(
        changed > 0,
        "the nest initialises its output with a constant"
    );
    nest
}

/// `nest` with the first and second index of every computed (non-constant) store to an output
/// swapped.
fn with_transposed_store(mut nest: LoopNest) -> LoopNest {
    let outputs = nest.outputs.clone();
    let mut changed = 0;
    edit_stmts(&mut nest.body, &mut |stmt| {
        if let Stmt::Store {
            buffer,
            indices,
            value,
        } = stmt
        {
            if outputs.contains(buffer) && !matches!(value, ValueExpr::Const(_)) {
                indices.swap(0, 1);
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

/// `nest` with its outermost loop one iteration short.
fn with_short_outer_loop(mut nest: LoopNest) -> LoopNest {
    let mut shortened = false;
    edit_stmts(&mut nest.body, &mut |stmt| {
        if let (Stmt::For(body), false) = (stmt, shortened) {
            body.extent -= 1;
            shortened = true;
        }
    });
    assert!(shortened, "the nest has a loop");
    nest
}

#[test]
fn good_kernels_are_checked_and_timed_by_one_reused_worker() {
    let mut measurer = measurer(MeasureOptions::quick());
    let results = measurer.measure(&[
        candidate("matmul:m=33,n=20,k=17"),
        tiled_matmul(24, 40, 19),
        candidate("conv2d:n=1,ic=3,h=9,w=7,oc=5,kh=3,kw=3,stride=2,pad=1"),
    ]);
    for result in &results {
        assert_ok(result);
    }
    // Small programs are checked whole.
    assert_eq!(results[0].checked_elements, 33 * 20);
    assert_eq!(results[1].checked_elements, 24 * 40);
    assert_eq!(measurer.worker_starts(), 1);
    // The reference of a program is computed once.
    let again = measurer.measure_one(&candidate("matmul:m=33,n=20,k=17"));
    assert_ok(&again);
    assert_eq!(again.reference_ms, 0.0);
}

#[test]
fn a_large_program_is_checked_on_a_sample_of_points() {
    let mut measurer = measurer(MeasureOptions::quick());
    // 160 * 150 * 100 = 2.4 million reduction points, over the whole-output threshold.
    let result = measurer.measure_one(&tiled_matmul(160, 150, 100));
    assert_ok(&result);
    assert!(
        (8..=300).contains(&result.checked_elements),
        "{}",
        result.checked_elements
    );
}

#[test]
fn a_crashing_candidate_is_a_runtime_error_and_the_next_one_runs() {
    let mut measurer = measurer(MeasureOptions::quick());
    let good = candidate("matmul:m=8,n=12,k=5");
    let results = measurer.measure(&[
        good.clone().with_fault(Fault::Segfault),
        good.clone(),
        good.clone().with_fault(Fault::Abort),
        good.clone().with_fault(Fault::IllegalInstruction),
        good.clone(),
    ]);
    assert_error(
        &results[0],
        MeasureErrorKind::RuntimeError,
        &["worker died", "SIGSEGV", "matmul"],
    );
    assert_ok(&results[1]);
    assert_error(&results[2], MeasureErrorKind::RuntimeError, &["SIGABRT"]);
    assert_error(&results[3], MeasureErrorKind::RuntimeError, &["SIGILL"]);
    assert_ok(&results[4]);
    // One start, and a restart after each crash.
    assert_eq!(measurer.worker_starts(), 4);
}

#[test]
fn a_hanging_candidate_times_out_and_the_next_one_runs() {
    let timeout = Duration::from_millis(800);
    let mut measurer = measurer(MeasureOptions::quick().with_timeout(timeout));
    let good = candidate("matmul:m=8,n=12,k=5");
    let start = Instant::now();
    let results = measurer.measure(&[good.clone().with_fault(Fault::Hang), good]);
    assert_error(
        &results[0],
        MeasureErrorKind::Timeout,
        &["worker was killed"],
    );
    // The timeout, the parent's grace (0.5 s + 10%) and slack for a loaded machine.
    assert!(
        results[0].total_ms < timeout.as_secs_f64() * 1e3 + 600.0 + 1500.0,
        "{} ms",
        results[0].total_ms
    );
    assert!(results[0].total_ms >= timeout.as_secs_f64() * 1e3);
    assert_ok(&results[1]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_changed_constant_is_a_wrong_answer_naming_the_element() {
    let good = candidate("matmul:m=6,n=7,k=5");
    let wrong = MeasureInput::new(
        good.program.clone(),
        with_output_constant(good.nest.clone(), 0.5),
        good.flops,
    );
    let results = measurer(MeasureOptions::quick()).measure(&[wrong, good]);
    assert_error(
        &results[0],
        MeasureErrorKind::WrongAnswer,
        &["output `C` element 0 at [0, 0]", "the reference says"],
    );
    assert!(results[0].compile_ms.is_some());
    assert_ok(&results[1]);
}

#[test]
fn a_transposed_store_is_a_wrong_answer() {
    let good = candidate("matmul:m=9,n=9,k=4");
    let wrong = MeasureInput::new(
        good.program.clone(),
        with_transposed_store(good.nest.clone()),
        good.flops,
    );
    let result = measurer(MeasureOptions::quick()).measure_one(&wrong);
    assert_error(
        &result,
        MeasureErrorKind::WrongAnswer,
        &["output `C` element"],
    );
}

#[test]
fn an_unwritten_row_is_a_wrong_answer_whole_or_sampled() {
    let good = candidate("matmul:m=10,n=6,k=3");
    let short = MeasureInput::new(
        good.program.clone(),
        with_short_outer_loop(good.nest.clone()),
        good.flops,
    );
    for check in [CheckMode::Full, CheckMode::Sampled { points: 3 }] {
        let result = measurer(MeasureOptions::quick().with_check(check)).measure_one(&short);
        // The first element of the last row is the first the kernel never wrote.
        assert_error(
            &result,
            MeasureErrorKind::WrongAnswer,
            &["element 54 at [9, 0] is NaN"],
        );
    }
}

#[test]
fn unverified_unproven_or_mismatched_nests_are_invalid_configs() {
    let good = candidate("matmul:m=4,n=4,k=4");
    let mut out_of_bounds = good.nest.clone();
    let outputs = out_of_bounds.outputs.clone();
    edit_stmts(&mut out_of_bounds.body, &mut |stmt| {
        if let Stmt::Store {
            buffer, indices, ..
        } = stmt
        {
            if outputs.contains(buffer) {
                indices[0] = &indices[0] + 1;
            }
        }
    });
    let mut stores_to_input = good.nest.clone();
    let input = stores_to_input.inputs[0];
    edit_stmts(&mut stores_to_input.body, &mut |stmt| {
        if let Stmt::Store { buffer, .. } = stmt {
            *buffer = input;
        }
    });
    let other = candidate("matmul:m=4,n=4,k=5");
    let results = measurer(MeasureOptions::quick()).measure(&[
        MeasureInput::new(good.program.clone(), out_of_bounds, good.flops),
        MeasureInput::new(good.program.clone(), stores_to_input, good.flops),
        MeasureInput::new(good.program.clone(), other.nest, good.flops),
    ]);
    // `C[i + 1, j]` is out of bounds only on the last row: the verifier cannot reject it, the
    // measurer refuses to run what it cannot prove.
    assert_error(
        &results[0],
        MeasureErrorKind::InvalidConfig,
        &["not proven in bounds"],
    );
    assert_error(
        &results[1],
        MeasureErrorKind::InvalidConfig,
        &["does not verify"],
    );
    assert_error(&results[2], MeasureErrorKind::InvalidConfig, &["[4, 5]"]);
}

#[test]
fn a_compile_error_is_reported_with_its_message() {
    let mut target = Target::host();
    target.arch = "riscv64".to_string();
    let mut measurer = Measurer::new(MeasureOptions::quick(), target, cranelift(), Some(worker()))
        .expect("valid options");
    let result = measurer.measure_one(&candidate("matmul:m=4,n=4,k=4"));
    assert_error(&result, MeasureErrorKind::CompileError, &["riscv64"]);
    assert_eq!(result.compile_ms, None);
}

#[test]
fn in_process_measurement_works_and_refuses_faults() {
    let options = MeasureOptions::quick().with_isolation(Isolation::InProcess);
    let mut measurer = Measurer::new(options, Target::host(), cranelift(), None)
        .expect("in-process needs no worker");
    let good = candidate("matmul:m=12,n=8,k=8");
    let results = measurer.measure(&[good.clone(), good.with_fault(Fault::Segfault)]);
    assert_ok(&results[0]);
    assert_error(
        &results[1],
        MeasureErrorKind::InvalidConfig,
        &[FAULT_INJECTION_ENV],
    );
    assert_eq!(measurer.worker_starts(), 0);
}

#[test]
fn a_worker_without_the_variable_refuses_faults() {
    let command = WorkerCommand::new(env!("CARGO_BIN_EXE_looptune-jit-worker"));
    let mut measurer = Measurer::new(
        MeasureOptions::quick(),
        Target::host(),
        cranelift(),
        Some(command),
    )
    .expect("valid");
    let result = measurer.measure_one(&candidate("matmul:m=4,n=4,k=4").with_fault(Fault::Abort));
    assert_error(
        &result,
        MeasureErrorKind::InvalidConfig,
        &[FAULT_INJECTION_ENV],
    );
}

#[test]
fn cache_flush_and_cooldown_are_honoured() {
    let options = MeasureOptions {
        flush_cache: true,
        cooldown: Duration::from_millis(150),
        ..MeasureOptions::quick()
    };
    let mut measurer = measurer(options);
    let good = candidate("matmul:m=16,n=16,k=16");
    let start = Instant::now();
    let results = measurer.measure(&[good.clone(), good]);
    assert_ok(&results[0]);
    assert_ok(&results[1]);
    // With a flush the initial `number` is kept.
    assert_eq!(results[0].outcome.as_ref().map(|costs| costs.number), Ok(1));
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[test]
fn a_missing_worker_program_is_reported_not_hidden() {
    let command = WorkerCommand::new("/nonexistent/looptune-worker");
    let mut measurer = Measurer::new(
        MeasureOptions::quick(),
        Target::host(),
        cranelift(),
        Some(command),
    )
    .expect("valid");
    assert!(matches!(
        measurer.start_worker(),
        Err(WorkerError::Spawn { .. })
    ));
    let result = measurer.measure_one(&candidate("matmul:m=4,n=4,k=4"));
    // A worker that cannot start is not the kernel's fault: the record is retried on resume.
    assert_error(
        &result,
        MeasureErrorKind::Environment,
        &["cannot start measurement worker `/nonexistent/looptune-worker`"],
    );
}

#[test]
fn measurer_options_are_checked_when_it_is_created() {
    assert!(matches!(
        Measurer::new(MeasureOptions::quick(), Target::host(), cranelift(), None),
        Err(MeasurerError::NoWorkerCommand)
    ));
    let options = MeasureOptions {
        number: 0,
        ..MeasureOptions::quick()
    };
    assert!(matches!(
        Measurer::new(options, Target::host(), cranelift(), Some(worker())),
        Err(MeasurerError::Options(OptionsError::ZeroCount {
            option: "number",
            ..
        }))
    ));
}

#[test]
fn a_kernel_too_slow_for_the_timeout_is_stopped_by_the_worker_itself() {
    // The default schedule of a 128^3 matmul takes tens of milliseconds per call; fifty
    // repeats of it cannot fit in 300 ms, which the worker sees after the checked call.
    let options = MeasureOptions {
        repeat: 50,
        ..MeasureOptions::quick().with_timeout(Duration::from_millis(300))
    };
    let mut measurer = measurer(options);
    let results = measurer.measure(&[
        candidate("matmul:m=128,n=128,k=128"),
        candidate("matmul:m=4,n=4,k=4"),
    ]);
    assert_error(
        &results[0],
        MeasureErrorKind::Timeout,
        &["timeout of 0.30 s"],
    );
    let message = &results[0].outcome.as_ref().unwrap_err().message;
    assert!(!message.contains("killed"), "{message}");
    assert_ok(&results[1]);
    // The worker replied and lives on.
    assert_eq!(measurer.worker_starts(), 1);
}

/// The backend these tests measure with.
fn cranelift() -> std::sync::Arc<dyn looptune_runtime::Backend> {
    std::sync::Arc::new(looptune_jit::CraneliftBackend::new())
}
