//! The genetic tuner: a population of configs bred from the fastest ones measured.
//!
//! [`GaTuner`] is AutoTVM's `GATuner` over looptune's knobs. The first generation is a seeded
//! random sample of the space. Each later generation is bred from a parent pool (the configs of
//! the generation just measured plus the `elites` fastest configs measured so far): two parents
//! are drawn with probability proportional to their throughput, every knob of the child comes
//! from one of them at random (uniform crossover over knobs), and each knob is then re-drawn at
//! random with probability `mutation` (mutation). A child that breaks a constraint of the space,
//! was measured or was proposed before is thrown away and bred again, so the tuner only proposes
//! valid, new points; when breeding keeps failing (a space nearly used up) random samples fill
//! the generation.
//!
//! **Invariant:** every choice comes from one [`SplitMix64`] seeded by the caller and from the
//! measured throughputs, taken in a fixed order (throughput, then index): the same seed and the
//! same measurements give the same proposals.

use crate::tuner::{Proposals, Trial, Tuner};
use looptune_ir::random::SplitMix64;
use looptune_space::{Config, ConfigSpace};

/// Options of [`GaTuner`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GaOptions {
    /// Configs per generation.
    pub population: usize,
    /// Fastest configs measured so far that join every parent pool.
    pub elites: usize,
    /// Probability that a knob of a child is re-drawn at random after crossover.
    pub mutation: f64,
}

impl Default for GaOptions {
    /// AutoTVM's defaults scaled to looptune's smaller batches: 32 per generation, 3 elites,
    /// mutation 0.1.
    fn default() -> GaOptions {
        GaOptions {
            population: 32,
            elites: 3,
            mutation: 0.1,
        }
    }
}

/// Tries per child before the tuner gives up breeding it and samples at random instead.
const BREED_TRIES: usize = 64;

/// Genetic search over a space (see the module doc).
#[derive(Debug)]
pub struct GaTuner<'a> {
    space: &'a ConfigSpace,
    options: GaOptions,
    random: SplitMix64,
    /// Every config proposed so far, measured or not.
    proposals: Proposals<'a>,
    /// The current generation, waiting to be proposed (next one last).
    queue: Vec<Config>,
    /// Measured configs of the current generation: (throughput, config).
    generation: Vec<(f64, Config)>,
    /// The fastest configs measured so far, at most `elites`, best first.
    elites: Vec<(f64, Config)>,
    generations: usize,
}

