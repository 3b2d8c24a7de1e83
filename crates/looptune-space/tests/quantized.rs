//! Quantized kernels are bit-exact: points of the `qmatmul`, `qdepthwise_conv2d` and `qconv2d`
//! templates, compiled by both backends at the widths they are sized for, compute exactly what
//! the reference interpreter computes on the operator's plain definition, for random shapes
//! (primes, `k` odd, one row, odd channel blocks, strides 1-3, padding, dilation), zero points
//! at 0, 128 and 255, per-tensor and per-column multipliers, and clamps that saturate at both
//! ends of `u8`.

#![forbid(unsafe_code)]

use looptune_cc::cache::ObjectCache;
use looptune_cc::{CBackend, Compiler};
use looptune_ir::random::{random_data, SplitMix64};
use looptune_ir::{interp, lower, Data, DataMut, DataRef, Layout, Schedule, Workload};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};
use looptune_space::{Task, VectorShape};

/// A random quantized workload of modest size.
fn random_qmatmul(rng: &mut SplitMix64) -> String {
    let sizes = [1, 2, 3, 5, 7, 8, 11, 13, 16, 17, 24, 31];
    let zero = [0, 128, 255];
    let (m, n, k) = (rng.pick(&sizes), rng.pick(&sizes), rng.pick(&sizes));
    // Clamps around the zero point, including ReLU6-like ones and the whole range.
    let (qmin, qmax) = rng.pick(&[(0, 255), (128, 255), (0, 127), (100, 160)]);
    format!(
        "qmatmul:m={m},n={n},k={k},a_zero={},out_zero={},multiplier={},shift={},qmin={qmin},qmax={qmax},per_channel={}",
        rng.pick(&zero),
        rng.pick(&zero),
        rng.pick(&[1, 1 << 30, 1518500250, i32::MAX as i64]),
        rng.pick(&[0, 3, 9, 31]),
        rng.chance(1, 2)
    )
}

/// The quantization parameters of a random case.
fn random_quant(rng: &mut SplitMix64) -> String {
    let zero = [0, 128, 255];
    let (qmin, qmax) = rng.pick(&[(0, 255), (128, 255), (0, 127), (100, 160)]);
    format!(
        "a_zero={},out_zero={},multiplier={},shift={},qmin={qmin},qmax={qmax},per_channel={}",
        rng.pick(&zero),
        rng.pick(&zero),
        rng.pick(&[1, 1 << 30, 1518500250, i32::MAX as i64]),
        rng.pick(&[0, 3, 9, 31]),
        rng.chance(1, 2)
    )
}

/// A random quantized depthwise convolution: NHWC (block = channels, also odd ones) or
/// channel blocks of 8, odd kernels, strides 1-3, padding, dilation.
fn random_qdepthwise(rng: &mut SplitMix64) -> String {
    let (c, block) = rng.pick(&[(5, 5), (8, 8), (13, 13), (16, 8), (24, 8), (16, 16)]);
    let kernel = rng.pick(&[1, 3, 5]);
    let dilation = rng.pick(&[1, 1, 2]);
    let pad = rng.pick(&[0, 1, 2]);
    let size = rng.pick(&[7, 9, 12]).max(dilation * (kernel - 1) + 1);
    format!(
        "qdepthwise_conv2d:c={c},h={size},w={},kh={kernel},kw={kernel},stride={},pad={pad},dilation={dilation},block={block},{}",
        size + rng.pick(&[0, 3]),
        rng.pick(&[1, 2, 3]),
        random_quant(rng)
    )
}

