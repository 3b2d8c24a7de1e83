//! The model-guided tuner: XGBoost over loop-nest features, searched by simulated annealing.
//!
//! [`XgbTuner`] is AutoTVM's `XGBTuner`: until it has measurements it proposes random configs;
//! after every batch it refits its [`CostModel`] on everything measured so far (failures as zero
//! throughput) and lets the [`Annealer`] find the configs the model likes best among those not
//! yet measured or proposed. The annealer's chains persist from one round to the next and are
//! restarted from the best measured configs, so later rounds refine rather than start over. A
//! small share of every batch (5% by default) is still random, so that a wrong model cannot
//! keep the search out of a region forever.
//!
//! With a [`TransferSet`] ([`XgbTuner::with_transfer`]: records of other shapes of the same
//! operator from the log), the model is fitted on those rows before the first measurement and
//! proposes from the first batch on; each later refit keeps them as groups of their own whose
//! weight halves with every 64 configs of the new workload measured (AutoTVM's discount of its
//! base model), so the new workload's own results take over.
//!
//! A config's features depend on the config only, so the tuner keeps every row it extracts,
//! keyed by config index ([`FEATURE_CACHE_ROWS`] at most): annealing chains revisit the same
//! configs round after round, and lowering a config is what scoring costs.
//!
//! **Invariant:** the tuner's decisions depend on the seed and the measured throughputs only;
//! the time it spends fitting and annealing is recorded for reports and never read back.

use crate::tuner::{Proposals, Trial, Tuner};
use looptune_cost::{
    AnnealOptions, Annealer, CostError, CostModel, FeatureSpec, Group, XgbModel, XgbOptions,
};
use looptune_ir::random::SplitMix64;
use looptune_space::{Config, Task};
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod transfer;
pub use transfer::{TransferSet, MAX_ROWS_PER_WORKLOAD};

/// Own measurements after which transferred rows weigh half as much as at the start.
const TRANSFER_HALF_LIFE: f64 = 64.0;

/// Feature rows an [`XgbTuner`] keeps (a few hundred bytes each); past this, new rows are
/// extracted every time they are needed.
pub const FEATURE_CACHE_ROWS: usize = 1 << 18;

/// Options of [`XgbTuner`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct XgbTunerOptions {
    /// Configs the annealer returns per round; batches are drawn from this plan until the next
    /// refit.
    pub plan_size: usize,
    /// Share of every batch drawn at random once the model is in use.
    pub random_share: f64,
    /// Measured configs needed before the model is used (random proposals until then).
    pub min_trials: usize,
    /// The model.
    pub model: XgbOptions,
    /// The annealer.
    pub anneal: AnnealOptions,
}

impl Default for XgbTunerOptions {
    fn default() -> XgbTunerOptions {
        XgbTunerOptions {
            plan_size: 64,
            random_share: 0.05,
            min_trials: 8,
            model: XgbOptions::default(),
            anneal: AnnealOptions::default(),
        }
    }
}

/// Where an [`XgbTuner`] spent its time (for progress reports; never read by the search).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct XgbTunerStats {
    /// Refits done.
    pub fits: usize,
    /// Time in feature extraction of measured configs and in fitting.
    pub fit_time: Duration,
    /// Annealing rounds done.
    pub rounds: usize,
    /// Time in annealing (feature extraction and prediction of candidates included).
    pub anneal_time: Duration,
    /// Candidates scored by the model over all rounds.
    pub scored: usize,
    /// Of those, the ones whose features were extracted (lowered) rather than found in the
    /// tuner's feature cache.
    pub extracted: usize,
    /// The last error of the model, if a fit failed (the tuner then proposes at random).
    pub last_error: Option<String>,
    /// Rows transferred from other workloads of the operator (0 without transfer).
    pub transfer_rows: usize,
    /// Workloads they came from.
    pub transfer_workloads: usize,
}

/// Model-guided search: XGBoost plus simulated annealing (see the module doc).
pub struct XgbTuner<'a> {
    task: &'a Task,
    options: XgbTunerOptions,
    spec: FeatureSpec,
    model: XgbModel,
    annealer: Annealer,
    coin: SplitMix64,
    /// Every config proposed so far, measured or not.
    proposals: Proposals<'a>,
    plan: Vec<Config>,
    refit_pending: bool,
    /// Transferred rows first (in groups of `transfer_groups` rows), then this task's rows.
    features: Vec<Vec<f32>>,
    throughput: Vec<f64>,
    transfer_groups: Vec<usize>,
    measured: Vec<(f64, Config)>,
    /// Feature rows by config index; `None` for a config that does not lower.
    feature_cache: HashMap<u128, Option<Vec<f32>>>,
    stats: XgbTunerStats,
}

