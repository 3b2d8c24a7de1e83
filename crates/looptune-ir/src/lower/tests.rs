//! Snapshots of lowered nests: each operator under its default schedule and under a tiled,
//! vectorized, register-tiled one. Re-bless with `UPDATE_EXPECT=1 cargo test -p looptune-ir`.

use crate::loop_nest::LoopKind;
use crate::ops::{Layout, Workload};
use crate::schedule::Schedule;
use expect_test::{expect, Expect};

fn schedule_of(workload: &str, layout: Layout) -> Schedule {
    let workload: Workload = workload.parse().expect("workload parses");
    Schedule::new(&workload.program(&layout).expect("program builds"))
}

fn check(schedule: &Schedule, expect: Expect) {
    let nest = super::lower(schedule).expect("lowers");
    expect.assert_eq(&nest.to_string());
}

/// The BLIS shape: B packed in panels of `nr` columns, an `mr x nr` accumulator tile computed at
/// the column-panel loop with the reduction outside and the tile unrolled and vectorized.
fn register_tiled_matmul(workload: &str, mr: i64, nr: i64) -> Schedule {
    let mut s = schedule_of(
        workload,
        Layout {
            pack_columns: Some(nr),
            ..Layout::default()
        },
    );
    let c = s.stage("C").unwrap();
    let local = s.cache_write(c).unwrap();
    let [i, j] = [s.spatial_axes(c)[0], s.spatial_axes(c)[1]];
    let [io, jo, ii, ji] = s.tile(c, i, j, mr, nr).unwrap();
    s.parallel(c, io).unwrap();
    s.unroll(c, ii).unwrap();
    s.vectorize(c, ji).unwrap();
    s.compute_at(local, c, jo).unwrap();
    let k = s.reduce_axes(local)[0];
    let [li, lj] = [s.spatial_axes(local)[0], s.spatial_axes(local)[1]];
    s.reorder(local, &[k, li, lj]).unwrap();
    s.unroll(local, li).unwrap();
    s.vectorize(local, lj).unwrap();
    let packed = s.stage("B.packed").unwrap();
    let ji = s.spatial_axes(packed)[2];
    s.vectorize(packed, ji).unwrap();
    s
}

