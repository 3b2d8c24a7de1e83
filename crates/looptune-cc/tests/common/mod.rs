//! A test-only loader for printed C: writes it to a temporary directory, compiles it into a
//! shared object (`$CC`, else `cc`, with `-O2 -march=native -std=gnu11 -fPIC -shared`), loads it
//! with `libloading` and calls its entry points with a runtime table built here (a serial
//! `parallel_for` that still cuts the range into chunks, and a 64-byte-aligned allocator). The
//! real loader lives elsewhere; this one is kept small and only serves the tests.

#![allow(dead_code)]

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compiler the tests use.
pub fn compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|cc| !cc.is_empty())
        .unwrap_or_else(|| "cc".to_string())
}

/// The flags of every compile with `compiler`: those the real back end runs it with for the
/// host (a miscompile the back end works around must not fail a test, and one it does not must
/// not hide behind other flags), less `-w`, so that a test can see warnings.
pub fn flags(compiler: &str) -> Vec<String> {
    let flags = looptune_cc::Compiler::discover_from(Some(compiler.to_string()))
        .map(|found| found.flags(&looptune_runtime::Target::host()))
        .unwrap_or_else(|_| {
            ["-O2", "-march=native", "-std=gnu11", "-fPIC", "-shared"]
                .map(String::from)
                .to_vec()
        });
    flags.into_iter().filter(|flag| flag != "-w").collect()
}

/// A compiled and loaded C file.
pub struct Compiled {
    library: libloading::Library,
    /// Where the `.c` and `.so` files are (removed on drop).
    pub dir: tempfile::TempDir,
    /// Anything the compiler printed (warnings).
    pub diagnostics: String,
}

impl Compiled {
    /// The path of the shared object, for `objdump`.
    pub fn shared_object(&self) -> PathBuf {
        self.dir.path().join("kernel.so")
    }
}

/// Compiles `source` with `compiler` and the back end's flags plus `extra`.
pub fn compile_with(source: &str, compiler: &str, extra: &[&str]) -> Result<Compiled, String> {
    let dir = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
    let c_path = dir.path().join("kernel.c");
    let so_path = dir.path().join("kernel.so");
    std::fs::write(&c_path, source).map_err(|error| format!("write: {error}"))?;
    let output = Command::new(compiler)
        .args(flags(compiler))
        .args(extra)
        .arg("-o")
        .arg(&so_path)
        .arg(&c_path)
        .output()
        .map_err(|error| format!("running {compiler}: {error}"))?;
    let diagnostics = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let kept = keep_failed(&c_path);
        return Err(format!(
            "{compiler} failed (source kept at {kept}):\n{}",
            diagnostics.lines().take(40).collect::<Vec<_>>().join("\n")
        ));
    }
    // SAFETY: the library is the one just compiled from printed C, whose static initialisers
    // are none; loading it runs nothing else.
    let library = unsafe { libloading::Library::new(&so_path) }
        .map_err(|error| format!("loading {}: {error}", so_path.display()))?;
    Ok(Compiled {
        library,
        dir,
        diagnostics,
    })
}

/// Compiles `source` with [`compiler`].
pub fn compile(source: &str) -> Result<Compiled, String> {
    compile_with(source, &compiler(), &[])
}

/// Copies a source that failed to compile somewhere that outlives the test.
fn keep_failed(c_path: &Path) -> String {
    let kept = std::env::temp_dir().join(format!("looptune-cc-failed-{}.c", std::process::id()));
    let _ = std::fs::copy(c_path, &kept);
    kept.display().to_string()
}

type Body = unsafe extern "C" fn(*const *mut c_void, *const i64, i64, i64, *const Runtime);

/// The runtime table, laid out as `lt_runtime` (and as `looptune-jit`'s `Runtime`).
#[repr(C)]
pub struct Runtime {
    parallel_for: unsafe extern "C" fn(*const Runtime, Body, *const *mut c_void, *const i64, i64),
    alloc: unsafe extern "C" fn(usize) -> *mut c_void,
    free: unsafe extern "C" fn(*mut c_void, usize),
    pool: *const c_void,
    threads: usize,
}

/// Runs the body serially, in up to three chunks (so that bodies are exercised with ranges
/// that do not start at 0).
unsafe extern "C" fn parallel_for(
    runtime: *const Runtime,
    body: Body,
    args: *const *mut c_void,
    captured: *const i64,
    extent: i64,
) {
    let chunks = extent.clamp(1, 3);
    for chunk in 0..chunks {
        let (start, end) = (extent * chunk / chunks, extent * (chunk + 1) / chunks);
        // SAFETY: the printed code passes its own arguments through, for this range.
        unsafe { body(args, captured, start, end, runtime) };
    }
}

fn layout(bytes: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(bytes.max(1), 64).expect("temporary size fits")
}

/// Bytes past the end of every temporary from `alloc`, filled with [`GUARD_BYTE`] and checked by
/// `free`: a kernel writing past a temporary's end is caught where it happens, not as a wrong
/// element of some other buffer later.
const GUARD: usize = 256;
const GUARD_BYTE: u8 = 0xA5;

/// Temporaries whose guard was found broken, or freed wrongly (checked after every call).
static BROKEN_GUARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The live temporaries (address, bytes), so that a block freed twice, or with another size
/// than it was allocated with, is caught.
static LIVE: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn alloc(bytes: usize) -> *mut c_void {
    // SAFETY: the layout has a non-zero size.
    let block = unsafe { std::alloc::alloc(layout(bytes + GUARD)) };
    assert!(!block.is_null(), "out of memory");
    // SAFETY: the block holds `bytes + GUARD` bytes.
    unsafe { std::ptr::write_bytes(block.add(bytes), GUARD_BYTE, GUARD) };
    if let Ok(mut live) = LIVE.lock() {
        live.push((block as usize, bytes));
    }
    block.cast()
}

