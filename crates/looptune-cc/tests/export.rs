//! The exporter, differentially: random (workload, layout, legal schedule) cases and the
//! layouts search uses (packed operands, a blocked reduction, a 1x1 conv2d as a GEMM with its
//! epilogue, NCHW[b]c depthwise), and the quantized operators (plain and in their pair forms,
//! under random legal schedules), exported into one crate, which is then built from its own
//! directory with `cargo test --offline`. Its tests compare every kernel with a reference loop
//! written from the workload alone (bit for bit when quantized), so an exported kernel that
//! differs from its operator's definition (a wrong operand order, layout, epilogue or rounding)
//! fails here.

#![forbid(unsafe_code)]

mod support;

use looptune_cc::export::{export, ExportKernel, ExportOptions};
use looptune_ir::random::{random_case, random_schedule, SplitMix64};
use looptune_ir::{lower, Layout, Schedule, Workload};
use looptune_runtime::Target;
use std::process::{Command, Stdio};

/// Fixed seeds: the same cases on every run (the backend's differential tests draw fresh ones).
const SEEDS: std::ops::Range<u64> = 9_000..9_024;

fn layout_cases() -> Vec<ExportKernel> {
    let cases = [
        (
            "matmul:m=9,n=13,k=16",
            Layout {
                pack_columns: Some(8),
                block_reduction: Some(4),
                ..Layout::default()
            },
        ),
        (
            "dense:m=5,n=11,k=7,bias=true,relu=true",
            Layout {
                pack_columns: Some(4),
                ..Layout::default()
            },
        ),
        (
            "conv2d:n=2,ic=5,h=7,w=6,oc=9,kh=1,kw=1,stride=2,pad=0,bias=true,residual=true,relu=true",
            Layout {
                conv_as_gemm: Some(8),
                ..Layout::default()
            },
        ),
        (
            "conv2d:n=1,ic=3,h=8,w=7,oc=10,kh=3,kw=3,stride=1,pad=1,bias=true,relu=true",
            Layout {
                pack_output_channels: Some(8),
                ..Layout::default()
            },
        ),
        (
            "depthwise_conv2d:n=1,c=16,h=7,w=7,kh=3,kw=3,stride=2,pad=1,block=8",
            Layout::default(),
        ),
    ];
    cases
        .into_iter()
        .map(|(text, layout)| {
            let workload: Workload = text.parse().expect(text);
            let program = workload.program(&layout).expect(text);
            ExportKernel {
                key: workload.to_string(),
                workload,
                nest: lower(&Schedule::new(&program)).expect(text),
                note: Some(format!("layout {layout:?}")),
            }
        })
        .collect()
}

/// Quantized workloads (per-channel multipliers, zero points off the middle, odd sizes), each
/// plain and in its pair form, under a random legal schedule.
fn quantized_cases() -> Vec<ExportKernel> {
    let pairs = Layout {
        pack_columns: Some(8),
        ..Layout::default()
    };
    let conv_pairs = Layout {
        pair_form: true,
        ..Layout::default()
    };
    let cases = [
        ("qmatmul:m=9,n=13,k=17,a_zero=3,out_zero=100,shift=9,per_channel=true", pairs),
        ("qmatmul:m=4,n=5,k=6,a_zero=250,out_zero=7,shift=8,qmin=7,qmax=200", Layout::default()),
        ("qdense:m=5,n=11,k=7,a_zero=128,shift=6,per_channel=true", pairs),
        (
            "qdepthwise_conv2d:c=16,h=7,w=7,kh=3,kw=3,stride=2,pad=1,block=8,shift=4,per_channel=true",
            Layout::default(),
        ),
        (
            "qconv2d:ic=3,h=9,w=8,oc=16,kh=3,kw=3,stride=2,pad=1,block=8,in_block=3,shift=7,per_channel=true",
            conv_pairs,
        ),
        (
            "qconv2d:n=2,ic=16,h=6,w=5,oc=8,kh=3,kw=3,pad=1,dilation=2,block=8,a_zero=17,shift=10",
            Layout::default(),
        ),
        ("qconv2d:ic=10,h=5,w=5,oc=10,kh=1,kw=1,stride=2,block=5,shift=5", conv_pairs),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(index, (text, layout))| {
            let workload: Workload = text.parse().expect(text);
            let program = workload.program(&layout).expect(text);
            let mut rng = SplitMix64::new(0x0e4f ^ index as u64);
            let schedule = random_schedule(&mut rng, Schedule::new(&program));
            ExportKernel {
                key: workload.to_string(),
                workload,
                nest: lower(&schedule).expect(text),
                note: Some(format!("layout {layout:?}, a random schedule")),
            }
        })
        .collect()
}

#[test]
fn exported_kernels_of_random_schedules_match_their_reference_loops() {
    let mut kernels = layout_cases();
    kernels.extend(quantized_cases());
    for seed in SEEDS {
        let case = random_case(seed);
        kernels.push(ExportKernel {
            key: case.workload.to_string(),
            workload: case.workload,
            nest: lower(&case.schedule).expect("a random case lowers"),
            note: Some(format!("random case {seed}")),
        });
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let crate_dir = dir.path().join("kernels");
    let exported = export(
        &kernels,
        &crate_dir,
        &ExportOptions::default(),
        &support::compiler(),
        &Target::host(),
    )
    .expect("exports");
    assert_eq!(exported.kernels.len(), kernels.len());

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tested = Command::new(cargo)
        .args(["test", "--offline", "--quiet"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(tested.status.success(), "{report}");
    // Two tests per kernel: its reference, and a wrong length refused.
    let expected = format!("{} passed", 2 * kernels.len());
    assert!(report.contains(&expected), "{report}");
}