#[test]
fn matmul_default() {
    check(
        &schedule_of("matmul:m=4,n=6,k=5", Layout::default()),
        expect![[r#"
        kernel matmul(A: f32[4, 5], B: f32[5, 6]) -> (C: f32[4, 6]) {
          for i in 0..4 {
            for j in 0..6 {
              C[i, j] = 0.0
              for k in 0..5 {
                C[i, j] = fma(A[i, k], B[k, j], C[i, j])
              }
            }
          }
        }"#]],
    );
}

#[test]
fn matmul_register_tiled() {
    check(
        &register_tiled_matmul("matmul:m=8,n=16,k=5", 4, 8),
        expect![[r#"
        kernel matmul(A: f32[8, 5], B: f32[5, 16]) -> (C: f32[8, 16]) {
          alloc B.packed: f32[2, 5, 8] {
            for jo in 0..2 {
              for k in 0..5 {
                vectorize ji in 0..8 {
                  B.packed[jo, k, ji] = B[k, jo * 8 + ji]
                }
              }
            }
            parallel i.outer in 0..2 {
              for j.outer in 0..2 {
                alloc C.local: f32[4, 8] {
                  unroll i in 0..4 {
                    vectorize j in 0..8 {
                      C.local[i, j] = 0.0
                    }
                  }
                  for k.1 in 0..5 {
                    unroll i in 0..4 {
                      vectorize j in 0..8 {
                        C.local[i, j] = fma(A[i.outer * 4 + i, k.1], B.packed[j.outer, k.1, j], C.local[i, j])
                      }
                    }
                  }
                  unroll i.inner in 0..4 {
                    vectorize j.inner in 0..8 {
                      C[i.outer * 4 + i.inner, j.outer * 8 + j.inner] = C.local[i.inner, j.inner]
                    }
                  }
                }
              }
            }
          }
        }"#]],
    );
}

#[test]
fn matmul_split_that_does_not_divide_gets_a_guard() {
    let mut s = schedule_of("matmul:m=10,n=3,k=2", Layout::default());
    let c = s.stage("C").unwrap();
    let i = s.spatial_axes(c)[0];
    s.split(c, i, 4).unwrap();
    check(
        &s,
        expect![[r#"
            kernel matmul(A: f32[10, 2], B: f32[2, 3]) -> (C: f32[10, 3]) {
              for i.outer in 0..2 {
                for i.inner in 0..4 {
                  for j in 0..3 {
                    C[i.outer * 4 + i.inner, j] = 0.0
                    for k in 0..2 {
                      C[i.outer * 4 + i.inner, j] = fma(A[i.outer * 4 + i.inner, k], B[k, j], C[i.outer * 4 + i.inner, j])
                    }
                  }
                }
              }
              for i.inner in 0..2 {
                for j in 0..3 {
                  C[i.inner + 8, j] = 0.0
                  for k in 0..2 {
                    C[i.inner + 8, j] = fma(A[i.inner + 8, k], B[k, j], C[i.inner + 8, j])
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn matmul_register_tiled_with_tails() {
    check(
        &register_tiled_matmul("matmul:m=6,n=10,k=3", 4, 8),
        expect![[r#"
            kernel matmul(A: f32[6, 3], B: f32[3, 10]) -> (C: f32[6, 10]) {
              alloc B.packed: f32[2, 3, 8] {
                for k in 0..3 {
                  vectorize ji in 0..8 {
                    B.packed[0, k, ji] = B[k, ji]
                  }
                }
                for k in 0..3 {
                  vectorize ji in 0..8 {
                    B.packed[1, k, ji] = select(ji + 8 < 10, B[k, ji + 8], 0.0)
                  }
                }
                alloc C.local: f32[4, 8] {
                  unroll i in 0..4 {
                    vectorize j in 0..8 {
                      C.local[i, j] = 0.0
                    }
                  }
                  for k.1 in 0..3 {
                    unroll i in 0..4 {
                      vectorize j in 0..8 {
                        C.local[i, j] = fma(A[i, k.1], B.packed[0, k.1, j], C.local[i, j])
                      }
                    }
                  }
                  unroll i.inner in 0..4 {
                    vectorize j.inner in 0..8 {
                      C[i.inner, j.inner] = C.local[i.inner, j.inner]
                    }
                  }
                }
                alloc C.local: f32[4, 8] {
                  unroll i in 0..4 {
                    vectorize j in 0..8 {
                      if (j + 8 < 10) {
                        C.local[i, j] = 0.0
                      }
                    }
                  }
                  for k.1 in 0..3 {
                    unroll i in 0..4 {
                      vectorize j in 0..8 {
                        if (j + 8 < 10) {
                          C.local[i, j] = fma(A[i, k.1], B.packed[1, k.1, j], C.local[i, j])
                        }
                      }
                    }
                  }
                  unroll i.inner in 0..4 {
                    vectorize j.inner in 0..8 {
                      if (j.inner + 8 < 10) {
                        C[i.inner, j.inner + 8] = C.local[i.inner, j.inner]
                      }
                    }
                  }
                }
                alloc C.local: f32[4, 8] {
                  unroll i in 0..4 {
                    if (i + 4 < 6) {
                      vectorize j in 0..8 {
                        C.local[i, j] = 0.0
                      }
                    }
                  }
                  for k.1 in 0..3 {
                    unroll i in 0..4 {
                      if (i + 4 < 6) {
                        vectorize j in 0..8 {
                          C.local[i, j] = fma(A[i + 4, k.1], B.packed[0, k.1, j], C.local[i, j])
                        }
                      }
                    }
                  }
                  unroll i.inner in 0..4 {
                    if (i.inner + 4 < 6) {
                      vectorize j.inner in 0..8 {
                        C[i.inner + 4, j.inner] = C.local[i.inner, j.inner]
                      }
                    }
                  }
                }
                alloc C.local: f32[4, 8] {
                  unroll i in 0..4 {
                    if (i + 4 < 6) {
                      vectorize j in 0..8 {
                        if (j + 8 < 10) {
                          C.local[i, j] = 0.0
                        }
                      }
                    }
                  }
                  for k.1 in 0..3 {
                    unroll i in 0..4 {
                      if (i + 4 < 6) {
                        vectorize j in 0..8 {
                          if (j + 8 < 10) {
                            C.local[i, j] = fma(A[i + 4, k.1], B.packed[1, k.1, j], C.local[i, j])
                          }
                        }
                      }
                    }
                  }
                  unroll i.inner in 0..4 {
                    if (i.inner + 4 < 6) {
                      vectorize j.inner in 0..8 {
                        if (j.inner + 8 < 10) {
                          C[i.inner + 4, j.inner + 8] = C.local[i.inner, j.inner]
                        }
                      }
                    }
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn batch_matmul_default() {
    check(
        &schedule_of("batch_matmul:b=2,m=3,n=4,k=5", Layout::default()),
        expect![[r#"
        kernel batch_matmul(A: f32[2, 3, 5], B: f32[2, 5, 4]) -> (C: f32[2, 3, 4]) {
          for b in 0..2 {
            for i in 0..3 {
              for j in 0..4 {
                C[b, i, j] = 0.0
                for k in 0..5 {
                  C[b, i, j] = fma(A[b, i, k], B[b, k, j], C[b, i, j])
                }
              }
            }
          }
        }"#]],
    );
}

#[test]
fn dense_bias_relu_default() {
    check(
        &schedule_of("dense:m=2,n=3,k=4,bias=true,relu=true", Layout::default()),
        expect![[r#"
        kernel dense(X: f32[2, 4], W: f32[3, 4], bias: f32[3]) -> (Y: f32[2, 3]) {
          alloc Y.matmul: f32[2, 3] {
            for i in 0..2 {
              for j in 0..3 {
                Y.matmul[i, j] = 0.0
                for k in 0..4 {
                  Y.matmul[i, j] = fma(X[i, k], W[j, k], Y.matmul[i, j])
                }
              }
            }
            for i.1 in 0..2 {
              for j.1 in 0..3 {
                Y[i.1, j.1] = max(Y.matmul[i.1, j.1] + bias[j.1], 0.0)
              }
            }
          }
        }"#]],
    );
}

#[test]
fn dense_epilogue_fused_into_register_tile() {
    let mut s = schedule_of("dense:m=4,n=8,k=3,bias=true,relu=true", Layout::default());
    let y = s.stage("Y").unwrap();
    let product = s.stage("Y.matmul").unwrap();
    let [i, j] = [s.spatial_axes(y)[0], s.spatial_axes(y)[1]];
    let [_, jo, ii, ji] = s.tile(y, i, j, 2, 4).unwrap();
    s.unroll(y, ii).unwrap();
    s.vectorize(y, ji).unwrap();
    s.compute_at(product, y, jo).unwrap();
    let k = s.reduce_axes(product)[0];
    let [pi, pj] = [s.spatial_axes(product)[0], s.spatial_axes(product)[1]];
    s.reorder(product, &[k, pi, pj]).unwrap();
    s.annotate(product, pj, LoopKind::Vectorized).unwrap();
    check(
        &s,
        expect![[r#"
        kernel dense(X: f32[4, 3], W: f32[8, 3], bias: f32[8]) -> (Y: f32[4, 8]) {
          for i.outer in 0..2 {
            for j.outer in 0..2 {
              alloc Y.matmul: f32[2, 4] {
                for i in 0..2 {
                  vectorize j in 0..4 {
                    Y.matmul[i, j] = 0.0
                  }
                }
                for k in 0..3 {
                  for i in 0..2 {
                    vectorize j in 0..4 {
                      Y.matmul[i, j] = fma(X[i.outer * 2 + i, k], W[j.outer * 4 + j, k], Y.matmul[i, j])
                    }
                  }
                }
                unroll i.inner in 0..2 {
                  vectorize j.inner in 0..4 {
                    Y[i.outer * 2 + i.inner, j.outer * 4 + j.inner] = max(Y.matmul[i.inner, j.inner] + bias[j.outer * 4 + j.inner], 0.0)
                  }
                }
              }
            }
          }
        }"#]],
    );
}

#[test]
fn conv2d_default_has_padding_in_bounds_checks() {
    check(
        &schedule_of(
            "conv2d:n=1,ic=2,h=4,w=4,oc=3,kh=3,kw=3,pad=1",
            Layout::default(),
        ),
        expect![[r#"
            kernel conv2d(X: f32[1, 2, 4, 4], W: f32[3, 2, 3, 3]) -> (Y: f32[1, 3, 4, 4]) {
              for oc in 0..3 {
                Y[0, oc, 0, 0] = 0.0
                for rc in 0..2 {
                  Y[0, oc, 0, 0] = fma(0.0, W[oc, rc, 0, 0], Y[0, oc, 0, 0])
                  for rx in 0..2 {
                    Y[0, oc, 0, 0] = fma(0.0, W[oc, rc, 0, rx + 1], Y[0, oc, 0, 0])
                  }
                  for ry in 0..2 {
                    Y[0, oc, 0, 0] = fma(0.0, W[oc, rc, ry + 1, 0], Y[0, oc, 0, 0])
                    for rx in 0..2 {
                      Y[0, oc, 0, 0] = fma(X[0, rc, ry, rx], W[oc, rc, ry + 1, rx + 1], Y[0, oc, 0, 0])
                    }
                  }
                }
                for x in 0..2 {
                  Y[0, oc, 0, x + 1] = 0.0
                  for rc in 0..2 {
                    for rx in 0..3 {
                      Y[0, oc, 0, x + 1] = fma(0.0, W[oc, rc, 0, rx], Y[0, oc, 0, x + 1])
                    }
                    for ry in 0..2 {
                      for rx in 0..3 {
                        Y[0, oc, 0, x + 1] = fma(X[0, rc, ry, x + rx], W[oc, rc, ry + 1, rx], Y[0, oc, 0, x + 1])
                      }
                    }
                  }
                }
                Y[0, oc, 0, 3] = 0.0
                for rc in 0..2 {
                  for rx in 0..2 {
                    Y[0, oc, 0, 3] = fma(0.0, W[oc, rc, 0, rx], Y[0, oc, 0, 3])
                  }
                  Y[0, oc, 0, 3] = fma(0.0, W[oc, rc, 0, 2], Y[0, oc, 0, 3])
                  for ry in 0..2 {
                    for rx in 0..2 {
                      Y[0, oc, 0, 3] = fma(X[0, rc, ry, rx + 2], W[oc, rc, ry + 1, rx], Y[0, oc, 0, 3])
                    }
                    Y[0, oc, 0, 3] = fma(0.0, W[oc, rc, ry + 1, 2], Y[0, oc, 0, 3])
                  }
                }
                for y in 0..2 {
                  Y[0, oc, y + 1, 0] = 0.0
                  for rc in 0..2 {
                    for ry in 0..3 {
                      Y[0, oc, y + 1, 0] = fma(0.0, W[oc, rc, ry, 0], Y[0, oc, y + 1, 0])
                      for rx in 0..2 {
                        Y[0, oc, y + 1, 0] = fma(X[0, rc, y + ry, rx], W[oc, rc, ry, rx + 1], Y[0, oc, y + 1, 0])
                      }
                    }
                  }
                  for x in 0..2 {
                    Y[0, oc, y + 1, x + 1] = 0.0
                    for rc in 0..2 {
                      for ry in 0..3 {
                        for rx in 0..3 {
                          Y[0, oc, y + 1, x + 1] = fma(X[0, rc, y + ry, x + rx], W[oc, rc, ry, rx], Y[0, oc, y + 1, x + 1])
                        }
                      }
                    }
                  }
                  Y[0, oc, y + 1, 3] = 0.0
                  for rc in 0..2 {
                    for ry in 0..3 {
                      for rx in 0..2 {
                        Y[0, oc, y + 1, 3] = fma(X[0, rc, y + ry, rx + 2], W[oc, rc, ry, rx], Y[0, oc, y + 1, 3])
                      }
                      Y[0, oc, y + 1, 3] = fma(0.0, W[oc, rc, ry, 2], Y[0, oc, y + 1, 3])
                    }
                  }
                }
                Y[0, oc, 3, 0] = 0.0
                for rc in 0..2 {
                  for ry in 0..2 {
                    Y[0, oc, 3, 0] = fma(0.0, W[oc, rc, ry, 0], Y[0, oc, 3, 0])
                    for rx in 0..2 {
                      Y[0, oc, 3, 0] = fma(X[0, rc, ry + 2, rx], W[oc, rc, ry, rx + 1], Y[0, oc, 3, 0])
                    }
                  }
                  Y[0, oc, 3, 0] = fma(0.0, W[oc, rc, 2, 0], Y[0, oc, 3, 0])
                  for rx in 0..2 {
                    Y[0, oc, 3, 0] = fma(0.0, W[oc, rc, 2, rx + 1], Y[0, oc, 3, 0])
                  }
                }
                for x in 0..2 {
                  Y[0, oc, 3, x + 1] = 0.0
                  for rc in 0..2 {
                    for ry in 0..2 {
                      for rx in 0..3 {
                        Y[0, oc, 3, x + 1] = fma(X[0, rc, ry + 2, x + rx], W[oc, rc, ry, rx], Y[0, oc, 3, x + 1])
                      }
                    }
                    for rx in 0..3 {
                      Y[0, oc, 3, x + 1] = fma(0.0, W[oc, rc, 2, rx], Y[0, oc, 3, x + 1])
                    }
                  }
                }
                Y[0, oc, 3, 3] = 0.0
                for rc in 0..2 {
                  for ry in 0..2 {
                    for rx in 0..2 {
                      Y[0, oc, 3, 3] = fma(X[0, rc, ry + 2, rx + 2], W[oc, rc, ry, rx], Y[0, oc, 3, 3])
                    }
                    Y[0, oc, 3, 3] = fma(0.0, W[oc, rc, ry, 2], Y[0, oc, 3, 3])
                  }
                  for rx in 0..2 {
                    Y[0, oc, 3, 3] = fma(0.0, W[oc, rc, 2, rx], Y[0, oc, 3, 3])
                  }
                  Y[0, oc, 3, 3] = fma(0.0, W[oc, rc, 2, 2], Y[0, oc, 3, 3])
                }
              }
            }"#]],
    );
}

#[test]
fn conv2d_output_channels_blocked_and_vectorized() {
    let mut s = schedule_of(
        "conv2d:n=1,ic=2,h=5,w=5,oc=8,kh=3,kw=3,pad=1",
        Layout::default(),
    );
    let y = s.stage("Y").unwrap();
    let local = s.cache_write(y).unwrap();
    let axes = s.spatial_axes(y);
    let (oco, oci) = s.split(y, axes[1], 4).unwrap();
    let (xo, xi) = s.split(y, axes[3], 2).unwrap();
    s.reorder(y, &[axes[0], oco, axes[2], xo, xi, oci]).unwrap();
    s.vectorize(y, oci).unwrap();
    s.compute_at(local, y, xo).unwrap();
    let local_axes = s.spatial_axes(local);
    let mut order = s.reduce_axes(local);
    order.extend([local_axes[0], local_axes[2], local_axes[3], local_axes[1]]);
    s.reorder(local, &order).unwrap();
    s.unroll(local, local_axes[3]).unwrap();
    s.vectorize(local, local_axes[1]).unwrap();
    check(
        &s,
        expect![[r#"
            kernel conv2d(X: f32[1, 2, 5, 5], W: f32[8, 2, 3, 3]) -> (Y: f32[1, 8, 5, 5]) {
              for oc.outer in 0..2 {
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    vectorize oc in 0..4 {
                      Y.local[0, oc, 0, x] = 0.0
                    }
                  }
                  for rc in 0..2 {
                    unroll x in 0..2 {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 0, 0], Y.local[0, oc, 0, x])
                      }
                    }
                    for rx in 0..2 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 0, rx + 1], Y.local[0, oc, 0, x])
                        }
                      }
                    }
                    for ry in 0..2 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(select(x >= 1, X[0, rc, ry, x - 1], 0.0), W[oc.outer * 4 + oc, rc, ry + 1, 0], Y.local[0, oc, 0, x])
                        }
                      }
                      for rx in 0..2 {
                        unroll x in 0..2 {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, x] = fma(X[0, rc, ry, rx + x], W[oc.outer * 4 + oc, rc, ry + 1, rx + 1], Y.local[0, oc, 0, x])
                          }
                        }
                      }
                    }
                  }
                  for x.inner in 0..2 {
                    vectorize oc.inner in 0..4 {
                      Y[0, oc.outer * 4 + oc.inner, 0, x.inner] = Y.local[0, oc.inner, 0, x.inner]
                    }
                  }
                }
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    vectorize oc in 0..4 {
                      Y.local[0, oc, 0, x] = 0.0
                    }
                  }
                  for rc in 0..2 {
                    for rx in 0..3 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 0, rx], Y.local[0, oc, 0, x])
                        }
                      }
                    }
                    for ry in 0..2 {
                      for rx in 0..3 {
                        unroll x in 0..2 {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, x] = fma(X[0, rc, ry, rx + x + 1], W[oc.outer * 4 + oc, rc, ry + 1, rx], Y.local[0, oc, 0, x])
                          }
                        }
                      }
                    }
                  }
                  for x.inner in 0..2 {
                    vectorize oc.inner in 0..4 {
                      Y[0, oc.outer * 4 + oc.inner, 0, x.inner + 2] = Y.local[0, oc.inner, 0, x.inner]
                    }
                  }
                }
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    if (x + 4 < 5) {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, 0] = 0.0
                      }
                    }
                  }
                  for rc in 0..2 {
                    unroll x in 0..2 {
                      if (x + 4 < 5) {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, 0] = fma(0.0, W[oc.outer * 4 + oc, rc, 0, 0], Y.local[0, oc, 0, 0])
                        }
                      }
                    }
                    for rx in 0..2 {
                      unroll x in 0..2 {
                        if (x + 4 < 5) {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, 0] = fma(0.0, W[oc.outer * 4 + oc, rc, 0, rx + 1], Y.local[0, oc, 0, 0])
                          }
                        }
                      }
                    }
                    for ry in 0..2 {
                      unroll x in 0..2 {
                        if (x + 4 < 5) {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, 0] = fma(X[0, rc, ry, 3], W[oc.outer * 4 + oc, rc, ry + 1, 0], Y.local[0, oc, 0, 0])
                          }
                        }
                      }
                      for rx in 0..2 {
                        unroll x in 0..2 {
                          if (x + 4 < 5) {
                            vectorize oc in 0..4 {
                              Y.local[0, oc, 0, 0] = fma(select(rx + 5 < 6, X[0, rc, ry, rx + 4], 0.0), W[oc.outer * 4 + oc, rc, ry + 1, rx + 1], Y.local[0, oc, 0, 0])
                            }
                          }
                        }
                      }
                    }
                  }
                  vectorize oc.inner in 0..4 {
                    Y[0, oc.outer * 4 + oc.inner, 0, 4] = Y.local[0, oc.inner, 0, 0]
                  }
                }
                for y in 0..3 {
                  alloc Y.local: f32[1, 4, 1, 2] {
                    unroll x in 0..2 {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, x] = 0.0
                      }
                    }
                    for rc in 0..2 {
                      for ry in 0..3 {
                        unroll x in 0..2 {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, x] = fma(select(x >= 1, X[0, rc, y + ry, x - 1], 0.0), W[oc.outer * 4 + oc, rc, ry, 0], Y.local[0, oc, 0, x])
                          }
                        }
                        for rx in 0..2 {
                          unroll x in 0..2 {
                            vectorize oc in 0..4 {
                              Y.local[0, oc, 0, x] = fma(X[0, rc, y + ry, rx + x], W[oc.outer * 4 + oc, rc, ry, rx + 1], Y.local[0, oc, 0, x])
                            }
                          }
                        }
                      }
                    }
                    for x.inner in 0..2 {
                      vectorize oc.inner in 0..4 {
                        Y[0, oc.outer * 4 + oc.inner, y + 1, x.inner] = Y.local[0, oc.inner, 0, x.inner]
                      }
                    }
                  }
                  alloc Y.local: f32[1, 4, 1, 2] {
                    unroll x in 0..2 {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, x] = 0.0
                      }
                    }
                    for rc in 0..2 {
                      for ry in 0..3 {
                        for rx in 0..3 {
                          unroll x in 0..2 {
                            vectorize oc in 0..4 {
                              Y.local[0, oc, 0, x] = fma(X[0, rc, y + ry, rx + x + 1], W[oc.outer * 4 + oc, rc, ry, rx], Y.local[0, oc, 0, x])
                            }
                          }
                        }
                      }
                    }
                    for x.inner in 0..2 {
                      vectorize oc.inner in 0..4 {
                        Y[0, oc.outer * 4 + oc.inner, y + 1, x.inner + 2] = Y.local[0, oc.inner, 0, x.inner]
                      }
                    }
                  }
                  alloc Y.local: f32[1, 4, 1, 2] {
                    unroll x in 0..2 {
                      if (x + 4 < 5) {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, 0] = 0.0
                        }
                      }
                    }
                    for rc in 0..2 {
                      for ry in 0..3 {
                        unroll x in 0..2 {
                          if (x + 4 < 5) {
                            vectorize oc in 0..4 {
                              Y.local[0, oc, 0, 0] = fma(X[0, rc, y + ry, 3], W[oc.outer * 4 + oc, rc, ry, 0], Y.local[0, oc, 0, 0])
                            }
                          }
                        }
                        for rx in 0..2 {
                          unroll x in 0..2 {
                            if (x + 4 < 5) {
                              vectorize oc in 0..4 {
                                Y.local[0, oc, 0, 0] = fma(select(rx + 5 < 6, X[0, rc, y + ry, rx + 4], 0.0), W[oc.outer * 4 + oc, rc, ry, rx + 1], Y.local[0, oc, 0, 0])
                              }
                            }
                          }
                        }
                      }
                    }
                    vectorize oc.inner in 0..4 {
                      Y[0, oc.outer * 4 + oc.inner, y + 1, 4] = Y.local[0, oc.inner, 0, 0]
                    }
                  }
                }
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    vectorize oc in 0..4 {
                      Y.local[0, oc, 0, x] = 0.0
                    }
                  }
                  for rc in 0..2 {
                    for ry in 0..2 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(select(x >= 1, X[0, rc, ry + 3, x - 1], 0.0), W[oc.outer * 4 + oc, rc, ry, 0], Y.local[0, oc, 0, x])
                        }
                      }
                      for rx in 0..2 {
                        unroll x in 0..2 {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, x] = fma(X[0, rc, ry + 3, rx + x], W[oc.outer * 4 + oc, rc, ry, rx + 1], Y.local[0, oc, 0, x])
                          }
                        }
                      }
                    }
                    unroll x in 0..2 {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 2, 0], Y.local[0, oc, 0, x])
                      }
                    }
                    for rx in 0..2 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 2, rx + 1], Y.local[0, oc, 0, x])
                        }
                      }
                    }
                  }
                  for x.inner in 0..2 {
                    vectorize oc.inner in 0..4 {
                      Y[0, oc.outer * 4 + oc.inner, 4, x.inner] = Y.local[0, oc.inner, 0, x.inner]
                    }
                  }
                }
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    vectorize oc in 0..4 {
                      Y.local[0, oc, 0, x] = 0.0
                    }
                  }
                  for rc in 0..2 {
                    for ry in 0..2 {
                      for rx in 0..3 {
                        unroll x in 0..2 {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, x] = fma(X[0, rc, ry + 3, rx + x + 1], W[oc.outer * 4 + oc, rc, ry, rx], Y.local[0, oc, 0, x])
                          }
                        }
                      }
                    }
                    for rx in 0..3 {
                      unroll x in 0..2 {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, x] = fma(0.0, W[oc.outer * 4 + oc, rc, 2, rx], Y.local[0, oc, 0, x])
                        }
                      }
                    }
                  }
                  for x.inner in 0..2 {
                    vectorize oc.inner in 0..4 {
                      Y[0, oc.outer * 4 + oc.inner, 4, x.inner + 2] = Y.local[0, oc.inner, 0, x.inner]
                    }
                  }
                }
                alloc Y.local: f32[1, 4, 1, 2] {
                  unroll x in 0..2 {
                    if (x + 4 < 5) {
                      vectorize oc in 0..4 {
                        Y.local[0, oc, 0, 0] = 0.0
                      }
                    }
                  }
                  for rc in 0..2 {
                    for ry in 0..2 {
                      unroll x in 0..2 {
                        if (x + 4 < 5) {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, 0] = fma(X[0, rc, ry + 3, 3], W[oc.outer * 4 + oc, rc, ry, 0], Y.local[0, oc, 0, 0])
                          }
                        }
                      }
                      for rx in 0..2 {
                        unroll x in 0..2 {
                          if (x + 4 < 5) {
                            vectorize oc in 0..4 {
                              Y.local[0, oc, 0, 0] = fma(select(rx + 5 < 6, X[0, rc, ry + 3, rx + 4], 0.0), W[oc.outer * 4 + oc, rc, ry, rx + 1], Y.local[0, oc, 0, 0])
                            }
                          }
                        }
                      }
                    }
                    unroll x in 0..2 {
                      if (x + 4 < 5) {
                        vectorize oc in 0..4 {
                          Y.local[0, oc, 0, 0] = fma(0.0, W[oc.outer * 4 + oc, rc, 2, 0], Y.local[0, oc, 0, 0])
                        }
                      }
                    }
                    for rx in 0..2 {
                      unroll x in 0..2 {
                        if (x + 4 < 5) {
                          vectorize oc in 0..4 {
                            Y.local[0, oc, 0, 0] = fma(0.0, W[oc.outer * 4 + oc, rc, 2, rx + 1], Y.local[0, oc, 0, 0])
                          }
                        }
                      }
                    }
                  }
                  vectorize oc.inner in 0..4 {
                    Y[0, oc.outer * 4 + oc.inner, 4, 4] = Y.local[0, oc.inner, 0, 0]
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn conv2d_padding_materialised_per_row() {
    let mut s = schedule_of(
        "conv2d:n=1,ic=1,h=3,w=3,oc=1,kh=3,kw=3,pad=1",
        Layout::default(),
    );
    let pad = s.stage("X.pad").unwrap();
    let y = s.stage("Y").unwrap();
    s.compute_root(pad).unwrap();
    let row = s.spatial_axes(y)[2];
    s.compute_at(pad, y, row).unwrap();
    check(
        &s,
        expect![[r#"
            kernel conv2d(X: f32[1, 1, 3, 3], W: f32[1, 1, 3, 3]) -> (Y: f32[1, 1, 3, 3]) {
              alloc X.pad: f32[1, 1, 3, 5] {
                X.pad[0, 0, 0, 0] = 0.0
                for wp in 0..3 {
                  X.pad[0, 0, 0, wp + 1] = 0.0
                }
                X.pad[0, 0, 0, 4] = 0.0
                for hp in 0..2 {
                  X.pad[0, 0, hp + 1, 0] = 0.0
                  for wp in 0..3 {
                    X.pad[0, 0, hp + 1, wp + 1] = X[0, 0, hp, wp]
                  }
                  X.pad[0, 0, hp + 1, 4] = 0.0
                }
                for x in 0..3 {
                  Y[0, 0, 0, x] = 0.0
                  for ry in 0..3 {
                    for rx in 0..3 {
                      Y[0, 0, 0, x] = fma(X.pad[0, 0, ry, x + rx], W[0, 0, ry, rx], Y[0, 0, 0, x])
                    }
                  }
                }
              }
              alloc X.pad: f32[1, 1, 3, 5] {
                for hp in 0..3 {
                  X.pad[0, 0, hp, 0] = 0.0
                  for wp in 0..3 {
                    X.pad[0, 0, hp, wp + 1] = X[0, 0, hp, wp]
                  }
                  X.pad[0, 0, hp, 4] = 0.0
                }
                for x in 0..3 {
                  Y[0, 0, 1, x] = 0.0
                  for ry in 0..3 {
                    for rx in 0..3 {
                      Y[0, 0, 1, x] = fma(X.pad[0, 0, ry, x + rx], W[0, 0, ry, rx], Y[0, 0, 1, x])
                    }
                  }
                }
              }
              alloc X.pad: f32[1, 1, 3, 5] {
                for hp in 0..2 {
                  X.pad[0, 0, hp, 0] = 0.0
                  for wp in 0..3 {
                    X.pad[0, 0, hp, wp + 1] = X[0, 0, hp + 1, wp]
                  }
                  X.pad[0, 0, hp, 4] = 0.0
                }
                X.pad[0, 0, 2, 0] = 0.0
                for wp in 0..3 {
                  X.pad[0, 0, 2, wp + 1] = 0.0
                }
                X.pad[0, 0, 2, 4] = 0.0
                for x in 0..3 {
                  Y[0, 0, 2, x] = 0.0
                  for ry in 0..3 {
                    for rx in 0..3 {
                      Y[0, 0, 2, x] = fma(X.pad[0, 0, ry, x + rx], W[0, 0, ry, rx], Y[0, 0, 2, x])
                    }
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn depthwise_conv2d_default() {
    check(
        &schedule_of(
            "depthwise_conv2d:n=1,c=2,h=4,w=4,kh=3,kw=3,stride=2,pad=1",
            Layout::default(),
        ),
        expect![[r#"
            kernel depthwise_conv2d(X: f32[1, 2, 4, 4], W: f32[2, 1, 3, 3]) -> (Y: f32[1, 2, 2, 2]) {
              for c in 0..2 {
                Y[0, c, 0, 0] = 0.0
                Y[0, c, 0, 0] = fma(0.0, W[c, 0, 0, 0], Y[0, c, 0, 0])
                for rx in 0..2 {
                  Y[0, c, 0, 0] = fma(0.0, W[c, 0, 0, rx + 1], Y[0, c, 0, 0])
                }
                for ry in 0..2 {
                  Y[0, c, 0, 0] = fma(0.0, W[c, 0, ry + 1, 0], Y[0, c, 0, 0])
                  for rx in 0..2 {
                    Y[0, c, 0, 0] = fma(X[0, c, ry, rx], W[c, 0, ry + 1, rx + 1], Y[0, c, 0, 0])
                  }
                }
                Y[0, c, 0, 1] = 0.0
                for rx in 0..3 {
                  Y[0, c, 0, 1] = fma(0.0, W[c, 0, 0, rx], Y[0, c, 0, 1])
                }
                for ry in 0..2 {
                  for rx in 0..3 {
                    Y[0, c, 0, 1] = fma(X[0, c, ry, rx + 1], W[c, 0, ry + 1, rx], Y[0, c, 0, 1])
                  }
                }
                Y[0, c, 1, 0] = 0.0
                for ry in 0..3 {
                  Y[0, c, 1, 0] = fma(0.0, W[c, 0, ry, 0], Y[0, c, 1, 0])
                  for rx in 0..2 {
                    Y[0, c, 1, 0] = fma(X[0, c, ry + 1, rx], W[c, 0, ry, rx + 1], Y[0, c, 1, 0])
                  }
                }
                Y[0, c, 1, 1] = 0.0
                for ry in 0..3 {
                  for rx in 0..3 {
                    Y[0, c, 1, 1] = fma(X[0, c, ry + 1, rx + 1], W[c, 0, ry, rx], Y[0, c, 1, 1])
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn fused_axes_become_one_loop() {
    let mut s = schedule_of("batch_matmul:b=2,m=3,n=4,k=2", Layout::default());
    let c = s.stage("C").unwrap();
    let axes = s.spatial_axes(c);
    let fused = s.fuse(c, axes[0], axes[1]).unwrap();
    s.parallel(c, fused).unwrap();
    check(
        &s,
        expect![[r#"
        kernel batch_matmul(A: f32[2, 3, 2], B: f32[2, 2, 4]) -> (C: f32[2, 3, 4]) {
          parallel b.i.fused in 0..6 {
            for j in 0..4 {
              C[b.i.fused / 3, b.i.fused % 3, j] = 0.0
              for k in 0..2 {
                C[b.i.fused / 3, b.i.fused % 3, j] = fma(A[b.i.fused / 3, b.i.fused % 3, k], B[b.i.fused / 3, k, j], C[b.i.fused / 3, b.i.fused % 3, j])
              }
            }
          }
        }"#]],
    );
}

#[test]
fn batch_matmul_register_tiled_per_batch() {
    let mut s = schedule_of("batch_matmul:b=2,m=4,n=8,k=3", Layout::default());
    let c = s.stage("C").unwrap();
    let local = s.cache_write(c).unwrap();
    let axes = s.spatial_axes(c);
    let [_, jo, ii, ji] = s.tile(c, axes[1], axes[2], 2, 4).unwrap();
    s.parallel(c, axes[0]).unwrap();
    s.unroll(c, ii).unwrap();
    s.vectorize(c, ji).unwrap();
    s.compute_at(local, c, jo).unwrap();
    let local_axes = s.spatial_axes(local);
    let k = s.reduce_axes(local)[0];
    s.reorder(local, &[k, local_axes[0], local_axes[1], local_axes[2]])
        .unwrap();
    s.unroll(local, local_axes[1]).unwrap();
    s.vectorize(local, local_axes[2]).unwrap();
    check(
        &s,
        expect![[r#"
        kernel batch_matmul(A: f32[2, 4, 3], B: f32[2, 3, 8]) -> (C: f32[2, 4, 8]) {
          parallel b in 0..2 {
            for i.outer in 0..2 {
              for j.outer in 0..2 {
                alloc C.local: f32[1, 2, 4] {
                  unroll i in 0..2 {
                    vectorize j in 0..4 {
                      C.local[0, i, j] = 0.0
                    }
                  }
                  for k in 0..3 {
                    unroll i in 0..2 {
                      vectorize j in 0..4 {
                        C.local[0, i, j] = fma(A[b, i.outer * 2 + i, k], B[b, k, j.outer * 4 + j], C.local[0, i, j])
                      }
                    }
                  }
                  unroll i.inner in 0..2 {
                    vectorize j.inner in 0..4 {
                      C[b, i.outer * 2 + i.inner, j.outer * 4 + j.inner] = C.local[0, i.inner, j.inner]
                    }
                  }
                }
              }
            }
          }
        }"#]],
    );
}

#[test]
fn depthwise_conv2d_rows_tiled_and_vectorized() {
    let mut s = schedule_of(
        "depthwise_conv2d:n=1,c=2,h=6,w=6,kh=3,kw=3,pad=1",
        Layout::default(),
    );
    let y = s.stage("Y").unwrap();
    let local = s.cache_write(y).unwrap();
    let axes = s.spatial_axes(y);
    let (xo, xi) = s.split(y, axes[3], 4).unwrap();
    s.parallel(y, axes[1]).unwrap();
    s.vectorize(y, xi).unwrap();
    s.compute_at(local, y, xo).unwrap();
    let local_axes = s.spatial_axes(local);
    let mut order = s.reduce_axes(local);
    order.extend(local_axes.iter().copied());
    s.reorder(local, &order).unwrap();
    s.vectorize(local, local_axes[3]).unwrap();
    check(
        &s,
        expect![[r#"
            kernel depthwise_conv2d(X: f32[1, 2, 6, 6], W: f32[2, 1, 3, 3]) -> (Y: f32[1, 2, 6, 6]) {
              parallel c in 0..2 {
                alloc Y.local: f32[1, 1, 1, 4] {
                  vectorize x in 0..4 {
                    Y.local[0, 0, 0, x] = 0.0
                  }
                  vectorize x in 0..4 {
                    Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 0, 0], Y.local[0, 0, 0, x])
                  }
                  for rx in 0..2 {
                    vectorize x in 0..4 {
                      Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 0, rx + 1], Y.local[0, 0, 0, x])
                    }
                  }
                  for ry in 0..2 {
                    vectorize x in 0..4 {
                      Y.local[0, 0, 0, x] = fma(select(x >= 1, X[0, c, ry, x - 1], 0.0), W[c, 0, ry + 1, 0], Y.local[0, 0, 0, x])
                    }
                    for rx in 0..2 {
                      vectorize x in 0..4 {
                        Y.local[0, 0, 0, x] = fma(X[0, c, ry, rx + x], W[c, 0, ry + 1, rx + 1], Y.local[0, 0, 0, x])
                      }
                    }
                  }
                  vectorize x.inner in 0..4 {
                    Y[0, c, 0, x.inner] = Y.local[0, 0, 0, x.inner]
                  }
                }
                alloc Y.local: f32[1, 1, 1, 4] {
                  vectorize x in 0..4 {
                    if (x + 4 < 6) {
                      Y.local[0, 0, 0, x] = 0.0
                    }
                  }
                  for rx in 0..3 {
                    vectorize x in 0..4 {
                      if (x + 4 < 6) {
                        Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 0, rx], Y.local[0, 0, 0, x])
                      }
                    }
                  }
                  for ry in 0..2 {
                    for rx in 0..3 {
                      vectorize x in 0..4 {
                        if (x + 4 < 6) {
                          Y.local[0, 0, 0, x] = fma(select(rx + x + 4 < 7, X[0, c, ry, rx + x + 3], 0.0), W[c, 0, ry + 1, rx], Y.local[0, 0, 0, x])
                        }
                      }
                    }
                  }
                  vectorize x.inner in 0..4 {
                    if (x.inner + 4 < 6) {
                      Y[0, c, 0, x.inner + 4] = Y.local[0, 0, 0, x.inner]
                    }
                  }
                }
                for y in 0..4 {
                  alloc Y.local: f32[1, 1, 1, 4] {
                    vectorize x in 0..4 {
                      Y.local[0, 0, 0, x] = 0.0
                    }
                    for ry in 0..3 {
                      vectorize x in 0..4 {
                        Y.local[0, 0, 0, x] = fma(select(x >= 1, X[0, c, y + ry, x - 1], 0.0), W[c, 0, ry, 0], Y.local[0, 0, 0, x])
                      }
                      for rx in 0..2 {
                        vectorize x in 0..4 {
                          Y.local[0, 0, 0, x] = fma(X[0, c, y + ry, rx + x], W[c, 0, ry, rx + 1], Y.local[0, 0, 0, x])
                        }
                      }
                    }
                    vectorize x.inner in 0..4 {
                      Y[0, c, y + 1, x.inner] = Y.local[0, 0, 0, x.inner]
                    }
                  }
                  alloc Y.local: f32[1, 1, 1, 4] {
                    vectorize x in 0..4 {
                      if (x + 4 < 6) {
                        Y.local[0, 0, 0, x] = 0.0
                      }
                    }
                    for ry in 0..3 {
                      for rx in 0..3 {
                        vectorize x in 0..4 {
                          if (x + 4 < 6) {
                            Y.local[0, 0, 0, x] = fma(select(rx + x + 4 < 7, X[0, c, y + ry, rx + x + 3], 0.0), W[c, 0, ry, rx], Y.local[0, 0, 0, x])
                          }
                        }
                      }
                    }
                    vectorize x.inner in 0..4 {
                      if (x.inner + 4 < 6) {
                        Y[0, c, y + 1, x.inner + 4] = Y.local[0, 0, 0, x.inner]
                      }
                    }
                  }
                }
                alloc Y.local: f32[1, 1, 1, 4] {
                  vectorize x in 0..4 {
                    Y.local[0, 0, 0, x] = 0.0
                  }
                  for ry in 0..2 {
                    vectorize x in 0..4 {
                      Y.local[0, 0, 0, x] = fma(select(x >= 1, X[0, c, ry + 4, x - 1], 0.0), W[c, 0, ry, 0], Y.local[0, 0, 0, x])
                    }
                    for rx in 0..2 {
                      vectorize x in 0..4 {
                        Y.local[0, 0, 0, x] = fma(X[0, c, ry + 4, rx + x], W[c, 0, ry, rx + 1], Y.local[0, 0, 0, x])
                      }
                    }
                  }
                  vectorize x in 0..4 {
                    Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 2, 0], Y.local[0, 0, 0, x])
                  }
                  for rx in 0..2 {
                    vectorize x in 0..4 {
                      Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 2, rx + 1], Y.local[0, 0, 0, x])
                    }
                  }
                  vectorize x.inner in 0..4 {
                    Y[0, c, 5, x.inner] = Y.local[0, 0, 0, x.inner]
                  }
                }
                alloc Y.local: f32[1, 1, 1, 4] {
                  vectorize x in 0..4 {
                    if (x + 4 < 6) {
                      Y.local[0, 0, 0, x] = 0.0
                    }
                  }
                  for ry in 0..2 {
                    for rx in 0..3 {
                      vectorize x in 0..4 {
                        if (x + 4 < 6) {
                          Y.local[0, 0, 0, x] = fma(select(rx + x + 4 < 7, X[0, c, ry + 4, rx + x + 3], 0.0), W[c, 0, ry, rx], Y.local[0, 0, 0, x])
                        }
                      }
                    }
                  }
                  for rx in 0..3 {
                    vectorize x in 0..4 {
                      if (x + 4 < 6) {
                        Y.local[0, 0, 0, x] = fma(0.0, W[c, 0, 2, rx], Y.local[0, 0, 0, x])
                      }
                    }
                  }
                  vectorize x.inner in 0..4 {
                    if (x.inner + 4 < 6) {
                      Y[0, c, 5, x.inner + 4] = Y.local[0, 0, 0, x.inner]
                    }
                  }
                }
              }
            }"#]],
    );
}
