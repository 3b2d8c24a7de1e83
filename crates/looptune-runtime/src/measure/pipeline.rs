//! One candidate from nest to costs, in the current process: verify, compile, check, time.
//!
//! A worker process runs this for every request; [`super::Isolation::InProcess`] runs it in the
//! caller. The steps are ordered so that the cheapest rejections come first and a kernel's time
//! only counts once its output matched the reference (design invariant 6).

use super::check::{random_data, Reference};
use super::input::{Fault, MeasureInput};
use super::result::{Costs, MeasureError, MeasureErrorKind};
use super::timing::{time_calls, CacheFlusher, TimingError};
use super::{MeasureOptions, FAULT_INJECTION_ENV};
use crate::backend::Backend;
use crate::target::Target;
use looptune_ir::verify::unproven_accesses;
use looptune_ir::{verify, Data, DataMut, DataRef, LoopNest, Program};
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the pipeline found for one candidate; a worker sends it back as its reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct PipelineOutcome {
    /// Costs, or why there are none.
    pub outcome: Result<Costs, MeasureError>,
    /// Time to compile, when compiling finished.
    pub compile_ms: Option<f64>,
    /// Time of the checked call and the comparison, when they finished.
    pub check_ms: Option<f64>,
}

/// Whether candidates carrying a [`Fault`] may trigger it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Faults {
    /// Inject them: a worker started with the fault-injection variable.
    Allowed,
    /// Reject them as `InvalidConfig`.
    Refused,
}

/// State kept across candidates: the backend, the inputs of the last program, the flush buffer.
pub(crate) struct Pipeline {
    backend: Arc<dyn Backend>,
    /// The inputs of the last candidate, regenerated only when they change.
    inputs: Option<CachedInputs>,
    flusher: Option<CacheFlusher>,
    faults: Faults,
}

/// Random inputs with what they were made for.
struct CachedInputs {
    seed: u64,
    lens: Vec<usize>,
    inputs: Vec<Data>,
}

fn error(kind: MeasureErrorKind, message: impl Into<String>) -> MeasureError {
    MeasureError::new(kind, message)
}

impl Pipeline {
    /// A pipeline compiling with `backend` that injects faults only when `faults` allows it.
    pub(crate) fn new(backend: Arc<dyn Backend>, faults: Faults) -> Pipeline {
        Pipeline {
            backend,
            inputs: None,
            flusher: None,
            faults,
        }
    }

