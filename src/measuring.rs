//! The measurer a tuning run uses, and where its worker process comes from: the one place that
//! builds a worker-backed [`Measurer`], for the library, the command line and the examples.
//!
//! A candidate kernel runs in a worker process by default, so that a crash or a hang is an
//! error record rather than the end of the run. The worker is an executable that serves the
//! measurement protocol with every backend ([`serve_worker`]). [`WorkerChoice::Find`] looks for
//! one, in this order:
//!
//! 1. `LOOPTUNE_WORKER`: the path of a `looptune` binary, run as `PATH worker`;
//! 2. this executable, when its `main` called [`serve_worker_if_requested`] first (one line);
//! 3. a `looptune` binary of this version next to this executable or one directory up (where
//!    cargo puts it for examples, tests and doc tests of this workspace), then on `PATH`
//!    (`cargo install looptune`).
//!
//! When none is found, candidates are measured in this process and [`Measuring::note`] says so
//! and why: the run goes on, without protection from crashing kernels, and never silently.

use crate::backend::serve_worker;
use looptune_runtime::measure::MeasurerError;
use looptune_runtime::measure::{Isolation, WorkerCommand};
use looptune_runtime::{Backend, MeasureOptions, Measurer, Target};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// The environment variable naming a `looptune` binary to run as the worker (`PATH worker`).
pub const WORKER_ENV: &str = "LOOPTUNE_WORKER";

/// The environment variable with which this executable is started as a worker, for
/// [`serve_worker_if_requested`] to see.
pub const SERVE_ENV: &str = "LOOPTUNE_SERVE_WORKER";

/// Whether this process's `main` called [`serve_worker_if_requested`], which makes this
/// executable a worker too.
static SERVES_WORKERS: AtomicBool = AtomicBool::new(false);

/// Makes this executable its own measurement worker: call it first in `main`. Started as a
/// worker (with [`SERVE_ENV`] set), it serves measurement requests until stdin closes and exits
/// the process; otherwise it returns at once, and tuning runs of this process measure in a
/// child process of this same executable.
pub fn serve_worker_if_requested() {
    if std::env::var_os(SERVE_ENV).is_some_and(|value| value == "1") {
        let code = match serve_worker() {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("looptune measurement worker: {error}");
                1
            }
        };
        std::process::exit(code);
    }
    SERVES_WORKERS.store(true, Ordering::SeqCst);
}

/// Where candidates are measured.
#[derive(Clone, Debug, Default)]
pub enum WorkerChoice {
    /// In a worker process found as the module documentation says, else in this process with
    /// a note.
    #[default]
    Find,
    /// In a worker process started with this command.
    Use(WorkerCommand),
    /// In this process: no protection from a crashing or hanging kernel (trusted kernels only).
    InProcess,
}

/// How a measurer measures, to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measuring {
    /// Whether candidates run in a worker process.
    pub isolated: bool,
    /// Which worker, or why there is none.
    pub note: String,
}

/// The measurer of a tuning run compiling with `backend` for `target`, its worker chosen by
/// `choice`; an error only when the options cannot work.
pub fn measurer(
    target: &Target,
    backend: &Arc<dyn Backend>,
    options: MeasureOptions,
    choice: &WorkerChoice,
) -> Result<(Measurer, Measuring), MeasurerError> {
    let (worker, measuring) = match choice {
        WorkerChoice::Use(command) => (
            Some(command.clone()),
            Measuring {
                isolated: true,
                note: "measured in the given worker process".to_string(),
            },
        ),
        WorkerChoice::InProcess => (
            None,
            Measuring {
                isolated: false,
                note: "measured in this process, as asked".to_string(),
            },
        ),
        WorkerChoice::Find => match find_worker() {
            Ok((command, note)) => (
                Some(command),
                Measuring {
                    isolated: true,
                    note,
                },
            ),
            Err(why) => (
                None,
                Measuring {
                    isolated: false,
                    note: format!(
                        "measured in this process, unprotected from crashing kernels: {why}"
                    ),
                },
            ),
        },
    };
    let isolation = if worker.is_some() {
        Isolation::Worker
    } else {
        Isolation::InProcess
    };
    let measurer = Measurer::new(
        options.with_isolation(isolation),
        target.clone(),
        Arc::clone(backend),
        worker,
    )?;
    Ok((measurer, measuring))
}

/// No worker executable was found (see the module documentation for where it is looked for).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "no worker: set {WORKER_ENV} to a looptune {version} binary, put one on PATH, or call \
     looptune::serve_worker_if_requested() first in main",
    version = env!("CARGO_PKG_VERSION")
)]
pub struct NoWorker;

/// A worker executable, as the module documentation orders them, and where it was found.
pub fn find_worker() -> Result<(WorkerCommand, String), NoWorker> {
    if let Some(program) = std::env::var_os(WORKER_ENV) {
        let program = PathBuf::from(program);
        return Ok((
            WorkerCommand::new(&program).arg("worker"),
            format!("worker: {} ({WORKER_ENV})", program.display()),
        ));
    }
    let this = std::env::current_exe();
    if SERVES_WORKERS.load(Ordering::SeqCst) {
        if let Ok(this) = &this {
            return Ok((
                WorkerCommand::new(this).env(SERVE_ENV, "1"),
                format!("worker: this executable, {}", this.display()),
            ));
        }
    }
    let binary = format!("looptune{}", std::env::consts::EXE_SUFFIX);
    let near = this
        .iter()
        .flat_map(|this| this.ancestors().skip(1).take(2))
        .map(|dir| dir.join(&binary));
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(&binary));
    near.chain(on_path)
        .find(|candidate| is_this_version(candidate))
        .map(|program| {
            let note = format!("worker: {} worker", program.display());
            (WorkerCommand::new(program).arg("worker"), note)
        })
        .ok_or(NoWorker)
}

/// Whether `program` is a `looptune` binary of this version (`looptune --version`), the only
/// kind whose worker speaks this build's protocol.
fn is_this_version(program: &Path) -> bool {
    if !program.is_file() {
        return false;
    }
    std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|output| {
            output.status.success()
                && String::from_utf8_lossy(&output.stdout).trim()
                    == concat!("looptune ", env!("CARGO_PKG_VERSION"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_is_not_looptune_is_not_a_worker() {
        assert!(!is_this_version(Path::new("/nonexistent/looptune")));
        // A file that runs but is another program.
        if Path::new("/bin/true").is_file() {
            assert!(!is_this_version(Path::new("/bin/true")));
        }
    }

    #[test]
    fn in_process_is_said_and_a_given_worker_is_used() {
        let backend: Arc<dyn Backend> = Arc::new(crate::CraneliftBackend::new());
        let target = Target::host();
        let (_, measuring) = measurer(
            &target,
            &backend,
            MeasureOptions::default(),
            &WorkerChoice::InProcess,
        )
        .expect("default options work");
        assert!(!measuring.isolated);
        let command = WorkerCommand::new("/nonexistent/worker");
        let (_, measuring) = measurer(
            &target,
            &backend,
            MeasureOptions::default(),
            &WorkerChoice::Use(command),
        )
        .expect("default options work");
        assert!(measuring.isolated);
    }
}
