//! The tuning log on disk: what a reader makes of damaged, foreign and merged logs, and the
//! deploy database round trip. Every test writes real files through the public API.

#![forbid(unsafe_code)]

use looptune_ir::Workload;
use looptune_log::{
    best, best_per_task, export_db, measured, merge, merge_into, read_log, DeployDb, Dispatcher,
    Existing, LogError, LogWriter, Record, RecordContext, Source, TargetFingerprint, WarningKind,
};
use looptune_runtime::measure::{Costs, MeasureError, MeasureErrorKind, MeasureResult};
use looptune_runtime::{IsaFeatures, Target};
use looptune_space::{ConfigValues, KnobValue};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

fn workload() -> Workload {
    "matmul:m=64,n=64,k=64".parse().expect("parses")
}

fn target(cpu_model: &str, threads: usize) -> TargetFingerprint {
    let target = Target {
        arch: "x86_64".to_string(),
        cpu_model: cpu_model.to_string(),
        features: IsaFeatures {
            sse41: true,
            avx: true,
            avx2: true,
            fma: true,
            avx512f: false,
        },
        threads,
    };
    TargetFingerprint::from_parts(&target, "cranelift", "test")
}

fn config(index: u128) -> ConfigValues {
    vec![
        ("tile_i".to_string(), KnobValue::Split(vec![8, 8])),
        ("unroll".to_string(), KnobValue::Choice(index as i64)),
    ]
}

/// A measured record of config `index` on `target`, `median_s` seconds per call (or a timeout
/// when `median_s` is `None`).
fn measured_record(target: &TargetFingerprint, index: u128, median_s: Option<f64>) -> Record {
    let context = RecordContext::new(&workload(), target.clone(), "random");
    let outcome = match median_s {
        Some(median_s) => Ok(Costs {
            median_s,
            min_s: median_s * 0.9,
            number: 4,
            repeat: 3,
            all_s: vec![median_s, median_s * 0.9, median_s * 1.1],
            short: false,
        }),
        None => Err(MeasureError::new(
            MeasureErrorKind::Timeout,
            "no reply within 1 s",
        )),
    };
    let result = MeasureResult {
        outcome,
        compile_ms: Some(2.0),
        check_ms: Some(1.0),
        reference_ms: 0.5,
        checked_elements: 4096,
        total_ms: 30.0,
    };
    let start =
        UNIX_EPOCH + Duration::from_secs(1_764_000_000) + Duration::from_millis(index as u64);
    Record::from_measurement(
        &context,
        index,
        config(index),
        &result,
        start,
        start + Duration::from_millis(30),
    )
}

fn here() -> TargetFingerprint {
    target("Test CPU", 1)
}

fn write_log(path: &Path, batches: &[Vec<Record>]) {
    let mut writer = LogWriter::open(path).expect("opens");
    for batch in batches {
        writer.append_batch(batch).expect("appends");
    }
}

fn indices(records: &[Record]) -> Vec<u128> {
    records.iter().map(|record| record.config_index).collect()
}

#[test]
fn two_batches_appended_read_back_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    let first = vec![
        measured_record(&here(), 1, Some(2e-3)),
        measured_record(&here(), 2, None),
    ];
    let second = vec![measured_record(&here(), 3, Some(1e-3))];
    write_log(&path, std::slice::from_ref(&first));
    // A second run reopens the same log.
    write_log(&path, std::slice::from_ref(&second));
    let contents = read_log(&path).expect("reads");
    assert!(contents.warnings.is_empty(), "{:?}", contents.warnings);
    assert_eq!(contents.records, [first, second].concat());
    assert_eq!(
        best(&contents.records, workload(), &here()).map(|record| record.config_index),
        Some(3)
    );
}

