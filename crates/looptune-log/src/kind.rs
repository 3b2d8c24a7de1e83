//! What a file is, by its content rather than its name: a tuning log, a deploy database,
//! empty, or something else.
//!
//! Writers and readers ask before they trust a path: `tune --log kernels.db` must not append
//! JSON lines to a deploy database, and `run --log kernels.db` must read the database it was
//! given. Extensions mean nothing here; the first bytes decide.

use crate::db::DB_MAGIC;
use std::fmt;

/// What the first bytes of a file say it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// No bytes, or only whitespace: a log nothing was appended to yet.
    Empty,
    /// A deploy database: it starts with [`DB_MAGIC`].
    DeployDb,
    /// A JSON-lines tuning log: the first byte that is not whitespace is `{`.
    TuningLog,
    /// Anything else; `start` shows its first bytes (escaped).
    Other {
        /// The first few bytes, printable.
        start: String,
    },
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKind::Empty => f.write_str("an empty file"),
            FileKind::DeployDb => write!(
                f,
                "a looptune deploy database (it starts with {:?})",
                String::from_utf8_lossy(&DB_MAGIC)
            ),
            FileKind::TuningLog => f.write_str("a JSON-lines tuning log"),
            FileKind::Other { start } => write!(
                f,
                "neither a tuning log nor a deploy database (it starts with {start})"
            ),
        }
    }
}

/// The first `limit` bytes of `bytes`, escaped (`"PK\x03\x04"`), for messages.
pub(crate) fn shown(bytes: &[u8], limit: usize) -> String {
    let start: String = bytes[..bytes.len().min(limit)]
        .iter()
        .flat_map(|&byte| std::ascii::escape_default(byte))
        .map(char::from)
        .collect();
    format!("\"{start}\"")
}

/// What `bytes` (a whole file or its start) are.
pub fn sniff(bytes: &[u8]) -> FileKind {
    if bytes.starts_with(&DB_MAGIC) {
        return FileKind::DeployDb;
    }
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => FileKind::Empty,
        Some(b'{') => FileKind::TuningLog,
        Some(_) => FileKind::Other {
            start: shown(bytes, 16),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_the_name() {
        assert_eq!(sniff(b""), FileKind::Empty);
        assert_eq!(sniff(b" \n"), FileKind::Empty);
        assert_eq!(sniff(b"LTDEPLOY\x01\0\0\0"), FileKind::DeployDb);
        assert_eq!(sniff(b"\n{\"version\":3}"), FileKind::TuningLog);
        let other = sniff(b"PK\x03\x04zip");
        assert_eq!(
            other.to_string(),
            "neither a tuning log nor a deploy database (it starts with \"PK\\x03\\x04zip\")"
        );
    }
}
