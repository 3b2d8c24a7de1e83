//! Tests of the cost model: it ranks held-out configs better than chance, deterministically.

use super::*;
use crate::features::FeatureSpec;
use looptune_ir::random::SplitMix64;
use looptune_space::{Config, KnobValue, Task};

/// Rows of `columns` features in `0..4` and a throughput that depends on a few of them
/// non-linearly, with a failing corner (zero throughput), from one seed.
fn synthetic(seed: u64, rows: usize, columns: usize) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut random = SplitMix64::new(seed);
    let mut features = Vec::with_capacity(rows);
    let mut throughput = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row: Vec<f32> = (0..columns)
            .map(|_| 2.0 * (random.unit_f32() + 1.0))
            .collect();
        let x: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let value = if x[3] > 3.6 {
            0.0
        } else {
            10.0 * (-(x[0] - 2.0).powi(2)).exp() + 3.0 * x[1] * x[2] / 16.0 + x[4]
        };
        features.push(row);
        throughput.push(value);
    }
    (features, throughput)
}

fn held_out_correlation(objective: Objective) -> f64 {
    let (train_x, train_y) = synthetic(1, 300, 12);
    let (test_x, test_y) = synthetic(2, 200, 12);
    let mut model = XgbModel::new(XgbOptions::with_objective(objective)).expect("options valid");
    model.fit(&train_x, &train_y).expect("fits");
    let predicted = model.predict(&test_x).expect("predicts");
    let rho = spearman(&predicted, &test_y);
    eprintln!("held-out Spearman, synthetic rows, {objective:?}: {rho:.3}");
    rho
}

#[test]
fn the_ranking_model_orders_held_out_rows_well() {
    let rho = held_out_correlation(Objective::RankPairwise);
    assert!(rho > 0.8, "Spearman {rho}");
}

#[test]
fn the_regression_model_orders_held_out_rows_well() {
    let rho = held_out_correlation(Objective::Regression);
    assert!(rho > 0.8, "Spearman {rho}");
}

/// A made-up machine: a matmul config is fast when its register tile is large but fits
/// (the product of the innermost split parts of `i` and `j` near 32) and its `k` block is
/// long. Only the shape of the function matters: it is a function of the config that the
/// features must let the model see.
fn synthetic_gflops(config: &Config) -> f64 {
    let inner = |name: &str| match config.value(name) {
        Some(KnobValue::Split(parts)) => *parts.last().unwrap_or(&1) as f64,
        _ => 1.0,
    };
    let tile = inner("tile_i") * inner("tile_j");
    let k_block = inner("tile_k");
    let fit = (-((tile.log2() - 5.0).powi(2)) / 4.0).exp();
    10.0 * fit + k_block.log2()
}

#[test]
fn the_model_learns_a_function_of_real_matmul_configs() {
    let task = Task::new("matmul:m=512,n=512,k=512".parse().expect("parses")).expect("builds");
    let spec = FeatureSpec::for_task(&task);
    let configs: Vec<Config> = task.space().sample(21).take(400).collect();
    let features: Vec<Vec<f32>> = configs
        .iter()
        .map(|config| spec.extract(&task, config).expect("lowers"))
        .collect();
    let throughput: Vec<f64> = configs.iter().map(synthetic_gflops).collect();
    let (train, test) = features.split_at(250);
    let (train_y, test_y) = throughput.split_at(250);
    let mut model = XgbModel::new(XgbOptions::default()).expect("options valid");
    model.fit(train, train_y).expect("fits");
    let rho = spearman(&model.predict(test).expect("predicts"), test_y);
    eprintln!("held-out Spearman, matmul 512 configs: {rho:.3}");
    assert!(rho > 0.7, "Spearman {rho}");
}

#[test]
fn the_same_data_and_seed_give_the_same_predictions() {
    let (x, y) = synthetic(3, 120, 8);
    let predict = || {
        let mut model = XgbModel::new(XgbOptions {
            subsample: 0.8,
            ..XgbOptions::default().with_seed(7)
        })
        .expect("options valid");
        model.fit(&x, &y).expect("fits");
        model.predict(&x).expect("predicts")
    };
    assert_eq!(predict(), predict());
}

