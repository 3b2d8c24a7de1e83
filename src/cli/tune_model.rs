//! `looptune tune-model NETWORK`: tune every layer of a built-in network into one log, the
//! layer of each batch chosen by the task scheduler, and report the model's estimated latency
//! before (fallback configs) and after, the network's measured latency both ways, and for a
//! memory-bound layer (a depthwise convolution) its GB/s against a copy of as many bytes.
//!
//! One line per round goes to stderr (the layer, why it was chosen, its best, the model
//! estimate); the report goes to stdout, as one JSON object with `--json`. A rerun with the same
//! log resumes: configs in the log are not measured again, and fallback figures come from it.
//!
//! `--shard INDEX/COUNT` (or `auto`, from a Slurm array or a Kubernetes Indexed Job) tunes only
//! the shard's layers ([`looptune::tune::shard`]: the same split on every machine) into the
//! shard's own log; `looptune merge` joins the shards' logs afterwards. `--transfer-from LOG`
//! (a merge of an earlier round) adds that log's records: those of the shard's layers count as
//! measured, and with `--tuner xgb` those of other layers of the same operator pre-train each
//! layer's model, through the xgb tuner's transfer from a log.

use super::logs::records_to_resume;
use super::measuring::{measurer, MeasureArgs};
use anyhow::Context;
use clap::{Args, ValueEnum};
use looptune::log::{merge_records, LogWriter, Record, TargetFingerprint};
use looptune::runtime::Target;
use looptune::space::Task;
use looptune::tune::scheduler::driver::{LayerOutcome, RoundObserver, RoundSummary};
use looptune::tune::{
    time_chains, tune_model, BuiltTuner, ChainLayer, Layer, ModelTask, ModelTuneOptions,
    ModelTuneReport, Network, Shard, ShardSpec, TaskCost, TransferSet, Tuner, TunerKind,
};
use std::path::{Path, PathBuf};

/// The built-in networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// ResNet-18's conv2d layers (C1-C12 of the TVM papers).
    Resnet18,
    /// MobileNet v1's depthwise layers (D1-D9), channel-blocked (NCHW8c).
    Mobilenet,
    /// BERT-base's GEMMs and attention batch_matmul at sequence length 128.
    BertBase,
    /// One CliqueNet block's convolutions (NCHW8c, each writing its slice of the block's
    /// concatenation buffer).
    Cliquenet,
}

impl NetworkArg {
    fn network(self) -> Network {
        match self {
            NetworkArg::Resnet18 => Network::Resnet18,
            NetworkArg::Mobilenet => Network::Mobilenet,
            NetworkArg::BertBase => Network::BertBase,
            NetworkArg::Cliquenet => Network::Cliquenet,
        }
    }
}

/// Which tuner searches each layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelTunerKind {
    /// Uniform sampling without replacement.
    Random,
    /// XGBoost over loop-nest features, pre-trained on the log's records of the other layers of
    /// the same operator.
    Xgb,
}

/// Arguments of `looptune tune-model`.
#[derive(Debug, Args)]
pub struct TuneModelArgs {
    /// The network.
    #[arg(value_enum)]
    network: NetworkArg,
    /// Tune the network quantized to 8 bits (u8 activations, i8 weights, i32 accumulators,
    /// requantized outputs; every kernel checked bit for bit): MobileNet (`qdepthwise_conv2d`
    /// and `qmatmul`) and ResNet-18 (`qconv2d`).
    #[arg(long)]
    int8: bool,
    /// The tuning log (default `looptune-NETWORK.tunelog`, with --shard
    /// `looptune-NETWORK.shard-INDEX-of-COUNT.tunelog`; created if missing, resumed if not).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Tune only this shard's layers: INDEX/COUNT (0/4 .. 3/4; balanced by FLOPs x trials, the
    /// same split on every machine), or `auto`: the index from SLURM_ARRAY_TASK_ID or
    /// JOB_COMPLETION_INDEX, the count from --shard-count, else LOOPTUNE_SHARD_COUNT, else
    /// SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "INDEX/COUNT|auto")]
    shard: Option<String>,
    /// The number of shards, for --shard auto (a resubmitted Slurm array task needs it: an
    /// array of one task says its count is 1).
    #[arg(long, requires = "shard", value_parser = clap::value_parser!(u32).range(1..))]
    shard_count: Option<u32>,
    /// Logs of an earlier round (the merge of every shard's log): their records of this run's
    /// layers count as measured, and with --tuner xgb their records of other layers of the same
    /// operator pre-train each layer's model. Repeatable.
    #[arg(long, value_name = "LOG")]
    transfer_from: Vec<PathBuf>,
    /// Configs to measure in this run (in this shard, with --shard), over all its layers.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    trials: u32,
    /// Stop starting batches after this many seconds.
    #[arg(long)]
    time_budget: Option<f64>,
    /// The tuner of every layer.
    #[arg(long, value_enum, default_value_t = ModelTunerKind::Random)]
    tuner: ModelTunerKind,
    /// Seed of the tuners' decisions (layer i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads for parallel loops of the kernels.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Configs per batch; each batch belongs to one layer.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Places of a batch given to the best configs of other layers of the same operator.
    #[arg(long, default_value_t = 2)]
    shared_per_batch: u32,
    #[command(flatten)]
    measure: MeasureArgs,
    #[command(flatten)]
    backend: super::backends::BackendArgs,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    /// Only the first N distinct layers (for tests and quick looks; the estimate then covers
    /// those layers only).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u32).range(1..))]
    max_layers: Option<u32>,
}

