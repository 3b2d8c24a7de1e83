//! Every point of small spaces is correct; recipes are points; fallbacks beat the default.
//!
//! The exhaustive tests enumerate whole spaces (a few thousand points each) and run every point
//! through the interpreter against the direct evaluator; they are sized for
//! `cargo test --release`. The JIT half of the same check lives in `tests/jit.rs`.

use super::*;
use crate::task::Task;
use crate::value::ConfigValues;
use crate::vector_shape::VectorShape;
use looptune_ir::eval::{compare, evaluate};
use looptune_ir::random::SplitMix64;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{interp, lower, LoopKind, LoopNest, Stmt};

fn task(workload: &str) -> Task {
    Task::new(workload.parse().expect("workload parses")).expect("task builds")
}

fn task_for(workload: &str, shape: VectorShape) -> Task {
    Task::for_shape(workload.parse().expect("workload parses"), shape).expect("task builds")
}

/// Random inputs for the task's program and the direct evaluator's outputs.
fn reference(task: &Task, seed: u64) -> (Vec<Vec<f32>>, Vec<f32>) {
    let program = task.reference_program().unwrap();
    let mut random = SplitMix64::new(seed);
    let inputs: Vec<Vec<f32>> = program
        .inputs()
        .into_iter()
        .map(|input| {
            let len: i64 = program.tensor(input).shape.iter().product();
            (0..len).map(|_| random.unit_f32()).collect()
        })
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut expected = evaluate(&program, &slices).unwrap();
    (inputs, expected.remove(0))
}

fn check_point(task: &Task, config: &Config, inputs: &[Vec<f32>], expected: &[f32]) {
    let nest = task
        .lower(config)
        .unwrap_or_else(|err| panic!("{}: {config}: {err}", task.key()));
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut output = vec![0.0; expected.len()];
    interp::run(&nest, &slices, &mut [&mut output])
        .unwrap_or_else(|err| panic!("{}: {config}: {err}", task.key()));
    compare(&output, expected, 1e-4)
        .unwrap_or_else(|err| panic!("{}: {config}: {err:?}", task.key()));
}

/// Enumerates the whole space and checks every valid point; returns how many there were.
fn check_every_point(workload: &str, max_points: u128) -> usize {
    check_every_point_for(workload, VectorShape::CRANELIFT, max_points)
}

/// [`check_every_point`] for the space sized for `shape`.
fn check_every_point_for(workload: &str, shape: VectorShape, max_points: u128) -> usize {
    let task = task_for(workload, shape);
    assert!(
        task.space().size() <= max_points,
        "{workload}: {} points",
        task.space().size()
    );
    let (inputs, expected) = reference(&task, 1);
    let mut count = 0;
    for config in task.space().iter() {
        check_point(&task, &config, &inputs, &expected);
        count += 1;
    }
    count
}

#[test]
fn every_point_of_a_small_matmul_space_is_correct() {
    // m = 21 and n = 30 leave tails for most tiles; k = 7 for most unrolls.
    let count = check_every_point("matmul:m=21,n=30,k=7", 20_000);
    assert!(count > 500, "{count}");
}

#[test]
fn every_point_of_a_small_conv2d_space_is_correct() {
    let count = check_every_point("conv2d:n=1,ic=2,h=6,w=9,oc=16,kh=3,kw=3,pad=1", 20_000);
    assert!(count > 800, "{count}");
}

#[test]
fn every_point_of_small_spaces_of_the_other_operators_is_correct() {
    check_every_point(
        "conv2d:n=2,ic=3,h=7,w=7,oc=5,kh=3,kw=3,stride=2,pad=1",
        20_000,
    );
    check_every_point("dense:m=6,n=9,k=4,bias=true,relu=true", 20_000);
    check_every_point("dense:m=5,n=8,k=3", 20_000);
    check_every_point("matmul:m=3,n=2,k=3,transpose_b=true", 20_000);
    check_every_point("batch_matmul:b=2,m=5,n=8,k=3", 20_000);
    check_every_point(
        "depthwise_conv2d:n=1,c=3,h=9,w=9,kh=3,kw=3,stride=1,pad=1",
        20_000,
    );
    check_every_point(
        "depthwise_conv2d:n=1,c=2,h=8,w=8,kh=3,kw=3,stride=2,pad=1",
        20_000,
    );
    check_every_point(
        "depthwise_conv2d:n=1,c=8,h=7,w=9,kh=3,kw=3,stride=2,pad=1,block=8",
        20_000,
    );
    check_every_point(
        "depthwise_conv2d:n=1,c=6,h=5,w=7,kh=3,kw=3,pad=1,dilation=2,block=3",
        20_000,
    );
    for workload in BLOCKED_CONV_SHAPES.iter().chain(&LAYOUT_TRANSFORM_SHAPES) {
        check_every_point(workload, 20_000);
    }
}

