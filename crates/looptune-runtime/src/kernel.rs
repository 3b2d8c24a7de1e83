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
use looptune_ir::LoopNest;
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
}

/// A loop nest compiled to host code, callable any number of times.
///
/// Calls only check slice counts and lengths (a few comparisons) and allocate nothing for
/// kernels with up to 16 parameters, so a measurer can call a kernel in a tight timing loop.
///
/// Buffers are accessed with unaligned loads and stores, so `f32` slices need no alignment beyond
/// their own 4 bytes. Soundness rests on the nest accessing only in-bounds elements of its
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

    fn check(&self, inputs: &[&[f32]], outputs: &[&mut [f32]]) -> Result<(), CallError> {
        let counts = [
            ("input", self.inputs.len(), inputs.len()),
            ("output", self.outputs.len(), outputs.len()),
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
        let lens = inputs
            .iter()
            .map(|slice| ("input", slice.len()))
            .chain(outputs.iter().map(|slice| ("output", slice.len())));
        for (param, (role, actual)) in self.inputs.iter().chain(&self.outputs).zip(lens) {
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

    /// Runs the kernel on `inputs` (in the nest's input order) writing `outputs` (in its output
    /// order), after checking their number and lengths. Nothing runs when an error is returned.
    pub fn call(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), CallError> {
        self.check(inputs, outputs)?;
        const INLINE: usize = 16;
        let count = inputs.len() + outputs.len();
        let mut inline = [std::ptr::null_mut::<u8>(); INLINE];
        let mut spilled = Vec::new();
        let args: &mut [*mut u8] = if count <= INLINE {
            &mut inline[..count]
        } else {
            spilled.resize(count, std::ptr::null_mut());
            &mut spilled
        };
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
        for (slot, pointer) in args.iter_mut().zip(pointers) {
            *slot = pointer;
        }
        // SAFETY: `check` established that there is one pointer per parameter, in the order the
        // code loads them, each to a live slice of exactly the declared element count; the
        // compiled nest only accesses in-bounds elements (see the type's docs), writes only
        // outputs, which are exclusively borrowed, and uses unaligned accesses, so 4-byte
        // alignment suffices. `self.runtime` outlives the call.
        unsafe { (self.entry)(args.as_ptr(), &*self.runtime) };
        Ok(())
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
