//! Merging logs: the records of several logs (the shards of a model tuned on many machines, or
//! runs of one machine) as one log that answers every query as the union of its inputs does.
//!
//! What a merge keeps and drops:
//! - **Every distinct record.** Only exact duplicates are dropped (the same line in two inputs,
//!   the same log given twice, an earlier merge merged again); two measurements of one config
//!   that differ in anything, even a timestamp, are both kept. So the best record of every
//!   (task, target) of the merge is the best of the inputs, and every record a resumed run would
//!   skip is still there.
//! - **Targets stay apart.** Nothing here compares or rewrites targets: a record of another
//!   machine, thread count or backend stays a record of that target, and queries and the
//!   [`crate::Dispatcher`] pick by target as before.
//! - **Damaged lines are named and skipped**, by file and line number, as the reader reports them
//!   ([`crate::LogWarning`]); the readable records around them are kept.
//!
//! The merged records come out in one canonical order, whatever the order of the inputs: grouped
//! by task (workload key, then target), each task's records in the order they were measured
//! (start time, then end time), exact ties broken by the record's text. The order of the inputs
//! therefore changes nothing (not even which of two equally fast records is the best, which
//! queries decide by log order), and merging a merged log again gives the same bytes: a merge
//! is idempotent. Within a task the records keep the order of a tuning run, which is what a
//! tuning curve plots.
//!
//! [`merge_into`] writes the merge: it refuses to replace one of its inputs (a merge that died
//! half-way would lose the input) and writes a temporary file next to the output, synced, then
//! renamed over it, so that a reader sees either the old file or the whole new one.

use crate::error::LogError;
use crate::reader::{read_logs, LogWarning};
use crate::record::Record;
use crate::writer::{io_error, LogWriter};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The records of several logs merged, and the warnings met reading them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// Every distinct record, in the canonical order of the module doc.
    pub records: Vec<Record>,
    /// Identical records dropped.
    pub duplicates: usize,
    /// Lines of the inputs that were skipped (or kept with a doubt), by file and line.
    pub warnings: Vec<LogWarning>,
}

impl Merged {
    /// How many distinct (workload, target) tasks the records belong to.
    pub fn tasks(&self) -> usize {
        let mut tasks = HashSet::new();
        for record in &self.records {
            tasks.insert((&record.workload, &record.target));
        }
        tasks.len()
    }
}

/// Merges records: drops exact duplicates and puts the rest in the canonical order (see the
/// module doc). Returns the records and how many duplicates were dropped.
pub fn merge_records(records: impl IntoIterator<Item = Record>) -> (Vec<Record>, usize) {
    let mut seen = HashSet::new();
    let mut kept: Vec<Keyed> = Vec::new();
    let mut duplicates = 0;
    for record in records {
        let keyed = Keyed::new(record);
        if seen.insert(keyed.text.clone()) {
            kept.push(keyed);
        } else {
            duplicates += 1;
        }
    }
    kept.sort_by(Keyed::canonical_order);
    (
        kept.into_iter().map(|keyed| keyed.record).collect(),
        duplicates,
    )
}

/// Reads `logs` and merges their records ([`merge_records`]), keeping the readers' warnings.
/// A log that cannot be read at all (missing, unreadable, of a newer format version) is an
/// error naming it.
pub fn merge<P: AsRef<Path>>(logs: &[P]) -> Result<Merged, LogError> {
    let contents = read_logs(logs)?;
    let (records, duplicates) = merge_records(contents.records);
    Ok(Merged {
        records,
        duplicates,
        warnings: contents.warnings,
    })
}

/// What [`merge_into`] may do to an output file that exists already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Existing {
    /// Refuse to write over it ([`LogError::OutputExists`]).
    #[default]
    Refuse,
    /// Replace it (atomically). One of the inputs is never replaced, whatever this says.
    Replace,
}

/// Merges `logs` ([`merge`]) and writes the result to `out` atomically: a temporary file in
/// `out`'s directory, synced, then renamed over `out`. `out` may not be one of `logs` (by any
/// path: a hard link or a symbolic link to an input is that input), and may exist only when
/// `existing` is [`Existing::Replace`]. Nothing is written when anything fails.
pub fn merge_into<P: AsRef<Path>>(
    logs: &[P],
    out: &Path,
    existing: Existing,
) -> Result<Merged, LogError> {
    for log in logs {
        if same_file(log.as_ref(), out) {
            return Err(LogError::OutputIsInput {
                out: out.to_path_buf(),
                input: log.as_ref().to_path_buf(),
            });
        }
    }
    if existing == Existing::Refuse && out.symlink_metadata().is_ok() {
        return Err(LogError::OutputExists {
            out: out.to_path_buf(),
        });
    }
    let merged = merge(logs)?;
    write_atomically(out, &merged.records)?;
    Ok(merged)
}

/// Writes `records` as a log at `path` through a synced temporary file renamed into place.
fn write_atomically(path: &Path, records: &[Record]) -> Result<(), LogError> {
    let staging = staging_path(path);
    let written = LogWriter::create(&staging).and_then(|mut writer| writer.append_batch(records));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(error);
    }
    if let Err(source) = std::fs::rename(&staging, path) {
        let _ = std::fs::remove_file(&staging);
        return Err(io_error("rename the merged log onto", path, source));
    }
    // The rename is durable once the directory is synced; a file system that cannot sync a
    // directory (some network file systems) still has the whole file under one of the names.
    if let Some(directory) = parent(path) {
        if let Ok(handle) = std::fs::File::open(directory) {
            let _ = handle.sync_all();
        }
    }
    Ok(())
}