/// A random quantized convolution on NCHW[b]c: blocks of 8 and 16, odd blocks (3, 5), NCHW
/// (1), an input block other than the output's (a 3-channel NHWC image in), odd kernels up to
/// 7, strides 1-3, padding, dilation.
fn random_qconv2d(rng: &mut SplitMix64) -> String {
    // (ic, oc, output block, input block)
    let (ic, oc, block, in_block) = rng.pick(&[
        (8, 8, 8, 8),
        (16, 24, 8, 8),
        (16, 16, 16, 16),
        (15, 10, 5, 5),
        (3, 6, 3, 3),
        (3, 4, 1, 1),
        (24, 16, 8, 8),
        (3, 16, 8, 3),
        (16, 24, 8, 16),
    ]);
    let kernel = rng.pick(&[1, 3, 3, 5, 7]);
    let dilation = rng.pick(&[1, 1, 2]);
    let pad = rng.pick(&[0, 1, 2, 3]);
    let size = rng.pick(&[5, 7, 11]).max(dilation * (kernel - 1) + 1);
    format!(
        "qconv2d:n={},ic={ic},h={size},w={},oc={oc},kh={kernel},kw={},stride={},pad={pad},dilation={dilation},block={block},in_block={in_block},{}",
        rng.pick(&[1, 1, 2]),
        size + rng.pick(&[0, 2]),
        rng.pick(&[kernel, 1]),
        rng.pick(&[1, 2, 3]),
        random_quant(rng)
    )
}

/// The random quantized workload of the mixed suites: `qmatmul`, `qdense` and
/// `qdepthwise_conv2d` in turn.
fn mixed_workload(seed: u64, rng: &mut SplitMix64) -> String {
    if seed % 4 == 2 {
        // A fully connected layer: the same product with the weights in rows.
        random_qmatmul(rng).replacen("qmatmul", "qdense", 1)
    } else if seed.is_multiple_of(2) {
        random_qmatmul(rng)
    } else {
        random_qdepthwise(rng)
    }
}

/// The reference interpreter's output of `workload`'s plain definition on `inputs`.
fn reference(workload: &Workload, inputs: &[Data]) -> Data {
    let program = workload.program(&Layout::default()).unwrap();
    let nest = lower(&Schedule::new(&program)).unwrap();
    let decl = program.tensor(program.outputs[0]);
    let mut output = Data::zeros(decl.dtype, decl.len());
    let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
    interp::run_data(&nest, &refs, &mut [output.as_mut()]).unwrap();
    output
}

/// Compiles up to `points` sampled configs of `cases` random workloads of `workload` with
/// `backend` at `shape` and compares every output element exactly; returns how many kernels
/// were checked.
fn check_random_points(
    backend: &dyn Backend,
    shape: VectorShape,
    cases: u64,
    points: usize,
    workload: fn(u64, &mut SplitMix64) -> String,
) -> usize {
    let target = Target::host();
    let mut checked = 0;
    for seed in 0..cases {
        let mut rng = SplitMix64::new(0x9a4b ^ seed);
        let text = workload(seed, &mut rng);
        let workload: Workload = text.parse().unwrap_or_else(|err| panic!("{text}: {err}"));
        let task = Task::for_shape(workload, shape).unwrap();
        let inputs = random_data(&task.reference_program().unwrap(), seed);
        let expected = reference(&workload, &inputs);
        let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let configs: Vec<_> = task.space().sample(seed).take(points).collect();
        let nests: Vec<_> = configs
            .iter()
            .map(|config| task.lower(config).unwrap())
            .collect();
        backend.prepare(&nests.iter().collect::<Vec<_>>(), &target);
        for (config, nest) in configs.iter().zip(&nests) {
            let label = format!("{text} at {shape} on {}: {config}", backend.id().name);
            let kernel = backend
                .compile(nest, &target)
                .unwrap_or_else(|err| panic!("{label}: {err}"));
            // Two fills: an element the kernel never writes cannot match under both.
            for fill in [0x00, 0xA5] {
                let mut actual = Data::zeros(expected.dtype(), expected.len());
                actual.as_mut().fill_bytes(fill);
                let mut outputs: Vec<DataMut<'_>> = vec![actual.as_mut()];
                kernel
                    .call_data(&refs, &mut outputs)
                    .unwrap_or_else(|err| panic!("{label}: {err}"));
                if actual != expected {
                    let (a, e) = (actual.to_f64(), expected.to_f64());
                    let first = (0..a.len()).find(|&i| a[i] != e[i]).unwrap_or(0);
                    panic!(
                        "{label}: element {first} is {}, the reference says {}\n{nest}",
                        a[first], e[first]
                    );
                }
            }
            checked += 1;
        }
    }
    checked
}