/// A line per round on stderr.
struct Lines;

impl RoundObserver for Lines {
    fn round_done(&mut self, summary: &RoundSummary) {
        let best = summary
            .best_gflops
            .map_or("-".to_string(), |gflops| format!("{gflops:.2}"));
        let model = summary.model_latency_s.map_or("-".to_string(), |seconds| {
            format!("{:.3} ms", seconds * 1e3)
        });
        eprintln!(
            "[{}/{}] round {} {} ({}): {} trials, best {best} GFLOP/s; model {model}",
            summary.total_trials,
            summary.budget,
            summary.round,
            summary.name,
            summary.pick.reason,
            summary.trials,
        );
    }

    fn interrupted(&self) -> bool {
        super::interrupt::requested()
    }
}

fn check_arguments(args: &TuneModelArgs) -> Result<Option<Shard>, super::Usage> {
    super::input::time_budget(args.time_budget)?;
    args.measure.options()?;
    shard(args)
}

/// The shard asked for, if any; errors name the bad value (or the environment variable).
fn shard(args: &TuneModelArgs) -> Result<Option<Shard>, super::Usage> {
    let Some(text) = &args.shard else {
        return Ok(None);
    };
    let usage = |error: looptune::tune::ShardError| super::Usage(format!("--shard: {error}"));
    let spec = ShardSpec::parse(text).map_err(usage)?;
    if let (ShardSpec::Fixed(_), Some(count)) = (spec, args.shard_count) {
        return Err(super::Usage(format!(
            "--shard-count {count} goes with --shard auto; --shard {text} names its count"
        )));
    }
    spec.resolve(args.shard_count.map(|count| count as usize), |name| {
        std::env::var(name).ok()
    })
    .map(Some)
    .map_err(usage)
}

