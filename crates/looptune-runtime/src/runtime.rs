//! The host functions generated code calls back into: the parallel-for driver and the heap
//! allocator for large temporaries.
//!
//! Generated code reaches them through a [`Runtime`] table whose address is passed to every
//! kernel call, rather than through symbols resolved by a linker: no `dlsym`, no relocations,
//! and the thread pool travels with the table. Every backend's code uses the same table: the
//! Cranelift backend loads from the byte offsets below, the C backend declares the same struct.

use rayon::ThreadPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The signature of an outlined parallel-loop body: `(args, captured, start, end, runtime)`.
pub type BodyFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *const Runtime);

/// The table of host functions, laid out for generated code to load from fixed offsets. Only
/// [`crate::Kernel`] makes one; backends need its layout, never a value.
#[repr(C)]
pub struct Runtime {
    /// Offset 0: runs an outlined body over `0..extent` on the pool.
    pub parallel_for: unsafe extern "C" fn(*const Runtime, BodyFn, *const *mut u8, *const i64, i64),
    /// Offset 8: allocates an uninitialised, 64-byte-aligned block of `bytes` bytes.
    pub alloc: unsafe extern "C" fn(usize) -> *mut u8,
    /// Offset 16: frees a block from `alloc` of the same size.
    pub free: unsafe extern "C" fn(*mut u8, usize),
    /// Offset 24: the pool, or null for a single-threaded target.
    pub pool: *const ThreadPool,
    /// Offset 32: the number of threads of the pool.
    pub threads: usize,
}

// The layout generated code relies on: five 8-byte words, at the offsets below (the printed C
// declares the same struct; the Cranelift code loads from these offsets).
const _: () = assert!(std::mem::size_of::<Runtime>() == 40);
const _: () = assert!(std::mem::offset_of!(Runtime, parallel_for) == RUNTIME_PARALLEL_FOR as usize);
const _: () = assert!(std::mem::offset_of!(Runtime, alloc) == RUNTIME_ALLOC as usize);
const _: () = assert!(std::mem::offset_of!(Runtime, free) == RUNTIME_FREE as usize);
const _: () = assert!(std::mem::offset_of!(Runtime, pool) == 24);
const _: () = assert!(std::mem::offset_of!(Runtime, threads) == 32);

// SAFETY: the table is never written after `Runtime::new`; its function pointers are plain
// `extern "C"` functions and `pool` points at a `ThreadPool` (which is `Sync`) kept alive by the
// kernel that owns the table, so sharing or sending the table between threads is sound.
unsafe impl Send for Runtime {}
// SAFETY: as above.
unsafe impl Sync for Runtime {}

/// Byte offset of [`Runtime::parallel_for`], as generated code loads it.
pub const RUNTIME_PARALLEL_FOR: i32 = 0;
/// Byte offset of [`Runtime::alloc`].
pub const RUNTIME_ALLOC: i32 = 8;
/// Byte offset of [`Runtime::free`].
pub const RUNTIME_FREE: i32 = 16;

impl Runtime {
    /// A table using `pool` (kept alive by the caller for as long as the table is used).
    pub(crate) fn new(pool: Option<&Arc<ThreadPool>>) -> Runtime {
        Runtime {
            parallel_for,
            alloc: heap_alloc,
            free: heap_free,
            pool: pool.map_or(std::ptr::null(), Arc::as_ptr),
            threads: pool.map_or(1, |pool| pool.current_num_threads()),
        }
    }
}

/// The shared pool for `threads` threads: created once per thread count and reused by every
/// kernel, because creating threads per call would dominate small kernels' run time.
pub(crate) fn pool_for(threads: usize) -> Option<Arc<ThreadPool>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    if threads <= 1 {
        return None;
    }
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked while inserting; the map is still a
    // valid cache.
    let mut pools = pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Some(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|index| format!("looptune-worker-{index}"))
        .build()
        .ok()?;
    let pool = Arc::new(pool);
    pools.insert(threads, Arc::clone(&pool));
    Some(pool)
}

/// The raw pointers one parallel loop shares with its worker threads.
#[derive(Clone, Copy)]
struct SharedCall {
    body: BodyFn,
    args: *const *mut u8,
    captured: *const i64,
    runtime: *const Runtime,
}

