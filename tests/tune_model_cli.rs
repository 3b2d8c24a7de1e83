//! `looptune tune-model` run as a user would, on the first layers of MobileNet with a tiny
//! budget and cheap measurement options: the report's shape, and a rerun that resumes.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

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

fn tune_model(log: &str, json: bool) -> Output {
    let mut args = vec![
        "tune-model",
        "mobilenet",
        "--max-layers",
        "3",
        "--trials",
        "6",
        "--batch-size",
        "2",
        "--log",
        log,
    ];
    args.extend_from_slice(QUICK);
    if json {
        args.push("--json");
    }
    looptune(&args)
}

#[test]
fn tune_model_reports_every_layer_and_the_model_estimate_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mobilenet.jsonl");
    let log_arg = log.to_str().unwrap();
    let first = json(&tune_model(log_arg, true));
    assert_eq!(first["network"], "mobilenet");
    assert_eq!(first["trials"], 6);
    assert_eq!(first["stop_reason"], "trial_budget");
    let layers = first["layers"].as_array().expect("layers");
    let names: Vec<&str> = layers.iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["D1", "D2", "D3"]);
    for layer in layers {
        for key in [
            "workload",
            "multiplicity",
            "fallback_ms",
            "tuned_ms",
            "trials",
            "logged_trials",
        ] {
            assert!(layer.get(key).is_some(), "`{key}` missing from {layer}");
        }
        // Two trials per layer: the warm-up round, fallback config first.
        assert_eq!(layer["trials"], 2, "{layer}");
        let (fallback, tuned) = (
            layer["fallback_ms"].as_f64().expect("fallback measured"),
            layer["tuned_ms"].as_f64().expect("tuned"),
        );
        assert!(tuned <= fallback, "{layer}");
    }
    let model = &first["model"];
    let before: f64 = layers
        .iter()
        .map(|l| l["multiplicity"].as_f64().unwrap() * l["fallback_ms"].as_f64().unwrap())
        .sum();
    let reported = model["before_ms"].as_f64().expect("before_ms");
    assert!((reported - before).abs() <= 1e-9 * before, "{model}");
    assert!(model["after_ms"].as_f64().expect("after_ms") <= reported);
    // The network's kernels were also run back to back, with both sets of configs.
    let measured = &first["measured"];
    for key in ["before_ms", "after_ms", "speedup"] {
        assert!(
            measured[key].as_f64().is_some_and(|value| value > 0.0),
            "{key}: {measured}"
        );
    }
    let peak = first["peak_gflops"].as_f64().expect("peak_gflops");
    for layer in layers {
        let ratio = layer["ratio_to_peak"].as_f64().expect("ratio_to_peak");
        let best = layer["best_gflops"].as_f64().expect("best_gflops");
        assert!((ratio - best / peak).abs() <= 1e-9 * ratio, "{layer}");
        // Depthwise layers are memory-bound: their traffic per second beside a copy's.
        let gbytes = layer["gbytes_per_s"].as_f64().expect("gbytes_per_s");
        let copy = layer["copy_gbytes_per_s"]
            .as_f64()
            .expect("copy_gbytes_per_s");
        let to_copy = layer["ratio_to_copy"].as_f64().expect("ratio_to_copy");
        assert!(gbytes > 0.0 && copy > 0.0, "{layer}");
        assert!((to_copy - gbytes / copy).abs() <= 1e-9 * to_copy, "{layer}");
    }
    assert_eq!(logged(&log).len(), 6);

    // The rerun continues: six more configs, none measured before, in the text report.
    let second = tune_model(log_arg, false);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let text = String::from_utf8_lossy(&second.stdout);
    for expected in [
        "D1",
        "D3",
        "fallback ms",
        "of peak",
        "GB/s",
        "of copy",
        "model",
        "measured latency",
        "before",
        "after",
    ] {
        assert!(text.contains(expected), "`{expected}` missing from\n{text}");
    }
    let all = logged(&log);
    assert_eq!(all.len(), 12);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        12,
        "a resumed run measured a config again"
    );
    let third = json(&tune_model(log_arg, true));
    let logged_trials: u64 = third["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["logged_trials"].as_u64().unwrap())
        .sum();
    assert_eq!(logged_trials, 18);
}

#[test]
fn unknown_networks_and_bad_budgets_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("x.jsonl");
    let log_arg = log.to_str().unwrap();
    for (args, expected) in [
        (vec!["tune-model", "resnet50", "--log", log_arg], "resnet50"),
        (
            vec![
                "tune-model",
                "resnet18",
                "--log",
                log_arg,
                "--time-budget=-1",
            ],
            "--time-budget",
        ),
        (
            vec!["tune-model", "bert-base", "--log", log_arg, "--trials", "0"],
            "--trials",
        ),
    ] {
        let output = looptune(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!log.exists(), "nothing was tuned, no log was written");
}

#[test]
fn every_layer_of_every_network_starts_warm_from_the_shipped_records() {
    // The Cranelift JIT's set is shipped for every x86-64 host, so this holds on any: an empty
    // log, and the xgb tuner of each layer (NCHW8c depthwise convolutions, 8-bit ones, BERT's
    // attention scores) is pre-trained on records of its operator, its own shape's among them.
    for (network, layers, extra) in [
        ("mobilenet", "2", None),
        ("mobilenet", "2", Some("--int8")),
        ("resnet18", "2", Some("--int8")),
        ("bert-base", "4", None),
        ("cliquenet", "1", None),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.jsonl");
        let mut args = vec![
            "tune-model",
            network,
            "--max-layers",
            layers,
            "--trials",
            layers,
            "--batch-size",
            "1",
            "--tuner",
            "xgb",
            "--backend",
            "cranelift",
            "--log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(QUICK);
        args.extend(extra);
        let output = looptune(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{network}: {stderr}");
        let warm = stderr
            .lines()
            .filter(|line| {
                line.contains("xgb pre-trained on") && line.contains("shipped with looptune")
            })
            .count();
        assert_eq!(
            warm.to_string(),
            layers,
            "{network}: every layer warm:\n{stderr}"
        );
    }
}
