//! Random legal schedules of random operators, for differential testing.
//!
//! Differential tests (interpreter against the direct evaluator here, JIT against the
//! interpreter in `looptune-jit`) need many (operator, shape, schedule) triples that are legal by
//! construction and reach every primitive: splits that do not divide, reorders, fuses, unrolls,
//! vectorized innermost loops, parallel outer loops, cache_write with compute_at (register
//! tiles), compute_at of packing and padding stages, and inlining. Everything is derived from one
//! seed so a failure is reproduced by its seed alone.

use crate::loop_nest::LoopKind;
use crate::ops::{
    BatchMatmulParams, Conv2dParams, DenseParams, DepthwiseConv2dParams, Layout, MatmulParams,
    Workload,
};
use crate::schedule::{Attach, AxisId, AxisKind, Schedule, StageId};

/// A small deterministic generator (SplitMix64): no dependency, same sequence everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` at least 1).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
        self.below(denominator) < numerator
    }

    /// One element of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A value in `-1.0..1.0`, for test inputs.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Where a differential test's fresh seeds come from: a stream no earlier run saw, so that CI does
/// not only ever re-check the same schedules, yet one a failure can replay. It starts at
/// `LOOPTUNE_FRESH_SEED` when that is set (the start a failing run printed), else at the clock,
/// and holds `LOOPTUNE_FRESH_CASES` seeds when set, else the test's own default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreshSeeds {
    /// The generator's seed; printed by the tests as `LOOPTUNE_FRESH_SEED=<start>`.
    pub start: u64,
    /// How many seeds the stream yields.
    pub count: usize,
}

impl FreshSeeds {
    /// The stream the environment asks for, `default_count` seeds long unless it says otherwise.
    pub fn from_env(default_count: usize) -> FreshSeeds {
        let start = std::env::var("LOOPTUNE_FRESH_SEED")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            });
        let count = std::env::var("LOOPTUNE_FRESH_CASES")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default_count);
        FreshSeeds { start, count }
    }

    /// The seeds, in order: the first `count` outputs of `SplitMix64::new(start)`.
    pub fn seeds(&self) -> impl Iterator<Item = u64> {
        let mut stream = SplitMix64::new(self.start);
        (0..self.count).map(move |_| stream.next_u64())
    }
}

/// Random inputs in `-1..1` for every placeholder of `program`, from one generator seeded with
/// `seed`, in placeholder order (which is also a lowered nest's input order): the inputs of
/// every correctness check, so that a failure reproduces from its seed.
pub fn random_inputs(program: &crate::Program, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    program
        .inputs()
        .iter()
        .map(|&tensor| {
            (0..program.tensor(tensor).len())
                .map(|_| rng.unit_f32())
                .collect()
        })
        .collect()
}

/// Random typed inputs for every placeholder of `program`, from one generator seeded with
/// `seed`, in placeholder order: `f32` inputs exactly as [`random_inputs`] draws them (so an
/// `f32` program sees the same values either way), `f64` in `-1..1`, `u8`, `i8` and `i16`
/// over their whole range (saturation and sign edges included), `i32` in `-2^16..2^16` (biases
/// and per-channel multipliers: large enough to move a requantized result, small enough not to
/// saturate every one).
pub fn random_data(program: &crate::Program, seed: u64) -> Vec<crate::Data> {
    use crate::{DType, Data};
    let mut rng = SplitMix64::new(seed);
    program
        .inputs()
        .iter()
        .map(|&tensor| {
            let decl = program.tensor(tensor);
            let len = decl.len();
            let mut bits = || rng.next_u64();
            match decl.dtype {
                DType::F64 => Data::F64(
                    (0..len)
                        .map(|_| (bits() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
                        .collect(),
                ),
                DType::U8 => Data::U8((0..len).map(|_| (bits() >> 56) as u8).collect()),
                DType::I8 => Data::I8((0..len).map(|_| (bits() >> 56) as u8 as i8).collect()),
                DType::I16 => Data::I16((0..len).map(|_| (bits() >> 48) as u16 as i16).collect()),
                DType::I32 => Data::I32(
                    (0..len)
                        .map(|_| ((bits() >> 47) as i64 - (1 << 16)) as i32)
                        .collect(),
                ),
                _ => Data::F32((0..len).map(|_| rng.unit_f32()).collect()),
            }
        })
        .collect()
}

/// One generated test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The seed it came from.
    pub seed: u64,
    /// The operator and shape.
    pub workload: Workload,
    /// The layout the program was built with.
    pub layout: Layout,
    /// A legal schedule of that program.
    pub schedule: Schedule,
}

/// Small extents that exercise tails: 1, primes, sizes not divisible by 4.
const SIZES: &[i64] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17];