#[test]
fn a_log_cut_mid_line_as_by_a_kill_loses_only_that_line_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    write_log(
        &path,
        &[vec![
            measured_record(&here(), 1, Some(2e-3)),
            measured_record(&here(), 2, Some(1e-3)),
        ]],
    );
    // What a kill during the write of the next batch leaves: the bytes of a partial line.
    let full = std::fs::read(&path).expect("reads");
    let next = serde_json::to_string(&measured_record(&here(), 3, Some(5e-4))).expect("json");
    let mut cut = full.clone();
    cut.extend_from_slice(&next.as_bytes()[..next.len() / 3]);
    std::fs::write(&path, &cut).expect("writes");

    let contents = read_log(&path).expect("reads");
    assert_eq!(indices(&contents.records), vec![1, 2]);
    assert_eq!(contents.warnings.len(), 1);
    assert_eq!(contents.warnings[0].line, 3);
    assert!(matches!(
        contents.warnings[0].kind,
        WarningKind::TornLastLine { .. }
    ));
    let done = measured(&contents.records, workload(), &here());
    assert!(done.contains_index(1) && done.contains_index(2) && !done.contains_index(3));

    // The resumed run appends after the torn bytes without gluing onto them; the torn line is
    // then an ordinary corrupt line, named, and nothing else is lost.
    write_log(&path, &[vec![measured_record(&here(), 3, Some(5e-4))]]);
    let contents = read_log(&path).expect("reads");
    assert_eq!(indices(&contents.records), vec![1, 2, 3]);
    assert_eq!(contents.warnings.len(), 1);
    assert_eq!(contents.warnings[0].line, 3);
    assert!(matches!(
        contents.warnings[0].kind,
        WarningKind::Corrupt { .. }
    ));
}

#[test]
fn a_garbage_line_in_the_middle_is_named_and_its_neighbours_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    let line =
        |index| serde_json::to_string(&measured_record(&here(), index, Some(1e-3))).expect("json");
    let text = format!("{}\n{}\n#!garbage\u{0}\n{}\n", line(1), line(2), line(3));
    std::fs::write(&path, text).expect("writes");
    let contents = read_log(&path).expect("reads");
    assert_eq!(indices(&contents.records), vec![1, 2, 3]);
    assert_eq!(contents.warnings.len(), 1);
    let warning = contents.warnings[0].to_string();
    assert!(
        warning.starts_with(&format!(
            "{}:3: skipped a corrupt line: not JSON",
            path.display()
        )),
        "{warning}"
    );
}

#[test]
fn a_record_of_a_newer_version_is_an_error_naming_both_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    write_log(&path, &[vec![measured_record(&here(), 1, Some(1e-3))]]);
    let newer = serde_json::to_string(&measured_record(&here(), 2, Some(1e-3)))
        .expect("json")
        .replacen("\"version\":1", "\"version\":7", 1);
    let mut text = std::fs::read_to_string(&path).expect("reads");
    text.push_str(&newer);
    text.push('\n');
    std::fs::write(&path, text).expect("writes");
    let error = read_log(&path).expect_err("refused");
    assert!(
        matches!(
            error,
            LogError::UnsupportedVersion {
                line: 2,
                found: 7,
                supported: 1,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(":2: record format version 7 is not supported")
            && message.contains("reads versions 1 to 1")
            && message.contains("newer looptune"),
        "{message}"
    );
}

#[test]
fn records_with_missing_fields_are_named_and_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    let mut object = serde_json::to_value(measured_record(&here(), 1, Some(1e-3))).expect("json");
    let map = object.as_object_mut().expect("object");
    map.remove("target");
    map.remove("config");
    let whole = serde_json::to_string(&measured_record(&here(), 2, Some(1e-3))).expect("json");
    std::fs::write(&path, format!("{object}\n{whole}\n")).expect("writes");
    let contents = read_log(&path).expect("reads");
    assert_eq!(indices(&contents.records), vec![2]);
    assert_eq!(contents.warnings.len(), 1);
    assert_eq!(
        contents.warnings[0].kind,
        WarningKind::MissingFields {
            fields: vec!["target".to_string(), "config".to_string()]
        }
    );
    assert!(contents.warnings[0]
        .to_string()
        .contains(":1: skipped a record without field(s) `target`, `config`"));
}

