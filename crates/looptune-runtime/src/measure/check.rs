//! Correctness before time: a candidate's output on random inputs against the reference.
//!
//! The reference is computed from the *program*, never from the candidate: the reference
//! interpreter runs the nest of the program's default schedule (`Schedule::new` + `lower`; the
//! direct evaluator when that does not lower), in `f64`. The interpreter manages about 10-15
//! MFLOP/s in a release build (a 128x128x128 matmul takes 0.3 s), so beyond
//! [`FULL_CHECK_POINTS`] reduction points a sample of output elements is computed with the
//! direct evaluator instead: every corner, the first and last index of each dimension combined
//! with random others (tails and edges are where bugs live), and random points, up to about
//! [`SAMPLE_POINTS`] per output.
//!
//! Float outputs are compared within a relative tolerance, integer outputs bit for bit.
//! Outputs are filled with NaN before the kernel runs, so an element it never writes fails the
//! comparison; with a sample, the whole output is also scanned for NaN when the sampled
//! reference has none, so unwritten elements are caught everywhere. Integers have no NaN: the
//! measurer runs a kernel with integer outputs twice, over two different fills, and checks
//! both (an element left unwritten cannot match the reference under both).
//!
//! A [`Reference`] is computed once per program by the measurer and sent with each candidate;
//! inputs are regenerated from the seed wherever the kernel runs.

use super::options::CheckMode;
use super::result::{MeasureError, MeasureErrorKind};
use looptune_ir::eval::{compare, evaluate_f64, evaluate_points_f64, EvalError};
use looptune_ir::random::SplitMix64;
pub use looptune_ir::random::{random_data, random_inputs};
use looptune_ir::{
    interp, lower, BufferId, DType, Data, DataMut, DataRef, InterpError, Program, Schedule,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a program's reference could not be computed (the program's fault or looptune's, never a
/// candidate's: the measurer reports it for every candidate of the program).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The direct evaluator failed on a tensor.
    #[error("the direct evaluator failed on `{tensor}`: {source}")]
    Evaluator {
        /// The tensor (an output, or the program when all outputs were evaluated at once).
        tensor: String,
        /// What it said.
        #[source]
        source: EvalError,
    },
    /// The interpreter failed on the nest of the program's default schedule.
    #[error("the reference interpreter failed on the default schedule of `{program}`: {source}")]
    Interpreter {
        /// The program.
        program: String,
        /// What it said.
        #[source]
        source: InterpError,
    },
}

/// The seed of the random inputs (values in `-1..1`): fixed, so that a wrong answer reproduces.
pub const INPUT_SEED: u64 = 0x100b_7e5e;

/// Relative tolerance of the comparison (see [`looptune_ir::eval::compare`]): the kernel
/// accumulates in `f32`, the reference in `f64`; rounding stays far below this.
pub const TOLERANCE: f64 = 1e-4;

/// With [`CheckMode::Auto`], programs whose reference evaluates at most this many points
/// (output elements times reduction extents, summed over computed tensors; about two per
/// FLOP) are checked whole. 128x128x128 matmul is 2.1 million points, about 0.3 s of the
/// interpreter in release, paid once per program.
pub const FULL_CHECK_POINTS: f64 = 2.2e6;

/// Points aimed for per output in a sampled check.
pub const SAMPLE_POINTS: usize = 200;

/// The direct evaluator converts the inputs to `f64` once per output, then a point costs about
/// its own reduction; the sample stops growing past this many such units once corners and
/// edges are in, so that the reference of a huge reduction stays well under a second.
const SAMPLE_BUDGET: f64 = 2e7;

/// What the reference says about one output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectedOutput {
    /// The output's name, for messages.
    pub name: String,
    /// Its shape.
    pub shape: Vec<i64>,
    /// Its element type: floats are compared within the tolerance, integers exactly.
    pub dtype: DType,
    /// Its expected values.
    pub values: ExpectedValues,
}

