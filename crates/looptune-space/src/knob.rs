//! Knobs: one decision of a template and the values it may take, AutoTVM-style.
//!
//! A knob is a named, finite, ordered list of [`KnobValue`]s. The four kinds mirror AutoTVM's:
//! a split of an axis into parts, a reorder among candidate permutations, an annotation per
//! loop, and a generic integer choice. Values are enumerated once, when the knob is built, so a
//! config can be stored as one small index per knob and a value found again by position.

use crate::error::SpaceError;
use crate::value::KnobValue;
use looptune_ir::LoopKind;
use std::collections::BTreeSet;
use std::fmt;

/// Which sizes a part of a split may take.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Factors {
    /// Divisors of the extent left to split (no tails).
    Divisors,
    /// Powers of two up to the extent left to split (tails guarded).
    PowersOfTwo,
    /// Divisors and powers of two together.
    Both,
    /// Exactly these sizes, those not larger than the extent left (tails guarded). When none
    /// fits, the whole extent left is the only size, so small shapes still have a point.
    List(Vec<i64>),
}

impl Factors {
    fn candidates(&self, extent: i64) -> Vec<i64> {
        let divisors = || (1..=extent).filter(move |d| extent % d == 0);
        let powers = || {
            (0..63)
                .map(|bit| 1i64 << bit)
                .take_while(move |&p| p <= extent)
        };
        let set: BTreeSet<i64> = match self {
            Factors::Divisors => divisors().collect(),
            Factors::PowersOfTwo => powers().collect(),
            Factors::Both => divisors().chain(powers()).collect(),
            Factors::List(sizes) => {
                let fitting: BTreeSet<i64> = sizes
                    .iter()
                    .copied()
                    .filter(|&size| size >= 1 && size <= extent)
                    .collect();
                if fitting.is_empty() {
                    [extent].into_iter().collect()
                } else {
                    fitting
                }
            }
        };
        set.into_iter().collect()
    }
}

/// How one loop runs, as an annotate knob records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Annotation {
    /// A plain loop.
    None,
    /// Unrolled.
    Unroll,
    /// SIMD lanes.
    Vectorize,
    /// Spread over threads.
    Parallel,
}

impl Annotation {
    /// The name written in tuning logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Annotation::None => "none",
            Annotation::Unroll => "unroll",
            Annotation::Vectorize => "vectorize",
            Annotation::Parallel => "parallel",
        }
    }

    /// The annotation called `name`, if any.
    pub fn parse(name: &str) -> Option<Annotation> {
        [
            Annotation::None,
            Annotation::Unroll,
            Annotation::Vectorize,
            Annotation::Parallel,
        ]
        .into_iter()
        .find(|annotation| annotation.as_str() == name)
    }

    /// The loop kind a schedule gives it.
    pub fn loop_kind(self) -> LoopKind {
        match self {
            Annotation::None => LoopKind::Serial,
            Annotation::Unroll => LoopKind::Unrolled,
            Annotation::Vectorize => LoopKind::Vectorized,
            Annotation::Parallel => LoopKind::Parallel,
        }
    }
}

impl fmt::Display for Annotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a knob decides, with what a reader needs to interpret its values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnobKind {
    /// A split of an axis of this extent; values are [`KnobValue::Split`], outermost first.
    Split {
        /// The extent of the axis split.
        extent: i64,
    },
    /// A reorder of these loops; values are [`KnobValue::Reorder`] positions into `axes`.
    Reorder {
        /// The loops permuted, by name.
        axes: Vec<String>,
    },
    /// An annotation of each of these loops; values are [`KnobValue::Annotate`].
    Annotate {
        /// The loops annotated, by name.
        axes: Vec<String>,
    },
    /// One integer among a list; values are [`KnobValue::Choice`].
    Choice,
}

/// One decision of a template: a name and the ordered list of values it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knob {
    name: String,
    kind: KnobKind,
    values: Vec<KnobValue>,
    /// For a knob added to a template after logs were written: the position of the value that
    /// reproduces what the template did before, read for records that lack the knob.
    absent: Option<usize>,
}

