//! The register-tiled GEMM template shared by matmul, dense and batch_matmul.
//!
//! The space is the BLIS micro-kernel of `looptune_ir::recipes::register_tiled_matmul` with its
//! parameters turned into knobs: an `MR x NR` block of the output accumulated in a local stage
//! computed at the innermost tile loop (rows unrolled, columns vectorized, the whole reduction
//! inside), an optional cache block of rows outside the column panels, the column-panel loop
//! inside or outside the row loops, a k unroll, packing of the matrix read along `n` into panels
//! of `NR` columns, and a parallel outer loop. The primitives are applied in the recipe's order,
//! so the recipe's schedules are points of the space with identical loop nests. Tile widths are
//! whole vectors of the [`VectorShape`]'s lanes and tiles fit in its registers, so the same
//! template offers 4 x 8 for Cranelift's f32x4, 6 x 16 for AVX2 and 14 x 32 for AVX-512.

use super::pick_fallback;
use crate::error::{SpaceError, TemplateError};
use crate::knob::{Factors, Knob};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::Layout;
use looptune_ir::{Schedule, Workload};
use std::collections::BTreeSet;

/// Unroll factors of the reduction the space offers.
pub const REDUCTION_UNROLL: [i64; 4] = [1, 2, 4, 8];

/// Rows of the register tile the space offers (each row is unrolled): 1 to 6, even counts up
/// to half the registers, and the most rows each tile width of [`tile_columns`] leaves room
/// for (capped the same way): 1-6 and 8 at 16 registers; 1-6, 8, 9, 10, 12, 14 and 16 at 32,
/// so the classic full-width tiles (6 x 2 vectors, 4 x 3 at 16 registers; 14 x 2, 9 x 3,
/// 6 x 4 at 32) are all offered.
pub fn tile_rows(shape: &VectorShape) -> Vec<i64> {
    let half = shape.registers / 2;
    let most_rows = (1..=COLUMN_VECTORS).map(|vectors| (shape.registers - vectors - 1) / vectors);
    let rows: BTreeSet<i64> = (1..=6)
        .chain((8..=half).step_by(2))
        .chain(most_rows.map(|rows| rows.min(half)))
        .filter(|&rows| rows >= 1)
        .collect();
    rows.into_iter().collect()
}

/// Widths of the register tile the space offers, in vectors.
const COLUMN_VECTORS: i64 = 4;

/// Columns of the register tile the space offers: one to four whole vectors (4, 8, 12, 16
/// at 4 lanes; 8 to 32 at 8; 16 to 64 at 16).
pub fn tile_columns(shape: &VectorShape) -> Vec<i64> {
    (1..=COLUMN_VECTORS)
        .map(|vectors| vectors * shape.lanes)
        .collect()
}

/// The most vector FMAs one unrolled iteration of the reduction loop may hold, so that code
/// size (and compile time) stays bounded: four per register (64 at 16 registers, 128 at 32),
/// which keeps the largest tiles of each shape with a k unroll of 4 (12 x 4 = 48 accumulator
/// FMAs at 16 registers, 28 x 4 = 112 at 32).
pub fn max_unrolled_fmas(shape: &VectorShape) -> i64 {
    4 * shape.registers
}

/// Where the GEMM's stages are and which shape they have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gemm {
    pub workload: Workload,
    pub batch: bool,
    pub m: i64,
    pub n: i64,
    pub k: i64,
    /// The output stage.
    pub output: &'static str,
    /// The stage holding the product when the output is an epilogue over it (dense with bias
    /// or ReLU); otherwise the product is the output and gets a `cache_write`.
    pub product: Option<&'static str>,
    /// The packed stage `Layout::pack_columns` adds, when the operator can pack.
    pub packed: Option<&'static str>,
    /// A 1x1 convolution computed as a GEMM (`Layout::conv_as_gemm`): its input is always
    /// packed (the panels are how the GEMM reads it), so the space has no `pack_b` knob.
    pub conv: bool,
    /// A quantized GEMM: always in its pair form (`Layout::pack_columns`, `i16` pairs of both
    /// operands, see `looptune_ir::ops::qmatmul`), so no `pack_b` knob either; `k` is then the
    /// number of pairs.
    pub quantized: bool,
}