    /// Runs [`Pipeline::run`], turning a panic (a bug in looptune, never the kernel's doing:
    /// generated code does not unwind) into a `RuntimeError` rather than losing the process.
    pub(crate) fn run_guarded(
        &mut self,
        options: &MeasureOptions,
        target: &Target,
        input: &MeasureInput,
        reference: &Reference,
    ) -> PipelineOutcome {
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.run(options, target, input, reference)
        }));
        result.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            // The cached state may be half-built; start afresh.
            self.inputs = None;
            PipelineOutcome {
                outcome: Err(error(
                    MeasureErrorKind::RuntimeError,
                    format!("measuring `{}` panicked: {message}", input.nest.name),
                )),
                compile_ms: None,
                check_ms: None,
            }
        })
    }

    /// Verifies, compiles, checks and times one candidate (see the module documentation).
    pub(crate) fn run(
        &mut self,
        options: &MeasureOptions,
        target: &Target,
        input: &MeasureInput,
        reference: &Reference,
    ) -> PipelineOutcome {
        let mut outcome = PipelineOutcome {
            outcome: Err(error(MeasureErrorKind::RuntimeError, "not measured")),
            compile_ms: None,
            check_ms: None,
        };
        outcome.outcome = self.steps(options, target, input, reference, &mut outcome);
        outcome
    }

    fn steps(
        &mut self,
        options: &MeasureOptions,
        target: &Target,
        input: &MeasureInput,
        reference: &Reference,
        times: &mut PipelineOutcome,
    ) -> Result<Costs, MeasureError> {
        // The worker receives options it did not validate itself: a bad value is the run's
        // fault, not the kernel's.
        options
            .validate()
            .map_err(|problem| error(MeasureErrorKind::Environment, problem.to_string()))?;
        let start = Instant::now();
        let deadline = super::timing::deadline_after(options.timeout);
        let nest = &input.nest;
        check_signature(&input.program, nest)
            .map_err(|message| error(MeasureErrorKind::InvalidConfig, message))?;
        verify(nest).map_err(|problem| {
            error(
                MeasureErrorKind::InvalidConfig,
                format!("nest `{}` does not verify: {problem}", nest.name),
            )
        })?;
        // The verifier rejects accesses provably out of bounds and lets through those it cannot
        // prove either way; generated code has no bounds checks, so those are refused here.
        if let Some(access) = unproven_accesses(nest).into_iter().next() {
            return Err(error(
                MeasureErrorKind::InvalidConfig,
                format!(
                    "nest `{}` has an access not proven in bounds, which compiled code would \
                     not check: {access}",
                    nest.name
                ),
            ));
        }
        if input.fault.is_some() && self.faults == Faults::Refused {
            return Err(error(
                MeasureErrorKind::InvalidConfig,
                format!(
                    "candidate `{}` asks for fault injection, which only a worker process \
                     started with {FAULT_INJECTION_ENV}=1 honours",
                    nest.name
                ),
            ));
        }

        let compile_start = Instant::now();
        let kernel = self
            .backend
            .compile(nest, target)
            .map_err(|compile_error| {
                error(MeasureErrorKind::CompileError, compile_error.to_string())
            })?;
        times.compile_ms = Some(compile_start.elapsed().as_secs_f64() * 1e3);
        let over = |what: &str| {
            error(
                MeasureErrorKind::Timeout,
                format!(
                    "`{}` {what} took {:.2} s, over the timeout of {:.2} s",
                    nest.name,
                    start.elapsed().as_secs_f64(),
                    options.timeout.as_secs_f64()
                ),
            )
        };
        if Instant::now() > deadline {
            return Err(over("compiling"));
        }

        let check_start = Instant::now();
        let inputs = inputs_for(&mut self.inputs, &input.program, reference.seed);
        let input_refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let mut outputs: Vec<Data> = nest
            .outputs
            .iter()
            .map(|&buffer| {
                let decl = nest.buffer(buffer);
                Data::zeros(decl.dtype, decl.len())
            })
            .collect();
        // All-ones bytes are NaN in a float; integers get a second run over another fill below.
        for output in &mut outputs {
            output.as_mut().fill_bytes(0xFF);
        }
        let mut output_refs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
        if let Some(fault) = input.fault {
            inject(fault);
        }
        let call_error = |call_error: crate::error::CallError| {
            error(
                MeasureErrorKind::RuntimeError,
                format!("calling `{}`: {call_error}", nest.name),
            )
        };
        let call_start = Instant::now();
        kernel
            .call_data(&input_refs, &mut output_refs)
            .map_err(call_error)?;
        let first_call = call_start.elapsed();
        drop(output_refs);
        reference.check_data(&outputs.iter().map(Data::as_ref).collect::<Vec<_>>())?;
        if reference.has_integer_output() {
            // An element the kernel never writes keeps its fill; under a second fill it cannot
            // equal the reference both times.
            for output in &mut outputs {
                output.as_mut().fill_bytes(0x5A);
            }
            let mut output_refs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
            kernel
                .call_data(&input_refs, &mut output_refs)
                .map_err(call_error)?;
            drop(output_refs);
            reference.check_data(&outputs.iter().map(Data::as_ref).collect::<Vec<_>>())?;
        }
        times.check_ms = Some(check_start.elapsed().as_secs_f64() * 1e3);
        let now = Instant::now();
        if now > deadline {
            return Err(over("compiling and checking"));
        }
        // A kernel so slow that the calls still to come cannot fit is stopped now rather than
        // killed later (which would cost a worker restart). The first call is a little slower
        // than warm ones, hence the margin.
        let calls_left = options.warmup + options.repeat * options.number;
        let needed = first_call.mul_f64(calls_left as f64 * 0.8);
        let remaining = deadline - now;
        if needed > remaining {
            return Err(error(
                MeasureErrorKind::Timeout,
                format!(
                    "`{}` takes {:.2} s per call; {calls_left} more calls would need about \
                     {:.1} s, past the timeout of {:.2} s",
                    nest.name,
                    first_call.as_secs_f64(),
                    needed.as_secs_f64() / 0.8,
                    options.timeout.as_secs_f64()
                ),
            ));
        }

        if options.flush_cache && self.flusher.is_none() {
            self.flusher = Some(CacheFlusher::new());
        }
        let flusher = self.flusher.as_mut().filter(|_| options.flush_cache);
        let mut output_refs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
        time_calls(options, deadline, input.best_s, flusher, || {
            kernel.call_data(&input_refs, &mut output_refs)
        })
        .map_err(|timing_error| match timing_error {
            TimingError::Call(call) => call_error(call),
            TimingError::Deadline { calls } => error(
                MeasureErrorKind::Timeout,
                format!(
                    "`{}` was still being timed when the timeout of {:.2} s passed ({calls} \
                     calls made)",
                    nest.name,
                    options.timeout.as_secs_f64()
                ),
            ),
        })
    }
}

