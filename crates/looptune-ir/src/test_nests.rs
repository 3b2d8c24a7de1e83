//! Hand-built loop nests shared by the tests of the interpreter, verifier, printer and
//! simplifier. Built directly rather than through scheduling and lowering, so these tests do
//! not depend on the front end.

use crate::dtype::DType;
use crate::expr::{BufferId, Cond, IndexExpr, ValueExpr, VarId};
use crate::loop_nest::{BufferDecl, BufferRole, Loop, LoopKind, LoopNest, Stmt, VarDecl};

/// Builds a nest's tables; statements are put together with the free functions below.
pub struct Builder {
    nest: LoopNest,
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder {
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

    pub fn var(&mut self, name: &str) -> VarId {
        self.nest.vars.push(VarDecl {
            name: name.to_string(),
        });
        VarId(self.nest.vars.len() as u32 - 1)
    }

    pub fn buffer(&mut self, name: &str, shape: &[i64], role: BufferRole) -> BufferId {
        self.typed_buffer(name, DType::F32, shape, role)
    }

    pub fn typed_buffer(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[i64],
        role: BufferRole,
    ) -> BufferId {
        self.nest.buffers.push(BufferDecl {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            role,
        });
        let id = BufferId(self.nest.buffers.len() as u32 - 1);
        match role {
            BufferRole::Input => self.nest.inputs.push(id),
            BufferRole::Output => self.nest.outputs.push(id),
            BufferRole::Temp => {}
        }
        id
    }

    pub fn finish(mut self, body: Stmt) -> LoopNest {
        self.nest.body = body;
        self.nest
    }
}

pub fn for_(var: VarId, extent: i64, body: Stmt) -> Stmt {
    loop_(LoopKind::Serial, var, extent, body)
}

pub fn loop_(kind: LoopKind, var: VarId, extent: i64, body: Stmt) -> Stmt {
    Stmt::For(Box::new(Loop {
        var,
        extent,
        kind,
        body,
    }))
}

pub fn store(buffer: BufferId, indices: Vec<IndexExpr>, value: ValueExpr) -> Stmt {
    Stmt::Store {
        buffer,
        indices,
        value,
    }
}

pub fn if_(cond: Cond, then: Stmt) -> Stmt {
    Stmt::If {
        cond,
        then: Box::new(then),
    }
}

pub fn alloc(buffer: BufferId, body: Stmt) -> Stmt {
    Stmt::Alloc {
        buffer,
        body: Box::new(body),
    }
}

pub fn v(var: VarId) -> IndexExpr {
    IndexExpr::Var(var)
}

pub fn load(buffer: BufferId, indices: Vec<IndexExpr>) -> ValueExpr {
    ValueExpr::load(buffer, indices)
}

/// `C[m, n] = sum_k A[m, k] * B[k, n]`, plain loops, zero-initialised.
pub fn matmul(m: i64, n: i64, k: i64) -> LoopNest {
    let mut b = Builder::new("matmul");
    let (i, j, r) = (b.var("i"), b.var("j"), b.var("k"));
    let a = b.buffer("A", &[m, k], BufferRole::Input);
    let bb = b.buffer("B", &[k, n], BufferRole::Input);
    let c = b.buffer("C", &[m, n], BufferRole::Output);
    let body = for_(
        i,
        m,
        for_(
            j,
            n,
            Stmt::Seq(vec![
                store(c, vec![v(i), v(j)], ValueExpr::f32(0.0)),
                for_(
                    r,
                    k,
                    store(
                        c,
                        vec![v(i), v(j)],
                        load(c, vec![v(i), v(j)])
                            + load(a, vec![v(i), v(r)]) * load(bb, vec![v(r), v(j)]),
                    ),
                ),
            ]),
        ),
    );
    b.finish(body)
}

/// `B[i] = A[i] * 2 + 1` for `i < n`, split by 4 with a vectorized inner loop and a tail guard.
pub fn scaled_with_tail(n: i64) -> LoopNest {
    let mut b = Builder::new("scale");
    let (outer, inner) = (b.var("i.outer"), b.var("i.inner"));
    let a = b.buffer("A", &[n], BufferRole::Input);
    let out = b.buffer("B", &[n], BufferRole::Output);
    let i = v(outer) * 4 + v(inner);
    let body = for_(
        outer,
        (n + 3) / 4,
        loop_(
            LoopKind::Vectorized,
            inner,
            4,
            if_(
                i.clone().lt(n),
                store(
                    out,
                    vec![i.clone()],
                    load(a, vec![i]) * ValueExpr::f32(2.0) + ValueExpr::f32(1.0),
                ),
            ),
        ),
    );
    b.finish(body)
}

/// Matmul with rows in a parallel outer loop, a 4-wide output tile accumulated in a local
/// buffer over `k`, and written back afterwards. `n` must be a multiple of 4.
pub fn tiled_matmul(m: i64, n: i64, k: i64) -> LoopNest {
    let mut b = Builder::new("matmul_tiled");
    let i = b.var("i");
    let (jo, ji) = (b.var("j.outer"), b.var("j.inner"));
    let r = b.var("k");
    let (ji2, ji3) = (b.var("j.inner.init"), b.var("j.inner.out"));
    let a = b.buffer("A", &[m, k], BufferRole::Input);
    let bb = b.buffer("B", &[k, n], BufferRole::Input);
    let c = b.buffer("C", &[m, n], BufferRole::Output);
    let local = b.buffer("C.local", &[4], BufferRole::Temp);
    let j = |inner: VarId| v(jo) * 4 + v(inner);
    let body = loop_(
        LoopKind::Parallel,
        i,
        m,
        for_(
            jo,
            n / 4,
            alloc(
                local,
                Stmt::Seq(vec![
                    loop_(
                        LoopKind::Vectorized,
                        ji2,
                        4,
                        store(local, vec![v(ji2)], ValueExpr::f32(0.0)),
                    ),
                    for_(
                        r,
                        k,
                        loop_(
                            LoopKind::Vectorized,
                            ji,
                            4,
                            store(
                                local,
                                vec![v(ji)],
                                load(a, vec![v(i), v(r)])
                                    .fma(load(bb, vec![v(r), j(ji)]), load(local, vec![v(ji)])),
                            ),
                        ),
                    ),
                    loop_(
                        LoopKind::Unrolled,
                        ji3,
                        4,
                        store(c, vec![v(i), j(ji3)], load(local, vec![v(ji3)])),
                    ),
                ]),
            ),
        ),
    );
    b.finish(body)
}

/// Deterministic test data: small values with varied signs, so sums do not hide mistakes.
pub fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|index| {
            let x = (index as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed)
                >> 20;
            (x % 17) as f32 / 4.0 - 2.0
        })
        .collect()
}

/// `C = A @ B` computed directly, for checking nests.
pub fn reference_matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f64;
            for r in 0..k {
                sum += f64::from(a[i * k + r]) * f64::from(b[r * n + j]);
            }
            c[i * n + j] = sum as f32;
        }
    }
    c
}
