//! Checking a compiled kernel's output before its time counts.
//!
//! Two oracles, chosen by size. Small workloads run the reference interpreter on the very nest
//! that was compiled and compare every element: that isolates the back end. The interpreter
//! computes in `f64` with every access checked, which makes it slow (about a quarter of a second
//! for a 128x128x128 matmul), so larger workloads are checked at a sample of output points
//! (every corner, points on the edges of every dimension, random interior points) computed by
//! the direct evaluator straight from the operator's definition: that checks lowering and the
//! back end together, at a tiny fraction of the cost.

use anyhow::Context;
use looptune::ir::eval::{compare, evaluate_point};
use looptune::ir::interp;
use looptune::ir::random::SplitMix64;
use looptune::{LoopNest, Program};

/// Relative tolerance against oracles that compute in `f64`: a kernel's `f32` accumulation
/// differs from them by rounding, far below this.
pub const TOLERANCE: f64 = 1e-4;
/// Workloads up to this many floating-point operations are checked in full by the interpreter
/// (about two seconds of interpretation); larger ones at sampled points.
pub const FULL_CHECK_MAX_FLOPS: f64 = (1u64 << 25) as f64;
/// Random points sampled per output, besides the corners.
const SAMPLED_POINTS: usize = 256;
/// The seed of the sampled points: fixed, so that a failure reproduces.
const SAMPLE_SEED: u64 = 0x5a3d_1e5e;

/// How a kernel's output was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Every element, against the interpreter running the same nest.
    Full,
    /// Sampled elements, against the direct evaluator of the definition.
    Sampled,
}

impl Method {
    /// A short name for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Sampled => "sampled",
        }
    }
}

/// What checking found.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// How.
    pub method: Method,
    /// Elements compared.
    pub points: usize,
    /// The first element out of tolerance, described; `None` when all matched.
    pub mismatch: Option<String>,
}

/// Checks `outputs` (the kernel's, in `nest.outputs` order) computed from `inputs`.
pub fn check(
    program: &Program,
    nest: &LoopNest,
    inputs: &[&[f32]],
    outputs: &[Vec<f32>],
    method: Method,
) -> anyhow::Result<Outcome> {
    match method {
        Method::Full => full(nest, inputs, outputs),
        Method::Sampled => sampled(program, nest, inputs, outputs),
    }
}

fn full(nest: &LoopNest, inputs: &[&[f32]], outputs: &[Vec<f32>]) -> anyhow::Result<Outcome> {
    let mut expected: Vec<Vec<f32>> = outputs
        .iter()
        .map(|out| vec![f32::NAN; out.len()])
        .collect();
    let mut expected_refs: Vec<&mut [f32]> = expected.iter_mut().map(Vec::as_mut_slice).collect();
    interp::run(nest, inputs, &mut expected_refs).context("running the reference interpreter")?;
    let mismatch = nest
        .outputs
        .iter()
        .zip(outputs.iter().zip(&expected))
        .find_map(|(&id, (actual, expected))| {
            compare(actual, expected, TOLERANCE).err().map(|m| {
                format!(
                    "output `{}` element {} is {}, the interpreter says {}",
                    nest.buffer(id).name,
                    m.index,
                    m.actual,
                    m.expected
                )
            })
        });
    Ok(Outcome {
        method: Method::Full,
        points: outputs.iter().map(Vec::len).sum(),
        mismatch,
    })
}

/// The corners of `shape`, then random points, a quarter of whose coordinates are pinned to the
/// first or last index of their dimension (edges are where tails and guards go wrong).
fn sample_points(shape: &[i64], rng: &mut SplitMix64) -> Vec<Vec<i64>> {
    let rank = shape.len();
    let mut points: Vec<Vec<i64>> = (0..1usize << rank.min(10))
        .map(|corner| {
            (0..rank)
                .map(|dim| {
                    if corner >> dim & 1 == 1 {
                        shape[dim] - 1
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect();
    for _ in 0..SAMPLED_POINTS {
        let point = shape
            .iter()
            .map(|&extent| match rng.below(8) {
                0 => 0,
                1 => extent - 1,
                _ => (rng.next_u64() % extent as u64) as i64,
            })
            .collect();
        points.push(point);
    }
    points
}

fn flat_index(shape: &[i64], point: &[i64]) -> usize {
    shape
        .iter()
        .zip(point)
        .fold(0i64, |flat, (&extent, &index)| flat * extent + index) as usize
}

fn sampled(
    program: &Program,
    nest: &LoopNest,
    inputs: &[&[f32]],
    outputs: &[Vec<f32>],
) -> anyhow::Result<Outcome> {
    let mut rng = SplitMix64::new(SAMPLE_SEED);
    let mut points_checked = 0;
    for ((&tensor, &buffer), actual) in program.outputs.iter().zip(&nest.outputs).zip(outputs) {
        let name = &nest.buffer(buffer).name;
        let shape = program.tensor(tensor).shape.clone();
        let points = sample_points(&shape, &mut rng);
        let mut got = Vec::with_capacity(points.len());
        let mut want = Vec::with_capacity(points.len());
        for point in &points {
            got.push(actual[flat_index(&shape, point)]);
            want.push(
                evaluate_point(program, inputs, tensor, point)
                    .with_context(|| format!("evaluating `{name}` at {point:?}"))?,
            );
        }
        points_checked += points.len();
        if let Err(m) = compare(&got, &want, TOLERANCE) {
            return Ok(Outcome {
                method: Method::Sampled,
                points: points_checked,
                mismatch: Some(format!(
                    "output `{name}` at {:?} is {}, the definition says {}",
                    points[m.index], m.actual, m.expected
                )),
            });
        }
    }
    Ok(Outcome {
        method: Method::Sampled,
        points: points_checked,
        mismatch: None,
    })
}