/// Channel-blocked conv2d: a block narrower than a vector (3, 4), of one vector and of two at 8
/// lanes; strides 1-3, padding, dilation, a 1x1 with a fused epilogue, batch 2.
const BLOCKED_CONV_SHAPES: [&str; 4] = [
    "conv2d:n=1,ic=6,h=5,w=7,oc=9,kh=3,kw=3,stride=2,pad=1,block=3",
    "conv2d:n=2,ic=8,h=7,w=5,oc=16,kh=3,kw=2,stride=3,pad=2,dilation=2,block=8",
    "conv2d:n=1,ic=4,h=5,w=11,oc=8,kh=1,kw=1,stride=2,bias=true,residual=true,relu=true,block=4",
    "conv2d:n=1,ic=16,h=3,w=13,oc=16,kh=3,kw=3,pad=1,block=16",
];

/// Layout transforms: pack, unpack, and between two blocks, with a prime width.
const LAYOUT_TRANSFORM_SHAPES: [&str; 3] = [
    "layout_transform:n=2,c=12,h=3,w=7,from=1,to=4",
    "layout_transform:n=1,c=16,h=2,w=13,from=8,to=1",
    "layout_transform:n=1,c=12,h=3,w=5,from=3,to=6",
];

#[test]
fn sampled_points_of_reference_sized_spaces_build_schedules() {
    for workload in [
        "matmul:m=512,n=512,k=512",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
        "dense:m=128,n=768,k=3072,bias=true,relu=true",
        "batch_matmul:b=12,m=128,n=128,k=64",
    ] {
        let task = task(workload);
        for config in task.space().sample(5).take(40) {
            task.lower(&config)
                .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
        }
    }
}

/// The config of the matmul space that names the recipe's tiling.
fn recipe_point(task: &Task, m: i64, tiling: MatmulTiling) -> Config {
    let blocked = tiling.block_rows > tiling.tile_rows && tiling.block_rows < m;
    let rows = task
        .space()
        .knob("tile_i")
        .unwrap()
        .values()
        .iter()
        .find(|value| match value {
            KnobValue::Split(parts) if blocked => {
                parts[2] == tiling.tile_rows && parts[1] * parts[2] == tiling.block_rows
            }
            KnobValue::Split(parts) => parts[2] == tiling.tile_rows && parts[1] == 1,
            _ => false,
        })
        .expect("the rows of the recipe are a value of tile_i")
        .clone();
    let mut values = task.fallback_config().unwrap().to_values();
    for (name, value) in &mut values {
        *value = match name.as_str() {
            "tile_i" => rows.clone(),
            "tile_j" => KnobValue::Split(vec![0, tiling.tile_columns]),
            "tile_k" => KnobValue::Split(vec![0, tiling.unroll_reduction]),
            "order" => KnobValue::Reorder(vec![0, 1]),
            "pack_b" => KnobValue::Choice(1),
            "parallel" => KnobValue::Choice(i64::from(tiling.parallel)),
            _ => value.clone(),
        };
        // Fill in the outer part of a split the way the knob rounds it.
        if let KnobValue::Split(parts) = value {
            if parts[0] == 0 {
                let extent = match name.as_str() {
                    "tile_j" => task_extent(task, 'n'),
                    _ => task_extent(task, 'k'),
                };
                parts[0] = (extent + parts[1] - 1) / parts[1];
            }
        }
    }
    task.space()
        .from_values(&values)
        .expect("the recipe is a point")
}

fn task_extent(task: &Task, which: char) -> i64 {
    match task.workload() {
        Workload::Matmul(p) if which == 'n' => p.n,
        Workload::Matmul(p) => p.k,
        other => panic!("not a matmul: {other}"),
    }
}

#[test]
fn the_register_tiled_matmul_recipe_is_a_point_of_the_matmul_space() {
    let tilings = [
        MatmulTiling::default(),
        MatmulTiling {
            block_rows: 64,
            parallel: true,
            ..MatmulTiling::default()
        },
        MatmulTiling {
            tile_rows: 6,
            tile_columns: 8,
            unroll_reduction: 4,
            block_rows: 1,
            parallel: false,
        },
        MatmulTiling {
            tile_rows: 2,
            tile_columns: 16,
            unroll_reduction: 2,
            block_rows: 32,
            parallel: true,
        },
    ];
    for (m, n, k) in [(512, 512, 512), (1024, 1024, 1024), (20, 24, 9)] {
        let params = MatmulParams {
            m,
            n,
            k,
            transpose_b: false,
        };
        let task = task(&Workload::Matmul(params).to_string());
        for tiling in tilings {
            let config = recipe_point(&task, m, tiling);
            let recipe = lower(&register_tiled_matmul(params, tiling).unwrap()).unwrap();
            let ours = task.lower(&config).unwrap();
            assert_eq!(
                ours.to_string(),
                recipe.to_string(),
                "{m}x{n}x{k} {tiling:?}: {config}"
            );
        }
    }
}

/// What makes a nest fast, counted: a small temporary (the register tile), vectorized and
/// unrolled loops.
#[derive(Debug, Default)]
struct NestProperties {
    tile_elements: Option<usize>,
    vectorized: usize,
    unrolled: usize,
}

fn properties(nest: &LoopNest) -> NestProperties {
    let mut found = NestProperties::default();
    nest.body.walk(&mut |stmt| match stmt {
        Stmt::For(lp) if lp.kind == LoopKind::Vectorized => found.vectorized += 1,
        Stmt::For(lp) if lp.kind == LoopKind::Unrolled => found.unrolled += 1,
        Stmt::Alloc { buffer, .. } => {
            let len = nest.buffer(*buffer).len();
            found.tile_elements = Some(found.tile_elements.map_or(len, |other| other.min(len)));
        }
        _ => {}
    });
    found
}

