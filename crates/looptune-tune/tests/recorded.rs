//! The cost model on measured data: `data/measured.tunelog` holds real records from this
//! project's reference machine (a 2-core Zen 4, one thread, the Cranelift back end), 200 configs
//! each of matmul 512^3 and ResNet-18 C2 drawn at random from complete measurements of their
//! spaces, and the first 100 records of a random tuning run each of matmul 256^3 and 384^3.
//!
//! The tests only read the throughputs recorded there; nothing is measured, so they do not
//! depend on the machine that runs them. They hold the model to ranking real measurements
//! better than chance, from the new workload's own records and, by transfer, from other shapes
//! of its operator alone.

#![forbid(unsafe_code)]

use looptune_cost::{spearman, CostModel, FeatureSpec, Group, XgbModel, XgbOptions};
use looptune_log::{read_log, task_records, Record};
use looptune_space::Task;
use looptune_tune::TransferSet;
use std::path::Path;

const MATMUL_512: &str = "matmul:m=512,n=512,k=512";
const RESNET18_C2: &str = "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1";

/// Held-out records: the last 80 of a workload's 200.
const TRAIN: usize = 120;

fn records() -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/measured.tunelog");
    let contents = read_log(&path).expect("the recorded log reads");
    assert!(contents.warnings.is_empty(), "{:?}", contents.warnings);
    contents.records
}

fn task(text: &str) -> Task {
    Task::new(text.parse().expect("workload parses")).expect("task builds")
}

/// Feature rows and throughputs (failures as 0) of `task`'s records, in log order.
fn rows(task: &Task, records: &[Record]) -> (Vec<Vec<f32>>, Vec<f64>) {
    let spec = FeatureSpec::for_task(task);
    let target = &records[0].target;
    let mut features = Vec::new();
    let mut throughput = Vec::new();
    for record in task_records(records, task.key(), target) {
        let config = task
            .space()
            .from_values(&record.config)
            .expect("a recorded config is a point of today's space");
        features.push(spec.extract(task, &config).expect("it lowers"));
        throughput.push(record.gflops.unwrap_or(0.0));
    }
    (features, throughput)
}

/// Spearman's correlation between the model's scores and the recorded throughput of the
/// held-out records, after fitting on the first [`TRAIN`] records of the workload.
fn held_out_correlation(text: &str) -> f64 {
    let records = records();
    let task = task(text);
    let (features, throughput) = rows(&task, &records);
    assert_eq!(features.len(), 200, "{text}");
    let (train, test) = features.split_at(TRAIN);
    let (train_y, test_y) = throughput.split_at(TRAIN);
    let mut model = XgbModel::new(XgbOptions::default()).expect("options valid");
    model.fit(train, train_y).expect("fits");
    let rho = spearman(&model.predict(test).expect("predicts"), test_y);
    eprintln!("{text}: held-out Spearman {rho:.3}");
    rho
}

#[test]
fn the_model_ranks_held_out_measured_matmul_configs_well() {
    let rho = held_out_correlation(MATMUL_512);
    assert!(rho > 0.5, "Spearman {rho}");
}

#[test]
fn the_model_ranks_held_out_measured_conv_configs_well() {
    let rho = held_out_correlation(RESNET18_C2);
    assert!(rho > 0.5, "Spearman {rho}");
}

#[test]
fn records_of_other_shapes_alone_rank_a_new_shape_well() {
    let records = records();
    let task = task(MATMUL_512);
    let target = records[0].target.clone();
    let transfer = TransferSet::from_records(&task, &records, &target);
    let workloads: Vec<&str> = transfer
        .workloads()
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        workloads,
        [
            "matmul:m=256,n=256,k=256,transpose_b=false",
            "matmul:m=384,n=384,k=384,transpose_b=false"
        ],
        "other shapes of matmul only: C2 is another operator, 512^3 the task itself"
    );
    assert_eq!(transfer.skipped(), 0);
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
    // Not one record of 512^3 was seen: all 200 are held out.
    let (test, test_y) = rows(&task, &records);
    let predicted = model.predict(&test).expect("predicts");
    let rho = spearman(&predicted, &test_y);
    // What search sees first: the record the model scores highest, against the best recorded.
    let favourite = (0..predicted.len())
        .max_by(|&a, &b| predicted[a].total_cmp(&predicted[b]))
        .expect("records");
    let best = test_y.iter().copied().fold(0.0, f64::max);
    let share = test_y[favourite] / best;
    eprintln!(
        "{MATMUL_512} from 256^3 and 384^3 only: Spearman {rho:.3}; its favourite runs at {share:.2} of the best"
    );
    assert!(rho > 0.4, "Spearman {rho}");
    // The median record runs at about half the best.
    assert!(share > 0.7, "the favourite runs at {share:.2} of the best");
}
