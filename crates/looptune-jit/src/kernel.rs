//! A compiled kernel and its safe call API.
//!
//! A [`Kernel`] owns the JIT module holding its code (one module per kernel, so dropping a
//! kernel returns its code pages: Cranelift's `JITModule` leaks them unless `free_memory` is
//! called, which [`OwnedModule`] does). Calls check the buffers against the nest's parameter
//! declarations and then run the code on the caller's thread (and, for parallel loops, on the
//! shared rayon pool of the target's thread count).

use crate::error::CallError;
use crate::runtime::{pool_for, Runtime};
use cranelift_jit::JITModule;
use looptune_ir::LoopNest;
use rayon::ThreadPool;
use std::sync::Arc;

/// A JIT module whose code is freed when it is dropped.
pub(crate) struct OwnedModule(Option<JITModule>);

impl OwnedModule {
    /// Takes ownership of `module`.
    pub(crate) fn new(module: JITModule) -> OwnedModule {
        OwnedModule(Some(module))
    }

    /// The module, for defining functions in it.
    pub(crate) fn get_mut(&mut self) -> &mut JITModule {
        // The option is only emptied in `drop`.
        self.0.as_mut().expect("module present until dropped")
    }
}

impl Drop for OwnedModule {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: function pointers into this module are held only by the `Kernel` that owns
            // it (never handed out), and the kernel is being dropped, so no code of the module
            // can run after this.
            unsafe { module.free_memory() };
        }
    }
}

/// The entry point of generated code: `(args, runtime)`.
type EntryFn = unsafe extern "C" fn(*const *mut u8, *const Runtime);

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
    clif: Option<String>,
    // Kept alive because `runtime` points into it.
    _pool: Option<Arc<ThreadPool>>,
    // Last, so that everything pointing into the code is gone before the code is freed.
    _module: OwnedModule,
}

// SAFETY: a kernel's code is immutable once finalized; `call` takes `&self` and writes only to
// the buffers its caller passes exclusively (`&mut [f32]`) and to its own stack, so concurrent
// calls from several threads do not interfere. The runtime table is read-only after
// construction, the pool is `Sync`, and the JIT module is only touched when the kernel is
// dropped, which needs ownership.
unsafe impl Send for Kernel {}
// SAFETY: as above.
unsafe impl Sync for Kernel {}

impl Kernel {
    /// Wraps compiled code for `nest` using the pool of `threads` threads.
    pub(crate) fn new(
        nest: &LoopNest,
        compiled: crate::codegen::Compiled,
        threads: usize,
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
        let pool = if compiled.uses_parallel {
            pool_for(threads)
        } else {
            None
        };
        let runtime = Box::new(Runtime::new(pool.as_ref()));
        // SAFETY: `compiled.entry` is the finalized entry function, generated with the entry
        // signature `(args, runtime)` in the platform's default calling convention, which is the
        // C calling convention on the hosts Cranelift supports.
        let entry = unsafe { std::mem::transmute::<*const u8, EntryFn>(compiled.entry) };
        Kernel {
            entry,
            runtime,
            name: nest.name.clone(),
            inputs: params(&nest.inputs),
            outputs: params(&nest.outputs),
            uses_parallel: compiled.uses_parallel,
            clif: compiled.clif,
            _pool: pool,
            _module: compiled.module,
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

    /// The optimized Cranelift IR of every function of the kernel, when the backend was asked to
    /// keep it ([`crate::CraneliftBackend::keep_clif`]).
    pub fn clif(&self) -> Option<&str> {
        self.clif.as_deref()
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
