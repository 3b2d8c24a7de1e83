//! Features per second: lowering plus extraction, and each alone, for matmul 512^3 and
//! ResNet-18 C2, over a fixed sample of configs (one core).
//!
//! `cargo bench -p looptune-cost --bench features`; criterion prints configs per second as
//! "elements/s".

#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use looptune_cost::FeatureSpec;
use looptune_space::{Config, Task};
use std::hint::black_box;

const WORKLOADS: &[(&str, &str)] = &[
    ("matmul_512", "matmul:m=512,n=512,k=512"),
    (
        "resnet18_c2",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
    ),
];

/// Configs per measured iteration.
const SAMPLE: usize = 64;

fn features(c: &mut Criterion) {
    for (name, text) in WORKLOADS {
        let task = Task::new(text.parse().expect("workload parses")).expect("task builds");
        let spec = FeatureSpec::for_task(&task);
        let configs: Vec<Config> = task.space().sample(1).take(SAMPLE).collect();
        let nests: Vec<_> = configs
            .iter()
            .map(|config| task.lower(config).expect("lowers"))
            .collect();
        let mut group = c.benchmark_group(format!("features/{name}"));
        group.throughput(Throughput::Elements(configs.len() as u64));
        group.bench_function("lower_and_extract", |b| {
            b.iter(|| {
                for config in &configs {
                    black_box(spec.extract(&task, config).expect("extracts"));
                }
            })
        });
        group.bench_function("lower_only", |b| {
            b.iter(|| {
                for config in &configs {
                    black_box(task.lower(config).expect("lowers"));
                }
            })
        });
        group.bench_function("extract_only", |b| {
            let mut row = Vec::with_capacity(spec.len());
            b.iter(|| {
                for (config, nest) in configs.iter().zip(&nests) {
                    row.clear();
                    spec.extract_nest(nest, config.choices(), &mut row)
                        .expect("extracts");
                    black_box(&row);
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, features);
criterion_main!(benches);
