//! The exporter, differentially: random (workload, layout, legal schedule) cases and the
//! layouts search uses (packed operands, a blocked reduction, a 1x1 conv2d as a GEMM with its
//! epilogue, NCHW[b]c depthwise), exported into one crate, which is then built from its own
//! directory with `cargo test --offline`. Its tests compare every kernel with a reference loop
//! written from the workload alone, so an exported kernel that differs from its operator's
//! definition (a wrong operand order, layout or epilogue) fails here.

#![forbid(unsafe_code)]

mod support;

use looptune_cc::export::{export, ExportKernel, ExportOptions};
use looptune_ir::random::random_case;
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

#[test]
fn exported_kernels_of_random_schedules_match_their_reference_loops() {
    let mut kernels = layout_cases();
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
