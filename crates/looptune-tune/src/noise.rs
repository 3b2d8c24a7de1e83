//! How noisy a run's measurements were, from its own records: what `tune` prints so that a user
//! can tell whether its timing protocol is precise enough on their machine.
//!
//! Two figures, because they answer different questions. The spread of the repeats inside one
//! measurement says how steady the machine was over a few hundred milliseconds; the variation
//! of one config measured again (the finalists' rounds, minutes apart and in fresh worker
//! processes) says how far two measurements of the same kernel can disagree, which is what
//! decides whether the search ranked candidates correctly.

use looptune_log::Record;
use std::collections::HashMap;

/// The noise of a set of measurements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Noise {
    /// The median, over measurements timed in full, of `(slowest - fastest) / median` of their
    /// repeats; `None` without such a measurement of two repeats or more.
    pub repeat_spread: Option<f64>,
    /// The median, over configs measured more than once, of the coefficient of variation
    /// (standard deviation over mean) of their throughputs; `None` when no config was measured
    /// twice.
    pub remeasure_cv: Option<f64>,
    /// Configs measured more than once (what `remeasure_cv` is the median of).
    pub remeasured_configs: usize,
}

impl Noise {
    /// The noise of `records` (valid ones only; short timings have one repeat and count only
    /// in `remeasure_cv`, never in `repeat_spread`).
    pub fn of(records: &[Record]) -> Noise {
        let mut spreads = Vec::new();
        let mut per_config: HashMap<(&str, u128), Vec<f64>> = HashMap::new();
        for record in records.iter().filter(|record| record.is_valid()) {
            let (Some(costs), Some(gflops)) = (&record.costs, record.gflops) else {
                continue;
            };
            if !costs.short && costs.all_s.len() >= 2 && costs.median_s > 0.0 {
                let fastest = costs.all_s.iter().copied().fold(f64::INFINITY, f64::min);
                let slowest = costs.all_s.iter().copied().fold(0.0, f64::max);
                spreads.push((slowest - fastest) / costs.median_s);
            }
            per_config
                .entry((record.workload.as_str(), record.config_index))
                .or_default()
                .push(gflops);
        }
        let mut cvs: Vec<f64> = per_config
            .values()
            .filter(|values| values.len() >= 2)
            .map(|values| coefficient_of_variation(values))
            .collect();
        Noise {
            repeat_spread: median(&mut spreads),
            remeasured_configs: cvs.len(),
            remeasure_cv: median(&mut cvs),
        }
    }
}

/// Standard deviation over mean of `values` (at least two, positive).
fn coefficient_of_variation(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    variance.sqrt() / mean
}

/// The median of `values` (the mean of the middle two for an even count), `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use looptune_ir::Workload;
    use looptune_log::{RecordContext, TargetFingerprint};
    use looptune_runtime::measure::{Costs, MeasureResult};
    use looptune_runtime::Target;
    use std::time::SystemTime;

    fn record(index: u128, all_s: &[f64], short: bool) -> Record {
        let workload: Workload = "matmul:m=4,n=4,k=4".parse().expect("parses");
        let fingerprint = TargetFingerprint::from_parts(&Target::host(), "test", "1");
        let context = RecordContext::new(&workload, fingerprint, "test");
        let mut sorted = all_s.to_vec();
        sorted.sort_by(f64::total_cmp);
        let costs = Costs {
            median_s: sorted[sorted.len() / 2],
            min_s: sorted[0],
            number: 1,
            repeat: all_s.len(),
            all_s: all_s.to_vec(),
            short,
        };
        let now = SystemTime::now();
        Record::from_measurement(
            &context,
            index,
            Vec::new(),
            &MeasureResult::known(Ok(costs)),
            now,
            now,
        )
    }

    #[test]
    fn repeats_and_configs_measured_again_give_the_two_figures() {
        let records = [
            // Repeats 1.0, 1.1, 1.2 s: spread 0.2 / 1.1.
            record(1, &[1.0, 1.1, 1.2], false),
            // Repeats 2.0, 2.0, 2.0: no spread.
            record(2, &[2.0, 2.0, 2.0], false),
            // A short timing has no spread of its own.
            record(3, &[9.0], true),
            // Config 1 measured again at 1.0 s: throughputs 128/1.1 and 128/1.0 per second.
            record(1, &[1.0, 1.0, 1.0], false),
        ];
        let noise = Noise::of(&records);
        let spread = noise.repeat_spread.expect("three full measurements");
        assert!(
            (spread - 0.0).abs() < 1e-12,
            "median of 0.18, 0, 0: {spread}"
        );
        assert_eq!(noise.remeasured_configs, 1);
        let (a, b): (f64, f64) = (128.0 / 1.1, 128.0);
        let mean = (a + b) / 2.0;
        let expected = ((a - mean).abs()) / mean;
        let cv = noise.remeasure_cv.expect("config 1 twice");
        assert!((cv - expected).abs() < 1e-12, "{cv} vs {expected}");
    }

    #[test]
    fn nothing_measured_twice_has_no_remeasure_figure() {
        let noise = Noise::of(&[record(1, &[1.0], false)]);
        assert_eq!(noise, Noise::default());
    }
}
