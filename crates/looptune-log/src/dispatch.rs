//! Deploy-time choice of a config: the exact target's best, else a compatible target's best
//! (said so), else the caller's fallback (with a warning). Never a mismatch used silently.

use crate::db::DeployDb;
use crate::error::LogError;
use crate::reader::{read_any, AnyContents, LogWarning};
use crate::record::{Record, TargetFingerprint};
use looptune_space::{ConfigValues, TaskKey};
use std::path::Path;

/// Where a dispatched config came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The best record of this workload on exactly this target.
    Exact,
    /// No record of this target; the best record of a target with the same architecture, ISA
    /// features and code generator (a different CPU model, thread count or generator version).
    CompatibleTarget {
        /// The target the config was tuned on.
        recorded: TargetFingerprint,
        /// How it differs from the target asked about, one phrase per field.
        differences: Vec<String>,
    },
    /// Nothing usable was tuned; the caller's fallback config.
    Fallback,
}

/// A config to deploy and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatch {
    /// The config as knob values.
    pub config: ConfigValues,
    /// Its index in the space, when it came from a record.
    pub config_index: Option<u128>,
    /// The throughput it was measured at, when it came from a record.
    pub gflops: Option<f64>,
    /// Where it came from.
    pub source: Source,
    /// What the caller should tell its user (empty for an exact match).
    pub warnings: Vec<String>,
}

/// Chooses configs for (workload, target) pairs from the best records of one or more logs or
/// a deploy database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dispatcher {
    db: DeployDb,
    warnings: Vec<LogWarning>,
}

impl Dispatcher {
    /// A dispatcher over the best valid record per task in `records`.
    pub fn from_records(records: &[Record]) -> Dispatcher {
        Dispatcher {
            db: DeployDb::from_records(records),
            warnings: Vec::new(),
        }
    }

    /// A dispatcher over the files at `paths`, each a tuning log or a deploy database by its
    /// content ([`crate::read_any`]); the lines the logs skipped are in
    /// [`Dispatcher::load_warnings`]. The logs' best records come first, then the databases'
    /// entries, in the order given.
    pub fn from_logs<P: AsRef<Path>>(paths: &[P]) -> Result<Dispatcher, LogError> {
        Dispatcher::from_logs_where(paths, |_| true)
    }

    /// [`Dispatcher::from_logs`] over the log records `keep` accepts (such as "its config is a
    /// point of today's space"), with the validity rule of [`crate::best_per_task_where`]. A
    /// deploy database's entries were chosen when it was exported and are taken as they are.
    pub fn from_logs_where<P: AsRef<Path>>(
        paths: &[P],
        keep: impl Fn(&Record) -> bool,
    ) -> Result<Dispatcher, LogError> {
        let mut records = Vec::new();
        let mut warnings = Vec::new();
        let mut entries = Vec::new();
        for path in paths {
            match read_any(path)? {
                AnyContents::Log(mut contents) => {
                    records.append(&mut contents.records);
                    warnings.append(&mut contents.warnings);
                }
                AnyContents::Db(db) => entries.extend(db.entries().iter().cloned()),
            }
        }
        records.retain(|record| keep(record));
        let mut db = DeployDb::from_records(&records);
        db.extend(entries);
        Ok(Dispatcher { db, warnings })
    }

    /// A dispatcher over a deploy database.
    pub fn from_db(db: DeployDb) -> Dispatcher {
        Dispatcher {
            db,
            warnings: Vec::new(),
        }
    }

    /// The lines of the logs that were skipped while loading.
    pub fn load_warnings(&self) -> &[LogWarning] {
        &self.warnings
    }

    /// The database of best configs behind this dispatcher.
    pub fn db(&self) -> &DeployDb {
        &self.db
    }

    /// The tuned config for the task `key` (a [`TaskKey`], or the `&Workload` it is made from)
    /// on `target`, exact or compatible, or `None`.
    pub fn lookup(&self, key: impl Into<TaskKey>, target: &TargetFingerprint) -> Option<Dispatch> {
        self.db.lookup(key, target)
    }

    /// The tuned config for the task `key` on `target`, or `fallback()` with a warning saying
    /// why.
    pub fn best(
        &self,
        key: impl Into<TaskKey>,
        target: &TargetFingerprint,
        fallback: impl FnOnce() -> ConfigValues,
    ) -> Dispatch {
        self.db.best(key, target, fallback)
    }
}