/// The random inputs of `program` for `seed` from `cache`, regenerated only when the seed or
/// the input lengths change.
fn inputs_for<'a>(cache: &'a mut Option<CachedInputs>, program: &Program, seed: u64) -> &'a [Data] {
    let lens: Vec<usize> = program
        .inputs()
        .iter()
        .map(|&tensor| program.tensor(tensor).len())
        .collect();
    let fresh = !matches!(cache, Some(cached) if cached.seed == seed && cached.lens == lens);
    if fresh {
        let inputs = random_data(program, seed);
        *cache = Some(CachedInputs { seed, lens, inputs });
    }
    match cache {
        Some(cached) => &cached.inputs,
        None => unreachable!("inputs were just stored"),
    }
}

/// Checks that the nest's parameters are the program's placeholders and outputs, in order,
/// with the same number of elements of the same dtype: a nest lowered from another program would be
/// compared with the wrong reference. Buffers are flat row-major memory, so a layout may
/// declare a parameter with another shape over the same elements (a 1x1 convolution computed
/// as a GEMM writes its NCHW output as `[n, oc, oh * ow]`); the element count is what the
/// kernel and the reference must agree on.
fn check_signature(program: &Program, nest: &LoopNest) -> Result<(), String> {
    let roles = [
        ("input", program.inputs(), &nest.inputs),
        ("output", program.outputs.clone(), &nest.outputs),
    ];
    for (role, tensors, buffers) in roles {
        if tensors.len() != buffers.len() {
            return Err(format!(
                "nest `{}` has {} {role} buffers but program `{}` has {}",
                nest.name,
                buffers.len(),
                program.name,
                tensors.len()
            ));
        }
        for (position, (&tensor, &buffer)) in tensors.iter().zip(buffers.iter()).enumerate() {
            let expected = program.tensor(tensor);
            let Some(actual) = nest.buffers.get(buffer.index()) else {
                return Err(format!(
                    "nest `{}` {role} {position} is buffer id {}, which is not declared",
                    nest.name, buffer.0
                ));
            };
            if actual.len() != expected.len() || actual.dtype != expected.dtype {
                return Err(format!(
                    "nest `{}` {role} {position} `{}` is {} {:?}, but program `{}` has `{}` \
                     as {} {:?}",
                    nest.name,
                    actual.name,
                    actual.dtype,
                    actual.shape,
                    program.name,
                    expected.name,
                    expected.dtype,
                    expected.shape
                ));
            }
        }
    }
    Ok(())
}

