//! Register tiles in machine code: the BLIS-style schedule of `recipes::register_tiled_matmul`
//! must compile (gcc -O2 -march=native) to a reduction loop that holds the accumulator block in
//! vector registers: vector loads of packed B, broadcasts of A and one FMA per accumulator, no
//! load or store of the tile. And the speed that buys, against a hand-written FMA peak loop.

mod common;

use looptune_cc::{emit_c, EmitOptions};
use looptune_ir::ops::MatmulParams;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{lower, LoopNest};
use std::time::Instant;

fn tiled_matmul(m: i64, n: i64, k: i64, tiling: MatmulTiling) -> LoopNest {
    let params = MatmulParams {
        m,
        n,
        k,
        transpose_b: false,
    };
    lower(&register_tiled_matmul(params, tiling).expect("recipe applies")).expect("lowers")
}

/// 6 rows x 16 columns: at 8 lanes 12 accumulators, 2 vectors of B and a broadcast of A,
/// within the 16 YMM registers of AVX2.
fn tile_6x16() -> MatmulTiling {
    MatmulTiling {
        tile_rows: 6,
        tile_columns: 16,
        unroll_reduction: 1,
        block_rows: 1,
        parallel: false,
    }
}

/// One instruction of `objdump -d --no-show-raw-insn`: address, mnemonic, operands.
struct Instruction {
    address: u64,
    mnemonic: String,
    operands: String,
}

fn parse(disassembly: &str) -> Vec<Instruction> {
    disassembly
        .lines()
        .filter_map(|line| {
            let (address, rest) = line.split_once(":\t")?;
            let address = u64::from_str_radix(address.trim(), 16).ok()?;
            let mut parts = rest.trim().splitn(2, char::is_whitespace);
            let mnemonic = parts.next()?.to_string();
            let operands = parts.next().unwrap_or("").trim().to_string();
            Some(Instruction {
                address,
                mnemonic,
                operands,
            })
        })
        .collect()
}

/// The instructions of each loop (a backward jump's target up to the jump), shortest first.
fn loops(instructions: &[Instruction]) -> Vec<&[Instruction]> {
    let mut found: Vec<&[Instruction]> = instructions
        .iter()
        .enumerate()
        .filter_map(|(end, jump)| {
            if !jump.mnemonic.starts_with('j') {
                return None;
            }
            let target = u64::from_str_radix(jump.operands.split_whitespace().next()?, 16).ok()?;
            if target >= jump.address {
                return None;
            }
            let start = instructions
                .iter()
                .position(|inst| inst.address == target)?;
            Some(&instructions[start..=end])
        })
        .collect();
    found.sort_by_key(|body| body.len());
    found
}

/// Whether an AT&T-syntax instruction writes memory (its last operand is a memory operand).
fn stores(instruction: &Instruction) -> bool {
    let last = instruction.operands.rsplit(',').next().unwrap_or("");
    last.contains('(') && !instruction.mnemonic.starts_with("prefetch")
}

fn reads_memory(instruction: &Instruction) -> bool {
    instruction.operands.contains('(') && !stores(instruction)
}

#[test]
fn accumulators_stay_in_vector_registers_across_the_reduction_loop() {
    let nest = tiled_matmul(12, 32, 64, tile_6x16());
    let source = emit_c(&nest, &EmitOptions::new(8)).expect("prints");
    let compiled = common::compile(&source).expect("compiles");
    let disassembly = common::disassemble(&compiled.shared_object(), "looptune_entry");
    let instructions = parse(&disassembly);
    let fma_loops: Vec<&[Instruction]> = loops(&instructions)
        .into_iter()
        .filter(|body| body.iter().any(|inst| inst.mnemonic.starts_with("vfmadd")))
        .collect();
    assert!(!fma_loops.is_empty(), "no FMA loop in:\n{disassembly}");
    let k_loop = fma_loops[0];
    let listing: String = k_loop
        .iter()
        .map(|inst| format!("{:x}: {} {}\n", inst.address, inst.mnemonic, inst.operands))
        .collect();
    let fmas = k_loop
        .iter()
        .filter(|inst| inst.mnemonic.starts_with("vfmadd") && inst.operands.contains("%ymm"))
        .count();
    let broadcasts = k_loop
        .iter()
        .filter(|inst| inst.mnemonic == "vbroadcastss")
        .count();
    let memory_reads = k_loop.iter().filter(|inst| reads_memory(inst)).count();
    // One FMA per accumulator vector (6 rows x 2 vectors), one broadcast of A per row, and
    // memory touched only by those broadcasts and the two vector loads of B (as loads or FMA
    // memory operands): the tile itself is neither loaded nor stored. (clang unrolls the loop:
    // then all of that once per unrolled iteration.)
    let unrolled = fmas / 12;
    assert!(unrolled >= 1 && fmas % 12 == 0, "{fmas} FMAs:\n{listing}");
    assert_eq!(broadcasts, 6 * unrolled, "{listing}");
    assert!(
        memory_reads <= (6 + 2 * 6) * unrolled,
        "{memory_reads} reads:\n{listing}"
    );
    assert!(
        !k_loop.iter().any(stores),
        "a store in the reduction loop:\n{listing}"
    );
    assert!(
        !k_loop.iter().any(|inst| inst.operands.contains("(%rsp)")),
        "a spill in the reduction loop:\n{listing}"
    );
}

