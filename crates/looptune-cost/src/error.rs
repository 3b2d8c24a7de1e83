//! Errors of feature extraction and of the cost model.

use thiserror::Error;

/// Why features could not be computed or a model could not be fitted or queried.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CostError {
    /// The config's template or lowering failed (a bug in a template: every config must lower).
    #[error("config `{config}` did not lower: {message}")]
    Lower {
        /// The config, as its knob values print.
        config: String,
        /// What lowering said.
        message: String,
    },
    /// Knob choices of another space were given to a feature layout.
    #[error("{found} knob choices given to a feature layout of {expected} knobs")]
    KnobCount {
        /// Knobs of the layout.
        expected: usize,
        /// Choices given.
        found: usize,
    },
    /// A feature row whose length differs from the first row's.
    #[error("feature row {row} has {found} values, but row 0 has {expected}")]
    RowLength {
        /// The offending row.
        row: usize,
        /// Length of row 0.
        expected: usize,
        /// Length of the offending row.
        found: usize,
    },
    /// Training data whose feature and target counts differ.
    #[error("{features} feature rows but {targets} throughputs")]
    TargetCount {
        /// Feature rows given.
        features: usize,
        /// Throughputs given.
        targets: usize,
    },
    /// A model option outside its range.
    #[error("invalid model option `{name}` = {value}: {reason}")]
    Option {
        /// The option.
        name: &'static str,
        /// Its value, as given.
        value: String,
        /// What it must be.
        reason: &'static str,
    },
    /// XGBoost itself failed.
    #[error("XGBoost failed while {during}: {message}")]
    Xgboost {
        /// What the model was doing.
        during: &'static str,
        /// XGBoost's message.
        message: String,
    },
}
