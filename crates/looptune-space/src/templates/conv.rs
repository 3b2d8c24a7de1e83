//! The direct-convolution template shared by conv2d and depthwise_conv2d (NCHW).
//!
//! The output `Y[n, c, y, x]` is tiled by channel block, row block and column block; a local
//! stage (`cache_write`) accumulates one tile over the whole reduction and is computed at the
//! column-block loop. One axis of the tile is vectorized: the output-channel block (the
//! NCHW[x]c idea without a packed layout: weights of consecutive channels are loaded lane by
//! lane, the input is a broadcast) or the column block (input rows are contiguous vectors at
//! stride 1, weights are broadcasts); the other tile axes are unrolled, so the tile stays in
//! registers. Knobs also choose the order of the channel and row loops, the order of the
//! reduction loops, unrolling of the kernel window, whether padding is folded into the loads
//! (inlined) or materialised once, and a parallel outer loop. Depthwise convolution offers
//! only the column axis for vectors: its channels are read from different planes. The vectorized
//! block is whole vectors of the [`VectorShape`]'s lanes and the tile fits in its registers.

use super::pick_fallback;
use crate::error::{SpaceError, TemplateError};
use crate::knob::{Annotation, Factors, Knob};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::Layout;
use looptune_ir::{AxisId, Schedule, Workload};

/// Channels per tile the space offers, and columns alike: powers of two up to four vectors or
/// 16, whichever is more (1-16 at 4 lanes, 1-32 at 8, 1-64 at 16). Either axis may be the
/// vectorized one (one, two or four whole vectors) or an unrolled one.
pub fn tile_channels(shape: &VectorShape) -> Vec<i64> {
    powers_of_two_up_to((4 * shape.lanes).max(16))
}

/// Output columns per tile the space offers: the same sizes as [`tile_channels`].
pub fn tile_columns(shape: &VectorShape) -> Vec<i64> {
    tile_channels(shape)
}

/// Output rows per tile the space offers (rows are always unrolled): powers of two up to a
/// quarter of the registers (1, 2, 4 at 16 registers; 1-8 at 32).
pub fn tile_rows(shape: &VectorShape) -> Vec<i64> {
    powers_of_two_up_to((shape.registers / 4).max(1))
}

fn powers_of_two_up_to(most: i64) -> Vec<i64> {
    (0..62)
        .map(|bit| 1i64 << bit)
        .take_while(|&size| size <= most)
        .collect()
}
/// `vector_axis` value: the channel block is vectorized.
pub const VECTOR_CHANNELS: i64 = 0;
/// `vector_axis` value: the column block is vectorized.
pub const VECTOR_COLUMNS: i64 = 1;
/// `vector_axis` value: nothing is vectorized; the whole tile is unrolled scalars.
pub const VECTOR_NONE: i64 = 2;

/// The shape of a direct convolution, as the template needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectConv {
    pub workload: Workload,
    pub channels: i64,
    pub out_h: i64,
    pub out_w: i64,
    pub pad: i64,
    /// Whether the convolution reduces over input channels (conv2d) or not (depthwise).
    pub input_channels: bool,
    /// The stage holding the convolution when the output is a fused epilogue over it (bias,
    /// residual, ReLU); otherwise the convolution is the output and gets a `cache_write`.
    pub product: Option<&'static str>,
}

impl DirectConv {
    fn channel_name(&self) -> &'static str {
        if self.input_channels {
            "oc"
        } else {
            "c"
        }
    }
}

fn tile(config: &Config) -> Option<(i64, i64, i64, i64)> {
    let channels = *config.split("tile_c").ok()?.last()?;
    let rows = *config.split("tile_oh").ok()?.last()?;
    let columns = *config.split("tile_ow").ok()?.last()?;
    Some((channels, rows, columns, config.choice("vector_axis").ok()?))
}

/// Whether the config packs the weights into output-channel blocks (`pack_w`; absent for
/// depthwise convolutions).
fn packs_weights(config: &Config) -> bool {
    matches!(config.value("pack_w"), Some(KnobValue::Choice(1)))
}

