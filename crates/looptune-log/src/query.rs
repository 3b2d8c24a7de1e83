//! Questions asked of records: the best per task, the top k, a task's records and what a
//! resumed run must not measure again. Merging logs is `merge.rs`.
//!
//! A *task* here is a (workload key, target fingerprint) pair, matched exactly: results from
//! another machine or code generator answer none of these questions (the [`crate::Dispatcher`]
//! is where a compatible target may stand in, and says so).

use crate::record::{Record, TargetFingerprint};
use looptune_space::{ConfigValues, TaskKey};
use std::collections::{HashMap, HashSet};

/// All records of the task (`key`, `target`), valid or not, in log order. `key` is a
/// [`TaskKey`], or a `&Workload` (built-in) it is made from.
pub fn task_records<'a>(
    records: &'a [Record],
    key: impl Into<TaskKey>,
    target: &TargetFingerprint,
) -> Vec<&'a Record> {
    let key = key.into();
    records
        .iter()
        .filter(|record| record.is_of_task(&key, target))
        .collect()
}

/// The `k` fastest valid configs of the task, fastest first (ties keep log order), each as its
/// [representative record](per_config).
pub fn top_k<'a>(
    records: &'a [Record],
    key: impl Into<TaskKey>,
    target: &TargetFingerprint,
    k: usize,
) -> Vec<&'a Record> {
    let mut valid = per_config(
        task_records(records, key, target)
            .into_iter()
            .filter(|record| record.is_valid()),
    );
    valid.sort_by(|a, b| by_median(a, b));
    valid.truncate(k);
    valid
}

/// The fastest valid config of the task, as its [representative record](per_config), if any.
pub fn best<'a>(
    records: &'a [Record],
    key: impl Into<TaskKey>,
    target: &TargetFingerprint,
) -> Option<&'a Record> {
    top_k(records, key, target, 1).into_iter().next()
}

/// The fastest valid record of every task in `records`, in the order each task first appears.
/// This is what `looptune best --log FILE` prints (filtered by workload when one is given).
pub fn best_per_task(records: &[Record]) -> Vec<&Record> {
    best_per_task_where(records, |_| true)
}

/// [`best_per_task`] among the records `keep` accepts: the one rule every query of the best
/// record uses (`best`, `show`, `run`, `export-db` and the dispatcher), with the caller's own
/// test on top, such as "its config is a point of today's space". A record counts when it is
/// [valid](Record::is_valid) (no error, a finite positive time and throughput) and kept; a
/// config measured more than once counts once, at the median of its measurements
/// ([`per_config`]).
pub fn best_per_task_where(records: &[Record], keep: impl Fn(&Record) -> bool) -> Vec<&Record> {
    let mut best: Vec<&Record> = Vec::new();
    for record in per_config(
        records
            .iter()
            .filter(|record| record.is_valid() && keep(record)),
    ) {
        match best
            .iter_mut()
            .find(|kept| kept.workload == record.workload && kept.target == record.target)
        {
            Some(kept) => {
                if by_median(record, kept).is_lt() {
                    *kept = record;
                }
            }
            None => best.push(record),
        }
    }
    best
}

/// The configs a task has already measured (failed ones included: measuring them again would
/// fail again), so that a resumed run skips them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Config indices measured.
    pub indices: HashSet<u128>,
    /// The same configs as knob values, for spaces whose indices changed since the log was
    /// written.
    pub configs: HashSet<ConfigValues>,
}

impl Measured {
    /// Whether the config with `index` was measured.
    pub fn contains_index(&self, index: u128) -> bool {
        self.indices.contains(&index)
    }

    /// Whether the config with these knob values was measured.
    pub fn contains_config(&self, config: &ConfigValues) -> bool {
        self.configs.contains(config)
    }

    /// How many distinct configs were measured.
    pub fn len(&self) -> usize {
        self.configs.len().max(self.indices.len())
    }

    /// Whether nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty() && self.configs.is_empty()
    }
}

/// What the task (`key`, `target`) has measured already.
pub fn measured(
    records: &[Record],
    key: impl Into<TaskKey>,
    target: &TargetFingerprint,
) -> Measured {
    let mut measured = Measured::default();
    for record in task_records(records, key, target)
        .into_iter()
        .filter(|record| record.counts_as_measured())
    {
        measured.indices.insert(record.config_index);
        measured.configs.insert(record.config.clone());
    }
    measured
}

/// One record per (task, config) of `records` (a config is its index and its knob values), in
/// the order each first appears: the record
/// whose time is the median of that config's records (the lower median for an even count).
///
/// A tuning run measures its finalists again, side by side, because a machine shared with
/// other work is quiet at some moments and busy at others: a config measured once in a quiet
/// moment would otherwise outrank better ones measured in a busy one, and a deploy would pick
/// the luckiest measurement rather than the fastest kernel. Every query of "the best" ranks
/// configs by this representative.
pub fn per_config<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<&'a Record> {
    let mut groups: Vec<Vec<&Record>> = Vec::new();
    type Key<'r> = (&'r str, &'r TargetFingerprint, u128, &'r ConfigValues);
    let mut index: HashMap<Key, usize> = HashMap::new();
    for record in records {
        let key = (
            record.workload.as_str(),
            &record.target,
            record.config_index,
            &record.config,
        );
        match index.get(&key) {
            Some(&group) => groups[group].push(record),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![record]);
            }
        }
    }
    groups
        .into_iter()
        .map(|mut group| {
            group.sort_by(|a, b| by_median(a, b));
            group[(group.len() - 1) / 2]
        })
        .collect()
}

