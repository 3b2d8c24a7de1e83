//! Odd shapes, explicitly: primes, m = 1 (GEMV), n = 1, a 7x7 stride-2 convolution, an odd
//! depthwise convolution, dense with bias and ReLU, batch matmul; each under its default
//! schedule, matmuls also register-tiled (with tails, parallel, blocked), at 4, 8 and 16 lanes,
//! against the interpreter. One C file per width.

mod common;

use looptune_cc::{emit_c, EmitOptions};
use looptune_ir::eval::{compare_with_magnitudes, magnitudes};
use looptune_ir::ops::Workload;
use looptune_ir::random::random_inputs;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{interp, lower, Layout, LoopNest, Program, Schedule};

const WORKLOADS: &[&str] = &[
    "matmul:m=13,n=17,k=19",
    "matmul:m=1,n=64,k=37",
    "matmul:m=37,n=1,k=23",
    "matmul:m=7,n=11,k=5,transpose_b=true",
    "conv2d:n=1,ic=3,h=17,w=17,oc=5,kh=7,kw=7,stride=2,pad=3",
    "depthwise_conv2d:n=1,c=5,h=11,w=13,kh=3,kw=3,stride=2,pad=1",
    "depthwise_conv2d:n=1,c=3,h=7,w=41,kh=3,kw=3,stride=2",
    "dense:m=7,n=13,k=11,bias=true,relu=true",
    "batch_matmul:b=3,m=5,n=7,k=9",
];

fn tilings() -> Vec<MatmulTiling> {
    let base = MatmulTiling::default();
    vec![
        MatmulTiling {
            tile_rows: 6,
            tile_columns: 16,
            ..base
        },
        MatmulTiling {
            tile_rows: 3,
            tile_columns: 12,
            unroll_reduction: 4,
            parallel: true,
            ..base
        },
        MatmulTiling {
            tile_rows: 2,
            tile_columns: 8,
            block_rows: 6,
            parallel: true,
            ..base
        },
    ]
}

struct Case {
    name: String,
    nest: LoopNest,
    program: Program,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for text in WORKLOADS {
        let workload: Workload = text.parse().expect("workload parses");
        let program = workload
            .program(&Layout::default())
            .expect("program builds");
        cases.push(Case {
            name: format!("{text} (default schedule)"),
            nest: lower(&Schedule::new(&program)).expect("lowers"),
            program: program.clone(),
        });
        if let Workload::DepthwiseConv2d(params) = workload {
            if params.stride == 2 && params.pad == 0 {
                // Output columns vectorized: stride-2 loads of the input (two loads and a
                // shuffle, see `stride_2_loads_are_two_loads_and_a_shuffle`).
                let mut schedule = Schedule::new(&program);
                let y = schedule.stage("Y").expect("output stage");
                let spatial = schedule.spatial_axes(y);
                let mut order = spatial[..3].to_vec();
                order.extend(schedule.reduce_axes(y));
                order.push(spatial[3]);
                schedule.reorder(y, &order).expect("reorders");
                schedule.vectorize(y, spatial[3]).expect("vectorizes");
                cases.push(Case {
                    name: format!("{text} (columns vectorized)"),
                    nest: lower(&schedule).expect("lowers"),
                    program: program.clone(),
                });
            }
        }
        if let Workload::Matmul(params) = workload {
            for tiling in tilings() {
                let schedule = register_tiled_matmul(params, tiling).expect("recipe applies");
                cases.push(Case {
                    name: format!("{text} ({tiling:?})"),
                    nest: lower(&schedule).expect("lowers"),
                    program: schedule.program().clone(),
                });
            }
        }
    }
    cases.push(every_loop_unrolled());
    cases
}

/// matmul 64^3 with its three loops unrolled: 262,144 copies of the multiply-add if every
/// unrolled loop were printed unrolled.
fn every_loop_unrolled() -> Case {
    let workload: Workload = "matmul:m=64,n=64,k=64".parse().expect("workload parses");
    let program = workload
        .program(&Layout::default())
        .expect("program builds");
    let mut schedule = Schedule::new(&program);
    let c = schedule.stage("C").expect("output stage");
    let mut axes = schedule.spatial_axes(c);
    axes.extend(schedule.reduce_axes(c));
    for axis in axes {
        schedule.unroll(c, axis).expect("unrolls");
    }
    Case {
        name: "matmul:m=64,n=64,k=64 (every loop unrolled)".to_string(),
        nest: lower(&schedule).expect("lowers"),
        program,
    }
}