/// Runs `looptune tune-model`.
pub fn run(args: &TuneModelArgs) -> anyhow::Result<()> {
    let shard = check_arguments(args)?;
    let network = if args.int8 {
        let plain = args.network.network();
        plain.quantized().ok_or_else(|| {
            super::Usage(format!(
                "--int8: {plain} has no quantized version (mobilenet and resnet18 have)"
            ))
        })?
    } else {
        args.network.network()
    };
    let log = args.log.clone().unwrap_or_else(|| match shard {
        Some(shard) => PathBuf::from(format!(
            "looptune-{network}.shard-{}-of-{}.tunelog",
            shard.index(),
            shard.count()
        )),
        None => PathBuf::from(format!("looptune-{network}.tunelog")),
    });
    let mut layers = network.layers();
    if let Some(limit) = args.max_layers {
        layers.truncate(limit as usize);
    }
    let model_layers = layers.len();
    if let Some(shard) = shard {
        let trials_per_layer = f64::from(args.trials) / model_layers.max(1) as f64;
        // An even share of the budget per layer: the scheduler's allocation is not known before
        // measuring, so the balance is by FLOPs.
        layers = shard.take(layers, |layer| {
            TaskCost::for_workload(&layer.workload, trials_per_layer)
        });
        let names: Vec<&str> = layers.iter().map(|layer| layer.name).collect();
        if layers.is_empty() {
            eprintln!(
                "looptune: shard {shard} has none of the {model_layers} layers of {network} \
                 (more shards than layers); {} stays empty",
                log.display()
            );
        } else {
            eprintln!(
                "looptune: shard {shard} of {network}: {} of {model_layers} layers ({})",
                layers.len(),
                names.join(" ")
            );
        }
    }
    let threads = super::input::threads(args.threads)?;
    let target = Target::host().with_threads(threads);
    let selected = args.backend.select()?;
    let tasks = layers
        .iter()
        .map(|layer| {
            looptune::backend::task_for(layer.workload, selected.backend.as_ref(), &target)
                .with_context(|| {
                    format!("building the task of {} `{}`", layer.name, layer.workload)
                })
        })
        .collect::<anyhow::Result<Vec<Task>>>()?;
    let model_tasks: Vec<ModelTask<'_>> = layers
        .iter()
        .zip(&tasks)
        .map(|(layer, task)| ModelTask {
            name: layer.name.to_string(),
            multiplicity: layer.multiplicity,
            task,
            fallback: task.fallback_config().ok(),
        })
        .collect();
    let fingerprint = TargetFingerprint::new(&target, selected.backend.as_ref());
    let mut transferred: Vec<Record> = Vec::new();
    for path in &args.transfer_from {
        transferred.extend(
            super::logs::read_with_warnings(path)
                .with_context(|| format!("--transfer-from {}", path.display()))?
                .records,
        );
    }
    if !args.transfer_from.is_empty() {
        eprintln!(
            "looptune: {} records from {} earlier log(s) count as measured{}",
            transferred.len(),
            args.transfer_from.len(),
            match args.tuner {
                ModelTunerKind::Xgb => " and pre-train the xgb models of other shapes",
                ModelTunerKind::Random => " (the random tuner learns nothing from them)",
            }
        );
    }
    // The run's own log and the earlier round's, each record once.
    let with_transferred =
        |own: Vec<Record>| merge_records(own.into_iter().chain(transferred.iter().cloned())).0;
    // Locked before it is read: a second run on this log is refused before it reads anything.
    let mut writer = LogWriter::open(&log).with_context(|| format!("opening {}", log.display()))?;
    let existing = with_transferred(records_to_resume(&log)?);
    super::interrupt::install()?;
    let mut measurer = measurer(
        &target,
        &selected.backend,
        args.measure.options()?,
        args.measure.in_process,
    )?;
    let options = ModelTuneOptions {
        trials: args.trials as usize,
        batch_size: args.batch_size as usize,
        time_budget: super::input::time_budget(args.time_budget)?,
        shared_per_round: args.shared_per_batch as usize,
        ..ModelTuneOptions::default()
    };
    let mut make_tuner = |position: usize| -> Result<Box<dyn Tuner + '_>, String> {
        let task = &tasks[position];
        let seed = args.seed.wrapping_add(position as u64);
        let (kind, transfer) = match args.tuner {
            ModelTunerKind::Random => (TunerKind::Random, None),
            ModelTunerKind::Xgb => {
                // The log as it stands now (other layers measured earlier in this run included)
                // and the earlier round's logs.
                let records = records_to_resume(&log).map_err(|error| format!("{error:#}"))?;
                let records = with_transferred(records);
                let (transfer, shipped) =
                    TransferSet::from_log_and_shipped(task, &records, &fingerprint);
                if !transfer.is_empty() {
                    eprintln!(
                        "looptune: {}: xgb pre-trained on {} records of {} workloads{}",
                        layers[position].name,
                        transfer.len(),
                        transfer.workloads().len(),
                        if shipped {
                            " (with records shipped with looptune)"
                        } else {
                            ""
                        }
                    );
                }
                (TunerKind::Xgb, Some(transfer))
            }
        };
        BuiltTuner::new(kind, task, seed, transfer)
            .map(BuiltTuner::into_tuner)
            .map_err(|error| error.to_string())
    };
    eprintln!(
        "looptune: tuning {} layers of {network} ({} trials over all, {} per batch); log: {}",
        model_tasks.len(),
        args.trials,
        args.batch_size,
        log.display()
    );
    let report = tune_model(
        &model_tasks,
        &mut make_tuner,
        &mut measurer,
        &mut writer,
        &fingerprint,
        &existing,
        &options,
        &mut Lines,
    )?;
    let tuner = match args.tuner {
        ModelTunerKind::Random => "random",
        ModelTunerKind::Xgb => "xgb",
    };
    // The lock is released before the log is read back for the chain.
    drop(writer);
    let peak = looptune::backend::full_width_peak(threads)
        .map(|peak| peak.gflops)
        .ok();
    // A shard holds part of the network: its chain would not be the network's latency.
    let chain = if shard.is_none() && !layers.is_empty() {
        Some(measured_latency(
            &log,
            &layers,
            &tasks,
            selected.backend.as_ref(),
            &target,
            &args.measure.options()?,
        )?)
    } else {
        None
    };
    // The copy runs on one thread: beside kernels on more, its ratio would mislead.
    let memory = if threads == 1 {
        layer_memory(&report.layers, &args.measure.options()?)?
    } else {
        Vec::new()
    };
    let figures = Figures {
        peak,
        chain,
        memory,
    };
    if args.json {
        let mut json = json_report(network, tuner, &log, threads, &report, &figures);
        json["shard"] = serde_json::json!(shard.map(|shard| shard.to_string()));
        json["model_layers"] = serde_json::json!(model_layers);
        println!("{}", serde_json::to_string(&json)?);
    } else {
        if let Some(shard) = shard {
            println!(
                "shard       {shard}: {} of the {model_layers} distinct layers; merge the shards' \
                 logs with `looptune merge`",
                report.layers.len()
            );
        }
        print_report(network, tuner, &log, threads, &report, &figures);
    }
    Ok(())
}

