//! Snapshots of printed C for small nests, prelude left out; and the typed errors. Re-bless with
//! `UPDATE_EXPECT=1 cargo test -p looptune-cc --test snapshots`.

#![forbid(unsafe_code)]

use expect_test::{expect, Expect};
use looptune_cc::{emit_c, EmitError, EmitOptions};
use looptune_ir::ops::{MatmulParams, Workload};
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{
    lower, BufferDecl, BufferId, BufferRole, DType, Layout, LoopNest, Scalar, Schedule, Stmt,
    ValueExpr,
};

fn default_nest(workload: &str) -> LoopNest {
    let workload: Workload = workload.parse().expect("workload parses");
    let program = workload
        .program(&Layout::default())
        .expect("program builds");
    lower(&Schedule::new(&program)).expect("lowers")
}

fn tiled(m: i64, n: i64, k: i64, tiling: MatmulTiling) -> LoopNest {
    let params = MatmulParams {
        m,
        n,
        k,
        transpose_b: false,
    };
    lower(&register_tiled_matmul(params, tiling).expect("recipe applies")).expect("lowers")
}

fn check(nest: &LoopNest, lanes: usize, expect: Expect) {
    let text = emit_c(nest, &EmitOptions::new(lanes)).expect("prints");
    let (head, rest) = text
        .split_once("#ifndef LOOPTUNE_PRELUDE")
        .expect("prelude starts");
    let (_, body) = rest
        .split_once("#endif /* LOOPTUNE_PRELUDE */\n")
        .expect("prelude ends");
    expect.assert_eq(&format!("{head}/* prelude */\n{body}"));
}