/// A C loop of 12 independent FMA chains on 8-lane vectors: the peak the tiled matmul is
/// measured against, compiled by the same compiler with the same flags in the same run.
const PEAK_SOURCE: &str = r#"
typedef float lt_v8 __attribute__((vector_size(32)));
void looptune_peak(long long iterations, float *data) {
    lt_v8 x = *(lt_v8 *)data, y = *(lt_v8 *)(data + 8);
    lt_v8 a0 = x, a1 = y, a2 = x, a3 = y, a4 = x, a5 = y;
    lt_v8 a6 = x, a7 = y, a8 = x, a9 = y, a10 = x, a11 = y;
    for (long long i = 0; i < iterations; ++i) {
        a0 = a0 * x + y; a1 = a1 * x + y; a2 = a2 * x + y; a3 = a3 * x + y;
        a4 = a4 * x + y; a5 = a5 * x + y; a6 = a6 * x + y; a7 = a7 * x + y;
        a8 = a8 * x + y; a9 = a9 * x + y; a10 = a10 * x + y; a11 = a11 * x + y;
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
        __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    *(lt_v8 *)data = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
}
"#;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// GFLOP/s of the peak loop (median of `runs`).
fn peak_gflops(compiled: &common::Compiled, runs: usize) -> f64 {
    // SAFETY: `looptune_peak` is `void (long long, float *)`.
    let peak: unsafe extern "C" fn(i64, *mut f32) = unsafe { compiled.function("looptune_peak") };
    let iterations: i64 = 20_000_000;
    let mut data = [0.999f32; 32];
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            // SAFETY: `looptune_peak` reads 16 and writes 8 floats of `data`, which has 32.
            unsafe { peak(iterations, data.as_mut_ptr()) };
            (iterations * 12 * 8 * 2) as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    median(samples)
}

/// Prints the 1024^3 register-tiled matmul's GFLOP/s and its ratio to the FMA peak loop (each
/// kernel call followed by a peak measurement, medians of 7, so that a busy machine slows both
/// alike), for a 6 x 16 tile (12 accumulators at 8 lanes), the same with the reduction unrolled
/// by 4, and a 5 x 16 tile: its 5 rows of A, 4 KiB apart, share one L1 set with fewer ways
/// than 6 rows do. Run with
/// `cargo test -p looptune-cc --release --test register_tile -- --nocapture speed`.
#[test]
fn speed_of_the_register_tiled_matmul_against_the_fma_peak() {
    let size = 1024;
    let tilings = [
        ("6x16", tile_6x16()),
        (
            "6x16, k unrolled by 4",
            MatmulTiling {
                unroll_reduction: 4,
                ..tile_6x16()
            },
        ),
        (
            "5x16",
            MatmulTiling {
                tile_rows: 5,
                ..tile_6x16()
            },
        ),
    ];
    let nests: Vec<LoopNest> = tilings
        .iter()
        .map(|(_, tiling)| tiled_matmul(size, size, size, *tiling))
        .collect();
    let mut source = String::new();
    for (index, nest) in nests.iter().enumerate() {
        let options = EmitOptions::new(8).with_entry(format!("matmul_{index}"));
        source.push_str(&emit_c(nest, &options).expect("prints"));
    }
    source.push_str(PEAK_SOURCE);
    let compiled = common::compile(&source).expect("compiles");
    let n = size as usize;
    let a = common::data(n * n, 1);
    let b = common::data(n * n, 2);
    let flops = 2.0 * (size as f64).powi(3);
    for (index, (name, _)) in tilings.iter().enumerate() {
        let kernel = compiled.kernel(&format!("matmul_{index}"), &nests[index]);
        let mut c = vec![0.0f32; n * n];
        kernel.call(&[&a, &b], &mut [&mut c]);
        // Spot-check a few elements against a direct dot product.
        for (row, column) in [(0, 0), (1023, 1023), (517, 3), (6, 1021)] {
            let expected: f64 = (0..n)
                .map(|k| f64::from(a[row * n + k]) * f64::from(b[k * n + column]))
                .sum();
            let actual = f64::from(c[row * n + column]);
            assert!(
                (actual - expected).abs() < 1e-3,
                "{name}: C[{row}, {column}] = {actual}, expected {expected}"
            );
        }
        let mut matmul = Vec::new();
        let mut peak = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            kernel.call(&[&a, &b], &mut [&mut c]);
            matmul.push(flops / start.elapsed().as_secs_f64() / 1e9);
            peak.push(peak_gflops(&compiled, 1));
        }
        let (matmul, peak) = (median(matmul), median(peak));
        eprintln!(
            "register-tiled matmul 1024^3 ({name}, 8 lanes, {}): {matmul:.1} GFLOP/s; \
             C FMA peak loop: {peak:.1} GFLOP/s; ratio {:.2}",
            common::compiler(),
            matmul / peak
        );
    }
}