/// What the report adds to the tuning figures, measured after tuning in this process.
struct Figures {
    /// The full-width FMA peak, GFLOP/s.
    peak: Option<f64>,
    /// Seconds per pass of the network's chain of kernels: (fallback configs, tuned configs).
    chain: Option<(f64, f64)>,
    /// Per layer, in the report's order: the bandwidth figures of a memory-bound layer (empty
    /// with more than one thread).
    memory: Vec<Option<LayerMemory>>,
}

/// A memory-bound layer's tuned kernel against a copy of as many bytes, timed after tuning.
struct LayerMemory {
    /// The compulsory traffic (inputs read and outputs written once) over the tuned latency.
    gbytes_per_s: f64,
    /// A plain copy of as many bytes.
    copy_gbytes_per_s: f64,
}

/// Timings of each layer's copy, each on new buffers; the median is reported.
const COPY_ROUNDS: usize = 5;

/// The bandwidth figures of the memory-bound layers (depthwise convolutions) that have a tuned
/// latency: their compulsory traffic per second, and a copy of the same bytes timed now under
/// `options` ([`COPY_ROUNDS`] times on new buffers, the median).
fn layer_memory(
    layers: &[LayerOutcome],
    options: &looptune::runtime::MeasureOptions,
) -> anyhow::Result<Vec<Option<LayerMemory>>> {
    layers
        .iter()
        .map(|layer| {
            let Some(seconds) = layer.tuned_latency_s() else {
                return Ok(None);
            };
            if !super::memory::is_memory_bound(&layer.workload) {
                return Ok(None);
            }
            let bytes = super::memory::compulsory_bytes(&layer.workload)?;
            // The median of a few timings, each on buffers of its own: one can land on a busy
            // moment, and a copy's speed depends on where its buffers are (as the chain's does).
            let mut rates = (0..COPY_ROUNDS)
                .map(|_| super::memory::TimedCopy::new(bytes).gbytes_per_s(options))
                .collect::<anyhow::Result<Vec<f64>>>()
                .with_context(|| format!("a copy of {bytes} bytes beside {}", layer.name))?;
            rates.sort_by(f64::total_cmp);
            Ok(Some(LayerMemory {
                gbytes_per_s: bytes as f64 / seconds / 1e9,
                copy_gbytes_per_s: rates[rates.len() / 2],
            }))
        })
        .collect()
}

/// Rounds of the measured latency: each times the fallback chain and the tuned chain once, so
/// the two medians come from the same minutes of the machine and the same spread of buffer
/// placements.
const CHAIN_ROUNDS: usize = 9;

