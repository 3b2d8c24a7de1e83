//! The host's full-width FMA ceiling, as the C backend reaches it: the figure every "ratio to
//! peak" is taken against.
//!
//! A loop of `CHAINS` independent vector FMAs at the backend's widest width is printed, compiled
//! with the backend's compiler and flags and timed with the shared protocol
//! ([`looptune_runtime::peak::time_peak`]).
//!
//! [`measure_pair_dot_peak`] is the integer counterpart, the ceiling of quantized kernels: the
//! same loop with `vpmaddwd` (two `i16` products summed into each `i32` lane, counted as two
//! multiply-adds) and an add in place of the FMA.

use crate::backend::CBackend;
use looptune_runtime::peak::{time_peak, PeakLoop, PeakResult};
use looptune_runtime::{Backend, CompileError, PeakError, Target};

/// Independent accumulator chains: FMA latency 4 x 2 pipes needs 8; 12 leaves slack and, with
/// the two operands, fits the 16 vector registers of AVX2 (AVX-512 has 32).
const CHAINS: usize = 12;

/// `fn(operands: *const f32, out: *mut f32, iterations: i64)`.
type PeakFn = unsafe extern "C" fn(*const f32, *mut f32, i64);

/// The peak loop's C for `lanes` lanes.
fn peak_source(lanes: usize) -> String {
    let mut text = format!(
        "typedef float lt_v __attribute__((vector_size({bytes}), aligned(4)));\n\
         void looptune_peak(const float *operands, float *out, long long iterations) {{\n\
         \x20   lt_v x = *(const lt_v *)operands;\n\
         \x20   lt_v y = *(const lt_v *)(operands + {lanes});\n",
        bytes = lanes * 4
    );
    // Distinct starting values: identical chains would be merged into one by the compiler.
    for chain in 0..CHAINS {
        text.push_str(&format!("    lt_v a{chain} = y * {}.0f;\n", chain + 1));
    }
    text.push_str("    for (long long i = 0; i < iterations; i++) {\n");
    for chain in 0..CHAINS {
        // The accumulator is a multiplicand: with `x * y + a` the product is loop-invariant,
        // the compiler hoists it and the loop is additions, not FMAs.
        text.push_str(&format!("        a{chain} = a{chain} * x + y;\n"));
    }
    text.push_str("    }\n");
    for chain in 0..CHAINS {
        text.push_str(&format!(
            "    *(lt_v *)(out + {}) = a{chain};\n",
            chain * lanes
        ));
    }
    text.push_str("}\n");
    text
}

/// The integer peak loop's C for `lanes` `i32` lanes: `a = pmaddwd(a, y) + y` per chain (the
/// accumulator is an operand, so nothing is loop-invariant), on unsigned lanes where the sum
/// may wrap.
fn pair_dot_source(lanes: usize) -> String {
    let bytes = lanes * 4;
    let madd = match lanes {
        16 => "#if defined(__AVX512BW__) && defined(__clang__)
#define lt_madd(a, b) ((lt_v)__builtin_ia32_pmaddwd512((lt_h)(a), (lt_h)(b)))
#elif defined(__AVX512BW__)
#define lt_madd(a, b) ((lt_v)__builtin_ia32_pmaddwd512_mask((lt_h)(a), (lt_h)(b), (lt_v){0}, (unsigned short)-1))
",
        8 => "#if defined(__AVX2__)
#define lt_madd(a, b) ((lt_v)__builtin_ia32_pmaddwd256((lt_h)(a), (lt_h)(b)))
",
        _ => "#if defined(__SSE2__)
#define lt_madd(a, b) ((lt_v)__builtin_ia32_pmaddwd128((lt_h)(a), (lt_h)(b)))
",
    };
    let mut text = format!(
        "typedef int lt_v __attribute__((vector_size({bytes})));\n\
         typedef unsigned int lt_u __attribute__((vector_size({bytes})));\n\
         typedef short lt_h __attribute__((vector_size({bytes})));\n\
         typedef int lt_m __attribute__((vector_size({bytes}), aligned(4), may_alias));\n\
         {madd}#else\n\
         #define lt_madd(a, b) ((a) * (b))\n\
         #endif\n\
         void looptune_peak(const float *operands, float *out, long long iterations) {{\n\
         \x20   lt_v y = *(const lt_m *)operands;\n"
    );
    for chain in 0..CHAINS {
        text.push_str(&format!("    lt_v a{chain} = y + {chain};\n"));
    }
    text.push_str("    for (long long i = 0; i < iterations; i++) {\n");
    for chain in 0..CHAINS {
        text.push_str(&format!(
            "        a{chain} = (lt_v)((lt_u)lt_madd(a{chain}, y) + (lt_u)y);\n"
        ));
    }
    text.push_str("    }\n");
    for chain in 0..CHAINS {
        text.push_str(&format!(
            "    *(lt_m *)(out + {}) = a{chain};\n",
            chain * lanes
        ));
    }
    text.push_str("}\n");
    text
}

/// Measures the FMA throughput of the backend's widest vectors on `threads` threads at once.
pub fn measure_peak(backend: &CBackend, threads: usize) -> Result<PeakResult, PeakError> {
    let lanes = backend.vector_lanes(&Target::host());
    let shape = PeakLoop {
        lanes,
        chains: CHAINS,
        fma: Target::host().features.fma,
    };
    measure_loop(backend, threads, &peak_source(lanes), "peak", shape)
}

