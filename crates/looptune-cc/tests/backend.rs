//! The C backend as users get it: nests compiled through [`CBackend`] (print, object cache,
//! system compiler, `dlopen`) and run through `Kernel::call` on the real runtime (its thread
//! pool runs the parallel loops), against the reference interpreter; and the object cache seen
//! from the backend: hits, misses, damaged entries, batches prepared in parallel.
//!
//! Every test keeps its objects in its own temporary directory, never the user's cache.
//!
//! The random cases take one compiler run each (0.1-0.3 s at -O2), so they are compiled in
//! batches with [`Backend::prepare`] (on every core) and then loaded from the cache: 120 seeds
//! from a fixed SplitMix64 stream (`LOOPTUNE_PROPTEST_CASES` raises it) and 20 from a fresh
//! stream whose start is printed, so a run also checks cases no earlier run saw
//! (`LOOPTUNE_FRESH_SEED` replays a stream, `LOOPTUNE_FRESH_CASES` sizes it).

#![forbid(unsafe_code)]

mod support;

use looptune_cc::CBackend;
use looptune_ir::random::{random_case, FreshSeeds, SplitMix64};
use looptune_ir::recipes::MatmulTiling;
use looptune_ir::{lower, LoopKind, LoopNest, Stmt};
use looptune_runtime::{Backend, IsaFeatures, Target};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{default_schedule, tiled, Checked};

/// Fixed seeds by default.
fn cases() -> usize {
    std::env::var("LOOPTUNE_PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(120)
}

/// Seeds from the fresh stream unless `LOOPTUNE_FRESH_CASES` says otherwise.
const FRESH_CASES: usize = 20;

/// Nests compiled by one [`Backend::prepare`].
const BATCH: usize = 40;

/// The target of the differential tests: two threads, so parallel loops run on the pool.
fn two_threads() -> Target {
    Target::host().with_threads(2)
}

/// Seed `seed`'s random case, with the interpreter's outputs.
fn random(seed: u64) -> Result<Checked, String> {
    let case = random_case(seed);
    let label = format!("seed {seed} ({})", case.workload);
    let nest = lower(&case.schedule).map_err(|error| format!("{label}: lowering: {error}"))?;
    Checked::new(label, case.schedule.program(), nest, seed ^ 0xDA7A)
}

/// Compiles (prepared: from the cache) and checks every case, returning the failures.
fn compile_and_check(backend: &CBackend, cases: &[Checked], target: &Target) -> Vec<String> {
    let mut failures = Vec::new();
    for batch in cases.chunks(BATCH) {
        let nests: Vec<&LoopNest> = batch.iter().map(|case| &case.nest).collect();
        backend.prepare(&nests, target);
        for case in batch {
            let outcome = backend
                .compile(&case.nest, target)
                .map_err(|error| format!("{}: compile: {error}\n{}", case.label, case.nest))
                .and_then(|kernel| case.check(&kernel));
            if let Err(message) = outcome {
                failures.push(message);
            }
        }
    }
    failures
}

/// Runs the seeds, panicking with the first failure (which names its seed).
fn check_seeds(seeds: &[u64], what: &str) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = support::backend(dir.path());
    let mut failures = Vec::new();
    let mut cases = Vec::new();
    for &seed in seeds {
        match random(seed) {
            Ok(case) => cases.push(case),
            Err(message) => failures.push(message),
        }
    }
    failures.extend(compile_and_check(&backend, &cases, &two_threads()));
    eprintln!(
        "{what}: {} seeds, {} objects compiled by `{}` in {:.1} s, {:.1?} in all",
        seeds.len(),
        backend.objects_compiled(),
        backend.compiler().describe(),
        backend.compile_seconds(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{what}: {} of {} seeds failed; first:\n{}",
        failures.len(),
        seeds.len(),
        failures[0]
    );
}

#[test]
fn the_backend_matches_the_interpreter_on_random_schedules() {
    let mut stream = SplitMix64::new(0x5EED_0F17);
    let seeds: Vec<u64> = (0..cases()).map(|_| stream.next_u64()).collect();
    check_seeds(&seeds, "fixed stream SplitMix64::new(0x5eed0f17)");
}

#[test]
fn the_backend_matches_the_interpreter_on_fresh_seeds() {
    let fresh = FreshSeeds::from_env(FRESH_CASES);
    eprintln!(
        "fresh seed stream: LOOPTUNE_FRESH_SEED={} ({} cases)",
        fresh.start, fresh.count
    );
    let seeds: Vec<u64> = fresh.seeds().collect();
    check_seeds(
        &seeds,
        &format!("fresh stream LOOPTUNE_FRESH_SEED={}", fresh.start),
    );
}

/// Odd shapes: primes, m = 1 (GEMV), n = 1, a transposed B, a 7x7 stride-2 convolution, an odd
/// depthwise convolution, dense with bias and ReLU, batch matmul.
const ODD_SHAPES: &[&str] = &[
    "matmul:m=13,n=17,k=19",
    "matmul:m=1,n=64,k=37",
    "matmul:m=37,n=1,k=23",
    "matmul:m=7,n=11,k=5,transpose_b=true",
    "conv2d:n=1,ic=3,h=17,w=17,oc=5,kh=7,kw=7,stride=2,pad=3",
    "depthwise_conv2d:n=1,c=5,h=11,w=13,kh=3,kw=3,stride=2,pad=1",
    "dense:m=7,n=13,k=11,bias=true,relu=true",
    "batch_matmul:b=3,m=5,n=7,k=9",
];

/// Register tiles one and two AVX vectors wide (8 and 16 lanes), parallel, with tails on
/// every odd shape, one with an unrolled reduction and one with a cache block of rows.
fn lane_tilings() -> [MatmulTiling; 2] {
    [
        MatmulTiling {
            tile_rows: 4,
            tile_columns: 8,
            unroll_reduction: 2,
            block_rows: 1,
            parallel: true,
        },
        MatmulTiling {
            tile_rows: 3,
            tile_columns: 16,
            unroll_reduction: 1,
            block_rows: 6,
            parallel: true,
        },
    ]
}

/// Whether `nest` has a parallel loop (lowering peels a parallel loop of extent 2 with a tail
/// into straight-line copies, so a parallel schedule need not keep one).
fn has_parallel_loop(nest: &LoopNest) -> bool {
    let mut found = false;
    nest.body.walk(&mut |stmt| {
        found |= matches!(stmt, Stmt::For(body) if body.kind == LoopKind::Parallel);
    });
    found
}

#[test]
fn odd_shapes_match_the_interpreter_default_and_register_tiled() {
    let mut cases = Vec::new();
    for text in ODD_SHAPES {
        let (program, nest) = default_schedule(text);
        cases.push(Checked::new(format!("{text} (default schedule)"), &program, nest, 7).unwrap());
        if text.starts_with("matmul:") {
            for tiling in lane_tilings() {
                let (program, nest) = tiled(text, tiling);
                let label = format!("{text} ({tiling:?})");
                cases.push(Checked::new(label, &program, nest, 7).unwrap());
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = support::backend(dir.path());
    let target = two_threads();
    let failures = compile_and_check(&backend, &cases, &target);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let mut parallel = 0;
    for case in &cases {
        let kernel = backend.compile(&case.nest, &target).expect("compiles");
        assert_eq!(
            kernel.uses_parallel(),
            has_parallel_loop(&case.nest),
            "{}",
            case.label
        );
        parallel += usize::from(kernel.uses_parallel());
        assert!(
            kernel
                .source()
                .is_some_and(|source| source.contains("looptune_entry")),
            "the kernel keeps the C it was compiled from"
        );
    }
    // Most tiled kernels really went through the runtime's pool.
    assert!(parallel >= 5, "{parallel} kernels use the pool");
}

/// The files in the cache directory with extension `extension`, sorted.
fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the cache directory exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
        .collect();
    found.sort();
    found
}

/// All file names in the cache directory, for messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the cache directory exists")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into()
        })
        .collect();
    names.sort();
    names
}

