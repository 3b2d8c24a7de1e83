//! Loading a compiled kernel: the one place this crate runs `unsafe` code.

use looptune_ir::LoopNest;
use looptune_runtime::{CompileError, Kernel};
use std::path::Path;

/// Loads the shared object at `object` and wraps its `entry` as the kernel of `nest`.
pub(crate) fn load(
    nest: &LoopNest,
    object: &Path,
    entry: &str,
    source: String,
    threads: usize,
) -> Result<Kernel, CompileError> {
    let failed = |message: String| CompileError::Load {
        path: object.display().to_string(),
        message,
    };
    // SAFETY: loading runs the object's initialisers. The object is one the printer's C was
    // compiled to (the cache only hands out objects whose source file holds exactly the text
    // compiled); printed C has no initialisers, constructors or thread-local state.
    let library =
        unsafe { libloading::Library::new(object) }.map_err(|error| failed(error.to_string()))?;
    let address = {
        // SAFETY: the symbol is looked up as an untyped address; it is only called through
        // `Kernel`, whose contract the printer's ABI meets (see below).
        let symbol = unsafe { library.get::<*const u8>(entry.as_bytes()) }
            .map_err(|error| failed(format!("no entry point `{entry}`: {error}")))?;
        // `get::<*const u8>` yields the symbol's address itself.
        *symbol
    };
    let uses_parallel = crate::backend::uses_parallel(nest);
    // SAFETY: `entry` is the printed kernel's one exported function, `void looptune_entry(void
    // *const *args, const lt_runtime *rt)`, printed from `nest` with the C calling convention:
    // it reads one pointer per parameter (inputs, then outputs), accesses only elements the IR
    // verifier proved in bounds or, in a nest with an unproven access, checks every offset and
    // traps past the buffer (`lt_in`; the printer refuses nests that do not verify), stores to
    // no input (the verifier refuses stores to inputs), and calls back only into
    // the runtime table. The library stays loaded as long as the kernel: it is the kernel's
    // code owner.
    let kernel = unsafe {
        Kernel::from_entry(
            nest,
            address,
            uses_parallel,
            threads,
            Some(source),
            Box::new(library),
        )
    };
    Ok(kernel)
}
