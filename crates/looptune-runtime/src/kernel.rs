//! A compiled kernel and its safe call API, the same for every backend.
//!
//! A backend compiles a nest to code with the entry signature `(args, runtime)` (see
//! [`crate::runtime`]) and hands the entry's address to [`Kernel::from_entry`] together with
//! whatever owns the code (a Cranelift JIT module, a loaded shared object): the kernel keeps the
//! owner alive for as long as the entry can be called and drops it last. Calls check the buffers
//! against the nest's parameter declarations and then run the code on the caller's thread (and,
//! for parallel loops, on the shared rayon pool of the target's thread count).

use crate::error::CallError;
use crate::runtime::{pool_for, Runtime};
use looptune_ir::{DType, DataMut, DataRef, LoopNest};
use rayon::ThreadPool;
use std::any::Any;
use std::sync::Arc;

/// The entry point of generated code: `(args, runtime)`.
type EntryFn = unsafe extern "C" fn(*const *mut u8, *const Runtime);

/// What keeps a kernel's code mapped: dropped after everything else of the kernel.
pub type CodeOwner = Box<dyn Any + Send + Sync>;

/// A parameter as the call API checks it.
#[derive(Clone, Debug)]
struct Param {
    name: String,
    len: usize,
    dtype: DType,
}

/// A loop nest compiled to host code, callable any number of times.
///
/// Calls only check slice counts and lengths (a few comparisons) and allocate nothing for
/// kernels with up to 16 parameters, so a measurer can call a kernel in a tight timing loop.
///
/// Buffers are accessed with unaligned loads and stores, so slices need no alignment beyond
/// their element type's. [`Kernel::call`] takes `f32` slices, [`Kernel::call_data`] slices of
/// any dtype; both check each slice's element type against its parameter's. Soundness rests on the nest accessing only in-bounds elements of its
/// buffers, which the IR's verifier checks for every lowered nest; the back end checks the rest
/// (parameter dtypes, no stores to inputs, index ranks) when compiling.
pub struct Kernel {
    entry: EntryFn,
    runtime: Box<Runtime>,
    name: String,
    inputs: Vec<Param>,
    outputs: Vec<Param>,
    uses_parallel: bool,
    source: Option<String>,
    // Kept alive because `runtime` points into it.
    _pool: Option<Arc<ThreadPool>>,
    // Last, so that everything pointing into the code is gone before the code is freed.
    _code: CodeOwner,
}

// `Kernel` is `Send + Sync` because each field is: the entry is a function pointer to code that
// is immutable once loaded, the runtime table says why it may be shared (`runtime.rs`), and the
// code's owner is required to be `Send + Sync` by its type.