/// The C the printer makes of `workload`'s fallback config at 8 lanes, past the prelude.
fn printed_fallback(workload: &str) -> String {
    let task = Task::for_shape(workload.parse().unwrap(), VectorShape::AVX2).unwrap();
    let nest = task.lower(&task.fallback_config().unwrap()).unwrap();
    let c = looptune_cc::emit::emit_c(&nest, &looptune_cc::emit::EmitOptions::new(8)).unwrap();
    c.split("LOOPTUNE_PRELUDE */").nth(1).unwrap().to_string()
}

fn c_backend() -> (CBackend, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let compiler = Compiler::discover().expect("a C compiler");
    (CBackend::with(compiler, ObjectCache::new(dir.path())), dir)
}

/// The C backend at 8 lanes (`cases` workloads, three points each) and at 16 (half as many,
/// two points each); at least `least` kernels in all.
fn check_on_c(workload: fn(u64, &mut SplitMix64) -> String, cases: u64, least: usize) {
    let (backend, _dir) = c_backend();
    let eight = check_random_points(&backend, VectorShape::AVX2, cases, 3, workload);
    let sixteen = check_random_points(&backend, VectorShape::AVX512, cases / 2, 2, workload);
    assert!(
        eight + sixteen >= least,
        "{eight} + {sixteen} points checked"
    );
}

/// Cranelift at its 4 lanes: `cases` workloads, four points each; at least `least` kernels.
fn check_on_cranelift(workload: fn(u64, &mut SplitMix64) -> String, cases: u64, least: usize) {
    let checked = check_random_points(
        &CraneliftBackend::new(),
        VectorShape::CRANELIFT,
        cases,
        4,
        workload,
    );
    assert!(checked >= least, "{checked} points checked");
}

#[test]
fn quantized_points_are_bit_exact_on_the_c_backend_at_8_and_16_lanes() {
    check_on_c(mixed_workload, 12, 40);
}

#[test]
fn quantized_points_are_bit_exact_on_cranelift() {
    check_on_cranelift(mixed_workload, 12, 40);
}

fn qconv2d_workload(_seed: u64, rng: &mut SplitMix64) -> String {
    random_qconv2d(rng)
}

#[test]
fn qconv2d_points_are_bit_exact_on_the_c_backend_at_8_and_16_lanes() {
    check_on_c(qconv2d_workload, 10, 30);
}

#[test]
fn qconv2d_points_are_bit_exact_on_cranelift() {
    check_on_cranelift(qconv2d_workload, 10, 30);
}

/// The cases the two `qconv2d` suites draw (seeds `0..10`) reach what the generator is for: an
/// input block other than the output's, odd blocks, NCHW, strides above 1, dilation, padding.
#[test]
fn the_qconv2d_cases_cover_the_odd_layouts() {
    let cases: Vec<_> = (0..10)
        .map(|seed| {
            let text = qconv2d_workload(seed, &mut SplitMix64::new(0x9a4b ^ seed));
            match text.parse::<Workload>() {
                Ok(Workload::QConv2d(params)) => params,
                other => panic!("{text}: {other:?}"),
            }
        })
        .collect();
    let some = |what: &str, test: &dyn Fn(&looptune_ir::ops::QConv2dParams) -> bool| {
        assert!(cases.iter().any(test), "no case with {what}: {cases:?}");
    };
    some("in_block != block", &|p| p.in_block != p.conv.block);
    some("an odd input block", &|p| p.in_block % 2 == 1);
    some("stride > 1", &|p| p.conv.stride > 1);
    some("dilation > 1", &|p| p.conv.dilation > 1);
    some("padding", &|p| p.conv.pad > 0);
    some("a batch of 2", &|p| p.conv.n == 2);
}

/// The quantized convolution's reduction step is the GEMM's pair product: one `vpmaddwd` of a
/// broadcast pair of input channels and a vector of packed weights.
#[test]
fn the_quantized_convolution_reaches_the_pair_product_in_printed_c() {
    let body = printed_fallback("qconv2d:ic=16,h=9,w=9,oc=16,kh=3,kw=3,pad=1,block=8");
    assert!(body.contains("lt_madd8(lt_splati8(lt_load_pair("), "{body}");
    assert!(body.contains("lt_store_u8_8("), "{body}");
}

