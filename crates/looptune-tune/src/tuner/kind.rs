//! Building a tuner from its name: the one place that maps `random`, `grid`, `ga` and `xgb` to a
//! tuner, for the command line, the high-level tuning API and the examples alike.

use super::{GaTuner, GridTuner, RandomTuner, Tuner};
use crate::model::{TransferSet, XgbTuner, XgbTunerStats};
use looptune_cost::CostError;
use looptune_space::{ConfigSpace, Task};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Which tuner proposes configs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunerKind {
    /// Uniform sampling without replacement ([`RandomTuner`]).
    #[default]
    Random,
    /// The space in index order ([`GridTuner`]).
    Grid,
    /// Genetic: elites, crossover over knobs, mutation ([`GaTuner`]).
    Ga,
    /// XGBoost over loop-nest features, searched by simulated annealing ([`XgbTuner`]).
    Xgb,
}

impl TunerKind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [TunerKind; 4] = [
        TunerKind::Random,
        TunerKind::Grid,
        TunerKind::Xgb,
        TunerKind::Ga,
    ];

    /// The name the log records and the command line takes.
    pub fn name(self) -> &'static str {
        match self {
            TunerKind::Random => "random",
            TunerKind::Grid => "grid",
            TunerKind::Ga => "ga",
            TunerKind::Xgb => "xgb",
        }
    }
}

impl fmt::Display for TunerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tuner name that is none of [`TunerKind::ALL`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown tuner `{0}`: expected random, grid, xgb or ga")]
pub struct UnknownTuner(pub String);

impl FromStr for TunerKind {
    type Err = UnknownTuner;

    fn from_str(text: &str) -> Result<TunerKind, UnknownTuner> {
        TunerKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| UnknownTuner(text.to_string()))
    }
}

/// A tuner of one of the kinds, kept concrete so that the model-guided one can report where
/// its time went.
pub enum BuiltTuner<'a> {
    /// A model-free tuner.
    Plain(Box<dyn Tuner + 'a>),
    /// The model-guided tuner.
    Xgb(Box<XgbTuner<'a>>),
}

impl<'a> BuiltTuner<'a> {
    /// A tuner of `kind` for `task` from `seed`. The model-guided tuner is pre-trained on
    /// `transfer` (records of other shapes of the operator) when it is given and not empty; the
    /// others ignore it. An error only when the model's options cannot work.
    pub fn new(
        kind: TunerKind,
        task: &'a Task,
        seed: u64,
        transfer: Option<TransferSet>,
    ) -> Result<BuiltTuner<'a>, CostError> {
        if let Some(tuner) = BuiltTuner::model_free(kind, task.space(), seed) {
            return Ok(tuner);
        }
        let tuner = XgbTuner::with_defaults(task, seed)?;
        Ok(BuiltTuner::Xgb(Box::new(match transfer {
            Some(set) => tuner.with_transfer(set),
            None => tuner,
        })))
    }

    /// A tuner of `kind` over `space` alone, for tasks without a built-in operator's
    /// [`Task`] (a user's `CustomTask`); `None` for [`TunerKind::Xgb`], whose features are read
    /// from a built-in task's loop nests.
    pub fn model_free(
        kind: TunerKind,
        space: &'a ConfigSpace,
        seed: u64,
    ) -> Option<BuiltTuner<'a>> {
        let tuner: Box<dyn Tuner + 'a> = match kind {
            TunerKind::Random => Box::new(RandomTuner::new(space, seed)),
            TunerKind::Grid => Box::new(GridTuner::new(space)),
            TunerKind::Ga => Box::new(GaTuner::with_defaults(space, seed)),
            TunerKind::Xgb => return None,
        };
        Some(BuiltTuner::Plain(tuner))
    }

    /// The tuner, to drive.
    pub fn as_tuner(&mut self) -> &mut (dyn Tuner + 'a) {
        match self {
            BuiltTuner::Plain(tuner) => tuner.as_mut(),
            BuiltTuner::Xgb(tuner) => tuner.as_mut(),
        }
    }

    /// The tuner alone, for drivers that keep tuners of several kinds side by side.
    pub fn into_tuner(self) -> Box<dyn Tuner + 'a> {
        match self {
            BuiltTuner::Plain(tuner) => tuner,
            BuiltTuner::Xgb(tuner) => tuner,
        }
    }

    /// Where the model-guided tuner spent its time; `None` for the others.
    pub fn xgb_stats(&self) -> Option<&XgbTunerStats> {
        match self {
            BuiltTuner::Plain(_) => None,
            BuiltTuner::Xgb(tuner) => Some(tuner.stats()),
        }
    }
}

impl fmt::Debug for BuiltTuner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuiltTuner::Plain(tuner) => write!(f, "BuiltTuner({})", tuner.name()),
            BuiltTuner::Xgb(tuner) => write!(f, "BuiltTuner({tuner:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use looptune_ir::ops::MatmulParams;
    use looptune_ir::Workload;

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for kind in TunerKind::ALL {
            assert_eq!(kind.name().parse::<TunerKind>(), Ok(kind));
        }
        let error = "annealing".parse::<TunerKind>().unwrap_err();
        assert!(error.to_string().contains("`annealing`"), "{error}");
    }

    #[test]
    fn each_kind_builds_the_tuner_that_records_its_name() {
        let workload = Workload::Matmul(MatmulParams {
            m: 16,
            n: 16,
            k: 16,
            transpose_b: false,
        });
        let task = Task::new(workload).expect("a small matmul has a task");
        for kind in TunerKind::ALL {
            let mut built = BuiltTuner::new(kind, &task, 7, None).expect("default options work");
            assert_eq!(built.as_tuner().name(), kind.name());
            assert_eq!(built.xgb_stats().is_some(), kind == TunerKind::Xgb);
            let model_free = BuiltTuner::model_free(kind, task.space(), 7);
            assert_eq!(model_free.is_none(), kind == TunerKind::Xgb);
            if let Some(mut tuner) = model_free {
                assert_eq!(tuner.as_tuner().name(), kind.name());
            }
        }
    }
}
