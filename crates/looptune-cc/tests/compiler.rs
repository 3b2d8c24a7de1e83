//! Finding and accepting a compiler, as the backend's users meet it: a missing compiler is an
//! error naming it (given directly, by `CC`, or in a worker's spec), and a compiler that builds
//! wrong code is refused by the probe, naming the compiler. The environment-dependent path
//! (`CBackend::detect` reading `CC` and `LOOPTUNE_CACHE_DIR`) runs in a child process, the
//! worker binary's `--detect` mode, so that no test changes this process's environment.

#![forbid(unsafe_code)]

mod support;

use looptune_cc::backend::NAME;
use looptune_cc::cache::ObjectCache;
use looptune_cc::{CBackend, Compiler};
use looptune_runtime::{Backend, BackendSpec, CompileError};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The message of a `CCompiler` error, after checking that the error is one and names
/// `compiler`.
fn c_compiler_message(error: CompileError, compiler: &str) -> String {
    match error {
        CompileError::CCompiler {
            compiler: named,
            message,
            ..
        } => {
            assert!(
                named.contains(compiler) || message.contains(compiler),
                "`{compiler}` not named: compiler `{named}`, message `{message}`"
            );
            message
        }
        other => panic!("expected a C compiler error, got {other:?}"),
    }
}

#[test]
fn a_missing_compiler_is_an_error_naming_its_path() {
    let error = Compiler::at(PathBuf::from("/nonexistent/cc"), Vec::new())
        .expect_err("there is no /nonexistent/cc");
    let message = c_compiler_message(error.clone(), "/nonexistent/cc");
    assert!(message.contains("did not run"), "{message}");
    assert!(error.to_string().contains("/nonexistent/cc"), "{error}");
}

#[test]
fn cc_naming_a_missing_program_is_an_error_naming_it() {
    for value in [
        "/nonexistent/cc",
        "  /nonexistent/cc -O1 ",
        "no-such-cc-on-path-xyz",
    ] {
        let error = Compiler::discover_from(Some(value.to_string())).expect_err("no such compiler");
        let program = value.split_whitespace().next().unwrap();
        let message = c_compiler_message(error, program);
        assert_eq!(
            message,
            format!("CC=`{value}` names `{program}`, which is not found")
        );
    }
}

#[test]
fn cc_unset_or_blank_falls_back_to_the_candidates_and_cc_may_carry_arguments() {
    let unset = Compiler::discover_from(None).expect("cc, gcc or clang on PATH");
    assert_eq!(
        Compiler::discover_from(Some("  ".to_string())).expect("blank is unset"),
        unset
    );
    assert!(unset.leading_args.is_empty());
    assert!(!unset.version.is_empty());
    // `CC="ccache gcc"`-style: a program followed by its leading arguments.
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("wrapper.sh");
    std::fs::write(&script, "exec cc \"$@\"\n").expect("write");
    let wrapped = Compiler::discover_from(Some(format!("/bin/sh {}", script.display())))
        .expect("sh runs the wrapper");
    assert_eq!(wrapped.program, PathBuf::from("/bin/sh"));
    assert_eq!(wrapped.leading_args, vec![script.display().to_string()]);
    assert!(!wrapped.version.is_empty());
}

#[test]
fn a_spec_round_trips_and_a_spec_naming_a_missing_compiler_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = support::shell_compiler(dir.path(), "wrapper.sh", "exec cc \"$@\"\n");
    let backend = CBackend::with(
        wrapper.clone(),
        ObjectCache::new(dir.path().join("objects")),
    );
    let rebuilt = CBackend::from_spec(&backend.spec()).expect("the spec of a backend rebuilds it");
    assert_eq!(rebuilt.compiler(), &wrapper);
    assert_eq!(rebuilt.cache().dir(), dir.path().join("objects"));
    assert_eq!(rebuilt.id(), backend.id());

    let missing = BackendSpec {
        name: NAME.to_string(),
        settings: vec!["/nonexistent/cc".to_string(), "/tmp/unused".to_string()],
    };
    let error = CBackend::from_spec(&missing).expect_err("no such compiler");
    c_compiler_message(error, "/nonexistent/cc");

    let other = BackendSpec {
        name: "cranelift".to_string(),
        settings: Vec::new(),
    };
    match CBackend::from_spec(&other) {
        Err(CompileError::UnknownBackend { name, known }) => {
            assert!(name.contains("cranelift"), "{name}");
            assert_eq!(known, NAME);
        }
        other => panic!("expected an unknown backend, got {other:?}"),
    }
}

#[test]
fn the_probe_accepts_the_discovered_compiler() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = CBackend::probe_with(support::compiler(), ObjectCache::new(dir.path()))
        .expect("the discovered compiler passes the probe");
    assert_eq!(backend.objects_compiled(), 1);
}

#[test]
fn the_probe_refuses_a_compiler_that_builds_wrong_code_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = support::wrong_code_compiler(dir.path());
    let described = broken.describe();
    let error = CBackend::probe_with(broken, ObjectCache::new(dir.path().join("objects")))
        .expect_err("zeros are not a matmul");
    let message = c_compiler_message(error.clone(), "zeros-cc.sh");
    assert!(message.contains("wrong result"), "{message}");
    assert_eq!(
        error.to_string().matches(&described).count(),
        1,
        "the error names the compiler as invoked: {error}"
    );
}

/// Runs `looptune-cc-worker --detect` with `CC` set to `cc` (or removed) and the object cache
/// in `cache`.
fn detect(cc: Option<&str>, cache: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_looptune-cc-worker"));
    command.arg("--detect").env("LOOPTUNE_CACHE_DIR", cache);
    match cc {
        Some(value) => command.env("CC", value),
        None => command.env_remove("CC"),
    };
    command.output().expect("the worker binary runs")
}

#[test]
fn detect_reads_cc_and_refuses_a_missing_or_wrong_compiler_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("objects");

    let missing = detect(Some("/nonexistent/cc"), &cache);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success(), "{stderr}");
    assert!(
        stderr.contains("CC=`/nonexistent/cc` names `/nonexistent/cc`, which is not found"),
        "{stderr}"
    );

    let broken = support::wrong_code_compiler(dir.path());
    let wrong = detect(Some(&broken.describe()), &cache);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(stderr.contains("zeros-cc.sh"), "{stderr}");
    assert!(stderr.contains("wrong result"), "{stderr}");

    // The environment's own compiler (CC as the tests inherit it, else the candidates) is
    // accepted, and the probe's object lands in LOOPTUNE_CACHE_DIR, not the user's cache.
    let inherited = std::env::var("CC").ok();
    let good = detect(inherited.as_deref(), &cache);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(stdout.starts_with("looptune-cc "), "{stdout}");
    let objects = std::fs::read_dir(&cache)
        .expect("the probe wrote the cache")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "so"))
        })
        .count();
    // The broken compiler's probe object and the good one's: their keys name their compilers.
    assert_eq!(objects, 2);
}
