//! Choosing a backend: `auto`, `c` or `cranelift`, the same choice for the library and every
//! command that compiles.
//!
//! `auto` takes the C backend when a C compiler is found and its probe kernel compiles and runs
//! correctly (full-width vectors), else Cranelift (128-bit vectors, nothing to install), and
//! says which and why. The choice is made once per process: the probe costs a compile.

use looptune_cc::CBackend;
use looptune_ir::Workload;
use looptune_jit::CraneliftBackend;
use looptune_runtime::measure::WorkerError;
use looptune_runtime::peak::PeakResult;
use looptune_runtime::{Backend, BackendSpec, CompileError, PeakError, Target};
use looptune_space::{Task, TemplateError, VectorShape};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// Which backend to compile with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BackendChoice {
    /// C when a working compiler is found, else Cranelift.
    #[default]
    Auto,
    /// The C backend; an error when no working compiler is found.
    C,
    /// The Cranelift JIT.
    Cranelift,
}

/// A backend name that is not `auto`, `c` or `cranelift`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown backend `{0}`: expected auto, c or cranelift")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendChoice {
    type Err = UnknownBackend;

    fn from_str(text: &str) -> Result<BackendChoice, UnknownBackend> {
        match text {
            "auto" => Ok(BackendChoice::Auto),
            looptune_cc::backend::NAME => Ok(BackendChoice::C),
            looptune_jit::backend::NAME => Ok(BackendChoice::Cranelift),
            other => Err(UnknownBackend(other.to_string())),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::C => looptune_cc::backend::NAME,
            BackendChoice::Cranelift => looptune_jit::backend::NAME,
        })
    }
}

/// A chosen backend, and what `auto` had to say about choosing it.
#[derive(Clone)]
pub struct Selected {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// The C backend itself when that is the choice (for its peak and compile statistics).
    pub c: Option<Arc<CBackend>>,
    /// Why `auto` chose what it chose (for stderr), `None` for an explicit choice.
    pub note: Option<String>,
}

impl Selected {
    /// Seconds the C backend spent compiling in this process so far (0 for Cranelift, whose
    /// compile time is part of each candidate's measurement).
    pub fn compile_seconds(&self) -> f64 {
        self.c.as_ref().map_or(0.0, |c| c.compile_seconds())
    }
}

impl fmt::Debug for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selected")
            .field("backend", &self.backend.id())
            .field("note", &self.note)
            .finish()
    }
}

/// The C backend of this process, detected (and probed) once. The outcome, a failure too, is
/// kept for the life of the process, so that every command and every worker of one run agree
/// on the backend; a library user who fixes the environment mid-process calls
/// [`CBackend::detect`] directly.
pub fn c_backend() -> Result<Arc<CBackend>, CompileError> {
    static DETECTED: OnceLock<Result<Arc<CBackend>, CompileError>> = OnceLock::new();
    DETECTED
        .get_or_init(|| CBackend::detect().map(Arc::new))
        .clone()
}

/// Resolves `choice`: `c` fails when no working compiler is found; `auto` falls back to
/// Cranelift and says so in [`Selected::note`].
pub fn select(choice: BackendChoice) -> Result<Selected, CompileError> {
    let cranelift = || -> Arc<dyn Backend> { Arc::new(CraneliftBackend::new()) };
    match choice {
        BackendChoice::Cranelift => Ok(Selected {
            backend: cranelift(),
            c: None,
            note: None,
        }),
        BackendChoice::C => {
            let c = c_backend()?;
            Ok(Selected {
                backend: c.clone(),
                c: Some(c),
                note: None,
            })
        }
        BackendChoice::Auto => match c_backend() {
            Ok(c) => {
                let note = format!(
                    "backend: c ({} {}), full-width vectors",
                    c.compiler().describe(),
                    c.compiler().version
                );
                Ok(Selected {
                    backend: c.clone(),
                    c: Some(c),
                    note: Some(note),
                })
            }
            Err(error) => Ok(Selected {
                backend: cranelift(),
                c: None,
                note: Some(format!(
                    "backend: cranelift (128-bit vectors), because the C backend is not \
                     available: {error}"
                )),
            }),
        },
    }
}

/// Builds the backend a spec names: what measurement worker processes are given.
pub fn from_spec(spec: &BackendSpec) -> Result<Arc<dyn Backend>, CompileError> {
    match spec.name.as_str() {
        looptune_cc::backend::NAME => Ok(Arc::new(CBackend::from_spec(spec)?)),
        looptune_jit::backend::NAME => Ok(Arc::new(CraneliftBackend::from_spec(spec)?)),
        other => Err(CompileError::UnknownBackend {
            name: other.to_string(),
            known: "c, cranelift".to_string(),
        }),
    }
}

/// Serves measurement requests on stdin/stdout with every backend this build knows: the body
/// of a measurement worker process (`looptune worker`, or a line in a user's own `main`).
pub fn serve_worker() -> Result<(), WorkerError> {
    looptune_runtime::measure::serve_stdio(&from_spec)
}

