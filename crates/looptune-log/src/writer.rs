//! Appending records: one JSON object per line, a whole batch in one write, synced before
//! returning.
//!
//! Design invariant 4: the log is append-only and flushed per batch, so killing a tuning run
//! loses at most the batch in flight. A batch is serialized into one buffer and written with a
//! single `write_all`, then `sync_data`; a kill during the write leaves at most one partial
//! line at the end of the file, which the reader skips with a warning. If a log does not end
//! in a newline when it is opened (such a torn line), the writer starts on a fresh line so the
//! torn bytes never glue onto a new record; the reader then names that line as corrupt.

use crate::error::LogError;
use crate::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How much of a file is read to tell what it is.
const SNIFF_BYTES: u64 = 4096;

/// Appends batches of records to a tuning log.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    /// Whether the next write must first end a torn last line.
    needs_newline: bool,
}

impl LogWriter {
    /// Opens `path` for appending, creating it if it does not exist. Nothing already in the file
    /// is changed.
    ///
    /// The writer holds an exclusive advisory lock on the file (`flock`) until it is dropped, so
    /// a second writer, in this process or another, is refused with [`LogError::Locked`] rather
    /// than measuring the same configs again into the same log. A file that is not a tuning log
    /// by content (a deploy database, a file none of whose lines is a record) is refused with
    /// [`LogError::NotALog`]: appending JSON lines to it would break it.
    pub fn open(path: impl AsRef<Path>) -> Result<LogWriter, LogError> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|source| io_error("open", &path, source))?;
        lock(&file, &path)?;
        // A log by its first bytes is appended to as it is (its damaged lines are the reader's
        // business); anything else must be a log whose first line is damaged to be one.
        let mut start = Vec::new();
        (&mut file)
            .take(SNIFF_BYTES)
            .read_to_end(&mut start)
            .map_err(|source| io_error("read", &path, source))?;
        if !matches!(
            crate::kind::sniff(&start),
            crate::FileKind::TuningLog | crate::FileKind::Empty
        ) {
            let mut bytes = start;
            file.read_to_end(&mut bytes)
                .map_err(|source| io_error("read", &path, source))?;
            crate::reader::parse_log(&bytes, &path)?;
        }
        let needs_newline =
            ends_without_newline(&mut file).map_err(|source| io_error("read", &path, source))?;
        Ok(LogWriter {
            file,
            path,
            needs_newline,
        })
    }

    /// Creates `path` empty (truncating a file that is there), for a new log such as the output
    /// of `merge`; then appends like [`LogWriter::open`].
    pub fn create(path: impl AsRef<Path>) -> Result<LogWriter, LogError> {
        let path = path.as_ref().to_path_buf();
        // Truncate only under the lock: a log another process appends to is never emptied.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|source| io_error("create", &path, source))?;
        lock(&file, &path)?;
        file.set_len(0)
            .map_err(|source| io_error("create", &path, source))?;
        Ok(LogWriter {
            file,
            path,
            needs_newline: false,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records`, one line each, in one write, and syncs the file to disk before
    /// returning. A record that cannot be written (a non-finite time) fails the whole batch
    /// before anything is written.
    pub fn append_batch(&mut self, records: &[Record]) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::with_capacity(records.len() * 512);
        if self.needs_newline {
            buffer.push(b'\n');
        }
        for record in records {
            if let Some((field, value)) = record.non_finite_field() {
                return Err(LogError::NonFinite {
                    workload: record.workload.clone(),
                    config_index: record.config_index,
                    field,
                    value,
                });
            }
            serde_json::to_writer(&mut buffer, record).map_err(|source| LogError::Serialize {
                workload: record.workload.clone(),
                config_index: record.config_index,
                source,
            })?;
            buffer.push(b'\n');
        }
        self.file
            .write_all(&buffer)
            .map_err(|source| io_error("append to", &self.path, source))?;
        self.needs_newline = false;
        self.file
            .sync_data()
            .map_err(|source| io_error("sync", &self.path, source))
    }
}

/// Takes the exclusive advisory lock of `file`, or names the log another writer holds.
fn lock(file: &File, path: &Path) -> Result<(), LogError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io_error("lock", path, source)),
    }
}

/// Whether a non-empty file's last byte is something other than a newline.
fn ends_without_newline(file: &mut File) -> std::io::Result<bool> {
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(length - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

pub(crate) fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::tests::fingerprint;
    use crate::record::{FORMAT_VERSION, LOOPTUNE_VERSION};
    use looptune_runtime::measure::Costs;

    pub(crate) fn record(index: u128, median_s: f64) -> Record {
        Record {
            version: FORMAT_VERSION,
            looptune_version: LOOPTUNE_VERSION.to_string(),
            tuner: "random".to_string(),
            workload: "matmul:m=4,n=4,k=4,transpose_b=false".to_string(),
            target: fingerprint("Test CPU", 1),
            config_index: index,
            config: Vec::new(),
            costs: Some(Costs {
                median_s,
                min_s: median_s,
                number: 1,
                repeat: 1,
                all_s: vec![median_s],
                short: false,
            }),
            gflops: Some(1.0),
            error: None,
            started_unix_s: 1.0,
            ended_unix_s: 2.0,
        }
    }

    #[test]
    fn each_batch_appends_whole_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.jsonl");
        LogWriter::open(&path)
            .and_then(|mut writer| writer.append_batch(&[record(1, 1.0), record(2, 2.0)]))
            .expect("first batch");
        LogWriter::open(&path)
            .and_then(|mut writer| writer.append_batch(&[record(3, 3.0)]))
            .expect("second batch");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"version\":1,\"work").expect("writes");
        let mut writer = LogWriter::open(&path).expect("opens");
        writer.append_batch(&[record(1, 1.0)]).expect("appends");
        let text = std::fs::read_to_string(&path).expect("reads");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "{\"version\":1,\"work");
        assert!(lines[1].starts_with("{\"version\":1,"));
    }

    #[test]
    fn a_non_finite_time_fails_the_batch_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.jsonl");
        let mut writer = LogWriter::open(&path).expect("opens");
        let error = writer
            .append_batch(&[record(1, 1.0), record(2, f64::NAN)])
            .expect_err("refused");
        assert!(
            error.to_string().contains("config 2") && error.to_string().contains("costs.median_s"),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("reads"), "");
    }
}
