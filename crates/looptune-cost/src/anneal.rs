//! Simulated annealing over a config space, scored by a model instead of the machine.
//!
//! Many chains walk the space at once, each step moving every chain to a neighbour (one knob
//! changed) and accepting the move with the Metropolis rule at a temperature that falls
//! linearly over the round. Scores come in one call per step for all chains, so a model
//! predicts a whole batch at a time. The chains persist across rounds: each round continues
//! from where the last one stopped (and from any good points the caller adds), which is how
//! AutoTVM's `SimulatedAnnealingOptimizer` spends little time per round once it has found
//! good regions. A round ends after `max_steps`, or earlier once the set of the best
//! `plan_size` unmeasured points seen in the round has not changed for `early_stop` steps.
//!
//! Score differences are divided by the spread of the chains' current scores before the
//! temperature is applied, so one temperature schedule suits a ranking model's arbitrary scale
//! and a regression model's alike.
//!
//! **Invariant:** the same seed, the same scores and the same calls give the same proposals:
//! every random choice comes from one [`SplitMix64`] owned by the annealer.

use looptune_ir::random::SplitMix64;
use looptune_space::{Config, ConfigSpace};
use std::collections::HashSet;

/// Options of [`Annealer`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AnnealOptions {
    /// Chains walking in parallel.
    pub chains: usize,
    /// Steps per round at most.
    pub max_steps: usize,
    /// Stop a round once the top set has not changed for this many steps.
    pub early_stop: usize,
    /// Temperature at the start of a round (it falls linearly to 0 at `max_steps`).
    pub start_temperature: f64,
}

impl Default for AnnealOptions {
    fn default() -> AnnealOptions {
        AnnealOptions {
            chains: 64,
            max_steps: 200,
            early_stop: 30,
            start_temperature: 1.0,
        }
    }
}

impl AnnealOptions {
    /// The defaults with other chain and step counts.
    pub fn with_steps(chains: usize, max_steps: usize, early_stop: usize) -> AnnealOptions {
        AnnealOptions {
            chains,
            max_steps,
            early_stop,
            ..AnnealOptions::default()
        }
    }
}

/// What one round did, for progress reports and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundStats {
    /// Steps taken.
    pub steps: usize,
    /// Points scored (chains times steps, plus new chain starts).
    pub scored: usize,
    /// Whether the round ended because the top set stopped changing.
    pub stopped_early: bool,
}

/// Simulated annealing with chains that persist across rounds.
#[derive(Debug)]
pub struct Annealer {
    options: AnnealOptions,
    random: SplitMix64,
    seed: u64,
    chains: Vec<Config>,
    last: RoundStats,
}

/// The best points of a round: sorted by score (descending), then index (ascending).
struct TopSet {
    capacity: usize,
    points: Vec<(f64, Config)>,
    members: HashSet<u128>,
}

impl TopSet {
    fn new(capacity: usize) -> TopSet {
        TopSet {
            capacity,
            points: Vec::with_capacity(capacity + 1),
            members: HashSet::new(),
        }
    }

    /// Offers a point; true when the set changed.
    fn offer(&mut self, score: f64, config: &Config) -> bool {
        if self.capacity == 0 || self.members.contains(&config.index()) || score.is_nan() {
            return false;
        }
        let better =
            |a: &(f64, Config)| a.0 > score || (a.0 == score && a.1.index() < config.index());
        if self.points.len() == self.capacity && self.points.last().is_some_and(better) {
            return false;
        }
        let position = self.points.partition_point(better);
        self.points.insert(position, (score, config.clone()));
        self.members.insert(config.index());
        if self.points.len() > self.capacity {
            if let Some((_, dropped)) = self.points.pop() {
                self.members.remove(&dropped.index());
            }
        }
        true
    }
}

impl Annealer {
    /// An annealer whose random choices all come from `seed`.
    pub fn new(options: AnnealOptions, seed: u64) -> Annealer {
        Annealer {
            options,
            random: SplitMix64::new(seed ^ 0xA22E_A1E5_0000_0001),
            seed,
            chains: Vec::new(),
            last: RoundStats::default(),
        }
    }