#[test]
fn the_pair_form_and_the_epilogue_reach_their_vector_helpers_in_printed_c() {
    let body = printed_fallback("qmatmul:m=16,n=32,k=20");
    assert!(body.contains("lt_madd8(lt_splati8(lt_load_pair("), "{body}");
    // The requantizing epilogue is vector code too: 64-bit products, one narrowing store.
    assert!(body.contains("lt_mulshr8("), "{body}");
    assert!(body.contains("lt_store_u8_8("), "{body}");
    // The conversions are vector loops: A's pairs (rows of whole vectors), and W's two rows
    // zipped into its pairs.
    let body = printed_fallback("qmatmul:m=16,n=32,k=24");
    assert!(
        body.contains("lt_store_i16_8(A_pairs + (") && body.contains("lt_subi8(lt_widen_u8_8(A"),
        "{body}"
    );
    assert!(
        body.contains("lt_store_i16_8(W_packed + (") && body.contains("lt_widen_i8_zip8(W + ("),
        "{body}"
    );
}

#[test]
fn float_to_i32_casts_truncate_and_saturate_alike_on_both_backends() {
    use looptune_ir::{DType, ProgramBuilder, ValueExpr};
    let mut builder = ProgramBuilder::new("to_i32");
    let x = builder.placeholder("X", &[37], DType::F32).unwrap();
    // Scaled by 3e9, half the values fall outside i32 and saturate; by 1000 they truncate.
    let y = builder
        .compute("Y", DType::I32, &[("i", 37), ("s", 2)], |ax| {
            let scale = ValueExpr::select(
                ax[1].clone().lt(1),
                ValueExpr::f32(1000.0),
                ValueExpr::f32(3e9),
            );
            ValueExpr::Cast(DType::I32, Box::new(x.at(&[ax[0].clone()]) * scale))
        })
        .unwrap();
    let program = builder.build(&[&y]).unwrap();
    let mut schedule = Schedule::new(&program);
    let stage = schedule.stage("Y").unwrap();
    let axes = schedule.spatial_axes(stage);
    schedule.vectorize(stage, axes[1]).unwrap();
    let nest = lower(&schedule).unwrap();
    let inputs = random_data(&program, 5);
    let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
    let mut expected = Data::zeros(DType::I32, 74);
    interp::run_data(&nest, &refs, &mut [expected.as_mut()]).unwrap();
    let Data::I32(values) = &expected else {
        panic!("i32 output")
    };
    assert!(
        values.contains(&i32::MAX) && values.contains(&i32::MIN),
        "{values:?}"
    );
    let (c, _dir) = c_backend();
    for backend in [&c as &dyn Backend, &CraneliftBackend::new()] {
        let kernel = backend.compile(&nest, &Target::host()).unwrap();
        let mut actual = Data::zeros(DType::I32, 74);
        kernel.call_data(&refs, &mut [actual.as_mut()]).unwrap();
        assert_eq!(actual, expected, "{}", backend.id().name);
    }
}

