//! The [`Measurer`]: batches of candidates in, one [`MeasureResult`] per candidate out.
//!
//! It owns the pieces that outlive a candidate: the worker process (reused while healthy,
//! restarted after a crash or a timeout), the references of recently seen programs (computed
//! here, in the caller's process, because the interpreter runs no generated code and its time
//! should not count against a candidate's timeout), and the time the last candidate ended (for
//! the cooldown).

use super::check::Reference;
use super::input::MeasureInput;
use super::options::{CheckMode, Isolation, MeasureOptions, OptionsError};
use super::pipeline::{Faults, Pipeline, PipelineOutcome};
use super::protocol::{Job, Request};
use super::result::{MeasureError, MeasureErrorKind, MeasureResult};
use super::worker::{
    killed_from_outside, WorkerCommand, WorkerError, WorkerFailure, WorkerProcess,
};
use crate::backend::Backend;
use crate::memory::{measurement_bytes, program_measurement_bytes, MemoryError, MemoryLimit};
use crate::target::Target;
use looptune_ir::Program;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// References kept for programs seen recently (a multi-task tuner interleaves a few programs).
const REFERENCE_CACHE: usize = 8;

/// Why a measurer could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MeasurerError {
    /// An option value is unusable.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The memory limit's environment variable does not parse.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Worker isolation was asked for without a command to start workers with.
    #[error("worker isolation needs a worker command; pass one, or choose in-process isolation")]
    NoWorkerCommand,
}

/// Compiles, checks and times candidates (see the [module documentation](super)).
pub struct Measurer {
    options: MeasureOptions,
    target: Target,
    backend: Arc<dyn Backend>,
    command: Option<WorkerCommand>,
    worker: Option<WorkerProcess>,
    in_process: Option<Pipeline>,
    references: Vec<(Program, CheckMode, Arc<Reference>)>,
    last_finished: Option<Instant>,
    worker_starts: usize,
    memory: MemoryLimit,
}

impl std::fmt::Debug for Measurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measurer")
            .field("options", &self.options)
            .field("target", &self.target)
            .field("backend", &self.backend.id())
            .field("command", &self.command)
            .field("worker_running", &self.worker.is_some())
            .field("worker_starts", &self.worker_starts)
            .finish_non_exhaustive()
    }
}

impl Measurer {
    /// A measurer compiling with `backend` for `target`. With [`Isolation::Worker`] (the
    /// default) `worker` says how to start worker processes, which rebuild the backend from its
    /// [`Backend::spec`]; the first is started with the first candidate, or by
    /// [`Measurer::start_worker`].
    pub fn new(
        options: MeasureOptions,
        target: Target,
        backend: Arc<dyn Backend>,
        worker: Option<WorkerCommand>,
    ) -> Result<Measurer, MeasurerError> {
        options.validate()?;
        if options.isolation == Isolation::Worker && worker.is_none() {
            return Err(MeasurerError::NoWorkerCommand);
        }
        Ok(Measurer {
            options,
            target,
            backend,
            command: worker,
            worker: None,
            in_process: None,
            references: Vec::new(),
            last_finished: None,
            worker_starts: 0,
            memory: MemoryLimit::from_env()?,
        })
    }

    /// The same measurer with another memory limit (by default [`MemoryLimit::from_env`]).
    pub fn with_memory_limit(mut self, memory: MemoryLimit) -> Measurer {
        self.memory = memory;
        self
    }

    /// The memory limit candidates are held to.
    pub fn memory_limit(&self) -> &MemoryLimit {
        &self.memory
    }

    /// Checks, before anything is allocated, that measuring `program` fits in the memory
    /// limit; the error names `what` (the workload) and both byte counts. [`Measurer::measure_one`]
    /// checks every candidate again with its temporaries, so calling this is optional: it
    /// lets a caller refuse a workload once instead of recording an error per candidate.
    pub fn check_memory(&self, what: &str, program: &Program) -> Result<(), MemoryError> {
        self.memory.check(what, program_measurement_bytes(program))
    }

