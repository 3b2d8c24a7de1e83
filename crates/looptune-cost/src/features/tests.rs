//! Tests of feature extraction: fixed length, and values that mean what they say.

use super::*;
use looptune_space::{KnobValue, Task};
use std::collections::HashSet;

fn task(text: &str) -> Task {
    Task::new(text.parse().expect("workload parses")).expect("task builds")
}

const MATMUL_512: &str = "matmul:m=512,n=512,k=512";
const RESNET_C2: &str = "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1";

fn assert_fixed_length(task: &Task, configs: impl Iterator<Item = Config>) -> usize {
    let spec = FeatureSpec::for_task(task);
    assert_eq!(spec.names().len(), spec.len());
    let mut count = 0;
    for config in configs {
        let features = spec.extract(task, &config).expect("every config lowers");
        assert_eq!(features.len(), spec.len(), "config {config}");
        assert!(
            features
                .iter()
                .all(|value| value.is_finite() && *value >= 0.0),
            "config {config}: {features:?}"
        );
        count += 1;
    }
    count
}

#[test]
fn every_config_of_a_small_matmul_has_the_same_length() {
    let task = task("matmul:m=8,n=12,k=6");
    let count = assert_fixed_length(&task, task.space().iter());
    assert!(count > 10, "only {count} configs");
}

#[test]
fn every_config_of_a_small_conv_has_the_same_length() {
    let task = task("conv2d:n=1,ic=3,h=6,w=6,oc=8,kh=3,kw=3,stride=1,pad=1");
    let count = assert_fixed_length(&task, task.space().sample(3).take(400));
    assert!(count > 10, "only {count} configs");
}

#[test]
fn sampled_configs_of_the_reference_workloads_have_the_same_length() {
    for text in [
        MATMUL_512,
        RESNET_C2,
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
    ] {
        let task = task(text);
        let count = assert_fixed_length(&task, task.space().sample(11).take(150));
        assert_eq!(count, 150, "{text}");
    }
}

#[test]
fn the_main_chain_is_the_reduction_and_its_strides_are_the_access_pattern() {
    let task = task(MATMUL_512);
    let config = task.fallback_config().expect("fallback exists");
    let nest = task.lower(&config).expect("lowers");
    let found = scan(&nest);
    // The main store runs m * n * k times: the multiply-accumulate.
    assert_eq!(found.best_iterations, 512.0 * 512.0 * 512.0);
    let arith = arithmetic(found.main_value.expect("a main store"));
    assert_eq!(arith.fma + arith.mul, 1, "{arith:?}");
    // Somewhere in the chain, one loop walks A's rows contiguously: the reduction loop of a
    // row-major A (stride 1 element), unless A is read with the reduction outermost.
    let accesses = main_accesses(&found);
    assert!(accesses.len() >= 3, "store, accumulator and two operands");
    let strides: Vec<i64> = found
        .chain
        .iter()
        .map(|looped| {
            let a = accesses
                .iter()
                .find(|access| nest.buffer(access.buffer).name == "A")
                .expect("A is read by the main store");
            a.indices
                .iter()
                .zip(nest.buffer(a.buffer).strides())
                .map(|(index, stride)| coefficient(index, looped.var) * stride)
                .sum()
        })
        .collect();
    assert!(
        strides.contains(&1),
        "strides of A along the chain: {strides:?}"
    );
    assert!(
        strides.iter().any(|&s| s >= 512),
        "strides of A: {strides:?}"
    );
}

#[test]
fn features_depend_on_the_config() {
    let task = task(MATMUL_512);
    let spec = FeatureSpec::for_task(&task);
    let configs: Vec<Config> = task.space().sample(5).take(20).collect();
    let rows: Vec<Vec<f32>> = configs
        .iter()
        .map(|config| spec.extract(&task, config).expect("lowers"))
        .collect();
    let distinct: HashSet<Vec<u32>> = rows
        .iter()
        .map(|row| row.iter().map(|value| value.to_bits()).collect())
        .collect();
    assert_eq!(distinct.len(), rows.len());
    // The loop part alone (without the knob choices) differs too.
    let loop_part = spec.len() - spec.knobs;
    let distinct_loops: HashSet<Vec<u32>> = rows
        .iter()
        .map(|row| {
            row[..loop_part]
                .iter()
                .map(|value| value.to_bits())
                .collect()
        })
        .collect();
    assert!(
        distinct_loops.len() > rows.len() / 2,
        "{}",
        distinct_loops.len()
    );
}

#[test]
fn knob_choices_of_another_space_are_refused() {
    let task = task("matmul:m=8,n=12,k=6");
    let spec = FeatureSpec::for_task(&task);
    let config = task.fallback_config().expect("fallback exists");
    let nest = task.lower(&config).expect("lowers");
    let error = spec
        .extract_nest(&nest, &[0, 1], &mut Vec::new())
        .expect_err("two choices for a space of more knobs");
    assert!(
        matches!(error, CostError::KnobCount { found: 2, .. }),
        "{error}"
    );
}

