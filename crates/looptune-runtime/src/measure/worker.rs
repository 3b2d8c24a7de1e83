//! The worker process: both ends of it.
//!
//! The parent ([`WorkerProcess`]) spawns a [`WorkerCommand`] with piped stdin and stdout,
//! inherits its stderr (so a worker's panic message reaches the user), and reads its replies on
//! a thread that forwards each frame over a channel: that is what lets the parent wait for a
//! reply with a timeout. A worker that closes its stdout without replying has died; its exit
//! status names the signal. A worker that does not reply in time is killed.
//!
//! The child side is [`serve`], a loop over requests from stdin, and [`serve_stdio`], which
//! first moves the protocol off file descriptor 1 so that a stray `println!` in the worker's
//! process cannot corrupt the stream.

use super::pipeline::{Faults, Pipeline, PipelineOutcome};
use super::protocol::{read_frame, write_frame, ProtocolError, Reply, Request, PROTOCOL_VERSION};
use super::result::{MeasureError, MeasureErrorKind};
use super::FAULT_INJECTION_ENV;
use crate::backend::{BackendFactory, BackendSpec};
use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use thiserror::Error;

/// How long a freshly spawned worker may take to say it is ready.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a worker asked to exit (stdin closed) may take before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How to start a worker: a program that calls [`serve_stdio`] (the `looptune` binary's hidden
/// `worker` subcommand, or this crate's `looptune-jit-worker`), its arguments and extra
/// environment variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
}

impl WorkerCommand {
    /// `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The same command with `arg` appended.
    pub fn arg(mut self, arg: impl Into<String>) -> WorkerCommand {
        self.args.push(arg.into());
        self
    }

    /// The same command with `key=value` in the worker's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> WorkerCommand {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The same command with fault injection allowed ([`super::MeasureInput::fault`]); for
    /// tests of the measurer's failure paths only.
    pub fn allow_fault_injection(self) -> WorkerCommand {
        self.env(FAULT_INJECTION_ENV, "1")
    }
}

/// Why a worker could not be started or served.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The program could not be spawned.
    #[error("cannot start measurement worker `{program}`: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The worker did not complete the handshake.
    #[error("measurement worker `{program}` did not start: {message}")]
    Handshake {
        /// The program.
        program: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The worker speaks another protocol version (a stale binary).
    #[error("measurement worker `{program}` speaks protocol {found}, this measurer {expected}")]
    Version {
        /// The program.
        program: PathBuf,
        /// This side's [`PROTOCOL_VERSION`].
        expected: u32,
        /// The worker's.
        found: u32,
    },
    /// The stream broke.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Moving the protocol off stdout failed.
    #[error("redirecting the worker's stdout: {0}")]
    Redirect(std::io::Error),
}

/// Runs the worker loop: announces itself on `output`, then answers every measurement request
/// read from `input` until `input` ends, compiling with the backend `backends` builds from the
/// request's spec (rebuilt only when the spec changes). Faults are injected only when
/// `LOOPTUNE_ALLOW_FAULT_INJECTION=1` is in this process's environment.
pub fn serve(
    input: impl Read,
    output: impl Write,
    backends: &BackendFactory,
) -> Result<(), WorkerError> {
    let faults = if std::env::var_os(FAULT_INJECTION_ENV) == Some(OsString::from("1")) {
        Faults::Allowed
    } else {
        Faults::Refused
    };
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let mut pipeline: Option<(BackendSpec, Pipeline)> = None;
    write_frame(
        &mut output,
        &Reply::Ready {
            protocol: PROTOCOL_VERSION,
        },
    )?;
    while let Some(request) = read_frame::<Request>(&mut input)? {
        match request {
            Request::Measure(job) => {
                let current = match pipeline.take() {
                    Some((spec, current)) if spec == job.backend => Ok((spec, current)),
                    _ => backends(&job.backend)
                        .map(|backend| (job.backend.clone(), Pipeline::new(backend, faults))),
                };
                let (spec, mut current) = match current {
                    Ok(built) => built,
                    Err(error) => {
                        let outcome = PipelineOutcome {
                            outcome: Err(MeasureError::new(
                                MeasureErrorKind::CompileError,
                                format!("the worker cannot build the backend: {error}"),
                            )),
                            compile_ms: None,
                            check_ms: None,
                        };
                        write_frame(&mut output, &Reply::Measured(outcome))?;
                        continue;
                    }
                };
                let outcome =
                    current.run_guarded(&job.options, &job.target, &job.input, &job.reference);
                pipeline = Some((spec, current));
                write_frame(&mut output, &Reply::Measured(outcome))?;
            }
        }
    }
    Ok(())
}

/// Runs [`serve`] on this process's stdin and stdout, after pointing file descriptor 1 at
/// stderr so that anything else printing to stdout lands there instead of in the protocol.
/// This is what a worker binary's `main` calls, with the backends its crate graph knows.
pub fn serve_stdio(backends: &BackendFactory) -> Result<(), WorkerError> {
    let protocol_output = protocol_stdout().map_err(WorkerError::Redirect)?;
    serve(std::io::stdin().lock(), protocol_output, backends)
}

/// A private duplicate of stdout for the protocol, with descriptor 1 then redirected to stderr.
#[cfg(unix)]
fn protocol_stdout() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    std::io::stdout().flush()?;
    // SAFETY: `dup` has no memory-safety preconditions; it returns a new descriptor or -1.
    let duplicate = unsafe { libc::dup(libc::STDOUT_FILENO) };
    if duplicate < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `duplicate` is a descriptor this function just created and nothing else owns, so
    // the `File` may take ownership of it (and close it when dropped).
    let file = unsafe { std::fs::File::from_raw_fd(duplicate) };
    // SAFETY: `dup2` has no memory-safety preconditions; descriptor 1 stays open (now a copy
    // of stderr), so Rust's `Stdout`, which writes to it, keeps working.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Elsewhere the protocol simply uses stdout.
