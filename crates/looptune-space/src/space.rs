//! `ConfigSpace` and `Config`: the points of a template's space and how they are numbered.
//!
//! A space is its knobs in definition order plus constraints between them. A point is one
//! choice per knob; its index is the mixed-radix number whose first knob is the least
//! significant digit (AutoTVM's numbering). Points that break a constraint are not part of the
//! space: [`ConfigSpace::get`] and [`ConfigSpace::from_values`] refuse them, and iteration,
//! sampling and neighbour moves skip them, so every [`Config`] that exists is valid. `size()`
//! counts the raw product, invalid points included, because counting the valid ones would mean
//! enumerating a space that may have more than 2^64 points.

use crate::error::SpaceError;
use crate::knob::{Annotation, Knob};
use crate::value::{ConfigValues, KnobValue};
use looptune_ir::random::SplitMix64;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Spaces larger than this cannot be permuted by [`Sampler`] (its Feistel network works on at
/// most 126 bits).
const MAX_SPACE_BITS: u32 = 126;

/// A predicate between knobs that every point of a space must satisfy.
#[derive(Clone)]
pub struct Constraint {
    name: String,
    holds: Arc<dyn Fn(&Config) -> bool + Send + Sync>,
}

impl Constraint {
    /// The constraint's name, as errors print it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Constraint({})", self.name)
    }
}

/// The points a template may be given: knobs in definition order and the constraints between
/// them.
#[derive(Clone, Debug, Default)]
pub struct ConfigSpace {
    knobs: Vec<Knob>,
    names: Arc<Vec<String>>,
    by_name: HashMap<String, usize>,
    constraints: Vec<Constraint>,
    size: u128,
}

/// One valid point of a [`ConfigSpace`]: a value per knob. Only its space makes one, so holding
/// a `Config` means holding a point that satisfies every constraint of that space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    index: u128,
    choices: Vec<usize>,
    names: Arc<Vec<String>>,
    values: Vec<KnobValue>,
}

impl ConfigSpace {
    /// An empty space (one point, no knobs) to add knobs to.
    pub fn new() -> ConfigSpace {
        ConfigSpace {
            size: 1,
            ..ConfigSpace::default()
        }
    }

    /// Appends a knob; its choice becomes the next (more significant) digit of the index.
    pub fn add(&mut self, knob: Knob) -> Result<(), SpaceError> {
        if self.by_name.contains_key(knob.name()) {
            return Err(SpaceError::DuplicateKnob {
                knob: knob.name().to_string(),
            });
        }
        let size = self
            .size
            .checked_mul(knob.len() as u128)
            .filter(|size| *size <= 1u128 << MAX_SPACE_BITS)
            .ok_or_else(|| SpaceError::TooLarge {
                knob: knob.name().to_string(),
            })?;
        self.size = size;
        self.by_name
            .insert(knob.name().to_string(), self.knobs.len());
        Arc::make_mut(&mut self.names).push(knob.name().to_string());
        self.knobs.push(knob);
        Ok(())
    }

    /// Adds a constraint: points for which `holds` is false are excluded from the space.
    pub fn constrain(
        &mut self,
        name: &str,
        holds: impl Fn(&Config) -> bool + Send + Sync + 'static,
    ) {
        self.constraints.push(Constraint {
            name: name.to_string(),
            holds: Arc::new(holds),
        });
    }

    /// The knobs, in definition order.
    pub fn knobs(&self) -> &[Knob] {
        &self.knobs
    }

    /// The knob called `name`.
    pub fn knob(&self, name: &str) -> Option<&Knob> {
        self.by_name
            .get(name)
            .map(|&position| &self.knobs[position])
    }

    /// The constraints, in the order added.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// The number of points before constraints: the product of the knobs' value counts, and
    /// the bound of every index.
    pub fn size(&self) -> u128 {
        self.size
    }

    /// The per-knob choices of `index`, without checking constraints.
    fn digits(&self, index: u128) -> Result<Vec<usize>, SpaceError> {
        if index >= self.size {
            return Err(SpaceError::IndexOutOfRange {
                index,
                size: self.size,
            });
        }
        let mut rest = index;
        Ok(self
            .knobs
            .iter()
            .map(|knob| {
                let radix = knob.len() as u128;
                let digit = (rest % radix) as usize;
                rest /= radix;
                digit
            })
            .collect())
    }

    fn index_of(&self, choices: &[usize]) -> u128 {
        choices
            .iter()
            .zip(&self.knobs)
            .rev()
            .fold(0u128, |index, (&choice, knob)| {
                index * knob.len() as u128 + choice as u128
            })
    }