#[test]
fn a_chain_longer_than_the_slots_keeps_its_innermost_loops() {
    let task = task(MATMUL_512);
    let config = task.fallback_config().expect("fallback exists");
    let nest = task.lower(&config).expect("lowers");
    let knobs = config.choices().len();
    let narrow = FeatureSpec::with_slots(1, 2, knobs, VectorShape::AVX2);
    let mut features = Vec::new();
    narrow
        .extract_nest(&nest, config.choices(), &mut features)
        .expect("extracts");
    assert_eq!(features.len(), narrow.len());
    let innermost = scan(&nest).chain.last().copied().expect("a loop");
    assert_eq!(features[0], (1.0 + innermost.extent as f64).log2() as f32);
}

/// The fit features (raw, before scaling) of matmul 512^3 under `values`, on `shape`.
fn fit_of(values: &[(&str, KnobValue)], shape: VectorShape) -> [f64; fit::COUNT] {
    let workload = MATMUL_512.parse().expect("workload parses");
    let task = Task::for_shape(workload, shape).expect("task builds");
    let values: Vec<(String, KnobValue)> = values
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    let config = task
        .space()
        .from_values(&values)
        .expect("a point of the space");
    let nest = task.lower(&config).expect("lowers");
    let found = scan(&nest);
    let accesses = main_accesses(&found);
    fit::fit_features(
        &nest,
        &found.chain,
        &accesses,
        found.main_alloc_depth,
        found.best_iterations,
        &shape,
    )
}

fn matmul_values(rows: i64, columns: i64, order: usize) -> Vec<(&'static str, KnobValue)> {
    vec![
        (
            "tile_i",
            KnobValue::Split(vec![(512 / rows + 1) / 2, 2, rows]),
        ),
        ("tile_j", KnobValue::Split(vec![512 / columns, columns])),
        ("tile_k", KnobValue::Split(vec![512, 1])),
        ("order", KnobValue::Reorder(vec![order, 1 - order])),
        ("pack_b", KnobValue::Choice(0)),
        ("parallel", KnobValue::Choice(0)),
    ]
}

#[test]
fn the_fit_features_count_the_register_tile_against_the_target() {
    // A 2 x 32 register tile: 8 accumulator vectors of 8 lanes, 4 vectors of B and one
    // broadcast of A, of AVX2's 16 registers; no spill, full lanes, one reduction loop (k)
    // that keeps the accumulators in registers.
    let avx2 = fit_of(&matmul_values(2, 32, 0), VectorShape::AVX2);
    let names = fit::NAMES;
    let value = |features: &[f64; fit::COUNT], name: &str| {
        features[names
            .iter()
            .position(|n| *n == name)
            .expect("a fit feature")]
    };
    assert_eq!(value(&avx2, "fit.accumulator_registers"), 8.0 / 16.0);
    assert_eq!(value(&avx2, "fit.operand_registers"), 5.0 / 16.0);
    assert_eq!(value(&avx2, "fit.spilled_registers"), 0.0);
    assert_eq!(value(&avx2, "fit.tile_repeats"), 1.0);
    assert_eq!(value(&avx2, "fit.lane_fill"), 1.0);
    assert_eq!(value(&avx2, "fit.vectors_per_row"), 4.0);
    assert_eq!(value(&avx2, "fit.gathers"), 0.0);
    assert_eq!(value(&avx2, "fit.reduction_loops"), 1.0);
    assert_eq!(value(&avx2, "fit.accumulator_reload_share"), 1.0 / 512.0);
    // On 4-lane vectors, the tile of half the columns fills the registers alike: the features
    // are ratios to the target, so they mean the same on both.
    let narrow = fit_of(&matmul_values(2, 16, 0), VectorShape::CRANELIFT);
    for name in [
        "fit.accumulator_registers",
        "fit.operand_registers",
        "fit.spilled_registers",
        "fit.lane_fill",
        "fit.vectors_per_row",
    ] {
        assert_eq!(value(&narrow, name), value(&avx2, name), "{name}");
    }
    // A 6 x 16 tile: 12 accumulators, 2 vectors of B and a broadcast fill 15 registers.
    let tall = fit_of(&matmul_values(6, 16, 0), VectorShape::AVX2);
    assert_eq!(value(&tall, "fit.accumulator_registers"), 12.0 / 16.0);
    assert_eq!(value(&tall, "fit.operand_registers"), 3.0 / 16.0);
    assert_eq!(value(&tall, "fit.spilled_registers"), 0.0);
    // Caches: a bigger tile moves fewer bytes per multiply-add into L1.
    assert!(
        value(&tall, "fit.l1_bytes_per_iteration") < value(&avx2, "fit.l1_bytes_per_iteration"),
        "{tall:?} vs {avx2:?}"
    );
}