/// Asserts that the cache holds `entries` complete entries and nothing else (no staged file).
fn assert_entries(dir: &Path, entries: usize) {
    assert_eq!(files(dir, "so").len(), entries, "{:?}", listing(dir));
    assert_eq!(files(dir, "c").len(), entries, "{:?}", listing(dir));
    assert_eq!(listing(dir).len(), 2 * entries, "{:?}", listing(dir));
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = work();
    (value, start.elapsed())
}

#[test]
fn a_second_compile_is_a_fast_hit_and_a_different_nest_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = support::backend(dir.path());
    let target = Target::host().with_threads(1);
    let (program, nest) = default_schedule("matmul:m=9,n=10,k=11");
    let case = Checked::new("matmul 9x10x11".to_string(), &program, nest, 3).unwrap();

    let (first, miss) = timed(|| backend.compile(&case.nest, &target).expect("compiles"));
    assert_eq!(backend.objects_compiled(), 1);
    let compile_seconds = backend.compile_seconds();
    assert!(compile_seconds > 0.0);
    assert_entries(dir.path(), 1);

    let (second, hit) = timed(|| backend.compile(&case.nest, &target).expect("compiles"));
    assert_eq!(backend.objects_compiled(), 1, "the second compile is a hit");
    assert_eq!(backend.compile_seconds(), compile_seconds);
    // A hit reads a file and loads an object: no compiler run, whatever the machine's load.
    assert!(hit * 2 < miss, "hit {hit:?}, miss {miss:?}");
    case.check(&first).unwrap();
    case.check(&second).unwrap();

    let (program, nest) = default_schedule("matmul:m=9,n=10,k=12");
    let other = Checked::new("matmul 9x10x12".to_string(), &program, nest, 3).unwrap();
    let kernel = backend.compile(&other.nest, &target).expect("compiles");
    assert_eq!(backend.objects_compiled(), 2, "a different nest is a miss");
    assert_entries(dir.path(), 2);
    other.check(&kernel).unwrap();
}

