use super::*;
use looptune_ir::{lower, Layout, Schedule};

fn kernel(text: &str) -> ExportKernel {
    let workload: Workload = text.parse().expect(text);
    let program = workload.program(&Layout::default()).expect(text);
    let nest = lower(&Schedule::new(&program)).expect(text);
    ExportKernel {
        key: workload.to_string(),
        workload,
        nest,
        note: None,
    }
}

#[test]
fn kernel_names_come_from_the_task_key() {
    assert_eq!(kernel_name("matmul:m=64,n=32,k=16"), "matmul_m64_n32_k16");
    assert_eq!(
        kernel_name("dense:m=1,n=10,k=5,bias=true,relu=false"),
        "dense_m1_n10_k5_bias"
    );
    assert_eq!(kernel_name("custom:my op!"), "custom_my_op");
    assert_eq!(kernel_name("9lives"), "k_9lives");
}

#[test]
fn march_parses_and_names_its_flags() {
    assert_eq!("x86-64-v3".parse::<March>(), Ok(March::X86_64V3));
    let error = "pentium"
        .parse::<March>()
        .expect_err("not a supported march");
    assert!(error.to_string().contains("`pentium`"), "{error}");
    let flags = March::X86_64V4.flags();
    assert!(flags.contains(&"-march=x86-64-v4".to_string()), "{flags:?}");
    assert!(
        flags.contains(&"-ffp-contract=fast".to_string()),
        "{flags:?}"
    );
    assert!(!March::X86_64V3
        .flags()
        .contains(&"-mprefer-vector-width=512".to_string()));
    assert_eq!(March::X86_64V4.lanes(&Target::host()), 16);
}

#[test]
fn a_kernel_whose_operands_differ_from_its_reference_is_refused() {
    // The nest of one workload exported under another's name: its operands do not match.
    let mut wrong = kernel("matmul:m=4,n=4,k=4");
    wrong.workload = "matmul:m=4,n=4,k=8".parse().expect("workload");
    let error = prepare(&wrong, "k".into(), "tk".into(), 8)
        .err()
        .expect("a mismatch is refused");
    let message = error.to_string();
    assert!(message.contains("`matmul:m=4,n=4,k=4,"), "{message}");
    assert!(message.contains("A (16 f32)"), "{message}");
    assert!(message.contains("A (32 f32)"), "{message}");
}

#[test]
fn every_operator_has_a_reference_matching_its_default_nest() {
    for text in [
        "matmul:m=5,n=7,k=3",
        "matmul:m=5,n=7,k=3,transpose_b=true",
        "batch_matmul:b=2,m=3,n=4,k=5",
        "dense:m=3,n=4,k=5,bias=true,relu=true",
        "conv2d:n=1,ic=3,h=6,w=5,oc=4,kh=3,kw=3,stride=2,pad=1,bias=true,residual=true,relu=true",
        "depthwise_conv2d:n=1,c=8,h=6,w=6,kh=3,kw=3,stride=1,pad=1,block=4",
        "depthwise_conv2d:n=1,c=3,h=6,w=6,kh=3,kw=3,stride=2,pad=1",
        "qmatmul:m=3,n=5,k=7",
        "qmatmul:m=3,n=5,k=7,per_channel=true",
        "qdense:m=3,n=5,k=7",
        "qdepthwise_conv2d:c=8,h=6,w=6,kh=3,kw=3,pad=1,block=8,per_channel=true",
        "qconv2d:ic=3,h=6,w=6,oc=8,kh=3,kw=3,pad=1,block=8,in_block=3",
    ] {
        let kernel = kernel(text);
        let prepared = prepare(&kernel, "k".into(), "tk".into(), 8).expect(text);
        assert!(prepared.source.contains("void tk("), "{text}");
    }
}

#[test]
fn a_directory_that_is_not_empty_is_refused_unless_forced() {
    let Ok(compiler) = Compiler::discover() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
    let kernels = [kernel("matmul:m=4,n=4,k=4")];
    let options = ExportOptions::default();
    let error =
        export(&kernels, dir.path(), &options, &compiler, &Target::host()).expect_err("not empty");
    assert!(matches!(error, ExportError::NotEmpty { .. }), "{error}");
    let forced = ExportOptions {
        force: true,
        ..options
    };
    let exported =
        export(&kernels, dir.path(), &forced, &compiler, &Target::host()).expect("forced");
    assert_eq!(exported.kernels[0].1, "matmul_m4_n4_k4");
    let header = std::fs::read_to_string(dir.path().join("c/kernels.h")).expect("header");
    assert!(
        header.contains("void tuned_kernels_matmul_m4_n4_k4("),
        "{header}"
    );
    // What was there before is left alone.
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn a_bad_crate_name_is_refused() {
    let Ok(compiler) = Compiler::discover() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let options = ExportOptions {
        crate_name: "1st kernels".to_string(),
        ..ExportOptions::default()
    };
    let error = export(
        &[kernel("matmul:m=4,n=4,k=4")],
        dir.path(),
        &options,
        &compiler,
        &Target::host(),
    )
    .expect_err("bad name");
    assert!(error.to_string().contains("`1st kernels`"), "{error}");
}

#[test]
fn a_refused_kernel_leaves_nothing_behind() {
    let Ok(compiler) = Compiler::discover() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("kernels");
    let mut wrong = kernel("matmul:m=4,n=4,k=4");
    wrong.workload = "matmul:m=4,n=4,k=8".parse().expect("workload");
    let kernels = [kernel("matmul:m=2,n=2,k=2"), wrong];
    let error = export(
        &kernels,
        &out,
        &ExportOptions::default(),
        &compiler,
        &Target::host(),
    )
    .expect_err("the second kernel is refused");
    assert!(matches!(error, ExportError::Unsupported { .. }), "{error}");
    assert!(!out.exists());
}