    /// The options.
    pub fn options(&self) -> &MeasureOptions {
        &self.options
    }

    /// The target candidates are compiled for.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The backend candidates are compiled with.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// How many worker processes were started so far (restarts included).
    pub fn worker_starts(&self) -> usize {
        self.worker_starts
    }

    /// Starts the worker now if none runs, so that a broken worker command is reported once,
    /// before tuning, rather than as an error record for every candidate. Does nothing with
    /// in-process isolation.
    pub fn start_worker(&mut self) -> Result<(), WorkerError> {
        if self.options.isolation != Isolation::Worker || self.worker.is_some() {
            return Ok(());
        }
        let Some(command) = &self.command else {
            return Ok(());
        };
        self.worker_starts += 1;
        self.worker = Some(WorkerProcess::spawn(command)?);
        Ok(())
    }

    /// Ends the worker process, if one runs; the next candidate starts a new one (with its
    /// buffers at new places in memory). Does nothing with in-process isolation.
    pub fn stop_worker(&mut self) {
        self.worker = None;
    }

    /// Measures a batch of candidates, in order, one result each. Failures are results, never
    /// panics: a crash or hang costs that candidate only.
    /// The backend first [prepares](Backend::prepare) the whole batch (the C backend compiles
    /// it in parallel), then candidates are measured one by one.
    pub fn measure(&mut self, inputs: &[MeasureInput]) -> Vec<MeasureResult> {
        self.prepare(inputs.iter());
        inputs.iter().map(|input| self.measure_one(input)).collect()
    }