/// Vector registers a tile needs: its accumulators, one row of `B` and a broadcast of `A`.
fn registers(shape: &VectorShape, rows: i64, columns: i64) -> i64 {
    shape.vectors(columns) * rows + shape.vectors(columns) + 1
}

/// Independent accumulators that keep the FMA units busy: two FMA pipes, each with a latency
/// of four cycles, need eight FMAs in flight (Zen 4, and Intel cores since Haswell alike).
pub const LATENCY_HIDING_ACCUMULATORS: i64 = 8;

/// The sizes a `Factors::List` split offers for an axis of `extent`.
pub(crate) fn listed(sizes: &[i64], extent: i64) -> Vec<i64> {
    let fitting: Vec<i64> = sizes
        .iter()
        .copied()
        .filter(|&size| size <= extent)
        .collect();
    if fitting.is_empty() {
        vec![extent]
    } else {
        fitting
    }
}

/// The most accumulator vectors a register tile of this GEMM can have within the registers:
/// small shapes cannot reach [`LATENCY_HIDING_ACCUMULATORS`], and still need a point.
fn most_accumulators(shape: &VectorShape, m: i64, n: i64) -> i64 {
    // The tile's rows are the innermost part of `tile_i` (the powers of two are the cache
    // block outside it), its columns the inner part of `tile_j`.
    let rows = listed(&tile_rows(shape), m);
    let columns = listed(&tile_columns(shape), n);
    rows.iter()
        .flat_map(|&rows| columns.iter().map(move |&columns| (rows, columns)))
        .filter(|&(rows, columns)| registers(shape, rows, columns) <= shape.registers)
        .map(|(rows, columns)| rows * shape.vectors(columns))
        .max()
        .unwrap_or(1)
}

/// The parts of a knob the constraints read; a missing knob reads as a point that breaks them.
fn tile_shape(config: &Config) -> Option<(i64, i64, i64)> {
    let rows = *config.split("tile_i").ok()?.last()?;
    let columns = *config.split("tile_j").ok()?.last()?;
    let unroll = *config.split("tile_k").ok()?.last()?;
    Some((rows, columns, unroll))
}

pub(crate) fn space(gemm: &Gemm, shape: &VectorShape) -> Result<ConfigSpace, SpaceError> {
    let shape = *shape;
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_i",
        gemm.m,
        &[Factors::PowersOfTwo, Factors::List(tile_rows(&shape))],
    )?)?;
    space.add(Knob::split(
        "tile_j",
        gemm.n,
        &[Factors::List(tile_columns(&shape))],
    )?)?;
    space.add(Knob::split(
        "tile_k",
        gemm.k,
        &[Factors::List(REDUCTION_UNROLL.to_vec())],
    )?)?;
    space.add(Knob::reorder(
        "order",
        &["i.outer", "j.outer"],
        &[vec![0, 1], vec![1, 0]],
    )?)?;
    if gemm.packed.is_some() && !gemm.conv && !gemm.quantized {
        space.add(Knob::choice("pack_b", &[0, 1])?)?;
    }
    space.add(Knob::choice("parallel", &[0, 1])?)?;
    // Accumulators, one row of B and a broadcast of A must all live in vector registers, or the
    // tile spills inside the reduction loop and the point is slow for a reason no knob explains.
    let fits = format!("register tile fits in {} vector registers", shape.registers);
    space.constrain(&fits, move |config| {
        tile_shape(config)
            .is_some_and(|(rows, columns, _)| registers(&shape, rows, columns) <= shape.registers)
    });
    // Fewer independent accumulators than FMAs in flight leave the FMA pipes idle for a
    // reason no other knob changes: such tiles are slow at every size and only dilute search.
    let required = LATENCY_HIDING_ACCUMULATORS.min(most_accumulators(&shape, gemm.m, gemm.n));
    space.constrain("enough accumulators to hide FMA latency", move |config| {
        tile_shape(config)
            .is_some_and(|(rows, columns, _)| rows * shape.vectors(columns) >= required)
    });
    let most_fmas = max_unrolled_fmas(&shape);
    let bounded = format!("unrolled reduction body at most {most_fmas} vector FMAs");
    space.constrain(&bounded, move |config| {
        tile_shape(config).is_some_and(|(rows, columns, unroll)| {
            rows * shape.vectors(columns) * unroll <= most_fmas
        })
    });
    Ok(space)
}

