//! Typed errors of the front end: defining programs, scheduling them, lowering them.
//!
//! Each message names the offending value, so a user can find the mistake without a debugger.

use crate::dtype::DType;
use thiserror::Error;

/// An invalid compute definition or operator parameter.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum IrError {
    /// A tensor with a dimension smaller than 1.
    #[error("tensor `{tensor}` has zero-sized dimension {dim} (extent {extent})")]
    ZeroSizedDimension {
        /// The tensor.
        tensor: String,
        /// Which dimension.
        dim: usize,
        /// Its extent.
        extent: i64,
    },
    /// An axis with an extent smaller than 1.
    #[error("axis `{axis}` has extent {extent}; extents must be at least 1")]
    ZeroSizedAxis {
        /// The axis.
        axis: String,
        /// Its extent.
        extent: i64,
    },
    /// A tensor with no dimensions.
    #[error("tensor `{tensor}` has no dimensions; use shape [1] for a scalar")]
    ScalarTensor {
        /// The tensor.
        tensor: String,
    },
    /// Two tensors with one name.
    #[error("a tensor named `{tensor}` is already defined")]
    DuplicateTensor {
        /// The name.
        tensor: String,
    },
    /// A load of a tensor id the program does not have.
    #[error("`{tensor}` reads tensor #{id}, which is not defined before it")]
    UnknownTensor {
        /// The reading tensor.
        tensor: String,
        /// The unknown id.
        id: u32,
    },
    /// A load with the wrong number of indices.
    #[error(
        "`{tensor}` reads `{operand}` with {indices} indices, but `{operand}` has rank {rank}"
    )]
    RankMismatch {
        /// The reading tensor.
        tensor: String,
        /// The tensor read.
        operand: String,
        /// Its rank.
        rank: usize,
        /// The number of indices given.
        indices: usize,
    },
    /// A load whose index range does not fit the shape of the tensor read.
    #[error(
        "`{tensor}` reads `{operand}` dimension {dim} at {low}..={high}, but its extent is {extent}"
    )]
    ShapeMismatch {
        /// The reading tensor.
        tensor: String,
        /// The tensor read.
        operand: String,
        /// The dimension.
        dim: usize,
        /// Lowest index read.
        low: i64,
        /// Highest index read.
        high: i64,
        /// The extent of that dimension.
        extent: i64,
    },
    /// A variable that is not an axis of the definition using it.
    #[error("`{tensor}` uses variable `{var}`, which is not one of its axes")]
    UnboundVariable {
        /// The tensor.
        tensor: String,
        /// The variable.
        var: String,
    },
    /// Operands of different dtypes.
    #[error("dtype mismatch in {context}: expected {expected}, found {found}")]
    DTypeMismatch {
        /// Where.
        context: String,
        /// The dtype required.
        expected: DType,
        /// The dtype found.
        found: DType,
    },
    /// An operation the IR does not define on its operands' dtype (see
    /// [`crate::expr::unsupported_op`]).
    #[error("unsupported operation: {message}")]
    UnsupportedOperation {
        /// What, and on which dtype.
        message: String,
    },
    /// A program without outputs.
    #[error("program `{program}` has no outputs")]
    NoOutputs {
        /// The program.
        program: String,
    },
    /// An input named as an output.
    #[error("placeholder `{tensor}` cannot be an output")]
    PlaceholderOutput {
        /// The tensor.
        tensor: String,
    },
    /// An operator parameter out of its range.
    #[error("operator `{op}`: {message}")]
    InvalidParameter {
        /// The operator.
        op: String,
        /// What is wrong, naming the value.
        message: String,
    },
    /// A workload string that does not parse.
    #[error("workload `{workload}`: {message}")]
    BadWorkload {
        /// The whole workload string.
        workload: String,
        /// What is wrong, naming the bad part.
        message: String,
    },
}

