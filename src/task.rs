//! What is tuned and deployed: a built-in operator's workload or a user's operator, one type
//! for both so that the tuning API and deploy take either ([`Tunable`]), and the task made of it
//! for a backend ([`TunedTask`]). Both are keyed by the one [`TaskKey`].

use crate::backend::task_for;
use looptune_ir::{IrError, LoopNest, Program, Schedule, Workload};
use looptune_runtime::{Backend, Target};
use looptune_space::{Config, ConfigSpace, CustomTask, SpaceError, Task, TaskKey, TemplateError};

/// A built-in operator's workload, or a user's operator.
#[derive(Clone)]
pub enum Tunable {
    /// A built-in workload; its space is sized for the backend.
    Workload(Workload),
    /// A user's operator with its own space and template.
    Custom(Box<CustomTask>),
}

impl Tunable {
    /// Its key in logs and deploy databases.
    pub fn key(&self) -> TaskKey {
        match self {
            Tunable::Workload(workload) => TaskKey::of_workload(workload),
            Tunable::Custom(task) => task.key(),
        }
    }

    /// The task for `backend` on `target`: a workload's space sized for the backend's vectors,
    /// or the user's operator as it is.
    pub fn task_for(
        self,
        backend: &dyn Backend,
        target: &Target,
    ) -> Result<TunedTask, TemplateError> {
        Ok(match self {
            Tunable::Workload(workload) => {
                TunedTask::Builtin(Box::new(task_for(workload, backend, target)?))
            }
            Tunable::Custom(task) => TunedTask::Custom(task),
        })
    }
}

impl From<Workload> for Tunable {
    fn from(workload: Workload) -> Tunable {
        Tunable::Workload(workload)
    }
}

impl From<&Workload> for Tunable {
    fn from(workload: &Workload) -> Tunable {
        Tunable::Workload(*workload)
    }
}

impl From<CustomTask> for Tunable {
    fn from(task: CustomTask) -> Tunable {
        Tunable::Custom(Box::new(task))
    }
}

impl From<&CustomTask> for Tunable {
    fn from(task: &CustomTask) -> Tunable {
        Tunable::Custom(Box::new(task.clone()))
    }
}

/// The task of a [`Tunable`]: the built-in one made for a backend, or the user's.
#[derive(Clone, Debug)]
pub enum TunedTask {
    /// A built-in workload's task.
    Builtin(Box<Task>),
    /// A user's operator.
    Custom(Box<CustomTask>),
}

impl TunedTask {
    /// The built-in task, `None` for a user's operator.
    pub fn builtin(&self) -> Option<&Task> {
        match self {
            TunedTask::Builtin(task) => Some(task.as_ref()),
            TunedTask::Custom(_) => None,
        }
    }

    /// Its key in logs and deploy databases.
    pub fn key(&self) -> TaskKey {
        match self {
            TunedTask::Builtin(task) => task.key(),
            TunedTask::Custom(task) => task.key(),
        }
    }

    /// Floating-point operations per call.
    pub fn flops(&self) -> f64 {
        match self {
            TunedTask::Builtin(task) => task.flops(),
            TunedTask::Custom(task) => task.flops(),
        }
    }

    /// The configs to choose from.
    pub fn space(&self) -> &ConfigSpace {
        match self {
            TunedTask::Builtin(task) => task.space(),
            TunedTask::Custom(task) => task.space(),
        }
    }

    /// The template's fallback config: what runs when nothing was tuned.
    pub fn fallback_config(&self) -> Result<Config, SpaceError> {
        match self {
            TunedTask::Builtin(task) => task.fallback_config(),
            TunedTask::Custom(task) => Ok(task.fallback_config().clone()),
        }
    }

    /// The schedule of `config`.
    pub fn schedule(&self, config: &Config) -> Result<Schedule, TemplateError> {
        match self {
            TunedTask::Builtin(task) => task.schedule(config),
            TunedTask::Custom(task) => task.schedule(config),
        }
    }

    /// The loop nest of `config`.
    pub fn lower(&self, config: &Config) -> Result<LoopNest, TemplateError> {
        match self {
            TunedTask::Builtin(task) => task.lower(config),
            TunedTask::Custom(task) => task.lower(config),
        }
    }

    /// The program outputs are checked against (its definition, unscheduled).
    pub fn reference_program(&self) -> Result<Program, IrError> {
        match self {
            TunedTask::Builtin(task) => task.reference_program(),
            TunedTask::Custom(task) => Ok(task.reference_program().clone()),
        }
    }
}