/// The ranking of every query: a record timed by the whole protocol before one timed short
/// ([`Record::is_short`]: a candidate left behind after a first stage, whose one short repeat
/// is good enough to rank it low, never to pick it), then the faster median first.
fn by_median(a: &Record, b: &Record) -> std::cmp::Ordering {
    let rank = |record: &Record| {
        (
            record.is_short(),
            record.median_s().unwrap_or(f64::INFINITY),
        )
    };
    let (a, b) = (rank(a), rank(b));
    a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::fingerprint;
    use crate::writer::tests::record;
    use looptune_ir::Workload;
    use looptune_runtime::measure::{MeasureError, MeasureErrorKind};
    use looptune_space::KnobValue;

    fn matmul() -> Workload {
        "matmul:m=4,n=4,k=4".parse().expect("parses")
    }

    fn failed(index: u128) -> Record {
        let mut failed = record(index, 0.5);
        failed.costs = None;
        failed.gflops = None;
        failed.error = Some(MeasureError::new(
            MeasureErrorKind::WrongAnswer,
            "C[0] is 1",
        ));
        failed
    }

    #[test]
    fn best_and_top_k_skip_failures_and_other_targets() {
        let mut elsewhere = record(9, 0.1);
        elsewhere.target = fingerprint("Other CPU", 1);
        let records = vec![
            record(1, 3.0),
            failed(2),
            record(3, 1.0),
            elsewhere,
            record(4, 2.0),
        ];
        let target = fingerprint("Test CPU", 1);
        let indices =
            |found: Vec<&Record>| found.iter().map(|r| r.config_index).collect::<Vec<_>>();
        assert_eq!(indices(top_k(&records, matmul(), &target, 2)), vec![3, 4]);
        assert_eq!(
            best(&records, matmul(), &target).map(|r| r.config_index),
            Some(3)
        );
        assert_eq!(task_records(&records, matmul(), &target).len(), 4);
        assert_eq!(
            best_per_task(&records)
                .iter()
                .map(|r| r.config_index)
                .collect::<Vec<_>>(),
            vec![3, 9]
        );
    }

    #[test]
    fn a_config_measured_again_stands_at_its_median() {
        let values = |index: u128| vec![("tile".to_string(), KnobValue::Choice(index as i64))];
        let with = |index: u128, seconds: f64| {
            let mut measured = record(index, seconds);
            measured.config = values(index);
            measured
        };
        // Config 1 was measured once in a quiet moment (1.0 s), then twice side by side with
        // config 2 (3.0 s, 2.9 s); config 2 measured 2.0, 2.1 and 1.9 s.
        let records = vec![
            with(1, 1.0),
            with(2, 2.0),
            with(1, 3.0),
            with(2, 2.1),
            with(1, 2.9),
            with(2, 1.9),
        ];
        let target = fingerprint("Test CPU", 1);
        let best = best(&records, matmul(), &target).expect("a best record");
        assert_eq!((best.config_index, best.median_s()), (2, Some(2.0)));
        let top: Vec<(u128, Option<f64>)> = top_k(&records, matmul(), &target, 5)
            .iter()
            .map(|record| (record.config_index, record.median_s()))
            .collect();
        assert_eq!(top, vec![(2, Some(2.0)), (1, Some(2.9))]);
        let per_task: Vec<u128> = best_per_task(&records)
            .iter()
            .map(|record| record.config_index)
            .collect();
        assert_eq!(per_task, vec![2]);
        // An even count takes the faster of the two middle measurements.
        let pair = [with(1, 1.0), with(1, 3.0)];
        assert_eq!(per_config(pair.iter())[0].median_s(), Some(1.0));
    }

    #[test]
    fn measured_holds_failed_configs_by_index_and_by_values() {
        let mut with_values = failed(2);
        with_values.config = vec![("k".to_string(), KnobValue::Choice(1))];
        let records = vec![record(1, 1.0), with_values];
        let done = measured(&records, matmul(), &fingerprint("Test CPU", 1));
        assert!(done.contains_index(1) && done.contains_index(2) && !done.contains_index(3));
        assert!(done.contains_config(&vec![("k".to_string(), KnobValue::Choice(1))]));
        assert!(measured(&records, matmul(), &fingerprint("Other", 1)).is_empty());
    }

    #[test]
    fn a_record_timed_short_ranks_after_every_full_one() {
        let short = |index: u128, seconds: f64| {
            let mut record = record(index, seconds);
            if let Some(costs) = &mut record.costs {
                costs.short = true;
            }
            record
        };
        // A short timing that (by a burst of noise in the best's full timing) reads faster
        // than every full one still does not win; alone, it is still a measured config.
        let records = vec![record(1, 2.0), short(2, 0.5), record(3, 1.0)];
        let target = fingerprint("Test CPU", 1);
        let order: Vec<u128> = top_k(&records, matmul(), &target, 3)
            .iter()
            .map(|record| record.config_index)
            .collect();
        assert_eq!(order, [3, 1, 2]);
        assert_eq!(best_per_task(&records)[0].config_index, 3);
        assert!(records[1].is_short() && !records[0].is_short());
        let alone = [short(2, 0.5)];
        assert_eq!(
            best(&alone, matmul(), &target).map(|r| r.config_index),
            Some(2)
        );
        assert!(measured(&alone, matmul(), &target).contains_index(2));
    }
}
