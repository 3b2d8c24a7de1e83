//! Compute definitions: tensors defined by index expressions, the input of scheduling.
//!
//! A [`Program`] is a list of tensors in definition order: placeholders (the caller's inputs)
//! and computed tensors, each an expression over its output axes, optionally reduced over
//! reduction axes. A tensor can only read tensors defined before it, so definition order is a
//! topological order and the program has no cycles by construction.
//!
//! Users build programs with [`ProgramBuilder`]; the operator library ([`crate::ops`]) is built
//! on the same API, so a user-defined operator is a first-class citizen.

use crate::dtype::{DType, Scalar};
use crate::error::IrError;
use crate::expr::{BinaryOp, BufferId, Cond, IndexExpr, ValueExpr, VarId};
use crate::verify::index_range;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An axis of a computed tensor or of a reduction: a variable and its extent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AxisDecl {
    /// The variable standing for the axis in the tensor's expression.
    pub var: VarId,
    /// A readable name (`i`, `oc`, `ry`, ...).
    pub name: String,
    /// The number of points.
    pub extent: i64,
}

/// How a reduction combines values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    /// Addition, identity zero.
    Sum,
    /// Maximum, identity the lowest value of the dtype.
    Max,
}

impl ReduceOp {
    /// The value a reduction starts from.
    pub fn identity(self, dtype: DType) -> Scalar {
        match self {
            ReduceOp::Sum => Scalar::zero(dtype),
            ReduceOp::Max => Scalar::lowest(dtype),
        }
    }

    /// `accumulator (op) value`, with multiply-add fused for sums of products so that back ends
    /// see the FMA they should emit.
    pub fn combine(self, accumulator: ValueExpr, value: ValueExpr) -> ValueExpr {
        match (self, value) {
            (ReduceOp::Sum, ValueExpr::Binary(BinaryOp::Mul, a, b)) => {
                ValueExpr::Fma(a, b, Box::new(accumulator))
            }
            (ReduceOp::Sum, value) => accumulator + value,
            (ReduceOp::Max, value) => accumulator.max(value),
        }
    }
}

/// The expression computing each element of a tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ComputeBody {
    /// One expression per element.
    Elementwise(ValueExpr),
    /// A reduction of `body` over `axes`.
    Reduce {
        /// How values are combined.
        op: ReduceOp,
        /// The reduction axes.
        axes: Vec<AxisDecl>,
        /// The value reduced, over the output axes and the reduction axes.
        body: ValueExpr,
    },
}

impl ComputeBody {
    /// The expression evaluated per point (the reduced value for reductions).
    pub fn value(&self) -> &ValueExpr {
        match self {
            ComputeBody::Elementwise(value) => value,
            ComputeBody::Reduce { body, .. } => body,
        }
    }

    /// The reduction axes (empty for elementwise bodies).
    pub fn reduce_axes(&self) -> &[AxisDecl] {
        match self {
            ComputeBody::Elementwise(_) => &[],
            ComputeBody::Reduce { axes, .. } => axes,
        }
    }
}

impl From<ValueExpr> for ComputeBody {
    fn from(value: ValueExpr) -> ComputeBody {
        ComputeBody::Elementwise(value)
    }
}

/// A computed tensor: one axis per dimension and the body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeDef {
    /// One axis per dimension of the tensor, in order.
    pub axes: Vec<AxisDecl>,
    /// What each element is.
    pub body: ComputeBody,
}

/// Whether a tensor is supplied by the caller or computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorKind {
    /// An input supplied by the caller.
    Placeholder,
    /// Computed by the program.
    Compute(ComputeDef),
}

/// A tensor of a program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorDecl {
    /// The name, unique within the program.
    pub name: String,
    /// The element type.
    pub dtype: DType,
    /// The static shape; every extent is at least 1.
    pub shape: Vec<i64>,
    /// Placeholder or computed.
    pub kind: TensorKind,
}

