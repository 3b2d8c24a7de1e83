//! `looptune report`, run as a user runs it: a small synthetic tuning log in, an SVG or an HTML
//! page out, and clear errors for a missing log, an unknown extension and an empty log.

#![forbid(unsafe_code)]

use looptune::log::{LogWriter, Record, RecordContext, TargetFingerprint};
use looptune::runtime::measure::{Costs, MeasureError, MeasureErrorKind, MeasureResult};
use looptune::{CraneliftBackend, Target, Workload};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

const MATMUL: &str = "matmul:m=64,n=64,k=64";
const CONV: &str = "conv2d:n=1,ic=8,h=14,w=14,oc=16,kh=3,kw=3,stride=1,pad=1";

fn looptune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_looptune"))
        .args(args)
        .output()
        .expect("the looptune binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A record of `workload` tuned by `tuner` on this host: `gflops`, or a wrong answer.
fn record(workload: &Workload, tuner: &str, index: u128, gflops: Option<f64>) -> Record {
    let target = Target::host().with_threads(1);
    let context = RecordContext::new(
        workload,
        TargetFingerprint::new(&target, &CraneliftBackend::new()),
        tuner,
    );
    let outcome = match gflops {
        Some(gflops) => {
            let seconds = workload.flops() / (gflops * 1e9);
            Ok(Costs {
                median_s: seconds,
                min_s: seconds,
                number: 4,
                repeat: 3,
                all_s: vec![seconds; 3],
                short: false,
            })
        }
        None => Err(MeasureError::new(
            MeasureErrorKind::WrongAnswer,
            "element 3 differs",
        )),
    };
    let result = MeasureResult {
        outcome,
        compile_ms: Some(1.0),
        check_ms: Some(1.0),
        reference_ms: 0.0,
        checked_elements: 16,
        total_ms: 10.0,
    };
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + index as u64);
    Record::from_measurement(
        &context,
        index,
        Vec::new(),
        &result,
        start,
        start + Duration::from_millis(100),
    )
}

/// Two workloads, two tuners, some failed trials.
fn write_synthetic_log(path: &Path) -> Vec<String> {
    let matmul: Workload = MATMUL.parse().expect("a valid workload");
    let conv: Workload = CONV.parse().expect("a valid workload");
    let mut records = Vec::new();
    for (index, gflops) in [None, Some(3.0), Some(2.5), Some(6.0), None, Some(7.5)]
        .into_iter()
        .enumerate()
    {
        records.push(record(&matmul, "random", index as u128, gflops));
        records.push(record(
            &matmul,
            "xgb",
            100 + index as u128,
            gflops.map(|g| g * 1.2),
        ));
        records.push(record(
            &conv,
            "random",
            index as u128,
            gflops.map(|g| g / 2.0),
        ));
    }
    LogWriter::create(path)
        .expect("creates the log")
        .append_batch(&records)
        .expect("writes the log");
    vec![matmul.to_string(), conv.to_string()]
}

/// Whether `text` is well-formed XML as far as elements go: every tag closed, in order.
fn elements_balance(text: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .ok_or_else(|| "an unterminated tag".to_string())?;
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match open.pop() {
                Some(opened) if opened == name.trim() => {}
                other => return Err(format!("`</{name}>` closes {other:?}")),
            }
        } else {
            let name = tag.split_whitespace().next().unwrap_or_default();
            open.push(name);
        }
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed elements {open:?}"))
    }
}

#[test]
fn a_report_of_a_synthetic_log_is_an_svg_naming_every_workload_and_tuner() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("synthetic.tunelog");
    let workloads = write_synthetic_log(&log);
    let out = dir.path().join("report.svg");
    let output = looptune(&[
        "report",
        "--log",
        log.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let svg = std::fs::read_to_string(&out).expect("the report was written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    elements_balance(&svg).expect("a well-formed SVG");
    for name in workloads
        .iter()
        .map(String::as_str)
        .chain(["[random]", "[xgb]"])
    {
        assert!(svg.contains(name), "the report lacks `{name}`");
    }
    // The best of the matmul is xgb's 9.00 GFLOP/s (7.5 x 1.2), drawn against a peak.
    assert!(svg.contains("best 9.00 GFLOP/s [xgb]"), "no best bar");
    assert!(svg.contains("peak "), "no peak bar");
}

#[test]
fn an_html_report_embeds_the_svg_and_a_table() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("synthetic.tunelog");
    let workloads = write_synthetic_log(&log);
    let out = dir.path().join("report.html");
    let output = looptune(&[
        "report",
        "--log",
        log.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let html = std::fs::read_to_string(&out).expect("the report was written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    elements_balance(html.trim_start_matches("<!DOCTYPE html>")).expect("well-formed HTML");
    for name in &workloads {
        assert!(
            html.contains(&format!("<td>{name}</td>")),
            "no row of `{name}`"
        );
    }
    // Three series with six trials each, two failed.
    assert_eq!(html.matches("<td>6</td><td>2</td>").count(), 3);
}

#[test]
fn bad_input_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.tunelog");
    let empty = dir.path().join("empty.tunelog");
    std::fs::write(&empty, "").expect("writes an empty log");
    let svg = dir.path().join("r.svg");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let cases = [
        (path(&missing), path(&svg), "does not exist"),
        (
            path(&empty),
            path(&dir.path().join("r.png")),
            ".svg or .html",
        ),
        (path(&empty), path(&svg), "holds no records"),
    ];
    for (log, out, expected) in cases {
        let output = looptune(&["report", "--log", &log, "--out", &out]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{log} -> {out}: {message}");
        assert!(message.contains(expected), "`{message}` lacks `{expected}`");
        assert!(!message.contains("panicked"), "{message}");
        assert!(!Path::new(&out).exists(), "{out} was written");
    }
}
