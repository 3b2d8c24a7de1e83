//! Tests of the model-guided tuner against a made-up machine (no measurement): proposals are
//! new, deterministic for a seed, and find fast configs sooner than random sampling.

use super::*;
use crate::tuner::RandomTuner;
use looptune_ir::Workload;
use looptune_space::KnobValue;
use std::collections::HashSet;

fn task() -> Task {
    Task::new("matmul:m=512,n=512,k=512".parse().expect("parses")).expect("builds")
}

/// A made-up machine: fast when the register tile has about 48 elements, the `k` unroll is
/// long, B is packed, the loops run serially and the column panels are outside; configs with a
/// one-row tile "fail". Several knobs matter, so a few random batches rarely hit the best.
fn synthetic_gflops(config: &Config) -> Option<f64> {
    let inner = |name: &str| match config.value(name) {
        Some(KnobValue::Split(parts)) => *parts.last().unwrap_or(&1) as f64,
        _ => 1.0,
    };
    let choice = |name: &str| match config.value(name) {
        Some(KnobValue::Choice(value)) => *value as f64,
        _ => 0.0,
    };
    if inner("tile_i") == 1.0 {
        return None;
    }
    let tile = inner("tile_i") * inner("tile_j");
    let fit = (-((tile.log2() - 48f64.log2()).powi(2)) * 2.0).exp();
    let columns_outside =
        matches!(config.value("order"), Some(KnobValue::Reorder(order)) if order[..] == [1, 0]);
    Some(
        10.0 * fit
            + inner("tile_k").log2()
            + 2.0 * choice("pack_b")
            + 2.0 * (1.0 - choice("parallel"))
            + f64::from(u8::from(columns_outside)),
    )
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
fn annealing_lowers_each_config_once_and_reuses_its_features() {
    let task = task();
    let mut tuner = XgbTuner::new(&task, small_options(), 5).expect("options valid");
    drive(&mut tuner, 5);
    let stats = tuner.stats().clone();
    assert!(stats.rounds >= 3, "{stats:?}");
    // Chains revisit configs from round to round: most scores come from the cache.
    assert!(
        stats.extracted > 0 && stats.extracted * 2 < stats.scored,
        "{stats:?}"
    );
    // Each config is lowered once: by annealing (counted in `extracted`) or, for a measured
    // config annealing never scored (a random one), by `update`.
    let cached = tuner.feature_cache.len();
    assert!(
        cached >= stats.extracted && cached <= stats.extracted + tuner.measured.len(),
        "{cached} rows cached, {stats:?}, {} measured",
        tuner.measured.len()
    );
    // A cached row is the row extraction gives.
    for (&index, row) in tuner.feature_cache.iter().take(200) {
        let config = task.space().get(index).expect("a config of the space");
        assert_eq!(
            row.as_ref(),
            tuner.spec.extract(&task, &config).ok().as_ref()
        );
    }
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

/// Records of `workload` measured on the synthetic machine, for `configs` sampled configs (the
/// failing ones as error records), as a log would hold them.
fn synthetic_records(workload: &str, configs: usize, seed: u64) -> Vec<looptune_log::Record> {
    use looptune_log::{Record, RecordContext, TargetFingerprint};
    use looptune_runtime::{Costs, MeasureError, MeasureErrorKind, MeasureResult, Target};
    let other = Task::new(workload.parse().expect("parses")).expect("builds");
    let fingerprint = TargetFingerprint::from_parts(&Target::host(), "cranelift", "test");
    let context = RecordContext::new(other.workload(), fingerprint, "random");
    other
        .space()
        .sample(seed)
        .take(configs)
        .map(|config| {
            let result = MeasureResult::known(match synthetic_gflops(&config) {
                Some(gflops) => Ok(Costs::at_throughput(gflops, other.flops())),
                None => Err(MeasureError::new(
                    MeasureErrorKind::RuntimeError,
                    "synthetic",
                )),
            });
            let now = std::time::SystemTime::now();
            Record::from_measurement(
                &context,
                config.index(),
                config.to_values(),
                &result,
                now,
                now,
            )
        })
        .collect()
}

fn fingerprint() -> looptune_log::TargetFingerprint {
    looptune_log::TargetFingerprint::from_parts(
        &looptune_runtime::Target::host(),
        "cranelift",
        "test",
    )
}

#[test]
fn transfer_uses_other_shapes_of_the_operator_only() {
    let task = task();
    let mut records = synthetic_records("matmul:m=256,n=256,k=256", 40, 1);
    records.extend(synthetic_records("matmul:m=128,n=384,k=64", 30, 2));
    // The task's own records, another operator and another target are not transferred.
    records.extend(synthetic_records("matmul:m=512,n=512,k=512", 20, 3));
    records.extend(synthetic_records("batch_matmul:b=2,m=64,n=64,k=64", 20, 4));
    let mut elsewhere = synthetic_records("matmul:m=64,n=64,k=64", 10, 5);
    for record in &mut elsewhere {
        record.target.cpu_model = "another CPU".to_string();
    }
    records.extend(elsewhere);
    let set = TransferSet::from_records(&task, &records, &fingerprint());
    let key = |text: &str| text.parse::<Workload>().expect("parses").to_string();
    assert_eq!(
        set.workloads(),
        [
            (key("matmul:m=128,n=384,k=64"), 30),
            (key("matmul:m=256,n=256,k=256"), 40)
        ]
    );
    assert_eq!(set.len(), 70);
    assert_eq!(set.skipped(), 0);
    let knob_columns = FeatureSpec::for_task(&task).knob_columns();
    assert!(!knob_columns.is_empty());
    for row in &set.rows {
        assert!(knob_columns
            .clone()
            .all(|column| row[column] == looptune_cost::MISSING));
        assert!(row[..knob_columns.start].iter().all(|&value| value >= 0.0));
    }
}

#[test]
fn transfer_proposes_from_the_model_before_any_measurement_and_finds_fast_configs_sooner() {
    let task = task();
    let records = synthetic_records("matmul:m=256,n=256,k=256", 200, 7);
    let set = TransferSet::from_records(&task, &records, &fingerprint());
    assert_eq!(set.len(), 200);
    let mut with_wins = 0;
    for seed in 0..5 {
        let mut with = XgbTuner::new(&task, small_options(), seed)
            .expect("options valid")
            .with_transfer(set.clone());
        let first = with.next_batch(8, &|_| false);
        assert_eq!(first.len(), 8);
        assert!(with.model_in_use());
        assert_eq!(with.stats().transfer_rows, 200);
        assert_eq!(
            with.stats().rounds,
            1,
            "the first batch came from the annealer"
        );
        let mut with = XgbTuner::new(&task, small_options(), seed)
            .expect("options valid")
            .with_transfer(set.clone());
        let mut without = XgbTuner::new(&task, small_options(), seed).expect("options valid");
        // The first batch: chosen by the transferred model, or at random.
        let with_best = *drive(&mut with, 1).1.last().expect("ran");
        let without_best = *drive(&mut without, 1).1.last().expect("ran");
        eprintln!("seed {seed}: with transfer {with_best:.2}, without {without_best:.2}");
        assert!(
            with_best >= without_best,
            "seed {seed}: {with_best} < {without_best}"
        );
        if with_best > without_best {
            with_wins += 1;
        }
    }
    assert!(with_wins >= 3, "transfer ahead on {with_wins} of 5 seeds");
}

/// Knob values a set of configs covers: distinct (knob, value) pairs.
fn coverage(configs: &[Config]) -> usize {
    configs
        .iter()
        .flat_map(|config| config.choices().iter().copied().enumerate())
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn the_first_batch_from_transfer_alone_is_picked_for_diversity_among_the_best_scores() {
    let task = task();
    let records = synthetic_records("matmul:m=256,n=256,k=256", 200, 7);
    let set = TransferSet::from_records(&task, &records, &fingerprint());
    let mut wider = 0;
    for seed in 0..5 {
        // The plan the first batch is drawn from, best first.
        let mut planned = XgbTuner::new(&task, small_options(), seed)
            .expect("options valid")
            .with_transfer(set.clone());
        planned.refit();
        planned.anneal(&|_| false);
        let plan: Vec<Config> = planned.plan.iter().rev().cloned().collect();
        let mut tuner = XgbTuner::new(&task, small_options(), seed)
            .expect("options valid")
            .with_transfer(set.clone());
        let batch = tuner.next_batch(8, &|_| false);
        assert_eq!(batch.len(), 8);
        // At most one random config (5% of 8), at the end; the others from the plan's best 16.
        let picks = &batch[..7];
        let best: HashSet<u128> = plan.iter().take(16).map(Config::index).collect();
        assert!(
            picks.iter().all(|config| best.contains(&config.index())),
            "seed {seed}: a pick from outside the plan's best 16"
        );
        assert_eq!(picks[0].index(), plan[0].index(), "the best score first");
        let (picked, top) = (coverage(picks), coverage(&plan[..7]));
        assert!(picked >= top, "seed {seed}: {picked} < {top} knob values");
        if picked > top {
            wider += 1;
        }
        // Later batches take the plan's best again.
        let trials: Vec<Trial> = batch
            .into_iter()
            .map(|config| Trial {
                gflops: synthetic_gflops(&config),
                config,
            })
            .collect();
        tuner.update(&trials);
        assert_eq!(tuner.next_batch(8, &|_| false).len(), 8);
    }
    assert!(wider >= 3, "a wider first batch on {wider} of 5 seeds");
}