#[cfg(not(unix))]
fn protocol_stdout() -> std::io::Result<std::io::Stdout> {
    Ok(std::io::stdout())
}

/// Why a worker gave no outcome for a job.
#[derive(Debug)]
pub(crate) enum WorkerFailure {
    /// The request could not be written: the worker was already gone.
    Send(ProtocolError),
    /// No reply within the wait; the worker was killed.
    Timeout,
    /// The worker died (or broke the protocol) before replying; the string describes how.
    Died(String),
}

/// A running worker, as its parent sees it.
pub(crate) struct WorkerProcess {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    replies: Receiver<Result<Reply, ProtocolError>>,
}

impl WorkerProcess {
    /// Spawns `command` and waits for its handshake.
    pub(crate) fn spawn(command: &WorkerCommand) -> Result<WorkerProcess, WorkerError> {
        let mut child = Command::new(&command.program)
            .args(&command.args)
            .envs(command.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| WorkerError::Spawn {
                program: command.program.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WorkerError::Handshake {
                program: command.program.clone(),
                message: "its pipes were not created".to_string(),
            });
        };
        let (sender, replies) = mpsc::channel();
        // The reader ends when the worker's stdout closes (it exited or was killed) or the
        // stream breaks; either way the parent sees the channel disconnect.
        std::thread::Builder::new()
            .name("looptune-worker-reader".to_string())
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                loop {
                    let reply = read_frame::<Reply>(&mut stdout);
                    let stop = !matches!(reply, Ok(Some(_)));
                    let forwarded = match reply {
                        Ok(Some(reply)) => sender.send(Ok(reply)),
                        Ok(None) => break,
                        Err(error) => sender.send(Err(error)),
                    };
                    if stop || forwarded.is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| WorkerError::Spawn {
                program: command.program.clone(),
                source,
            })?;
        let mut worker = WorkerProcess {
            child,
            stdin: Some(BufWriter::new(stdin)),
            replies,
        };
        let handshake = worker.replies.recv_timeout(HANDSHAKE_TIMEOUT);
        let failure = match handshake {
            Ok(Ok(Reply::Ready { protocol })) if protocol == PROTOCOL_VERSION => {
                return Ok(worker);
            }
            Ok(Ok(Reply::Ready { protocol })) => {
                worker.kill();
                return Err(WorkerError::Version {
                    program: command.program.clone(),
                    expected: PROTOCOL_VERSION,
                    found: protocol,
                });
            }
            Ok(Ok(Reply::Measured(_))) => "it replied before being asked".to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(RecvTimeoutError::Timeout) => {
                format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs())
            }
            Err(RecvTimeoutError::Disconnected) => "it closed its stdout".to_string(),
        };
        let status = worker.kill();
        Err(WorkerError::Handshake {
            program: command.program.clone(),
            message: format!("{failure}; it {status}"),
        })
    }

    /// Sends `request` and waits up to `wait` for its outcome. On any failure but `Send` the
    /// worker is dead (killed if need be) and must be dropped.
    pub(crate) fn measure(
        &mut self,
        request: &Request<'_>,
        wait: Duration,
    ) -> Result<PipelineOutcome, WorkerFailure> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(WorkerFailure::Send(ProtocolError::Truncated));
        };
        // Replies left over from an earlier job cannot exist (one reply per request, and a job
        // that failed ends the worker), so the next reply is this job's.
        write_frame(stdin, request).map_err(WorkerFailure::Send)?;
        let deadline = Instant::now() + wait;
        match self
            .replies
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Ok(Reply::Measured(outcome))) => Ok(outcome),
            Ok(Ok(Reply::Ready { .. })) => {
                let status = self.kill();
                Err(WorkerFailure::Died(format!(
                    "sent a second handshake instead of a result; it {status}"
                )))
            }
            Ok(Err(error)) => {
                let status = self.kill();
                Err(WorkerFailure::Died(format!("{error}; it {status}")))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(WorkerFailure::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(WorkerFailure::Died(self.reap())),
        }
    }

    /// Waits for a worker whose stdout closed, describing how it ended.
    fn reap(&mut self) -> String {
        // Its stdout closed, so it is exiting; give it a moment, then make sure.
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return describe(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => return self.kill(),
            }
        }
    }

    /// Kills the worker (if it still runs) and reaps it, describing how it ended.
    fn kill(&mut self) -> String {
        self.stdin = None;
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => describe(status),
            Err(error) => format!("could not be waited for ({error})"),
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Closing stdin asks the worker to exit; one that does not is killed.
        self.stdin = None;
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
    }
}

/// How a process ended, in words: "was killed by signal 11 (SIGSEGV)", "exited with status 3".
pub(crate) fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            return format!(
                "was killed by signal {signal} ({}{core})",
                signal_name(signal)
            );
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("ended ({status})"),
    }
}

/// Whether `how` (a [`describe`]d end) is a signal sent from outside the worker (Ctrl-C, a
/// `kill`, the OOM killer's SIGKILL: the parent's own timeout kill is reported as a timeout
/// before this is asked) rather than one a crashing kernel raises (SIGSEGV, SIGILL, SIGBUS,
/// SIGFPE, SIGABRT, SIGTRAP).
pub(crate) fn killed_from_outside(how: &str) -> bool {
    ["(SIGINT", "(SIGTERM", "(SIGHUP", "(SIGKILL", "(SIGQUIT"]
        .iter()
        .any(|name| how.contains(name))
}

/// The conventional name of the signals a crashing kernel or a killed worker dies of.
#[cfg(unix)]
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "unnamed signal",
    }
}
