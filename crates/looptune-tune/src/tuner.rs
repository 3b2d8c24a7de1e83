//! Tuners: what to measure next.
//!
//! The model-free tuners live here: [`RandomTuner`] samples the space without replacement from a
//! seed, [`GridTuner`] walks it in index order. Both skip configs the log already holds, so a
//! resumed run never measures a config twice.

use looptune_space::{Config, ConfigSpace, Sampler};
use std::collections::HashSet;

mod ga;
mod kind;
pub use ga::{GaOptions, GaTuner};
pub use kind::{BuiltTuner, TunerKind, UnknownTuner};

/// One measured config, as a tuner learns from it.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The config measured.
    pub config: Config,
    /// Its throughput; `None` when it failed (counts as zero throughput).
    pub gflops: Option<f64>,
}

/// Proposes configs to measure and learns from the results.
pub trait Tuner {
    /// The name recorded in the log (`random`, `grid`, ...).
    fn name(&self) -> &'static str;

    /// Up to `batch_size` configs, none for which `already_measured(index)` holds and none
    /// proposed before; fewer (or none) when the space is exhausted.
    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config>;

    /// Learns from measured configs (model-free tuners ignore this).
    fn update(&mut self, trials: &[Trial]) {
        let _ = trials;
    }
}

/// Every config a search tuner (`ga`, `xgb`) has proposed, and uniform sampling that skips
/// them: what keeps such a tuner from proposing a config twice, whether its proposals come from
/// its search or at random.
#[derive(Debug)]
pub(crate) struct Proposals<'a> {
    random: RandomTuner<'a>,
    proposed: HashSet<u128>,
}

impl<'a> Proposals<'a> {
    /// Nothing proposed yet; random proposals sample `space` from `seed`.
    pub(crate) fn new(space: &'a ConfigSpace, seed: u64) -> Proposals<'a> {
        Proposals {
            random: RandomTuner::new(space, seed),
            proposed: HashSet::new(),
        }
    }

    /// Whether the config `index` was proposed before.
    pub(crate) fn contains(&self, index: u128) -> bool {
        self.proposed.contains(&index)
    }

    /// Records a proposal of the config `index`; false if it was proposed before.
    pub(crate) fn insert(&mut self, index: u128) -> bool {
        self.proposed.insert(index)
    }

    /// Up to `count` random configs neither proposed before nor `already_measured`, recorded
    /// as proposed.
    pub(crate) fn random(
        &mut self,
        count: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        let proposed = &self.proposed;
        let batch = self.random.next_batch(count, &|index| {
            already_measured(index) || proposed.contains(&index)
        });
        self.proposed.extend(batch.iter().map(Config::index));
        batch
    }
}

/// Samples the space uniformly without replacement, from a seed.
#[derive(Debug)]
pub struct RandomTuner<'a> {
    sampler: Sampler<'a>,
}

impl<'a> RandomTuner<'a> {
    /// A random tuner over `space`; the same seed proposes the same sequence.
    pub fn new(space: &'a ConfigSpace, seed: u64) -> RandomTuner<'a> {
        RandomTuner {
            sampler: space.sample(seed),
        }
    }
}

impl Tuner for RandomTuner<'_> {
    fn name(&self) -> &'static str {
        "random"
    }

    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        self.sampler
            .by_ref()
            .filter(|config| !already_measured(config.index()))
            .take(batch_size)
            .collect()
    }
}

/// Walks the space in index order.
#[derive(Debug)]
pub struct GridTuner<'a> {
    space: &'a ConfigSpace,
    next_index: u128,
}

impl<'a> GridTuner<'a> {
    /// A grid tuner starting at index 0.
    pub fn new(space: &'a ConfigSpace) -> GridTuner<'a> {
        GridTuner {
            space,
            next_index: 0,
        }
    }
}

impl Tuner for GridTuner<'_> {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size && self.next_index < self.space.size() {
            let index = self.next_index;
            self.next_index += 1;
            if already_measured(index) {
                continue;
            }
            if let Ok(config) = self.space.get(index) {
                batch.push(config);
            }
        }
        batch
    }
}
