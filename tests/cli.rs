//! The `looptune` binary, run as a user runs it: arguments in, text and exit codes out.
//!
//! These tests check the contract of the command line (what is printed where, which exit code)
//! rather than the details of lowering, which `looptune-ir`'s snapshot tests cover.

use std::process::{Command, Output};

/// The workloads of issue 2's command-line section: one per operator.
const EXAMPLE_WORKLOADS: [&str; 5] = [
    "matmul:m=1024,n=1024,k=1024",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=32,h=112,w=112,kh=3,kw=3,stride=1,pad=1",
    "batch_matmul:b=12,m=128,n=128,k=64",
    "dense:m=1,n=1000,k=512,bias=true,relu=true",
];

fn looptune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(args)
        .output()
        .expect("the looptune binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `looptune args` expecting a usage error (exit code 2) whose message contains `expected`.
fn check_usage_error(args: &[&str], expected: &str) {
    let output = looptune(args);
    let message = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?}: stderr was `{message}`"
    );
    assert!(
        message.contains(expected),
        "{args:?}: `{message}` lacks `{expected}`"
    );
    assert!(
        !message.contains("panicked"),
        "{args:?} panicked: {message}"
    );
    assert!(
        stdout(&output).is_empty(),
        "{args:?} printed to stdout on failure"
    );
}

#[test]
fn ops_lists_every_operator_with_its_parameters() {
    let output = looptune(&["ops"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for op in [
        "matmul",
        "batch_matmul",
        "dense",
        "conv2d",
        "depthwise_conv2d",
    ] {
        assert!(
            text.contains(&format!("\n{op}: ")),
            "`{op}` missing from:\n{text}"
        );
    }
    // A required parameter, a parameter with a default, and their help text.
    assert!(text.contains("required"), "{text}");
    assert!(text.contains("default false"), "{text}");
    assert!(text.contains("input channels"), "{text}");
}

#[test]
fn lower_prints_a_kernel_for_each_example_workload() {
    for workload in EXAMPLE_WORKLOADS {
        let output = looptune(&["lower", workload]);
        assert!(output.status.success(), "{workload}: {}", stderr(&output));
        let text = stdout(&output);
        let op = workload.split(':').next().unwrap_or_default();
        assert!(
            text.starts_with(&format!("kernel {op}")),
            "{workload}:\n{text}"
        );
        assert!(text.contains("for "), "{workload} has no loop:\n{text}");
        assert!(text.trim_end().ends_with('}'), "{workload}:\n{text}");
    }
}

#[test]
fn lower_with_packing_adds_the_packed_stage() {
    let output = looptune(&["lower", "matmul:m=8,n=8,k=8", "--layout", "pack=4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("B.packed"), "{}", stdout(&output));
}

#[test]
fn malformed_workload_names_the_bad_part() {
    check_usage_error(
        &["lower", "matmul:m=4,n=4,k"],
        "`k` is not of the form key=value",
    );
    check_usage_error(&["lower", "matmal:m=4"], "unknown operator `matmal`");
    check_usage_error(&["lower", "matmul:m=4,n=x,k=4"], "`n=x` is not an integer");
}

#[test]
fn unknown_key_is_rejected() {
    check_usage_error(
        &["lower", "matmul:m=4,n=4,k=4,q=1"],
        "unknown parameter `q`",
    );
}

#[test]
fn zero_dimension_is_rejected() {
    check_usage_error(&["lower", "matmul:m=0,n=4,k=4"], "`m=0` must be at least 1");
    check_usage_error(
        &["lower", "conv2d:ic=0,h=8,w=8,oc=4,kh=3,kw=3"],
        "`ic=0` must be at least 1",
    );
}

#[test]
fn bad_layout_is_rejected() {
    check_usage_error(
        &["lower", "matmul:m=4,n=4,k=4", "--layout", "pack=0"],
        "`pack=0`",
    );
    check_usage_error(
        &[
            "lower",
            "batch_matmul:b=2,m=4,n=4,k=4",
            "--layout",
            "pack=4",
        ],
        "matmul and dense only",
    );
}

#[test]
fn no_stub_commands_exist() {
    // Commands of later issues must not exist before they work.
    for command in ["tune", "best", "show", "report"] {
        let output = looptune(&[command]);
        assert_eq!(output.status.code(), Some(2), "`{command}` exists");
    }
}