#[test]
fn records_of_another_target_are_never_used_silently() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tune.jsonl");
    let other_model = target("Other CPU", 1);
    let mut no_fma = here();
    no_fma.features.fma = false;
    write_log(
        &path,
        &[vec![
            measured_record(&other_model, 1, Some(1e-3)),
            measured_record(&no_fma, 2, Some(1e-4)),
        ]],
    );
    let contents = read_log(&path).expect("reads");
    // Queries match targets exactly.
    assert_eq!(best(&contents.records, workload(), &here()), None);
    assert!(measured(&contents.records, workload(), &here()).is_empty());

    let dispatcher = Dispatcher::from_logs(&[&path]).expect("loads");
    let dispatch = dispatcher.best(workload(), &here(), || config(99));
    assert_eq!(dispatch.config, config(1));
    assert_eq!(
        dispatch.source,
        Source::CompatibleTarget {
            recorded: other_model,
            differences: vec!["cpu_model `Other CPU` instead of `Test CPU`".to_string()],
        }
    );
    assert_eq!(dispatch.warnings.len(), 1);

    let only_no_fma = Dispatcher::from_records(&contents.records[1..]);
    let dispatch = only_no_fma.best(workload(), &here(), || config(99));
    assert_eq!(dispatch.source, Source::Fallback);
    assert_eq!(dispatch.config, config(99));
    assert!(dispatch
        .warnings
        .iter()
        .any(|warning| warning.contains("incompatible target")));
}

#[test]
fn two_logs_merge_without_duplicates_and_keep_their_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("a.jsonl");
    let second = dir.path().join("b.jsonl");
    let shared = measured_record(&here(), 2, Some(1e-3));
    write_log(
        &first,
        &[vec![
            measured_record(&here(), 1, Some(2e-3)),
            shared.clone(),
        ]],
    );
    write_log(
        &second,
        &[vec![
            shared,
            measured_record(&target("Other", 2), 3, Some(1e-3)),
        ]],
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&second)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"{\"version\":1,"))
        .expect("tears the last line");

    let merged = merge(&[&first, &second]).expect("merges");
    // Grouped by task: the other target's record sorts before this one's.
    assert_eq!(indices(&merged.records), vec![3, 1, 2]);
    assert_eq!((merged.duplicates, merged.tasks()), (1, 2));
    assert_eq!(merged.warnings.len(), 1);
    assert_eq!(
        (&merged.warnings[0].path, merged.warnings[0].line),
        (&second, 3)
    );

    let out = dir.path().join("merged.jsonl");
    let written = merge_into(&[&first, &second], &out, Existing::Refuse).expect("writes");
    assert_eq!(written, merged);
    let back = read_log(&out).expect("reads");
    assert_eq!(back.records, merged.records);
    assert!(back.warnings.is_empty());
}

/// Shard logs of two tasks on two targets, the second with a corrupt line in the middle.
fn shard_logs(dir: &Path) -> Vec<std::path::PathBuf> {
    let paths: Vec<_> = (0..3)
        .map(|shard| dir.join(format!("shard-{shard}.jsonl")))
        .collect();
    let mut other = measured_record(&target("Other", 4), 7, Some(5e-4));
    other.workload = "matmul:m=32,n=32,k=32,transpose_b=false".to_string();
    write_log(
        &paths[0],
        &[
            vec![measured_record(&here(), 1, Some(3e-3))],
            vec![measured_record(&here(), 4, Some(1e-3))],
        ],
    );
    write_log(
        &paths[1],
        &[vec![measured_record(&here(), 2, None), other.clone()]],
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&paths[1])
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"not a record\n"))
        .expect("damages");
    write_log(&paths[1], &[vec![measured_record(&here(), 5, Some(2e-3))]]);
    // The third shard repeats a record of the first (a log given twice, an earlier merge).
    write_log(
        &paths[2],
        &[vec![measured_record(&here(), 4, Some(1e-3)), other]],
    );
    paths
}

#[test]
fn shards_merged_in_any_order_twice_give_the_same_bytes_and_the_same_best() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = shard_logs(dir.path());
    let forward = dir.path().join("forward.jsonl");
    let backward = dir.path().join("backward.jsonl");
    let merged = merge_into(&logs, &forward, Existing::Refuse).expect("merges");
    let reversed: Vec<_> = logs.iter().rev().collect();
    merge_into(&reversed, &backward, Existing::Refuse).expect("merges");
    let bytes = |path: &Path| std::fs::read(path).expect("reads");
    assert_eq!(bytes(&forward), bytes(&backward));
    assert_eq!(merged.duplicates, 2);
    assert_eq!(merged.records.len(), 5);
    // The damaged line is named by file and line, and skipped.
    assert_eq!(merged.warnings.len(), 1);
    assert_eq!(
        (&merged.warnings[0].path, merged.warnings[0].line),
        (&logs[1], 3)
    );
    assert!(matches!(
        merged.warnings[0].kind,
        WarningKind::Corrupt { .. }
    ));
    // Merging the merge changes nothing.
    let again = dir.path().join("again.jsonl");
    let remerged = merge_into(&[&forward], &again, Existing::Refuse).expect("merges");
    assert_eq!(bytes(&again), bytes(&forward));
    assert_eq!(remerged.duplicates, 0);
    // The best of each task and target is the best of all the shards' records together, and the
    // two targets stay apart.
    let mut all = Vec::new();
    for log in &logs {
        all.extend(read_log(log).expect("reads").records);
    }
    let summary = |records: &[Record]| {
        let mut best: Vec<(String, String, u128)> = best_per_task(records)
            .into_iter()
            .map(|r| {
                (
                    r.workload.clone(),
                    r.target.cpu_model.clone(),
                    r.config_index,
                )
            })
            .collect();
        best.sort();
        best
    };
    assert_eq!(summary(&merged.records), summary(&all));
    assert_eq!(
        summary(&merged.records)
            .iter()
            .map(|(_, cpu, index)| (cpu.as_str(), *index))
            .collect::<Vec<_>>(),
        vec![("Other", 7), ("Test CPU", 4)]
    );
}

