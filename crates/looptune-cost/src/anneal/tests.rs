//! Tests of the annealer on synthetic scores over hand-made spaces.

use super::*;
use looptune_space::{Knob, KnobValue};

/// Five knobs of 12 choices each (about 250,000 points); the score peaks at one known point
/// and is rugged elsewhere, so a greedy walk alone could get stuck.
fn space() -> ConfigSpace {
    let mut space = ConfigSpace::new();
    let options: Vec<i64> = (0..12).collect();
    for name in ["a", "b", "c", "d", "e"] {
        space
            .add(Knob::choice(name, &options).expect("knob"))
            .expect("adds");
    }
    space
}

const PEAK: [i64; 5] = [7, 3, 11, 0, 5];

fn value(config: &Config, name: &str) -> i64 {
    match config.value(name) {
        Some(KnobValue::Choice(value)) => *value,
        other => panic!("knob {name}: {other:?}"),
    }
}

fn score(config: &Config) -> f64 {
    ["a", "b", "c", "d", "e"]
        .iter()
        .zip(PEAK)
        .map(|(name, peak)| {
            let x = value(config, name);
            let distance = (x - peak) as f64;
            // A bowl with ripples: odd distances are a little worse than their neighbours.
            -distance * distance - if (x - peak).abs() % 2 == 1 { 1.5 } else { 0.0 }
        })
        .sum()
}

fn score_all(configs: &[Config]) -> Vec<f64> {
    configs.iter().map(score).collect()
}

fn choices(config: &Config) -> Vec<i64> {
    ["a", "b", "c", "d", "e"]
        .iter()
        .map(|name| value(config, name))
        .collect()
}

#[test]
fn annealing_finds_the_maximum_of_a_synthetic_score() {
    let space = space();
    let mut annealer = Annealer::new(AnnealOptions::with_steps(32, 300, 60), 1);
    let best = annealer.find_best(&space, 8, &mut score_all, &|_| false);
    assert_eq!(best.len(), 8);
    assert_eq!(choices(&best[0]), PEAK.to_vec());
    // Best first.
    let scores = score_all(&best);
    assert!(
        scores.windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );
}

#[test]
fn excluded_points_are_never_returned() {
    let space = space();
    let peak = space
        .iter()
        .find(|config| choices(config) == PEAK.to_vec())
        .expect("the peak is a point");
    let mut annealer = Annealer::new(AnnealOptions::with_steps(32, 300, 60), 2);
    let best = annealer.find_best(&space, 4, &mut score_all, &|index| index == peak.index());
    assert!(best.iter().all(|config| config.index() != peak.index()));
    // The runner-up: one knob one step off the peak scores -2.5; two steps off scores -4.
    assert_eq!(score(&best[0]), -2.5);
}

#[test]
fn the_same_seed_gives_the_same_proposals_over_rounds() {
    let space = space();
    let run = |seed: u64| {
        let mut annealer = Annealer::new(AnnealOptions::with_steps(16, 40, 10), seed);
        let mut rounds = Vec::new();
        let mut measured = HashSet::new();
        for _ in 0..3 {
            let excluded = |index: u128| measured.contains(&index);
            let batch = annealer.find_best(&space, 5, &mut score_all, &excluded);
            let indices: Vec<u128> = batch.iter().map(Config::index).collect();
            measured.extend(indices.iter().copied());
            rounds.push(indices);
        }
        rounds
    };
    let first = run(9);
    assert_eq!(first, run(9));
    assert_ne!(first, run(10));
    // Later rounds propose new points: nothing measured comes back.
    let all: Vec<u128> = first.concat();
    let distinct: HashSet<u128> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len());
}

#[test]
fn a_round_stops_early_once_the_top_set_settles() {
    let space = space();
    let mut annealer = Annealer::new(AnnealOptions::with_steps(16, 10_000, 20), 3);
    annealer.find_best(&space, 4, &mut score_all, &|_| false);
    let stats = annealer.last_round();
    assert!(stats.stopped_early, "{stats:?}");
    assert!(stats.steps < 10_000, "{stats:?}");
    assert_eq!(stats.scored, 16 * (stats.steps + 1));
}

#[test]
fn chains_persist_and_restart_from_given_points() {
    let space = space();
    let mut annealer = Annealer::new(AnnealOptions::with_steps(8, 20, 5), 4);
    annealer.find_best(&space, 2, &mut score_all, &|_| false);
    assert_eq!(annealer.chains().len(), 8);
    let start = space.get(0).expect("point 0");
    annealer.restart_from(std::slice::from_ref(&start));
    assert_eq!(annealer.chains().len(), 8);
    assert!(annealer.chains().iter().any(|chain| chain.index() == 0));
}

#[test]
fn a_space_of_one_point_returns_it_once() {
    let space = ConfigSpace::new();
    let mut annealer = Annealer::new(AnnealOptions::default(), 5);
    let best = annealer.find_best(&space, 4, &mut score_all_empty, &|_| false);
    assert_eq!(best.len(), 1);
}

fn score_all_empty(configs: &[Config]) -> Vec<f64> {
    vec![0.0; configs.len()]
}
