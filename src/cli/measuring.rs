//! The measuring flags the tuning commands share (`tune`, `tune-model`, `tune-compare`), their
//! validation, and the measurer they make: one definition instead of a copy per command.

use super::Usage;
use anyhow::Context;
use clap::Args;
use looptune::measuring::WorkerChoice;
use looptune::runtime::measure::{Staging, WorkerCommand, MAX_MIN_REPEAT_MS, MAX_TIMEOUT};
use looptune::runtime::{Backend, MeasureOptions, Measurer, Target};
use std::sync::Arc;
use std::time::Duration;

/// How each candidate is measured; the defaults are [`MeasureOptions::tuning`]'s.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// Timed repeats per candidate (the median is recorded).
    #[arg(long, default_value_t = MeasureOptions::tuning().repeat as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Calls per repeat grow until a repeat lasts at least this many milliseconds.
    #[arg(long, default_value_t = MeasureOptions::tuning().min_repeat_ms)]
    pub min_repeat_ms: f64,
    /// Staged timing: a candidate under this fraction of the best throughput so far is
    /// recorded from one first short repeat, marked `short`, and not timed further; 0 times
    /// every candidate in full.
    #[arg(long, default_value_t = Staging::default().cutoff)]
    pub stage_cutoff: f64,
    /// The length of staged timing's first repeat, in milliseconds.
    #[arg(long, default_value_t = Staging::default().first_stage_ms)]
    pub first_stage_ms: f64,
    /// Seconds a candidate may take (compile, check and timing) before it is a Timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Measure in this process instead of a worker (no protection from crashing kernels).
    #[arg(long)]
    pub in_process: bool,
}

impl MeasureArgs {
    /// The measuring options the flags say, or a usage error naming a flag that cannot work.
    pub fn options(&self) -> Result<MeasureOptions, Usage> {
        let min_repeat_ms = self.min_repeat_ms;
        if !(min_repeat_ms.is_finite() && min_repeat_ms > 0.0 && min_repeat_ms <= MAX_MIN_REPEAT_MS)
        {
            return Err(Usage(format!(
                "--min-repeat-ms {min_repeat_ms} must be a number of milliseconds above 0 and at \
                 most {MAX_MIN_REPEAT_MS}"
            )));
        }
        if !(0.0..1.0).contains(&self.stage_cutoff) {
            return Err(Usage(format!(
                "--stage-cutoff {} must be a fraction of the best throughput from 0 (no staging) \
                 to below 1",
                self.stage_cutoff
            )));
        }
        if !(0.0..=MAX_MIN_REPEAT_MS).contains(&self.first_stage_ms) {
            return Err(Usage(format!(
                "--first-stage-ms {} must be a number of milliseconds from 0 to {MAX_MIN_REPEAT_MS}",
                self.first_stage_ms
            )));
        }
        let timeout = super::input::duration(
            "--timeout",
            self.timeout,
            Duration::from_millis(1),
            MAX_TIMEOUT,
        )?;
        let options = MeasureOptions {
            repeat: self.repeat as usize,
            min_repeat_ms,
            timeout,
            staging: Staging {
                cutoff: self.stage_cutoff,
                first_stage_ms: self.first_stage_ms,
            },
            ..MeasureOptions::tuning()
        };
        // The library's own rule, in case it is stricter than the flags' ranges.
        options
            .validate()
            .map_err(|problem| Usage(problem.to_string()))?;
        Ok(options)
    }
}

/// Where this binary's tuning commands measure: a worker process running this binary's hidden
/// `worker` subcommand, unless `in_process`.
pub fn worker(in_process: bool) -> anyhow::Result<WorkerChoice> {
    if in_process {
        return Ok(WorkerChoice::InProcess);
    }
    let exe = std::env::current_exe().context("locating the looptune binary for the worker")?;
    Ok(WorkerChoice::Use(WorkerCommand::new(exe).arg("worker")))
}

/// The measurer of a tuning run, compiling with `backend`: the library's
/// ([`looptune::measuring::measurer`]) with this binary as the worker, unless `in_process`.
pub fn measurer(
    target: &Target,
    backend: &Arc<dyn Backend>,
    measure: MeasureOptions,
    in_process: bool,
) -> anyhow::Result<Measurer> {
    let (measurer, _) =
        looptune::measuring::measurer(target, backend, measure, &worker(in_process)?)?;
    Ok(measurer)
}