#[test]
fn fallback_configs_have_a_register_tile_that_the_default_schedule_lacks() {
    for workload in [
        "matmul:m=512,n=512,k=512",
        "matmul:m=1024,n=1024,k=1024",
        "matmul:m=7,n=3,k=5",
        "batch_matmul:b=12,m=128,n=128,k=64",
        "dense:m=128,n=768,k=768,bias=true,relu=true",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
        "conv2d:n=1,ic=3,h=224,w=224,oc=64,kh=7,kw=7,stride=2,pad=3",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,pad=1,block=8",
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
    ] {
        let task = task(workload);
        let fallback = task.fallback_config().expect("fallback is a point");
        let tuned = properties(&task.lower(&fallback).unwrap());
        let default =
            properties(&lower(&Schedule::new(&task.reference_program().unwrap())).unwrap());
        // The default schedule of dense with an epilogue keeps the whole product in a
        // temporary; no default schedule has a tile-sized one.
        assert!(
            default.tile_elements.is_none_or(|len| len > 256),
            "{workload}: {default:?}"
        );
        assert_eq!(default.vectorized + default.unrolled, 0, "{workload}");
        let tile = tuned.tile_elements.expect("a register tile");
        assert!(
            (4..=64).contains(&tile),
            "{workload}: tile of {tile} ({fallback})"
        );
        assert!(tuned.unrolled > 0, "{workload}: {fallback}");
        if !workload.contains("m=7,n=3") {
            assert!(tuned.vectorized > 0, "{workload}: {fallback}");
        }
    }
}

#[test]
fn fallback_of_a_matmul_is_the_recipes_tile() {
    let task = task("matmul:m=512,n=512,k=512");
    let fallback = task.fallback_config().unwrap();
    assert_eq!(
        fallback.to_string(),
        "tile_i=split[8, 16, 4], tile_j=split[64, 8], tile_k=split[512, 1], \
         order=reorder[0, 1], pack_b=1, parallel=1"
    );
}

#[test]
fn register_pressure_and_vector_width_constraints_reject_points() {
    let task = task("matmul:m=64,n=64,k=64");
    let space = task.space();
    let mut values = task.fallback_config().unwrap().to_values();
    // 8 rows x 16 columns would need 32 accumulators.
    values[0].1 = KnobValue::Split(vec![8, 1, 8]);
    values[1].1 = KnobValue::Split(vec![4, 16]);
    assert!(matches!(
        space.from_values(&values),
        Err(SpaceError::Violates { constraint, .. })
            if constraint == "register tile fits in 16 vector registers"
    ));
    let conv = self::task("conv2d:n=1,ic=4,h=8,w=8,oc=8,kh=3,kw=3,pad=1");
    let mut values = conv.fallback_config().unwrap().to_values();
    assert_eq!(values[3].0, "vector_axis");
    values[0].1 = KnobValue::Split(vec![4, 2]);
    values[3].1 = KnobValue::Choice(conv::VECTOR_CHANNELS);
    assert!(matches!(
        conv.space().from_values(&values),
        Err(SpaceError::Violates { constraint, .. })
            if constraint == "vectorized extent is a multiple of 4"
    ));
    // Rejection happens while enumerating: no enumerated point breaks either rule.
    for config in conv.space().iter() {
        let channels = config.split("tile_c").unwrap()[1];
        if config.choice("vector_axis") == Ok(conv::VECTOR_CHANNELS) {
            assert_eq!(channels % 4, 0, "{config}");
        }
    }
}

#[test]
fn task_key_is_the_canonical_workload_and_flops_come_from_it() {
    let task = task("matmul:m=2,n=3,k=4");
    assert_eq!(task.key(), "matmul:m=2,n=3,k=4,transpose_b=false");
    assert_eq!(task.flops(), 48.0);
    assert_eq!(task.template_name(), "matmul.register_tile");
}

