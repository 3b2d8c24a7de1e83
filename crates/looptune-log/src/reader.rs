//! Reading a log back: every readable record, and a warning for each line that is not one.
//!
//! Design invariant 3: a torn last line (no trailing newline, not parsable: what a kill during
//! a write leaves) is skipped with a warning; any other corrupt line is named by path and line
//! number and the records around it are kept; a record in a newer format version is an error
//! naming that version and the newest this reader knows. Records in older versions go through
//! [`upgrade`] before they are deserialized.

use crate::db::DeployDb;
use crate::error::LogError;
use crate::kind::{sniff, FileKind};
use crate::record::{Record, FORMAT_VERSION};
use crate::writer::io_error;
use looptune_space::CUSTOM_KEY_PREFIX;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The fields every record must have, in [`Record`]'s order. `costs`, `gflops` and `error`
/// must be present but may be `null`.
pub const REQUIRED_FIELDS: [&str; 12] = [
    "version",
    "looptune_version",
    "tuner",
    "workload",
    "target",
    "config_index",
    "config",
    "costs",
    "gflops",
    "error",
    "started_unix_s",
    "ended_unix_s",
];

/// What a log held: its readable records in file order, and what was wrong with the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogContents {
    /// Every record that could be read, in file order.
    pub records: Vec<Record>,
    /// One entry per line that was skipped or questionable.
    pub warnings: Vec<LogWarning>,
}

/// A line of a log that was skipped (or kept with a doubt), and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LogWarning {
    /// The log.
    pub path: PathBuf,
    /// The line, counted from 1.
    pub line: usize,
    /// What was wrong.
    pub kind: WarningKind,
}

/// What was wrong with a line.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WarningKind {
    /// The last line has no newline and does not parse: a write was cut short (a killed run).
    /// It was skipped.
    TornLastLine {
        /// The bytes of the partial line.
        bytes: usize,
    },
    /// The line is not a JSON object, or not a record. It was skipped.
    Corrupt {
        /// What the parser said.
        message: String,
    },
    /// The line is a JSON object without some of a record's fields. It was skipped.
    MissingFields {
        /// The fields that are absent.
        fields: Vec<String>,
    },
    /// The record's workload key does not parse as a workload this looptune knows. The record
    /// was kept as written.
    UnknownWorkload {
        /// The key.
        key: String,
        /// Why it does not parse.
        message: String,
    },
}

impl fmt::Display for LogWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        match &self.kind {
            WarningKind::TornLastLine { bytes } => write!(
                f,
                "skipped a torn last line ({bytes} bytes without a newline; an interrupted write)"
            ),
            WarningKind::Corrupt { message } => write!(f, "skipped a corrupt line: {message}"),
            WarningKind::MissingFields { fields } => write!(
                f,
                "skipped a record without field(s) {}",
                fields
                    .iter()
                    .map(|field| format!("`{field}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            WarningKind::UnknownWorkload { key, message } => {
                write!(f, "kept a record of unknown workload `{key}`: {message}")
            }
        }
    }
}

/// Reads the log at `path`. A missing file is an error; damage inside it is reported in
/// [`LogContents::warnings`]; a record of a newer format version is an error.
pub fn read_log(path: impl AsRef<Path>) -> Result<LogContents, LogError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| io_error("read", path, source))?;
    parse_log(&bytes, path)
}

/// Reads the log a tuning run appends to and resumes from: [`read_log`], except that a file
/// that does not exist yet holds nothing (the run will create it).
pub fn read_log_to_resume(path: impl AsRef<Path>) -> Result<LogContents, LogError> {
    let path = path.as_ref();
    match std::fs::read(path) {
        Ok(bytes) => parse_log(&bytes, path),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(LogContents::default()),
        Err(source) => Err(io_error("read", path, source)),
    }
}

/// Reads the logs at `paths` in order into one [`LogContents`] (records concatenated, warnings
/// naming their own file).
pub fn read_logs<P: AsRef<Path>>(paths: &[P]) -> Result<LogContents, LogError> {
    let mut contents = LogContents::default();
    for path in paths {
        let mut one = read_log(path)?;
        contents.records.append(&mut one.records);
        contents.warnings.append(&mut one.warnings);
    }
    Ok(contents)
}

/// What a file held, by its content: a tuning log's records or a deploy database.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyContents {
    /// A JSON-lines tuning log (or an empty file).
    Log(LogContents),
    /// A deploy database.
    Db(DeployDb),
}

/// Reads `path` as whatever it is by content (see [`crate::sniff`]): a tuning log or a deploy
/// database, for the readers that accept both (the dispatcher, `run`, `show`).
pub fn read_any(path: impl AsRef<Path>) -> Result<AnyContents, LogError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| io_error("read", path, source))?;
    parse_any(&bytes, path)
}

/// [`read_any`] of bytes already read; `path` only names the file in warnings and errors.
pub fn parse_any(bytes: &[u8], path: &Path) -> Result<AnyContents, LogError> {
    match sniff(bytes) {
        FileKind::DeployDb => Ok(AnyContents::Db(DeployDb::from_bytes(bytes, path)?)),
        _ => Ok(AnyContents::Log(parse_log(bytes, path)?)),
    }
}