    /// A point made from in-range choices; constraints not yet checked.
    fn unchecked(&self, choices: Vec<usize>) -> Config {
        Config {
            index: self.index_of(&choices),
            values: choices
                .iter()
                .zip(&self.knobs)
                .map(|(&choice, knob)| knob.values()[choice].clone())
                .collect(),
            choices,
            names: Arc::clone(&self.names),
        }
    }

    /// The first constraint `config` breaks, if any.
    fn broken(&self, config: &Config) -> Option<&Constraint> {
        self.constraints
            .iter()
            .find(|constraint| !(constraint.holds)(config))
    }

    fn checked(&self, config: Config) -> Result<Config, SpaceError> {
        match self.broken(&config) {
            None => Ok(config),
            Some(constraint) => Err(SpaceError::Violates {
                constraint: constraint.name.clone(),
                config: config.to_string(),
            }),
        }
    }

    /// The point at `index`, or why there is none (out of range, or a broken constraint).
    pub fn get(&self, index: u128) -> Result<Config, SpaceError> {
        let choices = self.digits(index)?;
        self.checked(self.unchecked(choices))
    }

    /// Whether `index` is a valid point.
    pub fn is_valid(&self, index: u128) -> bool {
        self.get(index).is_ok()
    }

    /// The point with these per-knob choices (positions into each knob's values).
    pub fn from_choices(&self, choices: &[usize]) -> Result<Config, SpaceError> {
        if choices.len() != self.knobs.len() {
            let knob = self.knobs.get(choices.len()).map_or_else(
                || format!("#{}", self.knobs.len()),
                |k| k.name().to_string(),
            );
            return Err(SpaceError::MissingKnob { knob });
        }
        for (&choice, knob) in choices.iter().zip(&self.knobs) {
            if choice >= knob.len() {
                return Err(SpaceError::ChoiceOutOfRange {
                    knob: knob.name().to_string(),
                    choice,
                    count: knob.len(),
                });
            }
        }
        self.checked(self.unchecked(choices.to_vec()))
    }

    /// The point with these knob values, as a tuning log records them (any order; every knob
    /// exactly once, except that a knob [added later](crate::Knob::added_later) may be absent).
    pub fn from_values(&self, values: &ConfigValues) -> Result<Config, SpaceError> {
        let mut choices: Vec<Option<usize>> = vec![None; self.knobs.len()];
        for (name, value) in values {
            let Some(&position) = self.by_name.get(name) else {
                return Err(SpaceError::UnknownKnob {
                    knob: name.clone(),
                    known: self.names.join(", "),
                });
            };
            if choices[position].is_some() {
                return Err(SpaceError::RepeatedKnob { knob: name.clone() });
            }
            let knob = &self.knobs[position];
            let choice = knob
                .position(value)
                .ok_or_else(|| SpaceError::IllegalValue {
                    knob: name.clone(),
                    value: value.to_string(),
                })?;
            choices[position] = Some(choice);
        }
        let mut complete = Vec::with_capacity(choices.len());
        for (choice, knob) in choices.into_iter().zip(&self.knobs) {
            complete.push(choice.or(knob.absent_choice()).ok_or_else(|| {
                SpaceError::MissingKnob {
                    knob: knob.name().to_string(),
                }
            })?);
        }
        self.checked(self.unchecked(complete))
    }

    /// Every valid point in index order (a grid search; for small spaces and tests).
    pub fn iter(&self) -> impl Iterator<Item = Config> + '_ {
        (0..self.size).filter_map(|index| self.get(index).ok())
    }

    /// Valid points in a pseudo-random order without repetition, from `seed`. Nothing is
    /// materialised: the order is a keyed permutation of the index range, so a space of 2^100
    /// points costs no more memory than one of 100. Iteration ends when every index has been
    /// visited; in a space whose valid points are rare, finding the next one may take long.
    pub fn sample(&self, seed: u64) -> Sampler<'_> {
        Sampler {
            space: self,
            permutation: Permutation::new(self.size, seed),
            position: 0,
        }
    }

    /// A valid point that differs from `config` in exactly one knob (for simulated annealing),
    /// or `None` when no such point was found in a bounded number of tries (a space of one
    /// point, or one whose constraints pin `config` in place).
    pub fn neighbour(&self, config: &Config, random: &mut SplitMix64) -> Option<Config> {
        let movable: Vec<usize> = (0..self.knobs.len())
            .filter(|&position| self.knobs[position].len() > 1)
            .collect();
        if movable.is_empty() {
            return None;
        }
        for _ in 0..64 {
            let position = movable[random.below(movable.len())];
            let count = self.knobs[position].len();
            let offset = 1 + random.below(count - 1);
            let mut choices = config.choices.clone();
            choices[position] = (choices[position] + offset) % count;
            let candidate = self.unchecked(choices);
            if self.broken(&candidate).is_none() {
                return Some(candidate);
            }
        }
        None
    }
}

