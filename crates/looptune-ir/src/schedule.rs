//! Schedules: how each computed tensor's loops are split, ordered, annotated and placed.
//!
//! A [`Schedule`] owns a copy of the [`Program`] and one stage per computed tensor. Each stage
//! has root axes (its dimensions and reduction axes) and a list of leaf axes (the loops it will
//! have, outermost first) derived from the roots by splits and fuses. Primitives only record
//! decisions; [`crate::lower()`] turns them into a loop nest. Every primitive checks its arguments
//! and returns a [`ScheduleError`] naming the offending stage, axis or value.
//!
//! Placement: a stage is computed at the root (once, over its whole shape, before its
//! consumers), inlined into its consumers, or attached at a loop of its one consumer, where it is
//! computed for the region that the consumer's inner loops read, into a buffer of that region's
//! size. The last form, applied to the stage made by [`Schedule::cache_write`], is the register
//! tile of a matmul: an `MR x NR` accumulator kept across the whole reduction loop.

use crate::error::ScheduleError;
use crate::expr::{BufferId, IndexExpr, ValueExpr};
use crate::loop_nest::LoopKind;
use crate::program::{AxisDecl, ComputeBody, ComputeDef, Program, TensorDecl, TensorKind};

/// A stage of a schedule (one per computed tensor, plus cache stages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u32);

/// An iteration axis of a stage: a root axis or one made by split or fuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AxisId(pub u32);

/// Whether an axis iterates over output points or over a reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AxisKind {
    /// An output dimension: iterations are independent.
    Spatial,
    /// A reduction: iterations accumulate into the same element.
    Reduce,
}

/// How a split divides an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SplitBy {
    /// The inner axis has this extent (clamped to the axis extent); the outer covers the rest.
    Factor(i64),
    /// The outer axis has this extent (clamped to the axis extent); the inner covers the rest.
    Parts(i64),
}

/// A relation deriving leaf axes from root axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// `parent = outer * extent(inner) + inner`, guarded when the extents do not divide.
    Split {
        /// The axis split.
        parent: AxisId,
        /// The new outer axis.
        outer: AxisId,
        /// The new inner axis.
        inner: AxisId,
        /// How.
        by: SplitBy,
    },
    /// `fused = outer * extent(inner) + inner`.
    Fuse {
        /// The outer axis fused.
        outer: AxisId,
        /// The inner axis fused.
        inner: AxisId,
        /// The new axis.
        fused: AxisId,
    },
}

/// Where a stage is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Over its whole shape, before its consumers, at the top level of the kernel.
    Root,
    /// Substituted into its consumers' expressions; it has no loops.
    Inline,
    /// Inside the loop `axis` of stage `consumer`, over the region the loops inside read.
    At {
        /// The stage reading this one.
        consumer: StageId,
        /// The loop of `consumer` to compute at.
        axis: AxisId,
    },
}

/// What a schedule knows about one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisInfo {
    /// The axis name (`i`, `i.outer`, `i.j.fused`).
    pub name: String,
    /// The stage owning it.
    pub stage: StageId,
    /// Spatial or reduction.
    pub kind: AxisKind,
    /// How its loop runs, once it is a loop.
    pub annotation: LoopKind,
}

/// One stage: which tensor, its axes, its derived loops, its placement.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The tensor computed.
    pub tensor: BufferId,
    /// Root axes for the tensor's dimensions, in order.
    pub spatial: Vec<AxisId>,
    /// Root axes for the reduction, in order.
    pub reduce: Vec<AxisId>,
    /// The loops, outermost first.
    pub leaves: Vec<AxisId>,
    /// Splits and fuses in the order applied.
    pub relations: Vec<Relation>,
    /// Where it is computed.
    pub attach: Attach,
}

/// A program with scheduling decisions for each of its computed tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    program: Program,
    stages: Vec<Stage>,
    axes: Vec<AxisInfo>,
    /// Stages in an order where producers come before consumers.
    order: Vec<StageId>,
}

