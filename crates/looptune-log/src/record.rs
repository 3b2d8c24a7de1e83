//! One line of the tuning log: a [`Record`] of one measured config, self-describing.
//!
//! Design invariant 3: a record names its workload (the canonical key), the target it was
//! measured on (a [`TargetFingerprint`]: architecture, CPU model, ISA features, threads, code
//! generator and its version), the config as knob values (and its index in the space, as a
//! decimal string because spaces can exceed 2^64), the costs or the error, when it ran, and the
//! versions of the format and of looptune that wrote it. A reader needs nothing but the line.

use looptune_ir::Workload;
use looptune_runtime::measure::{Costs, MeasureError, MeasureResult};
use looptune_runtime::{Backend, IsaFeatures, Target};
use looptune_space::{ConfigValues, TaskKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The format version this crate writes. Readers upgrade older versions (see
/// `reader::upgrade`) and refuse newer ones with an error naming both.
pub const FORMAT_VERSION: u32 = 1;

/// The version of looptune that writes records, stored in each of them.
pub const LOOPTUNE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The machine and code generator a record was measured with.
///
/// The fields of [`Target`] spelled out (rather than nested) plus the backend, so that a log
/// line reads flat and the deploy database (bincode, which has no `flatten`) stores the same
/// shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetFingerprint {
    /// The architecture, as Rust spells it (`x86_64`).
    pub arch: String,
    /// The CPU model name (`unknown` where the OS does not say).
    pub cpu_model: String,
    /// The ISA features code was generated for.
    pub features: IsaFeatures,
    /// Threads that parallel loops were spread over.
    pub threads: usize,
    /// The code generator's short name (`cranelift`, `c`).
    pub backend: String,
    /// The code generator's version (for C: the compiler, its version and its flags); results
    /// of different generators are not comparable.
    pub backend_version: String,
}

impl TargetFingerprint {
    /// The fingerprint of `target` compiled for by `backend`.
    pub fn new(target: &Target, backend: &dyn Backend) -> TargetFingerprint {
        let id = backend.id();
        TargetFingerprint::from_parts(target, &id.name, &id.version)
    }

    /// The fingerprint of `target` with a backend given by name and version.
    pub fn from_parts(target: &Target, backend: &str, backend_version: &str) -> TargetFingerprint {
        TargetFingerprint {
            arch: target.arch.clone(),
            cpu_model: target.cpu_model.clone(),
            features: target.features,
            threads: target.threads,
            backend: backend.to_string(),
            backend_version: backend_version.to_string(),
        }
    }

    /// The [`Target`] part, to compile for it again.
    pub fn target(&self) -> Target {
        Target {
            arch: self.arch.clone(),
            cpu_model: self.cpu_model.clone(),
            features: self.features,
            threads: self.threads,
        }
    }

    /// How `other` differs from `self`, one phrase per differing field (empty when equal).
    pub fn differences(&self, other: &TargetFingerprint) -> Vec<String> {
        let mut differences = Vec::new();
        let mut compare = |field: &str, mine: String, theirs: String| {
            if mine != theirs {
                differences.push(format!("{field} `{theirs}` instead of `{mine}`"));
            }
        };
        compare("arch", self.arch.clone(), other.arch.clone());
        compare("cpu_model", self.cpu_model.clone(), other.cpu_model.clone());
        compare(
            "features",
            format!("{:?}", self.features),
            format!("{:?}", other.features),
        );
        compare(
            "threads",
            self.threads.to_string(),
            other.threads.to_string(),
        );
        compare("backend", self.backend.clone(), other.backend.clone());
        compare(
            "backend_version",
            self.backend_version.clone(),
            other.backend_version.clone(),
        );
        differences
    }

    /// Whether a config tuned on `self` is meaningful on `other`: same architecture, ISA
    /// features and code generator (the CPU model, thread count and generator version may
    /// differ; those change speed, not what the config means).
    pub fn is_compatible_with(&self, other: &TargetFingerprint) -> bool {
        self.arch == other.arch && self.features == other.features && self.backend == other.backend
    }
}

impl fmt::Display for TargetFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` {:?} threads={} {} ({})",
            self.arch,
            self.cpu_model,
            self.features,
            self.threads,
            self.backend,
            self.backend_version
        )
    }
}

/// What stays the same for every record of one tuning task: built once per task by the tuning
/// loop, then [`Record::from_measurement`] adds each candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordContext {
    /// The canonical workload key (`Workload`'s `Display`).
    pub workload: String,
    /// Where the candidates are measured.
    pub target: TargetFingerprint,
    /// The tuner's name (`random`, `grid`, ...).
    pub tuner: String,
    /// Floating-point operations per call, to turn seconds into GFLOP/s.
    pub flops: f64,
}

impl RecordContext {
    /// The context of tuning `workload` on `target` with `tuner`.
    pub fn new(workload: &Workload, target: TargetFingerprint, tuner: &str) -> RecordContext {
        RecordContext::with_key(
            TaskKey::of_workload(workload),
            workload.flops(),
            target,
            tuner,
        )
    }

    /// The context of tuning the task with key `key` (a user-defined task's `custom:NAME`)
    /// and `flops` operations per call.
    pub fn with_key(
        key: TaskKey,
        flops: f64,
        target: TargetFingerprint,
        tuner: &str,
    ) -> RecordContext {
        RecordContext {
            workload: key.as_str().to_string(),
            target,
            tuner: tuner.to_string(),
            flops,
        }
    }
}

/// One measured config: one line of the tuning log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The format version the record was written in ([`FORMAT_VERSION`] for new records).
    pub version: u32,
    /// The looptune version that wrote it.
    pub looptune_version: String,
    /// The tuner that proposed the config.
    pub tuner: String,
    /// The canonical workload key, e.g. `matmul:m=64,n=64,k=64,transpose_b=false`.
    pub workload: String,
    /// Where it was measured.
    pub target: TargetFingerprint,
    /// The config's index in its space (written as a decimal string: it may exceed 2^64).
    #[serde(with = "u128_string")]
    pub config_index: u128,
    /// The config as knob values, in the space's knob order.
    pub config: ConfigValues,
    /// The costs, when the candidate passed its check and was timed.
    pub costs: Option<Costs>,
    /// Throughput at the median time, when there are costs.
    pub gflops: Option<f64>,
    /// Why there are no costs, when there are none.
    pub error: Option<MeasureError>,
    /// When measuring the candidate started, in seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// When it ended, in seconds since the Unix epoch.
    pub ended_unix_s: f64,
}

impl Record {
    /// The record of measuring config `config_index` (`config` its knob values) in `context`,
    /// between `started` and `ended`.
    pub fn from_measurement(
        context: &RecordContext,
        config_index: u128,
        config: ConfigValues,
        result: &MeasureResult,
        started: SystemTime,
        ended: SystemTime,
    ) -> Record {
        let (costs, error) = match &result.outcome {
            Ok(costs) => (Some(costs.clone()), None),
            Err(error) => (None, Some(error.clone())),
        };
        let gflops = costs
            .as_ref()
            .map(|costs| costs.gflops(context.flops))
            .filter(|gflops| gflops.is_finite());
        Record {
            version: FORMAT_VERSION,
            looptune_version: LOOPTUNE_VERSION.to_string(),
            tuner: context.tuner.clone(),
            workload: context.workload.clone(),
            target: context.target.clone(),
            config_index,
            config,
            costs,
            gflops,
            error,
            started_unix_s: unix_seconds(started),
            ended_unix_s: unix_seconds(ended),
        }
    }

    /// Whether the record counts for every query of the best config: no error, a finite positive
    /// median and, when it has one, a finite positive GFLOP/s (a hand-edited or damaged record
    /// with a negative throughput counts nowhere).
    pub fn is_valid(&self) -> bool {
        let positive = |value: f64| value.is_finite() && value > 0.0;
        self.error.is_none()
            && self
                .costs
                .as_ref()
                .is_some_and(|costs| positive(costs.median_s))
            && self.gflops.is_none_or(positive)
    }

    /// Whether a resumed run counts this record as measured: every record except those whose
    /// error was not the candidate's ([`looptune_runtime::MeasureErrorKind::Environment`]:
    /// the options, the worker, the machine's memory), which are measured again.
    pub fn counts_as_measured(&self) -> bool {
        self.error
            .as_ref()
            .is_none_or(|error| error.kind.is_the_candidates())
    }

    /// Whether the record was timed by a first stage only (see
    /// [`looptune_runtime::measure::Staging`]): a candidate far slower than the best of its
    /// run. Queries rank such records after every record timed in full.
    pub fn is_short(&self) -> bool {
        self.costs.as_ref().is_some_and(|costs| costs.short)
    }

    /// The median seconds per call of a valid record.
    pub fn median_s(&self) -> Option<f64> {
        if self.is_valid() {
            self.costs.as_ref().map(|costs| costs.median_s)
        } else {
            None
        }
    }

    /// The workload, parsed back from its key.
    pub fn parse_workload(&self) -> Result<Workload, looptune_ir::IrError> {
        self.workload.parse()
    }

    /// Whether this record belongs to the task (`key`, `target`): same task key and exactly
    /// the same target fingerprint.
    pub fn is_of_task(&self, key: &TaskKey, target: &TargetFingerprint) -> bool {
        self.workload == key.as_str() && &self.target == target
    }

    /// The first non-finite number in the costs or throughput, named, if any. JSON has no NaN
    /// or infinity (serde_json would write `null` and the line would not read back), so the
    /// writer refuses such a record instead.
    pub(crate) fn non_finite_field(&self) -> Option<(&'static str, f64)> {
        let mut fields: Vec<(&'static str, f64)> = vec![
            ("started_unix_s", self.started_unix_s),
            ("ended_unix_s", self.ended_unix_s),
        ];
        if let Some(gflops) = self.gflops {
            fields.push(("gflops", gflops));
        }
        if let Some(costs) = &self.costs {
            fields.push(("costs.median_s", costs.median_s));
            fields.push(("costs.min_s", costs.min_s));
            fields.extend(costs.all_s.iter().map(|&value| ("costs.all_s", value)));
        }
        fields.into_iter().find(|(_, value)| !value.is_finite())
    }
}

/// Seconds since the Unix epoch (negative before it, which no clock we run on reports).
pub fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Serializes a `u128` as a decimal string: JSON numbers lose precision past 2^53 in most
/// readers, and config indices of large spaces exceed even 2^64.
pub(crate) mod u128_string {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!(
                "config_index `{text}` is not a decimal integer below 2^128"
            ))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use looptune_runtime::measure::{MeasureErrorKind, MeasureResult};
    use looptune_space::KnobValue;
    use std::time::Duration;

    pub(crate) fn fingerprint(cpu_model: &str, threads: usize) -> TargetFingerprint {
        TargetFingerprint {
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
            backend: "cranelift".to_string(),
            backend_version: "looptune-jit 0.1.0 / cranelift 0.135".to_string(),
        }
    }

    fn result(outcome: Result<Costs, MeasureError>) -> MeasureResult {
        MeasureResult {
            outcome,
            compile_ms: Some(1.0),
            check_ms: Some(1.0),
            reference_ms: 0.0,
            checked_elements: 16,
            total_ms: 10.0,
        }
    }

    #[test]
    fn a_measurement_becomes_a_record_with_throughput_and_round_trips_through_json() {
        let workload: Workload = "matmul:m=4,n=4,k=4".parse().expect("parses");
        let context = RecordContext::new(&workload, fingerprint("Test CPU", 1), "random");
        let costs = Costs {
            median_s: 1e-6,
            min_s: 0.9e-6,
            number: 10,
            repeat: 3,
            all_s: vec![1e-6, 0.9e-6, 1.1e-6],
            short: false,
        };
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let record = Record::from_measurement(
            &context,
            u128::MAX,
            vec![("tile_i".to_string(), KnobValue::Split(vec![2, 2]))],
            &result(Ok(costs)),
            start,
            start + Duration::from_millis(250),
        );
        assert!(record.is_valid());
        assert_eq!(record.gflops, Some(128.0 / 1e-6 / 1e9));
        assert_eq!(record.workload, "matmul:m=4,n=4,k=4,transpose_b=false");
        let line = serde_json::to_string(&record).expect("serializes");
        assert!(line.contains(&format!("\"config_index\":\"{}\"", u128::MAX)));
        let back: Record = serde_json::from_str(&line).expect("deserializes");
        assert_eq!(back, record);
    }

    #[test]
    fn an_error_record_is_not_valid_and_has_no_throughput() {
        let workload: Workload = "matmul:m=4,n=4,k=4".parse().expect("parses");
        let context = RecordContext::new(&workload, fingerprint("Test CPU", 1), "grid");
        let error = MeasureError::new(MeasureErrorKind::Timeout, "no reply within 1 s");
        let record = Record::from_measurement(
            &context,
            7,
            Vec::new(),
            &result(Err(error.clone())),
            UNIX_EPOCH,
            UNIX_EPOCH,
        );
        assert!(!record.is_valid());
        assert_eq!(record.median_s(), None);
        assert_eq!(record.gflops, None);
        assert_eq!(record.error, Some(error));
    }

    #[test]
    fn fingerprints_name_their_differences_and_compatibility_ignores_model_and_threads() {
        let here = fingerprint("CPU A", 1);
        let there = fingerprint("CPU B", 2);
        assert_eq!(
            here.differences(&there),
            vec![
                "cpu_model `CPU B` instead of `CPU A`".to_string(),
                "threads `2` instead of `1`".to_string()
            ]
        );
        assert!(here.is_compatible_with(&there));
        let mut no_fma = there.clone();
        no_fma.features.fma = false;
        assert!(!here.is_compatible_with(&no_fma));
    }

    #[test]
    fn a_config_index_that_is_not_a_number_is_named() {
        let error = serde_json::from_str::<Wrapper>(r#"{"index":"12x"}"#).expect_err("refused");
        assert!(error.to_string().contains("config_index `12x`"), "{error}");
    }

    #[derive(Debug, Deserialize)]
    struct Wrapper {
        #[serde(with = "u128_string")]
        #[allow(dead_code)]
        index: u128,
    }
}
