//! Which schedule a command compiles or prints: the operator's default, or a hand-written
//! recipe from `looptune_ir::recipes`.
//!
//! `lower` and `run` share these options so that the nest `lower` prints is exactly the one
//! `run` measures. Once search spaces exist, a config from a tuning log will be a third source.

use super::input::{self, Usage};
use clap::{Args, ValueEnum};
use looptune::ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune::runtime::Backend;
use looptune::{Schedule, Workload};

/// Where the schedule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleSource {
    /// The operator's default schedule: correct and naive.
    Default,
    /// The hand-written BLIS-style matmul schedule: B packed, a register tile of accumulators
    /// (`--tile`), FMA, unrolled; `run` makes the row-block loop parallel when `--threads` > 1.
    RegisterTiled,
}

/// The schedule options of `lower` and `run`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Which schedule.
    #[arg(long = "schedule", value_enum, default_value_t = ScheduleSource::Default)]
    source: ScheduleSource,
    /// Register tile `ROWSxCOLUMNS` of `--schedule register-tiled`.
    #[arg(long, default_value = "4x8")]
    tile: String,
    /// Unroll factor of the reduction loop in `--schedule register-tiled`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    unroll_k: i64,
    /// Rows of A kept in cache while all of B passes, in `--schedule register-tiled` (at most
    /// the tile's rows: no such block).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..))]
    block_rows: i64,
    /// Take the schedule from the best config of this tuning log for the workload on this
    /// target (exact target first, then a compatible one, reported), or the template's fallback
    /// config with a warning when the log has none.
    #[arg(long, conflicts_with = "source")]
    log: Option<std::path::PathBuf>,
    /// Data-layout choices of the operator definition for `--schedule default`, e.g. `pack=8`
    /// to pack the matrix read along `n` into panels of 8 columns (matmul, dense), `block_k=64`
    /// to sum the reduction in blocks of 64 (matmul, dense), `pack_oc=8` to pack conv2d's
    /// weights into blocks of 8 output channels.
    #[arg(long, default_value = "")]
    layout: String,
}

impl ScheduleArgs {
    /// Whether the schedule comes from a tuning log (whose configs belong to a backend).
    pub fn uses_log(&self) -> bool {
        self.log.is_some()
    }

    /// The name of the source, as written on the command line.
    pub fn name(&self) -> &'static str {
        if self.log.is_some() {
            return "tuned";
        }
        match self.source {
            ScheduleSource::Default => "default",
            ScheduleSource::RegisterTiled => "register-tiled",
        }
    }

    /// Builds the schedule of `workload`; `parallel` asks recipes for a parallel outer loop. A
    /// log's config is read for `backend`'s space and target.
    pub fn build(
        &self,
        workload: &Workload,
        parallel: bool,
        backend: &dyn Backend,
    ) -> anyhow::Result<Schedule> {
        if let Some(log) = &self.log {
            return Ok(from_log(log, workload, parallel, backend)?.schedule);
        }
        Ok(self.build_recipe(workload, parallel)?)
    }

    fn build_recipe(&self, workload: &Workload, parallel: bool) -> Result<Schedule, Usage> {
        match self.source {
            ScheduleSource::Default => {
                let layout = input::layout(&self.layout)?;
                Ok(Schedule::new(&input::program(workload, &layout)?))
            }
            ScheduleSource::RegisterTiled => {
                let Workload::Matmul(params) = *workload else {
                    return Err(Usage(format!(
                        "--schedule register-tiled is a matmul schedule, not one for `{}`",
                        workload.op_name()
                    )));
                };
                if !self.layout.is_empty() {
                    return Err(Usage(
                        "--layout applies to --schedule default; register-tiled packs B itself"
                            .to_string(),
                    ));
                }
                let (tile_rows, tile_columns) = parse_tile(&self.tile)?;
                let tiling = MatmulTiling {
                    tile_rows,
                    tile_columns,
                    unroll_reduction: self.unroll_k,
                    block_rows: self.block_rows,
                    parallel,
                };
                // The workload parsed, so the recipe can only reject the tiling, which is the
                // user's choice.
                register_tiled_matmul(params, tiling).map_err(|err| Usage(err.to_string()))
            }
        }
    }
}

/// What a log gave for a workload: the schedule, its config, and whether it is a tuned one (or
/// the template's fallback).
pub struct FromLog {
    /// The schedule of the config.
    pub schedule: Schedule,
    /// The config.
    pub config: looptune::space::Config,
    /// Whether the config came from the log (else the template's fallback).
    pub tuned: bool,
}

/// The schedule of the best config a tuning log holds for `workload` on this host with
/// `backend`, or of the template's fallback config. Where the config came from is said on
/// stderr. `threads` of the target only matter for matching the log, so `parallel` picks them
/// as `run` does.
pub fn from_log(
    log: &std::path::Path,
    workload: &Workload,
    parallel: bool,
    backend: &dyn Backend,
) -> anyhow::Result<FromLog> {
    use looptune::deploy::{best_config, Origin};
    use looptune::log::Source;
    use looptune::runtime::Target;

    let threads = if parallel {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    let target = Target::host().with_threads(threads);
    let chosen = best_config(log, workload, backend, &target)?;
    for warning in &chosen.warnings {
        eprintln!("warning: {warning}");
    }
    match &chosen.origin {
        Origin::Tuned {
            source: Source::CompatibleTarget { differences, .. },
            ..
        } => eprintln!(
            "config: best of {} for a compatible target ({})",
            log.display(),
            differences.join(", ")
        ),
        Origin::Tuned { .. } => eprintln!("config: best of {} for this target", log.display()),
        Origin::Fallback { reason } => eprintln!("config: the template's fallback ({reason})"),
    }
    Ok(FromLog {
        schedule: chosen.task.schedule(&chosen.config)?,
        tuned: chosen.origin.is_tuned(),
        config: chosen.config,
    })
}

/// Parses `ROWSxCOLUMNS`.
fn parse_tile(text: &str) -> Result<(i64, i64), Usage> {
    let bad = || {
        Usage(format!(
            "tile `{text}` is not of the form ROWSxCOLUMNS, e.g. 4x8"
        ))
    };
    let (rows, columns) = text.split_once('x').ok_or_else(bad)?;
    let rows: i64 = rows.trim().parse().map_err(|_| bad())?;
    let columns: i64 = columns.trim().parse().map_err(|_| bad())?;
    if rows < 1 || columns < 1 {
        return Err(Usage(format!(
            "tile `{text}`: both sides must be at least 1"
        )));
    }
    Ok((rows, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_parse() {
        assert_eq!(parse_tile("4x8").unwrap(), (4, 8));
        assert_eq!(parse_tile(" 6 x 16 ").unwrap(), (6, 16));
        for bad in ["4", "4x", "x8", "4by8", "-1x8", "0x8"] {
            assert!(parse_tile(bad).is_err(), "{bad}");
        }
    }
}