#[test]
fn an_unfitted_model_scores_zero() {
    let model = XgbModel::new(XgbOptions::default()).expect("options valid");
    assert!(!model.is_fitted());
    assert_eq!(
        model.predict(&vec![vec![1.0, 2.0]; 3]).expect("predicts"),
        vec![0.0; 3]
    );
}

#[test]
fn failed_measurements_are_zero_throughput() {
    // Rows whose throughput is NaN or negative train like zero-throughput rows.
    let (x, mut y) = synthetic(4, 100, 6);
    y[0] = f64::NAN;
    y[1] = -1.0;
    let mut model =
        XgbModel::new(XgbOptions::with_objective(Objective::Regression)).expect("options valid");
    model.fit(&x, &y).expect("fits");
    assert!(model
        .predict(&x)
        .expect("predicts")
        .iter()
        .all(|v| v.is_finite()));
}

#[test]
fn rows_of_different_lengths_are_refused() {
    let mut model = XgbModel::new(XgbOptions::default()).expect("options valid");
    let error = model
        .fit(&[vec![1.0, 2.0], vec![1.0]], &[1.0, 2.0])
        .expect_err("ragged rows");
    assert!(
        matches!(
            error,
            CostError::RowLength {
                row: 1,
                expected: 2,
                found: 1
            }
        ),
        "{error}"
    );
    let error = model
        .fit(&[vec![1.0, 2.0]], &[1.0, 2.0])
        .expect_err("more targets than rows");
    assert!(
        matches!(
            error,
            CostError::TargetCount {
                features: 1,
                targets: 2
            }
        ),
        "{error}"
    );
}

#[test]
fn bad_options_are_refused_by_name() {
    let error = XgbModel::new(XgbOptions {
        rounds: 0,
        ..XgbOptions::default()
    })
    .expect_err("zero rounds");
    assert!(error.to_string().contains("`rounds` = 0"), "{error}");
    let error = XgbModel::new(XgbOptions {
        subsample: 1.5,
        ..XgbOptions::default()
    })
    .expect_err("subsample past 1");
    assert!(error.to_string().contains("`subsample` = 1.5"), "{error}");
}

#[test]
fn spearman_of_known_orders() {
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
    assert_eq!(spearman(&[1.0, 1.0, 1.0], &[3.0, 2.0, 1.0]), 0.0);
    assert_eq!(spearman(&[1.0], &[3.0]), 0.0);
}

/// Rows of another "shape": the same law as [`synthetic`] at a hundred times the throughput,
/// with the last column marked missing.
fn other_shape(seed: u64, rows: usize, columns: usize) -> (Vec<Vec<f32>>, Vec<f64>) {
    let (mut features, throughput) = synthetic(seed, rows, columns);
    for row in &mut features {
        row[columns - 1] = MISSING;
    }
    (features, throughput.iter().map(|t| 100.0 * t).collect())
}

#[test]
fn groups_of_another_scale_and_missing_columns_still_teach_the_order() {
    for objective in [Objective::RankPairwise, Objective::Regression] {
        // Ten rows of this workload alone teach little; 300 rows of another shape (other
        // scale, a column missing) in their own group teach the order.
        let (mut x, mut y) = synthetic(3, 10, 12);
        let (other_x, other_y) = other_shape(4, 300, 12);
        let own = x.len();
        x.extend(other_x);
        y.extend(other_y);
        let groups = [
            Group {
                rows: own,
                weight: 1.0,
            },
            Group {
                rows: 300,
                weight: 0.5,
            },
        ];
        let mut model = XgbModel::new(XgbOptions::with_objective(objective)).expect("options");
        model.fit_groups(&x, &y, &groups).expect("fits");
        let (test_x, test_y) = synthetic(2, 200, 12);
        let rho = spearman(&model.predict(&test_x).expect("predicts"), &test_y);
        assert!(rho > 0.7, "{objective:?}: Spearman {rho}");
    }
}

#[test]
fn groups_must_cover_the_rows() {
    let (x, y) = synthetic(3, 10, 12);
    let mut model = XgbModel::new(XgbOptions::default()).expect("options");
    let error = model
        .fit_groups(
            &x,
            &y,
            &[Group {
                rows: 4,
                weight: 1.0,
            }],
        )
        .expect_err("10 rows, groups of 4");
    assert!(matches!(
        error,
        CostError::TargetCount {
            features: 10,
            targets: 4
        }
    ));
}
