//! What the tuning loop needs from a task: its log key, its space, and a way to turn a config
//! into something the measurer can run; and, for built-in operators, the workload itself.
//!
//! A trait rather than a concrete type so that the loop is tested with small hand-made spaces
//! and runs any template (built-in operators, user-defined ones) the same way.

use looptune_ir::Workload;
use looptune_runtime::MeasureInput;
use looptune_space::{Config, ConfigSpace, TaskKey, TemplateError};

/// A tunable task: a built-in operator's [`looptune_space::Task`] or a user's
/// [`looptune_space::CustomTask`].
pub trait TuningTask {
    /// The task's key in the log: a built-in workload's canonical text, `custom:NAME` for a
    /// user-defined task (which no built-in workload's text can be).
    fn key(&self) -> TaskKey;

    /// Floating-point operations per call, to turn seconds into GFLOP/s.
    fn flops(&self) -> f64;

    /// The configs the tuner may choose from.
    fn space(&self) -> &ConfigSpace;

    /// The program and lowered nest of `config`. An error here is a bug in a template (every
    /// config of a space must lower); the loop records it as an `InvalidConfig` and goes on.
    fn measure_input(&self, config: &Config) -> Result<MeasureInput, TemplateError>;
}

/// A task of a built-in operator: tasks of one operator share what was learned about their
/// configs (whole-model tuning groups them by [`Workload::op_name`]).
pub trait WorkloadTask: TuningTask {
    /// The workload, whose canonical text is [`TuningTask::key`].
    fn workload(&self) -> &Workload;
}

impl WorkloadTask for looptune_space::Task {
    fn workload(&self) -> &Workload {
        looptune_space::Task::workload(self)
    }
}

impl TuningTask for looptune_space::Task {
    fn key(&self) -> TaskKey {
        looptune_space::Task::key(self)
    }

    fn flops(&self) -> f64 {
        looptune_space::Task::flops(self)
    }

    fn space(&self) -> &ConfigSpace {
        looptune_space::Task::space(self)
    }

    fn measure_input(&self, config: &Config) -> Result<MeasureInput, TemplateError> {
        let nest = self.lower(config)?;
        let program = self.reference_program()?;
        Ok(MeasureInput::new(program, nest, self.flops()))
    }
}

impl TuningTask for looptune_space::CustomTask {
    fn key(&self) -> TaskKey {
        looptune_space::CustomTask::key(self)
    }

    fn flops(&self) -> f64 {
        looptune_space::CustomTask::flops(self)
    }

    fn space(&self) -> &ConfigSpace {
        looptune_space::CustomTask::space(self)
    }

    fn measure_input(&self, config: &Config) -> Result<MeasureInput, TemplateError> {
        let nest = self.lower(config)?;
        Ok(MeasureInput::new(
            self.reference_program().clone(),
            nest,
            self.flops(),
        ))
    }
}
