//! The records looptune ships (`crates/looptune-tune/records/`): they load and pass the log's own
//! format checks, cover every reference workload with configs of today's spaces, and a model
//! fitted on the other shapes of an operator alone ranks a held-out workload's records. Nothing
//! is measured: the tests read the recorded throughputs only.

#![forbid(unsafe_code)]

use looptune_cost::{spearman, CostModel, FeatureSpec, Group, XgbModel, XgbOptions};
use looptune_ir::Workload;
use looptune_space::{Task, TaskKey, VectorShape};
use looptune_tune::{ShippedSet, TransferSet, REFERENCE_WORKLOADS, SHIPPED};

/// Valid records each reference workload has at least.
const MIN_RECORDS: usize = 24;

fn avx2() -> &'static ShippedSet {
    ShippedSet::find("c", &VectorShape::AVX2).expect("the C backend's AVX2 set is shipped")
}

fn task(text: &str) -> Task {
    let workload: Workload = text.parse().expect("a reference workload parses");
    Task::for_shape(workload, VectorShape::AVX2).expect("its task builds")
}

#[test]
fn every_shipped_set_loads_without_a_warning_and_covers_every_reference_workload() {
    for set in SHIPPED {
        let contents = set.contents().expect("a shipped set reads as a tuning log");
        assert!(
            contents.warnings.is_empty(),
            "{}: {:?}",
            set.path,
            contents.warnings
        );
        let records = contents.records;
        assert!(records
            .iter()
            .all(|record| record.target.backend == set.backend));
        for text in REFERENCE_WORKLOADS {
            let task = task(text);
            let key = TaskKey::of_workload(task.workload());
            let mine: Vec<_> = records
                .iter()
                .filter(|record| record.workload == key.as_str())
                .collect();
            let valid = mine.iter().filter(|record| record.is_valid()).count();
            assert!(
                valid >= MIN_RECORDS,
                "{text}: {valid} valid records in {}",
                set.path
            );
            for record in mine {
                assert!(
                    task.space().from_values(&record.config).is_ok(),
                    "{text}: config {} of {} is not a point of today's space",
                    record.config_index,
                    set.path
                );
            }
        }
    }
}

/// Spearman's correlation between a model fitted on the shipped records of every other shape of
/// `text`'s operator and the recorded throughput of `text`'s own shipped records, and the share
/// of the best recorded throughput that the model's favourite has.
fn held_out(text: &str) -> (f64, f64) {
    let task = task(text);
    let transfer = TransferSet::shipped(&task, "c");
    assert!(
        transfer.workloads().len() >= 2,
        "{text}: {:?}",
        transfer.workloads()
    );
    let groups: Vec<Group> = transfer
        .workloads()
        .iter()
        .map(|&(_, rows)| Group { rows, weight: 1.0 })
        .collect();
    let (features, throughput) = transfer.rows();
    let mut model = XgbModel::new(XgbOptions::default()).expect("options valid");
    model
        .fit_groups(features, throughput, &groups)
        .expect("fits");
    let spec = FeatureSpec::for_task(&task);
    let key = TaskKey::of_workload(task.workload());
    let (mut test, mut test_y) = (Vec::new(), Vec::new());
    for record in avx2().records() {
        if record.workload != key.as_str() {
            continue;
        }
        let config = task.space().from_values(&record.config).expect("a point");
        test.push(spec.extract(&task, &config).expect("it lowers"));
        test_y.push(record.gflops.filter(|g| g.is_finite()).unwrap_or(0.0));
    }
    let predicted = model.predict(&test).expect("predicts");
    let favourite = (0..predicted.len())
        .max_by(|&a, &b| predicted[a].total_cmp(&predicted[b]))
        .expect("records");
    let best = test_y.iter().copied().fold(0.0, f64::max);
    (spearman(&predicted, &test_y), test_y[favourite] / best)
}

#[test]
fn a_model_of_the_other_shapes_ranks_the_held_out_reference_workloads() {
    // The workloads of the cold-start bars (matmul 512^3, ResNet-18 C2, MobileNet D3): each
    // held out, the model fitted on the shipped records of its operator's other shapes.
    for text in [
        "matmul:m=512,n=512,k=512",
        "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
        "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
    ] {
        let (rho, share) = held_out(text);
        eprintln!(
            "{text}: held-out Spearman {rho:.3}; the favourite runs at {share:.2} of the best"
        );
        assert!(rho > 0.5, "{text}: Spearman {rho}");
    }
}
