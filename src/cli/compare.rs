//! `looptune tune-compare`: tuners against each other, several seeds each, on the same workloads.
//!
//! For every workload, tuner and seed the command runs a tuning session of `--trials` trials and
//! keeps its curve (best throughput after each trial). Per workload and tuner it then prints the
//! median over seeds of the trials needed to reach 95% of the best throughput *any* run found on
//! that workload (with each seed's count, and as a multiple of `random`'s median), and the median
//! best after 200 trials (after `--trials`, when fewer).
//!
//! Each run is the library's tuning loop (`TuningRun`), stepped by this command. The runs of a
//! workload advance in lockstep, one batch each in turn, so that the load of a
//! shared machine drifting during the comparison does not favour the runs that happened to go
//! first. Every config is measured once per workload: a config that several tuners or seeds propose is
//! timed the first time and its result (throughput or failure) serves every later proposal. This
//! cuts the wall time several-fold, and it is a fair comparison, arguably fairer than measuring
//! again: every tuner sees the same number for the same config, so measurement noise cannot
//! favour one of them. The output says how many trials the cache served. With `--log`, every new
//! measurement is appended to a tuning log and the log's earlier records of the same workload and
//! target fill the cache before the runs (a rerun with more seeds or another tuner measures only
//! what is new).
//!
//! Time is reported too, because staged timing makes trials unequal: per run, the seconds to
//! reach 90% and 95% of the best, on the clock the run would have had alone. Each trial is
//! charged what measuring its config cost when it was first measured (its share of the batch's
//! compile time and its own measurement), served from the cache or not, and each batch the
//! run's own time (proposing, learning, lowering) spread over its trials.
//!
//! Transfer learning is measured the same way: with `--transfer-log`, the log's records of other
//! shapes of each workload's operator pre-train an extra `xgb+transfer` tuner per seed, next to
//! plain `xgb` with the same seeds; with `--shipped`, the records looptune ships do the same for
//! an `xgb+shipped` tuner (a new user's first run: never cold). Plain `xgb` here is cold.

use super::input;
use super::logs::{read_with_warnings, records_to_resume};
use super::measuring::{measurer, MeasureArgs};
use super::tune::tuner_parser;
use anyhow::Context;
use clap::Args;
use looptune::log::{measured, LogWriter, Record, RecordContext, TargetFingerprint};
use looptune::runtime::measure::Costs;
use looptune::runtime::{
    MeasureError, MeasureErrorKind, MeasureInput, MeasureResult, Measurer, MemoryError, Target,
};
use looptune::space::Config;
use looptune::tune::{BuiltTuner, Measure, NoLog, TransferSet, TuneOptions, TunerKind, TuningRun};
use looptune::{Program, Workload};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// The workloads `--reference` compares: matmul 512^3, ResNet-18 C2, MobileNet D3.
const DEFAULT_WORKLOADS: &[&str] = &[
    "matmul:m=512,n=512,k=512",
    "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
    "depthwise_conv2d:n=1,c=128,h=56,w=56,kh=3,kw=3,stride=1,pad=1",
];

/// The trial at which the "best after" column is read.
const BEST_AFTER: usize = 200;

/// The share of the best throughput a run must reach.
const TARGET_SHARE: f64 = 0.95;

/// The shares of the best whose seconds are reported.
const TIME_SHARES: [f64; 2] = [0.90, 0.95];

/// Arguments of `looptune tune-compare`: every config is measured once and serves every run
/// that proposes it.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A workload to compare on (repeat the flag for several).
    #[arg(long = "workload")]
    workloads: Vec<String>,
    /// Compare on the reference workloads: matmul 512^3, ResNet-18 C2 and MobileNet D3 (with the
    /// defaults, an hour or more of measuring; it is never started by a bare `tune-compare`).
    #[arg(long)]
    reference: bool,
    /// A tuner to compare (repeat the flag for several); default: random and xgb.
    #[arg(long = "tuner", value_parser = tuner_parser())]
    tuners: Vec<TunerKind>,
    /// Seeds per tuner (0, 1, ...).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
    /// Trials per run.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    trials: u32,
    /// Configs proposed per batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Append every new measurement to this log, and reuse its records of the same workloads and
    /// target instead of measuring them again.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Also run `xgb+transfer`: xgb pre-trained on this log's records of other shapes of each
    /// workload's operator.
    #[arg(long)]
    transfer_log: Option<PathBuf>,
    /// Also run `xgb+shipped`: xgb pre-trained on the records looptune ships of each workload's
    /// operator, its own shape's among them when it is a reference workload (what `tune` adds
    /// to its log's records: a new user's first run).
    #[arg(long)]
    shipped: bool,
    /// Threads for parallel loops of the kernels.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    #[command(flatten)]
    measure: MeasureArgs,
    #[command(flatten)]
    backend: super::backends::BackendArgs,
    /// Print a JSON array of rows on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
}