/// Times the network's layers back to back, as often as the network has each
/// ([`looptune::tune::time_chains`]), with every layer's fallback config and with the log's
/// best, in [`CHAIN_ROUNDS`] interleaved rounds; returns the (fallback, tuned) medians, seconds
/// per pass.
fn measured_latency(
    log: &Path,
    layers: &[Layer],
    tasks: &[Task],
    backend: &dyn looptune::runtime::Backend,
    target: &Target,
    options: &looptune::runtime::MeasureOptions,
) -> anyhow::Result<(f64, f64)> {
    eprintln!(
        "looptune: timing the network's kernels back to back ({CHAIN_ROUNDS} rounds, fallback \
         and tuned interleaved)..."
    );
    let mut fallback = Vec::with_capacity(layers.len());
    let mut tuned = Vec::with_capacity(layers.len());
    for (layer, task) in layers.iter().zip(tasks) {
        let config = task
            .fallback_config()
            .with_context(|| format!("the fallback config of {}", layer.name))?;
        let chain_layer = |schedule: &looptune::Schedule| -> anyhow::Result<ChainLayer> {
            Ok(ChainLayer {
                name: layer.name.to_string(),
                nest: looptune::lower(schedule)
                    .with_context(|| format!("lowering {}", layer.name))?,
                multiplicity: layer.multiplicity,
            })
        };
        fallback.push(chain_layer(&task.schedule(&config)?)?);
        let best = super::schedule::from_log(log, &layer.workload, target.threads > 1, backend)?;
        tuned.push(chain_layer(&best.schedule)?);
    }
    let seconds = time_chains(backend, target, &[&fallback, &tuned], CHAIN_ROUNDS, options)
        .context("timing the chain of kernels")?;
    Ok((seconds[0], seconds[1]))
}

fn milliseconds(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|seconds| seconds * 1e3)
}

fn speedup(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    before.zip(after).map(|(before, after)| before / after)
}

fn json_layer(
    layer: &LayerOutcome,
    peak: Option<f64>,
    memory: Option<&LayerMemory>,
) -> serde_json::Value {
    serde_json::json!({
        "name": layer.name,
        "workload": layer.workload.to_string(),
        "multiplicity": layer.multiplicity,
        "flops": layer.workload.flops(),
        "fallback_gflops": layer.fallback_gflops,
        "fallback_ms": milliseconds(layer.fallback_latency_s()),
        "best_gflops": layer.best_gflops,
        "ratio_to_peak": layer.best_gflops.zip(peak).map(|(best, peak)| best / peak),
        "tuned_ms": milliseconds(layer.tuned_latency_s()),
        "speedup": speedup(layer.fallback_latency_s(), layer.tuned_latency_s()),
        "trials": layer.trials,
        "logged_trials": layer.logged_trials,
        "errors": layer.errors,
        "environment_errors": layer.environment_errors,
        "shared_trials": layer.shared_trials,
        "best_is_shared": layer.best_is_shared,
        "gbytes_per_s": memory.map(|memory| memory.gbytes_per_s),
        "copy_gbytes_per_s": memory.map(|memory| memory.copy_gbytes_per_s),
        "ratio_to_copy": memory.map(|memory| memory.gbytes_per_s / memory.copy_gbytes_per_s),
    })
}

fn json_report(
    network: Network,
    tuner: &str,
    log: &Path,
    threads: usize,
    report: &ModelTuneReport,
    figures: &Figures,
) -> serde_json::Value {
    let (chain_before, chain_after) = figures.chain.unzip();
    serde_json::json!({
        "network": network.name(),
        "tuner": tuner,
        "layers": report
            .layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                json_layer(
                    layer,
                    figures.peak,
                    figures.memory.get(index).and_then(Option::as_ref),
                )
            })
            .collect::<Vec<_>>(),
        "peak_gflops": figures.peak,
        "model": {
            "before_ms": milliseconds(report.before_s()),
            "after_ms": milliseconds(report.after_s()),
            "speedup": speedup(report.before_s(), report.after_s()),
        },
        "measured": {
            "before_ms": milliseconds(chain_before),
            "after_ms": milliseconds(chain_after),
            "speedup": speedup(chain_before, chain_after),
        },
        "trials": report.trials,
        "rounds": report.rounds,
        "stop_reason": report.stop_reason.as_str(),
        "wall_s": report.wall.as_secs_f64(),
        "threads": threads,
        "log": log.display().to_string(),
    })
}