/// Valid points of a space in a seeded pseudo-random order, each at most once (see
/// [`ConfigSpace::sample`]).
#[derive(Debug)]
pub struct Sampler<'a> {
    space: &'a ConfigSpace,
    permutation: Permutation,
    position: u128,
}

impl Iterator for Sampler<'_> {
    type Item = Config;

    fn next(&mut self) -> Option<Config> {
        while self.position < self.permutation.domain() {
            let index = self.permutation.apply(self.position);
            self.position += 1;
            if index < self.space.size {
                if let Ok(config) = self.space.get(index) {
                    return Some(config);
                }
            }
        }
        None
    }
}

/// A keyed bijection of `0..2^bits` (a four-round Feistel network over two halves), used to
/// visit the indices of a space in a random order without remembering which were seen. Values
/// at or past the space's size are skipped by the caller; the domain is less than four times the
/// size, so that costs at most a few extra steps per point.
#[derive(Clone, Debug)]
struct Permutation {
    half_bits: u32,
    keys: [u64; 4],
}

impl Permutation {
    fn new(size: u128, seed: u64) -> Permutation {
        let bits = (128 - size.saturating_sub(1).leading_zeros()).max(2);
        let bits = bits + bits % 2;
        let mut random = SplitMix64::new(seed);
        Permutation {
            half_bits: bits / 2,
            keys: [
                random.next_u64(),
                random.next_u64(),
                random.next_u64(),
                random.next_u64(),
            ],
        }
    }

    fn domain(&self) -> u128 {
        1u128 << (2 * self.half_bits)
    }

    fn apply(&self, value: u128) -> u128 {
        let mask = (1u128 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for key in self.keys {
            let mixed = SplitMix64::new((right as u64) ^ key).next_u64() as u128;
            (left, right) = (right, left ^ (mixed & mask));
        }
        (left << self.half_bits) | right
    }
}

impl Config {
    /// The point's index in its space (mixed radix, first knob least significant).
    pub fn index(&self) -> u128 {
        self.index
    }

    /// The position of each knob's value among that knob's values, in knob order.
    pub fn choices(&self) -> &[usize] {
        &self.choices
    }

    /// The value of knob `name`, if the space has such a knob.
    pub fn value(&self, name: &str) -> Option<&KnobValue> {
        self.names
            .iter()
            .position(|knob| knob == name)
            .map(|position| &self.values[position])
    }

    fn expect(&self, name: &str) -> Result<&KnobValue, SpaceError> {
        self.value(name).ok_or_else(|| SpaceError::MissingKnob {
            knob: name.to_string(),
        })
    }

    fn wrong_kind(name: &str, expected: &'static str, value: &KnobValue) -> SpaceError {
        SpaceError::WrongKind {
            knob: name.to_string(),
            expected,
            value: value.to_string(),
        }
    }

    /// The parts of split knob `name`, outermost first.
    pub fn split(&self, name: &str) -> Result<&[i64], SpaceError> {
        match self.expect(name)? {
            KnobValue::Split(parts) => Ok(parts),
            other => Err(Config::wrong_kind(name, "split", other)),
        }
    }

    /// The permutation of reorder knob `name`.
    pub fn reorder(&self, name: &str) -> Result<&[usize], SpaceError> {
        match self.expect(name)? {
            KnobValue::Reorder(order) => Ok(order),
            other => Err(Config::wrong_kind(name, "reorder", other)),
        }
    }

    /// The annotations of annotate knob `name`, one per loop.
    pub fn annotate(&self, name: &str) -> Result<Vec<Annotation>, SpaceError> {
        match self.expect(name)? {
            KnobValue::Annotate(kinds) => kinds
                .iter()
                .map(|kind| {
                    Annotation::parse(kind).ok_or_else(|| SpaceError::IllegalValue {
                        knob: name.to_string(),
                        value: kind.clone(),
                    })
                })
                .collect(),
            other => Err(Config::wrong_kind(name, "annotate", other)),
        }
    }

    /// The value of choice knob `name`.
    pub fn choice(&self, name: &str) -> Result<i64, SpaceError> {
        match self.expect(name)? {
            KnobValue::Choice(value) => Ok(*value),
            other => Err(Config::wrong_kind(name, "choice", other)),
        }
    }

    /// The point as knob values in knob order: what a tuning log records.
    pub fn to_values(&self) -> ConfigValues {
        self.names
            .iter()
            .cloned()
            .zip(self.values.iter().cloned())
            .collect()
    }
}

impl fmt::Display for Config {
    /// `name=value` pairs in knob order, e.g. `tile_i=split[128, 1, 4], pack_b=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, (name, value)) in self.names.iter().zip(&self.values).enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