/// Vector registers a tile needs: accumulators plus the operands of one reduction step.
fn registers(shape: &VectorShape, channels: i64, rows: i64, columns: i64, vector_axis: i64) -> i64 {
    let lanes = shape.lanes;
    match vector_axis {
        VECTOR_CHANNELS => channels / lanes * rows * columns + channels / lanes + 1,
        VECTOR_COLUMNS => columns / lanes * rows * channels + columns / lanes * rows + 1,
        _ => channels * rows * columns + 2,
    }
}

/// Accumulator vectors of a vectorized tile (none for a scalar tile).
fn accumulator_vectors(
    shape: &VectorShape,
    channels: i64,
    rows: i64,
    columns: i64,
    vector_axis: i64,
) -> i64 {
    let lanes = shape.lanes;
    match vector_axis {
        VECTOR_CHANNELS => channels / lanes * rows * columns,
        VECTOR_COLUMNS => columns / lanes * rows * channels,
        _ => 0,
    }
}

/// The most accumulator vectors a vectorized tile of `conv` can have within the registers:
/// small shapes cannot reach [`super::gemm::LATENCY_HIDING_ACCUMULATORS`], and still need a
/// point.
fn most_accumulators(conv: &DirectConv, shape: &VectorShape, vector_options: &[i64]) -> i64 {
    let channels = super::gemm::listed(&tile_channels(shape), conv.channels);
    let rows = super::gemm::listed(&tile_rows(shape), conv.out_h);
    let columns = super::gemm::listed(&tile_columns(shape), conv.out_w);
    let mut most = 0;
    for &vector_axis in vector_options {
        for &c in &channels {
            for &r in &rows {
                for &w in &columns {
                    // A vectorized axis of partial vectors is excluded, as in the space.
                    let whole = match vector_axis {
                        VECTOR_CHANNELS => shape.is_whole_vectors(c),
                        _ => shape.is_whole_vectors(w),
                    };
                    if whole && registers(shape, c, r, w, vector_axis) <= shape.registers {
                        most = most.max(accumulator_vectors(shape, c, r, w, vector_axis));
                    }
                }
            }
        }
    }
    most
}

/// The `unroll_kernel` knob of the convolution templates: each loop of the kernel window
/// (`ry`, `rx`) run or unrolled.
pub(crate) fn unroll_kernel_knob() -> Result<Knob, SpaceError> {
    let unroll_options = vec![Annotation::None, Annotation::Unroll];
    Knob::annotate(
        "unroll_kernel",
        &["ry", "rx"],
        &[unroll_options.clone(), unroll_options],
    )
}

pub(crate) fn space(conv: &DirectConv, shape: &VectorShape) -> Result<ConfigSpace, SpaceError> {
    let shape = *shape;
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_c",
        conv.channels,
        &[Factors::List(tile_channels(&shape))],
    )?)?;
    space.add(Knob::split(
        "tile_oh",
        conv.out_h,
        &[Factors::List(tile_rows(&shape))],
    )?)?;
    space.add(Knob::split(
        "tile_ow",
        conv.out_w,
        &[Factors::List(tile_columns(&shape))],
    )?)?;
    let vectorized: &[i64] = if conv.input_channels {
        &[VECTOR_CHANNELS, VECTOR_COLUMNS]
    } else {
        &[VECTOR_COLUMNS]
    };
    // A scalar tile does a fraction of a vector tile's work per instruction: it is offered
    // only to shapes too small for any whole-vector tile.
    let most = most_accumulators(conv, &shape, vectorized);
    let vector_options = if most > 0 {
        vectorized.to_vec()
    } else {
        vec![VECTOR_NONE]
    };
    space.add(Knob::choice("vector_axis", &vector_options)?)?;
    let channel_outer = format!("{}.outer", conv.channel_name());
    space.add(Knob::reorder(
        "order",
        &[&channel_outer, "y.outer"],
        &[vec![0, 1], vec![1, 0]],
    )?)?;
    if conv.input_channels {
        space.add(Knob::reorder(
            "reduce_order",
            &["rc", "ry", "rx"],
            &[vec![0, 1, 2], vec![1, 2, 0]],
        )?)?;
    }
    space.add(unroll_kernel_knob()?)?;
    if conv.input_channels {
        // Weights packed into blocks of the tile's channels (OIHW[x]o) load as whole vectors.
        let pack = Knob::choice("pack_w", &[0, 1])?.added_later(&KnobValue::Choice(0))?;
        space.add(pack)?;
        space.constrain("packed weights need a channel-vectorized tile", |config| {
            !packs_weights(config)
                || tile(config).is_some_and(|(_, _, _, axis)| axis == VECTOR_CHANNELS)
        });
    }
    let pad_options: &[i64] = if conv.pad > 0 { &[0, 1] } else { &[0] };
    space.add(Knob::choice("pad_root", pad_options)?)?;
    space.add(Knob::choice("parallel", &[0, 1])?)?;
    // Partial vectors would run lane by lane (and any tail guard inside a vectorized loop
    // scalarises it), so a vectorized tile axis is whole vectors of the shape's lanes.
    let whole = format!("vectorized extent is a multiple of {}", shape.lanes);
    space.constrain(&whole, move |config| {
        tile(config).is_some_and(|(channels, _, columns, vector_axis)| match vector_axis {
            VECTOR_CHANNELS => shape.is_whole_vectors(channels),
            VECTOR_COLUMNS => shape.is_whole_vectors(columns),
            _ => true,
        })
    });
    let fits = format!("register tile fits in {} vector registers", shape.registers);
    space.constrain(&fits, move |config| {
        tile(config).is_some_and(|(channels, rows, columns, vector_axis)| {
            registers(&shape, channels, rows, columns, vector_axis) <= shape.registers
        })
    });
    // As in the GEMM template: a vectorized tile with fewer independent accumulators than FMAs
    // in flight leaves the FMA pipes idle whatever the other knobs say.
    let required = super::gemm::LATENCY_HIDING_ACCUMULATORS.min(most);
    space.constrain("enough accumulators to hide FMA latency", move |config| {
        tile(config).is_some_and(|(channels, rows, columns, vector_axis)| {
            vector_axis == VECTOR_NONE
                || accumulator_vectors(&shape, channels, rows, columns, vector_axis) >= required
        })
    });
    Ok(space)
}