    /// The options.
    pub fn options(&self) -> &AnnealOptions {
        &self.options
    }

    /// What the last round did.
    pub fn last_round(&self) -> &RoundStats {
        &self.last
    }

    /// The chains' current points.
    pub fn chains(&self) -> &[Config] {
        &self.chains
    }

    /// Moves some chains to `starts` (e.g. the best measured configs), replacing chains from
    /// the last one backwards; at most half of the chains are replaced.
    pub fn restart_from(&mut self, starts: &[Config]) {
        let room = self.options.chains / 2;
        for (offset, start) in starts.iter().take(room).enumerate() {
            if self
                .chains
                .iter()
                .any(|chain| chain.index() == start.index())
            {
                continue;
            }
            if self.chains.len() < self.options.chains {
                self.chains.push(start.clone());
            } else {
                let position = self.chains.len() - 1 - offset;
                self.chains[position] = start.clone();
            }
        }
    }

    /// Runs one round over `space` and returns up to `plan_size` configs, best first, for
    /// which `excluded(index)` is false. `score` gives one score per config (higher is
    /// better); it is called once per step with every chain's candidate.
    pub fn find_best(
        &mut self,
        space: &ConfigSpace,
        plan_size: usize,
        score: &mut dyn FnMut(&[Config]) -> Vec<f64>,
        excluded: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        let mut stats = RoundStats::default();
        if self.chains.len() < self.options.chains {
            // New chains start at sampled points; the sampler's seed moves with the number of
            // chains already there so a top-up does not repeat earlier starts.
            let wanted = self.options.chains - self.chains.len();
            let start_seed = self.seed.wrapping_add(self.chains.len() as u64);
            let known: HashSet<u128> = self.chains.iter().map(Config::index).collect();
            let fresh: Vec<Config> = space
                .sample(start_seed)
                .filter(|config| !known.contains(&config.index()))
                .take(wanted)
                .collect();
            self.chains.extend(fresh);
        }
        let mut top = TopSet::new(plan_size);
        if self.chains.is_empty() {
            self.last = stats;
            return Vec::new();
        }
        let mut scores = score(&self.chains);
        stats.scored += self.chains.len();
        for (config, &value) in self.chains.iter().zip(&scores) {
            if !excluded(config.index()) {
                top.offer(value, config);
            }
        }
        let max_steps = self.options.max_steps.max(1);
        let mut unchanged = 0;
        let mut candidates: Vec<Config> = Vec::with_capacity(self.chains.len());
        for step in 0..max_steps {
            if unchanged >= self.options.early_stop && self.options.early_stop > 0 {
                stats.stopped_early = true;
                break;
            }
            stats.steps += 1;
            let temperature =
                self.options.start_temperature * (1.0 - step as f64 / max_steps as f64);
            candidates.clear();
            for chain in &self.chains {
                let next = space
                    .neighbour(chain, &mut self.random)
                    .unwrap_or_else(|| chain.clone());
                candidates.push(next);
            }
            let candidate_scores = score(&candidates);
            stats.scored += candidates.len();
            let (low, high) = scores
                .iter()
                .filter(|value| value.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let spread = if high > low { high - low } else { 1.0 };
            let mut changed = false;
            for (chain, (candidate, &new_score)) in
                candidates.iter().zip(&candidate_scores).enumerate()
            {
                if !excluded(candidate.index()) {
                    changed |= top.offer(new_score, candidate);
                }
                let old_score = scores[chain];
                let gain = (new_score - old_score) / spread;
                // Metropolis: always take a better point, a worse one with falling odds. The
                // random draw happens either way so the stream does not depend on the scores'
                // signs.
                let draw = (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let accept = if gain.is_nan() {
                    false
                } else if gain >= 0.0 {
                    true
                } else {
                    temperature > 0.0 && draw < (gain / temperature).exp()
                };
                if accept {
                    self.chains[chain] = candidate.clone();
                    scores[chain] = new_score;
                }
            }
            unchanged = if changed { 0 } else { unchanged + 1 };
        }
        self.last = stats;
        top.points.into_iter().map(|(_, config)| config).collect()
    }
}

#[cfg(test)]
mod tests;