/// This host may lack AVX-512; the 16-lane pair form must still compile to 512-bit
/// `vpmaddwd` for one that has it (checked on the assembly, nothing is run).
#[test]
fn the_sixteen_lane_pair_form_compiles_to_512_bit_pmaddwd() {
    let compiler = Compiler::discover().expect("a C compiler");
    let task = Task::for_shape(
        "qmatmul:m=16,n=64,k=20".parse().unwrap(),
        VectorShape::AVX512,
    )
    .unwrap();
    let nest = task.lower(&task.fallback_config().unwrap()).unwrap();
    let c = looptune_cc::emit::emit_c(&nest, &looptune_cc::emit::EmitOptions::new(16)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("pair16.c");
    std::fs::write(&source, c).unwrap();
    let assembly = dir.path().join("pair16.s");
    let flags: Vec<String> = ["-O2", "-march=x86-64-v4", "-mprefer-vector-width=512", "-S"]
        .iter()
        .map(|flag| flag.to_string())
        .collect();
    compiler
        .compile(&source, &assembly, &flags, "pair form")
        .expect("the AVX-512 pair form compiles");
    let text = std::fs::read_to_string(&assembly).unwrap();
    assert!(
        text.lines()
            .any(|line| line.contains("vpmaddwd") && line.contains("%zmm")),
        "no 512-bit vpmaddwd"
    );
}

/// A quantized depthwise convolution accumulates whole vectors of channels (the product is
/// fused into the accumulation as an `Fma` by lowering), never lane by lane.
#[test]
fn the_quantized_depthwise_accumulates_in_vectors() {
    let body = printed_fallback("qdepthwise_conv2d:c=16,h=9,w=9,kh=3,kw=3,pad=1,stride=2,block=8");
    assert!(body.contains("lt_fmai8("), "{body}");
    assert!(
        body.contains("lt_widen_u8_8(") || body.contains("lt_widen_i8_8("),
        "{body}"
    );
    assert!(
        !body.contains("= ((lt_i32x8){"),
        "an accumulation lane by lane:\n{body}"
    );
}

/// `mulshr` at every kind of shift (none, below 32, the requantization shifts 31 + 0..31), on
/// operands at both ends of `i32` and random ones, vectorized at 8 lanes: the C backend with
/// gcc and with clang (when installed; AVX2 hosts take the two-`vpmuldq` path for shifts of 32
/// and more) and Cranelift compute what the interpreter computes, bit for bit.
#[test]
fn mulshr_is_exact_at_every_shift_on_both_backends_and_compilers() {
    use looptune_ir::expr::BinaryOp;
    use looptune_ir::{DType, ProgramBuilder, ValueExpr};
    let extremes = [
        i32::MIN,
        i32::MIN + 1,
        -1,
        0,
        1,
        i32::MAX - 1,
        i32::MAX,
        1 << 30,
    ];
    let mut rng = SplitMix64::new(0x5eed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &x in &extremes {
        for &y in &extremes {
            a.push(x);
            b.push(y);
        }
    }
    while a.len() % 8 != 0 || a.len() < 96 {
        a.push(rng.next_u64() as i32);
        b.push(rng.next_u64() as i32 >> rng.pick(&[0, 8, 20]));
    }
    let len = a.len() as i64;
    let inputs = [Data::I32(a), Data::I32(b)];
    let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
    let mut backends: Vec<(String, Box<dyn Backend>, Option<tempfile::TempDir>)> = vec![(
        "cranelift".to_string(),
        Box::new(CraneliftBackend::new()),
        None,
    )];
    for program in ["gcc", "clang"] {
        match Compiler::at(program.into(), Vec::new()) {
            Ok(compiler) => {
                let dir = tempfile::tempdir().unwrap();
                let backend = CBackend::with(compiler, ObjectCache::new(dir.path()));
                backends.push((program.to_string(), Box::new(backend), Some(dir)));
            }
            Err(err) => eprintln!("{program}: {err}; skipped"),
        }
    }
    assert!(backends.len() >= 2, "no C compiler");
    for shift in [0u8, 1, 17, 31, 32, 33, 39, 47, 61, 62] {
        let mut builder = ProgramBuilder::new("mulshr");
        let x = builder.placeholder("A", &[len], DType::I32).unwrap();
        let y = builder.placeholder("B", &[len], DType::I32).unwrap();
        let out = builder
            .compute("Y", DType::I32, &[("i", len)], |ax| {
                ValueExpr::binary(BinaryOp::MulShr(shift), x.at(ax), y.at(ax))
            })
            .unwrap();
        let program = builder.build(&[&out]).unwrap();
        let mut schedule = Schedule::new(&program);
        let stage = schedule.stage("Y").unwrap();
        let i = schedule.spatial_axes(stage)[0];
        let (_, lanes) = schedule.split(stage, i, 8).unwrap();
        schedule.vectorize(stage, lanes).unwrap();
        let nest = lower(&schedule).unwrap();
        let mut expected = Data::zeros(DType::I32, len as usize);
        interp::run_data(&nest, &refs, &mut [expected.as_mut()]).unwrap();
        for (name, backend, _) in &backends {
            let kernel = backend.compile(&nest, &Target::host()).unwrap();
            let mut actual = Data::zeros(DType::I32, len as usize);
            kernel.call_data(&refs, &mut [actual.as_mut()]).unwrap();
            assert_eq!(actual, expected, "shift {shift} on {name}");
        }
    }
}

/// `qmatmul` shapes whose weight pairs the template vectorizes (`k` even, `n` a multiple of the
/// panel), so that the zipped loads of W's two rows are what is checked.
fn zipped_qmatmul(_seed: u64, rng: &mut SplitMix64) -> String {
    let (m, n, k) = (
        rng.pick(&[1, 5, 13, 16]),
        rng.pick(&[16, 32, 48]),
        rng.pick(&[2, 8, 20, 34]),
    );
    format!("qmatmul:m={m},n={n},k={k},{}", random_quant(rng))
}

/// The zipped weight loads are exact at 8 lanes (gcc's `vpmovsxbd` of interleaved bytes) and
/// 16 (the generic loop), with gcc, and with clang (when installed: the generic loop at 8).
#[test]
fn zipped_weight_pairs_are_bit_exact_with_gcc_and_clang() {
    check_on_c(zipped_qmatmul, 8, 30);
    let printed = printed_fallback("qmatmul:m=16,n=32,k=20");
    assert!(printed.contains("lt_widen_i8_zip8("), "{printed}");
    match Compiler::at("clang".into(), Vec::new()) {
        Ok(clang) => {
            let dir = tempfile::tempdir().unwrap();
            let backend = CBackend::with(clang, ObjectCache::new(dir.path()));
            let checked = check_random_points(&backend, VectorShape::AVX2, 4, 3, zipped_qmatmul);
            assert!(checked >= 10, "{checked} points checked with clang");
        }
        Err(err) => eprintln!("clang: {err}; skipped"),
    }
}

/// Every zipped widening load (`u8`, `i8`, `i16`): a stage whose lanes interleave two rows of
/// its input, `Y[r, 2 m + t] = X[2 r + t, m]`, its last two axes fused and vectorized at 8
/// lanes, prints `lt_widen_*_zip8` and computes what the interpreter does, with gcc and clang
/// (when installed), whole ranges of each type included.
#[test]
fn zipped_loads_of_every_narrow_type_are_exact() {
    use looptune_ir::{DType, ProgramBuilder, ValueExpr};
    let (rows, columns) = (6, 12);
    let mut compilers = Vec::new();
    for program in ["gcc", "clang"] {
        match Compiler::at(program.into(), Vec::new()) {
            Ok(compiler) => {
                let dir = tempfile::tempdir().unwrap();
                compilers.push((
                    program,
                    CBackend::with(compiler, ObjectCache::new(dir.path())),
                    dir,
                ));
            }
            Err(err) => eprintln!("{program}: {err}; skipped"),
        }
    }
    assert!(!compilers.is_empty(), "no C compiler");
    for (dtype, name) in [(DType::U8, "u8"), (DType::I8, "i8"), (DType::I16, "i16")] {
        let mut builder = ProgramBuilder::new("zip");
        let x = builder
            .placeholder("X", &[2 * rows, columns], dtype)
            .unwrap();
        let y = builder
            .compute(
                "Y",
                DType::I16,
                &[("r", rows), ("m", columns), ("t", 2)],
                |ax| {
                    let source = x.at(&[&ax[0] * 2 + ax[2].clone(), ax[1].clone()]);
                    ValueExpr::Cast(
                        DType::I16,
                        Box::new(ValueExpr::Cast(DType::I32, Box::new(source))),
                    )
                },
            )
            .unwrap();
        let program = builder.build(&[&y]).unwrap();
        let mut schedule = Schedule::new(&program);
        let stage = schedule.stage("Y").unwrap();
        let axes = schedule.spatial_axes(stage);
        let fused = schedule.fuse(stage, axes[1], axes[2]).unwrap();
        let (_, lanes) = schedule.split(stage, fused, 8).unwrap();
        schedule.vectorize(stage, lanes).unwrap();
        let nest = lower(&schedule).unwrap();
        let c = looptune_cc::emit::emit_c(&nest, &looptune_cc::emit::EmitOptions::new(8)).unwrap();
        assert!(c.contains(&format!("lt_widen_{name}_zip8(X + (")), "{c}");
        let inputs = random_data(&program, 7);
        let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let mut expected = Data::zeros(DType::I16, (rows * columns * 2) as usize);
        interp::run_data(&nest, &refs, &mut [expected.as_mut()]).unwrap();
        for (compiler, backend, _) in &compilers {
            let kernel = backend.compile(&nest, &Target::host()).unwrap();
            let mut actual = Data::zeros(DType::I16, expected.len());
            kernel.call_data(&refs, &mut [actual.as_mut()]).unwrap();
            assert_eq!(actual, expected, "{name} with {compiler}");
        }
    }
}
