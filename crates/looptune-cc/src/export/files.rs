//! The text of the exported crate's files other than the kernels' C: `Cargo.toml`, `build.rs`,
//! the runtime table in Rust, the header, and `src/lib.rs` with its safe wrappers and tests.

use super::{ExportOptions, Prepared};

/// `Cargo.toml`: `cc` as the only build dependency, no dependency at all at run time, and an
/// empty `[workspace]` so the crate builds on its own wherever it is written.
pub(super) fn cargo_toml(options: &ExportOptions) -> String {
    format!(
        "# Written by `looptune export-c`: tuned kernels with no looptune crate in the tree.
[package]
name = \"{name}\"
version = \"0.1.0\"
edition = \"2021\"
publish = false
description = \"Tuned tensor kernels exported by looptune (C compiled by build.rs, safe Rust wrappers).\"

[dependencies]

[build-dependencies]
cc = \"1\"

# Its own workspace, so that it builds wherever it is copied.
[workspace]
",
        name = options.crate_name
    )
}

/// `build.rs`: compiles `c/kernels.c` with the `cc` crate and the flags the exporter checked it
/// with.
pub(super) fn build_rs(flags: &[String]) -> String {
    let flags: String = flags
        .iter()
        .map(|flag| format!("        .flag({flag:?})\n"))
        .collect::<Vec<_>>()
        .concat();
    format!(
        "//! Compiles the tuned kernels (`c/kernels.c`) into a static library with the system C
//! compiler, through the `cc` crate (which honours `CC` and `CFLAGS`). The kernels need GCC
//! vector extensions (gcc or clang) and are always optimised, whatever the Cargo profile.

fn main() {{
    println!(\"cargo:rerun-if-changed=c/kernels.c\");
    cc::Build::new()
        .file(\"c/kernels.c\")
        .opt_level(2)
        .warnings(false)
{flags}        .compile(\"tuned_kernels\");
}}
"
    )
}

/// `src/runtime.rs`: the table of host functions the printed C calls back into, with the same
/// layout as looptune-runtime's, implemented with `std` alone.
pub(super) fn runtime_rs() -> String {
    r#"//! The runtime table the kernels call back into: a parallel-for and an allocator for large
//! temporaries. Its layout is fixed by the C code (`struct lt_runtime` in `c/kernels.c`): five
//! 8-byte words, in this order.
//!
//! `parallel_for` splits a parallel loop into one contiguous chunk per thread and runs them on
//! scoped `std` threads, spawned per call (no pool: nothing but `std`), the calling thread
//! taking the first chunk. How many threads: [`threads`], which is
//! `std::thread::available_parallelism()`. A kernel small enough for the spawn cost to matter
//! was tuned with one thread and has no parallel loop.

use std::os::raw::c_void;
use std::sync::OnceLock;

/// An outlined parallel-loop body: `(args, captured, start, end, runtime)`.
type BodyFn = unsafe extern "C" fn(*const *mut f32, *const i64, i64, i64, *const Runtime);

/// The table passed to every kernel call.
#[repr(C)]
pub(crate) struct Runtime {
    parallel_for: unsafe extern "C" fn(*const Runtime, BodyFn, *const *mut f32, *const i64, i64),
    alloc: unsafe extern "C" fn(usize) -> *mut u8,
    free: unsafe extern "C" fn(*mut u8, usize),
    pool: *const c_void,
    threads: usize,
}

const _: () = assert!(std::mem::size_of::<Runtime>() == 40);

// SAFETY: the table is immutable after it is built; its pointers are plain functions and a
// null pool, so sharing it between threads or moving it to another is sound.
unsafe impl Sync for Runtime {}
// SAFETY: as above.
unsafe impl Send for Runtime {}

/// The number of threads a parallel loop is split into.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The one table of this process.
pub(crate) fn table() -> *const Runtime {
    static TABLE: OnceLock<Runtime> = OnceLock::new();
    TABLE.get_or_init(|| Runtime {
        parallel_for,
        alloc,
        free,
        pool: std::ptr::null(),
        threads: threads(),
    })
}

/// The pointers one parallel loop shares with its threads.
#[derive(Clone, Copy)]
struct Call {
    body: BodyFn,
    args: *const *mut f32,
    captured: *const i64,
    runtime: *const Runtime,
}

// SAFETY: the pointers are used only while `parallel_for` waits for every thread (a scope), so
// what they point at outlives each use; the iterations of a parallel loop write disjoint
// elements (the loop IR's rule), so the chunks do not race.
unsafe impl Send for Call {}

impl Call {
    fn run(self, start: i64, end: i64) {
        // SAFETY: the body was generated for exactly these arguments, and `start..end` is a
        // part of the loop's range.
        unsafe { (self.body)(self.args, self.captured, start, end, self.runtime) };
    }
}

unsafe extern "C" fn parallel_for(
    runtime: *const Runtime,
    body: BodyFn,
    args: *const *mut f32,
    captured: *const i64,
    extent: i64,
) {
    let call = Call {
        body,
        args,
        captured,
        runtime,
    };
    let chunks = (threads() as i64).min(extent);
    if chunks <= 1 {
        call.run(0, extent);
        return;
    }
    let range = |chunk: i64| (extent * chunk / chunks, extent * (chunk + 1) / chunks);
    std::thread::scope(|scope| {
        for chunk in 1..chunks {
            let (start, end) = range(chunk);
            let spawned = std::thread::Builder::new().spawn_scoped(scope, move || call.run(start, end));
            if spawned.is_err() {
                // No thread to be had: this chunk runs here instead.
                call.run(start, end);
            }
        }
        let (start, end) = range(0);
        call.run(start, end);
    });
}

/// Alignment of heap temporaries: a cache line.
const ALIGN: usize = 64;

unsafe extern "C" fn alloc(bytes: usize) -> *mut u8 {
    let Ok(layout) = std::alloc::Layout::from_size_align(bytes.max(1), ALIGN) else {
        // Sizes are compile-time constants of the kernel; one that is no layout cannot be
        // reported through C, so it ends the process as an allocation failure would.
        std::process::abort();
    };
    // SAFETY: the layout's size is not zero.
    let block = unsafe { std::alloc::alloc(layout) };
    if block.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    block
}

unsafe extern "C" fn free(block: *mut u8, bytes: usize) {
    if let Ok(layout) = std::alloc::Layout::from_size_align(bytes.max(1), ALIGN) {
        // SAFETY: the kernel frees each block from `alloc` once, with the size it asked for.
        unsafe { std::alloc::dealloc(block, layout) };
    }
}
"#
    .to_string()
}

/// `c/kernels.h`: the runtime table and one prototype per kernel, for C callers.
pub(super) fn header(prepared: &[Prepared]) -> String {
    let mut text = String::from(
        "/* Tuned kernels exported by looptune. Each takes `args`, pointers to its operands
   (inputs, then the output, in the order listed; row-major, aligned to their element) and `rt`, a
   runtime table (the Rust crate's `src/runtime.rs` builds one; a C caller provides its own). */
#ifndef LOOPTUNE_EXPORTED_KERNELS_H
#define LOOPTUNE_EXPORTED_KERNELS_H

typedef struct lt_runtime lt_runtime;
typedef void (*lt_body)(void *const *args, const long long *captured, long long start,
                        long long end, const lt_runtime *rt);
struct lt_runtime {
    void (*parallel_for)(const lt_runtime *rt, lt_body body, void *const *args,
                         const long long *captured, long long extent);
    void *(*alloc)(unsigned long bytes); /* 64-byte aligned, uninitialised */
    void (*free)(void *block, unsigned long bytes);
    const void *pool;
    unsigned long threads;
};
",
    );
    for kernel in prepared {
        let operands: Vec<String> = kernel
            .reference
            .inputs
            .iter()
            .chain(std::iter::once(&kernel.reference.output))
            .enumerate()
            .map(|(index, operand)| {
                format!(
                    "args[{index}] = {} ({} {})",
                    operand.name,
                    operand.len,
                    operand.rust_type()
                )
            })
            .collect();
        text.push_str(&format!(
            "\n/* {}: {} */\nvoid {}(void *const *args, const lt_runtime *rt);\n",
            kernel.key.replace("*/", "* /"),
            operands.join(", "),
            kernel.c_symbol
        ));
    }
    text.push_str("\n#endif\n");
    text
}

/// `src/lib.rs`: the error type, one safe wrapper per kernel and the tests.
pub(super) fn lib_rs(prepared: &[Prepared], options: &ExportOptions) -> String {
    let mut text = format!(
        "//! Tuned tensor kernels, exported by `looptune export-c` for `-march={march}`.
//!
//! Each function below is one kernel: it checks the length of every slice, then calls the C
//! code `build.rs` compiled (`c/kernels.c`, printed by looptune's C backend for the best config
//! of a tuning log). Slices are row-major tensors of the shapes and element types each
//! function lists (`u8` activations, `i8` weights and `i32` biases for quantized kernels).
//! Parallel loops run on `std` threads (see [`threads`]). `cargo test` checks every kernel on
//! random inputs against a plain loop over the operator's definition (bit for bit when
//! quantized).
//!
//! The code assumes a CPU with the instruction set it was compiled for (`-march={march}`).

#![deny(missing_docs)]

mod runtime;

pub use runtime::threads;

/// Why a kernel was not called: a slice of the wrong length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LengthError {{
    /// The kernel.
    pub kernel: &'static str,
    /// The argument.
    pub argument: &'static str,
    /// The length it must have.
    pub expected: usize,
    /// The length it had.
    pub actual: usize,
}}

impl std::fmt::Display for LengthError {{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{
        write!(
            f,
            \"`{{}}` of `{{}}` has {{}} elements; the kernel needs {{}}\",
            self.argument, self.kernel, self.expected, self.actual
        )
    }}
}}

impl std::error::Error for LengthError {{}}

fn check(kernel: &'static str, argument: &'static str, expected: usize, actual: usize) -> Result<(), LengthError> {{
    if actual == expected {{
        Ok(())
    }} else {{
        Err(LengthError {{ kernel, argument, expected, actual }})
    }}
}}

extern \"C\" {{
",
        march = options.march
    );
    for kernel in prepared {
        text.push_str(&format!(
            "    fn {}(args: *const *mut f32, rt: *const runtime::Runtime);\n",
            kernel.c_symbol
        ));
    }
    text.push_str("}\n");
    for kernel in prepared {
        text.push_str(&wrapper(kernel));
    }
    text.push_str(&tests(prepared));
    text
}

/// The Rust name of an operand in a wrapper's signature.
fn argument_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn wrapper(kernel: &Prepared) -> String {
    let reference = &kernel.reference;
    let mut parameters: Vec<String> = reference
        .inputs
        .iter()
        .map(|input| format!("{}: &[{}]", argument_name(input.name), input.rust_type()))
        .collect();
    let output = argument_name(reference.output.name);
    parameters.push(format!("{output}: &mut [{}]", reference.output.rust_type()));
    let mut docs = format!(
        "\n/// `{}`{}.\n///\n",
        kernel.key,
        kernel
            .note
            .as_ref()
            .map_or(String::new(), |note| format!(" ({note})"))
    );
    for (input, shape) in reference.inputs.iter().zip(&kernel.shapes) {
        docs.push_str(&format!(
            "/// - `{}`: input `{}`, shape {shape:?} ({} {})\n",
            argument_name(input.name),
            input.name,
            input.len,
            input.rust_type()
        ));
    }
    docs.push_str(&format!(
        "/// - `{output}`: output `{}`, shape {:?} ({} {}), every element written\n///\n/// A slice of another length is a [`LengthError`] and nothing runs.\n",
        reference.output.name,
        kernel.shapes.last().cloned().unwrap_or_default(),
        reference.output.len,
        reference.output.rust_type()
    ));
    let mut body = String::new();
    let name = &kernel.rust_name;
    for operand in reference
        .inputs
        .iter()
        .chain(std::iter::once(&reference.output))
    {
        let argument = argument_name(operand.name);
        body.push_str(&format!(
            "    check(\"{name}\", \"{argument}\", {}, {argument}.len())?;\n",
            operand.len
        ));
    }
    // The C entry takes untyped pointers (`void *const *args`); Rust declares them `*mut f32`.
    let cast = |operand: &super::reference::Operand| match operand.rust_type() {
        "f32" => "",
        _ => ".cast::<f32>()",
    };
    let mut pointers: Vec<String> = reference
        .inputs
        .iter()
        .map(|input| {
            format!(
                "{}.as_ptr().cast_mut(){}",
                argument_name(input.name),
                cast(input)
            )
        })
        .collect();
    pointers.push(format!("{output}.as_mut_ptr(){}", cast(&reference.output)));
    body.push_str(&format!(
        "    let args = [{}];
    // SAFETY: every slice has the length the kernel was printed for (checked above), so the
    // kernel's accesses stay inside them; it writes only the output, which is borrowed
    // mutably, and reads the inputs, which the borrow checker keeps from aliasing it; the
    // runtime table lives for the whole process.
    unsafe {{ {}(args.as_ptr(), runtime::table()) }};
    Ok(())
",
        pointers.join(", "),
        kernel.c_symbol
    ));
    format!(
        "{docs}pub fn {name}({}) -> Result<(), LengthError> {{\n{body}}}\n",
        parameters.join(", ")
    )
}

/// A random input of `operand`'s type, as an expression over `random`: `f32` in [-1, 1), the
/// whole range of `u8` and `i8`, a bias in `-2^16..2^16` and per-channel multipliers in
/// `2^29..2^31` (scales 0.25 to 1, so that outputs spread over the `u8` range rather than
/// saturate).
fn random_input(operand: &super::reference::Operand) -> String {
    let len = operand.len;
    match (operand.rust_type(), operand.name) {
        ("u8", _) => format!("random.integers({len}, 0, 256).into_iter().map(|v| v as u8).collect::<Vec<u8>>()"),
        ("i8", _) => format!("random.integers({len}, -128, 128).into_iter().map(|v| v as i8).collect::<Vec<i8>>()"),
        ("i32", "M") => format!("random.integers({len}, 1 << 29, 1 << 31).into_iter().map(|v| v as i32).collect::<Vec<i32>>()"),
        ("i32", _) => format!("random.integers({len}, -(1 << 16), 1 << 16).into_iter().map(|v| v as i32).collect::<Vec<i32>>()"),
        _ => format!("random.values({len})"),
    }
}

/// The tests of a quantized kernel: its output equals the integer reference bit for bit, under
/// two fills of the output (an element the kernel does not write cannot match under both), and
/// a wrong length is refused.
fn quantized_tests(
    kernel: &Prepared,
    position: usize,
    lines: &str,
    reference_name: &str,
) -> String {
    let reference = &kernel.reference;
    let (inputs, output) = call_arguments(reference);
    format!(
        "
    #[test]
    fn {name}_matches_its_reference_bit_for_bit() {{
        let mut random = Random({seed});
{lines}        let expected = {reference_name}({inputs});
        for fill in [0x00u8, 0xa5] {{
            let mut {output} = vec![fill; {out_len}];
            {name}({inputs}, &mut {output}).expect(\"lengths are right\");
            if let Some(index) = (0..{out_len}).find(|&index| {output}[index] != expected[index]) {{
                panic!(\"{name}: element {{index}} is {{}}, the reference {{}}\", {output}[index], expected[index]);
            }}
        }}
    }}
",
        name = kernel.rust_name,
        seed = 0x5eed_0000u64 + position as u64,
        out_len = reference.output.len,
        inputs = inputs,
    ) + &wrong_length_test(kernel, position, lines, "0u8")
}

/// The arguments a test passes: the inputs as `&name, ...`, and the output's name.
fn call_arguments(reference: &super::reference::Reference) -> (String, String) {
    let inputs: Vec<String> = reference
        .inputs
        .iter()
        .map(|input| format!("&{}", argument_name(input.name)))
        .collect();
    (inputs.join(", "), argument_name(reference.output.name))
}

/// The test that a kernel refuses an output one element short, naming the argument.
fn wrong_length_test(kernel: &Prepared, position: usize, lines: &str, zero: &str) -> String {
    let reference = &kernel.reference;
    let (inputs, output) = call_arguments(reference);
    format!(
        "
    #[test]
    fn {name}_refuses_a_wrong_length() {{
        let mut random = Random({seed});
{lines}        let mut {output} = vec![{zero}; {short}];
        let error = {name}({inputs}, &mut {output}).expect_err(\"the output is one short\");
        assert_eq!(error.argument, \"{output}\");
        assert_eq!((error.expected, error.actual), ({out_len}, {short}));
    }}
",
        name = kernel.rust_name,
        seed = 0x5eed_0000u64 + position as u64,
        out_len = reference.output.len,
        short = reference.output.len - 1,
        inputs = inputs,
    )
}

fn tests(prepared: &[Prepared]) -> String {
    let mut text = String::from(
        "
#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: reproducible inputs without a dependency.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// `len` values uniform in [-1, 1).
        #[allow(dead_code)]
        fn values(&mut self, len: usize) -> Vec<f32> {
            (0..len)
                .map(|_| ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
                .collect()
        }

        /// `len` integers uniform in `low..high`.
        #[allow(dead_code)]
        fn integers(&mut self, len: usize, low: i64, high: i64) -> Vec<i64> {
            (0..len)
                .map(|_| low + (self.next() % (high - low) as u64) as i64)
                .collect()
        }
    }

    /// Every element within the rounding error any f32 summation order of `terms` products can
    /// make: `(terms + 2) * EPSILON` times the sum of the absolute values of its terms.
    fn assert_close(kernel: &str, actual: &[f32], expected: &[f64], magnitudes: &[f64], terms: i64) {
        assert_eq!(actual.len(), expected.len());
        let scale = (terms + 2) as f64 * f64::from(f32::EPSILON);
        for (index, ((&actual, &expected), &magnitude)) in
            actual.iter().zip(expected).zip(magnitudes).enumerate()
        {
            let error = (f64::from(actual) - expected).abs();
            assert!(
                error <= scale * magnitude + 1e-30,
                \"{kernel}: element {index} is {actual}, the reference {expected} (error {error}, allowed {})\",
                scale * magnitude
            );
        }
    }
",
    );
    for (position, kernel) in prepared.iter().enumerate() {
        let reference = &kernel.reference;
        let reference_name = format!("reference_{}", kernel.rust_name);
        text.push('\n');
        text.push_str(&reference.function(&reference_name));
        let mut lines = String::new();
        for input in &reference.inputs {
            lines.push_str(&format!(
                "        let {} = {};\n",
                argument_name(input.name),
                random_input(input)
            ));
        }
        if reference.quant.is_some() {
            text.push_str(&quantized_tests(kernel, position, &lines, &reference_name));
            continue;
        }
        let (inputs, output) = call_arguments(reference);
        text.push_str(&format!(
            "
    #[test]
    fn {name}_matches_its_reference() {{
        let mut random = Random({seed});
{lines}        // NaN, so that an element the kernel does not write fails the comparison.
        let mut {output} = vec![f32::NAN; {out_len}];
        {name}({inputs}, &mut {output}).expect(\"lengths are right\");
        let (expected, magnitudes) = {reference_name}({inputs});
        assert_close(\"{name}\", &{output}, &expected, &magnitudes, {terms});
    }}
",
            name = kernel.rust_name,
            seed = 0x5eed_0000u64 + position as u64,
            out_len = reference.output.len,
            inputs = inputs,
            terms = reference.terms(),
        ));
        text.push_str(&wrong_length_test(kernel, position, &lines, "0.0f32"));
    }
    text.push_str("}\n");
    text
}
