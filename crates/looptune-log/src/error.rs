//! The one error type of this crate: what stops a log or a deploy database from being read or
//! written. Damage that leaves the rest of a log readable is a [`crate::LogWarning`] instead.

use std::path::PathBuf;
use thiserror::Error;

/// Why a tuning log or deploy database could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file could not be opened, read, written or synced.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was being done (`open`, `read`, `append to`, `sync`, `write`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a tuning log (a deploy database, or something else), so it is neither
    /// read as one nor appended to.
    #[error("`{path}` is {found}, not a tuning log; {hint}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What it is, by content.
        found: crate::FileKind,
        /// What to do about it.
        hint: &'static str,
    },
    /// Another process holds the log's lock: it is tuning into the same log.
    #[error(
        "`{path}` is locked by another looptune process writing to it; wait for it to finish,          or tune into another log and `looptune merge` them"
    )]
    Locked {
        /// The log.
        path: PathBuf,
    },
    /// A record's format version is newer than this reader, or older than any it can upgrade.
    #[error(
        "{path}:{line}: record format version {found} is not supported (this looptune reads \
         versions 1 to {supported}); {hint}"
    )]
    UnsupportedVersion {
        /// The log.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// The version the record says it is in.
        found: u64,
        /// The newest version this reader knows.
        supported: u32,
        /// What to do about it.
        hint: &'static str,
    },
    /// A record could not be written because it holds a number JSON cannot represent.
    #[error(
        "record of config {config_index} for `{workload}` has non-finite `{field}` ({value}); \
         JSON cannot hold it"
    )]
    NonFinite {
        /// The workload key of the refused record.
        workload: String,
        /// Its config index.
        config_index: u128,
        /// The field.
        field: &'static str,
        /// The value.
        value: f64,
    },
    /// A record could not be serialized.
    #[error("cannot serialize the record of config {config_index} for `{workload}`: {source}")]
    Serialize {
        /// The workload key of the refused record.
        workload: String,
        /// Its config index.
        config_index: u128,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A merge was asked to write over one of the logs it reads.
    #[error(
        "the merge output `{out}` is the input `{input}`; write the merge to a new file (a merge \
         cut short would lose the input)"
    )]
    OutputIsInput {
        /// The output asked for.
        out: PathBuf,
        /// The input it is (the same file, by this or another path).
        input: PathBuf,
    },
    /// A merge was asked to write to a file that exists, without leave to replace it.
    #[error("the merge output `{out}` exists; name a new file, or allow replacing it")]
    OutputExists {
        /// The output asked for.
        out: PathBuf,
    },
    /// A deploy database could not be encoded.
    #[error("cannot encode a deploy database of {entries} entries: {message}")]
    EncodeDatabase {
        /// How many entries it had.
        entries: usize,
        /// bincode's error.
        message: String,
    },
    /// A file is not a deploy database, or one of a version this reader does not know, or it is
    /// damaged (truncated, trailing bytes, undecodable).
    #[error("`{path}` is not a usable looptune deploy database: {message}")]
    BadDatabase {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the offending value.
        message: String,
    },
}
