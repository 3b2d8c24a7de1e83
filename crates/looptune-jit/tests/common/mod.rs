//! Helpers shared by the integration tests: building loop nests by hand, deterministic inputs,
//! and comparing results.

#![allow(dead_code)]

use looptune_ir::{
    BufferDecl, BufferId, BufferRole, DType, IndexExpr, Load, Loop, LoopKind, LoopNest, Stmt,
    ValueExpr, VarDecl, VarId,
};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Kernel, Target};

/// Builds a [`LoopNest`] buffer by buffer and variable by variable.
pub struct NestBuilder {
    nest: LoopNest,
}

impl NestBuilder {
    pub fn new(name: &str) -> NestBuilder {
        NestBuilder {
            nest: LoopNest {
                name: name.to_string(),
                buffers: Vec::new(),
                vars: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                body: Stmt::nop(),
            },
        }
    }

    fn buffer(&mut self, name: &str, dtype: DType, shape: &[i64], role: BufferRole) -> BufferId {
        let id = BufferId(self.nest.buffers.len() as u32);
        self.nest.buffers.push(BufferDecl {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            role,
        });
        match role {
            BufferRole::Input => self.nest.inputs.push(id),
            BufferRole::Output => self.nest.outputs.push(id),
            BufferRole::Temp => {}
        }
        id
    }

    pub fn input(&mut self, name: &str, shape: &[i64]) -> BufferId {
        self.buffer(name, DType::F32, shape, BufferRole::Input)
    }

    pub fn output(&mut self, name: &str, shape: &[i64]) -> BufferId {
        self.buffer(name, DType::F32, shape, BufferRole::Output)
    }

    pub fn temp(&mut self, name: &str, dtype: DType, shape: &[i64]) -> BufferId {
        self.buffer(name, dtype, shape, BufferRole::Temp)
    }

    pub fn var(&mut self, name: &str) -> VarId {
        let id = VarId(self.nest.vars.len() as u32);
        self.nest.vars.push(VarDecl {
            name: name.to_string(),
        });
        id
    }

    /// A nest over the buffers and variables declared so far, leaving the builder usable.
    pub fn with_body(&self, body: Stmt) -> LoopNest {
        let mut nest = self.nest.clone();
        nest.body = body;
        nest
    }

    pub fn build(mut self, body: Stmt) -> LoopNest {
        self.nest.body = body;
        self.nest
    }
}

pub fn for_(var: VarId, extent: i64, kind: LoopKind, body: Stmt) -> Stmt {
    Stmt::For(Box::new(Loop {
        var,
        extent,
        kind,
        body,
    }))
}

pub fn serial(var: VarId, extent: i64, body: Stmt) -> Stmt {
    for_(var, extent, LoopKind::Serial, body)
}

pub fn store(buffer: BufferId, indices: Vec<IndexExpr>, value: ValueExpr) -> Stmt {
    Stmt::Store {
        buffer,
        indices,
        value,
    }
}

pub fn ld(buffer: BufferId, indices: Vec<IndexExpr>) -> ValueExpr {
    ValueExpr::Load(Load { buffer, indices })
}

pub fn v(var: VarId) -> IndexExpr {
    IndexExpr::Var(var)
}

pub fn c(value: i64) -> IndexExpr {
    IndexExpr::Const(value)
}

pub fn alloc(buffer: BufferId, body: Stmt) -> Stmt {
    Stmt::Alloc {
        buffer,
        body: Box::new(body),
    }
}

pub fn compile(nest: &LoopNest) -> Kernel {
    compile_for(nest, &Target::host())
}

pub fn compile_for(nest: &LoopNest, target: &Target) -> Kernel {
    CraneliftBackend::new()
        .keep_clif(true)
        .compile(nest, target)
        .unwrap_or_else(|error| panic!("compiling `{}`: {error}", nest.name))
}

/// Deterministic pseudo-random values in [-1, 1) (a xorshift generator with a fixed seed).
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Asserts that two results agree to a relative tolerance.
pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len());
    for (index, (a, e)) in actual.iter().zip(expected).enumerate() {
        let scale = 1.0f32.max(e.abs());
        assert!(
            (a - e).abs() <= tolerance * scale,
            "element {index}: got {a}, expected {e}"
        );
    }
}

/// A register-tiled matmul `C[M, N] = A[M, K] * B[K, N]` with an `mr x nr` accumulator tile
/// (`Alloc acc[mr, nr]; for k { unroll i { vectorize j { acc += A[i,k] * B[k,j] } } }`), the
/// BLIS micro-kernel shape. `m` and `n` must be multiples of the tile.
pub fn tiled_matmul(m: i64, n: i64, k: i64, mr: i64, nr: i64, kind_outer: LoopKind) -> LoopNest {
    let mut builder = NestBuilder::new("tiled_matmul");
    let a = builder.input("A", &[m, k]);
    let b = builder.input("B", &[k, n]);
    let out = builder.output("C", &[m, n]);
    let acc = builder.temp("acc", DType::F32, &[mr, nr]);
    let io = builder.var("io");
    let jo = builder.var("jo");
    let kk = builder.var("k");
    let i = builder.var("i");
    let j = builder.var("j");
    let row = v(io) * mr + v(i);
    let col = v(jo) * nr + v(j);
    let update = store(
        acc,
        vec![v(i), v(j)],
        ld(a, vec![row.clone(), v(kk)])
            .fma(ld(b, vec![v(kk), col.clone()]), ld(acc, vec![v(i), v(j)])),
    );
    let tile = alloc(
        acc,
        Stmt::Seq(vec![
            for_(
                i,
                mr,
                LoopKind::Unrolled,
                for_(
                    j,
                    nr,
                    LoopKind::Vectorized,
                    store(acc, vec![v(i), v(j)], ValueExpr::f32(0.0)),
                ),
            ),
            serial(
                kk,
                k,
                for_(
                    i,
                    mr,
                    LoopKind::Unrolled,
                    for_(j, nr, LoopKind::Vectorized, update),
                ),
            ),
            for_(
                i,
                mr,
                LoopKind::Unrolled,
                for_(
                    j,
                    nr,
                    LoopKind::Vectorized,
                    store(
                        out,
                        vec![row.clone(), col.clone()],
                        ld(acc, vec![v(i), v(j)]),
                    ),
                ),
            ),
        ]),
    );
    builder.build(for_(io, m / mr, kind_outer, serial(jo, n / nr, tile)))
}

/// `C = A * B` in plain Rust, accumulating in f64.
pub fn reference_matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for row in 0..m {
        for col in 0..n {
            let mut sum = 0.0f64;
            for inner in 0..k {
                sum += f64::from(a[row * k + inner]) * f64::from(b[inner * n + col]);
            }
            out[row * n + col] = sum as f32;
        }
    }
    out
}
