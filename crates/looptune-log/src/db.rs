//! The compact deploy database: the best config per task, in bincode 2, read without JSON.
//!
//! Layout: the 8 magic bytes `LTDEPLOY`, the database version as a little-endian `u32`, then
//! the bincode (standard configuration) encoding of the entries. Loading checks all three and
//! refuses trailing bytes, so garbage and truncation are errors that say which check failed.

use crate::dispatch::{choose, fallback_dispatch, Dispatch};
use crate::error::LogError;
use crate::query::best_per_task;
use crate::record::{u128_string, Record, TargetFingerprint};
use crate::writer::io_error;
use looptune_space::{ConfigValues, TaskKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The first bytes of every deploy database.
pub const DB_MAGIC: [u8; 8] = *b"LTDEPLOY";

/// The deploy-database version this crate writes and reads.
pub const DB_VERSION: u32 = 1;

/// The most bytes a database may decode into; a bound on what garbage can make us allocate.
const DECODE_LIMIT: usize = 1 << 28;

/// The best config of one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployEntry {
    /// The canonical workload key.
    pub workload: String,
    /// The target it was tuned on.
    pub target: TargetFingerprint,
    /// The config's index in its space.
    #[serde(with = "u128_string")]
    pub config_index: u128,
    /// The config as knob values.
    pub config: ConfigValues,
    /// Its median seconds per call.
    pub median_s: f64,
    /// Its throughput, when known.
    pub gflops: Option<f64>,
}

/// The best config per (workload, target), for deploy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployDb {
    entries: Vec<DeployEntry>,
}

impl DeployDb {
    /// The best valid record of each task in `records`.
    pub fn from_records(records: &[Record]) -> DeployDb {
        let entries = best_per_task(records)
            .into_iter()
            .filter_map(|record| {
                Some(DeployEntry {
                    workload: record.workload.clone(),
                    target: record.target.clone(),
                    config_index: record.config_index,
                    config: record.config.clone(),
                    median_s: record.median_s()?,
                    gflops: record.gflops,
                })
            })
            .collect();
        DeployDb { entries }
    }

    /// Adds entries after the existing ones (which win a lookup of the same task).
    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = DeployEntry>) {
        self.entries.extend(entries);
    }

    /// One entry per task.
    pub fn entries(&self) -> &[DeployEntry] {
        &self.entries
    }

    /// The encoded database: header and entries.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LogError> {
        let mut bytes = Vec::from(DB_MAGIC);
        bytes.extend_from_slice(&DB_VERSION.to_le_bytes());
        let payload = bincode::serde::encode_to_vec(&self.entries, config()).map_err(|error| {
            LogError::EncodeDatabase {
                entries: self.entries.len(),
                message: error.to_string(),
            }
        })?;
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// Decodes a database; `path` only names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<DeployDb, LogError> {
        let bad = |message: String| LogError::BadDatabase {
            path: path.to_path_buf(),
            message,
        };
        let header = DB_MAGIC.len() + 4;
        let magic = String::from_utf8_lossy(&DB_MAGIC);
        if !bytes.starts_with(&DB_MAGIC) {
            let found = match crate::kind::sniff(bytes) {
                crate::FileKind::Empty => "it is empty".to_string(),
                crate::FileKind::TuningLog => format!(
                    "it is a JSON-lines tuning log, not a database (it starts with {});                      `looptune export-db` makes a database from it",
                    crate::kind::shown(bytes, 8)
                ),
                _ => format!("it starts with {}", crate::kind::shown(bytes, 8)),
            };
            return Err(bad(format!("{found}, where the magic {magic:?} should be")));
        }
        if bytes.len() < header {
            return Err(bad(format!(
                "it ends after {} bytes, inside its {header}-byte header (truncated)",
                bytes.len()
            )));
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[DB_MAGIC.len()..header]);
        let version = u32::from_le_bytes(version);
        if version != DB_VERSION {
            return Err(bad(format!(
                "database version {version} is not supported (this looptune reads version \
                 {DB_VERSION}); export it again from the tuning log"
            )));
        }
        let payload = &bytes[header..];
        let (entries, read): (Vec<DeployEntry>, usize) =
            bincode::serde::decode_from_slice(payload, config()).map_err(|error| {
                bad(format!(
                    "its entries do not decode (truncated or damaged): {error}"
                ))
            })?;
        if read != payload.len() {
            return Err(bad(format!(
                "{} bytes follow the last entry",
                payload.len() - read
            )));
        }
        Ok(DeployDb { entries })
    }

    /// Writes the database to `path` (replacing what is there).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), LogError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| io_error("write", path, source))
    }

    /// Reads the database at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<DeployDb, LogError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| io_error("read", path, source))?;
        DeployDb::from_bytes(&bytes, path)
    }

    /// The tuned config for the task `key` (a [`TaskKey`], or the `&Workload` it is made from)
    /// on `target`, exact or compatible (said so), or `None`.
    pub fn lookup(&self, key: impl Into<TaskKey>, target: &TargetFingerprint) -> Option<Dispatch> {
        choose(&self.entries, &key.into(), target).ok()
    }

    /// The tuned config for the task `key` on `target`, or `fallback()` with a warning saying
    /// why.
    pub fn best(
        &self,
        key: impl Into<TaskKey>,
        target: &TargetFingerprint,
        fallback: impl FnOnce() -> ConfigValues,
    ) -> Dispatch {
        choose(&self.entries, &key.into(), target)
            .unwrap_or_else(|warnings| fallback_dispatch(warnings, fallback()))
    }
}