impl Kernel {
    /// Wraps compiled code for `nest`, running its parallel loops on the pool of `threads`
    /// threads when `uses_parallel`. `source` is the text the backend generated (CLIF, C), kept
    /// for looking at; `code` owns the memory `entry` points into.
    ///
    /// # Safety
    /// `entry` must be the address of a function with the C calling convention and the
    /// signature `fn(args: *const *mut u8, runtime: *const Runtime)` generated from `nest`: it
    /// reads one pointer per parameter (inputs, then outputs) from `args`, accesses only the
    /// elements each parameter declares, writes no input, calls back only into the runtime
    /// table it is given, and stays valid for as long as `code` is alive.
    pub unsafe fn from_entry(
        nest: &LoopNest,
        entry: *const u8,
        uses_parallel: bool,
        threads: usize,
        source: Option<String>,
        code: CodeOwner,
    ) -> Kernel {
        let params = |ids: &[looptune_ir::BufferId]| {
            ids.iter()
                .map(|id| {
                    let decl = nest.buffer(*id);
                    Param {
                        name: decl.name.clone(),
                        len: decl.len(),
                        dtype: decl.dtype,
                    }
                })
                .collect()
        };
        let pool = if uses_parallel {
            pool_for(threads)
        } else {
            None
        };
        let runtime = Box::new(Runtime::new(pool.as_ref()));
        // SAFETY: the caller promises `entry` is such a function (this function's contract).
        let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(entry) };
        Kernel {
            entry,
            runtime,
            name: nest.name.clone(),
            inputs: params(&nest.inputs),
            outputs: params(&nest.outputs),
            uses_parallel,
            source,
            _pool: pool,
            _code: code,
        }
    }

    /// The nest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the kernel runs any loop on the thread pool.
    pub fn uses_parallel(&self) -> bool {
        self.uses_parallel
    }

    /// The code the backend generated, as text (the optimized CLIF of a Cranelift kernel when
    /// the backend was asked to keep it, the C of a C kernel), for looking at.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The element counts the kernel expects: inputs, then outputs.
    pub fn param_lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .map(|param| param.len)
    }

    /// Checks the number of slices and each slice's `(dtype, length)` against the parameters.
    fn check(
        &self,
        counts: (usize, usize),
        slices: impl Iterator<Item = (DType, usize)>,
    ) -> Result<(), CallError> {
        let (inputs, outputs) = counts;
        let counts = [
            ("input", self.inputs.len(), inputs),
            ("output", self.outputs.len(), outputs),
        ];
        for (role, expected, actual) in counts {
            if expected != actual {
                return Err(CallError::BufferCount {
                    kernel: self.name.clone(),
                    role,
                    expected,
                    actual,
                });
            }
        }
        let roles =
            std::iter::repeat_n("input", inputs).chain(std::iter::repeat_n("output", outputs));
        for ((param, role), (dtype, actual)) in self
            .inputs
            .iter()
            .chain(&self.outputs)
            .zip(roles)
            .zip(slices)
        {
            if param.dtype != dtype {
                return Err(CallError::BufferDType {
                    role,
                    buffer: param.name.clone(),
                    expected: param.dtype,
                    actual: dtype,
                });
            }
            if param.len != actual {
                return Err(CallError::BufferLength {
                    role,
                    buffer: param.name.clone(),
                    expected: param.len,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Runs the kernel on `f32` `inputs` (in the nest's input order) writing `outputs` (in its
    /// output order), after checking their number, element types and lengths. Nothing runs when
    /// an error is returned.
    pub fn call(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), CallError> {
        let slices = inputs
            .iter()
            .map(|slice| (DType::F32, slice.len()))
            .chain(outputs.iter().map(|slice| (DType::F32, slice.len())));
        self.check((inputs.len(), outputs.len()), slices)?;
        let count = inputs.len() + outputs.len();
        let pointers = inputs
            .iter()
            // Generated code never stores to inputs (checked when compiling), so passing a
            // pointer derived from a shared slice as `*mut` is only a type-level formality.
            .map(|slice| slice.as_ptr() as *mut u8)
            .chain(
                outputs
                    .iter_mut()
                    .map(|slice| slice.as_mut_ptr() as *mut u8),
            );
        // SAFETY: `check` established one slice per parameter, in order, each of its
        // parameter's dtype and exact element count; the output slices are exclusively
        // borrowed for the call.
        unsafe { self.invoke(count, pointers) };
        Ok(())
    }

    /// Runs the kernel on typed `inputs` writing typed `outputs`, after checking their number,
    /// dtypes and lengths: [`Kernel::call`] for nests with integer (or mixed) parameters.
    pub fn call_data(
        &self,
        inputs: &[DataRef<'_>],
        outputs: &mut [DataMut<'_>],
    ) -> Result<(), CallError> {
        let slices = inputs
            .iter()
            .map(|slice| (slice.dtype(), slice.len()))
            .chain(outputs.iter().map(|slice| (slice.dtype(), slice.len())));
        self.check((inputs.len(), outputs.len()), slices)?;
        let count = inputs.len() + outputs.len();
        let pointers = inputs
            .iter()
            // Never stored to, as in `call`.
            .map(|slice| slice.as_ptr() as *mut u8)
            .chain(outputs.iter_mut().map(|slice| slice.as_mut_ptr()));
        // SAFETY: as in `call`: `check` established count, dtypes and lengths, and the
        // outputs are exclusively borrowed.
        unsafe { self.invoke(count, pointers) };
        Ok(())
    }

    /// Calls the entry with `pointers` (inputs, then outputs).
    ///
    /// # Safety
    /// `pointers` yields exactly `count` pointers, one per parameter in order, each to live
    /// memory holding the parameter's declared dtype and element count, outputs writable and
    /// not aliased for the duration of the call.
    unsafe fn invoke(&self, count: usize, pointers: impl Iterator<Item = *mut u8>) {
        const INLINE: usize = 16;
        let mut inline = [std::ptr::null_mut::<u8>(); INLINE];
        let mut spilled = Vec::new();
        let args: &mut [*mut u8] = if count <= INLINE {
            &mut inline[..count]
        } else {
            spilled.resize(count, std::ptr::null_mut());
            &mut spilled
        };
        for (slot, pointer) in args.iter_mut().zip(pointers) {
            *slot = pointer;
        }
        // SAFETY: the caller promises one pointer per parameter, in the order the code loads
        // them, each to live memory of the declared dtype and element count, outputs
        // exclusively borrowed; the compiled nest only accesses in-bounds elements (see the
        // type's docs), writes only outputs, and uses unaligned accesses, so the element
        // type's alignment suffices. `self.runtime` outlives the call.
        unsafe { (self.entry)(args.as_ptr(), &*self.runtime) };
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("uses_parallel", &self.uses_parallel)
            .finish_non_exhaustive()
    }
}
