//! The depthwise-convolution template on the channel-blocked layout NCHW[b]c.
//!
//! In NCHW a depthwise convolution can only vectorize output columns, and at stride 2 the
//! input of consecutive columns is every second element: a gather, or two loads and a
//! shuffle. In NCHW[b]c (`Y[n, c/b, y, x, b]`) the `b` channels of one position are contiguous
//! in the input, the weights and the output alike, so the vectorized axis is the channel block
//! at every stride and dilation: one input load and one FMA per tap and vector. The output is
//! tiled by rows and columns (both unrolled) with the channel block vectorized; a local stage
//! accumulates the tile over the kernel window and is computed at the column-block loop, so
//! the tile is registers and each tap's weight vector is loaded once per tile. Knobs choose
//! the tile, the order of the channel-block and row-block loops, unrolling of the kernel
//! window, padding folded into the loads or materialised once, and a parallel outer loop.
//!
//! The quantized depthwise convolution (`qdepthwise_conv2d`, the same layout with `u8` data)
//! is a point of the same template: its `i32` accumulator stage `acc` is the tile, and the
//! requantizing output stage reads it.

use super::pick_fallback;
use crate::error::{SpaceError, TemplateError};
use crate::knob::{Annotation, Factors, Knob};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::{DepthwiseConv2dParams, Layout};
use looptune_ir::{Schedule, Workload};

/// Output rows per tile the space offers: 1 to 4.
pub const TILE_ROWS: [i64; 4] = [1, 2, 3, 4];

/// Output columns per tile the space offers (columns are unrolled, one register per column,
/// row and vector of the block).
pub const TILE_COLUMNS: [i64; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 14];

/// A blocked depthwise convolution, as the template needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockedDepthwise {
    pub workload: Workload,
    pub params: DepthwiseConv2dParams,
    pub out_h: i64,
    pub out_w: i64,
    /// The accumulator stage when the output is an epilogue over it (the quantized
    /// convolution's requantization); otherwise the output gets a `cache_write`.
    pub product: Option<&'static str>,
}

fn tile(config: &Config) -> Option<(i64, i64)> {
    let rows = *config.split("tile_oh").ok()?.last()?;
    let columns = *config.split("tile_ow").ok()?.last()?;
    Some((rows, columns))
}

/// Vectors one position's channel block takes (a block narrower than the shape's lanes is one
/// partial vector); the NCHW[b]c conv2d template sizes its tile with it too.
pub(crate) fn block_vectors(shape: &VectorShape, block: i64) -> i64 {
    (block + shape.lanes - 1) / shape.lanes
}

/// Vector registers a tile needs: its accumulators, one weight vector and one input vector per
/// vector of the block.
fn registers(shape: &VectorShape, block: i64, rows: i64, columns: i64) -> i64 {
    block_vectors(shape, block) * (rows * columns + 2)
}

pub(crate) fn space(
    conv: &BlockedDepthwise,
    shape: &VectorShape,
) -> Result<ConfigSpace, SpaceError> {
    let shape = *shape;
    let block = conv.params.block;
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_oh",
        conv.out_h,
        &[Factors::List(TILE_ROWS.to_vec())],
    )?)?;
    space.add(Knob::split(
        "tile_ow",
        conv.out_w,
        &[Factors::List(TILE_COLUMNS.to_vec())],
    )?)?;
    space.add(Knob::reorder(
        "order",
        &["cb", "y.outer"],
        &[vec![0, 1], vec![1, 0]],
    )?)?;
    space.add(super::conv::unroll_kernel_knob()?)?;
    let pad_options: &[i64] = if conv.params.pad > 0 { &[0, 1] } else { &[0] };
    space.add(Knob::choice("pad_root", pad_options)?)?;
    space.add(Knob::choice("parallel", &[0, 1])?)?;
    let fits = format!("register tile fits in {} vector registers", shape.registers);
    space.constrain(&fits, move |config| {
        tile(config).is_some_and(|(rows, columns)| {
            registers(&shape, block, rows, columns) <= shape.registers
        })
    });
    // As in the GEMM template: fewer independent accumulators than FMAs in flight leave the
    // FMA pipes idle; small outputs that cannot reach it keep their largest tiles.
    let most = super::gemm::listed(&TILE_ROWS, conv.out_h)
        .iter()
        .flat_map(|&rows| {
            super::gemm::listed(&TILE_COLUMNS, conv.out_w)
                .into_iter()
                .map(move |columns| (rows, columns))
        })
        .filter(|&(rows, columns)| registers(&shape, block, rows, columns) <= shape.registers)
        .map(|(rows, columns)| rows * columns * block_vectors(&shape, block))
        .max()
        .unwrap_or(1);
    let required = super::gemm::LATENCY_HIDING_ACCUMULATORS.min(most);
    space.constrain("enough accumulators to hide FMA latency", move |config| {
        tile(config).is_some_and(|(rows, columns)| {
            rows * columns * block_vectors(&shape, block) >= required
        })
    });
    Ok(space)
}

