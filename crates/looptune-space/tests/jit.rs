//! Every point of a small matmul space and a small conv2d space compiles with the Cranelift JIT
//! and computes what the interpreter computes: the space's promise, checked on real machine code.
//! Spaces sized for 8 and 16 lanes are checked the same way: the JIT runs their vector loops in
//! f32x4 pieces, which is slower than the full width they are sized for but computes the same.

#![forbid(unsafe_code)]

use looptune_ir::eval::compare;
use looptune_ir::interp;
use looptune_ir::random::SplitMix64;
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};
use looptune_space::{Task, VectorShape};

fn check_every_point_compiles_and_agrees(workload: &str) -> usize {
    check_every_point_compiles_and_agrees_for(workload, VectorShape::CRANELIFT)
}

fn check_every_point_compiles_and_agrees_for(workload: &str, shape: VectorShape) -> usize {
    let task =
        Task::for_shape(workload.parse().expect("workload parses"), shape).expect("task builds");
    let program = task.reference_program().unwrap();
    let mut random = SplitMix64::new(11);
    let inputs: Vec<Vec<f32>> = program
        .inputs()
        .into_iter()
        .map(|input| {
            let len: i64 = program.tensor(input).shape.iter().product();
            (0..len).map(|_| random.unit_f32()).collect()
        })
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let output_len: i64 = program.tensor(program.outputs[0]).shape.iter().product();
    let backend = CraneliftBackend::new();
    let target = Target::host();
    let mut count = 0;
    for config in task.space().iter() {
        let nest = task.lower(&config).unwrap();
        let mut expected = vec![0.0; output_len as usize];
        interp::run(&nest, &slices, &mut [&mut expected])
            .unwrap_or_else(|err| panic!("{workload} {shape}: {config}: {err}"));
        let kernel = backend
            .compile(&nest, &target)
            .unwrap_or_else(|err| panic!("{workload} {shape}: {config}: {err}"));
        let mut actual = vec![0.0; output_len as usize];
        kernel
            .call(&slices, &mut [&mut actual])
            .unwrap_or_else(|err| panic!("{workload} {shape}: {config}: {err}"));
        compare(&actual, &expected, 1e-4)
            .unwrap_or_else(|err| panic!("{workload} {shape}: {config}: {err:?}"));
        count += 1;
    }
    count
}

#[test]
fn every_point_of_a_small_matmul_space_compiles_and_agrees_with_the_interpreter() {
    let count = check_every_point_compiles_and_agrees("matmul:m=21,n=30,k=7");
    assert!(count > 500, "{count}");
}

#[test]
fn every_point_of_a_small_conv2d_space_compiles_and_agrees_with_the_interpreter() {
    let count =
        check_every_point_compiles_and_agrees("conv2d:n=1,ic=2,h=6,w=9,oc=16,kh=3,kw=3,pad=1");
    assert!(count > 800, "{count}");
}

#[test]
fn every_point_of_small_spaces_sized_for_8_lanes_compiles_and_agrees() {
    for workload in [
        "matmul:m=13,n=37,k=5",
        "conv2d:n=1,ic=2,h=5,w=19,oc=24,kh=3,kw=3,pad=1",
    ] {
        let count = check_every_point_compiles_and_agrees_for(workload, VectorShape::AVX2);
        assert!(count > 400, "{workload}: {count}");
    }
}

#[test]
fn every_point_of_small_spaces_sized_for_16_lanes_compiles_and_agrees() {
    for workload in [
        "matmul:m=13,n=37,k=5",
        "depthwise_conv2d:n=1,c=5,h=6,w=35,kh=3,kw=3,stride=1,pad=1",
    ] {
        let count = check_every_point_compiles_and_agrees_for(workload, VectorShape::AVX512);
        assert!(count > 200, "{workload}: {count}");
    }
}
