//! Sharded whole-model tuning run as a user (or a Slurm array) runs it: `tune-model --shard`
//! on the first layers of MobileNet with a tiny budget and cheap measurement options, the
//! shards' logs merged with `looptune merge`, a second round that transfers from the merge, a
//! shard killed mid-run and rerun, and the refusals of bad shard specs and merge outputs.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const QUICK: &[&str] = &["--repeat", "1", "--min-repeat-ms", "1"];
/// Layers of MobileNet the tests tune (D1-D4): small enough to be quick, enough for 2 shards.
const LAYERS: &str = "4";

/// The binary, with no batch system's shard variables inherited from the environment.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_looptune"));
    command.args(args);
    for variable in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
        "LOOPTUNE_SHARD_COUNT",
    ] {
        command.env_remove(variable);
    }
    command
}

fn looptune(args: &[&str]) -> Output {
    command(args).output().expect("looptune runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// (workload, config index) of every complete line of a log.
fn logged(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|record| {
            (
                record["workload"].as_str().unwrap_or_default().to_string(),
                record["config_index"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// `tune-model mobilenet` on the first layers, with `extra` arguments.
fn tune_shard(log: &Path, trials: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "tune-model",
        "mobilenet",
        "--max-layers",
        LAYERS,
        "--trials",
        trials,
        "--batch-size",
        "2",
        "--log",
        log.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(QUICK);
    args.extend_from_slice(extra);
    let report = json(&looptune(&args));
    report["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| layer["name"].as_str().expect("name").to_string())
        .collect()
}

fn shard_logs(dir: &Path) -> Vec<PathBuf> {
    (0..2)
        .map(|shard| dir.join(format!("shard-{shard}.jsonl")))
        .collect()
}

#[test]
fn two_shards_tune_every_layer_once_and_merge_into_one_log_with_every_best() {
    let dir = tempfile::tempdir().unwrap();
    let logs = shard_logs(dir.path());
    let mut seen: Vec<String> = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        let shard = format!("{index}/2");
        let names = tune_shard(log, "4", &["--shard", &shard]);
        assert!(!names.is_empty(), "shard {shard} has no layer");
        seen.extend(names);
    }
    // The same layers as one unsharded run, none twice.
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a layer in two shards: {seen:?}");
    let expected: BTreeSet<String> = ["D1", "D2", "D3", "D4"].map(String::from).into();
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    // `auto` reads the Slurm array's variables and gives the same split.
    let auto_log = dir.path().join("auto.jsonl");
    let mut args = vec![
        "tune-model",
        "mobilenet",
        "--max-layers",
        LAYERS,
        "--trials",
        "1",
        "--log",
        auto_log.to_str().unwrap(),
        "--json",
        "--shard",
        "auto",
    ];
    args.extend_from_slice(QUICK);
    let output = command(&args)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    let auto = json(&output);
    assert_eq!(auto["shard"], "1/2");
    let second_shard: Vec<String> = logged(&logs[1]).into_iter().map(|(w, _)| w).collect();
    let auto_workloads: Vec<String> = logged(&auto_log).into_iter().map(|(w, _)| w).collect();
    assert!(auto_workloads.iter().all(|w| second_shard.contains(w)));

    // The merge: every layer's records, each once, whatever the order of the inputs.
    let merged = dir.path().join("merged.jsonl");
    let output = looptune(&[
        "merge",
        "--out",
        merged.to_str().unwrap(),
        logs[1].to_str().unwrap(),
        logs[0].to_str().unwrap(),
        logs[0].to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let records = logged(&merged);
    assert_eq!(
        records.len(),
        logged(&logs[0]).len() + logged(&logs[1]).len()
    );
    let best = json(&looptune(&[
        "best",
        "--log",
        merged.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(best.as_array().map(Vec::len), Some(4), "{best}");
    // Merging the merge again changes nothing; the other order gives the same bytes.
    let again = dir.path().join("again.jsonl");
    let output = looptune(&[
        "merge",
        "--out",
        again.to_str().unwrap(),
        merged.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&merged).unwrap()
    );
    let output = looptune(&[
        "merge",
        "--replace",
        "--out",
        again.to_str().unwrap(),
        logs[0].to_str().unwrap(),
        logs[1].to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&merged).unwrap()
    );

    // Round two: shard 0 in a fresh log, transferring from the merge. Nothing the merge holds
    // for its layers is measured again, and the xgb tuner pre-trains on the other shapes.
    let round_two = dir.path().join("round-2-shard-0.jsonl");
    let mut args = vec![
        "tune-model",
        "mobilenet",
        "--max-layers",
        LAYERS,
        "--trials",
        "4",
        "--batch-size",
        "2",
        "--tuner",
        "xgb",
        "--shard",
        "0/2",
        "--transfer-from",
        merged.to_str().unwrap(),
        "--log",
        round_two.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(QUICK);
    let output = looptune(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = json(&output);
    assert_eq!(report["trials"], 4, "{report}");
    assert!(stderr.contains("count as measured"), "{stderr}");
    let earlier: HashSet<(String, String)> = records.into_iter().collect();
    let new = logged(&round_two);
    assert_eq!(new.len(), 4);
    assert!(
        new.iter().all(|record| !earlier.contains(record)),
        "round two measured a config of the merge again"
    );
}

#[test]
fn a_shard_with_no_layer_succeeds_with_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("empty.jsonl");
    let names = tune_shard(&log, "2", &["--shard", "5/6"]);
    assert!(names.is_empty(), "{names:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
}

#[test]
fn a_killed_shard_loses_at_most_its_batch_and_its_rerun_remeasures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("killed.jsonl");
    let log_arg = log.to_str().unwrap();
    let mut args = vec![
        "tune-model",
        "mobilenet",
        "--max-layers",
        LAYERS,
        "--shard",
        "1/2",
        "--trials",
        "400",
        "--batch-size",
        "2",
        "--log",
        log_arg,
    ];
    args.extend_from_slice(QUICK);
    let mut child = command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tune-model starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while logged(&log).len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    child.wait().unwrap();
    let before = std::fs::read_to_string(&log).unwrap();
    let records_before = logged(&log);
    assert!(
        records_before.len() >= 4,
        "{} records",
        records_before.len()
    );

    tune_shard(&log, "4", &["--shard", "1/2"]);
    let after = std::fs::read_to_string(&log).unwrap();
    // Every complete line of the killed run is still there, in place.
    let complete = before.rfind('\n').map_or("", |end| &before[..=end]);
    assert!(after.starts_with(complete), "the rerun rewrote the log");
    let records = logged(&log);
    assert_eq!(records.len(), records_before.len() + 4);
    assert_eq!(
        records.iter().collect::<HashSet<_>>().len(),
        records.len(),
        "the rerun measured a config of the killed run again"
    );
}

#[test]
fn bad_shard_specs_and_merge_outputs_are_usage_errors_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.jsonl");
    let log_arg = log.to_str().unwrap();
    let tune = |extra: &[&str]| {
        let mut args = vec!["tune-model", "resnet18", "--log", log_arg];
        args.extend_from_slice(extra);
        looptune(&args)
    };
    for (extra, expected) in [
        (
            vec!["--shard", "3/2"],
            "shard `3/2`: index 3 is not below the count 2",
        ),
        (vec!["--shard", "0/0"], "shard `0/0`: the count is 0"),
        (
            vec!["--shard", "x/y"],
            "shard `x/y`: `x` is not a whole number",
        ),
        (vec!["--shard", "auto"], "neither SLURM_ARRAY_TASK_ID"),
        (
            vec!["--shard", "0/2", "--shard-count", "2"],
            "--shard-count 2 goes with --shard auto",
        ),
    ] {
        let output = tune(&extra);
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let output = command(&[
        "tune-model",
        "resnet18",
        "--log",
        log_arg,
        "--shard",
        "auto",
    ])
    .env("SLURM_ARRAY_TASK_ID", "1")
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no shard count"));
    assert!(!log.exists(), "nothing was tuned, no log was written");

    // A merge never writes over one of its inputs, and names damaged lines (in a log: a file
    // none of whose lines is a record is not a log, and is refused as such).
    let input = dir.path().join("in.jsonl");
    let record = include_str!("../crates/looptune-tune/tests/data/measured.tunelog")
        .lines()
        .next()
        .expect("a recorded line");
    std::fs::write(&input, format!("not a record\n{record}\n")).unwrap();
    let before = std::fs::read(&input).unwrap();
    let in_arg = input.to_str().unwrap();
    let output = looptune(&["merge", "--replace", "--out", in_arg, in_arg]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is the input"));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    let out = dir.path().join("out.jsonl");
    let output = looptune(&["merge", "--out", out.to_str().unwrap(), in_arg]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{in_arg}:1: skipped a corrupt line")),
        "{stderr}"
    );
}