impl TensorDecl {
    /// The compute definition, if the tensor is computed.
    pub fn compute(&self) -> Option<&ComputeDef> {
        match &self.kind {
            TensorKind::Placeholder => None,
            TensorKind::Compute(def) => Some(def),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    /// Whether the tensor has no elements (never true for a built program).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor computation: tensors in definition order, and which of them are outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// A name for the computation, used as the kernel name.
    pub name: String,
    /// Every tensor, indexed by [`BufferId`], in definition (topological) order.
    pub tensors: Vec<TensorDecl>,
    /// The name of every variable, indexed by [`VarId`].
    pub var_names: Vec<String>,
    /// The tensors returned to the caller, in call order.
    pub outputs: Vec<BufferId>,
}

impl Program {
    /// The declaration of `tensor`.
    pub fn tensor(&self, tensor: BufferId) -> &TensorDecl {
        &self.tensors[tensor.index()]
    }

    /// The placeholders, in definition order: the kernel's inputs.
    pub fn inputs(&self) -> Vec<BufferId> {
        (0..self.tensors.len() as u32)
            .map(BufferId)
            .filter(|&id| self.tensor(id).compute().is_none())
            .collect()
    }

    /// Finds a tensor by name.
    pub fn tensor_by_name(&self, name: &str) -> Option<BufferId> {
        self.tensors
            .iter()
            .position(|tensor| tensor.name == name)
            .map(|index| BufferId(index as u32))
    }

    /// Tensors whose compute definition reads `tensor`.
    pub fn consumers(&self, tensor: BufferId) -> Vec<BufferId> {
        (0..self.tensors.len() as u32)
            .map(BufferId)
            .filter(|&id| {
                self.tensor(id).compute().is_some_and(|def| {
                    let mut reads = false;
                    def.body
                        .value()
                        .for_each_load(&mut |load| reads |= load.buffer == tensor);
                    reads
                })
            })
            .collect()
    }

    /// Adds a variable and returns its id.
    pub(crate) fn new_var(&mut self, name: &str) -> VarId {
        self.var_names.push(name.to_string());
        VarId(self.var_names.len() as u32 - 1)
    }
}

/// A handle on a tensor being defined, used to write loads in later definitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The tensor's id in its program.
    pub id: BufferId,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its element type.
    pub dtype: DType,
}

impl Tensor {
    /// The element at `indices` (one per dimension; checked when the program is built).
    pub fn at<I: Into<IndexExpr> + Clone>(&self, indices: &[I]) -> ValueExpr {
        ValueExpr::load(self.id, indices.iter().cloned().map(Into::into).collect())
    }
}

/// A reduction axis, created by [`ProgramBuilder::reduce_axis`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceAxis {
    decl: AxisDecl,
}

impl ReduceAxis {
    /// The axis variable, to use in index expressions.
    pub fn var(&self) -> IndexExpr {
        IndexExpr::Var(self.decl.var)
    }

    /// The extent of the axis.
    pub fn extent(&self) -> i64 {
        self.decl.extent
    }
}

/// `sum over axes of body`: the body of a summing reduction.
pub fn sum(body: ValueExpr, axes: &[&ReduceAxis]) -> ComputeBody {
    ComputeBody::Reduce {
        op: ReduceOp::Sum,
        axes: axes.iter().map(|axis| axis.decl.clone()).collect(),
        body,
    }
}

/// `max over axes of body`: the body of a max reduction.
pub fn max_over(body: ValueExpr, axes: &[&ReduceAxis]) -> ComputeBody {
    ComputeBody::Reduce {
        op: ReduceOp::Max,
        axes: axes.iter().map(|axis| axis.decl.clone()).collect(),
        body,
    }
}

/// Builds a [`Program`] tensor by tensor, checking each definition as it is added.
#[derive(Debug)]
pub struct ProgramBuilder {
    program: Program,
}

impl ProgramBuilder {
    /// Starts an empty program called `name`.
    pub fn new(name: &str) -> ProgramBuilder {
        ProgramBuilder {
            program: Program {
                name: name.to_string(),
                tensors: Vec::new(),
                var_names: Vec::new(),
                outputs: Vec::new(),
            },
        }
    }

    /// Declares an input tensor.
    pub fn placeholder(
        &mut self,
        name: &str,
        shape: &[i64],
        dtype: DType,
    ) -> Result<Tensor, IrError> {
        self.check_new_tensor(name, shape)?;
        Ok(self.push(TensorDecl {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            kind: TensorKind::Placeholder,
        }))
    }

    /// Creates a reduction axis over `0..extent` for use in one reduction.
    pub fn reduce_axis(&mut self, name: &str, extent: i64) -> Result<ReduceAxis, IrError> {
        if extent < 1 {
            return Err(IrError::ZeroSizedAxis {
                axis: name.to_string(),
                extent,
            });
        }
        let var = self.program.new_var(name);
        Ok(ReduceAxis {
            decl: AxisDecl {
                var,
                name: name.to_string(),
                extent,
            },
        })
    }

    /// Defines a computed tensor with one named axis per dimension; `body` receives the axis
    /// variables and returns the element expression or a reduction ([`sum`], [`max_over`]).
    pub fn compute<B: Into<ComputeBody>>(
        &mut self,
        name: &str,
        dtype: DType,
        axes: &[(&str, i64)],
        body: impl FnOnce(&[IndexExpr]) -> B,
    ) -> Result<Tensor, IrError> {
        let shape: Vec<i64> = axes.iter().map(|&(_, extent)| extent).collect();
        self.check_new_tensor(name, &shape)?;
        let axis_decls: Vec<AxisDecl> = axes
            .iter()
            .map(|&(axis_name, extent)| AxisDecl {
                var: self.program.new_var(axis_name),
                name: axis_name.to_string(),
                extent,
            })
            .collect();
        let vars: Vec<IndexExpr> = axis_decls
            .iter()
            .map(|axis| IndexExpr::Var(axis.var))
            .collect();
        let body = body(&vars).into();
        let def = ComputeDef {
            axes: axis_decls,
            body,
        };
        check_compute(&self.program, name, dtype, &def)?;
        Ok(self.push(TensorDecl {
            name: name.to_string(),
            dtype,
            shape,
            kind: TensorKind::Compute(def),
        }))
    }