#[test]
fn a_target_with_other_flags_is_a_miss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = support::backend(dir.path());
    let (program, nest) = tiled("matmul:m=11,n=24,k=9", lane_tilings()[0]);
    let case = Checked::new("tiled matmul 11x24x9".to_string(), &program, nest, 5).unwrap();
    let with_fma = Target::host().with_threads(2);
    let without_fma = with_fma.clone().without_fma();
    case.check(&backend.compile(&case.nest, &with_fma).unwrap())
        .unwrap();
    case.check(&backend.compile(&case.nest, &without_fma).unwrap())
        .unwrap();
    let flags_differ =
        backend.compiler().flags(&with_fma) != backend.compiler().flags(&without_fma);
    // On a host with FMA the second target adds `-mno-fma`; without, both are the same target.
    assert_eq!(flags_differ, IsaFeatures::host().fma);
    let expected = if flags_differ { 2 } else { 1 };
    assert_eq!(backend.objects_compiled(), expected);
    assert_entries(dir.path(), expected as usize);
    // Each flag set is a hit afterwards.
    backend.compile(&case.nest, &with_fma).unwrap();
    backend.compile(&case.nest, &without_fma).unwrap();
    assert_eq!(backend.objects_compiled(), expected);
}

/// Ways a cache entry can be damaged on disk.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The object cut to nothing (a full disk, a killed writer from an older version).
    TruncatedObject,
    /// The object overwritten with bytes that are no shared object.
    GarbageObject,
    /// The object removed, its source left.
    MissingObject,
    /// The source (the key) edited: it no longer holds the text compiled.
    EditedSource,
}

#[test]
fn a_damaged_entry_is_compiled_again_and_runs_correctly() {
    let (program, nest) = tiled("matmul:m=10,n=19,k=7", lane_tilings()[1]);
    let case = Checked::new("tiled matmul 10x19x7".to_string(), &program, nest, 9).unwrap();
    let target = two_threads();
    for damage in [
        Damage::TruncatedObject,
        Damage::GarbageObject,
        Damage::MissingObject,
        Damage::EditedSource,
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = support::backend(dir.path());
        // The kernel is dropped (its object unloaded) before the file under it is damaged, as
        // when another process or an earlier run damaged it.
        drop(backend.compile(&case.nest, &target).expect("compiles"));
        let object = files(dir.path(), "so").pop().expect("an object");
        let source = files(dir.path(), "c").pop().expect("a source");
        match damage {
            Damage::TruncatedObject => std::fs::File::options()
                .write(true)
                .open(&object)
                .and_then(|file| file.set_len(0))
                .expect("truncate"),
            Damage::GarbageObject => {
                std::fs::write(&object, b"this is not an ELF shared object\n".repeat(64))
                    .expect("write")
            }
            Damage::MissingObject => std::fs::remove_file(&object).expect("remove"),
            Damage::EditedSource => {
                let text = std::fs::read_to_string(&source).expect("read");
                std::fs::write(&source, text.replace("looptune_entry", "other_entry"))
                    .expect("write")
            }
        }
        let kernel = backend
            .compile(&case.nest, &target)
            .unwrap_or_else(|error| panic!("{damage:?}: {error}"));
        assert_eq!(backend.objects_compiled(), 2, "{damage:?}: compiled again");
        case.check(&kernel)
            .unwrap_or_else(|message| panic!("{damage:?}: {message}"));
        assert_entries(dir.path(), 1);
        // And the repaired entry is a hit.
        drop(kernel);
        backend.compile(&case.nest, &target).expect("compiles");
        assert_eq!(backend.objects_compiled(), 2, "{damage:?}: repaired");
    }
}

#[test]
fn a_prepared_batch_fills_the_cache_for_this_and_other_backends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = support::backend(dir.path());
    let target = two_threads();
    let [narrow, wide] = lane_tilings();
    let mut cases = Vec::new();
    for (text, tiling) in [
        ("matmul:m=12,n=20,k=8", Some(narrow)),
        ("matmul:m=12,n=20,k=8", Some(wide)),
        ("matmul:m=12,n=20,k=8", None),
        ("dense:m=5,n=9,k=7,bias=true,relu=true", None),
    ] {
        let (program, nest) = match tiling {
            Some(tiling) => tiled(text, tiling),
            None => default_schedule(text),
        };
        let label = format!("{text} ({tiling:?})");
        cases.push(Checked::new(label, &program, nest, 11).unwrap());
    }
    let nests: Vec<&LoopNest> = cases.iter().map(|case| &case.nest).collect();
    backend.prepare(&nests, &target);
    assert_eq!(backend.objects_compiled(), 4);
    assert_entries(dir.path(), 4);
    for case in &cases {
        case.check(&backend.compile(&case.nest, &target).unwrap())
            .unwrap();
    }
    assert_eq!(
        backend.objects_compiled(),
        4,
        "every compile after prepare hits"
    );
    backend.prepare(&nests, &target);
    assert_eq!(
        backend.objects_compiled(),
        4,
        "a prepared batch is not compiled again"
    );
    // Another backend on the same directory (a worker process, a resumed run) compiles nothing.
    let other = support::backend(dir.path());
    for case in &cases {
        case.check(&other.compile(&case.nest, &target).unwrap())
            .unwrap();
    }
    assert_eq!(other.objects_compiled(), 0);
}