/// What the runs of one tuner on one workload did.
struct Row {
    workload: Workload,
    tuner: String,
    /// Per seed: best throughput after each trial (0 before anything succeeded).
    curves: Vec<Vec<f64>>,
    /// Per seed: the run's own seconds at the end of each trial (see the module doc).
    clocks: Vec<Vec<f64>>,
}

/// Measurements of one workload, each config measured once (see the module doc): the
/// [`Measure`] every run of the workload goes through.
struct Cache<'a> {
    measurer: &'a mut Measurer,
    flops: f64,
    results: HashMap<u128, Option<f64>>,
    measured: usize,
    served: usize,
    measure_time: Duration,
    log: Option<(&'a mut LogWriter, RecordContext)>,
    /// Records of new measurements not yet appended to the log.
    pending: Vec<Record>,
    /// What measuring each config cost, in seconds: its share of its batch's compile time
    /// and its measurement.
    cost_s: HashMap<u128, f64>,
    /// Compile seconds of configs prepared and not yet measured.
    compile_share_s: HashMap<u128, f64>,
    /// The cost of every trial served since [`Cache::take_charges`], in order.
    charges: Vec<f64>,
    /// Time spent inside the cache (preparing and measuring), for the runs' own time.
    busy: Duration,
}

impl Cache<'_> {
    /// The costs of the trials served since the last call, in order.
    fn take_charges(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.charges)
    }

    /// Appends the new measurements since the last call to the log, in one write.
    fn flush(&mut self) -> anyhow::Result<()> {
        if let Some((writer, _)) = &mut self.log {
            if !self.pending.is_empty() {
                writer.append_batch(&self.pending)?;
            }
        }
        self.pending.clear();
        Ok(())
    }
}

impl Measure for Cache<'_> {
    fn check_memory(&self, key: &str, program: &Program) -> Result<(), MemoryError> {
        self.measurer.check_memory(key, program)
    }

    fn prepare(&mut self, batch: &[(&Config, &MeasureInput)]) {
        // The configs not measured yet, prepared together (the C backend compiles them in
        // parallel); `measure` then measures them one by one.
        let fresh: Vec<(u128, &MeasureInput)> = batch
            .iter()
            .filter(|(config, _)| !self.results.contains_key(&config.index()))
            .map(|(config, input)| (config.index(), *input))
            .collect();
        let started = Instant::now();
        Measurer::prepare(self.measurer, fresh.iter().map(|(_, input)| *input));
        let elapsed = started.elapsed();
        self.busy += elapsed;
        let share = elapsed.as_secs_f64() / fresh.len().max(1) as f64;
        for (index, _) in fresh {
            self.compile_share_s.insert(index, share);
        }
    }

    fn measure(&mut self, config: &Config, input: &MeasureInput) -> MeasureResult {
        self.served += 1;
        if let Some(&known) = self.results.get(&config.index()) {
            let cost = self.cost_s.get(&config.index()).copied().unwrap_or(0.0);
            self.charges.push(cost);
            return known_result(known, self.flops);
        }
        let started = Instant::now();
        let started_at = SystemTime::now();
        let result = self.measurer.measure_one(input);
        let gflops = result
            .outcome
            .as_ref()
            .ok()
            .map(|costs| costs.gflops(self.flops))
            .filter(|gflops| gflops.is_finite());
        if let Some((_, context)) = &self.log {
            self.pending.push(Record::from_measurement(
                context,
                config.index(),
                config.to_values(),
                &result,
                started_at,
                SystemTime::now(),
            ));
        }
        let elapsed = started.elapsed();
        self.measure_time += elapsed;
        self.busy += elapsed;
        let cost =
            elapsed.as_secs_f64() + self.compile_share_s.remove(&config.index()).unwrap_or(0.0);
        self.cost_s.insert(config.index(), cost);
        self.charges.push(cost);
        self.measured += 1;
        self.results.insert(config.index(), gflops);
        // The run that measured it sees what every later proposal will be served (the
        // throughput, through the same rounding), so a rerun from the log gives the same table.
        match result.outcome {
            Ok(_) => known_result(gflops, self.flops),
            Err(_) => result,
        }
    }
}