/// A random workload of modest size (so that the interpreter runs it in milliseconds).
pub fn random_workload(rng: &mut SplitMix64) -> Workload {
    let size = |rng: &mut SplitMix64| rng.pick(SIZES);
    match rng.below(5) {
        0 => Workload::Matmul(MatmulParams {
            m: size(rng),
            n: size(rng),
            k: size(rng),
            transpose_b: rng.chance(1, 4),
        }),
        1 => Workload::BatchMatmul(BatchMatmulParams {
            b: rng.pick(&[1, 2, 3]),
            m: size(rng),
            n: size(rng),
            k: size(rng),
            transpose_b: rng.chance(1, 2),
        }),
        2 => Workload::Dense(DenseParams {
            m: size(rng),
            n: size(rng),
            k: size(rng),
            bias: rng.chance(1, 2),
            relu: rng.chance(1, 2),
        }),
        3 => {
            let kernel = rng.pick(&[1, 2, 3]);
            let h = rng.pick(&[3, 4, 5, 7, 8]);
            let mut params = Conv2dParams {
                n: rng.pick(&[1, 2]),
                ic: rng.pick(&[1, 2, 3, 5]),
                h,
                w: rng.pick(&[3, 4, 5, 7, 8]),
                oc: rng.pick(&[1, 3, 4, 5, 8]),
                kh: kernel,
                kw: rng.pick(&[1, kernel]),
                stride: rng.pick(&[1, 1, 2]),
                pad: rng.pick(&[0, 1, 1, 2]),
                dilation: rng.pick(&[1, 1, 2]).min((h + 2) / kernel.max(1)).max(1),
                bias: false,
                residual: false,
                relu: false,
                block: 1,
                prepacked: false,
            };
            // NCHW[b]c with a block that divides both channel counts (drawn last, so that the
            // NCHW parameters of a seed are what they were before blocks existed).
            let block = rng.pick(&[1, 1, 2, 3]);
            if params.ic % block == 0 && params.oc % block == 0 {
                params.block = block;
            }
            Workload::Conv2d(params)
        }
        _ => {
            let mut params = DepthwiseConv2dParams {
                n: rng.pick(&[1, 2]),
                c: rng.pick(&[1, 3, 4, 5, 8]),
                h: rng.pick(&[3, 4, 5, 7, 8]),
                w: rng.pick(&[3, 4, 5, 7, 9]),
                kh: rng.pick(&[1, 3]),
                kw: rng.pick(&[1, 3]),
                stride: rng.pick(&[1, 2]),
                pad: rng.pick(&[0, 1]),
                dilation: 1,
                block: 1,
            };
            // NCHW[b]c with a block that divides the channels (drawn last, so that the NCHW
            // parameters of a seed are what they were before blocks existed).
            let block = rng.pick(&[1, 1, 2, 4, 8]);
            if params.c % block == 0 {
                params.block = block;
            }
            Workload::DepthwiseConv2d(params)
        }
    }
}

/// A random case: workload, layout and legal schedule, all from `seed`. Workloads whose
/// parameters are invalid (a kernel larger than the padded input) are redrawn.
pub fn random_case(seed: u64) -> Case {
    let mut rng = SplitMix64::new(seed);
    loop {
        let workload = random_workload(&mut rng);
        if workload.check().is_err() {
            continue;
        }
        let layout = Layout {
            pack_columns: if rng.chance(1, 3) {
                Some(rng.pick(&[2, 3, 4, 8]))
            } else {
                None
            },
            ..Layout::default()
        };
        let Ok(program) = workload.program(&layout) else {
            continue;
        };
        let schedule = random_schedule(&mut rng, Schedule::new(&program));
        return Case {
            seed,
            workload,
            layout,
            schedule,
        };
    }
}