    /// Finishes the program with `outputs` as the tensors returned to the caller.
    pub fn build(mut self, outputs: &[&Tensor]) -> Result<Program, IrError> {
        if outputs.is_empty() {
            return Err(IrError::NoOutputs {
                program: self.program.name,
            });
        }
        for output in outputs {
            if self.program.tensor(output.id).compute().is_none() {
                return Err(IrError::PlaceholderOutput {
                    tensor: self.program.tensor(output.id).name.clone(),
                });
            }
        }
        self.program.outputs = outputs.iter().map(|tensor| tensor.id).collect();
        Ok(self.program)
    }

    fn check_new_tensor(&self, name: &str, shape: &[i64]) -> Result<(), IrError> {
        if self.program.tensor_by_name(name).is_some() {
            return Err(IrError::DuplicateTensor {
                tensor: name.to_string(),
            });
        }
        if shape.is_empty() {
            return Err(IrError::ScalarTensor {
                tensor: name.to_string(),
            });
        }
        if let Some(dim) = shape.iter().position(|&extent| extent < 1) {
            return Err(IrError::ZeroSizedDimension {
                tensor: name.to_string(),
                dim,
                extent: shape[dim],
            });
        }
        Ok(())
    }

    fn push(&mut self, decl: TensorDecl) -> Tensor {
        let tensor = Tensor {
            id: BufferId(self.program.tensors.len() as u32),
            shape: decl.shape.clone(),
            dtype: decl.dtype,
        };
        self.program.tensors.push(decl);
        tensor
    }
}

/// Checks a compute definition against the tensors defined before it: loads name existing
/// tensors with the right number of indices, indices stay in bounds wherever that can be decided
/// (a load under a `select` may rely on its condition and is checked at run time), only the
/// definition's own axes are used, and dtypes agree.
pub(crate) fn check_compute(
    program: &Program,
    name: &str,
    dtype: DType,
    def: &ComputeDef,
) -> Result<(), IrError> {
    let mut ranges: HashMap<VarId, (i64, i64)> = HashMap::new();
    for axis in def.axes.iter().chain(def.body.reduce_axes()) {
        if axis.extent < 1 {
            return Err(IrError::ZeroSizedAxis {
                axis: axis.name.clone(),
                extent: axis.extent,
            });
        }
        ranges.insert(axis.var, (0, axis.extent - 1));
    }
    let lookup = |var: VarId| ranges.get(&var).copied();
    check_value(program, name, def.body.value(), &lookup, true)?;
    let body_dtype = value_dtype(program, def.body.value())?;
    if body_dtype != dtype {
        return Err(IrError::DTypeMismatch {
            context: format!("body of `{name}`"),
            expected: dtype,
            found: body_dtype,
        });
    }
    Ok(())
}

fn check_value(
    program: &Program,
    name: &str,
    value: &ValueExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
    check_bounds: bool,
) -> Result<(), IrError> {
    let mut result = Ok(());
    let mut check_index = |index: &IndexExpr| {
        index.for_each_var(&mut |var| {
            if result.is_ok() && ranges(var).is_none() {
                result = Err(IrError::UnboundVariable {
                    tensor: name.to_string(),
                    var: program
                        .var_names
                        .get(var.index())
                        .cloned()
                        .unwrap_or_default(),
                });
            }
        })
    };
    value.for_each_index(&mut check_index);
    result?;
    match value {
        ValueExpr::Load(load) => {
            let Some(source) = program.tensors.get(load.buffer.index()) else {
                return Err(IrError::UnknownTensor {
                    tensor: name.to_string(),
                    id: load.buffer.0,
                });
            };
            if source.shape.len() != load.indices.len() {
                return Err(IrError::RankMismatch {
                    tensor: name.to_string(),
                    operand: source.name.clone(),
                    rank: source.shape.len(),
                    indices: load.indices.len(),
                });
            }
            if check_bounds {
                for (dim, (index, &extent)) in load.indices.iter().zip(&source.shape).enumerate() {
                    if let Some((low, high)) = index_range(index, ranges) {
                        if low < 0 || high >= extent {
                            return Err(IrError::ShapeMismatch {
                                tensor: name.to_string(),
                                operand: source.name.clone(),
                                dim,
                                low,
                                high,
                                extent,
                            });
                        }
                    }
                }
            }
            Ok(())
        }
        ValueExpr::Const(_) | ValueExpr::FromIndex(..) => Ok(()),
        ValueExpr::Binary(_, a, b) => {
            check_value(program, name, a, ranges, check_bounds)?;
            check_value(program, name, b, ranges, check_bounds)
        }
        ValueExpr::Unary(_, a) | ValueExpr::Cast(_, a) => {
            check_value(program, name, a, ranges, check_bounds)
        }
        ValueExpr::Fma(a, b, c) => {
            check_value(program, name, a, ranges, check_bounds)?;
            check_value(program, name, b, ranges, check_bounds)?;
            check_value(program, name, c, ranges, check_bounds)
        }
        ValueExpr::Select(cond, a, b) => {
            let mut result = Ok(());
            cond.walk_values(&mut |inner| {
                if result.is_ok() {
                    if let ValueExpr::Load(_) = inner {
                        result = check_value(program, name, inner, ranges, check_bounds);
                    }
                }
            });
            result?;
            // Operands of a select may rely on its condition to stay in bounds (padding).
            check_value(program, name, a, ranges, false)?;
            check_value(program, name, b, ranges, false)
        }
    }
}