impl<'a> GaTuner<'a> {
    /// A genetic tuner over `space` whose every random choice comes from `seed`.
    pub fn new(space: &'a ConfigSpace, options: GaOptions, seed: u64) -> GaTuner<'a> {
        GaTuner {
            space,
            options: GaOptions {
                population: options.population.max(2),
                elites: options.elites,
                mutation: options.mutation.clamp(0.0, 1.0),
            },
            random: SplitMix64::new(seed ^ 0x6A_7E11),
            proposals: Proposals::new(space, seed),
            queue: Vec::new(),
            generation: Vec::new(),
            elites: Vec::new(),
            generations: 0,
        }
    }

    /// A genetic tuner with the default options.
    pub fn with_defaults(space: &'a ConfigSpace, seed: u64) -> GaTuner<'a> {
        GaTuner::new(space, GaOptions::default(), seed)
    }

    /// Generations bred so far (the random first one included).
    pub fn generations(&self) -> usize {
        self.generations
    }

    /// A parent drawn from `pool` with probability proportional to throughput (uniformly when
    /// nothing in the pool ran).
    fn pick<'p>(&mut self, pool: &'p [(f64, Config)], total: f64) -> &'p Config {
        if total > 0.0 {
            let unit = (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let mut target = unit * total;
            for (fitness, config) in pool {
                if target < *fitness {
                    return config;
                }
                target -= fitness;
            }
        }
        &pool[self.random.below(pool.len())].1
    }

    /// One child of two parents: uniform crossover over knobs, then mutation.
    fn child(&mut self, first: &Config, second: &Config) -> Vec<usize> {
        let knobs = self.space.knobs();
        let threshold = (self.options.mutation * (1u64 << 53) as f64) as u64;
        first
            .choices()
            .iter()
            .zip(second.choices())
            .zip(knobs)
            .map(|((&a, &b), knob)| {
                let inherited = if self.random.next_u64() & 1 == 0 {
                    a
                } else {
                    b
                };
                if knob.len() > 1 && (self.random.next_u64() >> 11) < threshold {
                    self.random.below(knob.len())
                } else {
                    inherited
                }
            })
            .collect()
    }

    /// The next generation, bred from the measured part of this one and the elites.
    fn breed(&mut self, already_measured: &dyn Fn(u128) -> bool) {
        let mut pool: Vec<(f64, Config)> = self.generation.drain(..).collect();
        for elite in &self.elites {
            if !pool.iter().any(|(_, c)| c.index() == elite.1.index()) {
                pool.push(elite.clone());
            }
        }
        sort_best_first(&mut pool);
        let wanted = self.options.population;
        let mut children = Vec::with_capacity(wanted);
        if pool.is_empty() {
            children = self.proposals.random(wanted, already_measured);
        } else {
            let total: f64 = pool.iter().map(|(fitness, _)| fitness).sum();
            let mut failures = 0;
            while children.len() < wanted && failures < BREED_TRIES * wanted {
                let first = self.pick(&pool, total).clone();
                let second = self.pick(&pool, total).clone();
                let choices = self.child(&first, &second);
                match self.space.from_choices(&choices) {
                    Ok(config)
                        if !already_measured(config.index())
                            && !self.proposals.contains(config.index()) =>
                    {
                        self.proposals.insert(config.index());
                        children.push(config);
                    }
                    // Broken constraint, or not new: breed again.
                    _ => failures += 1,
                }
            }
            let missing = wanted - children.len();
            children.extend(self.proposals.random(missing, already_measured));
        }
        self.generations += 1;
        // Next one last, so that taking from the queue is a pop.
        self.queue = children.into_iter().rev().collect();
    }
}

/// Sorts by throughput, best first, ties by index so the order is total.
fn sort_best_first(configs: &mut [(f64, Config)]) {
    configs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.index().cmp(&b.1.index()))
    });
}

