//! Every loop-IR construct compiled and run against values computed in plain Rust.

#![forbid(unsafe_code)]

mod common;

use common::*;
use looptune_ir::{BinaryOp, CmpOp, Cond, DType, LoopKind, Stmt, UnaryOp, ValueExpr};
use looptune_runtime::Target;

fn elementwise(extent: i64, kind: LoopKind) -> looptune_ir::LoopNest {
    let mut builder = NestBuilder::new("axpy");
    let a = builder.input("A", &[extent]);
    let b = builder.input("B", &[extent]);
    let out = builder.output("out", &[extent]);
    let i = builder.var("i");
    let value = ld(a, vec![v(i)]) * ValueExpr::f32(2.0) + ld(b, vec![v(i)]);
    builder.build(for_(i, extent, kind, store(out, vec![v(i)], value)))
}

#[test]
fn vectorized_loops_with_tails_match_scalar_results() {
    for extent in [1, 3, 4, 5, 7, 8, 13, 16, 67, 130] {
        for kind in [LoopKind::Serial, LoopKind::Vectorized, LoopKind::Unrolled] {
            let kernel = compile(&elementwise(extent, kind));
            let a = data(extent as usize, 1);
            let b = data(extent as usize, 2);
            let mut out = vec![0.0; extent as usize];
            kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
            let expected: Vec<f32> = a.iter().zip(&b).map(|(a, b)| a * 2.0 + b).collect();
            assert_close(&out, &expected, 1e-6);
        }
    }
}

#[test]
fn vectorized_contiguous_access_becomes_vector_loads_and_stores() {
    let kernel = compile(&elementwise(16, LoopKind::Vectorized));
    let clif = kernel.source().expect("clif kept");
    assert_eq!(clif.matches("load.f32x4").count(), 8, "{clif}");
    assert_eq!(clif.matches("store").count(), 4, "{clif}");
}

#[test]
fn floor_division_and_modulo_round_towards_negative_infinity() {
    // out[i, d] = (i - 9) / divisor and % divisor, for constant divisors of both signs, a
    // power of two and a run-time divisor.
    let mut builder = NestBuilder::new("floor");
    let input = builder.input("unused", &[1]);
    let out = builder.output("out", &[19, 10]);
    let i = builder.var("i");
    let x = || v(i) - 9;
    let dynamic = v(i).floor_mod(4) + 1; // 1..=4, a run-time value
    let dynamic_negative = c(0) - v(i).floor_mod(3) - 1; // -1..=-3
    let columns = [
        x().floor_div(3),
        x().floor_mod(3),
        x().floor_div(-3),
        x().floor_mod(-3),
        x().floor_div(4),
        x().floor_mod(4),
        x().floor_div(dynamic.clone()),
        x().floor_mod(dynamic),
        x().floor_div(dynamic_negative.clone()),
        x().floor_mod(dynamic_negative),
    ];
    let body = Stmt::Seq(
        columns
            .iter()
            .enumerate()
            .map(|(col, expr)| {
                store(
                    out,
                    vec![v(i), c(col as i64)],
                    ValueExpr::FromIndex(DType::F32, expr.clone()),
                )
            })
            .collect(),
    );
    let _ = input;
    let nest = builder.build(serial(i, 19, body));
    for kind_nest in [nest.clone(), {
        let mut unrolled = nest.clone();
        if let Stmt::For(lp) = &mut unrolled.body {
            lp.kind = LoopKind::Unrolled;
        }
        unrolled
    }] {
        let kernel = compile(&kind_nest);
        let mut result = vec![0.0; 190];
        kernel.call(&[&[0.0]], &mut [&mut result]).expect("call");
        for row in 0..19i64 {
            let x = row - 9;
            let d = row.rem_euclid(4) + 1;
            let dn = -(row.rem_euclid(3)) - 1;
            let floor_div = |a: i64, b: i64| (a as f64 / b as f64).floor() as i64;
            let floor_mod = |a: i64, b: i64| a - b * floor_div(a, b);
            let expected = [
                floor_div(x, 3),
                floor_mod(x, 3),
                floor_div(x, -3),
                floor_mod(x, -3),
                floor_div(x, 4),
                floor_mod(x, 4),
                floor_div(x, d),
                floor_mod(x, d),
                floor_div(x, dn),
                floor_mod(x, dn),
            ];
            for (col, want) in expected.iter().enumerate() {
                assert_eq!(
                    result[(row * 10) as usize + col],
                    *want as f32,
                    "row {row} column {col}"
                );
            }
        }
    }
}

