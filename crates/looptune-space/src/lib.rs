//! `looptune-space`: the schedules a tuner may choose from, and how a choice is written down.
//!
//! A template turns a workload and a [`Config`] (one value per knob) into a schedule; the
//! [`ConfigSpace`] of a task says which values each knob may take and which combinations are
//! legal. Configs are recorded in tuning logs as knob values, never as bare indices, so that a
//! log stays readable when a space grows.

#![deny(missing_docs)]

pub mod value;

pub use value::{ConfigValues, KnobValue};