pub(crate) fn template(conv: &DirectConv, config: &Config) -> Result<Schedule, TemplateError> {
    let tile_channels = config.split("tile_c")?[1];
    let tile_rows = config.split("tile_oh")?[1];
    let tile_columns = config.split("tile_ow")?[1];
    let vector_axis = config.choice("vector_axis")?;
    let rows_outside = config.reorder("order")? == [1, 0];
    let reduce_order: Vec<usize> = if conv.input_channels {
        config.reorder("reduce_order")?.to_vec()
    } else {
        vec![0, 1]
    };
    let unroll_kernel = config.annotate("unroll_kernel")?;
    let pad_root = config.choice("pad_root")? == 1;
    let parallel = config.choice("parallel")? == 1;

    let pack_weights = packs_weights(config);
    let layout = Layout {
        pack_output_channels: pack_weights.then_some(tile_channels),
        ..Layout::default()
    };
    let program = conv.workload.program(&layout)?;
    let mut s = Schedule::new(&program);
    let output = s.stage("Y")?;
    let local = super::accumulator(&mut s, output, conv.product)?;
    let axes = s.spatial_axes(output);
    let (channel_outer, channel_inner) = s.split(output, axes[1], tile_channels)?;
    let (row_outer, row_inner) = s.split(output, axes[2], tile_rows)?;
    let (column_outer, column_inner) = s.split(output, axes[3], tile_columns)?;
    let outer = if rows_outside {
        [row_outer, channel_outer]
    } else {
        [channel_outer, row_outer]
    };
    let inner = if vector_axis == VECTOR_CHANNELS {
        [row_inner, column_inner, channel_inner]
    } else {
        [channel_inner, row_inner, column_inner]
    };
    let mut order = vec![axes[0]];
    order.extend(outer);
    order.push(column_outer);
    order.extend(inner);
    s.reorder(output, &order)?;
    if parallel {
        s.parallel(output, outer[0])?;
    }
    // The copy out of the tile is unrolled like the tile itself: with a run-time loop over
    // the tile's rows or channels the tile would be indexed at run time and stay in memory
    // (a load and a store around every FMA) instead of becoming register variables.
    let (copy_unrolled, copy_vectorized) = if vector_axis == VECTOR_NONE {
        (&inner[..], None)
    } else {
        (&inner[..2], Some(inner[2]))
    };
    for &axis in copy_unrolled {
        s.unroll(output, axis)?;
    }
    if let Some(axis) = copy_vectorized {
        s.vectorize(output, axis)?;
    }
    s.compute_at(local, output, column_outer)?;

    let local_axes = s.spatial_axes(local);
    let reduce = s.reduce_axes(local);
    let mut local_order: Vec<AxisId> = reduce_order.iter().map(|&r| reduce[r]).collect();
    let [n, channel, row, column] = [local_axes[0], local_axes[1], local_axes[2], local_axes[3]];
    let tile_axes = if vector_axis == VECTOR_CHANNELS {
        [row, column, channel]
    } else {
        [channel, row, column]
    };
    local_order.push(n);
    local_order.extend(tile_axes);
    s.reorder(local, &local_order)?;
    let (unrolled, vectorized) = if vector_axis == VECTOR_NONE {
        (&tile_axes[..], None)
    } else {
        (&tile_axes[..2], Some(tile_axes[2]))
    };
    for &axis in unrolled {
        s.unroll(local, axis)?;
    }
    if let Some(axis) = vectorized {
        s.vectorize(local, axis)?;
    }
    let window = &reduce[reduce.len() - 2..];
    for (&axis, annotation) in window.iter().zip(unroll_kernel) {
        if annotation != Annotation::None {
            s.annotate(local, axis, annotation.loop_kind())?;
        }
    }

    if pack_weights {
        let packed = s.stage("W.packed")?;
        if parallel {
            let blocks = s.spatial_axes(packed)[0];
            s.parallel(packed, blocks)?;
        }
    }
    if pad_root {
        let pad = s.stage("X.pad")?;
        s.compute_root(pad)?;
        if parallel {
            let pad_channels = s.spatial_axes(pad)[1];
            s.parallel(pad, pad_channels)?;
        }
    }
    Ok(s)
}

