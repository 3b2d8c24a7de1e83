//! The tuning log: records of measured configs, queries over them, and deploy-time dispatch.
//!
//! A tuning run appends one [`Record`] per measured candidate to a JSON-lines log through a
//! [`LogWriter`] (append-only, one write and one sync per batch). The log is the only persistent
//! state of a tuning run: resuming, picking the best config and deploying all read it back.
//!
//! Why it is shaped this way:
//! - **Self-describing records** (design invariant 3): every line carries its workload key,
//!   target fingerprint, knob values, costs or error, timestamps and versions, so logs from
//!   different runs and machines can be concatenated and merged.
//! - **Typed types are borrowed, not mirrored.** `Target`, `IsaFeatures`, `Costs` and
//!   `MeasureError` come from `looptune-jit`, which is on the deploy path anyway and pulls in no
//!   tuning-only dependency; mirroring them would only create a second definition to keep in
//!   sync. Knob values come from `looptune-space`'s `value` module, workloads from `looptune-ir`.
//! - **Nothing in a log is lost** to damage elsewhere in it: the reader keeps every readable
//!   record and reports each unreadable line by number as a warning, not an error. Only a newer
//!   format version is an error, because guessing at its meaning could deploy a wrong config.
//! - **Deploy never guesses silently**: the [`Dispatcher`] says whether a config came from the
//!   exact target, a compatible one (same architecture and ISA features), or the fallback.
//! - The **deploy database** ([`DeployDb`]) is bincode 2 with a magic and version header; loading
//!   it parses no JSON (the crate still links serde_json for the log itself).
//!
//! The command-line subcommands are one-liners over this API:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use looptune_log::{export_db, merge_into, read_log, best_per_task, DeployDb, Existing, LogWriter};
//! # let dir = tempfile::tempdir()?;
//! # let (log, out, db) = (dir.path().join("a.jsonl"), dir.path().join("m.jsonl"), dir.path().join("b.db"));
//! # LogWriter::open(&log)?.append_batch(&[])?;
//! // looptune best --log FILE
//! let contents = read_log(&log)?;
//! for warning in &contents.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! for record in best_per_task(&contents.records) {
//!     println!("{} {:?} GFLOP/s", record.workload, record.gflops);
//! }
//! // looptune merge --out FILE LOG... (atomically; never over one of the inputs)
//! let merged = merge_into(&[&log], &out, Existing::Refuse)?;
//! // looptune export-db --out DB LOG...
//! export_db(&merged.records, &db)?;
//! assert!(DeployDb::load(&db)?.entries().is_empty());
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod db;
mod dispatch;
mod error;
mod kind;
mod merge;
mod query;
mod reader;
mod record;
mod writer;

pub use db::{export_db, DeployDb, DeployEntry, DB_MAGIC, DB_VERSION};
pub use dispatch::{Dispatch, Dispatcher, Source};
pub use error::LogError;
pub use kind::{sniff, FileKind};
pub use looptune_space::TaskKey;
pub use merge::{merge, merge_into, merge_records, Existing, Merged};
pub use query::{
    best, best_per_task, best_per_task_where, measured, per_config, task_records, top_k, Measured,
};
pub use reader::AnyContents;
pub use reader::{
    parse_any, parse_log, read_any, read_log, read_log_to_resume, read_logs, upgrade, LogContents,
    LogWarning, WarningKind, REQUIRED_FIELDS,
};
pub use record::{
    unix_seconds, Record, RecordContext, TargetFingerprint, FORMAT_VERSION, LOOPTUNE_VERSION,
};
pub use writer::LogWriter;