/// Every expected element, or a sample, as `f64` (exact for every dtype).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExpectedValues {
    /// The whole output, row-major.
    Full(Vec<f64>),
    /// `(flat index, value)` pairs.
    Sampled(Vec<(usize, f64)>),
}

/// The expected outputs of a program on the inputs of [`random_inputs`] with `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The seed of the inputs.
    pub seed: u64,
    /// The relative tolerance of the comparison.
    pub tolerance: f64,
    /// One entry per program output, in order.
    pub outputs: Vec<ExpectedOutput>,
}

/// Points the reference evaluates: each computed tensor's elements times its reduction extents.
pub fn reference_points(program: &Program) -> f64 {
    program
        .tensors
        .iter()
        .filter_map(|tensor| {
            let def = tensor.compute()?;
            let reduction: f64 = def
                .body
                .reduce_axes()
                .iter()
                .map(|axis| axis.extent as f64)
                .product();
            Some(tensor.len() as f64 * reduction)
        })
        .sum()
}

impl Reference {
    /// Computes the reference of `program` for `mode` (see the module documentation). Fails
    /// when the program cannot be evaluated, naming the tensor or program.
    pub fn compute(program: &Program, mode: CheckMode) -> Result<Reference, ReferenceError> {
        let inputs = random_data(program, INPUT_SEED);
        let input_refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let full = match mode {
            CheckMode::Full => true,
            CheckMode::Sampled { .. } => false,
            CheckMode::Auto => reference_points(program) <= FULL_CHECK_POINTS,
        };
        let values = if full {
            full_reference(program, &input_refs)?
                .into_iter()
                .map(ExpectedValues::Full)
                .collect()
        } else {
            let target = match mode {
                CheckMode::Sampled { points } => points,
                _ => SAMPLE_POINTS,
            };
            program
                .outputs
                .iter()
                .enumerate()
                .map(|(position, &tensor)| {
                    sampled_reference(program, &input_refs, tensor, position, target)
                        .map(ExpectedValues::Sampled)
                })
                .collect::<Result<Vec<_>, ReferenceError>>()?
        };
        let outputs = program
            .outputs
            .iter()
            .zip(values)
            .map(|(&tensor, values)| {
                let decl = program.tensor(tensor);
                ExpectedOutput {
                    name: decl.name.clone(),
                    shape: decl.shape.clone(),
                    dtype: decl.dtype,
                    values,
                }
            })
            .collect();
        Ok(Reference {
            seed: INPUT_SEED,
            tolerance: TOLERANCE,
            outputs,
        })
    }

    /// Output elements the check compares.
    pub fn checked_elements(&self) -> usize {
        self.outputs
            .iter()
            .map(|output| match &output.values {
                ExpectedValues::Full(values) => values.len(),
                ExpectedValues::Sampled(points) => points.len(),
            })
            .sum()
    }

    /// Whether some output is of an integer type (then a kernel is checked over two fills).
    pub fn has_integer_output(&self) -> bool {
        self.outputs.iter().any(|output| output.dtype.is_integer())
    }

    /// Compares a kernel's `f32` `outputs` (in program output order) with the reference;
    /// `WrongAnswer` names the first bad element.
    pub fn check(&self, outputs: &[Vec<f32>]) -> Result<(), MeasureError> {
        let outputs: Vec<DataRef<'_>> = outputs.iter().map(|values| DataRef::F32(values)).collect();
        self.check_data(&outputs)
    }