/// For conv2d, two vectors of channels by a quarter of the registers in columns (8 x 4 at
/// f32x4 and 16 registers: 8 accumulators); for depthwise, a quarter of the registers in
/// channels by two vectors of columns (4 x 8 at f32x4: 8 accumulators as well); padding folded
/// into the loads, the kernel's columns unrolled, the outer channel loop parallel. Narrow
/// shapes fall back to what their extents allow.
pub(crate) fn fallback_config(
    conv: &DirectConv,
    shape: &VectorShape,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    let lanes = shape.lanes;
    let vector_axis = if conv.input_channels && conv.channels >= lanes {
        VECTOR_CHANNELS
    } else if conv.out_w >= lanes {
        VECTOR_COLUMNS
    } else {
        VECTOR_NONE
    };
    let quarter = (shape.registers / 4).max(1);
    let (want_channels, want_columns) = match vector_axis {
        VECTOR_CHANNELS => (2 * lanes, quarter),
        // Half the registers as accumulators: two vectors of columns for each channel.
        VECTOR_COLUMNS => (quarter, 2 * lanes),
        _ => (1, 1),
    };
    let whole_vectors = |size: i64, vectorized: bool| {
        if vectorized && !shape.is_whole_vectors(size) {
            1_000
        } else {
            0
        }
    };
    pick_fallback(space, |name, value| match (name, value) {
        ("tile_c", KnobValue::Split(parts)) => {
            (parts[1] - want_channels).abs()
                + whole_vectors(parts[1], vector_axis == VECTOR_CHANNELS)
        }
        ("tile_oh", KnobValue::Split(parts)) => parts[1] - 1,
        ("tile_ow", KnobValue::Split(parts)) => {
            (parts[1] - want_columns).abs() + whole_vectors(parts[1], vector_axis == VECTOR_COLUMNS)
        }
        ("vector_axis", KnobValue::Choice(value)) => i64::from(*value != vector_axis),
        ("order", KnobValue::Reorder(order)) => order[0] as i64,
        ("reduce_order", KnobValue::Reorder(order)) => order[0] as i64,
        ("unroll_kernel", KnobValue::Annotate(kinds)) => {
            i64::from(kinds[0] != "none") + i64::from(kinds[1] != "unroll")
        }
        ("pad_root", KnobValue::Choice(value)) => *value,
        ("pack_w", KnobValue::Choice(value)) => *value,
        ("parallel", KnobValue::Choice(value)) => 1 - value,
        _ => 0,
    })
}