fn print_report(
    network: Network,
    tuner: &str,
    log: &Path,
    threads: usize,
    report: &ModelTuneReport,
    figures: &Figures,
) {
    let cell = |value: Option<f64>, digits: usize, suffix: &str| {
        value.map_or("-".to_string(), |v| format!("{v:.digits$}{suffix}"))
    };
    println!(
        "network     {network}: {} distinct layers, {} in the model; tuner {tuner}, {threads} thread(s)",
        report.layers.len(),
        report
            .layers
            .iter()
            .map(|layer| layer.multiplicity)
            .sum::<u32>()
    );
    // An 8-bit network's layers compute integer operations (a multiply-add is two), and their
    // ratio is to the f32 FMA peak, which they can pass.
    let (unit, of_peak) = if report
        .layers
        .iter()
        .all(|layer| layer.workload.is_quantized())
    {
        ("GOP/s", "of f32 pk")
    } else {
        ("GFLOP/s", "of peak")
    };
    // Bandwidth columns when the network has memory-bound layers (depthwise convolutions).
    let with_memory = figures.memory.iter().any(Option::is_some);
    let memory_cells = |memory: Option<&LayerMemory>| {
        if !with_memory {
            return String::new();
        }
        format!(
            " {:>7} {:>7}",
            cell(memory.map(|memory| memory.gbytes_per_s), 1, ""),
            cell(
                memory.map(|memory| 100.0 * memory.gbytes_per_s / memory.copy_gbytes_per_s),
                1,
                "%"
            )
        )
    };
    println!(
        "{:<7} {:>5} {:>12} {:>9} {:>9} {:>9} {:>8}{} {:>13} {:>7}",
        "layer",
        "mult",
        "fallback ms",
        "tuned ms",
        "speed-up",
        unit,
        of_peak,
        if with_memory {
            format!(" {:>7} {:>7}", "GB/s", "of copy")
        } else {
            String::new()
        },
        "trials run/log",
        "shared"
    );
    for (index, layer) in report.layers.iter().enumerate() {
        println!(
            "{:<7} {:>5} {:>12} {:>9} {:>9} {:>9} {:>8}{} {:>13} {:>7}",
            layer.name,
            layer.multiplicity,
            cell(milliseconds(layer.fallback_latency_s()), 3, ""),
            cell(milliseconds(layer.tuned_latency_s()), 3, ""),
            cell(
                speedup(layer.fallback_latency_s(), layer.tuned_latency_s()),
                2,
                "x"
            ),
            cell(layer.best_gflops, 2, ""),
            cell(
                layer
                    .best_gflops
                    .zip(figures.peak)
                    .map(|(best, peak)| 100.0 * best / peak),
                1,
                "%"
            ),
            memory_cells(figures.memory.get(index).and_then(Option::as_ref)),
            format!("{}/{}", layer.trials, layer.logged_trials),
            format!(
                "{}{}",
                layer.shared_trials,
                if layer.best_is_shared { "*" } else { "" }
            ),
        );
    }
    println!(
        "model       estimated latency (sum of multiplicity x latency): before {} ms with fallback configs, after {} ms tuned ({})",
        cell(milliseconds(report.before_s()), 3, ""),
        cell(milliseconds(report.after_s()), 3, ""),
        cell(speedup(report.before_s(), report.after_s()), 2, "x"),
    );
    if let Some((before, after)) = figures.chain {
        println!(
            "network     measured latency (each layer's kernel as often as the network has it, back to back; medians of {CHAIN_ROUNDS} interleaved rounds): before {:.3} ms with fallback configs, after {:.3} ms tuned ({:.2}x)",
            before * 1e3,
            after * 1e3,
            before / after
        );
    }
    if let Some(peak) = figures.peak {
        println!("peak        {peak:.2} GFLOP/s (full width, {threads} thread(s), after tuning)");
    }
    if figures.memory.iter().any(Option::is_some) {
        println!(
            "memory      GB/s of the memory-bound layers: inputs read and outputs written once, \
             over the tuned latency; of copy: against a copy of as many bytes on one thread, \
             timed after tuning (shown with --threads 1 only)"
        );
    }
    println!(
        "stopped     {} after {:.1} s: {} trials in {} batches, {} errors",
        report.stop_reason,
        report.wall.as_secs_f64(),
        report.trials,
        report.rounds,
        report
            .layers
            .iter()
            .map(|layer| layer.errors)
            .sum::<usize>()
    );
    super::tune::print_retry_line(
        report
            .layers
            .iter()
            .map(|layer| layer.environment_errors)
            .sum(),
    );
    println!("log         {}", log.display());
}
