//! The conv2d template on channel-blocked activations NCHW[b]c, after AutoTVM's x86
//! `conv2d_NCHWc`.
//!
//! The definition (`conv2d:...,block=b`) reads `X[n, ic/b, h, w, b]` and weights packed to
//! OIHW[b]i[b]o, and writes `Y[n, oc/b, oh, ow, b]`. The register tile is output columns x
//! output-channel vectors: per position of the tile the block's `b` output channels are
//! contiguous (one vector, or several at narrow lanes), each reduction step broadcasts one input
//! channel of one position and loads one weight vector of the block, and the tile's columns
//! (and, as knobs, rows and several channel blocks) are unrolled so that the tile is registers
//! across the whole reduction. The input channels are reduced as a block loop (`rco`, placed
//! by `reduce_order` among the kernel window loops) and an in-block loop (`rci`, innermost,
//! optionally unrolled), the kernel window optionally unrolled (`unroll_kernel`, shared with
//! the NCHW template). Padding is folded into the loads or materialised once; the outer loop
//! may run in parallel. Sizes come from the [`VectorShape`]: the tile fits in its registers and
//! has enough accumulators to hide FMA latency where the shape allows.
//!
//! The quantized `qconv2d` shares the template: in its pair form the in-block loop runs over
//! pairs of input channels (`rcp`), each step one `vpmaddwd` of a broadcast pair of the input
//! and a vector of the block's packed weights, and the padded input is a root stage
//! (`X.pairs`, the pairs themselves, converted a vector of channels at a time), so there is no
//! padding knob.

use super::blocked_depthwise::block_vectors;
use super::pick_fallback;
use crate::error::{SpaceError, TemplateError};
use crate::knob::{Annotation, Factors, Knob};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::{Conv2dParams, Layout};
use looptune_ir::{AxisId, LoopKind, Schedule, Workload};

/// Output-channel blocks per tile the space offers (each one `b` channels wide).
pub const TILE_CHANNEL_BLOCKS: [i64; 3] = [1, 2, 4];

/// Output columns per tile the space offers (unrolled; TVM's `reg_n`).
pub const TILE_COLUMNS: [i64; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 12, 14, 16];

/// A channel-blocked conv2d (or qconv2d), as the template needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NchwcConv {
    pub workload: Workload,
    /// The geometry (of the `f32` operator, or the quantized one's).
    pub params: Conv2dParams,
    pub out_h: i64,
    pub out_w: i64,
    /// The stage holding the convolution when the output is a fused epilogue over it.
    pub product: Option<&'static str>,
}

impl NchwcConv {
    /// `qconv2d`, scheduled in its pair form.
    fn quantized(&self) -> bool {
        matches!(self.workload, Workload::QConv2d(_))
    }

    fn out_blocks(&self) -> i64 {
        self.params.oc / self.params.block
    }
}

/// The tile of a config: channel blocks, rows, columns.
fn tile(config: &Config) -> Option<(i64, i64, i64)> {
    let blocks = *config.split("tile_ocb").ok()?.last()?;
    let rows = *config.split("tile_oh").ok()?.last()?;
    let columns = *config.split("tile_ow").ok()?.last()?;
    Some((blocks, rows, columns))
}

/// Accumulator vectors of a tile.
fn accumulators(shape: &VectorShape, block: i64, (blocks, rows, columns): (i64, i64, i64)) -> i64 {
    block_vectors(shape, block) * blocks * rows * columns
}

/// Vector registers a tile needs: its accumulators, the weight vectors of one step and one
/// broadcast input.
fn registers(shape: &VectorShape, block: i64, tile: (i64, i64, i64)) -> i64 {
    accumulators(shape, block, tile) + block_vectors(shape, block) * tile.0 + 1
}

