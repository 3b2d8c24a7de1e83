//! How the main chain fits the vector machine it is compiled for: registers, lanes, caches.
//!
//! The loop-slot features say what each loop does, but a model has to learn from them again, per
//! position in the chain, that a register tile spills or that a block falls out of L1, and a
//! chain one loop longer shifts every slot. These features say it directly, and as ratios to the
//! task's [`VectorShape`] (its lanes, vector registers and cache sizes) rather than absolute
//! counts, so that what is learnt on one vector machine carries to another:
//!
//! - **registers**: the vector registers the innermost unrolled and vectorized loops (the register
//!   tile) keep live, for the accumulators (the main store's buffer) and for the operands, each as
//!   a share of the registers, what exceeds the registers (spilled), and how often an unrolled
//!   reduction repeats the tile in the unrolled body;
//! - **lanes**: the share of the lanes the innermost vectorized loop fills, its vectors per row,
//!   and how many operands it reads neither contiguously nor as a broadcast (gathers);
//! - **caches**: the bytes moved into L1 and into L2 per run of the main store, estimated from
//!   the outermost loop whose footprint still fits the level (all of it reloaded on every
//!   iteration of the loops outside), and that footprint as a share of the level;
//! - **reduction order**: how many loops reduce into the accumulator, and the share of the
//!   reduction run by loops that enclose an accumulator loop outside the register tile (each of
//!   their iterations reloads the accumulator from memory).

use super::{Access, ChainLoop};
use looptune_ir::{BufferId, LoopKind, LoopNest};
use looptune_space::VectorShape;

/// Names of the fit features, in order.
pub(super) const NAMES: [&str; 13] = [
    "fit.accumulator_registers",
    "fit.operand_registers",
    "fit.spilled_registers",
    "fit.tile_repeats",
    "fit.lane_fill",
    "fit.vectors_per_row",
    "fit.gathers",
    "fit.l1_bytes_per_iteration",
    "fit.l1_block_share",
    "fit.l2_bytes_per_iteration",
    "fit.l2_block_share",
    "fit.reduction_loops",
    "fit.accumulator_reload_share",
];

/// How many fit features there are.
pub(super) const COUNT: usize = NAMES.len();

/// One distinct buffer the main store touches, with its coefficient per chain loop and
/// dimension.
struct Touched {
    buffer: BufferId,
    coefficients: Vec<Vec<i64>>,
    shape: Vec<i64>,
    element_bytes: f64,
    /// Elements between neighbours along the innermost vectorized loop (0: a broadcast).
    vector_stride: i64,
}

impl Touched {
    /// Elements touched from chain loop `from` inwards (capped per dimension by the buffer).
    fn elements(&self, chain: &[ChainLoop], from: usize) -> f64 {
        self.shape
            .iter()
            .enumerate()
            .map(|(dim, &extent)| {
                let range: f64 = 1.0
                    + chain[from..]
                        .iter()
                        .zip(&self.coefficients[from..])
                        .map(|(looped, per_dim)| {
                            per_dim[dim].unsigned_abs() as f64 * (looped.extent - 1) as f64
                        })
                        .sum::<f64>();
                range.min(extent as f64)
            })
            .product()
    }
}

