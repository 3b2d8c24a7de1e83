//! Tests of numbering, values, sampling, neighbours and constraints on hand-made spaces.

use super::*;
use crate::knob::Factors;
use std::collections::HashSet;

/// 6 * 3 * 2 = 36 raw points; the constraint removes those with a tile of 4 and packing off.
fn small_space() -> ConfigSpace {
    let mut space = ConfigSpace::new();
    space
        .add(Knob::split("tile", 12, &[Factors::Divisors]).unwrap())
        .unwrap();
    space
        .add(
            Knob::reorder(
                "order",
                &["i", "j", "k"],
                &[vec![0, 1, 2], vec![1, 0, 2], vec![2, 1, 0]],
            )
            .unwrap(),
        )
        .unwrap();
    space.add(Knob::choice("pack", &[0, 1]).unwrap()).unwrap();
    space.constrain("tile 4 needs packing", |config| {
        config.split("tile").map(|parts| parts[1]) != Ok(4) || config.choice("pack") == Ok(1)
    });
    space
}

#[test]
fn index_is_mixed_radix_with_the_first_knob_least_significant() {
    let space = small_space();
    assert_eq!(space.size(), 36);
    let config = space.get(1 + 6 * 2 + 18).unwrap();
    assert_eq!(config.choices(), [1, 2, 1]);
    assert_eq!(config.split("tile"), Ok(&[6, 2][..]));
    assert_eq!(config.reorder("order"), Ok(&[2, 1, 0][..]));
    assert_eq!(config.choice("pack"), Ok(1));
    assert_eq!(
        config.to_string(),
        "tile=split[6, 2], order=reorder[2, 1, 0], pack=1"
    );
}

#[test]
fn every_index_and_every_value_list_round_trips() {
    let space = small_space();
    let mut valid = 0;
    for config in space.iter() {
        valid += 1;
        assert_eq!(space.get(config.index()).as_ref(), Ok(&config));
        assert_eq!(space.from_values(&config.to_values()).as_ref(), Ok(&config));
        assert_eq!(space.from_choices(config.choices()).as_ref(), Ok(&config));
    }
    // tile=[3, 4] with pack=0 under any of the 3 orders is excluded.
    assert_eq!(valid, 36 - 3);
}

#[test]
fn out_of_range_and_constraint_breaking_indices_are_refused() {
    let space = small_space();
    assert_eq!(
        space.get(36),
        Err(SpaceError::IndexOutOfRange {
            index: 36,
            size: 36
        })
    );
    // tile=[3, 4] is choice 3; order 0; pack 0.
    let err = space.get(3).unwrap_err();
    assert_eq!(
        err,
        SpaceError::Violates {
            constraint: "tile 4 needs packing".into(),
            config: "tile=split[3, 4], order=reorder[0, 1, 2], pack=0".into()
        }
    );
    assert!(!space.is_valid(3));
    assert!(matches!(
        space.from_choices(&[0, 5, 0]),
        Err(SpaceError::ChoiceOutOfRange {
            choice: 5,
            count: 3,
            ..
        })
    ));
}

#[test]
fn from_values_names_the_unknown_knob_and_the_illegal_value() {
    let space = small_space();
    let mut values = space.get(0).unwrap().to_values();
    values.push(("unroll".into(), KnobValue::Choice(2)));
    assert_eq!(
        space.from_values(&values).unwrap_err().to_string(),
        "unknown knob `unroll` (known: tile, order, pack)"
    );
    values.pop();
    values[0].1 = KnobValue::Split(vec![2, 5]);
    assert_eq!(
        space.from_values(&values),
        Err(SpaceError::IllegalValue {
            knob: "tile".into(),
            value: "split[2, 5]".into()
        })
    );
    values[0].1 = KnobValue::Choice(1);
    assert!(matches!(
        space.from_values(&values),
        Err(SpaceError::IllegalValue { .. })
    ));
    values.remove(0);
    assert_eq!(
        space.from_values(&values),
        Err(SpaceError::MissingKnob {
            knob: "tile".into()
        })
    );
    let mut twice = space.get(0).unwrap().to_values();
    twice.push(twice[2].clone());
    assert_eq!(
        space.from_values(&twice),
        Err(SpaceError::RepeatedKnob {
            knob: "pack".into()
        })
    );
    // Values in another order name the same point.
    let mut shuffled = space.get(7).unwrap().to_values();
    shuffled.reverse();
    assert_eq!(space.from_values(&shuffled).map(|c| c.index()), Ok(7));
}