impl Knob {
    /// A split of an axis of `extent` into `inner.len() + 1` loops. `inner[0]` gives the sizes
    /// of the part just inside the outermost, the last entry those of the innermost part. Inner
    /// parts are chosen innermost first, each from the extent its inner parts leave
    /// (`ceil(extent / product)`); the outermost part covers the rest, rounded up. Every value
    /// has a product of inner parts not larger than `extent`.
    pub fn split(name: &str, extent: i64, inner: &[Factors]) -> Result<Knob, SpaceError> {
        if extent < 1 {
            return Err(SpaceError::BadKnob {
                knob: name.to_string(),
                message: format!("split of an axis of extent {extent}"),
            });
        }
        if inner.is_empty() {
            return Err(SpaceError::BadKnob {
                knob: name.to_string(),
                message: "a split needs at least two parts".to_string(),
            });
        }
        // Parts are enumerated innermost first so that each one sees the extent left by the
        // parts inside it; the value is then written outermost first, as the log stores it.
        let mut partial: Vec<(Vec<i64>, i64)> = vec![(Vec::new(), extent)];
        for factors in inner.iter().rev() {
            let mut next = Vec::new();
            for (parts, left) in &partial {
                for size in factors.candidates(*left) {
                    let mut parts = parts.clone();
                    parts.push(size);
                    next.push((parts, (left + size - 1) / size));
                }
            }
            partial = next;
        }
        let values = partial
            .into_iter()
            .map(|(mut parts, outer)| {
                parts.push(outer);
                parts.reverse();
                KnobValue::Split(parts)
            })
            .collect();
        Ok(Knob {
            name: name.to_string(),
            kind: KnobKind::Split { extent },
            values,
            absent: None,
        })
    }

    /// A reorder of `axes` among `candidates`, each a permutation of `0..axes.len()`.
    pub fn reorder(
        name: &str,
        axes: &[&str],
        candidates: &[Vec<usize>],
    ) -> Result<Knob, SpaceError> {
        let mut values = Vec::new();
        for permutation in candidates {
            let mut sorted = permutation.clone();
            sorted.sort_unstable();
            if sorted != (0..axes.len()).collect::<Vec<_>>() {
                return Err(SpaceError::BadKnob {
                    knob: name.to_string(),
                    message: format!(
                        "{permutation:?} is not a permutation of {} loops",
                        axes.len()
                    ),
                });
            }
            let value = KnobValue::Reorder(permutation.clone());
            if !values.contains(&value) {
                values.push(value);
            }
        }
        Knob::checked(
            name,
            KnobKind::Reorder {
                axes: axes.iter().map(|axis| axis.to_string()).collect(),
            },
            values,
        )
    }

    /// An annotation of each of `axes`, `options[a]` listing those loop `a` may take; the
    /// values are every combination, the first axis varying slowest.
    pub fn annotate(
        name: &str,
        axes: &[&str],
        options: &[Vec<Annotation>],
    ) -> Result<Knob, SpaceError> {
        if axes.len() != options.len() {
            return Err(SpaceError::BadKnob {
                knob: name.to_string(),
                message: format!("{} loops but options for {}", axes.len(), options.len()),
            });
        }
        let mut combinations: Vec<Vec<String>> = vec![Vec::new()];
        for axis_options in options {
            combinations = combinations
                .into_iter()
                .flat_map(|prefix| {
                    axis_options.iter().map(move |option| {
                        let mut combination = prefix.clone();
                        combination.push(option.as_str().to_string());
                        combination
                    })
                })
                .collect();
        }
        Knob::checked(
            name,
            KnobKind::Annotate {
                axes: axes.iter().map(|axis| axis.to_string()).collect(),
            },
            combinations.into_iter().map(KnobValue::Annotate).collect(),
        )
    }

    /// One of `options` (on/off as `[0, 1]`, a limit, an index into a list of shapes).
    pub fn choice(name: &str, options: &[i64]) -> Result<Knob, SpaceError> {
        let mut seen = BTreeSet::new();
        let values = options
            .iter()
            .filter(|&&option| seen.insert(option))
            .map(|&option| KnobValue::Choice(option))
            .collect();
        Knob::checked(name, KnobKind::Choice, values)
    }