/// Parses the bytes of a log; `path` only names it in warnings and errors. A deploy database,
/// or a file in which no line is a record and that does not start like a log (a binary, a CSV),
/// is [`LogError::NotALog`]: reading it as a log with a warning per line would hide the mistake.
pub fn parse_log(bytes: &[u8], path: &Path) -> Result<LogContents, LogError> {
    let kind = sniff(bytes);
    if kind == FileKind::DeployDb {
        return Err(LogError::NotALog {
            path: path.to_path_buf(),
            found: kind,
            hint: "a deploy database is read by `run --log`, `show --log` and the deploy API",
        });
    }
    let contents = parse_lines(bytes, path)?;
    if let FileKind::Other { .. } = kind {
        if contents.records.is_empty() {
            return Err(LogError::NotALog {
                path: path.to_path_buf(),
                found: kind,
                hint: "no line of it is a record",
            });
        }
    }
    Ok(contents)
}

/// Parses the lines of a log, whatever its first bytes.
fn parse_lines(bytes: &[u8], path: &Path) -> Result<LogContents, LogError> {
    let mut contents = LogContents::default();
    let ends_with_newline = bytes.last().is_none_or(|&last| last == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|&byte| byte == b'\n').collect();
    // `split` yields an empty piece after a final newline; it is not a line.
    let line_count = if ends_with_newline {
        lines.len() - 1
    } else {
        lines.len()
    };
    for (index, line) in lines.iter().take(line_count).enumerate() {
        let number = index + 1;
        let is_unterminated_last = !ends_with_newline && number == line_count;
        let warn = |kind| LogWarning {
            path: path.to_path_buf(),
            line: number,
            kind,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(line, path, number)? {
            Ok(record) => {
                let mut record = record;
                match record.parse_workload() {
                    // Keys are compared as text, so spell every one canonically.
                    Ok(workload) => record.workload = workload.to_string(),
                    // A user-defined task's key is its own spelling; nothing to warn about.
                    Err(_) if record.workload.starts_with(CUSTOM_KEY_PREFIX) => {}
                    Err(error) => contents.warnings.push(warn(WarningKind::UnknownWorkload {
                        key: record.workload.clone(),
                        message: error.to_string(),
                    })),
                }
                contents.records.push(record);
            }
            Err(_) if is_unterminated_last => contents
                .warnings
                .push(warn(WarningKind::TornLastLine { bytes: line.len() })),
            Err(kind) => contents.warnings.push(warn(kind)),
        }
    }
    Ok(contents)
}

/// One line: a record, a warning, or (for a newer version) an error that stops the read.
fn parse_line(
    line: &[u8],
    path: &Path,
    number: usize,
) -> Result<Result<Record, WarningKind>, LogError> {
    let corrupt = |message: String| Ok(Err(WarningKind::Corrupt { message }));
    let value: Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(error) => return corrupt(format!("not JSON ({error})")),
    };
    let Value::Object(object) = value else {
        return corrupt(format!("a JSON {} rather than an object", kind_of(&value)));
    };
    let version = match object.get("version") {
        None => None,
        Some(Value::Number(number)) if number.as_u64().is_some() => number.as_u64(),
        Some(other) => return corrupt(format!("`version` is {other}, not a non-negative integer")),
    };
    let object = match version {
        Some(found) => match upgrade(object, found) {
            Ok(object) => object,
            Err(hint) => {
                return Err(LogError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    line: number,
                    found,
                    supported: FORMAT_VERSION,
                    hint,
                })
            }
        },
        None => object,
    };
    let missing: Vec<String> = REQUIRED_FIELDS
        .iter()
        .filter(|field| !object.contains_key(**field))
        .map(|field| field.to_string())
        .collect();
    if !missing.is_empty() {
        return Ok(Err(WarningKind::MissingFields { fields: missing }));
    }
    match serde_json::from_value::<Record>(Value::Object(object)) {
        Ok(record) => Ok(Ok(record)),
        Err(error) => corrupt(format!("not a record ({error})")),
    }
}