/// A schedule primitive applied where it cannot be.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// No stage computes a tensor of that name.
    #[error("no stage named `{stage}` (placeholders have no stage)")]
    UnknownStage {
        /// The name asked for.
        stage: String,
    },
    /// No axis of that name in the stage.
    #[error("stage `{stage}` has no axis named `{axis}`")]
    UnknownAxis {
        /// The stage.
        stage: String,
        /// The name asked for.
        axis: String,
    },
    /// A split factor or part count smaller than 1.
    #[error("split {what} {value} for axis `{axis}` of `{stage}`; it must be at least 1")]
    BadSplit {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
        /// `factor` or `nparts`.
        what: &'static str,
        /// The value given.
        value: i64,
    },
    /// An axis of one stage named in a primitive applied to another.
    #[error("{primitive} on stage `{stage}` names axis `{axis}` of stage `{owner}`")]
    AxisOfOtherStage {
        /// The primitive.
        primitive: &'static str,
        /// The stage the primitive was applied to.
        stage: String,
        /// The axis.
        axis: String,
        /// The stage owning the axis.
        owner: String,
    },
    /// An axis that was already split or fused away.
    #[error("axis `{axis}` of `{stage}` is no longer a loop (it was split or fused)")]
    NotALeaf {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
    },
    /// An axis named twice in a reorder.
    #[error("reorder of `{stage}` names axis `{axis}` twice")]
    DuplicateAxis {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
    },
    /// Fusing axes that are not adjacent, outer before inner.
    #[error("fuse of `{stage}`: `{outer}` must be the loop directly outside `{inner}`")]
    FuseNotAdjacent {
        /// The stage.
        stage: String,
        /// The outer axis.
        outer: String,
        /// The inner axis.
        inner: String,
    },
    /// Fusing a reduction axis with a data-parallel one.
    #[error("fuse of `{stage}`: `{outer}` and `{inner}` are not both reduction or both spatial")]
    FuseMixedKinds {
        /// The stage.
        stage: String,
        /// The outer axis.
        outer: String,
        /// The inner axis.
        inner: String,
    },
    /// Vectorizing or parallelizing a reduction axis (its iterations are not independent).
    #[error("cannot {annotation} reduction axis `{axis}` of `{stage}`")]
    AnnotateReduction {
        /// `vectorize` or `parallel`.
        annotation: &'static str,
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
    },
    /// compute_at to a loop of a stage that does not read the tensor.
    #[error("compute_at: `{consumer}` does not read `{stage}`, so `{axis}` is not a loop around any use of it")]
    NotAnAncestor {
        /// The stage being attached.
        stage: String,
        /// The stage named as consumer.
        consumer: String,
        /// The axis named.
        axis: String,
    },
    /// compute_inline of a reduction or an output.
    #[error("cannot inline `{stage}`: {reason}")]
    CannotInline {
        /// The stage.
        stage: String,
        /// Why.
        reason: &'static str,
    },
    /// A primitive that must come before others on the stage.
    #[error("{primitive} on `{stage}` must come before any split, fuse or reorder of it")]
    TooLate {
        /// The primitive.
        primitive: &'static str,
        /// The stage.
        stage: String,
    },
    /// compute_at of a stage that cannot be attached.
    #[error("cannot compute `{stage}` at a loop: {reason}")]
    CannotAttach {
        /// The stage.
        stage: String,
        /// Why.
        reason: &'static str,
    },
    /// A stage that is inlined cannot also be scheduled.
    #[error("stage `{stage}` is inlined; it has no loops to schedule")]
    Inlined {
        /// The stage.
        stage: String,
    },
}

/// A schedule that cannot be turned into a loop nest.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum LowerError {
    /// A vectorized loop with another loop or an attached stage inside it.
    #[error("vectorized axis `{axis}` of `{stage}` is not the innermost loop")]
    VectorizeNotInnermost {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
    },
    /// A parallel loop inside another parallel loop.
    #[error("parallel axis `{axis}` of `{stage}` is nested inside another parallel loop")]
    NestedParallel {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
    },
    /// A parallel loop inside a loop whose iterations the parallel loop would race on (a
    /// reduction), or a parallel axis in an attached stage whose buffer is shared.
    #[error("parallel axis `{axis}` of `{stage}` is inside reduction loop `{reduction}`")]
    ParallelInsideReduction {
        /// The stage.
        stage: String,
        /// The axis.
        axis: String,
        /// The reduction loop around it.
        reduction: String,
    },
    /// A stage computed inside another stage's loop is also read by a third stage.
    #[error("`{reader}` reads `{operand}`, which is computed inside a loop of `{consumer}` only")]
    AttachedReadElsewhere {
        /// The stage reading.
        reader: String,
        /// The attached stage.
        operand: String,
        /// The stage it is attached to.
        consumer: String,
    },
    /// compute_at named a loop that a later split or fuse replaced.
    #[error("`{stage}` is computed at `{axis}` of `{consumer}`, which is no longer a loop (it was split or fused after compute_at)")]
    AttachAxisGone {
        /// The attached stage.
        stage: String,
        /// Its consumer.
        consumer: String,
        /// The axis named in compute_at.
        axis: String,
    },
    /// The lowered nest failed verification (a bug in lowering).
    #[error("lowered nest failed verification: {0}")]
    Verify(String),
}
