//! The cost model: learns from measured configs which unmeasured ones are likely fast.
//!
//! [`CostModel`] is what search needs: fit on feature rows and their throughputs, predict a
//! score per row where a higher score means a faster config. Only the order of the scores
//! matters to the search, which is why the default objective of [`XgbModel`] is XGBoost's
//! `rank:pairwise` (AutoTVM's choice): it learns which of two configs is faster, not by how
//! much, and so does not care that throughputs of different workloads differ in scale.
//!
//! **Invariant:** the cost model sees features and throughputs, never wall-clock time, and the
//! same data with the same seed gives the same model (XGBoost runs on one thread).

use crate::error::CostError;
use std::collections::HashMap;
use xgboost_rs::{Booster, DMatrix};

/// A model of throughput over feature rows.
pub trait CostModel {
    /// Fits the model on `features` (one row per config, all of one length) and their
    /// `throughput` (GFLOP/s; failed measurements as zero). Forgets earlier fits.
    fn fit(&mut self, features: &[Vec<f32>], throughput: &[f64]) -> Result<(), CostError>;

    /// One score per row; higher means predicted faster. Before any fit, every score is zero.
    fn predict(&self, features: &[Vec<f32>]) -> Result<Vec<f64>, CostError>;

    /// Like [`predict`](Self::predict) for `rows` rows stored back to back in `flat`, which
    /// avoids one allocation per row in the annealer's inner loop.
    fn predict_flat(&self, flat: &[f32], rows: usize) -> Result<Vec<f64>, CostError>;
}

/// What XGBoost optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Objective {
    /// `rank:pairwise`: the order of configs (the default).
    RankPairwise,
    /// `reg:squarederror` on throughput divided by the best throughput of the training set.
    Regression,
}

impl Objective {
    fn xgboost_name(self) -> &'static str {
        match self {
            Objective::RankPairwise => "rank:pairwise",
            Objective::Regression => "reg:squarederror",
        }
    }
}

/// Options of [`XgbModel`]. The defaults are small trees and a few dozen rounds: the training
/// sets of a tuning run hold tens to a few thousand rows.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct XgbOptions {
    /// The objective.
    pub objective: Objective,
    /// Boosting rounds per fit (each one `Booster::update`).
    pub rounds: u32,
    /// Maximum depth of a tree.
    pub max_depth: u32,
    /// Learning rate.
    pub eta: f64,
    /// Minimum hessian weight in a leaf.
    pub min_child_weight: f64,
    /// Row subsampling per tree, in `(0, 1]`; draws from `seed`.
    pub subsample: f64,
    /// The seed of XGBoost's random choices.
    pub seed: u64,
}

/// Shallow trees that learn slowly: depth 4, learning rate 0.1, 100 rounds. A model here fits a
/// few hundred rows, mostly of other shapes; on the records looptune ships, these rank held-out
/// shapes better than depth 6, rate 0.3 and 64 rounds did (mean Spearman +0.035 and +0.029 over
/// 59 workloads of each set, docs/benchmarks.md) at about the same cost per fit.
impl Default for XgbOptions {
    fn default() -> XgbOptions {
        XgbOptions {
            objective: Objective::RankPairwise,
            rounds: 100,
            max_depth: 4,
            eta: 0.1,
            min_child_weight: 1.0,
            subsample: 1.0,
            seed: 0,
        }
    }
}

impl XgbOptions {
    /// The defaults with another objective.
    pub fn with_objective(objective: Objective) -> XgbOptions {
        XgbOptions {
            objective,
            ..XgbOptions::default()
        }
    }

    /// The defaults with another seed.
    pub fn with_seed(mut self, seed: u64) -> XgbOptions {
        self.seed = seed;
        self
    }