impl Schedule {
    /// The default schedule: every stage at the root in definition order, loops in definition
    /// order (output axes, then reduction axes), nothing annotated, except that zero-padding
    /// stages (`*.pad`) are inlined so that padding lives in bounds checks, not in a copy.
    pub fn new(program: &Program) -> Schedule {
        let mut schedule = Schedule {
            program: program.clone(),
            stages: Vec::new(),
            axes: Vec::new(),
            order: Vec::new(),
        };
        for index in 0..program.tensors.len() {
            if program.tensors[index].compute().is_some() {
                let stage = schedule.add_stage(BufferId(index as u32));
                schedule.order.push(stage);
            }
        }
        for stage in schedule.order.clone() {
            let tensor = schedule.tensor(stage);
            if tensor.name.ends_with(".pad")
                && !schedule
                    .program
                    .outputs
                    .contains(&schedule.stages[stage.0 as usize].tensor)
            {
                schedule.stages[stage.0 as usize].attach = Attach::Inline;
            }
        }
        schedule
    }

    fn add_stage(&mut self, tensor: BufferId) -> StageId {
        let stage = StageId(self.stages.len() as u32);
        let def = self.program.tensor(tensor).compute().cloned();
        let (spatial_names, reduce_names): (Vec<String>, Vec<String>) = match &def {
            Some(def) => (
                def.axes.iter().map(|a| a.name.clone()).collect(),
                def.body
                    .reduce_axes()
                    .iter()
                    .map(|a| a.name.clone())
                    .collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let spatial: Vec<AxisId> = spatial_names
            .iter()
            .map(|name| self.new_axis(stage, name, AxisKind::Spatial))
            .collect();
        let reduce: Vec<AxisId> = reduce_names
            .iter()
            .map(|name| self.new_axis(stage, name, AxisKind::Reduce))
            .collect();
        let leaves = spatial.iter().chain(&reduce).copied().collect();
        self.stages.push(Stage {
            tensor,
            spatial,
            reduce,
            leaves,
            relations: Vec::new(),
            attach: Attach::Root,
        });
        stage
    }

    fn new_axis(&mut self, stage: StageId, name: &str, kind: AxisKind) -> AxisId {
        self.axes.push(AxisInfo {
            name: name.to_string(),
            stage,
            kind,
            annotation: LoopKind::Serial,
        });
        AxisId(self.axes.len() as u32 - 1)
    }

    /// The scheduled program (cache stages included).
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Stage data.
    pub fn stage_data(&self, stage: StageId) -> &Stage {
        &self.stages[stage.0 as usize]
    }

    /// Axis data.
    pub fn axis_info(&self, axis: AxisId) -> &AxisInfo {
        &self.axes[axis.0 as usize]
    }

    /// Stages, producers before consumers.
    pub fn stage_order(&self) -> &[StageId] {
        &self.order
    }

    /// The tensor a stage computes.
    pub fn tensor(&self, stage: StageId) -> &TensorDecl {
        self.program.tensor(self.stage_data(stage).tensor)
    }

    /// The name of a stage (its tensor's name).
    pub fn stage_name(&self, stage: StageId) -> &str {
        &self.tensor(stage).name
    }

    /// The stage computing the tensor called `name`.
    pub fn stage(&self, name: &str) -> Result<StageId, ScheduleError> {
        self.order
            .iter()
            .copied()
            .find(|&stage| self.stage_name(stage) == name)
            .ok_or_else(|| ScheduleError::UnknownStage {
                stage: name.to_string(),
            })
    }

    /// The stage computing `tensor`, if it is computed.
    pub fn stage_of(&self, tensor: BufferId) -> Option<StageId> {
        self.order
            .iter()
            .copied()
            .find(|&stage| self.stage_data(stage).tensor == tensor)
    }

    /// The axis of `stage` called `name` (root or derived).
    pub fn axis(&self, stage: StageId, name: &str) -> Result<AxisId, ScheduleError> {
        self.axes
            .iter()
            .enumerate()
            .rev()
            .find(|(_, info)| info.stage == stage && info.name == name)
            .map(|(index, _)| AxisId(index as u32))
            .ok_or_else(|| ScheduleError::UnknownAxis {
                stage: self.stage_name(stage).to_string(),
                axis: name.to_string(),
            })
    }

    /// The output-dimension root axes of a stage.
    pub fn spatial_axes(&self, stage: StageId) -> Vec<AxisId> {
        self.stage_data(stage).spatial.clone()
    }

    /// The reduction root axes of a stage.
    pub fn reduce_axes(&self, stage: StageId) -> Vec<AxisId> {
        self.stage_data(stage).reduce.clone()
    }

    /// The current loops of a stage, outermost first.
    pub fn leaf_axes(&self, stage: StageId) -> Vec<AxisId> {
        self.stage_data(stage).leaves.clone()
    }

    fn axis_name(&self, axis: AxisId) -> String {
        self.axis_info(axis).name.clone()
    }

    /// Checks that `axis` is a current loop of `stage`.
    fn check_leaf(
        &self,
        primitive: &'static str,
        stage: StageId,
        axis: AxisId,
    ) -> Result<usize, ScheduleError> {
        self.check_not_inlined(stage)?;
        let info = self.axis_info(axis);
        if info.stage != stage {
            return Err(ScheduleError::AxisOfOtherStage {
                primitive,
                stage: self.stage_name(stage).to_string(),
                axis: info.name.clone(),
                owner: self.stage_name(info.stage).to_string(),
            });
        }
        self.stage_data(stage)
            .leaves
            .iter()
            .position(|&leaf| leaf == axis)
            .ok_or_else(|| ScheduleError::NotALeaf {
                stage: self.stage_name(stage).to_string(),
                axis: info.name.clone(),
            })
    }

    fn check_not_inlined(&self, stage: StageId) -> Result<(), ScheduleError> {
        if self.stage_data(stage).attach == Attach::Inline {
            return Err(ScheduleError::Inlined {
                stage: self.stage_name(stage).to_string(),
            });
        }
        Ok(())
    }

    /// Splits `axis` into an outer and an inner loop, the inner of `factor` iterations. A factor
    /// that does not divide the extent gives a guarded tail.
    pub fn split(
        &mut self,
        stage: StageId,
        axis: AxisId,
        factor: i64,
    ) -> Result<(AxisId, AxisId), ScheduleError> {
        self.split_by(stage, axis, SplitBy::Factor(factor))
    }

    /// Splits `axis` into `nparts` outer iterations and an inner loop covering the rest.
    pub fn split_parts(
        &mut self,
        stage: StageId,
        axis: AxisId,
        nparts: i64,
    ) -> Result<(AxisId, AxisId), ScheduleError> {
        self.split_by(stage, axis, SplitBy::Parts(nparts))
    }

    /// Splits `axis` as `by` says; returns `(outer, inner)`.
    pub fn split_by(
        &mut self,
        stage: StageId,
        axis: AxisId,
        by: SplitBy,
    ) -> Result<(AxisId, AxisId), ScheduleError> {
        let position = self.check_leaf("split", stage, axis)?;
        let (what, value) = match by {
            SplitBy::Factor(value) => ("factor", value),
            SplitBy::Parts(value) => ("nparts", value),
        };
        if value < 1 {
            return Err(ScheduleError::BadSplit {
                stage: self.stage_name(stage).to_string(),
                axis: self.axis_name(axis),
                what,
                value,
            });
        }
        let name = self.axis_name(axis);
        let kind = self.axis_info(axis).kind;
        let outer = self.new_axis(stage, &format!("{name}.outer"), kind);
        let inner = self.new_axis(stage, &format!("{name}.inner"), kind);
        let data = &mut self.stages[stage.0 as usize];
        data.leaves.splice(position..=position, [outer, inner]);
        data.relations.push(Relation::Split {
            parent: axis,
            outer,
            inner,
            by,
        });
        Ok((outer, inner))
    }

    /// Merges two adjacent loops, `outer` directly outside `inner`, into one.
    pub fn fuse(
        &mut self,
        stage: StageId,
        outer: AxisId,
        inner: AxisId,
    ) -> Result<AxisId, ScheduleError> {
        let outer_position = self.check_leaf("fuse", stage, outer)?;
        let inner_position = self.check_leaf("fuse", stage, inner)?;
        if inner_position != outer_position + 1 {
            return Err(ScheduleError::FuseNotAdjacent {
                stage: self.stage_name(stage).to_string(),
                outer: self.axis_name(outer),
                inner: self.axis_name(inner),
            });
        }
        let kind = self.axis_info(outer).kind;
        if kind != self.axis_info(inner).kind {
            return Err(ScheduleError::FuseMixedKinds {
                stage: self.stage_name(stage).to_string(),
                outer: self.axis_name(outer),
                inner: self.axis_name(inner),
            });
        }
        let name = format!("{}.{}.fused", self.axis_name(outer), self.axis_name(inner));
        let fused = self.new_axis(stage, &name, kind);
        let data = &mut self.stages[stage.0 as usize];
        data.leaves.splice(outer_position..=inner_position, [fused]);
        data.relations.push(Relation::Fuse {
            outer,
            inner,
            fused,
        });
        Ok(fused)
    }

    /// Puts the named loops in the given order, in the positions they occupy together; the
    /// other loops stay where they are.
    pub fn reorder(&mut self, stage: StageId, order: &[AxisId]) -> Result<(), ScheduleError> {
        let mut positions = Vec::with_capacity(order.len());
        for &axis in order {
            let position = self.check_leaf("reorder", stage, axis)?;
            if positions.contains(&position) {
                return Err(ScheduleError::DuplicateAxis {
                    stage: self.stage_name(stage).to_string(),
                    axis: self.axis_name(axis),
                });
            }
            positions.push(position);
        }
        positions.sort_unstable();
        let data = &mut self.stages[stage.0 as usize];
        for (&position, &axis) in positions.iter().zip(order) {
            data.leaves[position] = axis;
        }
        Ok(())
    }

    /// Splits `x` and `y` by the given factors and orders the loops `x.outer, y.outer, x.inner,
    /// y.inner`; returns them in that order.
    pub fn tile(
        &mut self,
        stage: StageId,
        x: AxisId,
        y: AxisId,
        x_factor: i64,
        y_factor: i64,
    ) -> Result<[AxisId; 4], ScheduleError> {
        let (x_outer, x_inner) = self.split(stage, x, x_factor)?;
        let (y_outer, y_inner) = self.split(stage, y, y_factor)?;
        self.reorder(stage, &[x_outer, y_outer, x_inner, y_inner])?;
        Ok([x_outer, y_outer, x_inner, y_inner])
    }

    /// Sets how the loop of `axis` runs. Vectorizing or parallelizing a reduction axis is an
    /// error: its iterations are not independent.
    pub fn annotate(
        &mut self,
        stage: StageId,
        axis: AxisId,
        kind: LoopKind,
    ) -> Result<(), ScheduleError> {
        let primitive = match kind {
            LoopKind::Serial => "serial",
            LoopKind::Unrolled => "unroll",
            LoopKind::Vectorized => "vectorize",
            LoopKind::Parallel => "parallel",
        };
        self.check_leaf(primitive, stage, axis)?;
        let info = self.axis_info(axis);
        if info.kind == AxisKind::Reduce
            && matches!(kind, LoopKind::Vectorized | LoopKind::Parallel)
        {
            return Err(ScheduleError::AnnotateReduction {
                annotation: primitive,
                stage: self.stage_name(stage).to_string(),
                axis: info.name.clone(),
            });
        }
        self.axes[axis.0 as usize].annotation = kind;
        Ok(())
    }

    /// Unrolls the loop of `axis`.
    pub fn unroll(&mut self, stage: StageId, axis: AxisId) -> Result<(), ScheduleError> {
        self.annotate(stage, axis, LoopKind::Unrolled)
    }

    /// Runs the loop of `axis` as SIMD lanes; it must end up innermost.
    pub fn vectorize(&mut self, stage: StageId, axis: AxisId) -> Result<(), ScheduleError> {
        self.annotate(stage, axis, LoopKind::Vectorized)
    }

    /// Spreads the loop of `axis` over threads.
    pub fn parallel(&mut self, stage: StageId, axis: AxisId) -> Result<(), ScheduleError> {
        self.annotate(stage, axis, LoopKind::Parallel)
    }

    /// Computes `stage` inside loop `axis` of `consumer`, over the region the consumer's inner
    /// loops read, into a temporary of that region's size.
    pub fn compute_at(
        &mut self,
        stage: StageId,
        consumer: StageId,
        axis: AxisId,
    ) -> Result<(), ScheduleError> {
        self.check_not_inlined(stage)?;
        self.check_leaf("compute_at", consumer, axis)?;
        let tensor = self.stage_data(stage).tensor;
        let name = self.stage_name(stage).to_string();
        if self.program.outputs.contains(&tensor) {
            return Err(ScheduleError::CannotAttach {
                stage: name,
                reason: "it is an output of the program",
            });
        }
        if !self.reads_through_inlined(consumer, tensor) {
            return Err(ScheduleError::NotAnAncestor {
                stage: name,
                consumer: self.stage_name(consumer).to_string(),
                axis: self.axis_name(axis),
            });
        }
        if self.attached_under(consumer, stage) {
            return Err(ScheduleError::CannotAttach {
                stage: name,
                reason: "the consumer is itself computed inside it",
            });
        }
        self.stages[stage.0 as usize].attach = Attach::At { consumer, axis };
        Ok(())
    }

    /// Computes `stage` at the top level, over its whole shape (undoes inline and compute_at).
    pub fn compute_root(&mut self, stage: StageId) -> Result<(), ScheduleError> {
        self.stages[stage.0 as usize].attach = Attach::Root;
        Ok(())
    }

    /// Substitutes `stage`'s expression into its consumers. Only elementwise stages that are
    /// not outputs can be inlined.
    pub fn compute_inline(&mut self, stage: StageId) -> Result<(), ScheduleError> {
        let name = self.stage_name(stage).to_string();
        let data = self.stage_data(stage);
        if self.program.outputs.contains(&data.tensor) {
            return Err(ScheduleError::CannotInline {
                stage: name,
                reason: "it is an output",
            });
        }
        if !data.reduce.is_empty() {
            return Err(ScheduleError::CannotInline {
                stage: name,
                reason: "it is a reduction",
            });
        }
        let attached_here = self
            .order
            .iter()
            .any(|&other| matches!(self.stage_data(other).attach, Attach::At { consumer, .. } if consumer == stage));
        if attached_here {
            return Err(ScheduleError::CannotInline {
                stage: name,
                reason: "other stages are computed at its loops",
            });
        }
        self.stages[stage.0 as usize].attach = Attach::Inline;
        Ok(())
    }

    /// Makes `stage` compute into a new local stage (`<name>.local`, returned) and copy the
    /// result out. Attach the local stage inside the original's loops with [`Schedule::compute_at`]
    /// to keep a block of the output in registers across the whole reduction. Must come before
    /// any split, fuse, reorder or annotation of `stage`.
    pub fn cache_write(&mut self, stage: StageId) -> Result<StageId, ScheduleError> {
        self.check_not_inlined(stage)?;
        let data = self.stage_data(stage).clone();
        let name = self.stage_name(stage).to_string();
        let touched = !data.relations.is_empty()
            || data
                .leaves
                .iter()
                .any(|&axis| self.axis_info(axis).annotation != LoopKind::Serial)
            || data.leaves
                != data
                    .spatial
                    .iter()
                    .chain(&data.reduce)
                    .copied()
                    .collect::<Vec<_>>();
        if touched {
            return Err(ScheduleError::TooLate {
                primitive: "cache_write",
                stage: name,
            });
        }
        let decl = self.program.tensor(data.tensor).clone();
        let Some(def) = decl.compute().cloned() else {
            return Err(ScheduleError::UnknownStage { stage: name });
        };
        // The local stage takes over the original definition; the original becomes a copy with
        // fresh axis variables.
        let local_id = BufferId(self.program.tensors.len() as u32);
        self.program.tensors.push(TensorDecl {
            name: format!("{name}.local"),
            dtype: decl.dtype,
            shape: decl.shape.clone(),
            kind: TensorKind::Compute(def.clone()),
        });
        let copy_axes: Vec<AxisDecl> = def
            .axes
            .iter()
            .map(|axis| AxisDecl {
                var: self.program.new_var(&axis.name),
                name: axis.name.clone(),
                extent: axis.extent,
            })
            .collect();
        let indices = copy_axes
            .iter()
            .map(|axis| IndexExpr::Var(axis.var))
            .collect();
        self.program.tensors[data.tensor.index()].kind = TensorKind::Compute(ComputeDef {
            axes: copy_axes,
            body: ComputeBody::Elementwise(ValueExpr::load(local_id, indices)),
        });
        let stage_data = &mut self.stages[stage.0 as usize];
        stage_data.reduce.clear();
        stage_data.leaves = stage_data.spatial.clone();
        let local = self.add_stage(local_id);
        let position = self
            .order
            .iter()
            .position(|&other| other == stage)
            .unwrap_or(self.order.len());
        self.order.insert(position, local);
        Ok(local)
    }

    /// Whether `consumer`'s expression reads `tensor`, directly or through inlined stages.
    fn reads_through_inlined(&self, consumer: StageId, tensor: BufferId) -> bool {
        let Some(def) = self.tensor(consumer).compute() else {
            return false;
        };
        let mut reads = false;
        def.body.value().for_each_load(&mut |load| {
            if load.buffer == tensor {
                reads = true;
            } else if let Some(producer) = self.stage_of(load.buffer) {
                if self.stage_data(producer).attach == Attach::Inline {
                    reads |= self.reads_through_inlined(producer, tensor);
                }
            }
        });
        reads
    }

    /// Whether `stage` is (transitively) computed at a loop of `ancestor`.
    fn attached_under(&self, stage: StageId, ancestor: StageId) -> bool {
        let mut current = stage;
        for _ in 0..=self.stages.len() {
            match self.stage_data(current).attach {
                Attach::At { consumer, .. } if consumer == ancestor => return true,
                Attach::At { consumer, .. } => current = consumer,
                _ => return false,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{IrError, LowerError};
    use crate::ops::{Layout, Workload};
    use crate::program::ProgramBuilder;
    use crate::DType;

    fn schedule_of(workload: &str, layout: Layout) -> Schedule {
        let workload: Workload = workload.parse().expect("workload parses");
        Schedule::new(&workload.program(&layout).expect("program builds"))
    }

    #[test]
    fn split_factor_zero_names_axis_and_stage() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let k = s.reduce_axes(c)[0];
        let err = s.split(c, k, 0).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::BadSplit {
                stage: "C".into(),
                axis: "k".into(),
                what: "factor",
                value: 0
            }
        );
        assert_eq!(
            err.to_string(),
            "split factor 0 for axis `k` of `C`; it must be at least 1"
        );
        assert!(matches!(
            s.split_parts(c, k, -2),
            Err(ScheduleError::BadSplit {
                what: "nparts",
                value: -2,
                ..
            })
        ));
    }

    #[test]
    fn reorder_naming_an_axis_of_another_stage_is_rejected() {
        let mut s = schedule_of(
            "matmul:m=4,n=4,k=4",
            Layout {
                pack_columns: Some(2),
                ..Layout::default()
            },
        );
        let c = s.stage("C").unwrap();
        let packed = s.stage("B.packed").unwrap();
        let foreign = s.spatial_axes(packed)[0];
        let own = s.spatial_axes(c)[0];
        let err = s.reorder(c, &[own, foreign]).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::AxisOfOtherStage {
                primitive: "reorder",
                stage: "C".into(),
                axis: "jo".into(),
                owner: "B.packed".into()
            }
        );
    }

    #[test]
    fn reorder_naming_an_axis_twice_is_rejected() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let i = s.spatial_axes(c)[0];
        assert_eq!(
            s.reorder(c, &[i, i]),
            Err(ScheduleError::DuplicateAxis {
                stage: "C".into(),
                axis: "i".into()
            })
        );
    }

    #[test]
    fn vectorize_or_parallel_on_a_reduction_axis_is_rejected() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let k = s.reduce_axes(c)[0];
        let (_, k_inner) = s.split(c, k, 2).unwrap();
        assert_eq!(
            s.vectorize(c, k_inner),
            Err(ScheduleError::AnnotateReduction {
                annotation: "vectorize",
                stage: "C".into(),
                axis: "k.inner".into()
            })
        );
        assert!(matches!(
            s.parallel(c, k_inner),
            Err(ScheduleError::AnnotateReduction {
                annotation: "parallel",
                ..
            })
        ));
        assert_eq!(s.unroll(c, k_inner), Ok(()));
    }

