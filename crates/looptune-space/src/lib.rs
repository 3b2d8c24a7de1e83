//! `looptune-space`: the schedules a tuner may choose from, and how a choice is written down.
//!
//! A template turns a workload and a [`Config`] (one value per knob) into a schedule; the
//! [`ConfigSpace`] of a task says which values each knob may take and which combinations are
//! legal. Configs are recorded in tuning logs as knob values, never as bare indices, so that a
//! log stays readable when a space grows.
//!
//! The crate is shaped around one promise: every [`Config`] that exists lowers to a correct
//! program. A `Config` can only be made by its space, and a space refuses points that break one
//! of its constraints (register pressure, vector widths), so an invalid point is excluded when
//! it is enumerated or sampled rather than discovered when it is measured.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod custom;
pub mod error;
pub mod key;
pub mod knob;
pub mod space;
pub mod task;
pub mod templates;
pub mod value;
pub mod vector_shape;

pub use custom::{CustomTask, CustomTaskError, CUSTOM_KEY_PREFIX};
pub use error::{SpaceError, TemplateError};
pub use key::TaskKey;
pub use knob::{Annotation, Factors, Knob, KnobKind};
pub use space::{Config, ConfigSpace, Constraint, Sampler};
pub use task::Task;
pub use value::{ConfigValues, KnobValue};
pub use vector_shape::VectorShape;
