//! The tuning-log commands: `best`, `merge` and `export-db`, thin layers over `looptune-log`.
//!
//! Every reader prints the log's warnings (a torn last line, a corrupt line named by number) on
//! stderr and goes on with the readable records; nothing here rewrites an input log.

use super::input;
use anyhow::Context;
use clap::Args;
use looptune::log::{
    best_per_task_where, export_db, merge, merge_into, read_log, read_log_to_resume, Existing,
    LogContents, LogError, Record,
};
use std::path::{Path, PathBuf};

/// Arguments of `looptune best`.
#[derive(Debug, Args)]
pub struct BestArgs {
    /// The tuning log to read.
    #[arg(long)]
    log: PathBuf,
    /// Only this workload (`op:key=value,...`); all workloads in the log otherwise.
    workload: Option<String>,
    /// Print a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

/// Arguments of `looptune merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The merged log to write (atomically); never one of the inputs, and a file that exists
    /// only with --replace.
    #[arg(long)]
    out: PathBuf,
    /// Replace OUT if it exists (a merge of the same shards run again).
    #[arg(long)]
    replace: bool,
    /// The logs to merge; their order does not matter.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
}

/// Arguments of `looptune export-db`.
#[derive(Debug, Args)]
pub struct ExportDbArgs {
    /// The deploy database to write (bincode).
    #[arg(long)]
    out: PathBuf,
    /// The logs to take the best configs from.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
}

/// Arguments of `looptune show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The tuning log to read.
    #[arg(long)]
    log: PathBuf,
    /// The workload, `op:key=value,...`.
    workload: String,
    /// Whose records to show: the backend's space and target.
    #[command(flatten)]
    backend: super::backends::BackendArgs,
}

/// `looptune show`: the knobs of the best config for a workload and its lowered nest.
pub fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let selected = args.backend.select()?;
    let super::schedule::FromLog {
        schedule, config, ..
    } = super::schedule::from_log(&args.log, &workload, false, selected.backend.as_ref())?;
    println!("config #{}", config.index());
    for (name, value) in config.to_values() {
        println!("  {name} = {value}");
    }
    let nest = looptune::lower(&schedule)
        .with_context(|| format!("lowering the tuned schedule of `{workload}`"))?;
    println!("{nest}");
    Ok(())
}

/// Reads a log, printing its warnings.
pub fn read_with_warnings(path: &Path) -> anyhow::Result<LogContents> {
    print_warnings(read_log(path), path)
}

/// The records of the log a tuning command appends to and resumes from (none while it does not
/// exist yet), its warnings printed on stderr.
pub fn records_to_resume(path: &Path) -> anyhow::Result<Vec<Record>> {
    Ok(print_warnings(read_log_to_resume(path), path)?.records)
}

/// A log read from `path`, with its warnings printed on stderr and a read error naming the path.
fn print_warnings(read: Result<LogContents, LogError>, path: &Path) -> anyhow::Result<LogContents> {
    let contents = read.with_context(|| format!("reading the tuning log {}", path.display()))?;
    for warning in &contents.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(contents)
}

/// `looptune best`: the best valid record per workload and target.
pub fn best(args: &BestArgs) -> anyhow::Result<()> {
    let contents = read_with_warnings(&args.log)?;
    let wanted = match &args.workload {
        Some(text) => Some(input::workload(text)?.to_string()),
        None => None,
    };
    let spaces = looptune::backend::TodaysSpaces::default();
    let rows: Vec<&Record> = best_per_task_where(&contents.records, |record| spaces.fits(record))
        .into_iter()
        .filter(|record| wanted.as_ref().is_none_or(|key| &record.workload == key))
        .collect();
    if args.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|record| {
                serde_json::json!({
                    "workload": record.workload,
                    "gflops": record.gflops,
                    "tuner": record.tuner,
                    "config_index": record.config_index.to_string(),
                    "config": record.config,
                    "target": record.target,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        match &wanted {
            Some(key) => eprintln!("no valid record of `{key}` in {}", args.log.display()),
            None => eprintln!("no valid record in {}", args.log.display()),
        }
        return Ok(());
    }
    for record in rows {
        let knobs: Vec<String> = record
            .config
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        println!(
            "{}  {:.2} GFLOP/s  ({} on {}, {} threads)  {}",
            record.workload,
            record.gflops.unwrap_or(0.0),
            record.tuner,
            record.target.cpu_model,
            record.target.threads,
            knobs.join(" ")
        );
    }
    Ok(())
}

/// `looptune merge`: the distinct records of several logs in one new log, in an order that does
/// not depend on the order of the inputs (`looptune-log`'s `merge.rs` says what is kept).
pub fn merge_logs(args: &MergeArgs) -> anyhow::Result<()> {
    let existing = if args.replace {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    let merged = match merge_into(&args.logs, &args.out, existing) {
        Ok(merged) => merged,
        Err(error @ (LogError::OutputIsInput { .. } | LogError::OutputExists { .. })) => {
            let hint = if matches!(error, LogError::OutputExists { .. }) {
                " (--replace)"
            } else {
                ""
            };
            return Err(super::Usage(format!("{error}{hint}")).into());
        }
        Err(error) => return Err(anyhow::Error::new(error).context("merging the logs")),
    };
    for warning in &merged.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "merged {} records of {} tasks from {} logs into {} ({} duplicates dropped, {} warnings)",
        merged.records.len(),
        merged.tasks(),
        args.logs.len(),
        args.out.display(),
        merged.duplicates,
        merged.warnings.len(),
    );
    Ok(())
}

/// Refuses to write `out` over one of `inputs`, or over an existing tuning log: a binary
/// database written there would destroy the records it was made from.
fn refuse_to_overwrite(out: &Path, inputs: &[PathBuf]) -> Result<(), super::Usage> {
    if let Some(input) = inputs.iter().find(|input| same_file(input, out)) {
        return Err(super::Usage(format!(
            "--out {} is the input {}; export-db would overwrite the log it reads (name another \
             file)",
            out.display(),
            input.display()
        )));
    }
    if let Ok(bytes) = std::fs::read(out) {
        if looptune::log::sniff(&bytes) == looptune::log::FileKind::TuningLog {
            return Err(super::Usage(format!(
                "--out {} is a tuning log; export-db writes a binary database and would destroy \
                 it (name another file)",
                out.display()
            )));
        }
    }
    Ok(())
}

/// `looptune export-db`: the best config per workload and target, in the deploy database.
pub fn export(args: &ExportDbArgs) -> anyhow::Result<()> {
    refuse_to_overwrite(&args.out, &args.logs)?;
    let merged = merge(&args.logs).context("reading the logs to export")?;
    for warning in &merged.warnings {
        eprintln!("warning: {warning}");
    }
    // The same records count as for `best`, `show` and `run`.
    let spaces = looptune::backend::TodaysSpaces::default();
    let counted: Vec<Record> = merged
        .records
        .into_iter()
        .filter(|record| spaces.fits(record))
        .collect();
    let db = export_db(&counted, &args.out)?;
    eprintln!(
        "wrote {} entries to {}",
        db.entries().len(),
        args.out.display()
    );
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