/// `out[i] = i < n ? A[i + (i / n) * 10^12] : -1`: the untaken branch indexes terabytes past the
/// buffer, so evaluating it eagerly would crash the test.
#[test]
fn select_evaluates_only_the_chosen_operand() {
    let n = 6;
    for kind in [LoopKind::Serial, LoopKind::Vectorized, LoopKind::Unrolled] {
        let mut builder = NestBuilder::new("lazy_select");
        let a = builder.input("A", &[n]);
        let out = builder.output("out", &[n + 5]);
        let i = builder.var("i");
        let far = v(i) + v(i).floor_div(n) * 1_000_000_000_000;
        let value = ValueExpr::select(v(i).lt(n), ld(a, vec![far]), ValueExpr::f32(-1.0));
        let nest = builder.build(for_(i, n + 5, kind, store(out, vec![v(i)], value)));
        let kernel = compile(&nest);
        let input = data(n as usize, 3);
        let mut result = vec![0.0; (n + 5) as usize];
        kernel.call(&[&input], &mut [&mut result]).expect("call");
        let mut expected = input.clone();
        expected.extend([-1.0; 5]);
        assert_eq!(result, expected, "{kind:?}");
    }
}

#[test]
fn guards_skip_split_tails() {
    // A split of 10 by 4 with a guard: for o { for i { if o*4+i < 10 { out[o*4+i] = A[..] + 1 } } }
    for inner_kind in [LoopKind::Serial, LoopKind::Vectorized, LoopKind::Unrolled] {
        let mut builder = NestBuilder::new("guarded");
        let a = builder.input("A", &[10]);
        let out = builder.output("out", &[10]);
        let o = builder.var("o");
        let i = builder.var("i");
        let index = v(o) * 4 + v(i);
        let body = Stmt::If {
            cond: index.clone().lt(10),
            then: Box::new(store(
                out,
                vec![index.clone()],
                ld(a, vec![index]) + ValueExpr::f32(1.0),
            )),
        };
        let nest = builder.build(serial(o, 3, for_(i, 4, inner_kind, body)));
        let kernel = compile(&nest);
        let input = data(10, 4);
        let mut result = vec![0.0; 10];
        kernel.call(&[&input], &mut [&mut result]).expect("call");
        let expected: Vec<f32> = input.iter().map(|x| x + 1.0).collect();
        assert_eq!(result, expected, "{inner_kind:?}");
    }
}

#[test]
fn gathers_and_scatters_in_vectorized_loops() {
    // out[j, i] = A[i, j] + A[(i * 3) % 8, j]: the store strides, one load strides, and one is a
    // modular gather.
    let mut builder = NestBuilder::new("transpose");
    let a = builder.input("A", &[8, 6]);
    let out = builder.output("out", &[6, 8]);
    let i = builder.var("i");
    let j = builder.var("j");
    let value = ld(a, vec![v(i), v(j)]) + ld(a, vec![(v(i) * 3).floor_mod(8), v(j)]);
    let nest = builder.build(serial(
        j,
        6,
        for_(
            i,
            8,
            LoopKind::Vectorized,
            store(out, vec![v(j), v(i)], value),
        ),
    ));
    let kernel = compile(&nest);
    let input = data(48, 5);
    let mut result = vec![0.0; 48];
    kernel.call(&[&input], &mut [&mut result]).expect("call");
    for row in 0..8 {
        for col in 0..6 {
            let expected = input[row * 6 + col] + input[((row * 3) % 8) * 6 + col];
            assert_eq!(result[col * 8 + row], expected);
        }
    }
}