impl Tuner for GaTuner<'_> {
    fn name(&self) -> &'static str {
        "ga"
    }

    fn next_batch(
        &mut self,
        batch_size: usize,
        already_measured: &dyn Fn(u128) -> bool,
    ) -> Vec<Config> {
        let mut batch = Vec::with_capacity(batch_size);
        let mut bred_this_call = false;
        while batch.len() < batch_size {
            match self.queue.pop() {
                // A queued child may have been measured since (a log shared with another run).
                Some(config) if already_measured(config.index()) => {}
                Some(config) => batch.push(config),
                None if !bred_this_call => {
                    if self.generations == 0 {
                        let first = self
                            .proposals
                            .random(self.options.population, already_measured);
                        self.generations = 1;
                        self.queue = first.into_iter().rev().collect();
                    } else {
                        self.breed(already_measured);
                    }
                    bred_this_call = true;
                }
                None => break,
            }
        }
        batch
    }

    fn update(&mut self, trials: &[Trial]) {
        for trial in trials {
            let fitness = trial.gflops.filter(|g| g.is_finite() && *g > 0.0);
            let entry = (fitness.unwrap_or(0.0), trial.config.clone());
            self.generation.push(entry.clone());
            if fitness.is_some() {
                self.elites.push(entry);
            }
        }
        sort_best_first(&mut self.elites);
        self.elites.truncate(self.options.elites);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuner::RandomTuner;
    use looptune_space::{Factors, Knob, KnobValue};
    use std::collections::HashSet;

    /// Three knobs, 8 * 8 * 4 = 256 points, with a constraint that removes a quarter of them.
    fn space() -> ConfigSpace {
        let mut space = ConfigSpace::new();
        space
            .add(Knob::split("a", 128, &[Factors::PowersOfTwo]).expect("knob"))
            .expect("adds");
        space
            .add(Knob::split("b", 128, &[Factors::PowersOfTwo]).expect("knob"))
            .expect("adds");
        space
            .add(Knob::choice("c", &[0, 1, 2, 3]).expect("knob"))
            .expect("adds");
        space.constrain("a and b not both large", |config| {
            let inner = |name| config.split(name).map_or(0, |p| *p.last().unwrap_or(&0));
            !(inner("a") >= 16 && inner("b") >= 16)
        });
        space
    }

    fn inner(config: &Config, name: &str) -> f64 {
        match config.value(name) {
            Some(KnobValue::Split(parts)) => *parts.last().unwrap_or(&1) as f64,
            _ => 1.0,
        }
    }

    /// A made-up machine with one best point (a=8, b=4, c=2) and a smooth slope towards it;
    /// c=0 "fails".
    fn synthetic(config: &Config) -> Option<f64> {
        let c = match config.value("c") {
            Some(KnobValue::Choice(c)) => *c,
            _ => 0,
        };
        if c == 0 {
            return None;
        }
        let distance = (inner(config, "a").log2() - 3.0).abs()
            + (inner(config, "b").log2() - 2.0).abs()
            + (c as f64 - 2.0).abs();
        Some(100.0 / (1.0 + distance * distance))
    }

    /// Runs `batches` batches of 8; returns the proposals in order and the best after each batch.
    fn drive(tuner: &mut dyn Tuner, batches: usize) -> (Vec<u128>, Vec<f64>) {
        let mut measured = HashSet::new();
        let (mut order, mut curve, mut best) = (Vec::new(), Vec::new(), 0.0f64);
        for _ in 0..batches {
            let batch = tuner.next_batch(8, &|index| measured.contains(&index));
            let trials: Vec<Trial> = batch
                .into_iter()
                .map(|config| Trial {
                    gflops: synthetic(&config),
                    config,
                })
                .collect();
            for trial in &trials {
                assert!(
                    measured.insert(trial.config.index()),
                    "{} proposed twice",
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
    fn same_seed_same_proposals_other_seed_others() {
        let space = space();
        let options = GaOptions {
            population: 16,
            ..GaOptions::default()
        };
        let (first, _) = drive(&mut GaTuner::new(&space, options.clone(), 5), 12);
        let (again, _) = drive(&mut GaTuner::new(&space, options.clone(), 5), 12);
        let (other, _) = drive(&mut GaTuner::new(&space, options, 6), 12);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn proposes_only_valid_new_points_until_the_space_is_used_up() {
        let space = space();
        let valid = space.iter().count();
        let mut tuner = GaTuner::new(
            &space,
            GaOptions {
                population: 16,
                ..GaOptions::default()
            },
            1,
        );
        // `drive` fails on a repeat; every proposal must be a valid point of the space.
        let (order, _) = drive(&mut tuner, 40);
        assert!(order.iter().all(|&index| space.is_valid(index)));
        assert_eq!(order.len(), valid, "every valid point, each once");
        assert!(tuner.next_batch(8, &|_| false).is_empty());
    }

    #[test]
    fn skips_configs_measured_elsewhere() {
        let space = space();
        let mut tuner = GaTuner::with_defaults(&space, 3);
        let forbidden: HashSet<u128> = space.iter().take(100).map(|c| c.index()).collect();
        for _ in 0..10 {
            let batch = tuner.next_batch(8, &|index| forbidden.contains(&index));
            assert!(batch.iter().all(|c| !forbidden.contains(&c.index())));
            let trials: Vec<Trial> = batch
                .into_iter()
                .map(|config| Trial {
                    gflops: synthetic(&config),
                    config,
                })
                .collect();
            tuner.update(&trials);
        }
    }

    #[test]
    fn breeding_finds_the_best_point_sooner_than_random_sampling_on_most_seeds() {
        let space = space();
        let best = space
            .iter()
            .filter_map(|c| synthetic(&c))
            .fold(0.0f64, f64::max);
        // Trials until the best point is found, or the budget (96 trials of 192 points).
        let trials_to_best = |curve: &[f64]| {
            curve
                .iter()
                .position(|&b| b >= best)
                .map_or(12 * 8, |batch| (batch + 1) * 8)
        };
        let mut ga_wins = 0;
        for seed in 0..9 {
            let options = GaOptions {
                population: 16,
                ..GaOptions::default()
            };
            let (_, ga) = drive(&mut GaTuner::new(&space, options, seed), 12);
            let (_, random) = drive(&mut RandomTuner::new(&space, seed), 12);
            if trials_to_best(&ga) < trials_to_best(&random) {
                ga_wins += 1;
            }
        }
        assert!(ga_wins >= 5, "GA was faster on only {ga_wins} of 9 seeds");
    }
}
