//! `looptune run WORKLOAD`: compile a workload's schedule with the JIT, check its output, time
//! it and compare it with the peak measured in the same process.
//!
//! The order is the one every measurement in looptune keeps: a kernel's time only counts once
//! its output on random inputs matches a reference ([`super::check`]); a wrong answer is
//! reported (exit code 1) and not timed. The peak is measured after the kernel so that both
//! numbers come from the same process on the same machine state.
//!
//! The schedule is the operator's naive default, or a hand-written recipe from
//! `looptune_ir::recipes` (`--schedule register-tiled`, matmul only); once search spaces exist,
//! a config from a tuning log will be a third source.

use super::check::{self, Method, Outcome};
use super::input::{self, Usage};
use super::measure::{self, Timing};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use looptune::ir::random::SplitMix64;
use looptune::ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune::jit::{measure_peak, Backend, CraneliftBackend, Target};
use looptune::{lower, LoopNest, Schedule, Workload};
use std::time::Instant;

/// The seed of the random inputs: fixed, so that a wrong answer reproduces.
const INPUT_SEED: u64 = 0x100b_7e5e;

/// Where the schedule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScheduleSource {
    /// The operator's default schedule: correct and naive.
    Default,
    /// The hand-written BLIS-style matmul schedule: B packed, a register tile of accumulators
    /// (`--tile`), FMA, unrolled; the row-block loop runs in parallel when `--threads` > 1.
    RegisterTiled,
}

/// Arguments of `looptune run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workload, `op:key=value,...`, e.g. `matmul:m=256,n=256,k=256` (see `looptune ops`).
    workload: String,
    /// Which schedule to compile.
    #[arg(long, value_enum, default_value_t = ScheduleSource::Default)]
    schedule: ScheduleSource,
    /// Register tile `ROWSxCOLUMNS` of `--schedule register-tiled`.
    #[arg(long, default_value = "4x8")]
    tile: String,
    /// Unroll factor of the reduction loop in `--schedule register-tiled`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    unroll_k: i64,
    /// Data-layout choices of the operator definition for `--schedule default`, e.g. `pack=8`
    /// (matmul, dense).
    #[arg(long, default_value = "")]
    layout: String,
    /// Threads for parallel loops and for the peak measurement.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Check every output element with the reference interpreter, however long it takes
    /// (by default only workloads up to 2^25 FLOPs are; larger ones are checked at sampled
    /// points against the direct evaluator).
    #[arg(long)]
    full_check: bool,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
}

/// What a run found, before it is printed.
struct Report {
    workload: String,
    schedule: ScheduleSource,
    threads: usize,
    flops: f64,
    compile_ms: f64,
    check_ms: f64,
    check: Outcome,
    timing: Option<Timing>,
    peak_gflops: Option<f64>,
    target: Target,
}

impl Report {
    fn gflops(&self) -> Option<f64> {
        self.timing
            .as_ref()
            .map(|timing| self.flops / timing.median_seconds / 1e9)
    }

    fn ratio_to_peak(&self) -> Option<f64> {
        Some(self.gflops()? / self.peak_gflops?)
    }

    fn json(&self) -> anyhow::Result<serde_json::Value> {
        let timing = self.timing.as_ref();
        let schedule = self
            .schedule
            .to_possible_value()
            .map(|value| value.get_name().to_string());
        Ok(serde_json::json!({
            "workload": self.workload,
            "schedule": schedule,
            "threads": self.threads,
            "flops": self.flops,
            "gflops": self.gflops(),
            "peak_gflops": self.peak_gflops,
            "ratio_to_peak": self.ratio_to_peak(),
            "compile_ms": self.compile_ms,
            "correct": self.check.mismatch.is_none(),
            "check": self.check.method.name(),
            "checked_elements": self.check.points,
            "check_ms": self.check_ms,
            "median_ms": timing.map(|t| t.median_seconds * 1e3),
            "min_ms": timing.map(|t| t.min_seconds * 1e3),
            "number": timing.map(|t| t.number),
            "repeats": timing.map(|t| t.repeats),
            "target": serde_json::to_value(&self.target)?,
        }))
    }

    fn text(&self) -> String {
        let mut lines = vec![
            format!("workload    {}", self.workload),
            format!("compile     {:.2} ms", self.compile_ms),
        ];
        let oracle = match self.check.method {
            Method::Full => "every element against the reference interpreter",
            Method::Sampled => "sampled elements against the direct evaluator",
        };
        match &self.check.mismatch {
            None => lines.push(format!(
                "check       correct: {} {oracle} ({:.0} ms)",
                self.check.points, self.check_ms
            )),
            Some(mismatch) => lines.push(format!("check       WRONG ANSWER: {mismatch}")),
        }
        if let Some(timing) = &self.timing {
            lines.push(format!(
                "time        median {:.3} ms per call (min {:.3} ms; {} repeats of {} call{})",
                timing.median_seconds * 1e3,
                timing.min_seconds * 1e3,
                timing.repeats,
                timing.number,
                if timing.number == 1 { "" } else { "s" }
            ));
        }
        if let (Some(gflops), Some(peak), Some(ratio)) =
            (self.gflops(), self.peak_gflops, self.ratio_to_peak())
        {
            lines.push(format!(
                "throughput  {gflops:.2} GFLOP/s, {:.1}% of peak {peak:.1} GFLOP/s ({} thread{})",
                ratio * 100.0,
                self.threads,
                if self.threads == 1 { "" } else { "s" }
            ));
        }
        lines.join("\n")
    }
}