    fn check(&self) -> Result<(), CostError> {
        let bad = |name, value: String, reason| {
            Err(CostError::Option {
                name,
                value,
                reason,
            })
        };
        if self.rounds == 0 {
            return bad("rounds", "0".into(), "at least 1 round is needed");
        }
        if self.max_depth == 0 {
            return bad("max_depth", "0".into(), "trees need depth at least 1");
        }
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return bad("eta", self.eta.to_string(), "must be a positive number");
        }
        if !(self.min_child_weight.is_finite() && self.min_child_weight >= 0.0) {
            return bad(
                "min_child_weight",
                self.min_child_weight.to_string(),
                "must be a number at least 0",
            );
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", self.subsample.to_string(), "must be in (0, 1]");
        }
        Ok(())
    }

    fn params(&self) -> HashMap<String, String> {
        [
            ("objective", self.objective.xgboost_name().to_string()),
            ("max_depth", self.max_depth.to_string()),
            ("eta", self.eta.to_string()),
            ("min_child_weight", self.min_child_weight.to_string()),
            ("subsample", self.subsample.to_string()),
            ("seed", self.seed.to_string()),
            ("nthread", "1".to_string()),
            ("tree_method", "exact".to_string()),
            ("verbosity", "0".to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }
}

/// Gradient-boosted trees through XGBoost.
pub struct XgbModel {
    options: XgbOptions,
    booster: Option<Booster>,
    columns: usize,
}

impl std::fmt::Debug for XgbModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XgbModel")
            .field("options", &self.options)
            .field("fitted", &self.booster.is_some())
            .field("columns", &self.columns)
            .finish()
    }
}

impl XgbModel {
    /// An unfitted model, or why `options` cannot work.
    pub fn new(options: XgbOptions) -> Result<XgbModel, CostError> {
        options.check()?;
        Ok(XgbModel {
            options,
            booster: None,
            columns: 0,
        })
    }

    /// The options.
    pub fn options(&self) -> &XgbOptions {
        &self.options
    }

    /// Whether the model has been fitted on at least one row.
    pub fn is_fitted(&self) -> bool {
        self.booster.is_some()
    }
}

/// A feature value XGBoost treats as missing: every real feature is at least 0. Transfer
/// learning writes it into columns that do not mean the same thing on another workload's rows.
pub const MISSING: f32 = -1.0;

/// A run of consecutive training rows that are ranked among themselves (one workload), with a
/// weight for all of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    /// Rows in the group.
    pub rows: usize,
    /// Weight of every row (of every pair, for ranking) in the group; 1 is the default.
    pub weight: f32,
}

/// Rows laid out back to back, checked to be of one length.
fn flatten(features: &[Vec<f32>]) -> Result<(Vec<f32>, usize), CostError> {
    let columns = features.first().map_or(0, Vec::len);
    let mut flat = Vec::with_capacity(columns * features.len());
    for (row, values) in features.iter().enumerate() {
        if values.len() != columns {
            return Err(CostError::RowLength {
                row,
                expected: columns,
                found: values.len(),
            });
        }
        flat.extend_from_slice(values);
    }
    Ok((flat, columns))
}

/// A dense matrix of `rows` rows. Every feature is at least 0, so [`MISSING`] (-1) marks
/// nothing but deliberately missing values (the crate's `from_dense` would treat every 0 as
/// missing).
fn matrix(flat: &[f32], rows: usize, during: &'static str) -> Result<DMatrix, CostError> {
    let columns = flat.len() / rows.max(1);
    DMatrix::from_col_major_f32(flat, 4 * columns, 4, rows, columns, 1, MISSING).map_err(|error| {
        CostError::Xgboost {
            during,
            message: error.to_string(),
        }
    })
}