/// Brings a record written in format `version` up to [`FORMAT_VERSION`], or says why it
/// cannot. Each future version adds one step here (`1 => rename or default a field`), so an
/// old log stays readable for as long as its steps are kept.
pub fn upgrade(
    object: Map<String, Value>,
    version: u64,
) -> Result<Map<String, Value>, &'static str> {
    match version {
        // The current version: nothing to do.
        1 => Ok(object),
        0 => Err("version 0 never existed; the line was not written by looptune"),
        _ => Err("it was written by a newer looptune; read it with that version or newer"),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::tests::record;

    fn line(record: &Record) -> String {
        serde_json::to_string(record).expect("serializes") + "\n"
    }

    fn parse(text: &str) -> Result<LogContents, LogError> {
        parse_log(text.as_bytes(), Path::new("t.jsonl"))
    }

    #[test]
    fn a_torn_last_line_is_skipped_with_a_warning() {
        let whole = line(&record(1, 1.0));
        let text = format!("{whole}{}", &whole[..whole.len() / 2]);
        let contents = parse(&text).expect("reads");
        assert_eq!(contents.records, vec![record(1, 1.0)]);
        assert_eq!(contents.warnings.len(), 1);
        assert_eq!(
            contents.warnings[0].to_string(),
            format!(
                "t.jsonl:2: skipped a torn last line ({} bytes without a newline; an \
                 interrupted write)",
                whole.len() / 2
            )
        );
    }

    #[test]
    fn measured_numbers_read_back_bit_for_bit() {
        // serde_json's default float parser may be one ulp off; a resumed run would then see
        // a best slightly below the one it logged. Spread the values over many magnitudes.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut text = String::new();
        let mut written = Vec::new();
        for index in 0..4_000u128 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let mantissa = (state >> 11) as f64 / (1u64 << 53) as f64;
            let median_s = (1.0 + mantissa) * 10f64.powi((state % 13) as i32 - 9);
            let mut record = record(index, median_s);
            record.gflops = Some(1.0 / median_s);
            record.started_unix_s = 1.7e9 + mantissa;
            text.push_str(&line(&record));
            written.push(record);
        }
        let contents = parse(&text).expect("reads");
        for (read, wrote) in contents.records.iter().zip(&written) {
            let bits = |record: &Record| {
                let costs = record.costs.as_ref().expect("costs");
                (
                    costs.median_s.to_bits(),
                    record.gflops.map(f64::to_bits),
                    record.started_unix_s.to_bits(),
                )
            };
            assert_eq!(bits(read), bits(wrote), "{}", line(wrote));
        }
        assert_eq!(contents.records.len(), written.len());
    }

    #[test]
    fn a_complete_last_record_without_its_newline_is_kept() {
        let whole = line(&record(1, 1.0));
        let contents = parse(whole.trim_end()).expect("reads");
        assert_eq!(contents.records.len(), 1);
        assert!(contents.warnings.is_empty());
    }

    #[test]
    fn non_objects_and_non_records_are_named() {
        let text = format!(
            "[1, 2]\n{{\"version\": \"one\"}}\n{}",
            line(&record(1, 1.0))
        );
        let contents = parse(&text).expect("reads");
        assert_eq!(contents.records.len(), 1);
        let messages: Vec<String> = contents.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "t.jsonl:1: skipped a corrupt line: a JSON array rather than an object",
                "t.jsonl:2: skipped a corrupt line: `version` is \"one\", not a non-negative integer",
            ]
        );
    }

    #[test]
    fn version_zero_is_refused_with_a_reason() {
        let text = line(&record(1, 1.0)).replacen("\"version\":1", "\"version\":0", 1);
        let error = parse(&text).expect_err("refused");
        assert!(
            error.to_string().contains("version 0 never existed"),
            "{error}"
        );
    }

    #[test]
    fn user_defined_task_keys_are_kept_as_written_without_a_warning() {
        let mut custom = record(1, 1.0);
        custom.workload = "custom:projection_b64".to_string();
        let contents = parse(&line(&custom)).expect("reads");
        assert_eq!(contents.records[0].workload, "custom:projection_b64");
        assert!(contents.warnings.is_empty(), "{:?}", contents.warnings);
    }

    #[test]
    fn workload_keys_are_made_canonical_and_unknown_ones_kept_with_a_warning() {
        let mut short = record(1, 1.0);
        short.workload = "matmul:m=4,n=4,k=4".to_string();
        let mut unknown = record(2, 1.0);
        unknown.workload = "winograd:n=3".to_string();
        let contents = parse(&(line(&short) + &line(&unknown))).expect("reads");
        assert_eq!(
            contents.records[0].workload,
            "matmul:m=4,n=4,k=4,transpose_b=false"
        );
        assert_eq!(contents.records[1].workload, "winograd:n=3");
        assert_eq!(contents.warnings.len(), 1);
        assert!(matches!(
            &contents.warnings[0].kind,
            WarningKind::UnknownWorkload { key, .. } if key == "winograd:n=3"
        ));
    }

    #[test]
    fn a_log_to_resume_that_does_not_exist_yet_holds_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("new.jsonl");
        assert_eq!(
            read_log_to_resume(&missing).expect("nothing"),
            LogContents::default()
        );
        assert!(read_log(&missing).is_err());
        // A directory is not a missing file: its read error is kept.
        assert!(read_log_to_resume(dir.path()).is_err());
        let written = dir.path().join("old.jsonl");
        std::fs::write(&written, line(&record(3, 1.0))).expect("writes");
        assert_eq!(
            read_log_to_resume(&written).expect("reads"),
            read_log(&written).expect("reads")
        );
    }

    #[test]
    fn an_empty_log_has_nothing_and_blank_lines_are_ignored() {
        assert_eq!(parse("").expect("reads"), LogContents::default());
        let text = format!("\n{}\n", line(&record(1, 1.0)));
        let contents = parse(&text).expect("reads");
        assert_eq!(contents.records.len(), 1);
        assert!(contents.warnings.is_empty());
    }
}
