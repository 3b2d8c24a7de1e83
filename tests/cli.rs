//! The `looptune` binary, run as a user runs it: arguments in, text and exit codes out.
//!
//! These tests check the contract of the command line (what is printed where, which exit code)
//! rather than the details of lowering, which `looptune-ir`'s snapshot tests cover.

#![forbid(unsafe_code)]

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
fn lower_prints_the_register_tiled_schedule() {
    let args = [
        "lower",
        "matmul:m=8,n=16,k=5",
        "--schedule",
        "register-tiled",
        "--parallel",
    ];
    let output = looptune(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "alloc C.local: f32[4, 8]",
        "parallel i.outer",
        "unroll i in 0..4",
        "vectorize j in 0..8",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
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

/// Parses stdout as exactly one JSON object.
fn json_object(output: &Output) -> serde_json::Map<String, serde_json::Value> {
    let text = stdout(output);
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "not one line of JSON:\n{text}"
    );
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(object)) => object,
        other => panic!("not a JSON object ({other:?}):\n{text}"),
    }
}

fn number(object: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    object
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("`{key}` is not a number in {object:?}"))
}

#[test]
fn peak_json_reports_throughput_and_threads() {
    let output = looptune(&["peak", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    assert!(number(&object, "gflops") > 0.0, "{object:?}");
    assert_eq!(number(&object, "threads"), 1.0, "{object:?}");
}

#[test]
fn run_json_reports_a_checked_timed_kernel() {
    let output = looptune(&["run", "matmul:m=16,n=12,k=9", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    assert_eq!(
        object.get("workload").and_then(serde_json::Value::as_str),
        Some("matmul:m=16,n=12,k=9,transpose_b=false")
    );
    assert_eq!(object.get("correct"), Some(&serde_json::Value::Bool(true)));
    assert!(number(&object, "gflops") > 0.0, "{object:?}");
    assert!(number(&object, "peak_gflops") > 0.0, "{object:?}");
    assert!(number(&object, "compile_ms") > 0.0, "{object:?}");
}

#[test]
fn run_prints_text_for_every_operator() {
    for workload in [
        "matmul:m=5,n=7,k=3,transpose_b=true",
        "batch_matmul:b=2,m=3,n=5,k=4",
        "dense:m=2,n=9,k=6,bias=true,relu=true",
        "conv2d:ic=3,h=7,w=6,oc=5,kh=3,kw=3,stride=2,pad=1",
        "depthwise_conv2d:c=4,h=6,w=7,kh=3,kw=3,pad=1",
    ] {
        let output = looptune(&["run", workload]);
        assert!(output.status.success(), "{workload}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains("every element against the reference interpreter"),
            "{workload}:\n{text}"
        );
        assert!(text.contains("GFLOP/s"), "{workload}:\n{text}");
    }
}

#[test]
fn run_register_tiled_matmul_with_tails_is_correct() {
    for extra in [
        &[][..],
        &["--tile", "3x4", "--unroll-k", "4", "--threads", "2"][..],
    ] {
        let mut args = vec![
            "run",
            "matmul:m=37,n=29,k=13",
            "--schedule",
            "register-tiled",
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        let output = looptune(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let object = json_object(&output);
        assert_eq!(
            object.get("correct"),
            Some(&serde_json::Value::Bool(true)),
            "{object:?}"
        );
        assert_eq!(
            object.get("check").and_then(serde_json::Value::as_str),
            Some("full")
        );
    }
}

#[test]
fn run_isolated_measures_in_the_worker_process() {
    let output = looptune(&["run", "dense:m=3,n=10,k=7,relu=true", "--isolate", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    assert_eq!(
        object.get("correct"),
        Some(&serde_json::Value::Bool(true)),
        "{object:?}"
    );
    assert!(number(&object, "gflops") > 0.0, "{object:?}");
}

#[test]
fn worker_exits_cleanly_when_its_input_closes() {
    let output = Command::new(env!("CARGO_BIN_EXE_looptune"))
        .arg("worker")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the looptune binary runs");
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn large_workloads_are_checked_at_sampled_points() {
    let args = [
        "run",
        "matmul:m=512,n=512,k=256",
        "--schedule",
        "register-tiled",
        "--json",
    ];
    let output = looptune(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    assert_eq!(
        object.get("correct"),
        Some(&serde_json::Value::Bool(true)),
        "{object:?}"
    );
    assert_eq!(
        object.get("check").and_then(serde_json::Value::as_str),
        Some("sampled")
    );
    assert!(number(&object, "checked_elements") >= 4.0, "{object:?}");
}

#[test]
fn register_tiled_rejects_what_it_cannot_do() {
    check_usage_error(
        &[
            "run",
            "conv2d:ic=3,h=7,w=6,oc=5,kh=3,kw=3",
            "--schedule",
            "register-tiled",
        ],
        "is a matmul schedule, not one for `conv2d`",
    );
    check_usage_error(
        &[
            "run",
            "matmul:m=8,n=8,k=8",
            "--schedule",
            "register-tiled",
            "--tile",
            "4by8",
        ],
        "tile `4by8` is not of the form ROWSxCOLUMNS",
    );
    check_usage_error(
        &[
            "run",
            "matmul:m=8,n=8,k=8",
            "--schedule",
            "register-tiled",
            "--tile",
            "0x8",
        ],
        "both sides must be at least 1",
    );
}

#[test]
fn run_and_peak_reject_bad_arguments() {
    check_usage_error(&["run", "matmul:m=4,n=4,k=4,q=1"], "unknown parameter `q`");
    let output = looptune(&["peak", "--threads", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = looptune(&["run", "matmul:m=4,n=4,k=4", "--threads", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn later_commands_without_their_arguments_are_usage_errors() {
    // `report` needs its log and output, `tune-model` its network, `tune-compare` its
    // workloads (a bare comparison would measure for an hour): each names what is missing.
    for (command, missing) in [
        ("report", "--log"),
        ("tune-model", "NETWORK"),
        ("tune-compare", "workload"),
    ] {
        let output = looptune(&[command]);
        assert_eq!(output.status.code(), Some(2), "`{command}`");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(missing), "`{command}`: {stderr}");
    }
}

/// `looptune args` with `CC` pointing at a program that does not exist.
fn looptune_without_compiler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(args)
        .env("CC", "/nonexistent/looptune-test-cc")
        .output()
        .expect("the looptune binary runs")
}

#[test]
fn without_a_compiler_auto_falls_back_to_cranelift_and_says_so() {
    let output = looptune_without_compiler(&["run", "matmul:m=8,n=8,k=8", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("backend: cranelift"), "{message}");
    assert!(
        message.contains("/nonexistent/looptune-test-cc"),
        "{message}"
    );
    let object = json_object(&output);
    assert_eq!(
        object.get("backend").and_then(serde_json::Value::as_str),
        Some("cranelift")
    );
}

#[test]
fn backend_c_without_a_compiler_is_a_clear_error() {
    let output = looptune_without_compiler(&["run", "matmul:m=8,n=8,k=8", "--backend", "c"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("--backend c"), "{message}");
    assert!(
        message.contains("/nonexistent/looptune-test-cc"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn an_unknown_backend_is_a_usage_error() {
    check_usage_error(
        &["run", "matmul:m=8,n=8,k=8", "--backend", "llvm"],
        "unknown backend `llvm`",
    );
}

#[test]
fn both_backends_run_a_workload_correctly() {
    for backend in ["c", "cranelift"] {
        let output = looptune(&[
            "run",
            "conv2d:n=1,ic=3,h=17,w=17,oc=5,kh=7,kw=7,stride=2,pad=3",
            "--backend",
            backend,
            "--json",
        ]);
        assert!(output.status.success(), "{backend}: {}", stderr(&output));
        let object = json_object(&output);
        assert_eq!(object.get("correct"), Some(&serde_json::Value::Bool(true)));
        assert_eq!(
            object.get("backend").and_then(serde_json::Value::as_str),
            Some(backend)
        );
        assert!(number(&object, "compile_ms") > 0.0, "{object:?}");
    }
}

#[test]
fn lower_emits_the_c_the_c_backend_compiles() {
    let output = looptune(&[
        "lower",
        "matmul:m=12,n=16,k=5",
        "--schedule",
        "register-tiled",
        "--tile",
        "3x16",
        "--emit",
        "c",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("void looptune_entry("), "{text}");
    assert!(!text.contains("#include"), "{text}");
}

#[test]
fn bench_json_has_every_figure() {
    let output = looptune(&["bench", "matmul:m=64,n=48,k=32", "--rounds", "2", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    for key in [
        "gflops",
        "sgemm_gflops",
        "ratio_to_sgemm",
        "peak_gflops",
        "ratio_to_peak",
        "gbytes_per_s",
        "copy_gbytes_per_s",
        "ratio_to_copy",
        "rounds",
    ] {
        assert!(number(&object, key) > 0.0, "{key}: {object:?}");
    }
    assert!(object.get("backend").is_some(), "{object:?}");
    let ratio = number(&object, "ratio_to_copy");
    let expected = number(&object, "gbytes_per_s") / number(&object, "copy_gbytes_per_s");
    assert!((ratio - expected).abs() < 1e-9 * expected, "{object:?}");
    let ratio = number(&object, "ratio_to_sgemm");
    let expected = number(&object, "gflops") / number(&object, "sgemm_gflops");
    assert!((ratio - expected).abs() < 1e-9 * expected, "{object:?}");
}

#[test]
fn peak_reports_both_ceilings() {
    let output = looptune(&["peak", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let object = json_object(&output);
    let cranelift = object
        .get("cranelift")
        .and_then(|peak| peak.get("lanes"))
        .and_then(serde_json::Value::as_f64);
    assert_eq!(cranelift, Some(4.0), "{object:?}");
    let full_width = object
        .get("full_width")
        .and_then(|peak| peak.get("lanes"))
        .and_then(serde_json::Value::as_f64)
        .expect("a C compiler is present where the tests run");
    assert!(full_width >= 4.0, "{object:?}");
    let output = looptune(&["peak", "--threads", "100000"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn emitting_c_with_the_cranelift_backend_is_a_usage_error() {
    check_usage_error(
        &[
            "lower",
            "matmul:m=4,n=4,k=4",
            "--emit",
            "c",
            "--backend",
            "cranelift",
        ],
        "--emit c",
    );
}