#[test]
fn reading_a_knob_as_the_wrong_kind_is_an_error() {
    let config = small_space().get(0).unwrap();
    assert_eq!(
        config.choice("tile"),
        Err(SpaceError::WrongKind {
            knob: "tile".into(),
            expected: "choice",
            value: "split[12, 1]".into()
        })
    );
    assert_eq!(
        config.split("nothing"),
        Err(SpaceError::MissingKnob {
            knob: "nothing".into()
        })
    );
}

#[test]
fn duplicate_knobs_are_refused() {
    let mut space = small_space();
    assert_eq!(
        space.add(Knob::choice("pack", &[0]).unwrap()),
        Err(SpaceError::DuplicateKnob {
            knob: "pack".into()
        })
    );
}

#[test]
fn sampling_visits_every_valid_point_once_and_depends_on_the_seed() {
    let space = small_space();
    let first: Vec<u128> = space.sample(1).map(|config| config.index()).collect();
    let distinct: HashSet<u128> = first.iter().copied().collect();
    assert_eq!(first.len(), 33);
    assert_eq!(distinct.len(), 33);
    assert!(first.iter().all(|&index| space.is_valid(index)));
    let again: Vec<u128> = space.sample(1).map(|config| config.index()).collect();
    assert_eq!(first, again);
    let other: Vec<u128> = space.sample(2).map(|config| config.index()).collect();
    assert_ne!(first, other);
}

#[test]
fn sampling_a_huge_space_materialises_nothing_and_repeats_nothing() {
    let mut space = ConfigSpace::new();
    for position in 0..12 {
        space
            .add(
                Knob::split(
                    &format!("s{position}"),
                    1 << 20,
                    &[Factors::PowersOfTwo, Factors::PowersOfTwo],
                )
                .unwrap(),
            )
            .unwrap();
    }
    assert!(space.size() > 1u128 << 90, "{}", space.size());
    let sampled: Vec<Config> = space.sample(9).take(2000).collect();
    let distinct: HashSet<u128> = sampled.iter().map(Config::index).collect();
    assert_eq!(distinct.len(), 2000);
    // Samples spread over the index range rather than counting up from zero.
    assert!(sampled
        .iter()
        .any(|config| config.index() > space.size() / 2));
}

#[test]
fn a_space_past_two_to_the_126_is_refused() {
    let mut space = ConfigSpace::new();
    let options: Vec<i64> = (0..1 << 16).collect();
    let mut result = Ok(());
    for position in 0..8 {
        let knob = Knob::choice(&format!("wide{position}"), &options).unwrap();
        result = space.add(knob);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result,
        Err(SpaceError::TooLarge {
            knob: "wide7".into()
        })
    );
}

#[test]
fn a_neighbour_differs_in_exactly_one_knob_and_is_valid() {
    let space = small_space();
    let mut random = SplitMix64::new(3);
    for config in space.iter() {
        for _ in 0..10 {
            let neighbour = space
                .neighbour(&config, &mut random)
                .expect("has neighbours");
            let differing = config
                .choices()
                .iter()
                .zip(neighbour.choices())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 1, "{config} -> {neighbour}");
            assert!(space.is_valid(neighbour.index()));
        }
    }
    let mut single = ConfigSpace::new();
    single.add(Knob::choice("only", &[1]).unwrap()).unwrap();
    let only = single.get(0).unwrap();
    assert_eq!(single.neighbour(&only, &mut random), None);
}