/// Makes the process fail the way a faulty kernel would (see [`Fault`]). Never returns.
fn inject(fault: Fault) -> ! {
    match fault {
        Fault::Segfault => {
            // An address in the first page, which Linux and macOS never map (`mmap_min_addr`).
            let address = std::ptr::without_provenance_mut::<u64>(64);
            // SAFETY: none; this is the deliberate crash of the fault-injection test hook, only
            // reachable in a worker process started with the fault-injection variable. The
            // store faults, the process dies of SIGSEGV, and nothing after it runs.
            unsafe { std::ptr::write_volatile(address, 0) };
            std::process::abort()
        }
        Fault::IllegalInstruction => {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: none; `ud2` raises SIGILL deliberately (test hook, as above).
            unsafe {
                std::arch::asm!("ud2", options(nomem, nostack))
            };
            #[cfg(target_arch = "aarch64")]
            // SAFETY: none; `udf` raises SIGILL deliberately (test hook, as above).
            unsafe {
                std::arch::asm!("udf #0", options(nomem, nostack))
            };
            std::process::abort()
        }
        Fault::Abort => std::process::abort(),
        Fault::Hang => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CompileError;
    use crate::measure::CheckMode;
    use looptune_ir::{lower, Schedule, Workload};

    fn candidate(text: &str) -> MeasureInput {
        let workload: Workload = text.parse().expect("a workload");
        let program = workload
            .program(&looptune_ir::Layout::default())
            .expect("a program");
        let nest = lower(&Schedule::new(&program)).expect("the default schedule lowers");
        MeasureInput::new(program, nest, workload.flops())
    }

    /// A backend that compiles nothing: these tests stop before compiling. (A correct kernel
    /// checked and timed is tested with each real backend, in its own crate.)
    struct Refusing;

    impl Backend for Refusing {
        fn compile(&self, nest: &LoopNest, _: &Target) -> Result<crate::Kernel, CompileError> {
            Err(CompileError::UnsupportedOp {
                what: format!("compiling `{}` in a test", nest.name),
            })
        }
        fn id(&self) -> crate::BackendId {
            crate::BackendId {
                name: "refusing".to_string(),
                version: "0".to_string(),
            }
        }
        fn spec(&self) -> crate::BackendSpec {
            crate::BackendSpec {
                name: "refusing".to_string(),
                settings: Vec::new(),
            }
        }
        fn vector_lanes(&self, _: &Target) -> usize {
            4
        }
        fn vector_registers(&self, _: &Target) -> usize {
            16
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline::new(Arc::new(Refusing), Faults::Refused)
    }

    #[test]
    fn a_compile_error_is_a_compile_error_record() {
        let input = candidate("matmul:m=7,n=9,k=5");
        let reference = Reference::compute(&input.program, CheckMode::Auto).expect("reference");
        let outcome = pipeline().run_guarded(
            &MeasureOptions::quick(),
            &Target::host(),
            &input,
            &reference,
        );
        let error = outcome.outcome.unwrap_err();
        assert_eq!(error.kind, MeasureErrorKind::CompileError);
        assert!(error.message.contains("`matmul`"), "{error}");
    }

    #[test]
    fn a_nest_of_another_program_is_an_invalid_config() {
        let input = candidate("matmul:m=7,n=9,k=5");
        let other = candidate("matmul:m=7,n=9,k=6");
        let mismatched = MeasureInput::new(input.program.clone(), other.nest, 0.0);
        let reference = Reference::compute(&input.program, CheckMode::Auto).expect("reference");
        let outcome = pipeline().run(
            &MeasureOptions::quick(),
            &Target::host(),
            &mismatched,
            &reference,
        );
        let error = outcome.outcome.unwrap_err();
        assert_eq!(error.kind, MeasureErrorKind::InvalidConfig);
        assert!(error.message.contains("`A` is f32 [7, 6]"), "{error}");
    }

    #[test]
    fn faults_are_refused_unless_allowed() {
        let input = candidate("matmul:m=2,n=2,k=2").with_fault(Fault::Segfault);
        let reference = Reference::compute(&input.program, CheckMode::Auto).expect("reference");
        let outcome = pipeline().run(
            &MeasureOptions::quick(),
            &Target::host(),
            &input,
            &reference,
        );
        let error = outcome.outcome.unwrap_err();
        assert_eq!(error.kind, MeasureErrorKind::InvalidConfig);
        assert!(error.message.contains(FAULT_INJECTION_ENV), "{error}");
    }
}