/// A measurement served from the cache: the throughput it had, or a failure.
fn known_result(gflops: Option<f64>, flops: f64) -> MeasureResult {
    MeasureResult::known(match gflops {
        Some(gflops) if gflops > 0.0 => Ok(Costs::at_throughput(gflops, flops)),
        _ => Err(MeasureError::new(
            MeasureErrorKind::RuntimeError,
            "failed when first measured (served from tune-compare's cache)",
        )),
    })
}

/// One run of one tuner and seed: the library's tuning loop, advanced a batch at a time.
struct Run<'t> {
    name: String,
    seed: u64,
    tuner: BuiltTuner<'t>,
    run: TuningRun<'t>,
    stopped: bool,
    /// The run's own seconds at the end of each trial (see the module doc).
    clock: Vec<f64>,
}

impl Run<'_> {
    /// Advances the run by one batch through `cache`, charging its trials to its clock: each
    /// measured trial what its config cost, plus the batch's own time outside the cache spread
    /// evenly (a config that failed to lower costs only that share).
    fn step(&mut self, cache: &mut Cache<'_>) -> anyhow::Result<()> {
        let trials_before = self.run.curve().len();
        let busy_before = cache.busy;
        let started = Instant::now();
        let stop = self
            .run
            .step(self.tuner.as_tuner(), cache, &mut NoLog, &mut ())?;
        self.stopped = stop.is_some();
        let own = started
            .elapsed()
            .saturating_sub(cache.busy - busy_before)
            .as_secs_f64();
        let charges = cache.take_charges();
        let trials = self.run.curve().len() - trials_before;
        let mut clock = self.clock.last().copied().unwrap_or(0.0);
        for trial in 0..trials {
            clock += own / trials as f64 + charges.get(trial).copied().unwrap_or(0.0);
            self.clock.push(clock);
        }
        Ok(())
    }
}

/// The trial (from 1) at which `curve` first reaches `target`, if it does.
fn trials_to_reach(curve: &[f64], target: f64) -> Option<usize> {
    curve
        .iter()
        .position(|&best| best >= target)
        .map(|position| position + 1)
}

/// The median of `values`, where `None` (never reached) counts as more than any number; `None`
/// when the median itself is such a value. An even count averages the two middle values.
fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut sorted: Vec<f64> = values
        .iter()
        .map(|value| value.unwrap_or(f64::INFINITY))
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let value = if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    };
    value.is_finite().then_some(value)
}

/// What the runs of one row did against the best throughput any run found.
#[derive(Debug, PartialEq)]
struct Summary {
    /// Per seed, the trial at which the run reached 95% of the best (`None`: it never did).
    trials_to_target: Vec<Option<usize>>,
    /// The median of those.
    median_to_target: Option<f64>,
    /// The median best after [`BEST_AFTER`] trials (after the whole run, when shorter).
    median_best_after: Option<f64>,
    /// Per share of [`TIME_SHARES`], the median over seeds of the run's own seconds to reach
    /// it (`None`: the median run never did).
    median_seconds_to: [Option<f64>; 2],
}

impl Summary {
    /// The per-seed trials as text, `-` for a run that never got there.
    fn per_seed(&self) -> String {
        let texts: Vec<String> = self
            .trials_to_target
            .iter()
            .map(|trials| trials.map_or("-".to_string(), |t| t.to_string()))
            .collect();
        texts.join(" ")
    }
}