pub(crate) fn space(conv: &NchwcConv, shape: &VectorShape) -> Result<ConfigSpace, SpaceError> {
    let shape = *shape;
    let block = conv.params.block;
    let rows = super::conv::tile_rows(&shape);
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_ocb",
        conv.out_blocks(),
        &[Factors::List(TILE_CHANNEL_BLOCKS.to_vec())],
    )?)?;
    space.add(Knob::split(
        "tile_oh",
        conv.out_h,
        &[Factors::List(rows.clone())],
    )?)?;
    space.add(Knob::split(
        "tile_ow",
        conv.out_w,
        &[Factors::List(TILE_COLUMNS.to_vec())],
    )?)?;
    space.add(Knob::reorder(
        "order",
        &["ocb.outer", "y.outer"],
        &[vec![0, 1], vec![1, 0]],
    )?)?;
    // TVM's order (input-channel blocks outside the window) or the window outside.
    space.add(Knob::reorder(
        "reduce_order",
        &["rco", "ry", "rx"],
        &[vec![0, 1, 2], vec![1, 2, 0]],
    )?)?;
    space.add(super::conv::unroll_kernel_knob()?)?;
    space.add(Knob::choice("unroll_ic_block", &[0, 1])?)?;
    // The pair form's padded input is always a root stage (the pairs themselves).
    let pad_options: &[i64] = if conv.params.pad > 0 && !conv.quantized() {
        &[0, 1]
    } else {
        &[0]
    };
    space.add(Knob::choice("pad_root", pad_options)?)?;
    space.add(Knob::choice("parallel", &[0, 1])?)?;
    let fits = format!("register tile fits in {} vector registers", shape.registers);
    space.constrain(&fits, move |config| {
        tile(config).is_some_and(|tile| registers(&shape, block, tile) <= shape.registers)
    });
    // As in the other templates: fewer independent accumulators than FMAs in flight leave the
    // FMA pipes idle; small outputs that cannot reach it keep their largest tiles.
    let mut most = 1;
    for &blocks in &super::gemm::listed(&TILE_CHANNEL_BLOCKS, conv.out_blocks()) {
        for &row in &super::gemm::listed(&rows, conv.out_h) {
            for &columns in &super::gemm::listed(&TILE_COLUMNS, conv.out_w) {
                let tile = (blocks, row, columns);
                if registers(&shape, block, tile) <= shape.registers {
                    most = most.max(accumulators(&shape, block, tile));
                }
            }
        }
    }
    let required = super::gemm::LATENCY_HIDING_ACCUMULATORS.min(most);
    space.constrain("enough accumulators to hide FMA latency", move |config| {
        tile(config).is_some_and(|tile| accumulators(&shape, block, tile) >= required)
    });
    Ok(space)
}

