//! The JIT against the reference interpreter over random (operator, shape, legal schedule)
//! triples from `looptune_ir::random`. 500 seeds by default; `LOOPTUNE_PROPTEST_CASES=100000`
//! for a long local run. Seeds are fixed (a SplitMix64 stream from a constant), so a failure is
//! reproduced by the seed it prints; a second stream starts from the clock on every run (its
//! start printed; `LOOPTUNE_FRESH_SEED` replays one, `LOOPTUNE_FRESH_CASES` sizes it, 200 by
//! default), so that CI does not only ever re-check the same schedules.

#![forbid(unsafe_code)]

use looptune_ir::eval::{compare_with_magnitudes, magnitudes};
use looptune_ir::random::{random_case, random_inputs, FreshSeeds, SplitMix64};
use looptune_ir::{interp, lower};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};

fn cases() -> usize {
    std::env::var("LOOPTUNE_PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(500)
}

fn check_seed(seed: u64, target: &Target) -> Result<(), String> {
    let case = random_case(seed);
    check_schedule(&case.schedule, seed, &case.workload.to_string(), target)
}

/// Compiles `schedule`, runs it on inputs drawn from `seed` and compares it with the
/// interpreter; `label` names the case in a failure.
fn check_schedule(
    schedule: &looptune_ir::Schedule,
    seed: u64,
    label: &str,
    target: &Target,
) -> Result<(), String> {
    let program = schedule.program();
    let nest = lower(schedule)
        .map_err(|error| format!("seed {seed} ({}): lowering failed: {error}", label))?;
    let inputs = random_inputs(program, seed ^ 0xDA7A);
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let fresh_outputs = || -> Vec<Vec<f32>> {
        nest.outputs
            .iter()
            .map(|&buffer| vec![0.5; nest.buffer(buffer).len()])
            .collect()
    };
    let mut expected = fresh_outputs();
    {
        let mut refs: Vec<&mut [f32]> = expected.iter_mut().map(Vec::as_mut_slice).collect();
        interp::run(&nest, &input_refs, &mut refs)
            .map_err(|error| format!("seed {seed} ({}): interpreter: {error}\n{nest}", label))?;
    }
    let kernel = CraneliftBackend::new()
        .compile(&nest, target)
        .map_err(|error| format!("seed {seed} ({}): compile: {error}\n{nest}", label))?;
    let mut actual = fresh_outputs();
    {
        let mut refs: Vec<&mut [f32]> = actual.iter_mut().map(Vec::as_mut_slice).collect();
        kernel
            .call(&input_refs, &mut refs)
            .map_err(|error| format!("seed {seed}: call: {error}"))?;
    }
    // The interpreter computes expressions in f64, the JIT in f32: where terms cancel, they
    // differ on the scale of the terms (see `magnitudes`).
    let magnitudes = magnitudes(program, &input_refs)
        .map_err(|error| format!("seed {seed}: evaluator: {error}"))?;
    for ((actual, expected), magnitudes) in actual.iter().zip(&expected).zip(&magnitudes) {
        compare_with_magnitudes(actual, expected, magnitudes, 1e-4)
            .map_err(|mismatch| format!("seed {seed} ({}): {mismatch:?}\n{nest}", label))?;
    }
    Ok(())
}

#[test]
fn jit_matches_the_interpreter_on_random_schedules() {
    let target = Target::host().with_threads(2);
    let mut seeds = SplitMix64::new(0x5EED_0F17);
    let mut failures = Vec::new();
    for _ in 0..cases() {
        let seed = seeds.next_u64();
        if let Err(message) = check_seed(seed, &target) {
            failures.push(message);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed; first:\n{}",
        failures.len(),
        cases(),
        failures[0]
    );
}

#[test]
fn jit_matches_the_interpreter_on_fresh_seeds() {
    let target = Target::host().with_threads(2);
    let fresh = FreshSeeds::from_env(200);
    let (start, count) = (fresh.start, fresh.count);
    eprintln!("fresh seed stream: LOOPTUNE_FRESH_SEED={start} ({count} cases)");
    let failures: Vec<String> = fresh
        .seeds()
        .filter_map(|seed| check_seed(seed, &target).err())
        .collect();
    assert!(
        failures.is_empty(),
        "fresh stream LOOPTUNE_FRESH_SEED={start}: {} of {count} seeds failed; first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn jit_matches_the_interpreter_without_fma() {
    let target = Target::host().without_fma().with_threads(1);
    let mut seeds = SplitMix64::new(0xF3A);
    for _ in 0..50 {
        let seed = seeds.next_u64();
        check_seed(seed, &target).unwrap_or_else(|message| panic!("{message}"));
    }
}

/// Seeds that once failed, each with what it caught.
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (
        11819229880481118370,
        "an unrolled copy read a register tile past its end under a guard false for that copy",
    ),
    (
        2521307633532214008,
        "dense:m=11,n=7,k=17: the unrolled copy ji.outer = 2 stores element 8 of the 8-element \
         tile `W.packed` under `ji.inner.inner + 2 < 3 && ji.outer * 3 + ji.inner.inner + 2 < 8`, \
         false only through the range of the serial loop ji.inner.inner: compiled to a trap that \
         never runs, as an unprovable memory access is, instead of being refused",
    ),
];

#[test]
fn regression_seeds() {
    let target = Target::host().with_threads(2);
    for &(seed, caught) in REGRESSION_SEEDS {
        check_seed(seed, &target).unwrap_or_else(|message| panic!("{caught}: {message}"));
    }
}

#[test]
fn nested_unrolled_loops_past_the_budget_of_copies_compile_and_match() {
    // matmul 64^3 with its three loops unrolled would be 262,144 copies of the multiply-add;
    // the loops past the budget run as ordinary loops, and the result is the same.
    let workload: looptune_ir::Workload = "matmul:m=64,n=64,k=64".parse().expect("parses");
    let program = workload
        .program(&looptune_ir::Layout::default())
        .expect("program builds");
    let mut schedule = looptune_ir::Schedule::new(&program);
    let c = schedule.stage("C").expect("output stage");
    let mut axes = schedule.spatial_axes(c);
    axes.extend(schedule.reduce_axes(c));
    for axis in axes {
        schedule.unroll(c, axis).expect("unrolls");
    }
    let started = std::time::Instant::now();
    check_schedule(
        &schedule,
        7,
        "matmul 64^3, every loop unrolled",
        &Target::host(),
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("compiled and checked in {:.2?}", started.elapsed());
}
