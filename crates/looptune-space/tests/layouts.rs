//! The layouts templates choose (conv2d weights packed into output-channel blocks, a conv2d with
//! a fused bias, residual and ReLU, depthwise convolutions on channel-blocked NCHW[b]c, 1x1
//! convolutions as GEMMs) compile
//! on both backends
//! and compute what the interpreter computes, for points sampled from spaces sized for the C
//! backend's full width (8 and 16 lanes) with sizes that do not divide the tiles; and a ResNet
//! basic block run as two fused kernels equals its unfused definition.

#![forbid(unsafe_code)]

use looptune_cc::cache::ObjectCache;
use looptune_cc::{CBackend, Compiler};
use looptune_ir::eval::compare;
use looptune_ir::interp;
use looptune_ir::random::SplitMix64;
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};
use looptune_space::{Config, KnobValue, Task, VectorShape};

/// Whether `config` uses one of the layouts under test.
fn uses_a_layout(config: &Config) -> bool {
    let set = |name| matches!(config.value(name), Some(KnobValue::Choice(value)) if *value > 0);
    set("pack_w")
}

/// Up to `most` sampled valid points of `workload`'s space at `shape` (only points using a
/// layout, unless `every_point`), each compiled by `backend` and compared with the interpreter;
/// returns how many were checked.
fn check_sampled_points(
    backend: &dyn Backend,
    workload: &str,
    shape: VectorShape,
    most: usize,
    every_point: bool,
) -> usize {
    let task =
        Task::for_shape(workload.parse().expect("workload parses"), shape).expect("task builds");
    let program = task.reference_program().unwrap();
    let mut random = SplitMix64::new(17);
    let inputs: Vec<Vec<f32>> = program
        .inputs()
        .into_iter()
        .map(|input| {
            let len: i64 = program.tensor(input).shape.iter().product();
            (0..len).map(|_| random.unit_f32() - 0.5).collect()
        })
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let output_len: i64 = program.tensor(program.outputs[0]).shape.iter().product();
    let target = Target::host();
    let points: Vec<(Config, looptune_ir::LoopNest)> = task
        .space()
        .sample(5)
        .filter(|config| every_point || uses_a_layout(config))
        .take(most)
        .map(|config| {
            let nest = task.lower(&config).unwrap();
            (config, nest)
        })
        .collect();
    // The C backend compiles the batch in parallel into its cache; `compile` then loads.
    let nests: Vec<&looptune_ir::LoopNest> = points.iter().map(|(_, nest)| nest).collect();
    backend.prepare(&nests, &target);
    let mut count = 0;
    for (config, nest) in &points {
        let label = format!("{workload} at {shape} on {}: {config}", backend.id().name);
        let mut expected = vec![0.0; output_len as usize];
        interp::run(nest, &slices, &mut [&mut expected])
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        let kernel = backend
            .compile(nest, &target)
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        let mut actual = vec![0.0; output_len as usize];
        kernel
            .call(&slices, &mut [&mut actual])
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        compare(&actual, &expected, 1e-4).unwrap_or_else(|err| panic!("{label}: {err:?}"));
        count += 1;
    }
    count
}

/// Packed weights with channels not a whole number of blocks, fused epilogues (7x7 stride 2,
/// 1x1 stride 2), and blocked depthwise convolutions (prime sizes, strides 2 and 3, dilation, a
/// block of two vectors at 8 lanes and of half a vector at 16).
/// Channel-blocked conv2d (NCHW[b]c): prime widths, strides 1-3, padding, dilation, a block
/// narrower than a vector, of one and of two at 8 lanes, a fused epilogue.
const WORKLOADS: [&str; 11] = [
    "conv2d:n=1,ic=3,h=9,w=11,oc=21,kh=3,kw=3,pad=1",
    "conv2d:n=1,ic=3,h=13,w=13,oc=19,kh=7,kw=7,stride=2,pad=3,bias=true,residual=true,relu=true",
    "conv2d:n=1,ic=5,h=7,w=9,oc=17,kh=1,kw=1,stride=2,bias=true,relu=true",
    "depthwise_conv2d:n=1,c=32,h=13,w=11,kh=3,kw=3,stride=2,pad=1,block=16",
    "depthwise_conv2d:n=2,c=16,h=11,w=7,kh=3,kw=3,stride=3,pad=2,dilation=2,block=8",
    "conv2d:n=2,ic=3,h=5,w=7,oc=13,kh=1,kw=1,residual=true",
    "conv2d:n=1,ic=16,h=11,w=13,oc=32,kh=3,kw=3,pad=1,block=16",
    "conv2d:n=2,ic=8,h=13,w=7,oc=16,kh=3,kw=3,stride=3,pad=2,dilation=2,block=8",
    "conv2d:n=1,ic=6,h=9,w=11,oc=9,kh=5,kw=3,stride=2,pad=1,bias=true,residual=true,relu=true,block=3",
    "conv2d:n=1,ic=8,h=7,w=9,oc=8,kh=1,kw=1,stride=2,relu=true,block=4",
    "conv2d:n=1,ic=8,h=11,w=9,oc=16,kh=3,kw=3,stride=2,pad=1,block=8,prepacked=true",
];