/// Measures the pair-dot throughput (`vpmaddwd`) of the backend's widest vectors on `threads`
/// threads at once: the ceiling of the quantized kernels' pair form, in operations per second
/// with a multiply-add counted as two, like the FMA peak. Its `lanes` are `i16` lanes (two per
/// `i32` lane), its `fma` false.
pub fn measure_pair_dot_peak(backend: &CBackend, threads: usize) -> Result<PeakResult, PeakError> {
    let lanes = backend.vector_lanes(&Target::host());
    let shape = PeakLoop {
        lanes: 2 * lanes,
        chains: CHAINS,
        fma: false,
    };
    measure_loop(
        backend,
        threads,
        &pair_dot_source(lanes),
        "pair-dot peak",
        shape,
    )
}

/// Compiles `source` (defining `looptune_peak` with [`PeakFn`]'s signature, reading two vectors
/// of operands and writing `CHAINS` vectors) and times it as `shape` on `threads` threads.
fn measure_loop(
    backend: &CBackend,
    threads: usize,
    source: &str,
    what: &str,
    shape: PeakLoop,
) -> Result<PeakResult, PeakError> {
    if threads == 0 {
        return Err(PeakError::NoThreads { threads });
    }
    let target = Target::host();
    let lanes = backend.vector_lanes(&target);
    let key = format!(
        "/* looptune-cc {what}: {} ({}) {} */\n{source}",
        backend.compiler().describe(),
        backend.compiler().version,
        backend.compiler().flags(&target).join(" ")
    );
    let object = backend.ensure_object(&key, &target, what)?;
    let load_error = |message: String| CompileError::Load {
        path: object.display().to_string(),
        message,
    };
    // SAFETY: the object is the peak loop printed by our caller (the cache hands out only
    // objects whose source file holds exactly that text); it has no initialisers.
    let library = unsafe { libloading::Library::new(&object) }
        .map_err(|error| load_error(error.to_string()))?;
    // SAFETY: both peak sources define `looptune_peak` with exactly `PeakFn`'s C signature.
    let function: PeakFn = *unsafe { library.get::<PeakFn>(b"looptune_peak") }
        .map_err(|error| load_error(error.to_string()))?;
    let operands: Vec<f32> = (0..2 * lanes)
        // x slightly below 1 and a small y keep every chain bounded (it tends to y / (1 - x)).
        .map(|lane| if lane < lanes { 0.999_999 } else { 1e-7 })
        .collect();
    let run = |iterations: i64| {
        let mut out = vec![0.0_f32; CHAINS * lanes];
        // SAFETY: the function reads `2 * lanes` floats from `operands` and writes
        // `CHAINS * lanes` floats to `out`, both exactly that long, and `library` (which owns
        // the code) outlives every call.
        unsafe { function(operands.as_ptr(), out.as_mut_ptr(), iterations) }
    };
    let result = time_peak(threads, shape, &run);
    drop(library);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop must be FMAs, twelve per iteration: what the peak claims to measure.
    #[test]
    fn the_peak_loop_compiles_to_fmas() {
        let Ok(compiler) = crate::Compiler::discover() else {
            return;
        };
        let target = Target::host();
        if !target.features.fma {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("peak.c");
        std::fs::write(&source, peak_source(CBackend::lanes_for(&target))).expect("write");
        let assembly = dir.path().join("peak.s");
        let mut flags = compiler.flags(&target);
        flags.retain(|flag| flag != "-shared" && flag != "-fPIC");
        flags.push("-S".to_string());
        compiler
            .compile(&source, &assembly, &flags, "peak")
            .expect("the peak loop compiles");
        let text = std::fs::read_to_string(&assembly).expect("assembly");
        let fmas = text.lines().filter(|line| line.contains("vfmadd")).count();
        assert!(fmas >= CHAINS, "{fmas} FMAs in\n{text}");
    }

    /// The integer loop must be `vpmaddwd`s where the host has AVX2.
    #[test]
    fn the_pair_dot_loop_compiles_to_pmaddwd() {
        let Ok(compiler) = crate::Compiler::discover() else {
            return;
        };
        let target = Target::host();
        if !target.features.avx2 {
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("pair.c");
        std::fs::write(&source, pair_dot_source(CBackend::lanes_for(&target))).expect("write");
        let assembly = dir.path().join("pair.s");
        let mut flags = compiler.flags(&target);
        flags.retain(|flag| flag != "-shared" && flag != "-fPIC");
        flags.push("-S".to_string());
        compiler
            .compile(&source, &assembly, &flags, "pair-dot peak")
            .expect("the pair-dot loop compiles");
        let text = std::fs::read_to_string(&assembly).expect("assembly");
        let madds = text
            .lines()
            .filter(|line| line.contains("vpmaddwd"))
            .count();
        assert!(madds >= CHAINS, "{madds} pmaddwd in\n{text}");
    }

    #[test]
    fn the_peak_loop_has_every_chain() {
        let source = peak_source(8);
        assert!(source.contains("vector_size(32)"));
        assert!(source.contains("a11 = a11 * x + y;"));
        assert!(!source.contains("#include"));
    }
}