#[test]
fn lane_dependent_selects_and_conversions_are_scalarised_correctly() {
    // out[i] = (i % 3 == 0 || A[i] > 0.5) && !(A[i] < -0.5) ? sqrt(|A[i]|) : float(i) - A[i]
    let mut builder = NestBuilder::new("lanes");
    let a = builder.input("A", &[13]);
    let out = builder.output("out", &[13]);
    let i = builder.var("i");
    let x = || ld(a, vec![v(i)]);
    let cond = Cond::Index(CmpOp::Eq, v(i).floor_mod(3), c(0))
        .or(Cond::Value(
            CmpOp::Gt,
            Box::new(x()),
            Box::new(ValueExpr::f32(0.5)),
        ))
        .and(Cond::Not(Box::new(Cond::Value(
            CmpOp::Lt,
            Box::new(x()),
            Box::new(ValueExpr::f32(-0.5)),
        ))));
    let then = ValueExpr::Unary(
        UnaryOp::Sqrt,
        Box::new(ValueExpr::Unary(UnaryOp::Abs, Box::new(x()))),
    );
    let otherwise = ValueExpr::FromIndex(DType::F32, v(i)) - x();
    let value = ValueExpr::select(cond, then, otherwise);
    let nest = builder.build(for_(
        i,
        13,
        LoopKind::Vectorized,
        store(out, vec![v(i)], value),
    ));
    let kernel = compile(&nest);
    let input = data(13, 6);
    let mut result = vec![0.0; 13];
    kernel.call(&[&input], &mut [&mut result]).expect("call");
    for (index, x) in input.iter().enumerate() {
        // The IR says `not (x < -0.5)`, which differs from `x >= -0.5` only for NaN.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let holds = (index % 3 == 0 || *x > 0.5) && !(*x < -0.5);
        let expected = if holds {
            x.abs().sqrt()
        } else {
            index as f32 - x
        };
        assert_eq!(result[index], expected, "element {index}");
    }
}

#[test]
fn min_max_neg_div_and_casts() {
    let mut builder = NestBuilder::new("ops");
    let a = builder.input("A", &[9]);
    let b = builder.input("B", &[9]);
    let out = builder.output("out", &[5, 9]);
    let i = builder.var("i");
    let x = || ld(a, vec![v(i)]);
    let y = || ld(b, vec![v(i)]);
    let as_f64 = |e: ValueExpr| ValueExpr::Cast(DType::F64, Box::new(e));
    let columns = [
        x().max(y()),
        x().min(ValueExpr::f32(0.0)),
        -x() / (y() + ValueExpr::f32(3.0)),
        // Through f64 and back.
        ValueExpr::Cast(
            DType::F32,
            Box::new(ValueExpr::binary(BinaryOp::Mul, as_f64(x()), as_f64(y()))),
        ),
        // Through i32 (truncating) and back.
        ValueExpr::Cast(
            DType::F32,
            Box::new(ValueExpr::Cast(
                DType::I32,
                Box::new(x() * ValueExpr::f32(10.0)),
            )),
        ),
    ];
    for kind in [LoopKind::Serial, LoopKind::Vectorized] {
        let body = Stmt::Seq(
            columns
                .iter()
                .enumerate()
                .map(|(row, value)| store(out, vec![c(row as i64), v(i)], value.clone()))
                .collect(),
        );
        let nest = builder.with_body(for_(i, 9, kind, body));
        let kernel = compile(&nest);
        let xs = data(9, 7);
        let ys = data(9, 8);
        let mut result = vec![0.0; 45];
        kernel.call(&[&xs, &ys], &mut [&mut result]).expect("call");
        for index in 0..9 {
            let (x, y) = (xs[index], ys[index]);
            let expected = [
                x.max(y),
                x.min(0.0),
                -x / (y + 3.0),
                (f64::from(x) * f64::from(y)) as f32,
                ((x * 10.0) as i32) as f32,
            ];
            for (row, want) in expected.iter().enumerate() {
                assert_eq!(
                    result[row * 9 + index],
                    *want,
                    "{kind:?} row {row} element {index}"
                );
            }
        }
    }
}