/// Trials to 95% of `best` per seed and their median, and the median best after
/// [`BEST_AFTER`] trials, of a row.
fn summarise(row: &Row, best: f64) -> Summary {
    let target = TARGET_SHARE * best;
    let trials_to_target: Vec<Option<usize>> = row
        .curves
        .iter()
        .map(|curve| {
            if best > 0.0 {
                trials_to_reach(curve, target)
            } else {
                None
            }
        })
        .collect();
    let as_f64: Vec<Option<f64>> = trials_to_target
        .iter()
        .map(|trials| trials.map(|t| t as f64))
        .collect();
    let after: Vec<Option<f64>> = row
        .curves
        .iter()
        .map(|curve| {
            curve
                .get(BEST_AFTER.min(curve.len()).saturating_sub(1))
                .copied()
        })
        .collect();
    let median_seconds_to = TIME_SHARES.map(|share| {
        let seconds: Vec<Option<f64>> = row
            .curves
            .iter()
            .zip(&row.clocks)
            .map(|(curve, clock)| {
                let trial = trials_to_reach(curve, share * best).filter(|_| best > 0.0)?;
                clock.get(trial - 1).copied()
            })
            .collect();
        median(&seconds)
    });
    Summary {
        median_to_target: median(&as_f64),
        median_best_after: median(&after),
        trials_to_target,
        median_seconds_to,
    }
}