pub(crate) fn template(
    conv: &BlockedDepthwise,
    config: &Config,
) -> Result<Schedule, TemplateError> {
    let tile_rows = config.split("tile_oh")?[1];
    let tile_columns = config.split("tile_ow")?[1];
    let rows_outside = config.reorder("order")? == [1, 0];
    let unroll_kernel = config.annotate("unroll_kernel")?;
    let pad_root = config.choice("pad_root")? == 1;
    let parallel = config.choice("parallel")? == 1;

    // The quantized one with its zero point folded into the bias: no subtraction per tap.
    let layout = Layout {
        fold_zero_point: matches!(conv.workload, Workload::QDepthwiseConv2d(_)),
        ..Layout::default()
    };
    let program = conv.workload.program(&layout)?;
    let mut s = Schedule::new(&program);
    let output = s.stage("Y")?;
    let local = super::accumulator(&mut s, output, conv.product)?;
    let axes = s.spatial_axes(output);
    let [n, blocks, rows, columns, lanes] = [axes[0], axes[1], axes[2], axes[3], axes[4]];
    let (row_outer, row_inner) = s.split(output, rows, tile_rows)?;
    let (column_outer, column_inner) = s.split(output, columns, tile_columns)?;
    let outer = if rows_outside {
        [row_outer, blocks]
    } else {
        [blocks, row_outer]
    };
    let mut order = vec![n];
    order.extend(outer);
    order.extend([column_outer, row_inner, column_inner, lanes]);
    s.reorder(output, &order)?;
    if parallel {
        s.parallel(output, outer[0])?;
    }
    // The copy out of the tile is unrolled like the tile, so the tile stays registers.
    s.unroll(output, row_inner)?;
    s.unroll(output, column_inner)?;
    s.vectorize(output, lanes)?;
    s.compute_at(local, output, column_outer)?;

    let local_axes = s.spatial_axes(local);
    let reduce = s.reduce_axes(local);
    let mut local_order = reduce.clone();
    local_order.extend(&local_axes);
    s.reorder(local, &local_order)?;
    s.unroll(local, local_axes[2])?;
    s.unroll(local, local_axes[3])?;
    s.vectorize(local, local_axes[4])?;
    for (&axis, annotation) in reduce.iter().zip(unroll_kernel) {
        if annotation != Annotation::None {
            s.annotate(local, axis, annotation.loop_kind())?;
        }
    }
    if pad_root {
        super::pad_blocked_input_at_root(&mut s, parallel)?;
    }
    Ok(s)
}

/// A tile of two rows by as many columns (up to 4) as the registers hold, the kernel window
/// unrolled, padding folded into the loads, channel blocks outside and parallel when there
/// are several.
pub(crate) fn fallback_config(
    conv: &BlockedDepthwise,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    let parallel = i64::from(conv.params.c / conv.params.block > 1);
    pick_fallback(space, |name, value| match (name, value) {
        ("tile_oh", KnobValue::Split(parts)) => (parts[1] - 2).abs(),
        ("tile_ow", KnobValue::Split(parts)) => (parts[1] - 4).abs(),
        ("order", KnobValue::Reorder(order)) => order[0] as i64,
        ("unroll_kernel", KnobValue::Annotate(kinds)) => {
            kinds.iter().filter(|kind| *kind != "unroll").count() as i64
        }
        ("pad_root", KnobValue::Choice(value)) => *value,
        ("parallel", KnobValue::Choice(value)) => (value - parallel).abs(),
        _ => 0,
    })
}
