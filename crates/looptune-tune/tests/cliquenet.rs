//! A CliqueNet block run by conv2d kernels that write straight into their channel slices of one
//! concatenation buffer equals the reference interpreter's result of the unfused definition
//! (explicit concatenations, plain NCHW convolutions, then the bias and ReLU), on both
//! backends, for the fallback configs and for sampled ones, on a batch of two images.

#![forbid(unsafe_code)]

use looptune_cc::cache::ObjectCache;
use looptune_cc::{CBackend, Compiler};
use looptune_ir::eval::compare;
use looptune_ir::ops::{Conv2dParams, Workload};
use looptune_ir::random::SplitMix64;
use looptune_ir::{interp, lower, Layout, Schedule};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Kernel, Target};
use looptune_space::{Task, VectorShape};
use looptune_tune::cliquenet::{CliqueBlock, CLIQUE_BLOCK};

/// A small block with an odd feature-map size and three layers.
const BLOCK: CliqueBlock = CliqueBlock {
    input_channels: 16,
    layers: 3,
    growth: 8,
    size: 7,
};

/// NCHW -> NCHW[b]c of one image (`c` channels of `plane` positions).
fn to_blocked(data: &[f32], c: usize, plane: usize, b: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for channel in 0..c {
        for position in 0..plane {
            out[((channel / b) * plane + position) * b + channel % b] =
                data[channel * plane + position];
        }
    }
    out
}

/// The interpreter's result of a plain NCHW 3x3 convolution (padding 1) of `input` with
/// `weights`, then the bias and ReLU applied one by one.
fn plain_layer(input: &[f32], weights: &[f32], bias: &[f32]) -> Vec<f32> {
    let plane = BLOCK.plane();
    let workload = Workload::Conv2d(Conv2dParams {
        n: 1,
        ic: (input.len() / plane) as i64,
        h: BLOCK.size,
        w: BLOCK.size,
        oc: BLOCK.growth,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
        dilation: 1,
        bias: false,
        residual: false,
        relu: false,
        block: 1,
        prepacked: false,
    });
    let program = workload.program(&Layout::default()).unwrap();
    let nest = lower(&Schedule::new(&program)).unwrap();
    let mut output = vec![0.0; BLOCK.growth as usize * plane];
    interp::run(&nest, &[input, weights], &mut [&mut output]).unwrap();
    for (index, value) in output.iter_mut().enumerate() {
        *value = (*value + bias[index / plane]).max(0.0);
    }
    output
}

/// The block by its definition, in NCHW: stage I from the input and every layer before,
/// stage II from every other layer's latest value; returns `[X_0, X_1 .. X_n, X_1' .. X_n']`.
fn unfused_block(x0: &[f32], weights: &[Vec<f32>], biases: &[Vec<f32>]) -> Vec<f32> {
    let layers = BLOCK.layers as usize;
    let mut stage_one: Vec<Vec<f32>> = Vec::new();
    for i in 0..layers {
        let mut input = x0.to_vec();
        for earlier in &stage_one {
            input.extend_from_slice(earlier);
        }
        stage_one.push(plain_layer(&input, &weights[i], &biases[i]));
    }
    let mut stage_two: Vec<Vec<f32>> = Vec::new();
    for i in 0..layers {
        let mut input = Vec::new();
        for later in &stage_one[i + 1..] {
            input.extend_from_slice(later);
        }
        for refined in &stage_two {
            input.extend_from_slice(refined);
        }
        let conv = layers + i;
        stage_two.push(plain_layer(&input, &weights[conv], &biases[conv]));
    }
    let mut all = x0.to_vec();
    for layer in stage_one.iter().chain(&stage_two) {
        all.extend_from_slice(layer);
    }
    all
}

/// Images in one batch: the block runs each convolution once per image, on that image's slices.
const IMAGES: usize = 2;

fn check_block_on(backend: &dyn Backend, shape: VectorShape) {
    let target = Target::host();
    let convs = BLOCK.convs();
    let plane = BLOCK.plane();
    let mut random = SplitMix64::new(31);
    let mut values =
        |len: usize| -> Vec<f32> { (0..len).map(|_| random.unit_f32() - 0.5).collect() };
    let images: Vec<Vec<f32>> = (0..IMAGES)
        .map(|_| values(BLOCK.input_channels as usize * plane))
        .collect();
    let weights: Vec<Vec<f32>> = convs
        .iter()
        .map(|conv| values((BLOCK.growth * (conv.input.end - conv.input.start) * 9) as usize))
        .collect();
    let biases: Vec<Vec<f32>> = convs
        .iter()
        .map(|_| values(BLOCK.growth as usize))
        .collect();
    let total = BLOCK.total_channels() as usize;
    let expected: Vec<f32> = images
        .iter()
        .flat_map(|x0| {
            to_blocked(
                &unfused_block(x0, &weights, &biases),
                total,
                plane,
                CLIQUE_BLOCK as usize,
            )
        })
        .collect();
    for sampled in [None, Some(3), Some(4)] {
        let kernels: Vec<Kernel> = convs
            .iter()
            .map(|conv| {
                let task = Task::for_shape(conv.workload, shape).unwrap();
                let config = match sampled {
                    None => task.fallback_config().unwrap(),
                    Some(seed) => task.space().sample(seed).next().unwrap(),
                };
                backend
                    .compile(&task.lower(&config).unwrap(), &target)
                    .unwrap()
            })
            .collect();
        // The buffer past each X_0 starts as garbage: every slice must be written before it is
        // read.
        let mut buffer = vec![f32::NAN; IMAGES * total * plane];
        for (image, x0) in buffer.chunks_exact_mut(total * plane).zip(&images) {
            image[..x0.len()].copy_from_slice(&to_blocked(
                x0,
                BLOCK.input_channels as usize,
                plane,
                CLIQUE_BLOCK as usize,
            ));
        }
        BLOCK
            .run(&mut buffer, |index, input, output| {
                kernels[index].call(&[input, &weights[index], &biases[index]], &mut [output])
            })
            .unwrap();
        compare(&buffer, &expected, 1e-4)
            .unwrap_or_else(|err| panic!("{} {shape} {sampled:?}: {err:?}", backend.id().name));
    }
}

#[test]
fn a_clique_block_of_slice_writing_kernels_equals_the_unfused_definition_with_cranelift() {
    check_block_on(&CraneliftBackend::new(), VectorShape::CRANELIFT);
}

#[test]
fn a_clique_block_of_slice_writing_kernels_equals_the_unfused_definition_with_the_c_backend() {
    let dir = tempfile::tempdir().expect("a temporary cache directory");
    let compiler = Compiler::discover().expect("a C compiler: CC, or cc, gcc or clang on PATH");
    let backend = CBackend::with(compiler, ObjectCache::new(dir.path()));
    check_block_on(&backend, VectorShape::AVX2);
}