/// The fit features of a main chain whose store and loads are `accesses` (the store first),
/// running `iterations` times, on `shape`. Raw values, before the `log2(1 + x)` scaling.
pub(super) fn fit_features(
    nest: &LoopNest,
    chain: &[ChainLoop],
    accesses: &[Access<'_>],
    alloc_depth: usize,
    iterations: f64,
    shape: &VectorShape,
) -> [f64; COUNT] {
    let mut out = [0.0; COUNT];
    let Some(output) = accesses.first().map(|access| access.buffer) else {
        return out;
    };
    if chain.is_empty() {
        return out;
    }
    let vectorized = chain
        .iter()
        .rposition(|looped| looped.kind == LoopKind::Vectorized);
    let mut touched: Vec<Touched> = Vec::new();
    for access in accesses {
        if touched.iter().any(|seen| seen.buffer == access.buffer) {
            continue;
        }
        let buffer = nest.buffer(access.buffer);
        let strides = buffer.strides();
        let coefficients: Vec<Vec<i64>> = chain
            .iter()
            .map(|looped| {
                access
                    .indices
                    .iter()
                    .map(|index| super::coefficient(index, looped.var))
                    .collect()
            })
            .collect();
        let vector_stride = vectorized.map_or(0, |slot| {
            coefficients[slot]
                .iter()
                .zip(&strides)
                .map(|(c, s)| c.saturating_mul(*s))
                .fold(0i64, |a, b| a.saturating_add(b))
        });
        touched.push(Touched {
            buffer: access.buffer,
            coefficients,
            shape: buffer.shape.clone(),
            element_bytes: buffer.dtype.size_bytes() as f64,
            vector_stride,
        });
    }
    let lanes = shape.lanes.max(1) as f64;
    let registers = shape.registers.max(1) as f64;

    // Registers: the register tile is the innermost run of unrolled and vectorized loops. Of
    // those, the loops that index the accumulator span the tile; the others (an unrolled
    // reduction) repeat it and add instructions, not live registers.
    let tile_start = chain
        .iter()
        .rposition(|looped| !matches!(looped.kind, LoopKind::Unrolled | LoopKind::Vectorized))
        .map_or(0, |outside| outside + 1);
    let indexes_output: Vec<bool> = match touched.iter().find(|seen| seen.buffer == output) {
        Some(accumulator) => accumulator
            .coefficients
            .iter()
            .map(|per_dim| per_dim.iter().any(|&c| c != 0))
            .collect(),
        None => vec![true; chain.len()],
    };
    let tile: Vec<ChainLoop> = chain
        .iter()
        .enumerate()
        .map(|(slot, looped)| ChainLoop {
            extent: if slot >= tile_start && indexes_output[slot] {
                looped.extent
            } else {
                1
            },
            ..*looped
        })
        .collect();
    let repeats: f64 = chain[tile_start..]
        .iter()
        .zip(&indexes_output[tile_start..])
        .filter(|(_, indexes)| !**indexes)
        .map(|(looped, _)| looped.extent as f64)
        .product();
    let (mut accumulators, mut operands, mut broadcasts, mut gathers) = (0.0, 0.0, false, 0.0);
    for buffer in &touched {
        let elements = buffer.elements(&tile, 0);
        if buffer.buffer == output {
            accumulators += (elements / lanes).ceil();
        } else if buffer.vector_stride == 0 {
            // Broadcast one element at a time: one register, whatever the tile.
            broadcasts = true;
        } else {
            // Vectors reused across the tile's other loops stay live.
            operands += (elements / lanes).ceil();
        }
        if buffer.vector_stride.unsigned_abs() > 1 {
            gathers += 1.0;
        }
    }
    if broadcasts {
        operands += 1.0;
    }
    out[0] = accumulators / registers;
    out[1] = operands / registers;
    out[2] = (accumulators + operands - registers).max(0.0) / registers;
    out[3] = repeats;

    // Lanes.
    if let Some(slot) = vectorized {
        let extent = chain[slot].extent as f64;
        let vectors = (extent / lanes).ceil();
        out[4] = extent / (vectors * lanes);
        out[5] = vectors;
    }
    out[6] = gathers;

    // Caches: the footprint from each loop inwards shrinks going inwards.
    let footprint = |from: usize| -> f64 {
        touched
            .iter()
            .map(|buffer| buffer.elements(chain, from) * buffer.element_bytes)
            .sum()
    };
    for (level, capacity) in [shape.l1d_bytes, shape.l2_bytes].into_iter().enumerate() {
        let capacity = capacity.max(1) as f64;
        let mut block = chain.len() - 1;
        while block > 0 && footprint(block - 1) <= capacity {
            block -= 1;
        }
        let reloads: f64 = chain[..block]
            .iter()
            .map(|looped| looped.extent as f64)
            .product();
        let bytes = footprint(block);
        out[7 + 2 * level] = bytes * reloads / iterations.max(1.0);
        out[8 + 2 * level] = bytes / capacity;
    }

    // Reduction order: the loops inside the accumulator's allocation that do not index it
    // reduce into it. Those enclosing an accumulator loop that is not in the register tile
    // leave the register tile and reload the accumulator from memory on each of their
    // iterations: the share of the reduction done so is what the order costs.
    let reducing = |slot: usize| slot >= alloc_depth && !indexes_output[slot];
    let reduction: f64 = (0..chain.len())
        .filter(|&slot| reducing(slot))
        .map(|slot| chain[slot].extent as f64)
        .product();
    let innermost_memory_accumulator = (alloc_depth..tile_start.max(alloc_depth))
        .rev()
        .find(|&slot| indexes_output[slot]);
    let reloading: f64 = innermost_memory_accumulator.map_or(1.0, |inner| {
        (0..inner)
            .filter(|&slot| reducing(slot))
            .map(|slot| chain[slot].extent as f64)
            .product()
    });
    out[11] = (0..chain.len()).filter(|&slot| reducing(slot)).count() as f64;
    out[12] = reloading / reduction.max(1.0);
    out
}
