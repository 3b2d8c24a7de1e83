//! Measured records shipped inside looptune, so that the `xgb` tuner is never cold.
//!
//! Transfer learning ([`TransferSet`]) is where the cost model is strong: records of other
//! shapes of an operator rank a new shape's configs before its first measurement. A new user
//! has no log, so looptune carries a compact set of its own: random configs of the reference
//! workloads of every operator family ([`reference_workloads`]: GEMM shapes, ResNet-18's
//! convolutions, MobileNet's depthwise layers in NCHW, and every layer of the built-in networks
//! as `tune-model` tunes them: MobileNet's NCHW8c depthwise layers, BERT-base's attention
//! scores, the CliqueNet block's fused convolutions, the 8-bit MobileNet), measured by
//! `looptune ship-records` (one command per backend, documented in docs/benchmarks.md).
//! [`TransferSet::from_log_and_shipped`] gives the tuner those rows beside the log's, for every
//! shape the log does not cover yet.
//!
//! Throughputs are compared only within a workload (each is its own ranking group), so what
//! carries over from the machine that measured them is which configs are fast relative to the
//! others of the same shape, not any absolute speed. Records apply where a config means the same
//! kernel: the same backend and the same [`VectorShape`] (lanes and registers), since the
//! configs are lowered again with today's templates. There are two sets today: the C backend on
//! an AVX2 host (8 lanes, 16 registers) and the Cranelift JIT (4 lanes and 16 registers on every
//! x86-64 host), both measured on a Zen 3; other shapes (AVX-512) have none and start cold.

use crate::model::TransferSet;
use crate::models::Network;
use looptune_ir::Workload;
use looptune_log::{parse_log, LogContents, LogError, Record, TargetFingerprint};
use looptune_space::{Task, VectorShape};
use std::collections::HashMap;
use std::path::Path;

/// The reference workloads that are not a built-in network's layer as `tune-model` tunes it:
/// square and BERT-shaped GEMMs, and the NCHW forms of MobileNet's depthwise layers (which a
/// `tune` user writes by hand, and which the cold-start figures measure). ResNet-18's layers are
/// listed too, in the order they are measured; [`reference_workloads`] adds the rest.
pub const STANDALONE_WORKLOADS: &[&str] = &[
    // GEMM: square, and BERT-base's projections at sequence 128.
    "matmul:m=256,n=256,k=256",
    "matmul:m=512,n=512,k=512",
    "matmul:m=1024,n=1024,k=1024",
    "matmul:m=128,n=768,k=768",
    "matmul:m=128,n=3072,k=768",
    "matmul:m=128,n=768,k=3072",
    // ResNet-18's convolutions C1-C12, NCHW.
    "conv2d:n=1,ic=3,h=224,w=224,oc=64,kh=7,kw=7,stride=2,pad=3",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=1,kw=1,stride=1,pad=0",
    "conv2d:n=1,ic=64,h=56,w=56,oc=128,kh=3,kw=3,stride=2,pad=1",
    "conv2d:n=1,ic=64,h=56,w=56,oc=128,kh=1,kw=1,stride=2,pad=0",
    "conv2d:n=1,ic=128,h=28,w=28,oc=128,kh=3,kw=3,stride=1,pad=1",
    "conv2d:n=1,ic=128,h=28,w=28,oc=256,kh=3,kw=3,stride=2,pad=1",
    "conv2d:n=1,ic=128,h=28,w=28,oc=256,kh=1,kw=1,stride=2,pad=0",
    "conv2d:n=1,ic=256,h=14,w=14,oc=256,kh=3,kw=3,stride=1,pad=1",
    "conv2d:n=1,ic=256,h=14,w=14,oc=512,kh=3,kw=3,stride=2,pad=1",
    "conv2d:n=1,ic=256,h=14,w=14,oc=512,kh=1,kw=1,stride=2,pad=0",
    "conv2d:n=1,ic=512,h=7,w=7,oc=512,kh=3,kw=3,stride=1,pad=1",
    // MobileNet's depthwise layers D1-D9, NCHW.
    "depthwise_conv2d:n=1,c=32,h=112,w=112,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=64,h=112,w=112,kh=3,kw=3,stride=2,pad=1",
    "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=2,pad=1",
    "depthwise_conv2d:n=1,c=256,h=28,w=28,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=256,h=28,w=28,kh=3,kw=3,stride=2,pad=1",
    "depthwise_conv2d:n=1,c=512,h=14,w=14,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=512,h=14,w=14,kh=3,kw=3,stride=2,pad=1",
    "depthwise_conv2d:n=1,c=1024,h=7,w=7,kh=3,kw=3,stride=1,pad=1",
];

