//! Hand-written schedules: known-good points that the search spaces must contain.
//!
//! The register-tiled matmul here is the BLIS micro-kernel expressed with the ordinary schedule
//! primitives: `B` packed into panels of `nr` columns, an `mr x nr` block of `C` accumulated in a
//! local stage (`cache_write`) computed at the column-panel loop (`compute_at`), with the whole
//! reduction inside it, the tile rows unrolled and the tile columns vectorized, so that a back
//! end can keep the block in vector registers across the reduction. It is the baseline a tuned
//! matmul must beat and the proof that the schedule language can express a fast kernel.

use crate::error::{IrError, ScheduleError};
use crate::ops::{Layout, MatmulParams, Workload};
use crate::schedule::Schedule;
use thiserror::Error;

/// Why a recipe could not be applied.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecipeError {
    /// The operator definition could not be built.
    #[error(transparent)]
    Ir(#[from] IrError),
    /// A primitive rejected its arguments.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// The register tile and threading of [`register_tiled_matmul`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTiling {
    /// Rows of the register tile (unrolled).
    pub tile_rows: i64,
    /// Columns of the register tile (vectorized; a multiple of 4 fills f32x4 registers).
    pub tile_columns: i64,
    /// Split the reduction by this factor and unroll the inner part (1: no split).
    pub unroll_reduction: i64,
    /// Rows of `A` kept hot while every column panel of `B` passes (a cache block of rows,
    /// looped outside the column panels; at most `tile_rows`, or not less than `m`: no such
    /// block, the row tiles are the outer loop and all of `B` streams past each of them).
    pub block_rows: i64,
    /// Run the row-block loop in parallel.
    pub parallel: bool,
}

impl Default for MatmulTiling {
    /// 4 x 8: 8 f32x4 accumulators, 2 vectors of `B` and a broadcast of `A`, well inside the 16
    /// XMM registers of x86-64, with enough independent FMA chains to cover the FMA latency.
    fn default() -> MatmulTiling {
        MatmulTiling {
            tile_rows: 4,
            tile_columns: 8,
            unroll_reduction: 1,
            block_rows: 1,
            parallel: false,
        }
    }
}

/// The BLIS-style schedule of a matmul (see the module documentation).
pub fn register_tiled_matmul(
    params: MatmulParams,
    tiling: MatmulTiling,
) -> Result<Schedule, RecipeError> {
    let layout = Layout {
        pack_columns: Some(tiling.tile_columns),
        ..Layout::default()
    };
    let program = Workload::Matmul(params).program(&layout)?;
    let mut s = Schedule::new(&program);
    let c = s.stage("C")?;
    let local = s.cache_write(c)?;
    let [i, j] = [s.spatial_axes(c)[0], s.spatial_axes(c)[1]];
    let outer_loop;
    let tile_loop;
    let (tile_row, tile_column);
    if tiling.block_rows > tiling.tile_rows && tiling.block_rows < params.m {
        // block, column panel, row tile: a block of A rows stays in cache while B passes.
        let (row_block, rows) = s.split(c, i, tiling.block_rows)?;
        let (row_tile, row) = s.split(c, rows, tiling.tile_rows)?;
        let (column_panel, column) = s.split(c, j, tiling.tile_columns)?;
        s.reorder(c, &[row_block, column_panel, row_tile, row, column])?;
        (outer_loop, tile_loop, tile_row, tile_column) = (row_block, row_tile, row, column);
    } else {
        let [row_tile, column_panel, row, column] =
            s.tile(c, i, j, tiling.tile_rows, tiling.tile_columns)?;
        (outer_loop, tile_loop, tile_row, tile_column) = (row_tile, column_panel, row, column);
    }
    if tiling.parallel {
        s.parallel(c, outer_loop)?;
    }
    s.unroll(c, tile_row)?;
    s.vectorize(c, tile_column)?;
    s.compute_at(local, c, tile_loop)?;

    let k = s.reduce_axes(local)[0];
    let [local_row, local_column] = [s.spatial_axes(local)[0], s.spatial_axes(local)[1]];
    if tiling.unroll_reduction > 1 {
        let (k_outer, k_inner) = s.split(local, k, tiling.unroll_reduction)?;
        s.reorder(local, &[k_outer, k_inner, local_row, local_column])?;
        s.unroll(local, k_inner)?;
    } else {
        s.reorder(local, &[k, local_row, local_column])?;
    }
    s.unroll(local, local_row)?;
    s.vectorize(local, local_column)?;

    let packed = s.stage("B.packed")?;
    let [panel, _, lane] = [
        s.spatial_axes(packed)[0],
        s.spatial_axes(packed)[1],
        s.spatial_axes(packed)[2],
    ];
    s.vectorize(packed, lane)?;
    if tiling.parallel {
        s.parallel(packed, panel)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{compare, evaluate};
    use crate::random::SplitMix64;

    #[test]
    fn register_tiled_matmul_computes_a_matmul_with_and_without_tails() {
        for (m, n, k) in [(8, 16, 5), (7, 13, 3), (1, 1, 1), (12, 24, 17)] {
            for tiling in [
                MatmulTiling::default(),
                MatmulTiling {
                    tile_rows: 6,
                    tile_columns: 8,
                    unroll_reduction: 4,
                    block_rows: 1,
                    parallel: true,
                },
                MatmulTiling {
                    tile_rows: 2,
                    tile_columns: 4,
                    unroll_reduction: 2,
                    block_rows: 5,
                    parallel: true,
                },
            ] {
                let params = MatmulParams {
                    m,
                    n,
                    k,
                    transpose_b: false,
                };
                let schedule = register_tiled_matmul(params, tiling).expect("recipe applies");
                let nest = crate::lower(&schedule).expect("lowers");
                let mut rng = SplitMix64::new(7);
                let a: Vec<f32> = (0..m * k).map(|_| rng.unit_f32()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rng.unit_f32()).collect();
                let mut c = vec![0.0; (m * n) as usize];
                crate::interp::run(&nest, &[&a, &b], &mut [&mut c]).expect("runs");
                let program = Workload::Matmul(params)
                    .program(&Layout::default())
                    .unwrap();
                let expected = evaluate(&program, &[&a, &b]).unwrap();
                compare(&c, &expected[0], 1e-5)
                    .unwrap_or_else(|m| panic!("{params:?} {tiling:?}: {m:?}"));
            }
        }
    }
}
