//! `Task`: what a tuner works on — a workload, its template and space, and its FLOP count.

use crate::error::{SpaceError, TemplateError};
use crate::space::{Config, ConfigSpace};
use crate::templates;
use looptune_ir::ops::Layout;
use looptune_ir::{lower, IrError, LoopNest, Program, Schedule, Workload};

/// A workload with the template that schedules it and the space of that template.
#[derive(Clone, Debug)]
pub struct Task {
    workload: Workload,
    space: ConfigSpace,
    flops: f64,
}

impl Task {
    /// The task of `workload`, with its operator's template.
    pub fn new(workload: Workload) -> Result<Task, TemplateError> {
        workload.check()?;
        Ok(Task {
            space: templates::space(&workload)?,
            flops: workload.flops(),
            workload,
        })
    }

    /// The stable key of the workload in tuning logs: `Workload`'s canonical text form, with
    /// every parameter spelled out (`matmul:m=512,n=512,k=512,transpose_b=false`).
    pub fn key(&self) -> String {
        self.workload.to_string()
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The name of the template (`matmul.register_tile`).
    pub fn template_name(&self) -> &'static str {
        templates::template_name(&self.workload)
    }

    /// The space of the template.
    pub fn space(&self) -> &ConfigSpace {
        &self.space
    }

    /// Floating-point operations of one run, for GFLOP/s.
    pub fn flops(&self) -> f64 {
        self.flops
    }

    /// The schedule of `config`.
    pub fn schedule(&self, config: &Config) -> Result<Schedule, TemplateError> {
        templates::template(&self.workload, config)
    }

    /// The lowered loop nest of `config`.
    pub fn lower(&self, config: &Config) -> Result<LoopNest, TemplateError> {
        Ok(lower(&self.schedule(config)?)?)
    }

    /// The config used when nothing has been tuned (see each template's heuristic).
    pub fn fallback_config(&self) -> Result<Config, SpaceError> {
        templates::fallback_config(&self.workload, &self.space)
    }

    /// The program outputs are checked against: the operator with the default layout. Every
    /// point of the space computes the same outputs from the same inputs, whatever extra stages
    /// (a packed operand, a padded input) its own program has.
    pub fn reference_program(&self) -> Result<Program, IrError> {
        self.workload.program(&Layout::default())
    }
}
