//! `looptune export-c` end to end: tune a small matmul, a small conv2d and a small 8-bit
//! conv2d with the C backend into a fresh log, export them, then build the exported crate from
//! its own directory with `cargo test --offline` (its own target directory, no looptune crate
//! in its tree) and require its tests, every kernel against its reference loop on random
//! inputs (bit for bit for the 8-bit one), to pass. Then the
//! refusals: a workload the log lacks, a config outside today's space, a directory that holds
//! files, no C compiler, an unknown instruction set.

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

const MATMUL: &str = "matmul:m=48,n=40,k=24";
const CONV: &str = "conv2d:n=1,ic=4,h=9,w=9,oc=16,kh=3,kw=3,stride=1,pad=1,bias=true,relu=true";
/// An 8-bit convolution (a 3-channel NHWC image in, NCHW8c out, per-channel multipliers): its
/// exported wrapper takes `u8`/`i8`/`i32` slices and its test is bit for bit.
const QCONV: &str =
    "qconv2d:ic=3,h=10,w=9,oc=16,kh=3,kw=3,stride=2,pad=1,block=8,in_block=3,shift=6,per_channel=true";

fn looptune(args: &[&str]) -> Output {
    looptune_with(args, &[])
}

fn looptune_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_looptune"));
    command
        .args(args)
        .env_remove("LOOPTUNE_MEMORY_LIMIT")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the looptune binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Tunes `workload` for a few trials with the C backend into `log`, two threads, so that
/// parallel configs (the exported runtime's parallel-for) are among those measured.
fn tune(workload: &str, log: &str) {
    let output = looptune(&[
        "tune",
        workload,
        "--backend",
        "c",
        "--trials",
        "8",
        "--threads",
        "2",
        "--finalists",
        "0",
        "--repeat",
        "1",
        "--min-repeat-ms",
        "1",
        "--log",
        log,
    ]);
    assert!(output.status.success(), "tune {workload}: {output:?}");
}

/// Whether a C compiler works here: without one the C backend cannot tune, and export-c must
/// say so (checked below) rather than export.
fn c_compiler_works() -> bool {
    looptune::backend::c_backend().is_ok()
}

#[test]
fn an_exported_crate_builds_alone_and_its_kernels_match_their_references() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("small.tunelog");
    let log_text = log.display().to_string();
    if !c_compiler_works() {
        let output = looptune(&["export-c", "--out", "x", &log_text]);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        return;
    }
    tune(MATMUL, &log_text);
    tune(CONV, &log_text);
    tune(QCONV, &log_text);

    let crate_dir = dir.path().join("exported");
    let crate_text = crate_dir.display().to_string();
    let exported = looptune(&["export-c", "--out", &crate_text, &log_text]);
    assert!(exported.status.success(), "{exported:?}");
    let listing = text(&exported.stdout);
    assert!(listing.contains("matmul_m48_n40_k24"), "{listing}");
    assert!(
        listing.contains("conv2d_n1_ic4_h9_w9_oc16_kh3_kw3_stride1_pad1_dilation1_bias_relu"),
        "{listing}"
    );
    assert!(listing.contains("qconv2d_n1_ic3_h10_w9_oc16"), "{listing}");
    let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).expect("lib.rs");
    assert!(
        lib.contains("x: &[u8], w: &[i8], bias: &[i32], m: &[i32], y: &mut [u8]"),
        "the quantized wrapper's signature"
    );

    // The crate's manifest names no looptune crate: `cc` is its only dependency.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("manifest");
    assert!(!manifest.contains("looptune-"), "{manifest}");

    // Built from a fresh directory of its own: a copy outside the export's output, its own
    // target directory, offline (`cc` comes from the local registry cache).
    let fresh = dir.path().join("fresh");
    copy_tree(&crate_dir, &fresh);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let tested = Command::new(cargo)
        .args(["test", "--offline", "--quiet"])
        .current_dir(&fresh)
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs");
    let report = format!("{}\n{}", text(&tested.stdout), text(&tested.stderr));
    assert!(tested.status.success(), "{report}");
    // Three kernels, each checked against its reference and for a wrong length.
    assert!(report.contains("6 passed"), "{report}");

    let tree = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["tree", "--offline", "--edges", "all"])
        .current_dir(&fresh)
        .output()
        .expect("cargo tree runs");
    let tree = text(&tree.stdout);
    assert!(tree.contains("cc v1"), "{tree}");
    assert!(!tree.contains("looptune"), "{tree}");

    refusals(dir.path(), &log, &crate_text);
}

/// What export-c refuses, each naming the bad value (run on the log tuned above).
fn refusals(dir: &Path, log: &Path, crate_text: &str) {
    let log_text = log.display().to_string();
    let other = dir.join("other").display().to_string();

    // A workload the log lacks.
    let missing = "matmul:m=8,n=8,k=8";
    let output = looptune(&["export-c", "--out", &other, &log_text, missing]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("has no tuned config of `matmul:m=8,n=8,k=8"),
        "{output:?}"
    );

    // A directory that holds files, unless --force.
    let output = looptune(&["export-c", "--out", crate_text, &log_text]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(text(&output.stderr).contains("is not empty"), "{output:?}");
    let output = looptune(&["export-c", "--force", "--out", crate_text, &log_text]);
    assert!(output.status.success(), "{output:?}");

    // No C compiler: said, and nothing written.
    let output = looptune_with(
        &["export-c", "--out", &other, &log_text],
        &[("CC", "/nonexistent/cc")],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("needs a working C compiler")
            && text(&output.stderr).contains("/nonexistent/cc"),
        "{output:?}"
    );

    // An instruction set that is not supported.
    let output = looptune(&["export-c", "--march", "i386", "--out", &other, &log_text]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("`i386`"), "{output:?}");

    // Every record's config made a point no space has: outside today's space, said so.
    let damaged = dir.join("damaged.tunelog");
    let lines: Vec<String> = std::fs::read_to_string(log)
        .expect("log")
        .lines()
        .filter(|line| line.contains("\"matmul:"))
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).expect("a record");
            record["config"][0][1] = serde_json::json!({"split": [7, 7, 7]});
            record.to_string()
        })
        .collect();
    std::fs::write(&damaged, lines.join("\n") + "\n").expect("writes");
    let damaged_text = damaged.display().to_string();
    let output = looptune(&["export-c", "--out", &other, &damaged_text, MATMUL]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("is not a point of today's space"),
        "{output:?}"
    );
    assert!(!Path::new(&other).join("src").exists());
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
