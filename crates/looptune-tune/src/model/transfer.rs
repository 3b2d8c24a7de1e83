//! Transfer learning: records of other shapes of the same operator train the model of a new one.
//!
//! A tuning log usually holds results of earlier workloads. For a new workload of an operator
//! seen before (ResNet-18's C6 after its C2, matmul 512^3 after 256^3), those records say which
//! kinds of configs are fast on this machine before the first measurement of the new one.
//! [`TransferSet::from_records`] turns them into training rows for [`XgbTuner`]: each record's
//! knob values are mapped into its own workload's space, lowered with that workload's template
//! and read with the same [`FeatureSpec`] layout as the new task. The loop-nest features
//! (extents, strides, touched bytes, reuse, counts, all log-scaled) mean the same thing for every
//! shape; the raw knob choices do not (a split knob's list of values depends on the extent it
//! splits), so those columns are marked [`MISSING`] on transferred rows. Each workload is its own
//! group: throughputs are compared only within it, so a faster shape does not outrank a slower
//! one.
//!
//! Records of a log are used only when their target fingerprint equals the new run's exactly
//! (the task's own records there are its training data, not transfer); records looptune ships
//! ([`crate::shipped`]) when they were measured with the same backend in spaces of the same
//! vector shape, the task's own shape included when it is a reference workload. Either way the
//! other workload's feature layout must equal the new one's.
//!
//! [`XgbTuner`]: super::XgbTuner

use looptune_cost::{FeatureSpec, MISSING};
use looptune_ir::Workload;
use looptune_log::{Record, TargetFingerprint};
use looptune_space::Task;
use std::collections::BTreeMap;

/// Rows kept per other workload at most (the first ones of the log), which bounds the time
/// every refit spends on transferred rows.
pub const MAX_ROWS_PER_WORKLOAD: usize = 512;

/// Training rows from other workloads of the task's operator, grouped by workload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TransferSet {
    pub(crate) rows: Vec<Vec<f32>>,
    pub(crate) throughput: Vec<f64>,
    /// (workload key, rows), in the order of `rows`.
    pub(crate) groups: Vec<(String, usize)>,
    skipped: usize,
}

impl TransferSet {
    /// The rows the records of other workloads of `task`'s operator, measured on `target`,
    /// give. Records of `task` itself, of other operators or other targets are ignored; records
    /// whose config no longer fits their workload's space, or whose layout differs, are counted
    /// in [`skipped`](Self::skipped).
    pub fn from_records(
        task: &Task,
        records: &[Record],
        target: &TargetFingerprint,
    ) -> TransferSet {
        let key = task.key();
        TransferSet::from_records_where(task, records, |record| {
            record.target == *target && record.workload != key.as_str()
        })
    }

    /// The rows of the records of `task`'s operator that `keep` accepts, whatever their target
    /// and including `task`'s own shape (as one more group, its knob columns missing like the
    /// others'): the caller vouches that their configs mean the same kernels as `task`'s (same
    /// backend, same vector shape), as [`TransferSet::shipped`] does.
    pub fn from_records_where(
        task: &Task,
        records: &[Record],
        keep: impl Fn(&Record) -> bool,
    ) -> TransferSet {
        let spec = FeatureSpec::for_task(task);
        let operator = task.workload().op_name();
        let mut by_workload: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for record in records {
            if keep(record) {
                by_workload
                    .entry(&record.workload)
                    .or_default()
                    .push(record);
            }
        }
        let mut set = TransferSet::default();
        for (workload_key, records) in by_workload {
            let Ok(workload) = workload_key.parse::<Workload>() else {
                set.skipped += records.len();
                continue;
            };
            if workload.op_name() != operator {
                continue;
            }
            // The records matched the backend and vector shape, so their space is sized like
            // `task`'s.
            let other = match Task::for_shape(workload, *task.vector_shape()) {
                Ok(other) if FeatureSpec::for_task(&other) == spec => other,
                _ => {
                    set.skipped += records.len();
                    continue;
                }
            };
            let before = set.rows.len();
            for record in records.iter().take(MAX_ROWS_PER_WORKLOAD) {
                let features = other
                    .space()
                    .from_values(&record.config)
                    .ok()
                    .and_then(|config| spec.extract(&other, &config).ok());
                let Some(mut features) = features else {
                    set.skipped += 1;
                    continue;
                };
                for column in spec.knob_columns() {
                    features[column] = MISSING;
                }
                set.rows.push(features);
                set.throughput
                    .push(record.gflops.filter(|g| g.is_finite()).unwrap_or(0.0));
            }
            let rows = set.rows.len() - before;
            if rows > 0 {
                set.groups.push((workload_key.to_string(), rows));
            }
        }
        set
    }

    /// Adds `other`'s rows after these, as groups of their own.
    pub fn extend(&mut self, other: TransferSet) {
        self.rows.extend(other.rows);
        self.throughput.extend(other.throughput);
        self.groups.extend(other.groups);
        self.skipped += other.skipped;
    }

    /// Rows in the set.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the set has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The feature rows and the throughput of each (GFLOP/s, 0 for a failure), grouped in the
    /// order of [`workloads`](Self::workloads): what [`XgbTuner`](super::XgbTuner) fits its
    /// model on before the first measurement, for anyone who wants to fit or inspect one.
    pub fn rows(&self) -> (&[Vec<f32>], &[f64]) {
        (&self.rows, &self.throughput)
    }

    /// The workloads the rows come from, with their row counts, in the order of the rows (key
    /// order within each source; a workload may come from two sources, a log and the records
    /// looptune ships).
    pub fn workloads(&self) -> &[(String, usize)] {
        &self.groups
    }

    /// Records that matched operator and target but could not be used.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}