unsafe extern "C" fn free(block: *mut c_void, bytes: usize) {
    if let Ok(mut live) = LIVE.lock() {
        match live.iter().position(|&(at, _)| at == block as usize) {
            Some(index) => {
                let (_, allocated) = live.swap_remove(index);
                if allocated != bytes {
                    eprintln!("a temporary of {allocated} bytes was freed as {bytes} bytes");
                    BROKEN_GUARDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            None => {
                eprintln!("a block that is not a live temporary was freed ({bytes} bytes)");
                BROKEN_GUARDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        }
    }
    // SAFETY: the block came from `alloc(bytes)`, so it holds `bytes + GUARD` bytes.
    let guard = unsafe { std::slice::from_raw_parts(block.cast::<u8>().add(bytes), GUARD) };
    if guard.iter().any(|&byte| byte != GUARD_BYTE) {
        eprintln!("a kernel wrote past the end of a temporary of {bytes} bytes");
        BROKEN_GUARDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    // SAFETY: printed code frees each block from `alloc` once, with the size it asked for.
    unsafe { std::alloc::dealloc(block.cast(), layout(bytes + GUARD)) };
}

/// The runtime table the tests call kernels with.
pub fn runtime() -> Runtime {
    Runtime {
        parallel_for,
        alloc,
        free,
        pool: std::ptr::null(),
        threads: 1,
    }
}

type Entry = unsafe extern "C" fn(*const *mut c_void, *const Runtime);

/// A loaded entry point and the buffer lengths it was printed for.
pub struct Kernel<'a> {
    entry: libloading::Symbol<'a, Entry>,
    input_lengths: Vec<usize>,
    output_lengths: Vec<usize>,
}

impl Compiled {
    /// The function `name` as an `F` (a function pointer type).
    ///
    /// # Safety
    /// `F` must be the type of the C function `name`.
    pub unsafe fn function<F: Copy>(&self, name: &str) -> F {
        // SAFETY: the caller vouches for the type.
        *unsafe { self.library.get::<F>(name.as_bytes()) }
            .unwrap_or_else(|error| panic!("symbol {name}: {error}"))
    }

    /// The entry point `name`, printed for `nest`.
    pub fn kernel(&self, name: &str, nest: &looptune_ir::LoopNest) -> Kernel<'_> {
        // SAFETY: every entry the printer exports has the type `Entry`.
        let entry = unsafe { self.library.get::<Entry>(name.as_bytes()) }
            .unwrap_or_else(|error| panic!("symbol {name}: {error}"));
        let lengths =
            |ids: &[looptune_ir::BufferId]| ids.iter().map(|&id| nest.buffer(id).len()).collect();
        Kernel {
            entry,
            input_lengths: lengths(&nest.inputs),
            output_lengths: lengths(&nest.outputs),
        }
    }
}

impl Kernel<'_> {
    /// Calls the kernel; panics on buffers of the wrong count or length (the checks that make
    /// the call sound).
    pub fn call(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let input_lengths: Vec<usize> = inputs.iter().map(|buffer| buffer.len()).collect();
        let output_lengths: Vec<usize> = outputs.iter().map(|buffer| buffer.len()).collect();
        assert_eq!(input_lengths, self.input_lengths, "input lengths");
        assert_eq!(output_lengths, self.output_lengths, "output lengths");
        let args: Vec<*mut c_void> = inputs
            .iter()
            .map(|buffer| buffer.as_ptr() as *mut c_void)
            .chain(outputs.iter_mut().map(|buffer| buffer.as_mut_ptr().cast()))
            .collect();
        let runtime = runtime();
        // SAFETY: one pointer per parameter, each to as many f32s as the nest declares (checked
        // above); inputs are only read by printed code; the runtime table outlives the call.
        unsafe { (self.entry)(args.as_ptr(), &runtime) };
        assert_eq!(
            BROKEN_GUARDS.swap(0, std::sync::atomic::Ordering::SeqCst),
            0,
            "a kernel wrote past a temporary's end or freed one wrongly (see stderr)"
        );
    }
}

/// Lanes the host's registers hold (from /proc/cpuinfo): 16 with AVX-512F, 8 with AVX2, else 4.
pub fn host_lanes() -> usize {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = |flag: &str| {
        flags
            .lines()
            .filter(|line| line.starts_with("flags"))
            .any(|line| line.split_whitespace().any(|word| word == flag))
    };
    if has("avx512f") {
        16
    } else if has("avx2") {
        8
    } else {
        4
    }
}

/// Deterministic inputs in `-1..1`.
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = looptune_ir::random::SplitMix64::new(seed);
    (0..len).map(|_| rng.unit_f32()).collect()
}

/// The disassembly of one function of a shared object (`objdump -d --no-show-raw-insn`).
pub fn disassemble(shared_object: &Path, function: &str) -> String {
    let output = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(shared_object)
        .output()
        .expect("objdump runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let header = format!("<{function}>:");
    let mut lines = text.lines().skip_while(|line| !line.ends_with(&header));
    let mut body = Vec::new();
    if let Some(first) = lines.next() {
        body.push(first.to_string());
    }
    body.extend(
        lines
            .take_while(|line| !line.trim().is_empty())
            .map(str::to_string),
    );
    body.join("\n")
}