    #[test]
    fn compute_at_a_loop_that_is_not_an_ancestor_is_rejected() {
        let mut s = schedule_of(
            "dense:m=2,n=4,k=3,relu=true",
            Layout {
                pack_columns: Some(2),
                ..Layout::default()
            },
        );
        let packed = s.stage("W.packed").unwrap();
        let epilogue = s.stage("Y").unwrap();
        let axis = s.spatial_axes(epilogue)[0];
        assert_eq!(
            s.compute_at(packed, epilogue, axis),
            Err(ScheduleError::NotAnAncestor {
                stage: "W.packed".into(),
                consumer: "Y".into(),
                axis: "i".into()
            })
        );
        let product = s.stage("Y.matmul").unwrap();
        let own = s.spatial_axes(product)[1];
        assert!(matches!(
            s.compute_at(product, epilogue, own),
            Err(ScheduleError::AxisOfOtherStage { .. })
        ));
        assert!(matches!(
            s.compute_at(epilogue, product, own),
            Err(ScheduleError::CannotAttach { .. })
        ));
    }

    #[test]
    fn inline_of_a_reduction_or_an_output_is_rejected() {
        let mut s = schedule_of("dense:m=2,n=4,k=3,relu=true", Layout::default());
        let product = s.stage("Y.matmul").unwrap();
        let output = s.stage("Y").unwrap();
        assert!(matches!(
            s.compute_inline(product),
            Err(ScheduleError::CannotInline {
                reason: "it is a reduction",
                ..
            })
        ));
        assert!(matches!(
            s.compute_inline(output),
            Err(ScheduleError::CannotInline {
                reason: "it is an output",
                ..
            })
        ));
    }