/// The dtype of a value expression in `program`, checking that operands agree.
pub fn value_dtype(program: &Program, value: &ValueExpr) -> Result<DType, IrError> {
    value_dtype_with(
        &|buffer| program.tensors.get(buffer.index()).map(|t| t.dtype),
        value,
    )
}

/// The dtype of a value expression given each buffer's dtype, checking that operands agree.
pub fn value_dtype_with(
    buffer_dtype: &dyn Fn(BufferId) -> Option<DType>,
    value: &ValueExpr,
) -> Result<DType, IrError> {
    let same = |context: &str, a: DType, b: DType| {
        if a == b {
            Ok(a)
        } else {
            Err(IrError::DTypeMismatch {
                context: context.to_string(),
                expected: a,
                found: b,
            })
        }
    };
    match value {
        ValueExpr::Const(scalar) => Ok(scalar.dtype),
        ValueExpr::Load(load) => buffer_dtype(load.buffer).ok_or(IrError::UnknownTensor {
            tensor: String::from("?"),
            id: load.buffer.0,
        }),
        ValueExpr::Binary(op, a, b) => same(
            op.symbol(),
            value_dtype_with(buffer_dtype, a)?,
            value_dtype_with(buffer_dtype, b)?,
        ),
        ValueExpr::Unary(_, a) => value_dtype_with(buffer_dtype, a),
        ValueExpr::Fma(a, b, c) => {
            let ab = same(
                "fma",
                value_dtype_with(buffer_dtype, a)?,
                value_dtype_with(buffer_dtype, b)?,
            )?;
            same("fma", ab, value_dtype_with(buffer_dtype, c)?)
        }
        ValueExpr::Select(cond, a, b) => {
            cond_check_dtypes(buffer_dtype, cond)?;
            same(
                "select",
                value_dtype_with(buffer_dtype, a)?,
                value_dtype_with(buffer_dtype, b)?,
            )
        }
        ValueExpr::Cast(dtype, a) => {
            let from = value_dtype_with(buffer_dtype, a)?;
            check_op(value, from, *dtype)
        }
        ValueExpr::FromIndex(dtype, _) => Ok(*dtype),
    }
    .and_then(|dtype| match value {
        ValueExpr::Binary(..) | ValueExpr::Unary(..) => check_op(value, dtype, dtype),
        _ => Ok(dtype),
    })
}

/// `result`, or the error of an operation the IR does not define on `operand`.
fn check_op(value: &ValueExpr, operand: DType, result: DType) -> Result<DType, IrError> {
    match crate::expr::unsupported_op(value, operand, result) {
        None => Ok(result),
        Some(message) => Err(IrError::UnsupportedOperation { message }),
    }
}

fn cond_check_dtypes(
    buffer_dtype: &dyn Fn(BufferId) -> Option<DType>,
    cond: &Cond,
) -> Result<(), IrError> {
    match cond {
        Cond::Const(_) | Cond::Index(..) => Ok(()),
        Cond::Value(op, a, b) => {
            let left = value_dtype_with(buffer_dtype, a)?;
            let right = value_dtype_with(buffer_dtype, b)?;
            if left == right {
                Ok(())
            } else {
                Err(IrError::DTypeMismatch {
                    context: format!("comparison {}", op.symbol()),
                    expected: left,
                    found: right,
                })
            }
        }
        Cond::And(a, b) | Cond::Or(a, b) => {
            cond_check_dtypes(buffer_dtype, a)?;
            cond_check_dtypes(buffer_dtype, b)
        }
        Cond::Not(a) => cond_check_dtypes(buffer_dtype, a),
    }
}