// SAFETY: the pointers are only dereferenced by the generated body while `parallel_for` blocks
// on the pool, so everything they point to (the caller's buffers, the captured words on the
// caller's stack, the runtime table) outlives every use; the loop IR guarantees that the
// iterations of a parallel loop write disjoint elements, so concurrent bodies do not race.
unsafe impl Send for SharedCall {}
// SAFETY: as above; the struct itself is only read.
unsafe impl Sync for SharedCall {}

impl SharedCall {
    fn run(&self, start: i64, end: i64) {
        // SAFETY: see the `Send` impl; `parallel_for` gives each chunk a disjoint range.
        unsafe { (self.body)(self.args, self.captured, start, end, self.runtime) };
    }
}

/// Runs `body` over `0..extent` split into contiguous chunks on the runtime's pool.
unsafe extern "C" fn parallel_for(
    runtime: *const Runtime,
    body: BodyFn,
    args: *const *mut u8,
    captured: *const i64,
    extent: i64,
) {
    let shared = SharedCall {
        body,
        args,
        captured,
        runtime,
    };
    // SAFETY: generated code passes the table the kernel was called with, which `Kernel::call`
    // keeps alive for the whole call.
    let table = unsafe { &*runtime };
    if table.pool.is_null() || extent <= 1 {
        // SAFETY: the body is generated for exactly these arguments and range.
        unsafe { body(args, captured, 0, extent, runtime) };
        return;
    }
    // SAFETY: the pool pointer comes from the `Arc` the kernel holds for its whole life.
    let pool = unsafe { &*table.pool };
    // A few chunks per thread let work stealing even out a thread that was descheduled, while
    // keeping the per-chunk call overhead negligible.
    let chunks = extent.min(4 * table.threads as i64);
    pool.install(|| {
        use rayon::prelude::*;
        (0..chunks).into_par_iter().for_each(|chunk| {
            let start = extent * chunk / chunks;
            let end = extent * (chunk + 1) / chunks;
            // A method call, so that the closure captures the whole `Send` struct rather than its
            // raw-pointer fields one by one.
            shared.run(start, end);
        });
    });
}

/// Alignment of heap temporaries: a cache line, so that no two threads' temporaries share one.
const HEAP_ALIGN: usize = 64;

/// Temporaries at least this large (a packed panel of a large GEMM) are aligned to a huge page
/// and offered to the kernel as huge-page backed (`MADV_HUGEPAGE`): streaming megabytes through
/// 4 KiB pages costs a TLB miss every 1,024 floats.
const HUGE_PAGE: usize = 2 << 20;

/// The alignment of a heap temporary of `bytes` bytes (the same for allocating and freeing).
fn heap_align(bytes: usize) -> usize {
    if bytes >= HUGE_PAGE {
        HUGE_PAGE
    } else {
        HEAP_ALIGN
    }
}

unsafe extern "C" fn heap_alloc(bytes: usize) -> *mut u8 {
    let layout = match std::alloc::Layout::from_size_align(bytes.max(1), heap_align(bytes)) {
        Ok(layout) => layout,
        // Sizes come from buffer declarations that already fit in memory; a layout error here
        // cannot be reported through generated code, so it ends the process like an OOM would.
        Err(_) => std::process::abort(),
    };
    // SAFETY: the layout has a non-zero size.
    let block = unsafe { std::alloc::alloc(layout) };
    if block.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    #[cfg(target_os = "linux")]
    if bytes >= HUGE_PAGE {
        // SAFETY: the range is the block just allocated, huge-page aligned; `madvise` with
        // MADV_HUGEPAGE only changes how the kernel backs it and never invalidates it. Failure
        // (no THP support) leaves ordinary pages, which is fine.
        unsafe { libc::madvise(block.cast(), bytes, libc::MADV_HUGEPAGE) };
    }
    block
}

unsafe extern "C" fn heap_free(block: *mut u8, bytes: usize) {
    if let Ok(layout) = std::alloc::Layout::from_size_align(bytes.max(1), heap_align(bytes)) {
        // SAFETY: generated code frees each block from `heap_alloc` exactly once, with the size
        // it was allocated with.
        unsafe { std::alloc::dealloc(block, layout) };
    }
}
