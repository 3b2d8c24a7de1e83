//! Tests of the model-guided tuner against a made-up machine (no measurement): proposals are
//! new, deterministic for a seed, and find fast configs sooner than random sampling.

use super::*;
use looptune_space::KnobValue;

fn task() -> Task {
    Task::new("matmul:m=512,n=512,k=512".parse().expect("parses")).expect("builds")
}

/// A made-up machine: fast when the register tile has about 32 elements and the `k` unroll is
/// long; configs with a one-row tile "fail".
fn synthetic_gflops(config: &Config) -> Option<f64> {
    let inner = |name: &str| match config.value(name) {
        Some(KnobValue::Split(parts)) => *parts.last().unwrap_or(&1) as f64,
        _ => 1.0,
    };
    if inner("tile_i") == 1.0 {
        return None;
    }
    let tile = inner("tile_i") * inner("tile_j");
    let fit = (-((tile.log2() - 5.0).powi(2)) / 2.0).exp();
    Some(10.0 * fit + inner("tile_k").log2())
}

fn small_options() -> XgbTunerOptions {
    XgbTunerOptions {
        plan_size: 16,
        anneal: AnnealOptions::with_steps(16, 40, 10),
        ..XgbTunerOptions::default()
    }
}

/// Runs `batches` batches of 8 through `tuner` with the synthetic machine; returns every
/// proposal in order and the best throughput after each batch.
fn drive(tuner: &mut dyn Tuner, batches: usize) -> (Vec<u128>, Vec<f64>) {
    let mut measured: HashSet<u128> = HashSet::new();
    let mut order = Vec::new();
    let mut best = 0.0f64;
    let mut curve = Vec::new();
    for _ in 0..batches {
        let batch = tuner.next_batch(8, &|index| measured.contains(&index));
        let trials: Vec<Trial> = batch
            .into_iter()
            .map(|config| {
                let gflops = synthetic_gflops(&config);
                Trial { config, gflops }
            })
            .collect();
        for trial in &trials {
            assert!(
                measured.insert(trial.config.index()),
                "config {} proposed twice",
                trial.config
            );
            order.push(trial.config.index());
            best = best.max(trial.gflops.unwrap_or(0.0));
        }
        curve.push(best);
        tuner.update(&trials);
    }
    (order, curve)
}

#[test]
fn the_same_seed_gives_the_same_proposals() {
    let task = task();
    let run = |seed| {
        let mut tuner = XgbTuner::new(&task, small_options(), seed).expect("options valid");
        drive(&mut tuner, 4).0
    };
    let first = run(3);
    assert_eq!(first.len(), 32);
    assert_eq!(first, run(3));
    assert_ne!(first, run(4));
}

#[test]
fn the_model_takes_over_after_the_first_batch() {
    let task = task();
    let mut tuner = XgbTuner::new(&task, small_options(), 1).expect("options valid");
    assert!(!tuner.model_in_use());
    drive(&mut tuner, 1);
    // The refit happens when the next batch is asked for.
    let batch = tuner.next_batch(8, &|_| false);
    assert_eq!(batch.len(), 8);
    assert!(tuner.model_in_use(), "{:?}", tuner.stats());
    assert_eq!(tuner.stats().fits, 1);
    assert_eq!(tuner.stats().rounds, 1);
    assert!(tuner.stats().scored > 16, "{:?}", tuner.stats());
}

#[test]
fn the_model_guided_tuner_beats_random_on_a_synthetic_machine() {
    let task = task();
    let batches = 8;
    let mut xgb_final = Vec::new();
    let mut random_final = Vec::new();
    for seed in 0..3 {
        let mut xgb = XgbTuner::new(&task, small_options(), seed).expect("options valid");
        xgb_final.push(*drive(&mut xgb, batches).1.last().expect("batches ran"));
        let mut random = RandomTuner::new(task.space(), seed);
        random_final.push(*drive(&mut random, batches).1.last().expect("batches ran"));
    }
    let sum = |values: &[f64]| values.iter().sum::<f64>();
    assert!(
        sum(&xgb_final) > sum(&random_final),
        "xgb {xgb_final:?} random {random_final:?}"
    );
}

#[test]
fn bad_model_options_are_refused() {
    let task = task();
    let mut options = small_options();
    options.model.rounds = 0;
    let error = XgbTuner::new(&task, options, 0).expect_err("zero rounds");
    assert!(error.to_string().contains("rounds"), "{error}");
}