pub(crate) fn template(conv: &NchwcConv, config: &Config) -> Result<Schedule, TemplateError> {
    let tile_blocks = config.split("tile_ocb")?[1];
    let tile_rows = config.split("tile_oh")?[1];
    let tile_columns = config.split("tile_ow")?[1];
    let rows_outside = config.reorder("order")? == [1, 0];
    let reduce_order = config.reorder("reduce_order")?.to_vec();
    let unroll_kernel = config.annotate("unroll_kernel")?;
    let unroll_ic_block = config.choice("unroll_ic_block")? == 1;
    let pad_root = config.choice("pad_root")? == 1;
    let parallel = config.choice("parallel")? == 1;

    let layout = Layout {
        pair_form: conv.quantized(),
        ..Layout::default()
    };
    let program = conv.workload.program(&layout)?;
    let mut s = Schedule::new(&program);
    let output = s.stage("Y")?;
    let local = super::accumulator(&mut s, output, conv.product)?;
    let axes = s.spatial_axes(output);
    let [n, blocks, rows, columns, lanes] = [axes[0], axes[1], axes[2], axes[3], axes[4]];
    let (block_outer, block_inner) = s.split(output, blocks, tile_blocks)?;
    let (row_outer, row_inner) = s.split(output, rows, tile_rows)?;
    let (column_outer, column_inner) = s.split(output, columns, tile_columns)?;
    let outer = if rows_outside {
        [row_outer, block_outer]
    } else {
        [block_outer, row_outer]
    };
    let mut order = vec![n];
    order.extend(outer);
    order.extend([column_outer, block_inner, row_inner, column_inner, lanes]);
    s.reorder(output, &order)?;
    if parallel {
        s.parallel(output, outer[0])?;
    }
    // The copy out of the tile is unrolled like the tile, so the tile stays registers.
    for axis in [block_inner, row_inner, column_inner] {
        s.unroll(output, axis)?;
    }
    s.vectorize(output, lanes)?;
    s.compute_at(local, output, column_outer)?;

    let local_axes = s.spatial_axes(local);
    // rco, ry, rx, rci (rcp, the pairs, when quantized): the in-block input channel stays
    // innermost (TVM's `ic_block`).
    let reduce = s.reduce_axes(local);
    let mut local_order: Vec<AxisId> = reduce_order.iter().map(|&r| reduce[r]).collect();
    local_order.push(reduce[3]);
    local_order.extend(&local_axes);
    s.reorder(local, &local_order)?;
    for &axis in &local_axes[1..4] {
        s.unroll(local, axis)?;
    }
    s.vectorize(local, local_axes[4])?;
    for (&axis, annotation) in reduce[1..3].iter().zip(unroll_kernel) {
        if annotation != Annotation::None {
            s.annotate(local, axis, annotation.loop_kind())?;
        }
    }
    if unroll_ic_block {
        s.annotate(local, reduce[3], LoopKind::Unrolled)?;
    }

    // The weights are packed at the root, once per call (the definition's OIHW[b]i[b]o stage),
    // unless they come packed (`prepacked`: no stage).
    if parallel && !conv.params.prepacked {
        let packed = s.stage("W.packed")?;
        let packed_blocks = s.spatial_axes(packed)[0];
        s.parallel(packed, packed_blocks)?;
    }
    if pad_root {
        super::pad_blocked_input_at_root(&mut s, parallel)?;
    }
    if conv.quantized() {
        // The conversion to pairs: one vector of a block's channels per position.
        let pairs = s.stage("X.pairs")?;
        let pair_axes = s.spatial_axes(pairs);
        s.vectorize(pairs, pair_axes[4])?;
        if parallel {
            s.parallel(pairs, pair_axes[1])?;
        }
    }
    Ok(s)
}

/// Two channel blocks when a block is one vector (one when it is more) by as many columns as
/// the registers hold next to the step's weight vectors, a broadcast and one spare (2 x 5 at
/// 16 registers), one row, row blocks outside channel blocks, the input-channel blocks outside
/// the kernel window, the kernel's rows unrolled and its columns not, the in-block channels
/// not unrolled, padding materialised once, the outer loop parallel: the best of 16 random
/// trials of ResNet-18 C2 at `block=8` (0.74-0.90 of the full-width peak) and of the CliqueNet
/// layers, where 2 x 6 with the channel blocks outside ran at a third of that.
pub(crate) fn fallback_config(
    conv: &NchwcConv,
    shape: &VectorShape,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    let vectors = block_vectors(shape, conv.params.block);
    let want_blocks = if vectors == 1 { 2 } else { 1 };
    let want_columns =
        ((shape.registers - want_blocks * vectors - 1) / (want_blocks * vectors) - 1).max(1);
    let want_pad_root = i64::from(conv.params.pad > 0);
    pick_fallback(space, |name, value| match (name, value) {
        ("tile_ocb", KnobValue::Split(parts)) => (parts[1] - want_blocks).abs(),
        ("tile_oh", KnobValue::Split(parts)) => parts[1] - 1,
        ("tile_ow", KnobValue::Split(parts)) => (parts[1] - want_columns).abs(),
        ("order", KnobValue::Reorder(order)) => 1 - order[0] as i64,
        ("reduce_order", KnobValue::Reorder(order)) => order[0] as i64,
        ("unroll_kernel", KnobValue::Annotate(kinds)) => {
            i64::from(kinds[0] != "unroll") + i64::from(kinds[1] != "none")
        }
        ("unroll_ic_block", KnobValue::Choice(value)) => *value,
        ("pad_root", KnobValue::Choice(value)) => (value - want_pad_root).abs(),
        ("parallel", KnobValue::Choice(value)) => 1 - value,
        _ => 0,
    })
}