#[test]
fn matmul_default_is_scalar_loops() {
    check(
        &default_nest("matmul:m=2,n=3,k=2"),
        8,
        expect![[r#"
        /* looptune kernel `matmul`, 8 f32 lanes (printed by looptune-cc) */
        /* prelude */

        void looptune_entry(void *const *lt_args, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_rt;
            const float *__restrict A = (const float *)lt_args[0];
            const float *__restrict B = (const float *)lt_args[1];
            float *__restrict C = (float *)lt_args[2];
            for (lt_i64 i = 0; i < 2; ++i) {
                for (lt_i64 j = 0; j < 3; ++j) {
                    C[i * 3 + j] = 0.0f;
                    for (lt_i64 k = 0; k < 2; ++k) {
                        C[i * 3 + j] = (A[i * 2 + k] * B[j + k * 3] + C[i * 3 + j]);
                    }
                }
            }
        }
    "#]],
    );
}

#[test]
fn dense_epilogue_vectorized_over_eleven_lanes_is_a_group_of_eight_and_three_lanes() {
    let workload: Workload = "dense:m=2,n=11,k=3,bias=true,relu=true".parse().unwrap();
    let program = workload.program(&Layout::default()).unwrap();
    let mut schedule = Schedule::new(&program);
    let y = schedule.stage("Y").unwrap();
    let j = schedule.spatial_axes(y)[1];
    schedule.vectorize(y, j).unwrap();
    check(
        &lower(&schedule).unwrap(),
        8,
        expect![[r#"
        /* looptune kernel `dense`, 8 f32 lanes (printed by looptune-cc) */
        /* prelude */

        void looptune_entry(void *const *lt_args, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_rt;
            const float *__restrict X = (const float *)lt_args[0];
            const float *__restrict W = (const float *)lt_args[1];
            const float *__restrict bias = (const float *)lt_args[2];
            float *__restrict Y = (float *)lt_args[3];
            { /* Y.matmul */
                float Y_matmul[22] __attribute__((aligned(64)));
                for (lt_i64 i = 0; i < 2; ++i) {
                    for (lt_i64 j = 0; j < 11; ++j) {
                        Y_matmul[i * 11 + j] = 0.0f;
                        for (lt_i64 k = 0; k < 3; ++k) {
                            Y_matmul[i * 11 + j] = (X[i * 3 + k] * W[j * 3 + k] + Y_matmul[i * 11 + j]);
                        }
                    }
                }
                for (lt_i64 i_1 = 0; i_1 < 2; ++i_1) {
                    lt_store8(Y + (i_1 * 11), lt_max8((lt_load8(Y_matmul + (i_1 * 11)) + lt_load8(bias)), lt_splat8(0.0f)));
                    Y[i_1 * 11 + 8] = lt_fmax((Y_matmul[i_1 * 11 + 8] + bias[8]), 0.0f);
                    Y[i_1 * 11 + 9] = lt_fmax((Y_matmul[i_1 * 11 + 9] + bias[9]), 0.0f);
                    Y[i_1 * 11 + 10] = lt_fmax((Y_matmul[i_1 * 11 + 10] + bias[10]), 0.0f);
                }
            }
        }
    "#]],
    );
}

#[test]
fn register_tiled_matmul_with_tails_keeps_its_tiles_in_vector_variables() {
    let tiling = MatmulTiling {
        tile_rows: 2,
        tile_columns: 8,
        ..MatmulTiling::default()
    };
    check(
        &tiled(3, 10, 2, tiling),
        8,
        expect![[r#"
        /* looptune kernel `matmul`, 8 f32 lanes (printed by looptune-cc) */
        /* prelude */

        void looptune_entry(void *const *lt_args, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_rt;
            const float *__restrict A = (const float *)lt_args[0];
            const float *__restrict B = (const float *)lt_args[1];
            float *__restrict C = (float *)lt_args[2];
            { /* B.packed */
                float B_packed[32] __attribute__((aligned(64)));
                for (lt_i64 k = 0; k < 2; ++k) {
                    lt_store8(B_packed + (k * 8), lt_load8(B + (k * 10)));
                }
                for (lt_i64 k = 0; k < 2; ++k) {
                    lt_store8(B_packed + (k * 8 + 16), ((lt_f32x8){B[k * 10 + 8], B[k * 10 + 9], 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}));
                }
                { /* C.local */
                    lt_f32x8 C_local__0 = {0};
                    lt_f32x8 C_local__8 = {0};
                    C_local__0 = lt_splat8(0.0f);
                    C_local__8 = lt_splat8(0.0f);
                    for (lt_i64 k_1 = 0; k_1 < 2; ++k_1) {
                        C_local__0 = (A[k_1] * lt_load8(B_packed + (k_1 * 8)) + C_local__0);
                        C_local__8 = (A[k_1 + 2] * lt_load8(B_packed + (k_1 * 8)) + C_local__8);
                    }
                    lt_store8(C, C_local__0);
                    lt_store8(C + 10, C_local__8);
                }
                { /* C.local */
                    float C_local__0 = 0.0f;
                    float C_local__1 = 0.0f;
                    float C_local__8 = 0.0f;
                    float C_local__9 = 0.0f;
                    C_local__0 = 0.0f;
                    C_local__1 = 0.0f;
                    C_local__8 = 0.0f;
                    C_local__9 = 0.0f;
                    for (lt_i64 k_1 = 0; k_1 < 2; ++k_1) {
                        C_local__0 = (A[k_1] * B_packed[k_1 * 8 + 16] + C_local__0);
                        C_local__1 = (A[k_1] * B_packed[k_1 * 8 + 17] + C_local__1);
                        C_local__8 = (A[k_1 + 2] * B_packed[k_1 * 8 + 16] + C_local__8);
                        C_local__9 = (A[k_1 + 2] * B_packed[k_1 * 8 + 17] + C_local__9);
                    }
                    C[8] = C_local__0;
                    C[9] = C_local__1;
                    C[18] = C_local__8;
                    C[19] = C_local__9;
                }
                { /* C.local */
                    lt_f32x8 C_local__0 = {0};
                    C_local__0 = lt_splat8(0.0f);
                    for (lt_i64 k_1 = 0; k_1 < 2; ++k_1) {
                        C_local__0 = (A[k_1 + 4] * lt_load8(B_packed + (k_1 * 8)) + C_local__0);
                    }
                    lt_store8(C + 20, C_local__0);
                }
                { /* C.local */
                    float C_local__0 = 0.0f;
                    float C_local__1 = 0.0f;
                    C_local__0 = 0.0f;
                    C_local__1 = 0.0f;
                    for (lt_i64 k_1 = 0; k_1 < 2; ++k_1) {
                        C_local__0 = (A[k_1 + 4] * B_packed[k_1 * 8 + 16] + C_local__0);
                        C_local__1 = (A[k_1 + 4] * B_packed[k_1 * 8 + 17] + C_local__1);
                    }
                    C[28] = C_local__0;
                    C[29] = C_local__1;
                }
            }
        }
    "#]],
    );
}

#[test]
fn parallel_loops_are_outlined_with_their_captured_temporaries() {
    let tiling = MatmulTiling {
        tile_rows: 2,
        tile_columns: 4,
        parallel: true,
        ..MatmulTiling::default()
    };
    check(
        &tiled(4, 8, 2, tiling),
        4,
        expect![[r#"
        /* looptune kernel `matmul`, 4 f32 lanes (printed by looptune-cc) */
        /* prelude */

        static void looptune_entry_parallel_0(void *const *lt_args, const lt_i64 *lt_captured, lt_i64 lt_start,
                lt_i64 lt_end, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_captured;
            (void)lt_rt;
            const float *__restrict B = (const float *)lt_args[1];
            float *__restrict B_packed = (float *)(lt_usize)lt_captured[0];
            for (lt_i64 jo = lt_start; jo < lt_end; ++jo) {
                for (lt_i64 k = 0; k < 2; ++k) {
                    lt_store4(B_packed + (jo * 8 + k * 4), lt_load4(B + (jo * 4 + k * 8)));
                }
            }
        }

        static void looptune_entry_parallel_1(void *const *lt_args, const lt_i64 *lt_captured, lt_i64 lt_start,
                lt_i64 lt_end, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_captured;
            (void)lt_rt;
            const float *__restrict A = (const float *)lt_args[0];
            float *__restrict C = (float *)lt_args[2];
            float *__restrict B_packed = (float *)(lt_usize)lt_captured[0];
            for (lt_i64 i_outer = lt_start; i_outer < lt_end; ++i_outer) {
                for (lt_i64 j_outer = 0; j_outer < 2; ++j_outer) {
                    { /* C.local */
                        lt_f32x4 C_local__0 = {0};
                        lt_f32x4 C_local__4 = {0};
                        C_local__0 = lt_splat4(0.0f);
                        C_local__4 = lt_splat4(0.0f);
                        for (lt_i64 k_1 = 0; k_1 < 2; ++k_1) {
                            C_local__0 = (A[i_outer * 4 + k_1] * lt_load4(B_packed + (j_outer * 8 + k_1 * 4)) + C_local__0);
                            C_local__4 = (A[i_outer * 4 + k_1 + 2] * lt_load4(B_packed + (j_outer * 8 + k_1 * 4)) + C_local__4);
                        }
                        lt_store4(C + (i_outer * 16 + j_outer * 4), C_local__0);
                        lt_store4(C + (i_outer * 16 + j_outer * 4 + 8), C_local__4);
                    }
                }
            }
        }

        void looptune_entry(void *const *lt_args, const lt_runtime *lt_rt) {
            (void)lt_args;
            (void)lt_rt;
            { /* B.packed */
                float B_packed[16] __attribute__((aligned(64)));
                {
                    const lt_i64 lt_captured1[1] = {(lt_i64)(lt_usize)B_packed};
                    lt_rt->parallel_for(lt_rt, looptune_entry_parallel_0, lt_args, lt_captured1, 2);
                }
                {
                    const lt_i64 lt_captured2[1] = {(lt_i64)(lt_usize)B_packed};
                    lt_rt->parallel_for(lt_rt, looptune_entry_parallel_1, lt_args, lt_captured2, 2);
                }
            }
        }
    "#]],
    );
}

#[test]
fn errors_name_the_offending_construct() {
    let nest = default_nest("matmul:m=2,n=3,k=2");
    assert_eq!(
        emit_c(&nest, &EmitOptions::new(6)),
        Err(EmitError::Lanes { lanes: 6 })
    );
    for bad in ["lt_entry", "2fast", "with space", "for", ""] {
        assert_eq!(
            emit_c(&nest, &EmitOptions::new(8).with_entry(bad)),
            Err(EmitError::EntryName { name: bad.into() })
        );
    }
    let f64_nest = LoopNest {
        name: "wide".into(),
        buffers: vec![BufferDecl {
            name: "B".into(),
            dtype: DType::F64,
            shape: vec![1],
            role: BufferRole::Output,
        }],
        vars: Vec::new(),
        inputs: Vec::new(),
        outputs: vec![BufferId(0)],
        body: Stmt::Store {
            buffer: BufferId(0),
            indices: vec![0.into()],
            value: ValueExpr::Const(Scalar {
                dtype: DType::F64,
                value: 1.0,
            }),
        },
    };
    assert_eq!(
        emit_c(&f64_nest, &EmitOptions::default()).map_err(|error| error.to_string()),
        Err("buffer `B` has dtype f64; the C printer prints f32, u8, i8, i16 and i32".into())
    );
    let mut stored_input = nest.clone();
    stored_input.body = Stmt::Store {
        buffer: stored_input.inputs[0],
        indices: vec![0.into(), 0.into()],
        value: ValueExpr::Const(Scalar::f32(1.0)),
    };
    assert!(matches!(
        emit_c(&stored_input, &EmitOptions::default()),
        Err(EmitError::InvalidNest { nest, .. }) if nest == "matmul"
    ));
}

/// A nest whose access the verifier cannot prove in bounds (`C[i + 1, j]` leaves the buffer on
/// the last row) is printed with every access checked; a proven nest has no checks.
#[test]
fn unproven_accesses_are_printed_checked() {
    use looptune_ir::{Stmt, Workload};
    let workload: Workload = "matmul:m=4,n=4,k=4".parse().expect("workload");
    let program = workload.program(&Default::default()).expect("program");
    let nest = looptune_ir::lower(&looptune_ir::Schedule::new(&program)).expect("lowers");
    let proven = looptune_cc::emit_c(&nest, &looptune_cc::EmitOptions::new(8)).expect("prints");
    assert!(!proven.contains("[lt_in("), "{proven}");
    let mut out_of_bounds = nest.clone();
    let output = out_of_bounds.outputs[0];
    fn shift(stmt: &mut Stmt, output: looptune_ir::BufferId) {
        match stmt {
            Stmt::Store {
                buffer, indices, ..
            } if *buffer == output => indices[0] = &indices[0] + 1,
            Stmt::For(body) => shift(&mut body.body, output),
            Stmt::Seq(stmts) => stmts.iter_mut().for_each(|stmt| shift(stmt, output)),
            Stmt::If { then, .. } => shift(then, output),
            Stmt::Alloc { body, .. } => shift(body, output),
            Stmt::Store { .. } => {}
        }
    }
    shift(&mut out_of_bounds.body, output);
    assert!(!looptune_ir::verify::unproven_accesses(&out_of_bounds).is_empty());
    let checked =
        looptune_cc::emit_c(&out_of_bounds, &looptune_cc::EmitOptions::new(8)).expect("prints");
    assert!(checked.contains("C[lt_in("), "{checked}");
}