#[test]
fn a_merge_never_writes_over_an_input_and_replaces_other_files_only_when_told() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = shard_logs(dir.path());
    let before = std::fs::read(&logs[0]).expect("reads");
    let error = merge_into(&logs, &logs[0], Existing::Replace).expect_err("refused");
    assert!(
        matches!(&error, LogError::OutputIsInput { input, .. } if input == &logs[0]),
        "{error}"
    );
    // By another name: a hard link is the same file.
    let link = dir.path().join("link.jsonl");
    std::fs::hard_link(&logs[0], &link).expect("links");
    let error = merge_into(&logs, &link, Existing::Replace).expect_err("refused");
    assert!(error.to_string().contains("link.jsonl"), "{error}");
    assert_eq!(std::fs::read(&logs[0]).expect("reads"), before);

    let out = dir.path().join("merged.jsonl");
    std::fs::write(&out, "old").expect("writes");
    let error = merge_into(&logs, &out, Existing::Refuse).expect_err("refused");
    assert!(matches!(error, LogError::OutputExists { .. }), "{error}");
    assert_eq!(std::fs::read_to_string(&out).expect("reads"), "old");
    let merged = merge_into(&logs, &out, Existing::Replace).expect("replaces");
    assert_eq!(read_log(&out).expect("reads").records, merged.records);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // A missing input is an error naming it, and nothing is written.
    let missing = dir.path().join("missing.jsonl");
    let fresh = dir.path().join("fresh.jsonl");
    let error = merge_into(&[&missing], &fresh, Existing::Refuse).expect_err("refused");
    assert!(error.to_string().contains("missing.jsonl"), "{error}");
    assert!(!fresh.exists());
}

#[test]
fn the_deploy_database_round_trips_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let records = vec![
        measured_record(&here(), 1, Some(2e-3)),
        measured_record(&here(), 2, Some(1e-3)),
        measured_record(&here(), 3, None),
        measured_record(&target("Other", 4), 4, Some(5e-4)),
    ];
    let path = dir.path().join("best.db");
    let exported = export_db(&records, &path).expect("exports");
    assert_eq!(exported.entries().len(), 2);
    let loaded = DeployDb::load(&path).expect("loads");
    assert_eq!(loaded, exported);
    let dispatch = loaded.best(workload(), &here(), Vec::new);
    assert_eq!(
        (dispatch.source, dispatch.config_index),
        (Source::Exact, Some(2))
    );
    assert_eq!(
        Dispatcher::from_db(loaded)
            .lookup(workload(), &here())
            .map(|d| d.config),
        Some(config(2))
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a database").expect("writes");
    let error = DeployDb::load(&garbage).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("it starts with \"this is \", where the magic \"LTDEPLOY\" should be"),
        "{error}"
    );

    let bytes = std::fs::read(&path).expect("reads");
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).expect("writes");
    let error = DeployDb::load(&truncated).expect_err("refused");
    assert!(
        error.to_string().contains("truncated or damaged"),
        "{error}"
    );

    let missing = DeployDb::load(dir.path().join("absent.db")).expect_err("refused");
    assert!(
        missing.to_string().starts_with("cannot read `"),
        "{missing}"
    );
}

