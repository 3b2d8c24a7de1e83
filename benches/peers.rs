//! looptune's GEMM kernels against a peer: the `matrixmultiply` crate's `sgemm` (a BLIS-style
//! pure-Rust GEMM with hand-written AVX/FMA micro-kernels), single thread, on the GEMM shapes of
//! the design's reference workloads (1024^3, and BERT-base at sequence 128: 128x768x768,
//! 128x3072x768, 128x768x3072 as MxNxK).
//!
//! ```sh
//! cargo bench --bench peers -- --warm-up-time 1 --measurement-time 3
//! LOOPTUNE_BENCH_LOG=mm.tunelog cargo bench --bench peers
//! ```
//!
//! Per shape, up to three entries: `tuned(...)`, the best config of the tuning log named by
//! `LOOPTUNE_BENCH_LOG` for this host's target on one thread, its source in the id (`exact`,
//! `compatible` target, or `fallback` when the log lacks the workload or no log is given);
//! `fallback`, the template's fallback config, left out when the tuned entry already is it; and
//! `matrixmultiply`. Each looptune kernel's output is compared with sgemm's before it is timed.
//! criterion prints throughput in elements, where one element is one multiply-add (half a FLOP
//! pair), so the ratios of its times are the ratios of GFLOP/s.

#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use looptune::backend::{select, task_for, BackendChoice};
use looptune::ir::eval::compare;
use looptune::ir::random::random_inputs;
use looptune::log::{Dispatcher, Source, TargetFingerprint};
use looptune::runtime::{Backend, Kernel, Target};
use looptune::space::{Config, Task};
use looptune::Workload;
use std::sync::Arc;
use std::time::Duration;

/// The GEMM shapes (m, n, k) of the design's reference workloads.
const SHAPES: [(usize, usize, usize); 4] = [
    (1024, 1024, 1024),
    (128, 768, 768),
    (128, 3072, 768),
    (128, 768, 3072),
];

/// The environment variable naming the tuning log to take tuned configs from.
const LOG_ENV: &str = "LOOPTUNE_BENCH_LOG";

/// Relative tolerance of the output check against sgemm (both sum in f32 in different orders).
const TOLERANCE: f64 = 1e-3;

/// Stops the bench with a message: a bench has no caller to return an error to.
fn fail(message: String) -> ! {
    eprintln!("peers bench: {message}");
    std::process::exit(1)
}

/// `C = A B` with matrixmultiply (looptune-runtime's safe `baseline::sgemm`), row-major, `a`
/// m x k, `b` k x n, `c` m x n (overwritten).
fn sgemm(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    looptune::runtime::baseline::sgemm((m, n, k), false, a, b, c)
        .unwrap_or_else(|error| fail(error.to_string()));
}

/// The tuned config of `task` from the log (or the fallback) and the bench id naming its source.
fn tuned_config(
    task: &Task,
    dispatcher: Option<&Dispatcher>,
    target: &Target,
    backend: &dyn Backend,
) -> (Config, String) {
    let fallback = task
        .fallback_config()
        .unwrap_or_else(|error| fail(format!("fallback config of `{}`: {error}", task.key())));
    let Some(dispatcher) = dispatcher else {
        return (fallback, format!("tuned(fallback: {LOG_ENV} unset)"));
    };
    let fingerprint = TargetFingerprint::new(target, backend);
    let dispatch = dispatcher.best(task.workload(), &fingerprint, || fallback.to_values());
    let source = match dispatch.source {
        Source::Exact => "exact",
        Source::CompatibleTarget { .. } => "compatible",
        _ => "fallback: not in the log",
    };
    let config = task
        .space()
        .from_values(&dispatch.config)
        .unwrap_or_else(|error| fail(format!("the logged config of `{}`: {error}", task.key())));
    (config, format!("tuned({source})"))
}

/// Compiles `config` of `task` for `target`.
fn compile(task: &Task, config: &Config, target: &Target, backend: &dyn Backend) -> Kernel {
    let nest = task
        .lower(config)
        .unwrap_or_else(|error| fail(format!("lowering `{}`: {error}", task.key())));
    backend
        .compile(&nest, target)
        .unwrap_or_else(|error| fail(format!("compiling `{}`: {error}", task.key())))
}

fn peers(criterion: &mut Criterion) {
    let target = Target::host().with_threads(1);
    let backend: Arc<dyn Backend> = select(BackendChoice::Auto)
        .unwrap_or_else(|error| fail(format!("choosing a backend: {error}")))
        .backend;
    let dispatcher = std::env::var_os(LOG_ENV).map(|path| {
        let dispatcher = Dispatcher::from_logs(&[&path]).unwrap_or_else(|error| {
            fail(format!(
                "reading {LOG_ENV}={}: {error}",
                path.to_string_lossy()
            ))
        });
        for warning in dispatcher.load_warnings() {
            eprintln!("warning: {warning}");
        }
        dispatcher
    });
    for (m, n, k) in SHAPES {
        let workload: Workload = format!("matmul:m={m},n={n},k={k}")
            .parse()
            .unwrap_or_else(|error| fail(format!("{m}x{n}x{k}: {error}")));
        let task = task_for(workload, backend.as_ref(), &target)
            .unwrap_or_else(|error| fail(format!("the task of `{workload}`: {error}")));
        let program = task
            .reference_program()
            .unwrap_or_else(|error| fail(format!("the program of `{workload}`: {error}")));
        let inputs = random_inputs(&program, 7);
        let (a, b) = (inputs[0].as_slice(), inputs[1].as_slice());
        let mut expected = vec![0.0f32; m * n];
        sgemm(m, n, k, a, b, &mut expected);

        let (tuned, tuned_id) = tuned_config(&task, dispatcher.as_ref(), &target, backend.as_ref());
        let fallback = task
            .fallback_config()
            .unwrap_or_else(|error| fail(format!("fallback config of `{workload}`: {error}")));
        let mut kernels = vec![(tuned_id, compile(&task, &tuned, &target, backend.as_ref()))];
        if tuned.to_values() != fallback.to_values() {
            kernels.push((
                "fallback".to_string(),
                compile(&task, &fallback, &target, backend.as_ref()),
            ));
        }

        let mut group = criterion.benchmark_group(format!("gemm_{m}x{n}x{k}"));
        group.throughput(Throughput::Elements((m * n * k) as u64));
        group.sample_size(10);
        for (id, kernel) in &kernels {
            let mut c = vec![0.0f32; m * n];
            kernel
                .call(&[a, b], &mut [&mut c])
                .unwrap_or_else(|error| fail(format!("{id} of `{workload}`: {error}")));
            if let Err(mismatch) = compare(&c, &expected, TOLERANCE) {
                fail(format!(
                    "{id} of `{workload}` differs from sgemm: {mismatch:?}"
                ));
            }
            group.bench_function(id.as_str(), |bencher| {
                bencher.iter(|| {
                    kernel
                        .call(&[a, b], &mut [&mut c])
                        .unwrap_or_else(|error| fail(format!("{id}: {error}")))
                })
            });
        }
        let mut c = vec![0.0f32; m * n];
        group.bench_function("matrixmultiply", |bencher| {
            bencher.iter(|| sgemm(m, n, k, a, b, &mut c))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = peers
}
criterion_main!(benches);
