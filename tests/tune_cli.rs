//! `looptune tune`, `best`, `merge` and `export-db` run as a user would, on small workloads with
//! cheap measurement options; including a `kill -9` of a tuning run and the rerun that follows.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const QUICK: &[&str] = &["--repeat", "1", "--min-repeat-ms", "1"];

fn looptune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(args)
        .output()
        .expect("looptune runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// The config indices of the complete lines of a log.
fn logged_indices(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|record| {
            record["config_index"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn tune_writes_the_log_reports_json_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.jsonl");
    let log_arg = log.to_str().unwrap();
    let mut args = vec![
        "tune",
        "matmul:m=16,n=12,k=8",
        "--trials",
        "6",
        "--batch-size",
        "3",
        "--log",
        log_arg,
        "--json",
    ];
    args.extend_from_slice(QUICK);
    let first = json(&looptune(&args));
    for key in [
        "workload",
        "tuner",
        "trials",
        "errors",
        "best_gflops",
        "peak_gflops",
        "stop_reason",
        "wall_s",
    ] {
        assert!(first.get(key).is_some(), "`{key}` missing from {first}");
    }
    assert_eq!(first["trials"], 6);
    assert_eq!(first["errors"], 0);
    assert_eq!(first["stop_reason"], "trial_budget");
    assert!(first["best_gflops"].as_f64().is_some_and(|g| g > 0.0));
    // The trials, then the default finalists (the 4 best configs, 3 rounds) measured again:
    // one pass, or up to two more when a config left out became the best (timing noise).
    let passes = |remeasured: &serde_json::Value| {
        let remeasured = remeasured.as_u64().expect("a count");
        assert!(
            remeasured.is_multiple_of(12) && (12..=36).contains(&remeasured),
            "{remeasured}"
        );
        remeasured as usize
    };
    let first_again = passes(&first["remeasured"]);
    let indices = logged_indices(&log);
    assert_eq!(indices.len(), 6 + first_again);
    for key in ["short_trials", "noise", "trials_to_90", "seconds_to_90"] {
        assert!(first.get(key).is_some(), "`{key}` missing from {first}");
    }
    // Finalists were measured more than once: the noise line has both figures.
    assert!(first["noise"]["remeasure_cv"].as_f64().is_some(), "{first}");
    let trials: HashSet<&String> = indices[..6].iter().collect();
    assert_eq!(trials.len(), 6, "each trial a new config");
    assert!(
        indices[6..].iter().all(|index| trials.contains(index)),
        "finalists are configs of the trials"
    );

    let second = json(&looptune(&args));
    assert_eq!(second["resumed"], 6);
    let second_again = passes(&second["remeasured"]);
    let indices = logged_indices(&log);
    assert_eq!(indices.len(), 12 + first_again + second_again);
    assert_eq!(
        indices.iter().collect::<HashSet<_>>().len(),
        12,
        "a resumed run measured a trial of the first run as a trial again"
    );

    // best, merge and export-db over that log.
    let best = json(&looptune(&["best", "--log", log_arg, "--json"]));
    assert_eq!(best.as_array().map(Vec::len), Some(1));
    let merged = dir.path().join("merged.jsonl");
    let status = looptune(&["merge", "--out", merged.to_str().unwrap(), log_arg, log_arg]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Every record of the log once (the finalists' passes vary with timing noise).
    assert_eq!(
        logged_indices(&merged).len(),
        12 + first_again + second_again,
        "duplicates dropped, nothing lost"
    );
    let refused = looptune(&["merge", "--out", merged.to_str().unwrap(), log_arg]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "merge must not overwrite an unrelated file"
    );
    let shown = looptune(&["show", "--log", log_arg, "matmul:m=16,n=12,k=8"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains("config #") && text.contains("kernel matmul"),
        "{text}"
    );
    let ran = json(&looptune(&[
        "run",
        "matmul:m=16,n=12,k=8",
        "--log",
        log_arg,
        "--json",
    ]));
    assert_eq!(ran["correct"], true);
    let missing = looptune(&["run", "matmul:m=8,n=8,k=8", "--log", log_arg, "--json"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("fallback"),
        "a missing workload falls back, and says so"
    );
    assert_eq!(json(&missing)["correct"], true);
    let db = dir.path().join("best.db");
    let exported = looptune(&["export-db", "--out", db.to_str().unwrap(), log_arg]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
}

#[test]
fn a_killed_tuning_run_loses_at_most_its_batch_and_the_rerun_remeasures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("killed.jsonl");
    let log_arg = log.to_str().unwrap();
    let mut args = vec![
        "tune",
        "matmul:m=24,n=20,k=12",
        "--trials",
        "400",
        "--batch-size",
        "2",
        "--log",
        log_arg,
    ];
    args.extend_from_slice(QUICK);
    let mut child = Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tune starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while logged_indices(&log).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    child.wait().unwrap();
    let before = logged_indices(&log);
    assert!(
        before.len() >= 4,
        "the run logged {} records before the kill",
        before.len()
    );

    let mut rerun = vec![
        "tune",
        "matmul:m=24,n=20,k=12",
        "--trials",
        "4",
        "--batch-size",
        "2",
        "--log",
        log_arg,
        "--json",
    ];
    rerun.extend_from_slice(QUICK);
    rerun.extend_from_slice(&["--finalists", "0"]);
    let report = json(&looptune(&rerun));
    assert_eq!(report["resumed"].as_u64(), Some(before.len() as u64));
    let after = logged_indices(&log);
    assert_eq!(after.len(), before.len() + 4);
    assert_eq!(
        after.iter().collect::<HashSet<_>>().len(),
        after.len(),
        "a logged config was measured again"
    );
}

#[test]
fn bad_tune_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.jsonl");
    let log_arg = log.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["tune", "matmul:m=0,n=4,k=4", "--log", log_arg],
            "`m=0` must be at least 1",
        ),
        (
            vec![
                "tune",
                "matmul:m=4,n=4,k=4",
                "--log",
                log_arg,
                "--time-budget=-1",
            ],
            "--time-budget",
        ),
        (
            vec![
                "tune",
                "matmul:m=4,n=4,k=4",
                "--log",
                log_arg,
                "--min-repeat-ms",
                "0",
            ],
            "--min-repeat-ms",
        ),
    ] {
        let output = looptune(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_cold_xgb_run_starts_from_the_shipped_records_and_a_warm_one_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("t.jsonl");
    let log_arg = log.to_str().unwrap();
    let xgb = |log: &str| {
        let mut args = vec![
            "tune",
            "matmul:m=48,n=32,k=40",
            "--tuner",
            "xgb",
            "--backend",
            "c",
            "--trials",
            "2",
            "--finalists",
            "0",
            "--log",
            log,
            "--json",
        ];
        args.extend_from_slice(QUICK);
        json(&looptune(&args))
    };
    // An empty log: the records shipped for this backend and vector shape, when looptune ships
    // a set for them (the C backend on an AVX2 host without AVX-512).
    let cold = xgb(log_arg);
    let model = &cold["model"];
    let features = looptune::runtime::Target::host().features;
    let shipped_here = features.avx2 && !features.avx512f;
    assert_eq!(model["transfer_shipped"], shipped_here, "{cold}");
    if shipped_here {
        assert!(
            model["transfer_rows"]
                .as_u64()
                .is_some_and(|rows| rows >= 100),
            "{cold}"
        );
        assert!(
            model["transfer_workloads"].as_u64().is_some_and(|n| n >= 2),
            "{cold}"
        );
    }
    // A log that knows the operator (the run above measured two configs of it, and a random
    // run adds another shape): its own records count at once, and the shipped ones fill in the
    // shapes the log does not cover.
    let mut args = vec![
        "tune",
        "matmul:m=32,n=32,k=32",
        "--trials",
        "3",
        "--finalists",
        "0",
        "--backend",
        "c",
        "--log",
        log_arg,
        "--json",
    ];
    args.extend_from_slice(QUICK);
    json(&looptune(&args));
    let warm = xgb(log_arg);
    let count = |report: &serde_json::Value, field: &str| {
        report["model"][field].as_u64().unwrap_or_default()
    };
    assert_eq!(warm["model"]["transfer_shipped"], shipped_here, "{warm}");
    let (shipped_rows, shipped_workloads) = if shipped_here {
        (
            count(&cold, "transfer_rows"),
            count(&cold, "transfer_workloads"),
        )
    } else {
        (0, 0)
    };
    assert_eq!(
        count(&warm, "transfer_rows"),
        3 + shipped_rows,
        "the log's 3 records and the shipped ones: {warm}"
    );
    assert_eq!(
        count(&warm, "transfer_workloads"),
        1 + shipped_workloads,
        "{warm}"
    );
}
