//! Compile latency of a typical register-tiled matmul kernel: the cost the tuner pays per
//! candidate before measuring it. Aim: median under 10 ms.

#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, Criterion};
use looptune_ir::{
    BufferDecl, BufferId, BufferRole, DType, IndexExpr, Load, Loop, LoopKind, LoopNest, Stmt,
    ValueExpr, VarDecl, VarId,
};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};

fn for_(var: u32, extent: i64, kind: LoopKind, body: Stmt) -> Stmt {
    Stmt::For(Box::new(Loop {
        var: VarId(var),
        extent,
        kind,
        body,
    }))
}

fn var(id: u32) -> IndexExpr {
    IndexExpr::Var(VarId(id))
}

fn load(buffer: u32, indices: Vec<IndexExpr>) -> ValueExpr {
    ValueExpr::Load(Load {
        buffer: BufferId(buffer),
        indices,
    })
}

fn store(buffer: u32, indices: Vec<IndexExpr>, value: ValueExpr) -> Stmt {
    Stmt::Store {
        buffer: BufferId(buffer),
        indices,
        value,
    }
}

/// 256x256x256 matmul: parallel row blocks of 32, column blocks of 64, a 4x16 register tile
/// accumulated over k unrolled by 4 (the shape a tuned schedule typically has).
fn tiled_matmul() -> LoopNest {
    let (m, n, k) = (256, 256, 256);
    let (mb, nb, mr, nr, ku) = (32, 64, 4, 16, 4);
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
    let names = ["io", "jo", "im", "jm", "ko", "ki", "i", "j"];
    let vars = names
        .iter()
        .map(|name| VarDecl {
            name: name.to_string(),
        })
        .collect();
    let (io, jo, im, jm, ko, ki, i, j) = (0, 1, 2, 3, 4, 5, 6, 7);
    let row = var(io) * mb + var(im) * mr + var(i);
    let col = var(jo) * nb + var(jm) * nr + var(j);
    let kk = var(ko) * ku + var(ki);
    let tile = |body: Stmt| {
        for_(
            i,
            mr,
            LoopKind::Unrolled,
            for_(j, nr, LoopKind::Vectorized, body),
        )
    };
    let acc = || load(3, vec![var(i), var(j)]);
    let micro = Stmt::Alloc {
        buffer: BufferId(3),
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
    let body = for_(
        io,
        m / mb,
        LoopKind::Parallel,
        for_(
            jo,
            n / nb,
            LoopKind::Serial,
            for_(
                im,
                mb / mr,
                LoopKind::Serial,
                for_(jm, nb / nr, LoopKind::Serial, micro),
            ),
        ),
    );
    LoopNest {
        name: "tiled_matmul_256".to_string(),
        buffers,
        vars,
        inputs: vec![BufferId(0), BufferId(1)],
        outputs: vec![BufferId(2)],
        body,
    }
}

fn compile_latency(criterion: &mut Criterion) {
    let nest = tiled_matmul();
    let target = Target::host();
    let backend = CraneliftBackend::new();
    criterion.bench_function(
        "compile tiled matmul 256 (4x16 tile, k unrolled 4)",
        |bench| bench.iter(|| backend.compile(&nest, &target).expect("compiles")),
    );
}

criterion_group!(benches, compile_latency);
criterion_main!(benches);