/// Parses `ROWSxCOLUMNS`.
fn parse_tile(text: &str) -> Result<(i64, i64), Usage> {
    let bad = || {
        Usage(format!(
            "tile `{text}` is not of the form ROWSxCOLUMNS, e.g. 4x8"
        ))
    };
    let (rows, columns) = text.split_once('x').ok_or_else(bad)?;
    let rows: i64 = rows.trim().parse().map_err(|_| bad())?;
    let columns: i64 = columns.trim().parse().map_err(|_| bad())?;
    if rows < 1 || columns < 1 {
        return Err(Usage(format!(
            "tile `{text}`: both sides must be at least 1"
        )));
    }
    Ok((rows, columns))
}

/// The schedule the arguments ask for.
fn schedule_for(args: &RunArgs, workload: &Workload) -> anyhow::Result<Schedule> {
    match args.schedule {
        ScheduleSource::Default => {
            let layout = input::layout(&args.layout)?;
            Ok(Schedule::new(&input::program(workload, &layout)?))
        }
        ScheduleSource::RegisterTiled => {
            let Workload::Matmul(params) = *workload else {
                return Err(Usage(format!(
                    "--schedule register-tiled is a matmul schedule, not one for `{}`",
                    workload.op_name()
                ))
                .into());
            };
            if !args.layout.is_empty() {
                return Err(Usage(
                    "--layout applies to --schedule default; register-tiled packs B itself"
                        .to_string(),
                )
                .into());
            }
            let (tile_rows, tile_columns) = parse_tile(&args.tile)?;
            let tiling = MatmulTiling {
                tile_rows,
                tile_columns,
                unroll_reduction: args.unroll_k,
                parallel: args.threads > 1,
            };
            // The workload parsed, so the only way the recipe fails is a tiling it rejects,
            // which is the user's choice.
            register_tiled_matmul(params, tiling).map_err(|err| Usage(err.to_string()).into())
        }
    }
}

/// Random inputs in `-1..1` for every input of `nest`, from `seed`.
fn random_inputs(nest: &LoopNest, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    nest.inputs
        .iter()
        .map(|&id| (0..nest.buffer(id).len()).map(|_| rng.unit_f32()).collect())
        .collect()
}

/// Compiles, checks, times and prints; see the module documentation.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let schedule = schedule_for(args, &workload)?;
    let nest =
        lower(&schedule).with_context(|| format!("lowering the schedule of `{workload}`"))?;
    let threads = args.threads as usize;
    let target = Target::host().with_threads(threads);

    let start = Instant::now();
    let kernel = CraneliftBackend::new()
        .compile(&nest, &target)
        .with_context(|| format!("compiling `{workload}`"))?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let inputs = random_inputs(&nest, INPUT_SEED);
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    // NaN, so that an element the kernel fails to write cannot pass the check by accident.
    let mut outputs: Vec<Vec<f32>> = nest
        .outputs
        .iter()
        .map(|&id| vec![f32::NAN; nest.buffer(id).len()])
        .collect();
    let mut output_refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    kernel
        .call(&input_refs, &mut output_refs)
        .context("calling the compiled kernel")?;

    let method = if args.full_check || workload.flops() <= check::FULL_CHECK_MAX_FLOPS {
        Method::Full
    } else {
        Method::Sampled
    };
    eprintln!("checking ({})...", method.name());
    let start = Instant::now();
    let outcome = check::check(schedule.program(), &nest, &input_refs, &outputs, method)?;
    let check_ms = start.elapsed().as_secs_f64() * 1e3;

    let mut report = Report {
        workload: workload.to_string(),
        schedule: args.schedule,
        threads,
        flops: workload.flops(),
        compile_ms,
        check_ms,
        check: outcome,
        timing: None,
        peak_gflops: None,
        target,
    };
    if report.check.mismatch.is_none() {
        eprintln!("timing...");
        let mut output_refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        report.timing = Some(measure::time_kernel(
            &kernel,
            &input_refs,
            &mut output_refs,
        )?);
        eprintln!("measuring the peak...");
        report.peak_gflops = Some(measure_peak(threads).context("measuring the peak")?.gflops);
    }

    if args.json {
        println!("{}", report.json()?);
    } else {
        println!("{}", report.text());
    }
    if let Some(mismatch) = &report.check.mismatch {
        bail!("wrong answer for `{workload}`: {mismatch}");
    }
    Ok(())
}
