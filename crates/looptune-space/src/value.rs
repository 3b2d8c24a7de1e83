//! Knob values as they are recorded: the part of a config that a tuning log stores.
//!
//! Kept apart from the spaces themselves so that the log (and deploy-time dispatch) can read and
//! write configs without knowing how spaces are enumerated.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The value one knob takes in a config.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnobValue {
    /// The extents of the loops an axis is split into, outermost first (their product covers
    /// the axis; the outermost may be rounded up).
    Split(Vec<i64>),
    /// A permutation of a stage's loops, as positions in the knob's candidate list of axes.
    Reorder(Vec<usize>),
    /// How each of a list of loops runs: `none`, `unroll`, `vectorize` or `parallel`.
    Annotate(Vec<String>),
    /// One of a list of integer options (a register-tile shape index, on/off, a limit).
    Choice(i64),
}

impl fmt::Display for KnobValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |items: Vec<String>| items.join(", ");
        match self {
            KnobValue::Split(sizes) => write!(
                f,
                "split[{}]",
                join(sizes.iter().map(i64::to_string).collect())
            ),
            KnobValue::Reorder(order) => write!(
                f,
                "reorder[{}]",
                join(order.iter().map(usize::to_string).collect())
            ),
            KnobValue::Annotate(kinds) => write!(f, "annotate[{}]", join(kinds.clone())),
            KnobValue::Choice(value) => write!(f, "{value}"),
        }
    }
}

/// A config written as knob values, in the space's knob order: what a tuning-log record holds.
pub type ConfigValues = Vec<(String, KnobValue)>;