/// Applies random legal primitives to every stage of `schedule`. Consumers are scheduled
/// before their producers, so that a producer is attached to a loop its consumer really has.
pub fn random_schedule(rng: &mut SplitMix64, mut schedule: Schedule) -> Schedule {
    let outputs = schedule.program().outputs.clone();
    let stages: Vec<StageId> = schedule.stage_order().iter().rev().copied().collect();
    for stage in stages {
        let tensor = schedule.stage_data(stage).tensor;
        let name = schedule.stage_name(stage).to_string();
        let is_reduction = !schedule.reduce_axes(stage).is_empty();
        let consumers = schedule.program().consumers(tensor);
        let consumer = match consumers.as_slice() {
            [only] => schedule.stage_of(*only),
            _ => None,
        };
        // Placement of non-output stages: inline (padding only), root, or at a consumer loop.
        if let (Some(consumer), false) = (consumer, outputs.contains(&tensor)) {
            match rng.below(3) {
                0 if name.ends_with(".pad") => {}
                1 => {
                    let _ = schedule.compute_root(stage);
                }
                _ => {
                    let _ = schedule.compute_root(stage);
                    if let Some(axis) = attachable_axis(rng, &schedule, consumer) {
                        let _ = schedule.compute_at(stage, consumer, axis);
                    }
                }
            }
        }
        if schedule.stage_data(stage).attach == Attach::Inline {
            continue;
        }
        // A register tile: the reduction computed into a local stage attached inside.
        let local = if is_reduction && rng.chance(1, 2) {
            schedule.cache_write(stage).ok()
        } else {
            None
        };
        scramble_loops(rng, &mut schedule, stage);
        if let Some(local) = local {
            if let Some(axis) = attachable_axis(rng, &schedule, stage) {
                if schedule.compute_at(local, stage, axis).is_ok() {
                    // Its own loops: reduction outside, spatial inside (the micro-kernel shape).
                    let mut order = schedule.reduce_axes(local);
                    order.extend(schedule.spatial_axes(local));
                    let _ = schedule.reorder(local, &order);
                    annotate_inner(rng, &mut schedule, local);
                }
            }
        }
    }
    schedule
}

/// A random loop of `consumer` that a producer may be computed at (not a vectorized one, which
/// must stay innermost).
fn attachable_axis(rng: &mut SplitMix64, schedule: &Schedule, consumer: StageId) -> Option<AxisId> {
    let leaves: Vec<AxisId> = schedule
        .leaf_axes(consumer)
        .into_iter()
        .filter(|&axis| schedule.axis_info(axis).annotation != LoopKind::Vectorized)
        .collect();
    if leaves.is_empty() {
        None
    } else {
        Some(leaves[rng.below(leaves.len())])
    }
}

/// Random splits, a reorder, maybe a fuse, and annotations for one stage.
fn scramble_loops(rng: &mut SplitMix64, schedule: &mut Schedule, stage: StageId) {
    for axis in schedule.leaf_axes(stage) {
        if rng.chance(1, 2) {
            let factor = rng.pick(&[1, 2, 3, 4, 5, 8]);
            let split = if rng.chance(1, 4) {
                schedule.split_parts(stage, axis, factor)
            } else {
                schedule.split(stage, axis, factor)
            };
            if let (Ok((_, inner)), true) = (split, rng.chance(1, 3)) {
                let _ = schedule.split(stage, inner, rng.pick(&[2, 3, 4]));
            }
        }
    }
    let mut leaves = schedule.leaf_axes(stage);
    for index in (1..leaves.len()).rev() {
        let other = rng.below(index + 1);
        leaves.swap(index, other);
    }
    let _ = schedule.reorder(stage, &leaves);
    let leaves = schedule.leaf_axes(stage);
    if leaves.len() >= 2 && rng.chance(1, 4) {
        let _ = schedule.fuse(stage, leaves[0], leaves[1]);
    }
    let leaves = schedule.leaf_axes(stage);
    let at_root = schedule.stage_data(stage).attach == Attach::Root;
    if at_root && rng.chance(1, 3) && schedule.axis_info(leaves[0]).kind == AxisKind::Spatial {
        let _ = schedule.parallel(stage, leaves[0]);
    }
    annotate_inner(rng, schedule, stage);
}

/// Unrolls and vectorizes some inner loops of `stage`.
fn annotate_inner(rng: &mut SplitMix64, schedule: &mut Schedule, stage: StageId) {
    let leaves: Vec<AxisId> = schedule.leaf_axes(stage);
    let Some(&last) = leaves.last() else { return };
    if rng.chance(1, 2) && schedule.axis_info(last).kind == AxisKind::Spatial {
        let _ = schedule.vectorize(stage, last);
    }
    for &axis in leaves.iter().rev().skip(1).take(2) {
        if rng.chance(1, 3) && schedule.axis_info(axis).annotation == LoopKind::Serial {
            let _ = schedule.unroll(stage, axis);
        }
    }
}