/// Whether every sampled point of `workload` uses a layout under test (a fused epilogue, a
/// channel-blocked layout or a 1x1 convolution's GEMM form is the workload's own), not only
/// those with `pack_w`.
fn every_point_is_a_layout(workload: &str) -> bool {
    [
        "relu",
        "residual",
        "block=",
        "kh=1,kw=1",
        "layout_transform",
    ]
    .iter()
    .any(|mark| workload.contains(mark))
}

#[test]
fn sampled_layout_points_compile_with_the_c_backend_and_agree() {
    let dir = tempfile::tempdir().expect("a temporary cache directory");
    let compiler = Compiler::discover().expect("a C compiler: CC, or cc, gcc or clang on PATH");
    let backend = CBackend::with(compiler, ObjectCache::new(dir.path()));
    for shape in [VectorShape::AVX2, VectorShape::AVX512] {
        for workload in WORKLOADS {
            let every = every_point_is_a_layout(workload);
            let count = check_sampled_points(&backend, workload, shape, 4, every);
            assert!(count >= 4, "{workload} at {shape}: {count} points");
        }
    }
}

#[test]
fn sampled_layout_points_compile_with_cranelift_and_agree() {
    let backend = CraneliftBackend::new();
    for shape in [VectorShape::CRANELIFT, VectorShape::AVX2] {
        for workload in WORKLOADS {
            let every = every_point_is_a_layout(workload);
            let count = check_sampled_points(&backend, workload, shape, 12, every);
            assert!(count >= 12, "{workload} at {shape}: {count} points");
        }
    }
}

/// Runs `workload`'s kernel for a config sampled from its full-width space, compiled by the C
/// backend, on `inputs`.
fn run_sampled_kernel(
    backend: &dyn Backend,
    workload: &str,
    seed: u64,
    inputs: &[&[f32]],
) -> Vec<f32> {
    let task = Task::for_shape(
        workload.parse().expect("workload parses"),
        VectorShape::AVX2,
    )
    .expect("task builds");
    let config = task.space().sample(seed).next().expect("a valid point");
    let nest = task.lower(&config).unwrap();
    let program = task.reference_program().unwrap();
    let len: i64 = program.tensor(program.outputs[0]).shape.iter().product();
    let kernel = backend
        .compile(&nest, &Target::host())
        .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
    let mut output = vec![0.0; len as usize];
    kernel
        .call(inputs, &mut [&mut output])
        .unwrap_or_else(|err| panic!("{workload}: {config}: {err}"));
    output
}

/// The plain convolution of `workload` (its flags dropped), by the direct evaluator.
fn plain_convolution(workload: &str, inputs: &[&[f32]]) -> Vec<f32> {
    let plain: looptune_ir::Workload = workload.parse().unwrap();
    let plain = match plain {
        looptune_ir::Workload::Conv2d(params) => {
            looptune_ir::Workload::Conv2d(looptune_ir::ops::Conv2dParams {
                bias: false,
                residual: false,
                relu: false,
                ..params
            })
        }
        other => other,
    };
    let program = plain.program(&looptune_ir::Layout::default()).unwrap();
    looptune_ir::eval::evaluate(&program, inputs)
        .unwrap()
        .remove(0)
}

/// A ResNet basic block, conv + bias + ReLU, then conv + bias + the block's input + ReLU, run as
/// two fused kernels of tuned-space configs, equals the unfused definition: two plain
/// convolutions with the bias, the shortcut and ReLU applied one by one.
#[test]
fn a_resnet_basic_block_of_fused_kernels_equals_the_unfused_definition() {
    let dir = tempfile::tempdir().expect("a temporary cache directory");
    let compiler = Compiler::discover().expect("a C compiler: CC, or cc, gcc or clang on PATH");
    let backend = CBackend::with(compiler, ObjectCache::new(dir.path()));
    let (channels, size) = (16usize, 10usize);
    let first = format!(
        "conv2d:n=1,ic={channels},h={size},w={size},oc={channels},kh=3,kw=3,pad=1,bias=true,relu=true"
    );
    let second = format!(
        "conv2d:n=1,ic={channels},h={size},w={size},oc={channels},kh=3,kw=3,pad=1,bias=true,residual=true,relu=true"
    );
    let mut random = SplitMix64::new(23);
    let mut values =
        |len: usize| -> Vec<f32> { (0..len).map(|_| random.unit_f32() - 0.5).collect() };
    let plane = channels * size * size;
    let weights = channels * channels * 9;
    let (x, w1, b1, w2, b2) = (
        values(plane),
        values(weights),
        values(channels),
        values(weights),
        values(channels),
    );
    for seed in 0..3 {
        let hidden = run_sampled_kernel(&backend, &first, seed, &[&x, &w1, &b1]);
        let output = run_sampled_kernel(&backend, &second, seed + 10, &[&hidden, &w2, &b2, &x]);

        let relu = |value: f32| value.max(0.0);
        let mut expected_hidden = plain_convolution(&first, &[&x, &w1]);
        for (index, value) in expected_hidden.iter_mut().enumerate() {
            *value = relu(*value + b1[index / (size * size)]);
        }
        let mut expected = plain_convolution(&second, &[&expected_hidden, &w2]);
        for (index, value) in expected.iter_mut().enumerate() {
            *value = relu(*value + b2[index / (size * size)] + x[index]);
        }
        compare(&output, &expected, 1e-4).unwrap_or_else(|err| panic!("seed {seed}: {err:?}"));
    }
}

