//! What the tuning loop needs from a task: its workload, its space, and a way to turn a config
//! into something the measurer can run.
//!
//! A trait rather than a concrete type so that the loop is tested with small hand-made spaces
//! and runs any template (built-in operators, user-defined ones) the same way.

use looptune_ir::Workload;
use looptune_jit::MeasureInput;
use looptune_space::{Config, ConfigSpace};

/// A tunable task.
pub trait TuningTask {
    /// The workload, whose canonical text is the log's workload key.
    fn workload(&self) -> &Workload;

    /// The configs the tuner may choose from.
    fn space(&self) -> &ConfigSpace;

    /// The program and lowered nest of `config`. An error here is a bug in a template (every
    /// config of a space must lower); the loop records it as an `InvalidConfig` and goes on.
    fn measure_input(&self, config: &Config) -> Result<MeasureInput, String>;
}

impl TuningTask for looptune_space::Task {
    fn workload(&self) -> &Workload {
        looptune_space::Task::workload(self)
    }

    fn space(&self) -> &ConfigSpace {
        looptune_space::Task::space(self)
    }

    fn measure_input(&self, config: &Config) -> Result<MeasureInput, String> {
        let nest = self.lower(config).map_err(|error| error.to_string())?;
        let program = self
            .reference_program()
            .map_err(|error| error.to_string())?;
        Ok(MeasureInput::new(program, nest, self.flops()))
    }
}