/// Writes the best config per task of `records` to `path` as a deploy database, and returns
/// it; for `looptune export-db`.
pub fn export_db(records: &[Record], path: impl AsRef<Path>) -> Result<DeployDb, LogError> {
    let db = DeployDb::from_records(records);
    db.save(path)?;
    Ok(db)
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::fingerprint;
    use crate::writer::tests::record;
    use looptune_ir::Workload;
    use looptune_space::KnobValue;

    fn db() -> DeployDb {
        let mut tuned = record(u128::MAX - 1, 1.0);
        tuned.config = vec![
            ("tile_i".to_string(), KnobValue::Split(vec![2, 2])),
            ("order".to_string(), KnobValue::Reorder(vec![1, 0])),
            (
                "ann".to_string(),
                KnobValue::Annotate(vec!["vectorize".to_string()]),
            ),
            ("pack".to_string(), KnobValue::Choice(1)),
        ];
        DeployDb::from_records(&[record(1, 2.0), tuned])
    }

    #[test]
    fn bytes_round_trip() {
        let db = db();
        assert_eq!(db.entries().len(), 1);
        assert_eq!(db.entries()[0].config_index, u128::MAX - 1);
        let back = DeployDb::from_bytes(&db.to_bytes().expect("encodes"), Path::new("d.db"))
            .expect("decodes");
        assert_eq!(back, db);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = db().to_bytes().expect("encodes");
        for length in 0..bytes.len() {
            let error =
                DeployDb::from_bytes(&bytes[..length], Path::new("d.db")).expect_err("truncated");
            assert!(
                error.to_string().starts_with("`d.db` is not a usable"),
                "{error}"
            );
        }
    }

    #[test]
    fn wrong_magic_version_and_trailing_bytes_are_named() {
        let message = |bytes: &[u8]| {
            DeployDb::from_bytes(bytes, Path::new("d.db"))
                .expect_err("refused")
                .to_string()
        };
        let log = message(b"{\"version\":1}");
        assert!(log.contains("it is a JSON-lines tuning log"), "{log}");
        let other = message(b"PK\x03\x04 zip");
        assert!(
            other.contains("it starts with \"PK\\x03\\x04 zip\", where the magic"),
            "{other}"
        );
        let short = message(b"LTDEPLOY\x01");
        assert!(short.contains("it ends after 9 bytes"), "{short}");
        assert!(!short.contains("starts with"), "{short}");
        let mut newer = db().to_bytes().expect("encodes");
        newer[8] = 2;
        assert!(message(&newer).contains("database version 2 is not supported"));
        let mut longer = db().to_bytes().expect("encodes");
        longer.push(0);
        assert!(message(&longer).contains("1 bytes follow the last entry"));
    }

    #[test]
    fn the_database_dispatches_like_the_log() {
        let db = db();
        let matmul: Workload = "matmul:m=4,n=4,k=4".parse().expect("parses");
        let exact = db.best(matmul, &fingerprint("Test CPU", 1), Vec::new);
        assert_eq!(exact.config_index, Some(u128::MAX - 1));
        let other = db
            .lookup(matmul, &fingerprint("Test CPU", 8))
            .expect("compatible");
        assert!(matches!(
            other.source,
            crate::Source::CompatibleTarget { .. }
        ));
    }
}