    /// Compares a kernel's typed `outputs` (in program output order) with the reference:
    /// floats within the tolerance, integers exactly; `WrongAnswer` names the first bad
    /// element.
    pub fn check_data(&self, outputs: &[DataRef<'_>]) -> Result<(), MeasureError> {
        for (expected, actual) in self.outputs.iter().zip(outputs) {
            if actual.dtype() != expected.dtype {
                return Err(MeasureError::new(
                    MeasureErrorKind::WrongAnswer,
                    format!(
                        "output `{}` holds {}, the reference {}",
                        expected.name,
                        actual.dtype(),
                        expected.dtype
                    ),
                ));
            }
            if expected.dtype.is_integer() {
                check_exact(expected, *actual)?;
                continue;
            }
            let actual = &actual
                .to_f64()
                .into_iter()
                .map(|x| x as f32)
                .collect::<Vec<f32>>();
            let wrong = |flat: usize, actual: f32, expected_value: f32, how: &str| {
                MeasureError::new(
                    MeasureErrorKind::WrongAnswer,
                    format!(
                        "output `{}` element {flat} at {:?} is {actual}, the reference says \
                         {expected_value} ({how}, relative tolerance {})",
                        expected.name,
                        unflatten(flat, &expected.shape),
                        self.tolerance
                    ),
                )
            };
            match &expected.values {
                ExpectedValues::Full(values) => {
                    let values: Vec<f32> = values.iter().map(|&x| x as f32).collect();
                    if let Err(mismatch) = compare(actual, &values, self.tolerance) {
                        return Err(wrong(
                            mismatch.index,
                            mismatch.actual,
                            mismatch.expected,
                            "whole output compared",
                        ));
                    }
                }
                ExpectedValues::Sampled(points) => {
                    let (flats, values): (Vec<usize>, Vec<f32>) =
                        points.iter().map(|&(flat, x)| (flat, x as f32)).unzip();
                    let sampled: Vec<f32> = flats.iter().map(|&flat| actual[flat]).collect();
                    if let Err(mismatch) = compare(&sampled, &values, self.tolerance) {
                        return Err(wrong(
                            flats[mismatch.index],
                            mismatch.actual,
                            mismatch.expected,
                            &format!("{} sampled elements compared", points.len()),
                        ));
                    }
                    if !values.iter().any(|value| value.is_nan()) {
                        if let Some(flat) = actual.iter().position(|value| value.is_nan()) {
                            return Err(MeasureError::new(
                                MeasureErrorKind::WrongAnswer,
                                format!(
                                    "output `{}` element {flat} at {:?} is NaN: never written, \
                                     or computed from garbage (no sampled reference value is NaN)",
                                    expected.name,
                                    unflatten(flat, &expected.shape)
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// An integer output compared bit for bit; `WrongAnswer` names the first differing element.
fn check_exact(expected: &ExpectedOutput, actual: DataRef<'_>) -> Result<(), MeasureError> {
    let wrong = |flat: usize, value: f64, reference: f64, how: &str| {
        Err(MeasureError::new(
            MeasureErrorKind::WrongAnswer,
            format!(
                "output `{}` element {flat} at {:?} is {value}, the reference says {reference} \
                 ({how}, {} compared exactly)",
                expected.name,
                unflatten(flat, &expected.shape),
                expected.dtype
            ),
        ))
    };
    match &expected.values {
        ExpectedValues::Full(values) => {
            let actual = actual.to_f64();
            if let Some(flat) =
                (0..values.len()).find(|&flat| actual.get(flat) != Some(&values[flat]))
            {
                let value = actual.get(flat).copied().unwrap_or(f64::NAN);
                return wrong(flat, value, values[flat], "whole output compared");
            }
        }
        ExpectedValues::Sampled(points) => {
            for &(flat, reference) in points {
                let value = actual.get_f64(flat).unwrap_or(f64::NAN);
                if value != reference {
                    let how = format!("{} sampled elements compared", points.len());
                    return wrong(flat, value, reference, &how);
                }
            }
        }
    }
    Ok(())
}

/// Every output of `program` as `f64`: the interpreter on the default schedule's nest, or the
/// direct evaluator when the default schedule does not lower.
fn full_reference(
    program: &Program,
    inputs: &[DataRef<'_>],
) -> Result<Vec<Vec<f64>>, ReferenceError> {
    let Ok(nest) = lower(&Schedule::new(program)) else {
        return evaluate_f64(program, inputs).map_err(|source| ReferenceError::Evaluator {
            tensor: program.name.clone(),
            source,
        });
    };
    let mut outputs: Vec<Data> = program
        .outputs
        .iter()
        .map(|&tensor| {
            let decl = program.tensor(tensor);
            Data::zeros(decl.dtype, decl.len())
        })
        .collect();
    let mut output_refs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
    interp::run_data(&nest, inputs, &mut output_refs).map_err(|source| {
        ReferenceError::Interpreter {
            program: program.name.clone(),
            source,
        }
    })?;
    Ok(outputs.iter().map(Data::to_f64).collect())
}

/// The sampled reference of one output (see the module documentation).
fn sampled_reference(
    program: &Program,
    inputs: &[DataRef<'_>],
    tensor: BufferId,
    position: usize,
    target: usize,
) -> Result<Vec<(usize, f64)>, ReferenceError> {
    let decl = program.tensor(tensor);
    let reduction: f64 = decl
        .compute()
        .map(|def| {
            def.body
                .reduce_axes()
                .iter()
                .map(|axis| axis.extent as f64)
                .product()
        })
        .unwrap_or(1.0);
    let affordable = (SAMPLE_BUDGET / reduction.max(1.0)) as usize;
    let flats = sample_points(
        &decl.shape,
        target,
        affordable,
        INPUT_SEED ^ (position as u64 + 1),
    );
    let points: Vec<Vec<i64>> = flats
        .iter()
        .map(|&flat| unflatten(flat, &decl.shape))
        .collect();
    let values = evaluate_points_f64(program, inputs, tensor, &points).map_err(|source| {
        ReferenceError::Evaluator {
            tensor: decl.name.clone(),
            source,
        }
    })?;
    Ok(flats.into_iter().zip(values).collect())
}

/// Flat indices to sample in a tensor of `shape`: corners (up to 2^10 of them), then the first
/// and last index of each dimension with random others, then random points, until `target`
/// points, fewer when only `affordable` points fit the budget (but never fewer than the corners
/// and edges), never more than the tensor holds. Deterministic in `seed`.
pub(crate) fn sample_points(
    shape: &[i64],
    target: usize,
    affordable: usize,
    seed: u64,
) -> Vec<usize> {
    let len: usize = shape.iter().product::<i64>().max(0) as usize;
    let mut rng = SplitMix64::new(seed);
    let mut chosen = std::collections::BTreeSet::new();
    let mut order = Vec::new();
    let mut add = |indices: &[i64], order: &mut Vec<usize>| {
        let flat = flatten(indices, shape);
        if chosen.insert(flat) {
            order.push(flat);
        }
    };
    if shape.len() <= 10 {
        for corner in 0..1usize << shape.len() {
            let indices: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(dim, &extent)| {
                    if corner >> dim & 1 == 1 {
                        extent - 1
                    } else {
                        0
                    }
                })
                .collect();
            add(&indices, &mut order);
        }
    }
    for dim in 0..shape.len() {
        for edge in [0, shape[dim] - 1] {
            let mut indices: Vec<i64> = shape
                .iter()
                .map(|&extent| rng.below(extent as usize) as i64)
                .collect();
            indices[dim] = edge;
            add(&indices, &mut order);
        }
    }
    let wanted = target.min(affordable.max(order.len())).min(len);
    // Random draws may repeat; a bounded number of attempts keeps tiny tensors from looping.
    let mut attempts = 0;
    while order.len() < wanted && attempts < 8 * target + 64 {
        let indices: Vec<i64> = shape
            .iter()
            .map(|&extent| rng.below(extent as usize) as i64)
            .collect();
        add(&indices, &mut order);
        attempts += 1;
    }
    order
}

/// Row-major flat index of `indices` in `shape`.
fn flatten(indices: &[i64], shape: &[i64]) -> usize {
    indices
        .iter()
        .zip(shape)
        .fold(0i64, |flat, (&index, &extent)| flat * extent + index) as usize
}

/// The indices of row-major flat index `flat` in `shape`.
pub(crate) fn unflatten(flat: usize, shape: &[i64]) -> Vec<i64> {
    let mut rest = flat as i64;
    let mut indices = vec![0; shape.len()];
    for (index, &extent) in indices.iter_mut().zip(shape).rev() {
        *index = rest % extent.max(1);
        rest /= extent.max(1);
    }
    indices
}

#[cfg(test)]
mod tests {
    use super::*;
    use looptune_ir::Workload;

    fn matmul(text: &str) -> Program {
        let workload: Workload = text.parse().expect("a workload");
        workload
            .program(&looptune_ir::Layout::default())
            .expect("a program")
    }

    #[test]
    fn samples_include_every_corner_and_edge_and_are_deterministic() {
        let shape = [5, 7];
        let points = sample_points(&shape, 20, usize::MAX, 9);
        assert_eq!(points, sample_points(&shape, 20, usize::MAX, 9));
        assert_eq!(points.len(), 20);
        for corner in [[0, 0], [0, 6], [4, 0], [4, 6]] {
            assert!(points.contains(&flatten(&corner, &shape)), "{corner:?}");
        }
        for dim in 0..2 {
            for edge in [0, shape[dim] - 1] {
                assert!(
                    points
                        .iter()
                        .any(|&flat| unflatten(flat, &shape)[dim] == edge),
                    "dimension {dim} index {edge}"
                );
            }
        }
        // A budget for nothing still keeps corners and edges; a tiny tensor is sampled whole.
        assert!(sample_points(&shape, 200, 0, 9).len() >= 4);
        assert_eq!(sample_points(&[2, 2], 200, usize::MAX, 1).len(), 4);
    }

    #[test]
    fn full_and_sampled_references_agree_with_each_other() {
        let program = matmul("matmul:m=9,n=13,k=5");
        let full = Reference::compute(&program, CheckMode::Full).expect("full reference");
        let sampled = Reference::compute(&program, CheckMode::Sampled { points: 30 })
            .expect("sampled reference");
        let ExpectedValues::Full(values) = &full.outputs[0].values else {
            panic!("a full reference was asked for");
        };
        let ExpectedValues::Sampled(points) = &sampled.outputs[0].values else {
            panic!("a sampled reference was asked for");
        };
        assert_eq!(points.len(), 30);
        for &(flat, value) in points {
            assert!((values[flat] - value).abs() <= 1e-5, "element {flat}");
        }
        let values: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        assert_eq!(full.check(std::slice::from_ref(&values)), Ok(()));
        assert_eq!(sampled.check(std::slice::from_ref(&values)), Ok(()));
    }

    #[test]
    fn a_wrong_or_unwritten_element_is_named() {
        let program = matmul("matmul:m=4,n=6,k=3");
        let full = Reference::compute(&program, CheckMode::Auto).expect("reference");
        let ExpectedValues::Full(values) = &full.outputs[0].values else {
            panic!("a small program is checked whole");
        };
        let values: Vec<f32> = values.iter().map(|&x| x as f32).collect();
        let mut wrong = values.clone();
        wrong[13] += 1.0;
        let error = full.check(&[wrong]).unwrap_err();
        assert_eq!(error.kind, MeasureErrorKind::WrongAnswer);
        assert!(error.message.contains("element 13 at [2, 1]"), "{error}");

        let sampled =
            Reference::compute(&program, CheckMode::Sampled { points: 1 }).expect("reference");
        let mut unwritten = values.clone();
        let missed = (0..unwritten.len())
            .find(|flat| {
                let ExpectedValues::Sampled(points) = &sampled.outputs[0].values else {
                    unreachable!("sampled");
                };
                points
                    .iter()
                    .all(|&(sampled_flat, _)| sampled_flat != *flat)
            })
            .expect("a sample of a few points misses some element");
        unwritten[missed] = f32::NAN;
        let error = sampled.check(&[unwritten]).unwrap_err();
        assert!(error.message.contains("is NaN"), "{error}");
        assert!(
            error.message.contains(&format!("element {missed} ")),
            "{error}"
        );
    }

    #[test]
    fn reference_points_count_reductions() {
        assert_eq!(reference_points(&matmul("matmul:m=2,n=3,k=4")), 24.0);
    }
}