/// `DIR/.NAME.PID.merging`: hidden, next to the output (a rename does not cross file systems),
/// and distinct per process, so that two merges into one directory do not share it.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "merged".into(), |name| name.to_string_lossy());
    let staging = format!(".{name}.{}.merging", std::process::id());
    match parent(path) {
        Some(directory) => directory.join(staging),
        None => PathBuf::from(staging),
    }
}

/// The directory of `path`, `None` for a bare file name.
fn parent(path: &Path) -> Option<&Path> {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
}

/// Whether two paths name one existing file (the same inode on Unix, after following links).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(first), Ok(second)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        first.dev() == second.dev() && first.ino() == second.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (first, second);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
    }
}

/// A record with the text that identifies it and the serialized target it is sorted by.
struct Keyed {
    record: Record,
    /// The record as one JSON line: a faithful identity (floats print exactly), hashable.
    text: String,
    target: String,
}

impl Keyed {
    fn new(record: Record) -> Keyed {
        let text = serde_json::to_string(&record).unwrap_or_else(|_| format!("{record:?}"));
        let target = serde_json::to_string(&record.target)
            .unwrap_or_else(|_| format!("{:?}", record.target));
        Keyed {
            record,
            text,
            target,
        }
    }

    fn canonical_order(a: &Keyed, b: &Keyed) -> Ordering {
        a.record
            .workload
            .cmp(&b.record.workload)
            .then_with(|| a.target.cmp(&b.target))
            .then_with(|| a.record.started_unix_s.total_cmp(&b.record.started_unix_s))
            .then_with(|| a.record.ended_unix_s.total_cmp(&b.record.ended_unix_s))
            .then_with(|| a.text.cmp(&b.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::best_per_task;
    use crate::record::tests::fingerprint;
    use crate::writer::tests::record;

    /// Records of two tasks on two targets, measured at different times.
    fn shard_records() -> (Vec<Record>, Vec<Record>) {
        let mut first = Vec::new();
        let mut second = Vec::new();
        for index in 0..6u128 {
            let mut here = record(index, 1.0 + (index % 4) as f64);
            here.started_unix_s = 10.0 + index as f64;
            let mut other = here.clone();
            other.workload = "matmul:m=8,n=8,k=8,transpose_b=false".to_string();
            other.target = fingerprint("Other CPU", 2);
            other.costs.as_mut().expect("costs").median_s = 0.5 + index as f64;
            if index % 2 == 0 {
                first.push(here);
                second.push(other);
            } else {
                second.push(here);
                first.push(other);
            }
        }
        (first, second)
    }

    fn best_of(records: &[Record]) -> Vec<(String, String, u128)> {
        let mut best: Vec<(String, String, u128)> = best_per_task(records)
            .into_iter()
            .map(|record| {
                (
                    record.workload.clone(),
                    record.target.cpu_model.clone(),
                    record.config_index,
                )
            })
            .collect();
        best.sort();
        best
    }

    #[test]
    fn merging_drops_only_identical_records() {
        let mut later = record(1, 1.0);
        later.started_unix_s += 10.0;
        let (kept, duplicates) = merge_records(vec![
            later.clone(),
            record(1, 1.0),
            record(2, 1.0),
            record(1, 1.0),
        ]);
        assert_eq!(duplicates, 1);
        assert_eq!(kept.len(), 3);
        assert!(kept.contains(&later) && kept.contains(&record(2, 1.0)));
    }

    #[test]
    fn the_order_of_the_inputs_changes_nothing_and_a_second_merge_neither() {
        let (first, second) = shard_records();
        let one_run: Vec<Record> = first.iter().chain(&second).cloned().collect();
        let (forward, _) = merge_records(one_run.clone());
        let (backward, _) = merge_records(second.iter().chain(&first).rev().cloned());
        assert_eq!(forward, backward);
        let (again, duplicates) = merge_records(forward.iter().chain(&backward).cloned());
        assert_eq!(
            (again.clone(), duplicates),
            (forward.clone(), forward.len())
        );
        assert_eq!(best_of(&forward), best_of(&one_run));
        // Two tasks on two targets: each keeps its own best.
        assert_eq!(
            best_of(&forward),
            vec![
                (
                    "matmul:m=4,n=4,k=4,transpose_b=false".to_string(),
                    "Test CPU".to_string(),
                    0
                ),
                (
                    "matmul:m=8,n=8,k=8,transpose_b=false".to_string(),
                    "Other CPU".to_string(),
                    0
                ),
            ]
        );
    }

    #[test]
    fn equally_fast_records_give_one_best_whatever_the_order() {
        let mut early = record(1, 1.0);
        early.started_unix_s = 1.0;
        let mut late = record(2, 1.0);
        late.started_unix_s = 5.0;
        let (a, _) = merge_records(vec![late.clone(), early.clone()]);
        let (b, _) = merge_records(vec![early, late]);
        assert_eq!(best_of(&a), best_of(&b));
        assert_eq!(
            best_of(&a)[0].2,
            1,
            "the earlier measurement is the best of a tie"
        );
    }

    #[test]
    fn a_bare_file_name_stages_in_the_current_directory() {
        let staging = staging_path(Path::new("merged.tunelog"));
        assert_eq!(staging.parent(), Some(Path::new("")));
        assert!(staging.to_string_lossy().starts_with(".merged.tunelog."));
        let nested = staging_path(Path::new("out/merged.tunelog"));
        assert_eq!(nested.parent(), Some(Path::new("out")));
    }
}