/// Runs the fallback kernel of `workload` (its space sized for `shape`) compiled by `backend`
/// on `input`, and also through the interpreter; returns both outputs.
fn transform(
    backend: &dyn Backend,
    shape: VectorShape,
    workload: &str,
    config_seed: Option<u64>,
    input: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let task =
        Task::for_shape(workload.parse().expect("workload parses"), shape).expect("task builds");
    let config = match config_seed {
        None => task.fallback_config().unwrap(),
        Some(seed) => task.space().sample(seed).next().expect("a valid point"),
    };
    let nest = task.lower(&config).unwrap();
    let label = format!("{workload} at {shape} on {}: {config}", backend.id().name);
    let mut interpreted = vec![0.0; input.len()];
    interp::run(&nest, &[input], &mut [&mut interpreted])
        .unwrap_or_else(|err| panic!("{label}: {err}"));
    let kernel = backend
        .compile(&nest, &Target::host())
        .unwrap_or_else(|err| panic!("{label}: {err}"));
    let mut compiled = vec![0.0; input.len()];
    kernel
        .call(&[input], &mut [&mut compiled])
        .unwrap_or_else(|err| panic!("{label}: {err}"));
    (interpreted, compiled)
}

/// NCHW -> NCHW[b]c -> NCHW (and between two blocks) is the identity bit for bit, through the
/// interpreter and through both backends, for the fallback and sampled points; the values
/// are arbitrary bit patterns with signed zeros, a subnormal and infinities (NaNs only as the
/// one quiet NaN: the interpreter holds values in f64, where a signalling NaN's payload is not
/// kept).
#[test]
fn layout_transforms_round_trip_bit_for_bit_on_both_backends() {
    let dir = tempfile::tempdir().expect("a temporary cache directory");
    let compiler = Compiler::discover().expect("a C compiler: CC, or cc, gcc or clang on PATH");
    let c_backend = CBackend::with(compiler, ObjectCache::new(dir.path()));
    let cranelift = CraneliftBackend::new();
    let (n, c, h, w) = (2, 24, 5, 13);
    let mut random = SplitMix64::new(41);
    let mut x: Vec<f32> = (0..n * c * h * w)
        .map(|_| f32::from_bits(random.next_u64() as u32))
        .map(|value| if value.is_nan() { f32::NAN } else { value })
        .collect();
    x[..6].copy_from_slice(&[
        -0.0,
        0.0,
        f32::MIN_POSITIVE / 2.0,
        f32::INFINITY,
        -f32::INFINITY,
        f32::NAN,
    ]);
    let bits = |values: &[f32]| -> Vec<u32> { values.iter().map(|v| v.to_bits()).collect() };
    let shape_text = format!("layout_transform:n={n},c={c},h={h},w={w}");
    for (first, second) in [(1, 8), (1, 3), (8, 4), (6, 1)] {
        let pack = format!("{shape_text},from=1,to={first}");
        let reblock = format!("{shape_text},from={first},to={second}");
        let unpack = format!("{shape_text},from={second},to=1");
        for (backend, shape) in [
            (&c_backend as &dyn Backend, VectorShape::AVX2),
            (&c_backend, VectorShape::AVX512),
            (&cranelift, VectorShape::CRANELIFT),
        ] {
            for config_seed in [None, Some(1), Some(2)] {
                let (packed_interp, packed) = transform(backend, shape, &pack, config_seed, &x);
                assert_eq!(bits(&packed), bits(&packed_interp), "{pack}");
                let (reblocked_interp, reblocked) =
                    transform(backend, shape, &reblock, config_seed, &packed);
                assert_eq!(bits(&reblocked), bits(&reblocked_interp), "{reblock}");
                let (back_interp, back) =
                    transform(backend, shape, &unpack, config_seed, &reblocked);
                assert_eq!(bits(&back_interp), bits(&x), "{pack} {reblock} {unpack}");
                assert_eq!(bits(&back), bits(&x), "{pack} {reblock} {unpack}");
                if first > 1 {
                    assert_ne!(bits(&packed), bits(&x), "{pack} moved nothing");
                }
            }
        }
    }
}