/// The full-width peak of this host (the C backend's widest FMA loop) and Cranelift's f32x4
/// peak, measured back to back. The full-width one is `None` when no C compiler works, with
/// the reason.
pub fn peaks(threads: usize) -> Result<Peaks, PeakError> {
    let cranelift = looptune_jit::measure_peak(threads)?;
    let full_width = c_backend()
        .map_err(FullWidthError::NoCompiler)
        .and_then(|c| {
            looptune_cc::measure_peak(&c, threads)
                .map_err(|error| FullWidthError::Peak(Arc::new(error)))
        });
    Ok(Peaks {
        cranelift,
        full_width,
    })
}

/// The two ceilings of this host.
#[derive(Clone, Debug)]
pub struct Peaks {
    /// Cranelift's f32x4 FMA peak.
    pub cranelift: PeakResult,
    /// The C backend's full-width FMA peak, or why there is none.
    pub full_width: Result<PeakResult, FullWidthError>,
}

/// Why there is no full-width peak: no working C compiler, or its peak loop failed.
#[derive(Clone, Debug, Error)]
#[non_exhaustive]
pub enum FullWidthError {
    /// No C compiler was found, or its probe failed.
    #[error(transparent)]
    NoCompiler(CompileError),
    /// The C backend's FMA loop did not compile or run (shared, so that [`Peaks`] stays
    /// `Clone`).
    #[error(transparent)]
    Peak(Arc<PeakError>),
}

impl Peaks {
    /// The ceiling ratios are taken against: the full-width peak where there is one, else
    /// Cranelift's (then the widest this host's code can reach).
    pub fn reference(&self) -> &PeakResult {
        self.full_width.as_ref().unwrap_or(&self.cranelift)
    }
}

/// The ceiling of quantized kernels: the C backend's widest `vpmaddwd` loop (two `i16`
/// multiply-adds per `i32` lane, counted as four operations), or why there is none (no C
/// compiler). Compare a quantized kernel's GOP/s with it and with [`full_width_peak`].
pub fn pair_dot_peak(threads: usize) -> Result<PeakResult, FullWidthError> {
    let c = c_backend().map_err(FullWidthError::NoCompiler)?;
    looptune_cc::measure_pair_dot_peak(&c, threads)
        .map_err(|error| FullWidthError::Peak(Arc::new(error)))
}

/// The ceiling every ratio to peak is taken against: the full-width peak (the C backend's)
/// when a C compiler works, else Cranelift's f32x4 peak.
pub fn full_width_peak(threads: usize) -> Result<PeakResult, PeakError> {
    match c_backend().map(|c| looptune_cc::measure_peak(&c, threads)) {
        Ok(Ok(peak)) => Ok(peak),
        _ => looptune_jit::measure_peak(threads),
    }
}

/// The vector shape `backend` emits for `target`: what search spaces size register tiles from.
pub fn vector_shape(backend: &dyn Backend, target: &Target) -> VectorShape {
    VectorShape::new(
        backend.vector_lanes(target) as i64,
        backend.vector_registers(target) as i64,
    )
}

/// The task of `workload` with its space sized for `backend` on `target`: records of one
/// backend's space are never read as another's, since the backend is part of the target a
/// record belongs to.
pub fn task_for(
    workload: Workload,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Task, TemplateError> {
    Task::for_shape(workload, vector_shape(backend, target))
}

/// The vector shape the space of a record was sized for, from the backend and target its
/// fingerprint names (`None` for a backend this looptune does not know).
pub fn recorded_vector_shape(target: &looptune_log::TargetFingerprint) -> Option<VectorShape> {
    let host_like = Target {
        arch: target.arch.clone(),
        cpu_model: target.cpu_model.clone(),
        features: target.features,
        threads: target.threads,
    };
    match target.backend.as_str() {
        "cranelift" => Some(VectorShape::CRANELIFT),
        "c" => Some(VectorShape::new(
            CBackend::lanes_for(&host_like) as i64,
            if target.features.avx512f { 32 } else { 16 },
        )),
        _ => None,
    }
}

/// Whether records' configs are points of today's spaces for their workloads and backends:
/// the test every query of the best config adds to `looptune-log`'s validity rule (through
/// [`looptune_log::best_per_task_where`] and [`looptune_log::Dispatcher::from_logs_where`]), so
/// that `best`, `show`, `run`, `bench` and `export-db` agree on which records count. A record
/// this looptune cannot judge (a custom task, an unknown backend) is kept. Spaces are built
/// once per workload and shape.
#[derive(Default)]
pub struct TodaysSpaces {
    tasks: std::cell::RefCell<std::collections::HashMap<(String, VectorShape), Option<Task>>>,
}

impl TodaysSpaces {
    /// Whether `record`'s config is a point of today's space (see the type's documentation).
    pub fn fits(&self, record: &looptune_log::Record) -> bool {
        let (Ok(workload), Some(shape)) = (
            record.workload.parse::<Workload>(),
            recorded_vector_shape(&record.target),
        ) else {
            return true;
        };
        let mut tasks = self.tasks.borrow_mut();
        let task = tasks
            .entry((record.workload.clone(), shape))
            .or_insert_with(|| Task::for_shape(workload, shape).ok());
        task.as_ref()
            .is_some_and(|task| task.space().from_values(&record.config).is_ok())
    }
}