    #[test]
    fn cache_write_after_a_split_is_too_late() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let i = s.spatial_axes(c)[0];
        s.split(c, i, 2).unwrap();
        assert_eq!(
            s.cache_write(c),
            Err(ScheduleError::TooLate {
                primitive: "cache_write",
                stage: "C".into()
            })
        );
    }

    #[test]
    fn fuse_of_non_adjacent_or_mixed_axes_is_rejected() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let [i, j] = [s.spatial_axes(c)[0], s.spatial_axes(c)[1]];
        let k = s.reduce_axes(c)[0];
        assert!(matches!(
            s.fuse(c, j, i),
            Err(ScheduleError::FuseNotAdjacent { .. })
        ));
        assert!(matches!(
            s.fuse(c, j, k),
            Err(ScheduleError::FuseMixedKinds { .. })
        ));
        let split_away = s.split(c, i, 2).map(|_| i).unwrap();
        assert_eq!(
            s.unroll(c, split_away),
            Err(ScheduleError::NotALeaf {
                stage: "C".into(),
                axis: "i".into()
            })
        );
    }

    #[test]
    fn unknown_stage_and_axis_are_named() {
        let s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        assert_eq!(
            s.stage("D"),
            Err(ScheduleError::UnknownStage { stage: "D".into() })
        );
        let c = s.stage("C").unwrap();
        assert_eq!(
            s.axis(c, "z"),
            Err(ScheduleError::UnknownAxis {
                stage: "C".into(),
                axis: "z".into()
            })
        );
        assert_eq!(
            s.axis(c, "k").map(|axis| s.axis_info(axis).kind),
            Ok(AxisKind::Reduce)
        );
    }

    #[test]
    fn vectorized_loop_that_is_not_innermost_fails_to_lower() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let j = s.spatial_axes(c)[1];
        s.vectorize(c, j).unwrap();
        assert_eq!(
            crate::lower(&s),
            Err(LowerError::VectorizeNotInnermost {
                stage: "C".into(),
                axis: "j".into()
            })
        );
    }

    #[test]
    fn nested_parallel_loops_fail_to_lower() {
        let mut s = schedule_of("matmul:m=4,n=4,k=4", Layout::default());
        let c = s.stage("C").unwrap();
        let [i, j] = [s.spatial_axes(c)[0], s.spatial_axes(c)[1]];
        s.parallel(c, i).unwrap();
        s.parallel(c, j).unwrap();
        assert_eq!(
            crate::lower(&s),
            Err(LowerError::NestedParallel {
                stage: "C".into(),
                axis: "j".into()
            })
        );
    }

    #[test]
    fn zero_sized_dimension_is_rejected() {
        let mut builder = ProgramBuilder::new("p");
        assert_eq!(
            builder.placeholder("A", &[4, 0], DType::F32),
            Err(IrError::ZeroSizedDimension {
                tensor: "A".into(),
                dim: 1,
                extent: 0
            })
        );
        assert!(matches!(
            "matmul:m=4,n=0,k=4".parse::<Workload>(),
            Err(IrError::BadWorkload { .. })
        ));
        assert!(matches!(
            builder.reduce_axis("k", 0),
            Err(IrError::ZeroSizedAxis { .. })
        ));
    }

    #[test]
    fn shapes_that_do_not_match_between_stages_are_rejected() {
        let mut builder = ProgramBuilder::new("p");
        let a = builder.placeholder("A", &[4, 3], DType::F32).unwrap();
        let b = builder.placeholder("B", &[2, 2], DType::F32).unwrap();
        let k = builder.reduce_axis("k", 3).unwrap();
        let err = builder
            .compute("C", DType::F32, &[("i", 4), ("j", 2)], |ax| {
                crate::program::sum(
                    a.at(&[ax[0].clone(), k.var()]) * b.at(&[k.var(), ax[1].clone()]),
                    &[&k],
                )
            })
            .unwrap_err();
        assert_eq!(
            err,
            IrError::ShapeMismatch {
                tensor: "C".into(),
                operand: "B".into(),
                dim: 0,
                low: 0,
                high: 2,
                extent: 2
            }
        );
        let err = builder
            .compute("D", DType::F32, &[("i", 4)], |ax| a.at(&[ax[0].clone()]))
            .unwrap_err();
        assert_eq!(
            err,
            IrError::RankMismatch {
                tensor: "D".into(),
                operand: "A".into(),
                rank: 2,
                indices: 1
            }
        );
    }
}
