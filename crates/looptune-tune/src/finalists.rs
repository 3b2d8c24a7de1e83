//! The end of a tuning run: its best configs measured again, side by side.
//!
//! A machine shared with other work (a cloud host's neighbours, a build on the other core) is
//! quiet at some moments and busy at others, and the difference reaches a quarter of a GEMM's
//! throughput. Candidates measured minutes apart are therefore ranked partly by when they ran:
//! the best record of a run tends to be its luckiest measurement, not its fastest kernel. The
//! finalists (the best few configs of the task) are measured again in rounds, each round every
//! finalist once, back to back, and every measurement is logged; the log's queries then rank a
//! config by the median of its measurements ([`looptune_log::per_config`]), so the config a
//! deploy picks is the one that was fastest next to its rivals.
//!
//! Each round runs in a fresh worker process ([`Measure::fresh_process`]): a kernel's speed can
//! depend on where its buffers land in physical memory (on the Zen 3 host, one 512^3 matmul
//! config ran at 57 to 78 GFLOP/s in six processes, while its rivals held within 10%), and one
//! process is one draw of that placement. When the rounds leave a config that was not a
//! finalist as the best (the finalists' medians fell below a single lucky measurement), the
//! new best few are measured again the same way, at most [`EXTRA_PASSES`] more times, so the
//! config a deploy picks has been measured next to its rivals.

use crate::task::TuningTask;
use crate::tuning::{Measure, Observer, RecordSink, TuneError};
use looptune_log::{best, top_k, Record, RecordContext};
use looptune_space::Config;
use std::time::SystemTime;

/// Further passes of the rounds when the best config after a pass was not one of its finalists.
pub const EXTRA_PASSES: usize = 2;

/// How a run measures its finalists again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finalists {
    /// The best configs of the task (log and run together) measured again; fewer than two
    /// has no rival to compare with and measures nothing.
    pub configs: usize,
    /// Rounds; each measures every finalist once, one after another.
    pub rounds: usize,
}

impl Finalists {
    /// No finalists: the run ends with its last batch.
    pub const NONE: Finalists = Finalists {
        configs: 0,
        rounds: 0,
    };

    /// Whether this measures anything.
    pub fn is_active(&self) -> bool {
        self.configs >= 2 && self.rounds >= 1
    }
}

impl Default for Finalists {
    /// Four configs, three rounds: twelve more measurements (a few percent of a 300-trial
    /// run), so that a finalist's rank rests on the median of four.
    fn default() -> Finalists {
        Finalists {
            configs: 4,
            rounds: 3,
        }
    }
}

/// Measures the finalists of the task among `records` (its records so far, any order) again
/// under `finalists`, appending each round to `log` as one batch; returns the new records.
/// Stops between candidates when the observer is interrupted, keeping what was measured.
pub(crate) fn measure_again(
    task: &dyn TuningTask,
    measurer: &mut dyn Measure,
    log: &mut dyn RecordSink,
    context: &RecordContext,
    records: &[Record],
    finalists: Finalists,
    observer: &mut dyn Observer,
) -> Result<Vec<Record>, TuneError> {
    if !finalists.is_active() {
        return Ok(Vec::new());
    }
    let mut all = records.to_vec();
    let mut measured = Vec::new();
    for _ in 0..=EXTRA_PASSES {
        let configs = finalists_of(task, &all, context, finalists.configs);
        if configs.len() < 2 {
            break;
        }
        let pass = measure_rounds(task, measurer, log, context, &configs, finalists, observer)?;
        all.extend(pass.iter().cloned());
        measured.extend(pass);
        let settled = best(&all, task.key(), &context.target).is_none_or(|best| {
            configs
                .iter()
                .any(|config| config.index() == best.config_index)
        });
        if settled || observer.interrupted() {
            break;
        }
    }
    Ok(measured)
}

/// The `count` best configs of the task among `records` that are points of today's space.
fn finalists_of(
    task: &dyn TuningTask,
    records: &[Record],
    context: &RecordContext,
    count: usize,
) -> Vec<Config> {
    top_k(records, task.key(), &context.target, count)
        .into_iter()
        // A config recorded by an older space that no longer fits is not a finalist.
        .filter_map(|record| task.space().from_values(&record.config).ok())
        .collect()
}

/// One pass: `finalists.rounds` rounds over `configs`, each in a fresh worker process and
/// appended to `log` as one batch.
fn measure_rounds(
    task: &dyn TuningTask,
    measurer: &mut dyn Measure,
    log: &mut dyn RecordSink,
    context: &RecordContext,
    configs: &[Config],
    finalists: Finalists,
    observer: &mut dyn Observer,
) -> Result<Vec<Record>, TuneError> {
    let inputs: Vec<_> = configs
        .iter()
        .map(|config| task.measure_input(config))
        .collect();
    let prepared: Vec<_> = configs
        .iter()
        .zip(&inputs)
        .filter_map(|(config, input)| Some((config, input.as_ref().ok()?)))
        .collect();
    measurer.prepare(&prepared);
    let mut measured = Vec::new();
    for _ in 0..finalists.rounds {
        measurer.fresh_process();
        let mut round = Vec::with_capacity(configs.len());
        for (config, input) in configs.iter().zip(&inputs) {
            if observer.interrupted() {
                break;
            }
            // Every finalist lowered before (that is how it has a time); a failure now is
            // logged like any other.
            let Ok(input) = input else { continue };
            let started = SystemTime::now();
            let result = measurer.measure(config, input);
            round.push(Record::from_measurement(
                context,
                config.index(),
                config.to_values(),
                &result,
                started,
                SystemTime::now(),
            ));
        }
        log.append_batch(&round)?;
        measured.append(&mut round);
        if observer.interrupted() {
            break;
        }
    }
    Ok(measured)
}