#[test]
fn nested_unrolled_loops_print_within_the_budget_of_copies() {
    let case = every_loop_unrolled();
    let source = emit_c(&case.nest, &EmitOptions::new(8)).expect("prints");
    let multiply_adds = source.matches(" * ").count();
    assert!(
        multiply_adds <= looptune_ir::UNROLL_BUDGET as usize,
        "{multiply_adds} multiplications printed"
    );
    assert!(
        multiply_adds >= 64,
        "{multiply_adds}: the unrolled rows are printed"
    );
    // Correctness: the case is among `cases`, checked against the interpreter.
}

#[test]
fn odd_shapes_match_the_interpreter_at_every_width() {
    let cases = cases();
    for lanes in [4, 8, 16] {
        let mut source = String::new();
        for (index, case) in cases.iter().enumerate() {
            let options = EmitOptions::new(lanes).with_entry(format!("case_{index}"));
            source.push_str(&emit_c(&case.nest, &options).expect("prints"));
        }
        let compiled = common::compile(&source).expect("compiles");
        for (index, case) in cases.iter().enumerate() {
            let inputs = random_inputs(&case.program, index as u64);
            let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let outputs = || -> Vec<Vec<f32>> {
                case.nest
                    .outputs
                    .iter()
                    .map(|&buffer| vec![0.25; case.nest.buffer(buffer).len()])
                    .collect()
            };
            let (mut expected, mut actual) = (outputs(), outputs());
            let mut expected_refs: Vec<&mut [f32]> =
                expected.iter_mut().map(Vec::as_mut_slice).collect();
            interp::run(&case.nest, &refs, &mut expected_refs).expect("interpreter runs");
            let mut actual_refs: Vec<&mut [f32]> =
                actual.iter_mut().map(Vec::as_mut_slice).collect();
            compiled
                .kernel(&format!("case_{index}"), &case.nest)
                .call(&refs, &mut actual_refs);
            let magnitudes = magnitudes(&case.program, &refs).expect("evaluates");
            for ((actual, expected), magnitudes) in actual.iter().zip(&expected).zip(&magnitudes) {
                compare_with_magnitudes(actual, expected, magnitudes, 1e-4).unwrap_or_else(
                    |mismatch| panic!("{}, {lanes} lanes: {mismatch:?}", case.name),
                );
            }
        }
    }
}

/// A load whose offset moves by two per lane is two contiguous loads and a shuffle at every
/// width, not a gather of scalars (correctness: the case in `cases`, at 4, 8 and 16 lanes).
#[test]
fn stride_2_loads_are_two_loads_and_a_shuffle() {
    let case = cases()
        .into_iter()
        .find(|case| case.name.ends_with("(columns vectorized)"))
        .expect("the stride-2 case");
    for lanes in [4, 8, 16] {
        let source = emit_c(&case.nest, &EmitOptions::new(lanes)).expect("prints");
        let body = &source[source
            .find("#endif /* LOOPTUNE_PRELUDE */")
            .expect("a prelude")..];
        assert!(
            body.contains(&format!("lt_stride2_{lanes}(X")),
            "{lanes} lanes:\n{body}"
        );
    }
}

/// gcc and clang (when installed) accept the printed code of every case with `-Wall -Wextra`
/// and say nothing.
#[test]
fn printed_code_compiles_without_warnings_with_gcc_and_clang() {
    let cases = cases();
    let mut source = String::new();
    for (index, case) in cases.iter().enumerate() {
        let options = EmitOptions::new(16).with_entry(format!("case_{index}"));
        source.push_str(&emit_c(&case.nest, &options).expect("prints"));
    }
    for compiler in ["gcc", "clang"] {
        let available = std::process::Command::new(compiler)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !available {
            eprintln!("{compiler} not installed: skipped");
            continue;
        }
        let extra: &[&str] = if compiler == "clang" {
            &["-Wall", "-Wextra", "-mprefer-vector-width=512"]
        } else {
            &["-Wall", "-Wextra"]
        };
        let compiled = common::compile_with(&source, compiler, extra).expect("compiles");
        assert_eq!(compiled.diagnostics, "", "{compiler} warned");
    }
}
