//! Hostile input: the `looptune` binary fed what a careless or malicious user types, files that
//! are not what a command expects, and signals. Every case asserts the exit code (2 for a
//! mistake in the command line, 1 for a failure such as a file that is not a log), that the
//! message names the bad value, and that nothing panicked (101) or aborted (134).
//!
//! Each case is small: the workloads are tiny or refused before anything is built, and cases
//! that measure use `--backend cranelift` with a trial or two.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const I64_MAX: &str = "9223372036854775807";

fn looptune() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_looptune"));
    command.env_remove("LOOPTUNE_MEMORY_LIMIT");
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = looptune();
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the looptune binary runs")
}

/// One hostile case: the arguments, the exit code expected, and a text the message must hold.
struct Case {
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    expected: String,
}

fn case(args: &[&str], code: i32, expected: &str) -> Case {
    Case {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: Vec::new(),
        code,
        expected: expected.to_string(),
    }
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let output = run(&args, &env);
        let message = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code();
        let problem = if code != Some(case.code) {
            Some(format!("exit code {code:?}, expected {}", case.code))
        } else if !message.contains(&case.expected) {
            Some(format!("the message lacks `{}`", case.expected))
        } else if message.contains("panicked") || message.contains("RUST_BACKTRACE") {
            Some("it panicked".to_string())
        } else if started.elapsed() > Duration::from_secs(60) {
            Some(format!("it took {:?}", started.elapsed()))
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!("{args:?}: {problem}; stderr: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A deploy database exported from an empty log, as `looptune export-db` writes it.
fn database(dir: &Path) -> PathBuf {
    let log = dir.join("empty.tunelog");
    std::fs::write(&log, b"").expect("writes");
    let db = dir.join("kernels.db");
    let output = run(
        &[
            "export-db",
            "--out",
            db.to_str().expect("utf-8"),
            log.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(output.status.success(), "{output:?}");
    db
}

#[test]
fn hostile_workloads_are_refused_by_name_before_anything_is_allocated() {
    let huge = "matmul:m=100000,n=100000,k=100000";
    let max_m = format!("matmul:m={I64_MAX},n=4,k=4");
    let max_pad = format!("conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad={I64_MAX}");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = path(dir.path(), "w.tunelog");
    check(vec![
        case(
            &["run", huge, "--backend", "cranelift"],
            2,
            "matmul:m=100000,n=100000,k=100000",
        ),
        case(
            &["run", huge, "--backend", "cranelift"],
            2,
            "360000000000 bytes",
        ),
        case(
            &["tune", huge, "--log", &log, "--backend", "cranelift"],
            2,
            "needs about",
        ),
        case(&["bench", huge, "--backend", "cranelift"], 2, "needs about"),
        case(
            &[
                "run",
                "conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad=1000000",
                "--backend",
                "cranelift",
            ],
            2,
            "pad=1000000",
        ),
        case(
            &[
                "run",
                "batch_matmul:b=100000,m=1000,n=1000,k=1000",
                "--backend",
                "cranelift",
            ],
            2,
            "batch_matmul:b=100000",
        ),
        case(
            &["run", &max_m, "--backend", "cranelift"],
            2,
            &format!("`m={I64_MAX}` is larger"),
        ),
        case(&["lower", &max_m], 2, &format!("m={I64_MAX}")),
        case(&["tune", &max_m, "--log", &log], 2, &format!("m={I64_MAX}")),
        case(&["lower", &max_pad], 2, &format!("pad={I64_MAX}")),
        case(
            &["lower", "conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad=2147483648"],
            2,
            "tensor `X`",
        ),
        case(
            &["lower", "batch_matmul:b=65536,m=65536,n=65536,k=65536"],
            2,
            "is larger than the supported",
        ),
        case(
            &["lower", "matmul:m=2147483648,n=2147483648,k=1"],
            2,
            "2147483648 x 2147483648",
        ),
        case(
            &[
                "lower",
                "depthwise_conv2d:c=1,h=4,w=4,kh=3,kw=3,dilation=2147483648",
            ],
            2,
            "dilation 2147483648",
        ),
        case(&["run", "matmul:m=-1,n=4,k=4"], 2, "`m=-1`"),
        case(
            &["run", "matmul:m=0,n=4,k=4"],
            2,
            "`m=0` must be at least 1",
        ),
        case(
            &["run", "matmul:m=99999999999999999999,n=4,k=4"],
            2,
            "`m=99999999999999999999` is not an integer",
        ),
        case(
            &["lower", "conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad=-1"],
            2,
            "`pad=-1`",
        ),
        case(
            &["lower", "conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,stride=0"],
            2,
            "`stride=0`",
        ),
        case(
            &["lower", "conv2d:ic=1,h=4,w=4,oc=1,kh=99,kw=3"],
            2,
            "kernel extent 99",
        ),
        case(
            &["lower", "convolution:n=1"],
            2,
            "unknown operator `convolution`",
        ),
        case(
            &["lower", "matmul:m=4,n=4,k=4,q=1"],
            2,
            "unknown parameter `q`",
        ),
        case(&["lower", "matmul"], 2, "missing parameter `m`"),
        case(
            &["lower", "matmul:m=4,m=5,n=4,k=4"],
            2,
            "parameter `m` given twice",
        ),
        case(&["lower", ""], 2, "unknown operator ``"),
        case(
            &["lower", "dense:m=1,n=2,k=3,bias=maybe"],
            2,
            "`bias=maybe`",
        ),
        case(
            &["lower", "matmul:m=4,n=4,k=4,transpose_b=2"],
            2,
            "`transpose_b=2`",
        ),
        case(&["lower", "matmul:m=4;n=4"], 2, "`m=4;n=4`"),
        // The 8-bit convolution: blocks that do not divide, out-of-range quantization, an
        // f32-only flag, a huge input refused before anything is allocated.
        case(
            &["lower", "qconv2d:ic=3,h=5,w=5,oc=8,kh=3,kw=3,block=8"],
            2,
            "`in_block=8` must divide `ic=3`",
        ),
        case(
            &["lower", "qconv2d:ic=8,h=5,w=5,oc=12,kh=3,kw=3,block=8"],
            2,
            "`block=8` must divide `oc=12`",
        ),
        case(
            &[
                "lower",
                "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,block=8,in_block=0",
            ],
            2,
            "`in_block=0`",
        ),
        case(
            &[
                "lower",
                "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,block=8,a_zero=256",
            ],
            2,
            "`a_zero=256`",
        ),
        case(
            &[
                "lower",
                "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,block=8,relu=true",
            ],
            2,
            "unknown parameter `relu`",
        ),
        case(
            &[
                "run",
                "qconv2d:ic=1,h=100000,w=100000,oc=8,kh=3,kw=3,block=8,in_block=1",
                "--backend",
                "cranelift",
            ],
            2,
            "needs about",
        ),
    ]);
}

#[test]
fn hostile_flags_are_usage_errors_naming_the_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = path(dir.path(), "f.tunelog");
    let tune = |extra: &[&str]| {
        let mut args = vec![
            "tune",
            "matmul:m=4,n=4,k=4",
            "--log",
            &log,
            "--backend",
            "cranelift",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let tune_case = |extra: &[&str], expected: &str| Case {
        args: tune(extra),
        env: Vec::new(),
        code: 2,
        expected: expected.to_string(),
    };
    let mut cases = vec![
        tune_case(&["--timeout", "1e308"], "--timeout 1000000000"),
        tune_case(&["--timeout=-1"], "--timeout -1 must be"),
        tune_case(&["--timeout", "NaN"], "--timeout NaN must be"),
        tune_case(&["--timeout", "inf"], "--timeout inf must be"),
        tune_case(&["--timeout", "0"], "--timeout 0 must be"),
        tune_case(
            &["--time-budget", "2e19"],
            "--time-budget 20000000000000000000 must be",
        ),
        tune_case(&["--time-budget=-5"], "--time-budget -5 must be"),
        tune_case(&["--time-budget", "inf"], "--time-budget inf must be"),
        tune_case(&["--min-repeat-ms", "1e300"], "--min-repeat-ms 1000000000"),
        tune_case(&["--min-repeat-ms", "0"], "--min-repeat-ms 0 must be"),
        tune_case(&["--min-repeat-ms=-3"], "--min-repeat-ms -3 must be"),
        tune_case(&["--stage-cutoff", "1.5"], "--stage-cutoff 1.5 must be"),
        tune_case(&["--stage-cutoff", "NaN"], "--stage-cutoff NaN must be"),
        tune_case(&["--first-stage-ms=-1"], "--first-stage-ms -1 must be"),
        tune_case(&["--threads", "1000"], "--threads 1000 must be from 1 to"),
        tune_case(&["--threads", "0"], "0"),
        tune_case(&["--trials", "0"], "0"),
        tune_case(&["--batch-size", "0"], "0"),
        tune_case(&["--repeat", "0"], "0"),
        tune_case(
            &["--trials", "99999999999999999999"],
            "99999999999999999999",
        ),
        tune_case(&["--tuner", "magic"], "magic"),
        tune_case(&["--seed", "-1"], "-1"),
        case(
            &["run", "matmul:m=4,n=4,k=4", "--threads", "1000"],
            2,
            "--threads 1000",
        ),
        case(&["peak", "--threads", "1000"], 2, "--threads 1000"),
        case(
            &["tune-model", "resnet18", "--threads", "1000", "--log", &log],
            2,
            "--threads 1000",
        ),
        case(
            &[
                "tune-model",
                "resnet18",
                "--time-budget",
                "1e308",
                "--log",
                &log,
            ],
            2,
            "--time-budget",
        ),
        case(
            &[
                "tune-model",
                "resnet18",
                "--timeout",
                "1e308",
                "--log",
                &log,
            ],
            2,
            "--timeout",
        ),
        case(
            &["run", "matmul:m=4,n=4,k=4", "--backend", "fortran"],
            2,
            "fortran",
        ),
        case(
            &["lower", "matmul:m=4,n=4,k=4", "--layout", "pack=0"],
            2,
            "`pack=0`",
        ),
        case(
            &[
                "lower",
                "matmul:m=4,n=4,k=4",
                "--schedule",
                "register-tiled",
                "--tile",
                "0x8",
            ],
            2,
            "tile `0x8`",
        ),
        case(
            &[
                "lower",
                "matmul:m=4,n=4,k=4",
                "--schedule",
                "register-tiled",
                "--tile",
                "4by8",
            ],
            2,
            "tile `4by8`",
        ),
        case(&["lower", "matmul:m=4,n=4,k=4", "--unroll-k", "0"], 2, "0"),
        case(
            &["lower", "matmul:m=4,n=4,k=4", "--layout", "pack=x"],
            2,
            "`pack=x`",
        ),
    ];
    let mut bad_limit = case(
        &["run", "matmul:m=4,n=4,k=4"],
        2,
        "LOOPTUNE_MEMORY_LIMIT=\"lots\"",
    );
    bad_limit
        .env
        .push(("LOOPTUNE_MEMORY_LIMIT", "lots".to_string()));
    cases.push(bad_limit);
    let mut small_limit = case(
        &["run", "matmul:m=64,n=64,k=64", "--backend", "cranelift"],
        2,
        "`matmul:m=64,n=64,k=64,transpose_b=false` needs about",
    );
    small_limit
        .env
        .push(("LOOPTUNE_MEMORY_LIMIT", "1K".to_string()));
    cases.push(small_limit);
    check(cases);
}

#[test]
fn files_that_are_not_what_a_command_expects_are_refused_by_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = database(dir.path());
    let db_text = db.display().to_string();
    let db_bytes = std::fs::read(&db).expect("reads");
    let garbage = path(dir.path(), "photo.jpg");
    std::fs::write(&garbage, b"\xff\xd8\xff\xe0JFIF\0\x01\x02").expect("writes");
    let array = path(dir.path(), "array.json");
    std::fs::write(&array, b"[1, 2, 3]\n").expect("writes");
    let truncated = path(dir.path(), "truncated.db");
    std::fs::write(&truncated, &db_bytes[..10]).expect("writes");
    let newer = path(dir.path(), "newer.db");
    let mut newer_bytes = db_bytes.clone();
    newer_bytes[8] = 99;
    std::fs::write(&newer, &newer_bytes).expect("writes");
    let log = path(dir.path(), "real.tunelog");
    std::fs::write(&log, b"").expect("writes");
    let other_log = path(dir.path(), "other.tunelog");
    std::fs::write(&other_log, b"{\"version\":3}\n").expect("writes");
    let future = path(dir.path(), "future.tunelog");
    std::fs::write(&future, b"{\"version\":999}\n").expect("writes");
    let missing = path(dir.path(), "missing.tunelog");
    let directory = dir.path().display().to_string();
    let matmul = "matmul:m=4,n=4,k=4";
    let cases = vec![
        case(
            &["tune", matmul, "--log", &db_text, "--backend", "cranelift"],
            1,
            "deploy database",
        ),
        case(
            &["tune", matmul, "--log", &garbage, "--backend", "cranelift"],
            1,
            "\\xff\\xd8",
        ),
        case(
            &["tune", matmul, "--log", &array, "--backend", "cranelift"],
            1,
            "array.json",
        ),
        case(
            &[
                "tune",
                matmul,
                "--log",
                "/nonexistent/dir/x.tunelog",
                "--backend",
                "cranelift",
            ],
            1,
            "/nonexistent/dir/x.tunelog",
        ),
        case(
            &["best", "--log", &db_text],
            1,
            "is a looptune deploy database",
        ),
        case(&["best", "--log", &garbage], 1, "photo.jpg"),
        case(&["best", "--log", &missing], 1, "missing.tunelog"),
        case(&["best", "--log", &directory], 1, &directory),
        case(&["best", "--log", &future], 1, "record format version 999"),
        case(&["export-db", "--out", &log, &log], 2, "is the input"),
        case(
            &["export-db", "--out", &other_log, &log],
            2,
            "is a tuning log",
        ),
        case(
            &["export-db", "--out", &path(dir.path(), "x.db"), &missing],
            1,
            "missing.tunelog",
        ),
        case(
            &["export-db", "--out", &path(dir.path(), "x.db"), &db_text],
            1,
            "deploy database",
        ),
        case(
            &["merge", "--out", &path(dir.path(), "m.tunelog"), &missing],
            1,
            "missing.tunelog",
        ),
        case(
            &["merge", "--out", &path(dir.path(), "m.tunelog"), &garbage],
            1,
            "photo.jpg",
        ),
        case(
            &["run", matmul, "--log", &garbage, "--backend", "cranelift"],
            1,
            "photo.jpg",
        ),
        case(
            &["run", matmul, "--log", &truncated, "--backend", "cranelift"],
            1,
            "ends after 10 bytes",
        ),
        case(
            &["run", matmul, "--log", &newer, "--backend", "cranelift"],
            1,
            "database version",
        ),
        case(
            &["show", matmul, "--log", &missing, "--backend", "cranelift"],
            1,
            "missing.tunelog",
        ),
        case(
            &["show", matmul, "--log", &garbage, "--backend", "cranelift"],
            1,
            "photo.jpg",
        ),
        case(
            &[
                "report",
                "--log",
                &db_text,
                "--out",
                &path(dir.path(), "r.svg"),
            ],
            1,
            "deploy database",
        ),
    ];
    check(cases);
    // Nothing above changed the files it refused.
    assert_eq!(std::fs::read(&db).expect("reads"), db_bytes);
    assert_eq!(std::fs::read(&log).expect("reads"), b"");
    assert_eq!(
        std::fs::read(&other_log).expect("reads"),
        b"{\"version\":3}\n"
    );
}

#[test]
fn a_missing_file_names_its_cause_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = path(dir.path(), "nowhere.tunelog");
    let output = run(&["best", "--log", &missing], &[]);
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(
        message.matches("No such file or directory").count(),
        1,
        "{message}"
    );
}

#[test]
fn run_reads_a_deploy_database_by_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = database(dir.path());
    let output = run(
        &[
            "show",
            "matmul:m=4,n=4,k=4",
            "--log",
            db.to_str().expect("utf-8"),
            "--backend",
            "cranelift",
        ],
        &[],
    );
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{message}");
    assert!(message.contains("fallback"), "{message}");
}

#[test]
fn a_second_tuning_run_on_a_locked_log_is_refused_naming_the_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("busy.tunelog");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("opens");
    file.lock().expect("locks");
    let log_text = log.display().to_string();
    check(vec![case(
        &[
            "tune",
            "matmul:m=4,n=4,k=4",
            "--log",
            &log_text,
            "--backend",
            "cranelift",
            "--trials",
            "1",
        ],
        1,
        &format!("`{log_text}` is locked by another looptune process"),
    )]);
    drop(file);
}

/// Starts a tuning run that would go on for a long while, and waits until its log holds a
/// record, so that a signal lands in the middle of the run.
fn start_long_tuning(log: &Path, json: bool) -> std::process::Child {
    let mut command = looptune();
    command
        .args([
            "tune",
            "matmul:m=8,n=8,k=8",
            "--backend",
            "cranelift",
            "--trials",
            "100000",
            "--batch-size",
            "1",
            "--repeat",
            "1",
            "--min-repeat-ms",
            "1",
            "--log",
        ])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if json {
        command.arg("--json");
    }
    let child = command.spawn().expect("starts");
    let started = Instant::now();
    while std::fs::read(log).map_or(0, |bytes| bytes.len()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no record after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn interrupt(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn a_first_ctrl_c_stops_tuning_cleanly_with_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("interrupted.tunelog");
    let child = start_long_tuning(&log, true);
    interrupt(&child);
    let output = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(summary["stop_reason"], "interrupted", "{summary}");
    let trials = summary["trials"].as_u64().expect("trials");
    assert!(trials >= 1, "{summary}");
    // Everything measured is in the log, every line whole, and a rerun resumes from it.
    let text = std::fs::read_to_string(&log).expect("reads");
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count() as u64, trials, "{summary}");
    let rerun = run(
        &[
            "tune",
            "matmul:m=8,n=8,k=8",
            "--backend",
            "cranelift",
            "--trials",
            "1",
            "--repeat",
            "1",
            "--min-repeat-ms",
            "1",
            "--json",
            "--log",
            log.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(rerun.status.success(), "{rerun:?}");
    let resumed: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("JSON");
    assert_eq!(resumed["resumed"].as_u64(), Some(trials), "{resumed}");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("twice.tunelog");
    let child = start_long_tuning(&log, false);
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(20));
    interrupt(&child);
    let started = Instant::now();
    let output = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
    // 130 when the second interrupt arrived before the run wound down, 0 when the first
    // finished it already; never a panic or a signal death.
    assert!(
        matches!(output.status.code(), Some(130) | Some(0)),
        "{:?}: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The log holds whole lines only.
    let text = std::fs::read_to_string(&log).expect("reads");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole record");
    }
}

#[test]
fn every_query_skips_records_outside_todays_space_or_with_negative_throughput() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("one.tunelog");
    let log_text = log.display().to_string();
    let tuned = run(
        &[
            "tune",
            "matmul:m=8,n=8,k=8",
            "--backend",
            "cranelift",
            "--trials",
            "1",
            "--repeat",
            "1",
            "--min-repeat-ms",
            "1",
            "--log",
            &log_text,
        ],
        &[],
    );
    assert!(tuned.status.success(), "{tuned:?}");
    let line = std::fs::read_to_string(&log).expect("reads");
    let record: serde_json::Value = serde_json::from_str(line.trim()).expect("a record");
    assert!(
        record["gflops"].as_f64().is_some_and(|g| g > 0.0),
        "{record}"
    );
    // The same record twice, damaged two ways: a config no knob of today's space has, and a
    // negative throughput.
    let mut outside = record.clone();
    outside["config"][0][1] = serde_json::json!({"split": [7, 7, 7]});
    let mut negative = record.clone();
    negative["gflops"] = serde_json::json!(-5.0);
    std::fs::write(&log, format!("{outside}\n{negative}\n")).expect("writes");
    let best = run(&["best", "--log", &log_text, "--json"], &[]);
    assert!(best.status.success(), "{best:?}");
    // Both records were read (neither is a corrupt line); they just do not count.
    assert!(
        !String::from_utf8_lossy(&best.stderr).contains("skipped"),
        "{best:?}"
    );
    assert_eq!(String::from_utf8_lossy(&best.stdout).trim(), "[]");
    let db = path(dir.path(), "k.db");
    let exported = run(&["export-db", "--out", &db, &log_text], &[]);
    assert!(exported.status.success(), "{exported:?}");
    assert!(String::from_utf8_lossy(&exported.stderr).contains("wrote 0 entries"));
    let shown = run(
        &[
            "show",
            "matmul:m=8,n=8,k=8",
            "--log",
            &log_text,
            "--backend",
            "cranelift",
        ],
        &[],
    );
    assert!(shown.status.success(), "{shown:?}");
    assert!(
        String::from_utf8_lossy(&shown.stderr).contains("fallback"),
        "{shown:?}"
    );
}
