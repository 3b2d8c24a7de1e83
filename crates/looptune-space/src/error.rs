//! Errors of spaces and templates, each naming the knob, value or constraint at fault.

use looptune_ir::recipes::RecipeError;
use looptune_ir::{IrError, LowerError, ScheduleError};
use thiserror::Error;

/// Why a knob, a space or a config could not be built or read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpaceError {
    /// Two knobs of one space share a name.
    #[error("knob `{knob}` is defined twice")]
    DuplicateKnob {
        /// The name used twice.
        knob: String,
    },
    /// A knob's definition is not usable (no candidates, a bad extent, a bad permutation).
    #[error("knob `{knob}`: {message}")]
    BadKnob {
        /// The knob.
        knob: String,
        /// What is wrong with it.
        message: String,
    },
    /// Adding the knob would make the space larger than a sampler can permute.
    #[error("knob `{knob}` makes the space larger than 2^126 points")]
    TooLarge {
        /// The knob that overflowed the space.
        knob: String,
    },
    /// An index at or past the end of the space.
    #[error("config index {index} is out of range for a space of {size} points")]
    IndexOutOfRange {
        /// The index asked for.
        index: u128,
        /// The number of points of the space.
        size: u128,
    },
    /// Per-knob choices of the wrong length or out of a knob's range.
    #[error("choice {choice} of knob `{knob}` is out of range (it has {count} values)")]
    ChoiceOutOfRange {
        /// The knob.
        knob: String,
        /// The choice asked for.
        choice: usize,
        /// How many values the knob has.
        count: usize,
    },
    /// Knob values name a knob the space does not have.
    #[error("unknown knob `{knob}` (known: {known})")]
    UnknownKnob {
        /// The unknown name.
        knob: String,
        /// The space's knobs, comma-separated.
        known: String,
    },
    /// Knob values leave out a knob of the space.
    #[error("no value for knob `{knob}`")]
    MissingKnob {
        /// The knob without a value.
        knob: String,
    },
    /// Knob values give one knob twice.
    #[error("knob `{knob}` is given twice")]
    RepeatedKnob {
        /// The knob given twice.
        knob: String,
    },
    /// A value the knob cannot take.
    #[error("`{value}` is not a value of knob `{knob}`")]
    IllegalValue {
        /// The knob.
        knob: String,
        /// The value, as the log prints it.
        value: String,
    },
    /// A template read a knob as the wrong kind (a split as a choice, say).
    #[error("knob `{knob}` holds `{value}`, not a {expected}")]
    WrongKind {
        /// The knob.
        knob: String,
        /// The kind the reader expected.
        expected: &'static str,
        /// The value it holds.
        value: String,
    },
    /// The point breaks a constraint between knobs: it is not part of the space.
    #[error("config {config} breaks constraint `{constraint}`")]
    Violates {
        /// The constraint's name.
        constraint: String,
        /// The config, as knob values.
        config: String,
    },
    /// A vector shape no template can size a space for (lanes not a power of two, say).
    #[error("vector shape {shape}: {message}")]
    BadVectorShape {
        /// The shape, as `VectorShape` prints it.
        shape: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Why a template could not produce a schedule.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum TemplateError {
    /// The config does not belong to the template's space.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// The operator definition could not be built.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// A schedule primitive rejected its arguments: a bug in the template, reported as data.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Lowering failed: a bug in the template or the space's constraints, reported as data.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// A recipe could not be applied.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
}