pub(crate) fn template(
    gemm: &Gemm,
    shape: &VectorShape,
    config: &Config,
) -> Result<Schedule, TemplateError> {
    let tile_i = config.split("tile_i")?;
    let (rows_outer, rows_middle, tile_rows) = (tile_i[0], tile_i[1], tile_i[2]);
    let tile_columns = config.split("tile_j")?[1];
    let unroll_reduction = config.split("tile_k")?[1];
    let columns_outside = config.reorder("order")? == [1, 0];
    let always_packed = gemm.conv || gemm.quantized;
    let pack = gemm.packed.is_some() && (always_packed || config.choice("pack_b")? == 1);
    let parallel = config.choice("parallel")? == 1;
    // Columns that fill whole vectors are vectorized; a narrower matrix is unrolled instead.
    let vector_columns = shape.is_whole_vectors(tile_columns);

    let layout = if gemm.conv {
        Layout {
            conv_as_gemm: Some(tile_columns),
            ..Layout::default()
        }
    } else {
        Layout {
            pack_columns: pack.then_some(tile_columns),
            ..Layout::default()
        }
    };
    let program = gemm.workload.program(&layout)?;
    let mut s = Schedule::new(&program);
    let output = s.stage(gemm.output)?;
    let local = super::accumulator(&mut s, output, gemm.product)?;
    let spatial = s.spatial_axes(output);
    let first = usize::from(gemm.batch);
    let [i, j] = [spatial[first], spatial[first + 1]];

    // A degenerate block (one block, or blocks of one tile) is no block: the same nest as the
    // recipe's plain tiling, written the way the recipe writes it.
    let blocked = rows_middle > 1 && rows_outer > 1;
    let (mut outer, tile_row, tile_column);
    if blocked {
        let (row_block, rows) = s.split(output, i, rows_middle * tile_rows)?;
        let (row_tile, row) = s.split(output, rows, tile_rows)?;
        let (column_panel, column) = s.split(output, j, tile_columns)?;
        outer = if columns_outside {
            vec![column_panel, row_block, row_tile]
        } else {
            vec![row_block, column_panel, row_tile]
        };
        (tile_row, tile_column) = (row, column);
    } else {
        let (row_tile, row) = s.split(output, i, tile_rows)?;
        let (column_panel, column) = s.split(output, j, tile_columns)?;
        outer = if columns_outside {
            vec![column_panel, row_tile]
        } else {
            vec![row_tile, column_panel]
        };
        (tile_row, tile_column) = (row, column);
    }
    let tile_loop = outer[outer.len() - 1];
    if gemm.batch {
        outer.insert(0, spatial[0]);
    }
    let mut order = outer.clone();
    order.extend([tile_row, tile_column]);
    s.reorder(output, &order)?;
    if parallel {
        s.parallel(output, outer[0])?;
    }
    s.unroll(output, tile_row)?;
    columns_kind(&mut s, output, tile_column, vector_columns)?;
    s.compute_at(local, output, tile_loop)?;

    let k = s.reduce_axes(local)[0];
    let local_spatial = s.spatial_axes(local);
    let local_row = local_spatial[local_spatial.len() - 2];
    let local_column = local_spatial[local_spatial.len() - 1];
    let mut local_order;
    if unroll_reduction > 1 {
        let (k_outer, k_inner) = s.split(local, k, unroll_reduction)?;
        local_order = vec![k_outer, k_inner];
        local_order.extend(&local_spatial);
        s.reorder(local, &local_order)?;
        s.unroll(local, k_inner)?;
    } else {
        local_order = vec![k];
        local_order.extend(&local_spatial);
        s.reorder(local, &local_order)?;
    }
    s.unroll(local, local_row)?;
    columns_kind(&mut s, local, local_column, vector_columns)?;

    if let (true, Some(name)) = (pack, gemm.packed) {
        // Panels `[jo, k, ji]`, or `[n, jo, k, ji]` for a convolution's batch.
        let packed = s.stage(name)?;
        let axes = s.spatial_axes(packed);
        let rank = axes.len();
        // Panels `[jo, k, ji]` (`[n, jo, k, ji]` for a convolution), or the pairs
        // `[jo, kk, ji, t]` of a quantized GEMM, written in order within a panel.
        let panel = if gemm.quantized { 0 } else { rank - 3 };
        if vector_columns && !gemm.quantized {
            s.vectorize(packed, axes[rank - 1])?;
        }
        if let Workload::QMatmul(p) = gemm.workload {
            // W's pairs `[jo, kk, ji, t]` are two rows of W interleaved: a panel row, its `ji`
            // and `t` fused, is whole vectors that the printer loads as two half vectors, one
            // from each row, zipped (`lt_widen_i8_zip`). Only without the zero fill past `k`
            // and `n`, whose guards the fused index would hide from the bounds proof.
            let unguarded = p.k % 2 == 0 && p.n % tile_columns == 0;
            if unguarded && shape.is_whole_vectors(2 * tile_columns) {
                let fused = s.fuse(packed, axes[2], axes[3])?;
                let (_, lanes) = s.split(packed, fused, shape.lanes)?;
                s.vectorize(packed, lanes)?;
            }
        }
        if parallel {
            s.parallel(packed, axes[panel])?;
        }
    }
    if gemm.quantized {
        // The conversion of A to pairs, a vector of a row at a time when the row's pairs are
        // whole vectors.
        let pairs = s.stage("A.pairs")?;
        let row = s.spatial_axes(pairs)[1];
        // `gemm.k` counts the pairs.
        if shape.is_whole_vectors(2 * gemm.k) {
            let (_, lanes) = s.split(pairs, row, shape.lanes)?;
            s.vectorize(pairs, lanes)?;
        }
    }
    Ok(s)
}