impl XgbModel {
    /// Fits on rows that come in `groups` of consecutive rows, one per workload: throughputs
    /// are scaled by the best of their own group (workloads of different shapes run at different
    /// speeds), a ranking objective compares rows within a group only, and every row of a group
    /// carries the group's weight. This is how records of other shapes of the same operator
    /// train the model of a new one (transfer). Forgets earlier fits.
    pub fn fit_groups(
        &mut self,
        features: &[Vec<f32>],
        throughput: &[f64],
        groups: &[Group],
    ) -> Result<(), CostError> {
        if features.len() != throughput.len() {
            return Err(CostError::TargetCount {
                features: features.len(),
                targets: throughput.len(),
            });
        }
        let grouped: usize = groups.iter().map(|group| group.rows).sum();
        if grouped != features.len() {
            return Err(CostError::TargetCount {
                features: features.len(),
                targets: grouped,
            });
        }
        let (flat, columns) = flatten(features)?;
        if features.is_empty() || columns == 0 {
            self.booster = None;
            return Ok(());
        }
        let xgb = |during| {
            move |error: xgboost_rs::XGBError| CostError::Xgboost {
                during,
                message: error.to_string(),
            }
        };
        // Failures (and anything not a finite positive number) count as zero throughput.
        let mut labels: Vec<f32> = Vec::with_capacity(features.len());
        let mut start = 0;
        for group in groups {
            let values = &throughput[start..start + group.rows];
            let best = values
                .iter()
                .copied()
                .filter(|value| value.is_finite())
                .fold(0.0f64, f64::max);
            labels.extend(values.iter().map(|&value| {
                if value.is_finite() && value > 0.0 && best > 0.0 {
                    (value / best) as f32
                } else {
                    0.0
                }
            }));
            start += group.rows;
        }
        let mut train = matrix(&flat, features.len(), "building the training matrix")?;
        train
            .set_labels(&labels)
            .map_err(xgb("setting training labels"))?;
        let ranking = self.options.objective == Objective::RankPairwise;
        if ranking {
            let sizes: Vec<u32> = groups.iter().map(|group| group.rows as u32).collect();
            train
                .set_group(&sizes)
                .map_err(xgb("setting the ranking groups"))?;
        }
        if groups.iter().any(|group| group.weight != 1.0) {
            // Ranking takes one weight per group, regression one per row.
            let weights: Vec<f32> = if ranking {
                groups.iter().map(|group| group.weight).collect()
            } else {
                groups
                    .iter()
                    .flat_map(|group| std::iter::repeat_n(group.weight, group.rows))
                    .collect()
            };
            train
                .set_weights(&weights)
                .map_err(xgb("setting the weights"))?;
        }
        let mut booster = Booster::new_with_json_config(&[&train], self.options.params())
            .map_err(xgb("creating the booster"))?;
        for round in 0..self.options.rounds {
            booster
                .update(&train, round as i32)
                .map_err(xgb("boosting"))?;
        }
        self.booster = Some(booster);
        self.columns = columns;
        Ok(())
    }
}

impl CostModel for XgbModel {
    fn fit(&mut self, features: &[Vec<f32>], throughput: &[f64]) -> Result<(), CostError> {
        // One group: every config of the task is compared with every other.
        let group = Group {
            rows: features.len(),
            weight: 1.0,
        };
        self.fit_groups(features, throughput, &[group])
    }

    fn predict(&self, features: &[Vec<f32>]) -> Result<Vec<f64>, CostError> {
        let (flat, _) = flatten(features)?;
        self.predict_flat(&flat, features.len())
    }

    fn predict_flat(&self, flat: &[f32], rows: usize) -> Result<Vec<f64>, CostError> {
        let Some(booster) = &self.booster else {
            return Ok(vec![0.0; rows]);
        };
        if rows == 0 {
            return Ok(Vec::new());
        }
        let columns = flat.len() / rows;
        if columns != self.columns || columns * rows != flat.len() {
            return Err(CostError::RowLength {
                row: 0,
                expected: self.columns,
                found: columns,
            });
        }
        let data = matrix(flat, rows, "building the prediction matrix")?;
        let scores = booster.predict(&data).map_err(|error| CostError::Xgboost {
            during: "predicting",
            message: error.to_string(),
        })?;
        Ok(scores.into_iter().map(f64::from).collect())
    }
}

/// Spearman's rank correlation of `a` and `b` (ties get their mean rank): 1 when the orders
/// agree, -1 when they are reversed, about 0 for unrelated orders; 0 for fewer than two pairs
/// or a constant side.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let count = a.len().min(b.len());
    if count < 2 {
        return 0.0;
    }
    let (rank_a, rank_b) = (ranks(&a[..count]), ranks(&b[..count]));
    let mean = (count as f64 - 1.0) / 2.0;
    let (mut covariance, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in rank_a.iter().zip(&rank_b) {
        covariance += (x - mean) * (y - mean);
        var_a += (x - mean) * (x - mean);
        var_b += (y - mean) * (y - mean);
    }
    if var_a == 0.0 || var_b == 0.0 {
        0.0
    } else {
        covariance / (var_a * var_b).sqrt()
    }
}

/// Ranks from 0, ties sharing their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&x, &y| values[x].total_cmp(&values[y]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let mean = (start + end - 1) as f64 / 2.0;
        for &position in &order[start..end] {
            ranks[position] = mean;
        }
        start = end;
    }
    ranks
}

#[cfg(test)]
mod tests;