/// Every workload the shipped records cover, in the order `ship-records` measures them: the
/// [`STANDALONE_WORKLOADS`], then each layer of each built-in [`Network`] not already listed, so
/// that `tune-model` never starts an operator (or a layout of one) cold.
pub fn reference_workloads() -> Vec<Workload> {
    let mut workloads: Vec<Workload> = STANDALONE_WORKLOADS
        .iter()
        .map(|text| {
            text.parse()
                .expect("a standalone reference workload parses (a test checks every one)")
        })
        .collect();
    for network in Network::ALL {
        for layer in network.layers() {
            if !workloads.contains(&layer.workload) {
                workloads.push(layer.workload);
            }
        }
    }
    workloads
}

/// One shipped set: the records of one backend and vector shape.
#[derive(Clone, Copy, Debug)]
pub struct ShippedSet {
    /// Where it lives in the source tree (for messages; `ship-records --out` it to remake it).
    pub path: &'static str,
    /// The backend that measured it (`Backend::id().name`).
    pub backend: &'static str,
    /// The lanes and registers of the spaces it was measured in.
    pub lanes: i64,
    /// See `lanes`.
    pub registers: i64,
    /// The tuning log's text.
    text: &'static str,
}

/// Every shipped set.
pub const SHIPPED: &[ShippedSet] = &[
    ShippedSet {
        path: "crates/looptune-tune/records/c-avx2.tunelog",
        backend: "c",
        lanes: 8,
        registers: 16,
        text: include_str!("../records/c-avx2.tunelog"),
    },
    ShippedSet {
        path: "crates/looptune-tune/records/cranelift.tunelog",
        backend: "cranelift",
        lanes: 4,
        registers: 16,
        text: include_str!("../records/cranelift.tunelog"),
    },
];

impl ShippedSet {
    /// The set for `backend` and `shape`, if looptune ships one.
    pub fn find(backend: &str, shape: &VectorShape) -> Option<&'static ShippedSet> {
        SHIPPED.iter().find(|set| {
            set.backend == backend && set.lanes == shape.lanes && set.registers == shape.registers
        })
    }

    /// Its text read as a tuning log, with the log reader's own checks and warnings.
    pub fn contents(&self) -> Result<LogContents, LogError> {
        parse_log(self.text.as_bytes(), Path::new(self.path))
    }

    /// Its records. The text is part of the binary and a test reads it without a warning, so
    /// a failure here is a broken build: it gives no records rather than stopping a run.
    pub fn records(&self) -> Vec<Record> {
        self.contents()
            .map(|contents| contents.records)
            .unwrap_or_default()
    }
}

impl TransferSet {
    /// The rows the shipped records give `task` (compiled by `backend`): those of every shape of
    /// its operator (its own too, when it is a reference workload), from the set measured with
    /// `backend` in spaces of the task's vector shape; empty when looptune ships none for them.
    pub fn shipped(task: &Task, backend: &str) -> TransferSet {
        match ShippedSet::find(backend, task.vector_shape()) {
            Some(set) => TransferSet::from_records_where(task, &set.records(), |_| true),
            None => TransferSet::default(),
        }
    }

    /// The transfer rows of a run of `task` on `target` whose log holds `records`: the log's
    /// records of other shapes of the operator, and the shipped records of every shape of it
    /// (the task's own included) of which the log holds fewer records on this target than
    /// looptune ships. A user's own records count as soon as they exist, and the shipped ones
    /// fill in what they do not cover yet: the second layer of a network tuned into an empty log
    /// starts from the first layer's few records and the shipped ones, not from the few alone.
    /// The flag says whether shipped rows are among them.
    pub fn from_log_and_shipped(
        task: &Task,
        records: &[Record],
        target: &TargetFingerprint,
    ) -> (TransferSet, bool) {
        let mut set = TransferSet::from_records(task, records, target);
        let Some(shipped) = ShippedSet::find(&target.backend, task.vector_shape()) else {
            return (set, false);
        };
        let logged = per_workload(records.iter().filter(|record| record.target == *target));
        let shipped = shipped.records();
        let offered = per_workload(shipped.iter());
        let missing = TransferSet::from_records_where(task, &shipped, |record| {
            let workload = record.workload.as_str();
            logged.get(workload).copied().unwrap_or(0) < offered.get(workload).copied().unwrap_or(0)
        });
        let used = !missing.is_empty();
        set.extend(missing);
        (set, used)
    }
}

/// How many of `records` each workload has.
fn per_workload<'a>(records: impl Iterator<Item = &'a Record>) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for record in records {
        *counts.entry(record.workload.as_str()).or_default() += 1;
    }
    counts
}
