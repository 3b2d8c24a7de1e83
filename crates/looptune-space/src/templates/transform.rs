//! The template of a layout transform between NCHW and NCHW[b]c (or two channel blocks).
//!
//! The transform is a copy whose cost is memory traffic, so the template only shapes the
//! innermost loops: the output's columns are split, and the innermost axis of the output (the
//! channel lanes of a blocked output, the inner columns of an NCHW one) is vectorized or not;
//! the channel loop may run in parallel. A blocked output's inner columns are unrolled, so one
//! tile writes several contiguous vectors. Every point is a copy, so every point is correct by
//! construction and the measurer checks it bit for bit like any other kernel.

use super::pick_fallback;
use crate::error::{SpaceError, TemplateError};
use crate::knob::{Factors, Knob};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use looptune_ir::ops::{Layout, LayoutTransformParams};
use looptune_ir::{Schedule, Workload};

/// Output columns per tile the space offers: powers of two up to four vectors or 16,
/// whichever is more (the NCHW conv template's column sizes).
pub fn tile_columns(shape: &VectorShape) -> Vec<i64> {
    super::conv::tile_columns(shape)
}

fn columns(config: &Config) -> Option<i64> {
    config.split("tile_x").ok()?.last().copied()
}

pub(crate) fn space(
    params: &LayoutTransformParams,
    shape: &VectorShape,
) -> Result<ConfigSpace, SpaceError> {
    let shape = *shape;
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_x",
        params.w,
        &[Factors::List(tile_columns(&shape))],
    )?)?;
    space.add(Knob::choice("vectorize", &[0, 1])?)?;
    space.add(Knob::choice("parallel", &[0, 1])?)?;
    if params.to == 1 {
        // An NCHW output vectorizes its columns: partial vectors would run lane by lane.
        let whole = format!("vectorized extent is a multiple of {}", shape.lanes);
        space.constrain(&whole, move |config| {
            config.choice("vectorize").ok() == Some(0)
                || columns(config).is_some_and(|columns| shape.is_whole_vectors(columns))
        });
    }
    Ok(space)
}

pub(crate) fn template(
    params: &LayoutTransformParams,
    config: &Config,
) -> Result<Schedule, TemplateError> {
    let tile_columns = config.split("tile_x")?[1];
    let vectorize = config.choice("vectorize")? == 1;
    let parallel = config.choice("parallel")? == 1;
    let program = Workload::LayoutTransform(*params).program(&Layout::default())?;
    let mut s = Schedule::new(&program);
    let output = s.stage("Y")?;
    let axes = s.spatial_axes(output);
    let (column_outer, column_inner) = s.split(output, axes[3], tile_columns)?;
    let mut order = vec![axes[0], axes[1], axes[2], column_outer, column_inner];
    order.extend(axes.get(4));
    s.reorder(output, &order)?;
    if parallel {
        s.parallel(output, axes[1])?;
    }
    match axes.get(4) {
        // Blocked output: the tile's columns unrolled, each one vector of the block.
        Some(&lanes) => {
            s.unroll(output, column_inner)?;
            if vectorize {
                s.vectorize(output, lanes)?;
            }
        }
        None => {
            if vectorize {
                s.vectorize(output, column_inner)?;
            }
        }
    }
    Ok(s)
}

/// Vectorized, parallel over channels, four columns per tile for a blocked output and one
/// vector of columns for an NCHW one.
pub(crate) fn fallback_config(
    params: &LayoutTransformParams,
    shape: &VectorShape,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    let want = if params.to == 1 { shape.lanes } else { 4 };
    pick_fallback(space, |name, value| match (name, value) {
        ("tile_x", KnobValue::Split(parts)) => (parts[1] - want).abs(),
        ("vectorize", KnobValue::Choice(value)) => 1 - value,
        ("parallel", KnobValue::Choice(value)) => 1 - value,
        _ => 0,
    })
}
