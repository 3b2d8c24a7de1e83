//! Every point of a small matmul space and a small conv2d space compiles with the Cranelift JIT
//! and computes what the interpreter computes: the space's promise, checked on real machine code.

use looptune_ir::eval::compare;
use looptune_ir::interp;
use looptune_ir::random::SplitMix64;
use looptune_jit::{Backend, CraneliftBackend, Target};
use looptune_space::Task;

fn check_every_point_compiles_and_agrees(workload: &str) -> usize {
    let task = Task::new(workload.parse().expect("workload parses")).expect("task builds");
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
            .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
        let kernel = backend
            .compile(&nest, &target)
            .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
        let mut actual = vec![0.0; output_len as usize];
        kernel
            .call(&slices, &mut [&mut actual])
            .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
        compare(&actual, &expected, 1e-4)
            .unwrap_or_else(|err| panic!("{workload}: {config}: {err:?}"));
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