impl std::fmt::Debug for XgbTuner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XgbTuner")
            .field("task", &self.task.key())
            .field("options", &self.options)
            .field("measured", &self.measured.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<'a> XgbTuner<'a> {
    /// A tuner of `task` whose every random choice comes from `seed`, or why the model options
    /// cannot work.
    pub fn new(
        task: &'a Task,
        options: XgbTunerOptions,
        seed: u64,
    ) -> Result<XgbTuner<'a>, CostError> {
        let model = XgbModel::new(options.model.clone().with_seed(seed))?;
        Ok(XgbTuner {
            task,
            spec: FeatureSpec::for_task(task),
            model,
            annealer: Annealer::new(options.anneal.clone(), seed),
            proposals: Proposals::new(task.space(), seed),
            coin: SplitMix64::new(seed ^ 0x5EED_C011),
            plan: Vec::new(),
            refit_pending: false,
            features: Vec::new(),
            throughput: Vec::new(),
            transfer_groups: Vec::new(),
            measured: Vec::new(),
            feature_cache: HashMap::new(),
            stats: XgbTunerStats::default(),
            options,
        })
    }

    /// A tuner of `task` with the default options.
    pub fn with_defaults(task: &'a Task, seed: u64) -> Result<XgbTuner<'a>, CostError> {
        XgbTuner::new(task, XgbTunerOptions::default(), seed)
    }

    /// The tuner with `transfer`'s rows added to its training data: the model is fitted on them
    /// before the first batch, which is then proposed by the model rather than at random. Call
    /// before the first batch; an empty set changes nothing.
    pub fn with_transfer(mut self, transfer: TransferSet) -> XgbTuner<'a> {
        if transfer.is_empty() {
            return self;
        }
        let own_features = std::mem::take(&mut self.features);
        let own_throughput = std::mem::take(&mut self.throughput);
        self.stats.transfer_rows = transfer.rows.len();
        self.stats.transfer_workloads = transfer.groups.len();
        self.transfer_groups = transfer.groups.iter().map(|(_, rows)| *rows).collect();
        self.features = transfer.rows;
        self.throughput = transfer.throughput;
        self.features.extend(own_features);
        self.throughput.extend(own_throughput);
        self.plan.clear();
        self.refit_pending = true;
        self
    }

    /// Where the time went so far.
    pub fn stats(&self) -> &XgbTunerStats {
        &self.stats
    }

    /// Whether proposals come from the model (enough data and a successful fit).
    pub fn model_in_use(&self) -> bool {
        self.model.is_fitted()
            && (self.measured.len() >= self.options.min_trials || !self.transfer_groups.is_empty())
    }

    /// A new plan from the annealer, scored by the model.
    fn anneal(&mut self, already_measured: &dyn Fn(u128) -> bool) {
        let started = Instant::now();
        let best_measured: Vec<Config> = self
            .measured
            .iter()
            .take(self.options.anneal.chains / 4)
            .map(|(_, config)| config.clone())
            .collect();
        self.annealer.restart_from(&best_measured);
        let (task, spec, model) = (self.task, &self.spec, &self.model);
        let cache = &mut self.feature_cache;
        let mut extracted = 0;
        let mut flat = Vec::new();
        let mut score = |configs: &[Config]| -> Vec<f64> {
            flat.clear();
            let mut lowered = Vec::with_capacity(configs.len());
            for config in configs {
                let ok = cached_row(cache, task, spec, config, &mut flat, &mut extracted);
                if !ok {
                    // A config that does not lower scores lowest; a placeholder row keeps the
                    // rows aligned (a failed extraction appends nothing).
                    flat.extend(std::iter::repeat_n(0.0, spec.len()));
                }
                lowered.push(ok);
            }
            let predicted = model
                .predict_flat(&flat, configs.len())
                .unwrap_or_else(|_| vec![0.0; configs.len()]);
            predicted
                .into_iter()
                .zip(lowered)
                .map(|(value, ok)| if ok { value } else { f64::NEG_INFINITY })
                .collect()
        };
        let proposals = &self.proposals;
        let excluded = |index: u128| already_measured(index) || proposals.contains(index);
        let plan =
            self.annealer
                .find_best(task.space(), self.options.plan_size, &mut score, &excluded);
        self.stats.rounds += 1;
        self.stats.scored += self.annealer.last_round().scored;
        self.stats.extracted += extracted;
        self.stats.anneal_time += started.elapsed();
        // Best last, so that taking from the plan is a pop.
        self.plan = plan.into_iter().rev().collect();
    }

    fn refit(&mut self) {
        let started = Instant::now();
        let fitted = if self.transfer_groups.is_empty() {
            self.model.fit(&self.features, &self.throughput)
        } else {
            let transferred: usize = self.transfer_groups.iter().sum();
            let own = self.features.len() - transferred;
            let weight = (-(own as f64) / TRANSFER_HALF_LIFE).exp2() as f32;
            let mut groups: Vec<Group> = self
                .transfer_groups
                .iter()
                .map(|&rows| Group { rows, weight })
                .collect();
            if own > 0 {
                groups.push(Group {
                    rows: own,
                    weight: 1.0,
                });
            }
            self.model
                .fit_groups(&self.features, &self.throughput, &groups)
        };
        match fitted {
            Ok(()) => self.stats.last_error = None,
            Err(error) => self.stats.last_error = Some(error.to_string()),
        }
        self.stats.fits += 1;
        self.stats.fit_time += started.elapsed();
        self.refit_pending = false;
    }
}