    fn checked(name: &str, kind: KnobKind, values: Vec<KnobValue>) -> Result<Knob, SpaceError> {
        if values.is_empty() {
            return Err(SpaceError::BadKnob {
                knob: name.to_string(),
                message: "no candidate values".to_string(),
            });
        }
        Ok(Knob {
            name: name.to_string(),
            kind,
            values,
            absent: None,
        })
    }

    /// Marks the knob as added to its template after tuning logs existed: a recorded config
    /// without it reads as `value`, which must be the choice that gives the schedule the
    /// template built before the knob existed. Those records then stay points of the space
    /// (a resumed run does not measure them again, queries keep them).
    pub fn added_later(mut self, value: &KnobValue) -> Result<Knob, SpaceError> {
        let position = self.position(value).ok_or_else(|| SpaceError::BadKnob {
            knob: self.name.clone(),
            message: format!("{value} is not one of its values"),
        })?;
        self.absent = Some(position);
        Ok(self)
    }

    /// The position a record without this knob reads as ([`Knob::added_later`]).
    pub fn absent_choice(&self) -> Option<usize> {
        self.absent
    }

    /// The knob's name, unique in its space.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the knob decides.
    pub fn kind(&self) -> &KnobKind {
        &self.kind
    }

    /// Every value, in index order.
    pub fn values(&self) -> &[KnobValue] {
        &self.values
    }

    /// The number of values (at least 1).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: a knob has at least one value. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The position of `value` among the knob's values.
    pub fn position(&self, value: &KnobValue) -> Option<usize> {
        self.values.iter().position(|candidate| candidate == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(knob: &Knob) -> Vec<Vec<i64>> {
        knob.values()
            .iter()
            .map(|value| match value {
                KnobValue::Split(parts) => parts.clone(),
                other => panic!("not a split: {other}"),
            })
            .collect()
    }

    #[test]
    fn divisor_split_has_no_tails_and_power_split_rounds_the_outer_part_up() {
        let knob = Knob::split("tile", 12, &[Factors::Divisors]).unwrap();
        assert_eq!(
            splits(&knob),
            [[12, 1], [6, 2], [4, 3], [3, 4], [2, 6], [1, 12]]
        );
        let knob = Knob::split("tile", 6, &[Factors::PowersOfTwo]).unwrap();
        assert_eq!(splits(&knob), [[6, 1], [3, 2], [2, 4]]);
    }

    #[test]
    fn three_part_split_chooses_inner_parts_from_what_is_left() {
        let knob = Knob::split("tile", 8, &[Factors::Divisors, Factors::List(vec![4, 3])]).unwrap();
        assert_eq!(splits(&knob), [[3, 1, 3], [1, 3, 3], [2, 1, 4], [1, 2, 4]]);
    }

    #[test]
    fn list_split_falls_back_to_the_whole_extent() {
        let knob = Knob::split("tile_j", 3, &[Factors::List(vec![4, 8])]).unwrap();
        assert_eq!(splits(&knob), [[1, 3]]);
    }

    #[test]
    fn bad_knobs_are_named() {
        assert_eq!(
            Knob::split("tile_i", 0, &[Factors::Divisors]).unwrap_err(),
            SpaceError::BadKnob {
                knob: "tile_i".into(),
                message: "split of an axis of extent 0".into()
            }
        );
        let err = Knob::reorder("order", &["i", "j"], &[vec![0, 0]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "knob `order`: [0, 0] is not a permutation of 2 loops"
        );
        assert!(matches!(
            Knob::choice("pack", &[]),
            Err(SpaceError::BadKnob { .. })
        ));
    }

    #[test]
    fn annotate_enumerates_every_combination() {
        use Annotation::*;
        let knob = Knob::annotate(
            "ann",
            &["ry", "rx"],
            &[vec![None, Unroll], vec![None, Unroll]],
        )
        .unwrap();
        assert_eq!(knob.len(), 4);
        assert_eq!(
            knob.values()[1],
            KnobValue::Annotate(vec!["none".into(), "unroll".into()])
        );
        assert_eq!(Annotation::parse("vectorize"), Some(Vectorize));
        assert_eq!(Annotation::parse("sideways"), Option::None);
    }
}