/// Runs `looptune tune-compare`.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let measure = args.measure.options()?;
    let mut texts: Vec<&str> = args.workloads.iter().map(String::as_str).collect();
    if args.reference {
        texts.extend(DEFAULT_WORKLOADS);
    }
    if texts.is_empty() {
        return Err(super::Usage(
            "no workload: give --workload W (repeatable) or --reference (matmul 512^3, ResNet-18 C2, MobileNet D3)"
                .to_string(),
        )
        .into());
    }
    let threads = super::input::threads(args.threads)?;
    let target = Target::host().with_threads(threads);
    let selected = args.backend.select()?;
    let mut tasks = Vec::with_capacity(texts.len());
    for text in texts {
        let workload = input::workload(text)?;
        input::fits_in_memory(&workload)?;
        tasks.push(
            looptune::backend::task_for(workload, selected.backend.as_ref(), &target)
                .with_context(|| format!("building the task of `{workload}`"))?,
        );
    }
    let mut tuners = if args.tuners.is_empty() {
        vec![TunerKind::Random, TunerKind::Xgb]
    } else {
        args.tuners.clone()
    };
    tuners.dedup();
    let fingerprint = TargetFingerprint::new(&target, selected.backend.as_ref());
    let mut measurer = measurer(&target, &selected.backend, measure, args.measure.in_process)?;
    let existing = match &args.log {
        Some(path) => records_to_resume(path)?,
        None => Vec::new(),
    };
    let mut writer = match &args.log {
        Some(path) => {
            Some(LogWriter::open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => None,
    };
    let transfer_records = match &args.transfer_log {
        Some(path) => Some(read_with_warnings(path)?.records),
        None => None,
    };
    let (trials, batch_size, seeds) = (
        args.trials as usize,
        args.batch_size as usize,
        args.seeds as u64,
    );

    let started = Instant::now();
    let mut rows: Vec<(Row, f64)> = Vec::new();
    let mut total_served = 0;
    let mut total_measured = 0;
    let mut total_measure_time = Duration::ZERO;
    for task in &tasks {
        let workload = *task.workload();
        let context = RecordContext::new(&workload, fingerprint.clone(), "tune-compare");
        let mut cache = Cache {
            measurer: &mut measurer,
            flops: task.flops(),
            results: HashMap::new(),
            measured: 0,
            served: 0,
            measure_time: Duration::ZERO,
            log: writer.as_mut().map(|writer| (writer, context.clone())),
            pending: Vec::new(),
            cost_s: HashMap::new(),
            compile_share_s: HashMap::new(),
            charges: Vec::new(),
            busy: Duration::ZERO,
        };
        // The log's results for this workload and target fill the cache.
        let known = measured(&existing, workload, &fingerprint);
        let key = looptune::TaskKey::of_workload(&workload);
        for record in &existing {
            if record.is_of_task(&key, &fingerprint) && known.contains_index(record.config_index) {
                cache
                    .results
                    .entry(record.config_index)
                    .or_insert(record.gflops.filter(|g| g.is_finite()));
                // What measuring it took then (its compile time is not in the record).
                cache
                    .cost_s
                    .entry(record.config_index)
                    .or_insert((record.ended_unix_s - record.started_unix_s).max(0.0));
            }
        }
        let reused = cache.results.len();
        let transfer: Option<TransferSet> = transfer_records
            .as_ref()
            .map(|records| TransferSet::from_records(task, records, &fingerprint));
        if let Some(set) = &transfer {
            eprintln!(
                "{workload}: transfer from {} rows of {} other workloads ({} skipped)",
                set.len(),
                set.workloads().len(),
                set.skipped()
            );
        }
        let shipped = args
            .shipped
            .then(|| TransferSet::shipped(task, &selected.backend.id().name));
        if let Some(set) = &shipped {
            eprintln!(
                "{workload}: shipped records give {} rows of {} workloads",
                set.len(),
                set.workloads().len()
            );
        }
        let mut kinds: Vec<(TunerKind, String, Option<&TransferSet>)> = tuners
            .iter()
            .map(|&kind| (kind, kind.name().to_string(), None))
            .collect();
        if let Some(set) = &transfer {
            kinds.push((TunerKind::Xgb, "xgb+transfer".to_string(), Some(set)));
        }
        if let Some(set) = &shipped {
            kinds.push((TunerKind::Xgb, "xgb+shipped".to_string(), Some(set)));
        }
        // All runs advance in lockstep, a batch each in turn, so that a change in the machine's
        // load during the comparison falls on every tuner and seed alike.
        // Tuners are compared by their trial curves: no finalists.
        let options = TuneOptions {
            trials,
            batch_size,
            ..TuneOptions::default()
        };
        let mut runs = Vec::new();
        for (kind, name, transfer) in kinds {
            for seed in 0..seeds {
                runs.push(Run {
                    name: name.clone(),
                    seed,
                    tuner: BuiltTuner::new(kind, task, seed, transfer.cloned())?,
                    run: TuningRun::new(task, &context, &[], options.clone())?,
                    stopped: false,
                    clock: Vec::new(),
                });
            }
        }
        let mut round = 0;
        loop {
            let mut progressed = false;
            for run in runs.iter_mut().filter(|run| !run.stopped) {
                run.step(&mut cache)?;
                progressed |= !run.stopped;
            }
            cache.flush()?;
            if !progressed {
                break;
            }
            round += 1;
            if round % 5 == 0 {
                let trials_done = runs
                    .iter()
                    .map(|run| run.run.curve().len())
                    .max()
                    .unwrap_or(0);
                eprintln!(
                    "{workload}: {trials_done} trials per run, {} measured, {:.0} s",
                    cache.measured,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let mut workload_rows: Vec<Row> = Vec::new();
        for run in runs {
            let curve = run.run.curve().to_vec();
            eprintln!(
                "{workload} {} seed {}: {} trials, best {:.2} GFLOP/s",
                run.name,
                run.seed,
                curve.len(),
                curve.last().copied().unwrap_or(0.0)
            );
            match workload_rows.last_mut() {
                Some(row) if row.tuner == run.name => {
                    row.curves.push(curve);
                    row.clocks.push(run.clock);
                }
                _ => workload_rows.push(Row {
                    workload,
                    tuner: run.name,
                    curves: vec![curve],
                    clocks: vec![run.clock],
                }),
            }
        }
        let best = workload_rows
            .iter()
            .flat_map(|row| row.curves.iter())
            .filter_map(|curve| curve.last().copied())
            .fold(0.0f64, f64::max);
        eprintln!(
            "{workload}: {} trials served by {} measurements ({reused} reused from the log)",
            cache.served, cache.measured
        );
        total_served += cache.served;
        total_measured += cache.measured;
        total_measure_time += cache.measure_time;
        rows.extend(workload_rows.into_iter().map(|row| (row, best)));
    }

    let summaries: Vec<Summary> = rows
        .iter()
        .map(|(row, best)| summarise(row, *best))
        .collect();
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .zip(&summaries)
            .map(|((row, _), summary)| {
                serde_json::json!({
                    "workload": row.workload.to_string(),
                    "tuner": row.tuner,
                    "median_trials_to_95": summary.median_to_target,
                    "median_best_after_200_gflops": summary.median_best_after,
                    "median_seconds_to_90": summary.median_seconds_to[0],
                    "median_seconds_to_95": summary.median_seconds_to[1],
                    "trials_to_95_per_seed": summary.trials_to_target,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&json)?);
        return Ok(());
    }
    let peak = super::peak::full_width(threads)?;
    let after = BEST_AFTER.min(trials);
    println!(
        "{} seeds x {trials} trials per tuner; {threads} thread(s); peak {:.1} GFLOP/s (same run)",
        seeds, peak.gflops
    );
    println!(
        "each config measured once per workload and shared by every tuner and seed that proposed it: {total_served} trials, {total_measured} measurements ({:.0} s measuring, {:.0} s in all)",
        total_measure_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let width = rows
        .iter()
        .map(|(row, _)| row.workload.to_string().len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<width$}  {:<13}  {:>10}  {:>22}  {:>9}  {:>14}  {:>9}  {:>9}  trials to 95% per seed",
        "workload",
        "tuner",
        "best any",
        "median trials to 95%",
        "vs random",
        format!("median best@{after}"),
        "s to 90%",
        "s to 95%"
    );
    for ((row, best), summary) in rows.iter().zip(&summaries) {
        let random = rows
            .iter()
            .zip(&summaries)
            .find(|((other, _), _)| other.workload == row.workload && other.tuner == "random")
            .and_then(|(_, random)| random.median_to_target);
        let seconds = |value: Option<f64>| value.map_or("-".to_string(), |s| format!("{s:.1}"));
        println!(
            "{:<width$}  {:<13}  {:>10.2}  {:>22}  {:>9}  {:>14}  {:>9}  {:>9}  {}",
            row.workload.to_string(),
            row.tuner,
            best,
            summary
                .median_to_target
                .map_or(format!("> {trials}"), |t| format!("{t}")),
            ratio_text(summary.median_to_target, random),
            summary
                .median_best_after
                .map_or("-".to_string(), |g| format!("{g:.2}")),
            seconds(summary.median_seconds_to[0]),
            seconds(summary.median_seconds_to[1]),
            summary.per_seed()
        );
    }
    Ok(())
}

/// A row's median trials to 95% as a multiple of random's on the same workload (`-` when either
/// median is unknown: no random row, or a median run that never got there).
fn ratio_text(median: Option<f64>, random: Option<f64>) -> String {
    match (median, random) {
        (Some(median), Some(random)) if random > 0.0 => format!("{:.2}x", median / random),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_to_reach_counts_from_one() {
        assert_eq!(trials_to_reach(&[1.0, 2.0, 5.0, 5.0], 4.0), Some(3));
        assert_eq!(trials_to_reach(&[1.0, 2.0], 4.0), None);
    }

    #[test]
    fn the_median_treats_never_reached_as_more_than_any_number() {
        assert_eq!(median(&[Some(3.0), None, Some(1.0)]), Some(3.0));
        assert_eq!(median(&[Some(3.0), None, None]), None);
        assert_eq!(median(&[Some(2.0), Some(4.0)]), Some(3.0));
        assert_eq!(median(&[Some(2.0), None]), None);
    }

    #[test]
    fn rows_are_summarised_against_the_best_of_any_run() {
        let row = Row {
            workload: "matmul:m=4,n=4,k=4".parse().expect("parses"),
            tuner: "random".to_string(),
            curves: vec![
                vec![1.0, 9.6, 9.6],
                vec![1.0, 1.0, 10.0],
                vec![2.0, 2.0, 2.0],
            ],
            clocks: vec![
                vec![1.0, 2.0, 3.0],
                vec![0.5, 0.6, 9.0],
                vec![1.0, 2.0, 3.0],
            ],
        };
        let summary = summarise(&row, 10.0);
        // 90% (9.0) at 2.0 s, 9.0 s and never: median 9.0; 95% (9.5) likewise.
        assert_eq!(summary.median_seconds_to, [Some(9.0), Some(9.0)]);
        assert_eq!(summary.trials_to_target, vec![Some(2), Some(3), None]);
        assert_eq!(summary.per_seed(), "2 3 -");
        assert_eq!(summary.median_to_target, Some(3.0));
        assert_eq!(summary.median_best_after, Some(9.6));
    }

    #[test]
    fn ratios_to_random_need_both_medians() {
        assert_eq!(ratio_text(Some(10.0), Some(40.0)), "0.25x");
        assert_eq!(ratio_text(None, Some(40.0)), "-");
        assert_eq!(ratio_text(Some(10.0), None), "-");
    }
}