    /// Lets the backend prepare candidates about to be measured one by one (the C backend
    /// compiles them in parallel on every core, so each `measure_one` only loads its object).
    /// Nothing is executed; failures are reported by `measure_one`.
    pub fn prepare<'a>(&self, inputs: impl IntoIterator<Item = &'a MeasureInput>) {
        let nests: Vec<&looptune_ir::LoopNest> =
            inputs.into_iter().map(|input| &input.nest).collect();
        self.backend.prepare(&nests, &self.target);
    }

    /// Measures one candidate.
    pub fn measure_one(&mut self, input: &MeasureInput) -> MeasureResult {
        self.cool_down();
        let start = Instant::now();
        if let Err(too_large) = self.memory.check(
            &input.nest.name,
            measurement_bytes(&input.program, &input.nest),
        ) {
            return MeasureResult {
                outcome: Err(MeasureError::new(
                    MeasureErrorKind::Environment,
                    too_large.to_string(),
                )),
                compile_ms: None,
                check_ms: None,
                reference_ms: 0.0,
                checked_elements: 0,
                total_ms: 0.0,
            };
        }
        let reference_start = Instant::now();
        let (reference, computed) = self.reference(&input.program);
        let reference_ms = if computed {
            reference_start.elapsed().as_secs_f64() * 1e3
        } else {
            0.0
        };
        let pipeline_outcome = match &reference {
            Err(message) => PipelineOutcome {
                outcome: Err(MeasureError::new(
                    MeasureErrorKind::InvalidConfig,
                    message.clone(),
                )),
                compile_ms: None,
                check_ms: None,
            },
            Ok(reference) => match self.options.isolation {
                Isolation::InProcess => self
                    .in_process
                    .get_or_insert_with(|| {
                        Pipeline::new(Arc::clone(&self.backend), Faults::Refused)
                    })
                    .run_guarded(&self.options, &self.target, input, reference),
                Isolation::Worker => self.in_worker(input, reference),
            },
        };
        let checked_elements = match (&pipeline_outcome.check_ms, &reference) {
            (Some(_), Ok(reference)) => reference.checked_elements(),
            _ => 0,
        };
        self.last_finished = Some(Instant::now());
        MeasureResult {
            outcome: pipeline_outcome.outcome,
            compile_ms: pipeline_outcome.compile_ms,
            check_ms: pipeline_outcome.check_ms,
            reference_ms,
            checked_elements,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// Sleeps whatever is left of the cooldown since the last candidate ended.
    fn cool_down(&self) {
        if let Some(last) = self.last_finished {
            let left = self.options.cooldown.saturating_sub(last.elapsed());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
        }
    }

    /// The reference of `program` under the current check mode, from the cache (moved to its
    /// most recent end) or computed; `true` when it was computed now.
    fn reference(&mut self, program: &Program) -> (Result<Arc<Reference>, String>, bool) {
        let mode = self.options.check;
        if let Some(position) = self
            .references
            .iter()
            .position(|(cached, cached_mode, _)| *cached_mode == mode && cached == program)
        {
            let entry = self.references.remove(position);
            let reference = Arc::clone(&entry.2);
            self.references.push(entry);
            return (Ok(reference), false);
        }
        match Reference::compute(program, mode) {
            Ok(reference) => {
                let reference = Arc::new(reference);
                if self.references.len() == REFERENCE_CACHE {
                    self.references.remove(0);
                }
                self.references
                    .push((program.clone(), mode, Arc::clone(&reference)));
                (Ok(reference), true)
            }
            Err(message) => (
                Err(format!("no reference for `{}`: {message}", program.name)),
                true,
            ),
        }
    }

    /// Measures `input` in the worker, starting or restarting it as needed.
    fn in_worker(&mut self, input: &MeasureInput, reference: &Reference) -> PipelineOutcome {
        let failed = |kind, message: String| PipelineOutcome {
            outcome: Err(MeasureError::new(kind, message)),
            compile_ms: None,
            check_ms: None,
        };
        let wait = self
            .options
            .timeout
            .saturating_add(grace(self.options.timeout));
        // A worker found dead when the request is written (it died between candidates) is
        // replaced once; a second failure is this candidate's.
        for attempt in 0..2 {
            if let Err(error) = self.start_worker() {
                return failed(MeasureErrorKind::Environment, error.to_string());
            }
            let Some(worker) = self.worker.as_mut() else {
                return failed(
                    MeasureErrorKind::Environment,
                    "no measurement worker is configured".to_string(),
                );
            };
            let request = Request::Measure(Box::new(Job {
                options: Cow::Borrowed(&self.options),
                target: Cow::Borrowed(&self.target),
                backend: self.backend.spec(),
                input: Cow::Borrowed(input),
                reference: Cow::Borrowed(reference),
            }));
            match worker.measure(&request, wait) {
                Ok(outcome) => return outcome,
                Err(WorkerFailure::Send(error)) => {
                    self.worker = None;
                    if attempt == 1 {
                        return failed(
                            MeasureErrorKind::Environment,
                            format!("cannot send `{}` to the worker: {error}", input.nest.name),
                        );
                    }
                }
                Err(WorkerFailure::Timeout) => {
                    self.worker = None;
                    return failed(
                        MeasureErrorKind::Timeout,
                        format!(
                            "no result for `{}` within the timeout of {:.2} s (plus {:.2} s \
                             grace); the worker was killed",
                            input.nest.name,
                            self.options.timeout.as_secs_f64(),
                            grace(self.options.timeout).as_secs_f64()
                        ),
                    );
                }
                Err(WorkerFailure::Died(how)) => {
                    self.worker = None;
                    // A worker killed from outside (Ctrl-C, `kill`, the OOM killer) says
                    // nothing about the kernel: a resumed run measures it again.
                    let kind = if killed_from_outside(&how) {
                        MeasureErrorKind::Environment
                    } else {
                        MeasureErrorKind::RuntimeError
                    };
                    return failed(
                        kind,
                        format!(
                            "the worker died while measuring `{}`: it {how}",
                            input.nest.name
                        ),
                    );
                }
            }
        }
        unreachable!("the second attempt always returns")
    }
}

/// Extra time the parent waits beyond the timeout before killing a worker: the worker stops a
/// slow candidate itself between calls, and this covers the call in flight and the reply.
fn grace(timeout: Duration) -> Duration {
    Duration::from_millis(500) + timeout / 10
}
