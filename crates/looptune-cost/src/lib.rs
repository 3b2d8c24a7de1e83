//! `looptune-cost`: what search knows about a config before measuring it.
//!
//! Three parts, each usable alone: [`features`] turns a config's lowered loop nest into a
//! fixed-length vector of numbers; [`model`] learns throughput over such vectors
//! ([`CostModel`], with [`XgbModel`] through XGBoost, ranking by default); [`anneal`] searches a
//! space for the configs a score likes best, with chains that persist across rounds. The tuner
//! that ties them to measurements lives in `looptune-tune`.
//!
//! The crate is off the deploy path on purpose: it links XGBoost (a C++ library built from
//! source), which a program that only runs tuned kernels must not need.
//!
//! **Invariant:** the cost model sees features, never wall-clock time.
//!
//! **Invariant:** features have a fixed length per task, decided before any config is seen.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anneal;
pub mod error;
pub mod features;
pub mod model;

pub use anneal::{AnnealOptions, Annealer, RoundStats};
pub use error::CostError;
pub use features::FeatureSpec;
pub use model::{spearman, CostModel, Group, Objective, XgbModel, XgbOptions, MISSING};
