//! Measures a hand-built register-tiled matmul against the backend's FMA peak.
//!
//! `cargo run --release -p looptune-jit --example microkernel [MR NR M N K KU] [--clif]`
//!
//! `KU` unrolls the reduction loop by that factor (it must divide `K`).
//!
//! `--clif` prints the generated Cranelift IR and machine code instead of measuring.
//!
//! The nest is the BLIS micro-kernel shape: an `MR x NR` accumulator tile allocated per output
//! block, `for k { unroll i { vectorize j { acc[i, j] = fma(A[i, k], B[k, j], acc[i, j]) } } }`,
//! with operands small enough to stay in cache, so the figure is the micro-kernel's throughput.

#![forbid(unsafe_code)]

use looptune_ir::{
    BufferDecl, BufferRole, DType, IndexExpr, Load, Loop, LoopKind, LoopNest, Stmt, ValueExpr,
    VarDecl, VarId,
};
use looptune_jit::{measure_peak, CraneliftBackend};
use looptune_runtime::{Backend, Target};
use std::time::Instant;

fn for_(var: usize, extent: i64, kind: LoopKind, body: Stmt) -> Stmt {
    Stmt::For(Box::new(Loop {
        var: VarId(var as u32),
        extent,
        kind,
        body,
    }))
}

fn var(id: usize) -> IndexExpr {
    IndexExpr::Var(VarId(id as u32))
}

fn load(buffer: u32, indices: Vec<IndexExpr>) -> ValueExpr {
    ValueExpr::Load(Load {
        buffer: looptune_ir::BufferId(buffer),
        indices,
    })
}

fn store(buffer: u32, indices: Vec<IndexExpr>, value: ValueExpr) -> Stmt {
    Stmt::Store {
        buffer: looptune_ir::BufferId(buffer),
        indices,
        value,
    }
}

fn nest(mr: i64, nr: i64, m: i64, n: i64, k: i64, ku: i64) -> LoopNest {
    let decl = |name: &str, shape: Vec<i64>, role| BufferDecl {
        name: name.to_string(),
        dtype: DType::F32,
        shape,
        role,
    };
    let buffers = vec![
        decl("A", vec![m, k], BufferRole::Input),
        decl("B", vec![k, n], BufferRole::Input),
        decl("C", vec![m, n], BufferRole::Output),
        decl("acc", vec![mr, nr], BufferRole::Temp),
    ];
    let (io, jo, ko, i, j, ki) = (0, 1, 2, 3, 4, 5);
    let vars = ["io", "jo", "ko", "i", "j", "ki"]
        .iter()
        .map(|name| VarDecl {
            name: name.to_string(),
        })
        .collect();
    let kk = var(ko) * ku + var(ki);
    let row = var(io) * mr + var(i);
    let col = var(jo) * nr + var(j);
    let tile = |body: Stmt| {
        for_(
            i,
            mr,
            LoopKind::Unrolled,
            for_(j, nr, LoopKind::Vectorized, body),
        )
    };
    let acc = || load(3, vec![var(i), var(j)]);
    let body = Stmt::Alloc {
        buffer: looptune_ir::BufferId(3),
        body: Box::new(Stmt::Seq(vec![
            tile(store(3, vec![var(i), var(j)], ValueExpr::f32(0.0))),
            for_(
                ko,
                k / ku,
                LoopKind::Serial,
                for_(
                    ki,
                    ku,
                    LoopKind::Unrolled,
                    tile(store(
                        3,
                        vec![var(i), var(j)],
                        load(0, vec![row.clone(), kk.clone()])
                            .fma(load(1, vec![kk.clone(), col.clone()]), acc()),
                    )),
                ),
            ),
            tile(store(2, vec![row.clone(), col.clone()], acc())),
        ])),
    };
    LoopNest {
        name: format!("microkernel_{mr}x{nr}"),
        buffers,
        vars,
        inputs: vec![looptune_ir::BufferId(0), looptune_ir::BufferId(1)],
        outputs: vec![looptune_ir::BufferId(2)],
        body: for_(
            io,
            m / mr,
            LoopKind::Serial,
            for_(jo, n / nr, LoopKind::Serial, body),
        ),
    }
}

fn main() {
    let args: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let pick = |index: usize, default: i64| args.get(index).copied().unwrap_or(default);
    let (mr, nr) = (pick(0, 4), pick(1, 16));
    let (m, n, k, ku) = (pick(2, 64), pick(3, 64), pick(4, 256), pick(5, 1));
    let nest = nest(mr, nr, m, n, k, ku);
    let target = Target::host().with_threads(1);
    let started = Instant::now();
    let show_clif = std::env::args().any(|arg| arg == "--clif");
    let kernel = CraneliftBackend::new()
        .keep_clif(show_clif)
        .compile(&nest, &target)
        .expect("the micro-kernel compiles");
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    if let Some(clif) = kernel.source() {
        println!("{clif}");
        return;
    }
    let a: Vec<f32> = (0..m * k).map(|x| (x % 7) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..k * n).map(|x| (x % 5) as f32 * 0.5).collect();
    let mut c = vec![0.0f32; (m * n) as usize];
    let flops = 2.0 * (m * n * k) as f64;
    // Grow the number of calls per repeat until a repeat lasts 50 ms, then take the median.
    let mut number = 1;
    loop {
        let start = Instant::now();
        for _ in 0..number {
            kernel.call(&[&a, &b], &mut [&mut c]).expect("call");
        }
        if start.elapsed().as_secs_f64() > 0.05 {
            break;
        }
        number *= 2;
    }
    let mut samples: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..number {
                kernel.call(&[&a, &b], &mut [&mut c]).expect("call");
            }
            flops * number as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let gflops = samples[samples.len() / 2];
    let peak = measure_peak(1).expect("peak");
    println!(
        "micro-kernel {mr}x{nr} (k unrolled {ku}x), C[{m}x{n}] = A[{m}x{k}] B[{k}x{n}]: {gflops:.1} GFLOP/s, \
         peak {:.1} GFLOP/s ({:.0}%), compile {compile_ms:.2} ms",
        peak.gflops,
        100.0 * gflops / peak.gflops
    );
}