fn columns_kind(
    s: &mut Schedule,
    stage: looptune_ir::StageId,
    axis: looptune_ir::AxisId,
    vector: bool,
) -> Result<(), TemplateError> {
    if vector {
        s.vectorize(stage, axis)?;
    } else {
        s.unroll(stage, axis)?;
    }
    Ok(())
}

/// A tile two vectors wide with a quarter of the registers as rows, so that half the
/// registers are accumulators (4 x 8 at f32x4 and 16 registers, the recipe's default: 8
/// accumulators, 2 vectors of B, a broadcast of A; 4 x 16 with AVX2; 8 x 32 with AVX-512), B
/// packed, a cache block of 64 rows when there are more, no k unroll, parallel rows when the
/// output is large enough to share.
pub(crate) fn fallback_config(
    gemm: &Gemm,
    shape: &VectorShape,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    let (want_rows, want_columns) = (shape.registers / 4, 2 * shape.lanes);
    let block_rows = if gemm.m > 64 { 64 } else { 0 };
    let parallel = i64::from(gemm.m * gemm.n >= 64 * 64);
    pick_fallback(space, |name, value| match (name, value) {
        ("tile_i", KnobValue::Split(parts)) => {
            let rows_score = (parts[2] - want_rows).abs() * 10_000;
            let block_score = if block_rows == 0 {
                parts[1] - 1
            } else {
                (parts[1] * parts[2] - block_rows).abs()
            };
            rows_score + block_score
        }
        ("tile_j", KnobValue::Split(parts)) => (parts[1] - want_columns).abs(),
        ("tile_k", KnobValue::Split(parts)) => parts[1] - 1,
        ("order", KnobValue::Reorder(order)) => order[0] as i64,
        ("pack_b", KnobValue::Choice(value)) => 1 - value,
        ("parallel", KnobValue::Choice(value)) => (value - parallel).abs(),
        _ => 0,
    })
}