#[test]
fn parallel_loops_write_disjoint_rows() {
    // parallel i { for j { out[i, j] = A[i, j] * 2 + i } }, inside an outer serial loop whose
    // counter the parallel body captures, and an unrolled one whose counter becomes a constant.
    let rows = 37;
    let cols = 19;
    let mut builder = NestBuilder::new("parallel_rows");
    let a = builder.input("A", &[2, rows, cols]);
    let out = builder.output("out", &[2, 2, rows, cols]);
    let s = builder.var("s");
    let u = builder.var("u");
    let i = builder.var("i");
    let j = builder.var("j");
    let value = ld(a, vec![v(s), v(i), v(j)]) * ValueExpr::f32(2.0)
        + ValueExpr::FromIndex(DType::F32, v(i) + v(u) * 100);
    let inner = for_(
        i,
        rows,
        LoopKind::Parallel,
        for_(
            j,
            cols,
            LoopKind::Vectorized,
            store(out, vec![v(s), v(u), v(i), v(j)], value),
        ),
    );
    let nest = builder.build(serial(s, 2, for_(u, 2, LoopKind::Unrolled, inner)));
    for threads in [1, 2, 3] {
        let kernel = compile_for(&nest, &Target::host().with_threads(threads));
        assert!(kernel.uses_parallel());
        let input = data((2 * rows * cols) as usize, 9);
        let mut result = vec![0.0; (4 * rows * cols) as usize];
        kernel.call(&[&input], &mut [&mut result]).expect("call");
        for sv in 0..2usize {
            for uv in 0..2usize {
                for row in 0..rows as usize {
                    for col in 0..cols as usize {
                        let expected = input[(sv * rows as usize + row) * cols as usize + col]
                            * 2.0
                            + (row + uv * 100) as f32;
                        let got =
                            result[((sv * 2 + uv) * rows as usize + row) * cols as usize + col];
                        assert_eq!(
                            got, expected,
                            "threads {threads} s {sv} u {uv} row {row} col {col}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn temporaries_in_memory_on_the_stack_and_heap() {
    // A row buffer indexed by a run-time counter (so it stays in memory): 40 floats on the
    // stack, 20,000 floats (80 KB) on the heap; inside a parallel loop too.
    for (len, kind) in [
        (40i64, LoopKind::Serial),
        (20_000, LoopKind::Serial),
        (40, LoopKind::Parallel),
        (20_000, LoopKind::Parallel),
    ] {
        let mut builder = NestBuilder::new("temps");
        let a = builder.input("A", &[3, len]);
        let out = builder.output("out", &[3, len]);
        let t = builder.temp("row", DType::F32, &[len]);
        let r = builder.var("r");
        let j = builder.var("j");
        let body = alloc(
            t,
            Stmt::Seq(vec![
                serial(
                    j,
                    len,
                    store(t, vec![v(j)], ld(a, vec![v(r), v(j)]) + ValueExpr::f32(1.0)),
                ),
                serial(
                    j,
                    len,
                    store(out, vec![v(r), c(len - 1) - v(j)], ld(t, vec![v(j)])),
                ),
            ]),
        );
        let nest = builder.build(for_(r, 3, kind, body));
        let kernel = compile_for(&nest, &Target::host().with_threads(2));
        let input = data((3 * len) as usize, 10);
        let mut result = vec![0.0; (3 * len) as usize];
        kernel.call(&[&input], &mut [&mut result]).expect("call");
        for row in 0..3usize {
            for col in 0..len as usize {
                let expected = input[row * len as usize + len as usize - 1 - col] + 1.0;
                assert_eq!(
                    result[row * len as usize + col],
                    expected,
                    "len {len} {kind:?}"
                );
            }
        }
    }
}
