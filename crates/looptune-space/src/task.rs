//! `Task`: what a tuner works on — a workload, its template and space, and its FLOP count.

use crate::error::{SpaceError, TemplateError};
use crate::space::{Config, ConfigSpace};
use crate::templates;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::Layout;
use looptune_ir::{lower, IrError, LoopNest, Program, Schedule, Workload};

/// A workload with the template that schedules it, the space of that template and the vector
/// shape the space is sized for.
#[derive(Clone, Debug)]
pub struct Task {
    workload: Workload,
    vector_shape: VectorShape,
    space: ConfigSpace,
    flops: f64,
}

impl Task {
    /// The task of `workload`, with its operator's template sized for the Cranelift JIT
    /// ([`VectorShape::CRANELIFT`]: f32x4, 16 registers).
    pub fn new(workload: Workload) -> Result<Task, TemplateError> {
        Task::for_shape(workload, VectorShape::CRANELIFT)
    }

    /// The task of `workload`, with its operator's template sized for `vector_shape`: register
    /// tiles of whole vectors of its lanes, within its registers. The task keeps the shape, so
    /// its schedules and its fallback are those of the same space.
    pub fn for_shape(workload: Workload, vector_shape: VectorShape) -> Result<Task, TemplateError> {
        workload.check()?;
        Ok(Task {
            space: templates::space(&workload, &vector_shape)?,
            flops: workload.flops(),
            vector_shape,
            workload,
        })
    }

    /// The stable key of the workload in tuning logs: `Workload`'s canonical text form, with
    /// every parameter spelled out (`matmul:m=512,n=512,k=512,transpose_b=false`).
    pub fn key(&self) -> crate::TaskKey {
        crate::TaskKey::of_workload(&self.workload)
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The vector shape the space is sized for.
    pub fn vector_shape(&self) -> &VectorShape {
        &self.vector_shape
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
        templates::template(&self.workload, &self.vector_shape, config)
    }

    /// The lowered loop nest of `config`.
    pub fn lower(&self, config: &Config) -> Result<LoopNest, TemplateError> {
        Ok(lower(&self.schedule(config)?)?)
    }

    /// The config used when nothing has been tuned (see each template's heuristic).
    pub fn fallback_config(&self) -> Result<Config, SpaceError> {
        templates::fallback_config(&self.workload, &self.vector_shape, &self.space)
    }

    /// The program outputs are checked against: the operator with the default layout. Every
    /// point of the space computes the same outputs from the same inputs, whatever extra stages
    /// (a packed operand, a padded input) its own program has.
    pub fn reference_program(&self) -> Result<Program, IrError> {
        self.workload.program(&Layout::default())
    }
}