#[test]
fn a_deploy_database_is_neither_appended_to_nor_read_as_a_log_but_dispatches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("a.tunelog");
    write_log(&log, &[vec![measured_record(&here(), 1, Some(1e-3))]]);
    let db = dir.path().join("kernels.tunelog"); // The name says log; the content decides.
    export_db(&read_log(&log).expect("reads").records, &db).expect("exports");
    let before = std::fs::read(&db).expect("reads the db");
    let refused = LogWriter::open(&db).expect_err("a database is not appended to");
    assert!(matches!(refused, LogError::NotALog { .. }), "{refused}");
    assert!(refused.to_string().contains("deploy database"), "{refused}");
    assert_eq!(
        std::fs::read(&db).expect("reads the db"),
        before,
        "the db changed"
    );
    let read = read_log(&db).expect_err("a database is not read as a log");
    assert!(read.to_string().contains("kernels.tunelog"), "{read}");
    // The dispatcher reads either, by content.
    let dispatcher = Dispatcher::from_logs(&[&db]).expect("reads the database");
    assert_eq!(
        dispatcher
            .lookup(workload(), &here())
            .expect("found")
            .config_index,
        Some(1)
    );
}

#[test]
fn a_file_that_is_no_log_is_refused_naming_its_first_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = dir.path().join("photo.jpg");
    std::fs::write(&binary, b"\xff\xd8\xff\xe0JFIF\0\x01").expect("writes");
    let error = LogWriter::open(&binary).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("photo.jpg"), "{message}");
    assert!(message.contains("\\xff\\xd8"), "{message}");
    assert!(read_log(&binary).is_err());
    // A log whose first line is damaged is still a log: its records are kept.
    let damaged = dir.path().join("damaged.tunelog");
    write_log(&damaged, &[vec![measured_record(&here(), 1, Some(1e-3))]]);
    let mut bytes = b"garbage\n".to_vec();
    bytes.extend(std::fs::read(&damaged).expect("reads"));
    std::fs::write(&damaged, bytes).expect("writes");
    assert_eq!(read_log(&damaged).expect("reads").records.len(), 1);
    LogWriter::open(&damaged).expect("appends to a damaged log");
}

#[test]
fn a_second_writer_of_one_log_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("shared.tunelog");
    let first = LogWriter::open(&log).expect("opens");
    let second = LogWriter::open(&log).expect_err("locked");
    assert!(matches!(second, LogError::Locked { .. }), "{second}");
    assert!(second.to_string().contains("shared.tunelog"), "{second}");
    let truncating = LogWriter::create(&log).expect_err("locked too");
    assert!(matches!(truncating, LogError::Locked { .. }));
    drop(first);
    LogWriter::open(&log).expect("free again once the first writer is gone");
}

#[test]
fn environment_failures_are_retried_on_resume_and_negative_throughput_counts_nowhere() {
    let context = RecordContext::new(&workload(), here(), "random");
    let environment = MeasureResult {
        outcome: Err(MeasureError::new(
            MeasureErrorKind::Environment,
            "cannot start measurement worker",
        )),
        compile_ms: None,
        check_ms: None,
        reference_ms: 0.0,
        checked_elements: 0,
        total_ms: 0.0,
    };
    let start = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    let retried = Record::from_measurement(&context, 7, config(7), &environment, start, start);
    let crashed = measured_record(&here(), 8, None);
    let mut negative = measured_record(&here(), 9, Some(1e-6));
    negative.gflops = Some(-5.0);
    let fine = measured_record(&here(), 10, Some(1e-3));
    let records = vec![retried, crashed, negative, fine];
    let done = measured(&records, workload(), &here());
    assert!(
        !done.contains_index(7),
        "an Environment error is measured again"
    );
    assert!(done.contains_index(8), "the kernel's own failure is not");
    // One rule for every query: `best`, the deploy db and the dispatcher agree.
    assert_eq!(
        best(&records, workload(), &here()).map(|r| r.config_index),
        Some(10)
    );
    let db = DeployDb::from_records(&records);
    assert_eq!(indices_of(&db), vec![10]);
    assert_eq!(
        looptune_log::best_per_task(&records)
            .iter()
            .map(|r| r.config_index)
            .collect::<Vec<_>>(),
        vec![10]
    );
}

fn indices_of(db: &DeployDb) -> Vec<u128> {
    db.entries()
        .iter()
        .map(|entry| entry.config_index)
        .collect()
}
