//! Register tiles: a BLIS-style micro-kernel keeps its accumulators in SSA variables (XMM
//! registers) across the reduction loop, with no load or store of them inside it.

#![forbid(unsafe_code)]

mod common;

use common::*;
use looptune_ir::{DType, LoopKind, Stmt, ValueExpr};
use looptune_runtime::Target;

/// The bodies of a CLIF function's innermost loops. Loops are top-tested: a header holding the
/// test, then the body, which jumps back to it; an innermost loop's body is a single block
/// right after its header.
fn innermost_loops(clif: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in clif.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("block") && trimmed.ends_with(':') {
            if let Some((name, body)) = current.take() {
                blocks.push((name, body));
            }
            let name = trimmed
                .split(['(', ':'])
                .next()
                .unwrap_or_default()
                .to_string();
            current = Some((name, Vec::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push(trimmed);
        }
    }
    blocks.extend(current);
    blocks
        .windows(2)
        .filter(|pair| {
            let (header, _) = &pair[0];
            let (_, body) = &pair[1];
            body.iter()
                .rev()
                .find(|line| !line.is_empty())
                .is_some_and(|line| line.starts_with(&format!("jump {header}(")))
        })
        .map(|pair| pair[1].1.join("\n"))
        .collect()
}

#[test]
fn tiled_matmul_is_correct_for_several_tiles() {
    for (mr, nr) in [(4, 16), (6, 8), (2, 4), (3, 12)] {
        let (m, n, k) = (mr * 3, nr * 2, 37);
        let nest = tiled_matmul(m, n, k, mr, nr, LoopKind::Serial);
        let kernel = compile(&nest);
        let a = data((m * k) as usize, 11);
        let b = data((k * n) as usize, 12);
        let mut out = vec![0.0; (m * n) as usize];
        kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
        let expected = reference_matmul(&a, &b, m as usize, n as usize, k as usize);
        assert_close(&out, &expected, 1e-5);
    }
}

#[test]
fn accumulators_stay_in_registers_across_the_reduction_loop() {
    // 12 accumulator vectors, 2 of B and a broadcast: within the 16 XMM registers.
    let (mr, nr) = (6, 8);
    let nest = tiled_matmul(12, 32, 64, mr, nr, LoopKind::Serial);
    let kernel = compile(&nest);
    let clif = kernel.source().expect("clif kept");
    let loops = innermost_loops(clif);
    // The k loop is the only innermost loop; the outer ones contain other blocks.
    assert_eq!(loops.len(), 1, "{clif}");
    let k_loop = &loops[0];
    let vector_loads = k_loop.matches("load.f32x4").count();
    let scalar_loads = k_loop.matches("load.f32 ").count();
    let stores = k_loop.matches("store").count();
    let fmas = k_loop.matches("= fma").count();
    // One broadcast load of A per row (shared by the row's groups of four columns: the FMA
    // overwrites its addend, not a multiplicand), one vector load of B per group, one FMA per
    // accumulator vector, and nothing of the tile itself.
    assert_eq!(scalar_loads, mr as usize, "{k_loop}");
    assert_eq!(vector_loads, (nr / 4) as usize, "{k_loop}");
    assert_eq!(fmas, (mr * nr / 4) as usize, "{k_loop}");
    assert_eq!(stores, 0, "{k_loop}");
    // Every access is bounded statically: no run-time bounds check in the hot loop.
    assert!(!k_loop.contains("trapnz"), "{k_loop}");
    if Target::host().features.fma {
        // In machine code the FMAs accumulate in place (`vfmadd231ps`, see vendor/README.md):
        // the block that holds them moves no vector register.
        let fma_block = clif
            .split("\nblock")
            .filter(|block| block.contains("vfmadd"))
            .collect::<Vec<_>>();
        assert_eq!(fma_block.len(), 1, "{clif}");
        let fma_block = fma_block[0];
        assert_eq!(
            fma_block.matches("vfmadd231ps").count(),
            (mr * nr / 4) as usize,
            "{fma_block}"
        );
        assert!(!fma_block.contains("movdqa"), "{fma_block}");
        assert!(!fma_block.contains("movaps"), "{fma_block}");
    }
}

#[test]
fn scalar_register_tiles_are_promoted_too() {
    // A 3x3 tile with both loops unrolled (no vectors): sums of products along k.
    let (m, n, k) = (6, 6, 10);
    let mut builder = NestBuilder::new("scalar_tile");
    let a = builder.input("A", &[m, k]);
    let b = builder.input("B", &[k, n]);
    let out = builder.output("C", &[m, n]);
    let acc = builder.temp("acc", DType::F32, &[3, 3]);
    let (io, jo, kk, i, j) = (
        builder.var("io"),
        builder.var("jo"),
        builder.var("k"),
        builder.var("i"),
        builder.var("j"),
    );
    let row = v(io) * 3 + v(i);
    let col = v(jo) * 3 + v(j);
    let unroll2 = |body: Stmt| {
        for_(
            i,
            3,
            LoopKind::Unrolled,
            for_(j, 3, LoopKind::Unrolled, body),
        )
    };
    let body = alloc(
        acc,
        Stmt::Seq(vec![
            unroll2(store(acc, vec![v(i), v(j)], ValueExpr::f32(0.0))),
            serial(
                kk,
                k,
                unroll2(store(
                    acc,
                    vec![v(i), v(j)],
                    ld(acc, vec![v(i), v(j)])
                        + ld(a, vec![row.clone(), v(kk)]) * ld(b, vec![v(kk), col.clone()]),
                )),
            ),
            unroll2(store(
                out,
                vec![row.clone(), col.clone()],
                ld(acc, vec![v(i), v(j)]),
            )),
        ]),
    );
    let nest = builder.build(serial(io, 2, serial(jo, 2, body)));
    let kernel = compile(&nest);
    let loops = innermost_loops(kernel.source().expect("clif kept"));
    assert_eq!(loops.len(), 1);
    assert_eq!(loops[0].matches("store").count(), 0, "{}", loops[0]);
    let a_data = data((m * k) as usize, 13);
    let b_data = data((k * n) as usize, 14);
    let mut result = vec![0.0; (m * n) as usize];
    kernel
        .call(&[&a_data, &b_data], &mut [&mut result])
        .expect("call");
    assert_close(
        &result,
        &reference_matmul(&a_data, &b_data, m as usize, n as usize, k as usize),
        1e-5,
    );
}

#[test]
fn fma_is_fused_with_the_flag_and_mul_add_without_it() {
    let nest = tiled_matmul(4, 8, 16, 4, 8, LoopKind::Serial);
    let a = data(64, 15);
    let b = data(128, 16);
    let expected = reference_matmul(&a, &b, 4, 8, 16);
    let host = Target::host();
    let mut targets = vec![host.clone().without_fma()];
    if host.features.fma {
        targets.push(host);
    }
    for target in targets {
        let kernel = compile_for(&nest, &target);
        let clif = kernel.source().expect("clif kept");
        assert_eq!(clif.contains("= fma"), target.features.fma, "{clif}");
        let calls = clif
            .lines()
            .filter(|line| line.contains("= call") || line.trim_start().starts_with("call"))
            .count();
        assert_eq!(calls, 0, "no libcall: {clif}");
        let mut out = vec![0.0; 32];
        kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
        assert_close(&out, &expected, 1e-5);
    }
}

#[test]
fn parallel_register_tiled_matmul_matches_the_reference() {
    let nest = tiled_matmul(48, 32, 29, 4, 8, LoopKind::Parallel);
    let kernel = compile_for(&nest, &Target::host().with_threads(2));
    let a = data(48 * 29, 17);
    let b = data(29 * 32, 18);
    let mut out = vec![0.0; 48 * 32];
    kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
    assert_close(&out, &reference_matmul(&a, &b, 48, 32, 29), 1e-5);
}