/// Appends `config`'s feature row to `out` from `cache`, or extracts it (lowering the config,
/// counted in `extracted`) and caches it while the cache has room. `false`, with nothing
/// appended, for a config that does not lower.
fn cached_row(
    cache: &mut HashMap<u128, Option<Vec<f32>>>,
    task: &Task,
    spec: &FeatureSpec,
    config: &Config,
    out: &mut Vec<f32>,
    extracted: &mut usize,
) -> bool {
    let index = config.index();
    if let Some(row) = cache.get(&index) {
        if let Some(row) = row {
            out.extend_from_slice(row);
        }
        return row.is_some();
    }
    *extracted += 1;
    let start = out.len();
    let ok = task
        .lower(config)
        .ok()
        .and_then(|nest| spec.extract_nest(&nest, config.choices(), out).ok())
        .is_some();
    if !ok {
        out.truncate(start);
    }
    if cache.len() < FEATURE_CACHE_ROWS {
        cache.insert(index, ok.then(|| out[start..].to_vec()));
    }
    ok
}

impl Tuner for XgbTuner<'_> {
    fn name(&self) -> &'static str {
        "xgb"
    }

    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        if self.refit_pending {
            self.refit();
        }
        if !self.model_in_use() {
            return self.proposals.random(batch_size, already_measured);
        }
        // About `random_share` of the batch is random: the whole part, and one more with the
        // probability of the fraction.
        let share = batch_size as f64 * self.options.random_share.clamp(0.0, 1.0);
        let fraction = share.fract();
        let draw = (self.coin.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let random_count = share.floor() as usize + usize::from(draw < fraction);
        let model_count = batch_size - random_count.min(batch_size);
        let mut batch = Vec::with_capacity(batch_size);
        let mut annealed_this_call = false;
        if self.measured.is_empty() && !self.transfer_groups.is_empty() {
            // The first batch of a run started from transfer rows alone: the model has not seen
            // this shape on this machine yet, and its top scores tend to be one family of
            // configs. Pick among twice as many of the plan's best, each time the one that adds
            // the most knob values the batch does not have yet (AutoTVM's diversity pick).
            if self.plan.is_empty() {
                self.anneal(already_measured);
                annealed_this_call = true;
            }
            let mut candidates = Vec::new();
            while candidates.len() < 2 * model_count {
                let Some(config) = self.plan.pop() else { break };
                let index = config.index();
                if !already_measured(index) && !self.proposals.contains(index) {
                    candidates.push(config);
                }
            }
            // (knob, value) pairs the batch has.
            let mut covered = std::collections::HashSet::new();
            while batch.len() < model_count && !candidates.is_empty() {
                let new_values = |config: &Config| {
                    config
                        .choices()
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|pair| !covered.contains(pair))
                        .count()
                };
                // The first candidate of the most new values: ties go to the better score.
                let mut pick = 0;
                for (position, config) in candidates.iter().enumerate() {
                    if new_values(config) > new_values(&candidates[pick]) {
                        pick = position;
                    }
                }
                let config = candidates.remove(pick);
                covered.extend(config.choices().iter().copied().enumerate());
                self.proposals.insert(config.index());
                batch.push(config);
            }
            // The rest go back, best last, for the batches to come.
            self.plan.extend(candidates.into_iter().rev());
        }
        while batch.len() < model_count {
            match self.plan.pop() {
                Some(config) => {
                    let index = config.index();
                    if !already_measured(index) && !self.proposals.contains(index) {
                        self.proposals.insert(index);
                        batch.push(config);
                    }
                }
                None if !annealed_this_call => {
                    self.anneal(already_measured);
                    annealed_this_call = true;
                }
                None => break,
            }
        }
        let missing = batch_size - batch.len();
        batch.extend(self.proposals.random(missing, already_measured));
        batch
    }

    fn update(&mut self, trials: &[Trial]) {
        let started = Instant::now();
        let mut row = Vec::with_capacity(self.spec.len());
        for trial in trials {
            let throughput = trial.gflops.filter(|g| g.is_finite()).unwrap_or(0.0);
            row.clear();
            // Annealing has usually scored (and cached) a measured config already.
            let (cache, spec) = (&mut self.feature_cache, &self.spec);
            let mut extracted = 0;
            if !cached_row(
                cache,
                self.task,
                spec,
                &trial.config,
                &mut row,
                &mut extracted,
            ) {
                continue;
            }
            self.features.push(row.clone());
            self.throughput.push(throughput);
            self.measured.push((throughput, trial.config.clone()));
        }
        self.measured.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.index().cmp(&b.1.index()))
        });
        self.stats.fit_time += started.elapsed();
        // The old plan was chosen by the old model: drop it, refit before the next batch.
        self.plan.clear();
        self.refit_pending = true;
    }
}

#[cfg(test)]
mod tests;
