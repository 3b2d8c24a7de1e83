//! `looptune tune-compare` on a tiny budget: the shape of its JSON rows, the measurement cache,
//! the log it writes and resumes from, and transfer from another shape.

#![forbid(unsafe_code)]

use std::process::{Command, Output};

const TINY: &[&str] = &[
    "--workload",
    "matmul:m=16,n=16,k=16",
    "--seeds",
    "2",
    "--trials",
    "12",
    "--batch-size",
    "4",
    "--repeat",
    "1",
    "--min-repeat-ms",
    "1",
    "--json",
];

fn looptune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(args)
        .output()
        .expect("looptune runs")
}

fn json_rows(output: &Output) -> Vec<serde_json::Value> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON array on stdout");
    value.as_array().expect("an array").clone()
}

#[test]
fn json_rows_have_one_row_per_workload_and_tuner_with_the_seven_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("compare.tunelog");
    let log_arg = log.to_str().expect("utf-8 path");
    let mut args = vec![
        "tune-compare",
        "--tuner",
        "random",
        "--tuner",
        "xgb",
        "--tuner",
        "ga",
    ];
    args.extend(TINY);
    args.extend(["--log", log_arg]);
    let output = looptune(&args);
    let rows = json_rows(&output);
    let tuners: Vec<&str> = rows
        .iter()
        .map(|row| row["tuner"].as_str().expect("tuner is a string"))
        .collect();
    assert_eq!(tuners, ["random", "xgb", "ga"]);
    for row in &rows {
        let object = row.as_object().expect("rows are objects");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "median_best_after_200_gflops",
                "median_seconds_to_90",
                "median_seconds_to_95",
                "median_trials_to_95",
                "trials_to_95_per_seed",
                "tuner",
                "workload"
            ]
        );
        // One entry per seed (2), each within the budget or null; with two seeds the median is
        // their mean, or null when either never got there.
        let per_seed: Vec<Option<f64>> = row["trials_to_95_per_seed"]
            .as_array()
            .expect("an array")
            .iter()
            .map(serde_json::Value::as_f64)
            .collect();
        assert_eq!(per_seed.len(), 2, "{row}");
        let expected = match (per_seed[0], per_seed[1]) {
            (Some(a), Some(b)) => serde_json::json!((a + b) / 2.0),
            _ => serde_json::Value::Null,
        };
        assert_eq!(row["median_trials_to_95"], expected, "{row}");
        // Seconds to 90% come no later than to 95%, and exist whenever trials to 95% do.
        let seconds = |key: &str| row[key].as_f64();
        if expected.is_number() {
            let (to_90, to_95) = (
                seconds("median_seconds_to_90"),
                seconds("median_seconds_to_95"),
            );
            assert!(
                to_90.zip(to_95).is_some_and(|(a, b)| 0.0 < a && a <= b),
                "{row}"
            );
        }
        assert_eq!(row["workload"], "matmul:m=16,n=16,k=16,transpose_b=false");
        let best = row["median_best_after_200_gflops"]
            .as_f64()
            .expect("a best after 12 trials");
        assert!(best > 0.0, "{row}");
        // Trials to 95% of the best any run found: within the budget, or null when the median
        // run never got there.
        if let Some(trials) = row["median_trials_to_95"].as_f64() {
            assert!((1.0..=12.0).contains(&trials), "{row}");
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("72 trials served by"), "{stderr}");

    // Every measurement went to the log, each config once; a rerun measures nothing new.
    let text = std::fs::read_to_string(&log).expect("log written");
    let indices: Vec<String> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            record["config_index"].as_str().expect("index").to_string()
        })
        .collect();
    let unique: std::collections::HashSet<&String> = indices.iter().collect();
    assert_eq!(unique.len(), indices.len(), "a config measured twice");
    assert!(indices.len() < 72, "the runs shared no measurement");
    let again = looptune(&args);
    // Seconds are the clock's: the rest of the table is the same measurements' and seeds'.
    let without_seconds = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        rows.iter()
            .map(|row| {
                let mut row = row.clone();
                if let Some(object) = row.as_object_mut() {
                    object.remove("median_seconds_to_90");
                    object.remove("median_seconds_to_95");
                }
                row
            })
            .collect()
    };
    let again_rows = json_rows(&again);
    assert_eq!(
        without_seconds(&again_rows),
        without_seconds(&rows),
        "the same measurements, the same seeds, the same table"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!(
            "served by 0 measurements ({} reused",
            indices.len()
        )),
        "{stderr}"
    );

    // The log of 16^3 is another shape of matmul for 16x16x32: an `xgb+transfer` row appears.
    let mut transfer = vec![
        "tune-compare",
        "--tuner",
        "xgb",
        "--transfer-log",
        log_arg,
        "--workload",
        "matmul:m=16,n=16,k=32",
    ];
    transfer.extend(&TINY[2..]);
    let output = looptune(&transfer);
    let tuners: Vec<String> = json_rows(&output)
        .iter()
        .map(|row| row["tuner"].as_str().expect("tuner").to_string())
        .collect();
    assert_eq!(tuners, ["xgb", "xgb+transfer"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "transfer from {} rows of 1 other workloads",
            indices.len()
        )),
        "{stderr}"
    );
}

#[test]
fn bad_options_are_usage_errors() {
    let output = looptune(&["tune-compare", "--workload", "matmul:m=0,n=4,k=4"]);
    assert_eq!(output.status.code(), Some(2));
    let output = looptune(&["tune-compare", "--seeds", "0"]);
    assert_eq!(output.status.code(), Some(2));
    // An hour of measuring is never started by accident.
    let output = looptune(&["tune-compare"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--reference"));
}