/// The choice shared by [`Dispatcher`] and [`DeployDb`]: `entries` holds at most one entry per
/// task (its best).
pub(crate) fn choose(
    entries: &[crate::db::DeployEntry],
    key: &TaskKey,
    target: &TargetFingerprint,
) -> Result<Dispatch, Vec<String>> {
    let of_workload: Vec<_> = entries
        .iter()
        .filter(|entry| entry.workload == key.as_str())
        .collect();
    let found = |entry: &crate::db::DeployEntry, source: Source, warnings: Vec<String>| Dispatch {
        config: entry.config.clone(),
        config_index: Some(entry.config_index),
        gflops: entry.gflops,
        source,
        warnings,
    };
    if let Some(exact) = of_workload.iter().find(|entry| &entry.target == target) {
        return Ok(found(exact, Source::Exact, Vec::new()));
    }
    let compatible = of_workload
        .iter()
        .filter(|entry| entry.target.is_compatible_with(target))
        .min_by(|a, b| {
            let distance = |entry: &crate::db::DeployEntry| target.differences(&entry.target).len();
            distance(a)
                .cmp(&distance(b))
                .then(a.median_s.total_cmp(&b.median_s))
        });
    if let Some(entry) = compatible {
        let differences = target.differences(&entry.target);
        let warning = format!(
            "no record of `{key}` on this target; using the config tuned on a compatible target \
             ({})",
            differences.join(", ")
        );
        let source = Source::CompatibleTarget {
            recorded: entry.target.clone(),
            differences,
        };
        return Ok(found(entry, source, vec![warning]));
    }
    let mut warnings = vec![format!("no tuned config for `{key}` on {target}")];
    warnings.extend(of_workload.iter().map(|entry| {
        format!(
            "ignored the record of `{key}` on an incompatible target ({})",
            target.differences(&entry.target).join(", ")
        )
    }));
    Err(warnings)
}

/// The dispatch when nothing was found.
pub(crate) fn fallback_dispatch(mut warnings: Vec<String>, config: ConfigValues) -> Dispatch {
    if let Some(first) = warnings.first_mut() {
        first.push_str("; using the fallback config");
    }
    Dispatch {
        config,
        config_index: None,
        gflops: None,
        source: Source::Fallback,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::fingerprint;
    use crate::writer::tests::record;
    use looptune_ir::Workload;
    use looptune_space::KnobValue;

    fn matmul() -> Workload {
        "matmul:m=4,n=4,k=4".parse().expect("parses")
    }

    fn fallback() -> ConfigValues {
        vec![("fallback".to_string(), KnobValue::Choice(0))]
    }

    fn on(target: TargetFingerprint, index: u128, median_s: f64) -> Record {
        let mut record = record(index, median_s);
        record.target = target;
        record.config = vec![("index".to_string(), KnobValue::Choice(index as i64))];
        record
    }

    #[test]
    fn the_exact_target_wins_even_when_another_is_faster() {
        let here = fingerprint("CPU A", 1);
        let dispatcher = Dispatcher::from_records(&[
            on(fingerprint("CPU B", 1), 1, 0.1),
            on(here.clone(), 2, 1.0),
            on(here.clone(), 3, 2.0),
        ]);
        let dispatch = dispatcher.best(matmul(), &here, fallback);
        assert_eq!(dispatch.source, Source::Exact);
        assert_eq!(dispatch.config_index, Some(2));
        assert!(dispatch.warnings.is_empty());
    }

    #[test]
    fn a_compatible_target_is_used_and_said_so() {
        let dispatcher = Dispatcher::from_records(&[
            on(fingerprint("CPU B", 4), 1, 0.1),
            on(fingerprint("CPU B", 1), 2, 1.0),
        ]);
        let dispatch = dispatcher.best(matmul(), &fingerprint("CPU A", 1), fallback);
        // The closer target (only the model differs) wins over the faster, farther one.
        assert_eq!(dispatch.config_index, Some(2));
        assert_eq!(
            dispatch.source,
            Source::CompatibleTarget {
                recorded: fingerprint("CPU B", 1),
                differences: vec!["cpu_model `CPU B` instead of `CPU A`".to_string()],
            }
        );
        assert_eq!(dispatch.warnings.len(), 1);
        assert!(
            dispatch.warnings[0].contains("compatible target"),
            "{:?}",
            dispatch.warnings
        );
    }

    #[test]
    fn an_incompatible_target_falls_back_with_warnings_naming_the_mismatch() {
        let mut other_isa = fingerprint("CPU A", 1);
        other_isa.features.fma = false;
        let dispatcher = Dispatcher::from_records(&[on(other_isa, 1, 0.1)]);
        let dispatch = dispatcher.best(matmul(), &fingerprint("CPU A", 1), fallback);
        assert_eq!(dispatch.source, Source::Fallback);
        assert_eq!(dispatch.config, fallback());
        assert_eq!(dispatch.config_index, None);
        assert!(dispatch.warnings[0].ends_with("using the fallback config"));
        assert!(dispatch.warnings[1].contains("incompatible target (features"));
        assert_eq!(dispatcher.lookup(matmul(), &fingerprint("CPU A", 1)), None);
    }
}