#[test]
fn sizes_of_the_reference_workloads_spaces() {
    let mut table = String::new();
    for workload in [
        "matmul:m=512,n=512,k=512",
        "matmul:m=1024,n=1024,k=1024",
        "dense:m=128,n=768,k=3072,bias=true,relu=true",
        "batch_matmul:b=12,m=128,n=128,k=64",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
        "matmul:m=10,n=14,k=5",
        "conv2d:n=1,ic=2,h=6,w=9,oc=16,kh=3,kw=3,pad=1",
    ] {
        let task = task(workload);
        let valid = task.space().iter().count();
        table.push_str(&format!(
            "{workload}: {} knobs, {} points, {valid} valid\n",
            task.space().knobs().len(),
            task.space().size()
        ));
    }
    expect_test::expect![[r#"
        matmul:m=512,n=512,k=512: 6 knobs, 7168 points, 1488 valid
        matmul:m=1024,n=1024,k=1024: 6 knobs, 8064 points, 1680 valid
        dense:m=128,n=768,k=3072,bias=true,relu=true: 6 knobs, 5376 points, 1104 valid
        batch_matmul:b=12,m=128,n=128,k=64: 5 knobs, 2688 points, 552 valid
        conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1: 10 knobs, 19200 points, 1408 valid
        depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1: 8 knobs, 2400 points, 192 valid
        matmul:m=10,n=14,k=5: 6 knobs, 1296 points, 312 valid
        conv2d:n=1,ic=2,h=6,w=9,oc=16,kh=3,kw=3,pad=1: 10 knobs, 15360 points, 1344 valid
    "#]].assert_eq(&table);
}

/// FNV-1a, so that a fingerprint stays the same across Rust versions (`DefaultHasher` may not).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a space is, down to the nest of every point: its knobs and their values, its
/// constraints, its size, which indices are valid, the fallback, and every valid point's
/// lowered nest, hashed.
fn fingerprint(task: &Task) -> String {
    let space = task.space();
    let knobs: Vec<String> = space
        .knobs()
        .iter()
        .map(|knob| format!("{}:{}", knob.name(), knob.len()))
        .collect();
    let mut values_hash = 0xcbf2_9ce4_8422_2325;
    for knob in space.knobs() {
        for value in knob.values() {
            values_hash = fnv1a(values_hash, format!("{value:?};").as_bytes());
        }
    }
    let constraints: Vec<&str> = space.constraints().iter().map(|c| c.name()).collect();
    let mut nests_hash = 0xcbf2_9ce4_8422_2325;
    let mut valid = 0;
    for config in space.iter() {
        valid += 1;
        nests_hash = fnv1a(nests_hash, config.index().to_string().as_bytes());
        nests_hash = fnv1a(
            nests_hash,
            task.lower(&config).unwrap().to_string().as_bytes(),
        );
    }
    format!(
        "{}\n  knobs {} (values {values_hash:016x})\n  constraints {constraints:?}\n  \
         {} points, {valid} valid, nests {nests_hash:016x}\n  fallback {}\n",
        task.key(),
        knobs.join(" "),
        space.size(),
        task.fallback_config().unwrap(),
    )
}

/// The Cranelift spaces of the reference workloads, pinned: sizing spaces from a target left
/// them as they were, and every later change is deliberate and listed here. Since then: conv
/// tiles copy out through unrolled loops (the tile became registers instead of memory), and
/// conv2d gained `pack_w` (weights packed into output-channel blocks; a record without it reads
/// as 0, the nest it had); and a guard on a sum of variables now bounds each of them, so the
/// simplifier drops a tile index it proves zero in the partial tile of a ragged split (GEMM
/// nests: `A[i.inner.outer * 5 + i + 1020, k]` became `A[i + 1020, k]`; same points, same
/// work).
#[test]
fn cranelift_spaces_of_the_reference_workloads_are_pinned() {
    let mut table = String::new();
    for workload in [
        "matmul:m=512,n=512,k=512",
        "matmul:m=1024,n=1024,k=1024",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
        "dense:m=128,n=768,k=3072,bias=true,relu=true",
        "batch_matmul:b=12,m=128,n=128,k=64",
    ] {
        table.push_str(&fingerprint(&task(workload)));
    }
    expect_test::expect![[r#"
        matmul:m=512,n=512,k=512,transpose_b=false
          knobs tile_i:56 tile_j:4 tile_k:4 order:2 pack_b:2 parallel:2 (values bd8392869b164abd)
          constraints ["register tile fits in 16 vector registers", "enough accumulators to hide FMA latency", "unrolled reduction body at most 64 vector FMAs"]
          7168 points, 1488 valid, nests b2c8d2a98beb81aa
          fallback tile_i=split[8, 16, 4], tile_j=split[64, 8], tile_k=split[512, 1], order=reorder[0, 1], pack_b=1, parallel=1
        matmul:m=1024,n=1024,k=1024,transpose_b=false
          knobs tile_i:63 tile_j:4 tile_k:4 order:2 pack_b:2 parallel:2 (values 7ec05c666d51febe)
          constraints ["register tile fits in 16 vector registers", "enough accumulators to hide FMA latency", "unrolled reduction body at most 64 vector FMAs"]
          8064 points, 1680 valid, nests 9ddd0fe1798f0b36
          fallback tile_i=split[16, 16, 4], tile_j=split[128, 8], tile_k=split[1024, 1], order=reorder[0, 1], pack_b=1, parallel=1
        conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1,dilation=1
          knobs tile_c:5 tile_oh:3 tile_ow:5 vector_axis:2 order:2 reduce_order:2 unroll_kernel:4 pack_w:2 pad_root:2 parallel:2 (values 6507f2e6c7f6f33f)
          constraints ["packed weights need a channel-vectorized tile", "vectorized extent is a multiple of 4", "register tile fits in 16 vector registers", "enough accumulators to hide FMA latency"]
          19200 points, 1408 valid, nests 4a5b4207aefd9be3
          fallback tile_c=split[8, 8], tile_oh=split[56, 1], tile_ow=split[14, 4], vector_axis=0, order=reorder[0, 1], reduce_order=reorder[0, 1, 2], unroll_kernel=annotate[none, unroll], pack_w=0, pad_root=0, parallel=1
        depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1,dilation=1
          knobs tile_c:5 tile_oh:3 tile_ow:5 vector_axis:1 order:2 unroll_kernel:4 pad_root:2 parallel:2 (values 0d9059ba4fa7fb24)
          constraints ["vectorized extent is a multiple of 4", "register tile fits in 16 vector registers", "enough accumulators to hide FMA latency"]
          2400 points, 192 valid, nests 56e832ec09cc23f5
          fallback tile_c=split[32, 4], tile_oh=split[56, 1], tile_ow=split[7, 8], vector_axis=1, order=reorder[0, 1], unroll_kernel=annotate[none, unroll], pad_root=0, parallel=1
        dense:m=128,n=768,k=3072,bias=true,relu=true
          knobs tile_i:42 tile_j:4 tile_k:4 order:2 pack_b:2 parallel:2 (values 6b6f8e9c24ef8b02)
          constraints ["register tile fits in 16 vector registers", "enough accumulators to hide FMA latency", "unrolled reduction body at most 64 vector FMAs"]
          5376 points, 1104 valid, nests eddb899264988ff3
          fallback tile_i=split[2, 16, 4], tile_j=split[96, 8], tile_k=split[3072, 1], order=reorder[0, 1], pack_b=1, parallel=1
        batch_matmul:b=12,m=128,n=128,k=64,transpose_b=false
          knobs tile_i:42 tile_j:4 tile_k:4 order:2 parallel:2 (values 9a2272818e359caf)
          constraints ["register tile fits in 16 vector registers", "enough accumulators to hide FMA latency", "unrolled reduction body at most 64 vector FMAs"]
          2688 points, 552 valid, nests bd69dea2bc1c608a
          fallback tile_i=split[2, 16, 4], tile_j=split[16, 8], tile_k=split[64, 1], order=reorder[0, 1], parallel=1
    "#]].assert_eq(&table);
}

/// Small shapes for the wide vector shapes: primes, a single row, a single column, channels
/// that are not a whole number of vectors, extents narrower than one vector (scalar tiles).
const ODD_SHAPES: [&str; 19] = [
    "matmul:m=21,n=30,k=7",
    "matmul:m=13,n=37,k=5",
    "matmul:m=17,n=70,k=3",
    "matmul:m=1,n=67,k=3",
    "matmul:m=11,n=1,k=3,transpose_b=true",
    "dense:m=6,n=19,k=4,bias=true,relu=true",
    "batch_matmul:b=2,m=5,n=17,k=3",
    "conv2d:n=1,ic=2,h=5,w=19,oc=24,kh=3,kw=3,pad=1",
    "conv2d:n=2,ic=3,h=7,w=7,oc=5,kh=3,kw=3,stride=2,pad=1",
    "conv2d:n=1,ic=3,h=6,w=11,oc=19,kh=3,kw=3,pad=1,bias=true,residual=true,relu=true",
    "conv2d:n=1,ic=5,h=7,w=7,oc=9,kh=1,kw=1,stride=2,relu=true",
    // 1x1 convolutions are GEMMs over their output positions: a batch, positions that are no
    // whole number of panels, fused epilogues, stride 3.
    "conv2d:n=2,ic=3,h=5,w=7,oc=13,kh=1,kw=1,bias=true,residual=true",
    "conv2d:n=1,ic=4,h=10,w=11,oc=6,kh=1,kw=1,stride=3",
    "depthwise_conv2d:n=1,c=5,h=6,w=35,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=3,h=9,w=9,kh=3,kw=3,stride=1,pad=1",
    // NCHW[b]c: a block of one vector, of two, narrower than a vector; strides 1-3, dilation.
    "depthwise_conv2d:n=1,c=16,h=7,w=11,kh=3,kw=3,stride=2,pad=1,block=8",
    "depthwise_conv2d:n=1,c=32,h=5,w=7,kh=3,kw=3,stride=1,pad=1,block=16",
    "depthwise_conv2d:n=2,c=6,h=5,w=13,kh=1,kw=1,block=2",
    "depthwise_conv2d:n=1,c=12,h=9,w=5,kh=3,kw=5,stride=3,pad=2,dilation=2,block=4",
];

#[test]
fn every_point_of_small_spaces_is_correct_at_8_lanes() {
    let counts: Vec<usize> = ODD_SHAPES
        .iter()
        .chain(&BLOCKED_CONV_SHAPES)
        .chain(&LAYOUT_TRANSFORM_SHAPES)
        .map(|workload| check_every_point_for(workload, VectorShape::AVX2, 20_000))
        .collect();
    assert!(counts.iter().all(|&count| count > 0), "{counts:?}");
    assert!(counts.iter().sum::<usize>() > 3_000, "{counts:?}");
}

#[test]
fn every_point_of_small_spaces_is_correct_at_16_lanes() {
    let counts: Vec<usize> = ODD_SHAPES
        .iter()
        .chain(&BLOCKED_CONV_SHAPES)
        .chain(&LAYOUT_TRANSFORM_SHAPES)
        .map(|workload| check_every_point_for(workload, VectorShape::AVX512, 20_000))
        .collect();
    assert!(counts.iter().all(|&count| count > 0), "{counts:?}");
    assert!(counts.iter().sum::<usize>() > 3_000, "{counts:?}");
}

#[test]
fn sampled_points_of_reference_sized_spaces_build_schedules_at_every_width() {
    for shape in [VectorShape::AVX2, VectorShape::AVX512] {
        for workload in [
            "matmul:m=1024,n=1024,k=1024",
            "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
            "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
            "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=2,pad=1,block=8",
            "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,pad=1,block=8",
            "conv2d:n=1,ic=128,h=28,w=28,oc=256,kh=3,kw=3,stride=2,pad=1,block=16",
            "layout_transform:n=1,c=64,h=56,w=56,from=1,to=8",
            "dense:m=128,n=768,k=3072,bias=true,relu=true",
            "batch_matmul:b=12,m=128,n=128,k=64",
        ] {
            let task = task_for(workload, shape);
            for config in task.space().sample(5).take(40) {
                task.lower(&config)
                    .unwrap_or_else(|err| panic!("{workload} {shape}: {config}: {err}"));
            }
        }
    }
}

#[test]
fn tile_sizes_offered_per_vector_shape() {
    let mut table = String::new();
    for shape in [
        VectorShape::CRANELIFT,
        VectorShape::AVX2,
        VectorShape::AVX512,
    ] {
        table.push_str(&format!(
            "{shape}\n  gemm rows {:?} columns {:?} unrolled FMAs <= {}\n  \
             conv channels {:?} rows {:?} columns {:?}\n",
            gemm::tile_rows(&shape),
            gemm::tile_columns(&shape),
            gemm::max_unrolled_fmas(&shape),
            conv::tile_channels(&shape),
            conv::tile_rows(&shape),
            conv::tile_columns(&shape),
        ));
    }
    expect_test::expect![[r#"
        f32x4 x 16 registers, L1d 32 KiB, L2 1024 KiB
          gemm rows [1, 2, 3, 4, 5, 6, 8] columns [4, 8, 12, 16] unrolled FMAs <= 64
          conv channels [1, 2, 4, 8, 16] rows [1, 2, 4] columns [1, 2, 4, 8, 16]
        f32x8 x 16 registers, L1d 32 KiB, L2 1024 KiB
          gemm rows [1, 2, 3, 4, 5, 6, 8] columns [8, 16, 24, 32] unrolled FMAs <= 64
          conv channels [1, 2, 4, 8, 16, 32] rows [1, 2, 4] columns [1, 2, 4, 8, 16, 32]
        f32x16 x 32 registers, L1d 32 KiB, L2 1024 KiB
          gemm rows [1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 16] columns [16, 32, 48, 64] unrolled FMAs <= 128
          conv channels [1, 2, 4, 8, 16, 32, 64] rows [1, 2, 4, 8] columns [1, 2, 4, 8, 16, 32, 64]
    "#]].assert_eq(&table);
}

/// The register tiles (rows x columns) the matmul space of `shape` offers at 1024^3, widest
/// first, as the valid points have them.
fn offered_gemm_tiles(shape: VectorShape) -> String {
    let task = task_for("matmul:m=1024,n=1024,k=1024", shape);
    let tiles: std::collections::BTreeSet<(i64, i64)> = task
        .space()
        .iter()
        .map(|config| {
            let rows = *config.split("tile_i").unwrap().last().unwrap();
            let columns = config.split("tile_j").unwrap()[1];
            (columns, rows)
        })
        .collect();
    let mut by_width = String::new();
    let mut widths: Vec<i64> = tiles.iter().map(|&(columns, _)| columns).collect();
    widths.dedup();
    for columns in widths.into_iter().rev() {
        let rows: Vec<String> = tiles
            .iter()
            .filter(|&&(width, _)| width == columns)
            .map(|(_, rows)| rows.to_string())
            .collect();
        by_width.push_str(&format!(" {columns}: rows {};", rows.join(",")));
    }
    by_width
}

#[test]
fn register_tiles_of_the_matmul_space_per_vector_shape() {
    let table = format!(
        "f32x4:{}\nAVX2:{}\nAVX-512:{}\n",
        offered_gemm_tiles(VectorShape::CRANELIFT),
        offered_gemm_tiles(VectorShape::AVX2),
        offered_gemm_tiles(VectorShape::AVX512)
    );
    expect_test::expect![[r#"
        f32x4: 16: rows 2; 12: rows 3,4; 8: rows 4,5,6; 4: rows 8;
        AVX2: 32: rows 2; 24: rows 3,4; 16: rows 4,5,6; 8: rows 8;
        AVX-512: 64: rows 2,3,4,5,6; 48: rows 3,4,5,6,8,9; 32: rows 4,5,6,8,9,10,12,14; 16: rows 8,9,10,12,14,16;
    "#]].assert_eq(&table);
}

#[test]
fn sizes_of_the_reference_workloads_spaces_per_vector_shape() {
    let mut table = String::new();
    for shape in [
        VectorShape::CRANELIFT,
        VectorShape::AVX2,
        VectorShape::AVX512,
    ] {
        table.push_str(&format!("{shape}\n"));
        for workload in [
            "matmul:m=512,n=512,k=512",
            "matmul:m=1024,n=1024,k=1024",
            "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
            "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
        ] {
            let task = task_for(workload, shape);
            table.push_str(&format!(
                "  {workload}: {} points, {} valid\n    fallback {}\n",
                task.space().size(),
                task.space().iter().count(),
                task.fallback_config().unwrap()
            ));
        }
    }
    expect_test::expect![[r#"
        f32x4 x 16 registers, L1d 32 KiB, L2 1024 KiB
          matmul:m=512,n=512,k=512: 7168 points, 1488 valid
            fallback tile_i=split[8, 16, 4], tile_j=split[64, 8], tile_k=split[512, 1], order=reorder[0, 1], pack_b=1, parallel=1
          matmul:m=1024,n=1024,k=1024: 8064 points, 1680 valid
            fallback tile_i=split[16, 16, 4], tile_j=split[128, 8], tile_k=split[1024, 1], order=reorder[0, 1], pack_b=1, parallel=1
          conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1: 19200 points, 1408 valid
            fallback tile_c=split[8, 8], tile_oh=split[56, 1], tile_ow=split[14, 4], vector_axis=0, order=reorder[0, 1], reduce_order=reorder[0, 1, 2], unroll_kernel=annotate[none, unroll], pack_w=0, pad_root=0, parallel=1
          depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1: 2400 points, 192 valid
            fallback tile_c=split[32, 4], tile_oh=split[56, 1], tile_ow=split[7, 8], vector_axis=1, order=reorder[0, 1], unroll_kernel=annotate[none, unroll], pad_root=0, parallel=1
        f32x8 x 16 registers, L1d 32 KiB, L2 1024 KiB
          matmul:m=512,n=512,k=512: 7168 points, 1488 valid
            fallback tile_i=split[8, 16, 4], tile_j=split[32, 16], tile_k=split[512, 1], order=reorder[0, 1], pack_b=1, parallel=1
          matmul:m=1024,n=1024,k=1024: 8064 points, 1680 valid
            fallback tile_i=split[16, 16, 4], tile_j=split[64, 16], tile_k=split[1024, 1], order=reorder[0, 1], pack_b=1, parallel=1
          conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1: 27648 points, 1408 valid
            fallback tile_c=split[4, 16], tile_oh=split[56, 1], tile_ow=split[14, 4], vector_axis=0, order=reorder[0, 1], reduce_order=reorder[0, 1, 2], unroll_kernel=annotate[none, unroll], pack_w=0, pad_root=0, parallel=1
          depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1: 3456 points, 192 valid
            fallback tile_c=split[32, 4], tile_oh=split[56, 1], tile_ow=split[4, 16], vector_axis=1, order=reorder[0, 1], unroll_kernel=annotate[none, unroll], pad_root=0, parallel=1
        f32x16 x 32 registers, L1d 32 KiB, L2 1024 KiB
          matmul:m=512,n=512,k=512: 11008 points, 5040 valid
            fallback tile_i=split[8, 8, 8], tile_j=split[16, 32], tile_k=split[512, 1], order=reorder[0, 1], pack_b=1, parallel=1
          matmul:m=1024,n=1024,k=1024: 12544 points, 5768 valid
            fallback tile_i=split[16, 8, 8], tile_j=split[32, 32], tile_k=split[1024, 1], order=reorder[0, 1], pack_b=1, parallel=1
          conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1: 43008 points, 3456 valid
            fallback tile_c=split[2, 32], tile_oh=split[56, 1], tile_ow=split[7, 8], vector_axis=0, order=reorder[0, 1], reduce_order=reorder[0, 1, 2], unroll_kernel=annotate[none, unroll], pack_w=0, pad_root=0, parallel=1
          depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1: 5376 points, 448 valid
            fallback tile_c=split[16, 8], tile_oh=split[56, 1], tile_ow=split[2, 32], vector_axis=1, order=reorder[0, 1], unroll_kernel=annotate[none, unroll], pad_root=0, parallel=1
    "#]].assert_eq(&table);
}

/// The register tile of a lowered GEMM nest: the extents of the unrolled row loop and the
/// vectorized column loop around the tile's multiply-add, and the tile's buffer length.
fn register_tile(nest: &LoopNest) -> (Vec<i64>, Vec<i64>, usize) {
    let (mut unrolled, mut vectorized) = (Vec::new(), Vec::new());
    nest.body.walk(&mut |stmt| match stmt {
        Stmt::For(lp) if lp.kind == LoopKind::Vectorized => vectorized.push(lp.extent),
        Stmt::For(lp) if lp.kind == LoopKind::Unrolled => unrolled.push(lp.extent),
        _ => {}
    });
    let tile = properties(nest).tile_elements.expect("a register tile");
    (unrolled, vectorized, tile)
}

#[test]
fn full_width_register_tiles_are_points_of_the_matmul_1024_space() {
    for (shape, rows, columns, unroll) in [
        (VectorShape::AVX2, 6, 16, 4),
        (VectorShape::AVX2, 4, 24, 4),
        (VectorShape::AVX512, 14, 32, 4),
        (VectorShape::AVX512, 8, 48, 2),
        (VectorShape::AVX512, 6, 64, 4),
    ] {
        let task = task_for("matmul:m=1024,n=1024,k=1024", shape);
        let values: ConfigValues = vec![
            (
                "tile_i".to_string(),
                KnobValue::Split(vec![(1024 + rows - 1) / rows, 1, rows]),
            ),
            (
                "tile_j".to_string(),
                KnobValue::Split(vec![(1024 + columns - 1) / columns, columns]),
            ),
            (
                "tile_k".to_string(),
                KnobValue::Split(vec![1024 / unroll, unroll]),
            ),
            ("order".to_string(), KnobValue::Reorder(vec![0, 1])),
            ("pack_b".to_string(), KnobValue::Choice(1)),
            ("parallel".to_string(), KnobValue::Choice(1)),
        ];
        let config = task
            .space()
            .from_values(&values)
            .unwrap_or_else(|err| panic!("{rows}x{columns} at {shape}: {err}"));
        let nest = task.lower(&config).unwrap();
        let (unrolled, vectorized, tile) = register_tile(&nest);
        assert_eq!(tile, (rows * columns) as usize, "{shape}: {config}\n{nest}");
        // Rows and the k unroll are unrolled loops of the tile (initialisation, reduction,
        // copy-out); every vectorized loop is the tile's columns or the packing's panel.
        assert!(unrolled.contains(&rows), "{shape}: {unrolled:?}");
        assert!(unrolled.contains(&unroll), "{shape}: {unrolled:?}");
        assert!(
            vectorized.len() >= 4 && vectorized.iter().all(|&extent| extent == columns),
            "{shape}: {vectorized:?}"
        );
        // B is packed into panels of the tile's columns.
        let packed = nest
            .buffers
            .iter()
            .find(|buffer| buffer.name == "B.packed")
            .expect("B is packed");
        assert_eq!(packed.shape.last(), Some(&columns), "{shape}: {packed:?}");
    }
}

#[test]
fn wide_shapes_reject_tiles_that_spill_and_partial_vectors() {
    let task = task_for("matmul:m=64,n=128,k=64", VectorShape::AVX512);
    let mut values = task.fallback_config().unwrap().to_values();
    // 8 rows x 4 vectors: 32 accumulators, 4 vectors of B and a broadcast make 37.
    values[0].1 = KnobValue::Split(vec![8, 1, 8]);
    values[1].1 = KnobValue::Split(vec![2, 64]);
    assert!(matches!(
        task.space().from_values(&values),
        Err(SpaceError::Violates { constraint, .. })
            if constraint == "register tile fits in 32 vector registers"
    ));
    let task = task_for("matmul:m=64,n=128,k=64", VectorShape::AVX2);
    let mut values = task.fallback_config().unwrap().to_values();
    // 4 rows x 2 vectors with a k unroll of 8: 64 FMAs fit; 6 rows x 2 vectors x 8: 96 do not.
    values[0].1 = KnobValue::Split(vec![11, 1, 6]);
    values[1].1 = KnobValue::Split(vec![8, 16]);
    values[2].1 = KnobValue::Split(vec![8, 8]);
    assert!(matches!(
        task.space().from_values(&values),
        Err(SpaceError::Violates { constraint, .. })
            if constraint == "unrolled reduction body at most 64 vector FMAs"
    ));
    let conv = task_for(
        "conv2d:n=1,ic=4,h=8,w=8,oc=16,kh=3,kw=3,pad=1",
        VectorShape::AVX2,
    );
    let mut values = conv.fallback_config().unwrap().to_values();
    values[0].1 = KnobValue::Split(vec![4, 4]);
    values[3].1 = KnobValue::Choice(conv::VECTOR_CHANNELS);
    assert!(matches!(
        conv.space().from_values(&values),
        Err(SpaceError::Violates { constraint, .. })
            if constraint == "vectorized extent is a multiple of 8"
    ));
    for config in conv.space().iter() {
        let (channels, columns) = (
            config.split("tile_c").unwrap()[1],
            config.split("tile_ow").unwrap()[1],
        );
        match config.choice("vector_axis").unwrap() {
            conv::VECTOR_CHANNELS => assert_eq!(channels % 8, 0, "{config}"),
            conv::VECTOR_COLUMNS => assert_eq!(columns % 8, 0, "{config}"),
            _ => {}
        }
    }
}

#[test]
fn a_shape_no_template_can_size_is_an_error() {
    let error = Task::for_shape(
        "matmul:m=8,n=8,k=8".parse().unwrap(),
        VectorShape::new(12, 16),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "vector shape f32x12 x 16 registers, L1d 32 KiB, L2 1024 KiB: lanes must be a power of \
         two from 1 to 64"
    );
}

#[test]
fn a_task_lowers_with_the_shape_it_was_built_with() {
    // The same knob values mean a vectorized column tile at 4 lanes and an unrolled one
    // (a partial vector) at 8: the task's shape decides, not the caller's.
    let task = task_for("matmul:m=8,n=4,k=4", VectorShape::AVX2);
    assert_eq!(task.vector_shape(), &VectorShape::AVX2);
    let fallback = task.fallback_config().unwrap();
    assert_eq!(fallback.split("tile_j").unwrap(), [1, 4]);
    let nest = task.lower(&fallback).unwrap();
    assert_eq!(properties(&nest).vectorized, 0, "{nest}");
    let cranelift = self::task("matmul:m=8,n=4,k=4");
    let nest = cranelift
        .lower(&cranelift.fallback_config().unwrap())
        .unwrap();
    assert!(properties(&nest).vectorized > 0, "{nest}");
}
