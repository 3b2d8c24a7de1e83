//! The direct evaluator: computes a [`Program`] from its definition, with no schedule at all.
//!
//! It is the oracle's oracle: the reference interpreter runs lowered loop nests, and this module
//! checks that what lowering produced still computes what the user defined. It is written to be
//! obviously right rather than fast: every element of every tensor is evaluated straight from the
//! definition, in `f64`, in definition order. Integer values are computed exactly and wrapped to
//! their type after every operation, as the interpreter and every back end do.

use crate::data::{Data, DataRef};
use crate::dtype::DType;
use crate::expr::{Cond, IndexExpr, ValueExpr, VarId};
use crate::program::{ComputeBody, Program, ReduceOp, TensorKind};
use thiserror::Error;

/// Why a program could not be evaluated.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum EvalError {
    /// The number of input buffers differs from the program's placeholders.
    #[error("program `{program}` takes {expected} inputs, {found} were given")]
    InputCount {
        /// The program.
        program: String,
        /// Its placeholder count.
        expected: usize,
        /// The buffers given.
        found: usize,
    },
    /// An input buffer of the wrong length.
    #[error("input `{tensor}` needs {expected} elements, the buffer has {found}")]
    InputLength {
        /// The placeholder.
        tensor: String,
        /// Elements needed.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// A load outside its tensor.
    #[error("`{tensor}` read at {indices:?}, outside its shape {shape:?}")]
    OutOfBounds {
        /// The tensor read.
        tensor: String,
        /// The indices.
        indices: Vec<i64>,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// An input buffer of another dtype than its placeholder's.
    #[error("input `{tensor}` has dtype {expected}, the buffer holds {found}")]
    InputDType {
        /// The placeholder.
        tensor: String,
        /// Its dtype.
        expected: DType,
        /// The buffer's.
        found: DType,
    },
    /// Index arithmetic that failed (division by zero, overflow).
    #[error("index arithmetic failed in `{tensor}`")]
    IndexArithmetic {
        /// The tensor being computed.
        tensor: String,
    },
}

/// Computes every output of an `f32` program from `inputs` (one per placeholder, in definition
/// order): [`evaluate_data`] for the common case.
pub fn evaluate(program: &Program, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, EvalError> {
    let inputs: Vec<DataRef<'_>> = inputs.iter().map(|slice| DataRef::F32(slice)).collect();
    Ok(evaluate_f64(program, &inputs)?
        .into_iter()
        .map(|values| values.into_iter().map(|x| x as f32).collect())
        .collect())
}

/// Computes every output of `program` from typed `inputs` (one per placeholder, in definition
/// order), each output of its tensor's dtype.
pub fn evaluate_data(program: &Program, inputs: &[DataRef<'_>]) -> Result<Vec<Data>, EvalError> {
    Ok(evaluate_f64(program, inputs)?
        .into_iter()
        .zip(&program.outputs)
        .map(|(values, tensor)| Data::from_f64(program.tensor(*tensor).dtype, &values))
        .collect())
}

/// Every output as `f64`, each element already rounded or wrapped to its tensor's dtype.
pub fn evaluate_f64(program: &Program, inputs: &[DataRef<'_>]) -> Result<Vec<Vec<f64>>, EvalError> {
    let mut values = input_values(program, inputs)?;
    let mut env = vec![0i64; program.var_names.len()];
    for index in dependency_order(program) {
        let decl = &program.tensors[index];
        if decl.compute().is_none() {
            continue;
        }
        let tensor = crate::expr::BufferId(index as u32);
        let mut out = vec![0.0; decl.len()];
        let mut indices = vec![0i64; decl.shape.len()];
        let evaluator = Evaluator {
            program,
            values: &values,
            tensor: &decl.name,
        };
        for (flat, slot) in out.iter_mut().enumerate() {
            let mut rest = flat as i64;
            for (position, &extent) in indices.iter_mut().zip(&decl.shape).rev() {
                *position = rest % extent;
                rest /= extent;
            }
            *slot = evaluator.element(tensor, &indices, &mut env)?;
        }
        values[index] = out;
    }
    Ok(program
        .outputs
        .iter()
        .map(|tensor| values[tensor.index()].clone())
        .collect())
}

/// The inputs as `f64`, checked against the placeholders; computed tensors start empty.
fn input_values(program: &Program, inputs: &[DataRef<'_>]) -> Result<Vec<Vec<f64>>, EvalError> {
    let placeholders = program.inputs();
    if placeholders.len() != inputs.len() {
        return Err(EvalError::InputCount {
            program: program.name.clone(),
            expected: placeholders.len(),
            found: inputs.len(),
        });
    }
    let mut values: Vec<Vec<f64>> = vec![Vec::new(); program.tensors.len()];
    for (&placeholder, input) in placeholders.iter().zip(inputs) {
        let decl = program.tensor(placeholder);
        if input.len() != decl.len() {
            return Err(EvalError::InputLength {
                tensor: decl.name.clone(),
                expected: decl.len(),
                found: input.len(),
            });
        }
        if input.dtype() != decl.dtype {
            return Err(EvalError::InputDType {
                tensor: decl.name.clone(),
                expected: decl.dtype,
                found: input.dtype(),
            });
        }
        values[placeholder.index()] = input.to_f64();
    }
    Ok(values)
}

/// Computes one element of a computed tensor straight from the definitions, evaluating the
/// elements of intermediate tensors it reads on demand. This is how a large kernel's output is
/// checked without evaluating the whole program: a sample of points (corners, edges of every
/// dimension, random interior points) costs a tiny fraction of the full computation.
pub fn evaluate_point(
    program: &Program,
    inputs: &[&[f32]],
    tensor: crate::expr::BufferId,
    indices: &[i64],
) -> Result<f32, EvalError> {
    let inputs: Vec<DataRef<'_>> = inputs.iter().map(|slice| DataRef::F32(slice)).collect();
    let points = evaluate_points_f64(program, &inputs, tensor, &[indices.to_vec()])?;
    Ok(points[0] as f32)
}

/// [`evaluate_point`] for many points of one tensor, converting the inputs once: a point then
/// costs only its own reduction.
pub fn evaluate_points(
    program: &Program,
    inputs: &[&[f32]],
    tensor: crate::expr::BufferId,
    points: &[Vec<i64>],
) -> Result<Vec<f32>, EvalError> {
    let inputs: Vec<DataRef<'_>> = inputs.iter().map(|slice| DataRef::F32(slice)).collect();
    let points = evaluate_points_f64(program, &inputs, tensor, points)?;
    Ok(points.into_iter().map(|x| x as f32).collect())
}

/// [`evaluate_points`] on typed inputs, each value rounded or wrapped to the tensor's dtype and
/// returned as `f64` (exact for every dtype).
pub fn evaluate_points_f64(
    program: &Program,
    inputs: &[DataRef<'_>],
    tensor: crate::expr::BufferId,
    points: &[Vec<i64>],
) -> Result<Vec<f64>, EvalError> {
    let values = input_values(program, inputs)?;
    let evaluator = Evaluator {
        program,
        values: &values,
        tensor: &program.tensor(tensor).name,
    };
    let mut env = vec![0i64; program.var_names.len()];
    points
        .iter()
        .map(|indices| evaluator.element(tensor, indices, &mut env))
        .collect()
}

/// Tensor indices with every tensor after the tensors it reads. Definition order already is one
/// for programs built with [`crate::ProgramBuilder`]; a scheduled program's cache stages are
/// appended after their readers, so the order is derived from the loads.
fn dependency_order(program: &Program) -> Vec<usize> {
    fn visit(program: &Program, index: usize, state: &mut [u8], order: &mut Vec<usize>) {
        if state[index] != 0 {
            return;
        }
        state[index] = 1;
        if let Some(def) = program.tensors[index].compute() {
            def.body.value().for_each_load(&mut |load| {
                if load.buffer.index() < state.len() {
                    visit(program, load.buffer.index(), state, order);
                }
            });
        }
        order.push(index);
    }
    let mut state = vec![0u8; program.tensors.len()];
    let mut order = Vec::with_capacity(program.tensors.len());
    for index in 0..program.tensors.len() {
        visit(program, index, &mut state, &mut order);
    }
    order
}

/// `value` as an element of `dtype`: rounded to `f32`, or truncated and wrapped to an integer
/// type.
fn round_to(dtype: DType, value: f64) -> f64 {
    match dtype {
        DType::F32 => value as f32 as f64,
        DType::F64 => value,
        integer => integer.wrap(value as i64) as f64,
    }
}

struct Evaluator<'a> {
    program: &'a Program,
    values: &'a [Vec<f64>],
    tensor: &'a str,
}

impl Evaluator<'_> {
    /// One element of `tensor`: read from `values` when it was computed or supplied, evaluated
    /// from the definition otherwise.
    fn element(
        &self,
        tensor: crate::expr::BufferId,
        indices: &[i64],
        env: &mut [i64],
    ) -> Result<f64, EvalError> {
        let decl = self.program.tensor(tensor);
        let inside = indices.len() == decl.shape.len()
            && indices
                .iter()
                .zip(&decl.shape)
                .all(|(&i, &extent)| (0..extent).contains(&i));
        if !inside {
            return Err(EvalError::OutOfBounds {
                tensor: decl.name.clone(),
                indices: indices.to_vec(),
                shape: decl.shape.clone(),
            });
        }
        let stored = &self.values[tensor.index()];
        if !stored.is_empty() {
            let flat = indices
                .iter()
                .zip(&decl.shape)
                .fold(0i64, |flat, (&i, &extent)| flat * extent + i);
            return Ok(stored[flat as usize]);
        }
        let TensorKind::Compute(def) = &decl.kind else {
            return Err(EvalError::OutOfBounds {
                tensor: decl.name.clone(),
                indices: indices.to_vec(),
                shape: Vec::new(),
            });
        };
        for (axis, &index) in def.axes.iter().zip(indices) {
            env[axis.var.index()] = index;
        }
        let value = match &def.body {
            ComputeBody::Elementwise(value) => self.value(value, env)?,
            ComputeBody::Reduce { op, axes, body } => {
                let mut accumulator = op.identity(decl.dtype).value;
                let total: i64 = axes.iter().map(|axis| axis.extent).product();
                for point in 0..total {
                    let mut rest = point;
                    for axis in axes.iter().rev() {
                        env[axis.var.index()] = rest % axis.extent;
                        rest /= axis.extent;
                    }
                    let value = self.value(body, env)?;
                    accumulator = match op {
                        ReduceOp::Sum if decl.dtype.is_integer() => {
                            round_to(decl.dtype, accumulator + value)
                        }
                        ReduceOp::Sum => accumulator + value,
                        ReduceOp::Max => accumulator.max(value),
                    };
                }
                accumulator
            }
        };
        Ok(round_to(decl.dtype, value))
    }

    fn index(&self, expr: &IndexExpr, env: &[i64]) -> Result<i64, EvalError> {
        expr.eval(&|var: VarId| env.get(var.index()).copied())
            .ok_or_else(|| EvalError::IndexArithmetic {
                tensor: self.tensor.to_string(),
            })
    }

    fn value(&self, expr: &ValueExpr, env: &[i64]) -> Result<f64, EvalError> {
        Ok(match expr {
            ValueExpr::Const(scalar) => scalar.value,
            ValueExpr::Load(load) => {
                let indices = load
                    .indices
                    .iter()
                    .map(|index| self.index(index, env))
                    .collect::<Result<Vec<i64>, EvalError>>()?;
                if self.values[load.buffer.index()].is_empty() {
                    // Evaluating another tensor's element on demand rebinds that tensor's axis
                    // variables; a copy keeps this expression's bindings intact.
                    let mut inner_env = env.to_vec();
                    self.element(load.buffer, &indices, &mut inner_env)?
                } else {
                    // Stored elements are read without touching any variable.
                    self.element(load.buffer, &indices, &mut [])?
                }
            }
            ValueExpr::Binary(op, a, b) => {
                let (x, y) = (self.value(a, env)?, self.value(b, env)?);
                match self.dtype(a) {
                    integer if integer.is_integer() => {
                        // Division is refused by the program's dtype check.
                        let exact = op.apply_int(x as i64, y as i64).unwrap_or(0);
                        integer.wrap(exact) as f64
                    }
                    _ => op.apply(x, y),
                }
            }
            ValueExpr::Unary(op, a) => {
                let x = self.value(a, env)?;
                match self.dtype(a) {
                    integer if integer.is_integer() => integer.wrap(match op {
                        crate::expr::UnaryOp::Neg => (x as i64).wrapping_neg(),
                        crate::expr::UnaryOp::Abs => (x as i64).wrapping_abs(),
                        crate::expr::UnaryOp::Sqrt => x as i64,
                    }) as f64,
                    _ => op.apply(x),
                }
            }
            ValueExpr::Fma(a, b, c) => {
                let (x, y, z) = (
                    self.value(a, env)?,
                    self.value(b, env)?,
                    self.value(c, env)?,
                );
                match self.dtype(a) {
                    integer if integer.is_integer() => {
                        let product = integer.wrap((x as i64).wrapping_mul(y as i64));
                        integer.wrap(product.wrapping_add(z as i64)) as f64
                    }
                    _ => x * y + z,
                }
            }
            ValueExpr::Select(cond, a, b) => {
                if self.cond(cond, env)? {
                    self.value(a, env)?
                } else {
                    self.value(b, env)?
                }
            }
            // Floats convert to i32 only, truncated and saturated (NaN is 0), an f32 value
            // rounded to f32 first (the integer of the value a kernel computes).
            ValueExpr::Cast(DType::I32, a) if self.dtype(a).is_float() => {
                let value = round_to(self.dtype(a), self.value(a, env)?);
                value as i32 as f64
            }
            ValueExpr::Cast(dtype, a) => round_to(*dtype, self.value(a, env)?),
            ValueExpr::FromIndex(dtype, index) => round_to(*dtype, self.index(index, env)? as f64),
        })
    }

    /// The dtype of `expr`: its first operand's, down to a constant, a load, a cast or an
    /// index (operands agree, which building the program checked).
    fn dtype(&self, expr: &ValueExpr) -> DType {
        match expr {
            ValueExpr::Const(scalar) => scalar.dtype,
            ValueExpr::Load(load) => self
                .program
                .tensors
                .get(load.buffer.index())
                .map_or(DType::F32, |tensor| tensor.dtype),
            ValueExpr::Binary(_, a, _)
            | ValueExpr::Unary(_, a)
            | ValueExpr::Fma(a, _, _)
            | ValueExpr::Select(_, a, _) => self.dtype(a),
            ValueExpr::Cast(dtype, _) | ValueExpr::FromIndex(dtype, _) => *dtype,
        }
    }

    fn cond(&self, cond: &Cond, env: &[i64]) -> Result<bool, EvalError> {
        Ok(match cond {
            Cond::Const(value) => *value,
            Cond::Index(op, a, b) => op.compare(self.index(a, env)?, self.index(b, env)?),
            Cond::Value(op, a, b) => op.compare(self.value(a, env)?, self.value(b, env)?),
            Cond::And(a, b) => self.cond(a, env)? && self.cond(b, env)?,
            Cond::Or(a, b) => self.cond(a, env)? || self.cond(b, env)?,
            Cond::Not(a) => !self.cond(a, env)?,
        })
    }
}

/// The first element where `actual` and `expected` differ by more than `tolerance` relative to
/// the larger of the element's absolute value and the output's largest one (so that results
/// near zero after cancellation are judged on the scale of the computation), or, with
/// [`compare_with_magnitudes`], of the element's magnitude.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The flat index of the element.
    pub index: usize,
    /// The value computed.
    pub actual: f32,
    /// The reference value.
    pub expected: f32,
}

/// Compares two outputs elementwise; `Err` names the first element out of tolerance.
pub fn compare(actual: &[f32], expected: &[f32], tolerance: f64) -> Result<(), Mismatch> {
    compare_with_magnitudes(actual, expected, &[], tolerance)
}

/// The magnitude behind every output element: `program` evaluated on the absolute values of
/// `inputs`. For sums of products (matmul, convolutions, dense with bias and ReLU) an element's
/// magnitude bounds the sum of the absolute values of the terms it adds, and so the rounding
/// error by which two correct evaluation orders may differ, however much the terms cancel.
pub fn magnitudes(program: &Program, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, EvalError> {
    let absolute: Vec<Vec<f32>> = inputs
        .iter()
        .map(|input| input.iter().map(|x| x.abs()).collect())
        .collect();
    let refs: Vec<&[f32]> = absolute.iter().map(Vec::as_slice).collect();
    evaluate(program, &refs)
}

/// [`compare`], where element `i` may also differ by `tolerance` relative to `magnitudes[i]`
/// (from [`magnitudes`]; missing entries count as 0). A sum whose terms cancel to almost
/// nothing is judged on the scale of its terms: its rounding error is theirs, not its own.
pub fn compare_with_magnitudes(
    actual: &[f32],
    expected: &[f32],
    magnitudes: &[f32],
    tolerance: f64,
) -> Result<(), Mismatch> {
    let scale = expected
        .iter()
        .fold(0f64, |acc, &x| acc.max((x as f64).abs()));
    if actual.len() != expected.len() {
        return Err(Mismatch {
            index: actual.len().min(expected.len()),
            actual: f32::NAN,
            expected: f32::NAN,
        });
    }
    for (index, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let (a64, e64) = (a as f64, e as f64);
        let magnitude = magnitudes.get(index).map_or(0.0, |&m| (m as f64).abs());
        let allowed = tolerance * e64.abs().max(scale).max(magnitude).max(1e-30);
        let same = (a64 - e64).abs() <= allowed || (a.is_nan() && e.is_nan()) || a == e;
        if !same {
            return Err(Mismatch {
                index,
                actual: a,
                expected: e,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Layout, Workload};
    use crate::random::SplitMix64;

    #[test]
    fn cancelled_sums_are_judged_on_the_scale_of_their_terms() {
        // y = x0 * w0 + x1 * w1 with terms of about 1 that cancel to 1e-4.
        let workload: Workload = "matmul:m=1,n=1,k=2".parse().unwrap();
        let program = workload.program(&Layout::default()).unwrap();
        let (x, w) = ([1.0f32, -0.9999], [1.0f32, 1.0]);
        let inputs: [&[f32]; 2] = [&x, &w];
        let expected = evaluate(&program, &inputs).unwrap();
        let magnitudes = magnitudes(&program, &inputs).unwrap();
        assert!((magnitudes[0][0] - 1.9999).abs() < 1e-6, "{magnitudes:?}");
        // Off by 1e-7, a rounding error of the terms: 1e-3 of the result, 5e-8 of the terms.
        let actual = [expected[0][0] + 1e-7];
        assert!(compare(&actual, &expected[0], 1e-4).is_err());
        compare_with_magnitudes(&actual, &expected[0], &magnitudes[0], 1e-4).unwrap();
        // An error on the scale of the terms is still an error.
        let wrong = [expected[0][0] + 1e-3];
        assert!(compare_with_magnitudes(&wrong, &expected[0], &magnitudes[0], 1e-4).is_err());
    }

    #[test]
    fn a_point_evaluates_to_the_same_value_as_the_whole_program() {
        for text in [
            "dense:m=3,n=5,k=4,bias=true,relu=true",
            "conv2d:n=1,ic=2,h=5,w=4,oc=3,kh=3,kw=3,stride=2,pad=1",
        ] {
            let workload: Workload = text.parse().unwrap();
            let program = workload
                .program(&Layout {
                    pack_columns: Some(2),
                    ..Layout::default()
                })
                .unwrap();
            let mut rng = SplitMix64::new(3);
            let inputs: Vec<Vec<f32>> = program
                .inputs()
                .iter()
                .map(|&t| {
                    (0..program.tensor(t).len())
                        .map(|_| rng.unit_f32())
                        .collect()
                })
                .collect();
            let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let whole = evaluate(&program, &refs).unwrap();
            let output = program.outputs[0];
            let shape = program.tensor(output).shape.clone();
            let last: Vec<i64> = shape.iter().map(|&extent| extent - 1).collect();
            let flat_last = whole[0].len() - 1;
            assert_eq!(
                evaluate_point(&program, &refs, output, &last),
                Ok(whole[0][flat_last]),
                "{text}"
            );
            assert_eq!(
                evaluate_point(&program, &refs, output, &vec![0; shape.len()]),
                Ok(whole[0][0]),
                "{text}"
            );
            assert!(matches!(
                evaluate_point(&program, &refs, output, &shape),
                Err(EvalError::OutOfBounds { .. })
            ));
        }
    }
}
