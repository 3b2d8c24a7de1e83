//! `looptune run WORKLOAD`: compile a workload's schedule with the chosen backend, check its
//! output, time it and compare it with the full-width peak measured in the same process.
//!
//! The kernel goes through `looptune-runtime`'s `Measurer`, the one path by which looptune executes
//! generated code: compile, check the output on seeded random inputs against the reference
//! computed from the operator's definition (the interpreter on the whole output for small
//! workloads, the direct evaluator at sampled corners, edges and random points for large ones),
//! and only then time it (TVM's protocol: warm-up, calls per repeat grown until a repeat lasts
//! 50 ms, median of 5 repeats). A wrong answer is reported (exit code 1) and not timed. The peak
//! is measured afterwards in the same process, so both numbers share the machine's state.
//!
//! The kernel runs in this process by default (the schedules `run` offers are trusted);
//! `--isolate` runs it in a worker process (this binary's hidden `worker` command), as tuning
//! will. The schedule is the operator's naive default or a hand-written recipe from
//! `looptune_ir::recipes` (`--schedule register-tiled`, matmul only); once search spaces exist,
//! a config from a tuning log will be a third source.

use super::backends::BackendArgs;
use super::input::{self, Usage};
use super::schedule::ScheduleArgs;
use anyhow::{bail, Context};
use clap::Args;
use looptune::runtime::measure::CheckMode;
use looptune::runtime::{
    Backend, Costs, MeasureError, MeasureErrorKind, MeasureInput, MeasureOptions, MeasureResult,
    Measurer, Target,
};
use looptune::{lower, Layout};
use std::sync::Arc;
use std::time::Duration;

/// How long one kernel may take to compile, check and time. `run` is interactive and its
/// kernels may be naive and huge (a default-schedule 1024^3 matmul takes seconds per call), so
/// the bound only stops a runaway; Ctrl-C is the user's own limit.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// Arguments of `looptune run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workload, `op:key=value,...`, e.g. `matmul:m=256,n=256,k=256` (see `looptune ops`).
    workload: String,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Threads for parallel loops and for the peak measurement.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Check every output element with the reference interpreter, however long it takes (by
    /// default large workloads are checked at sampled points).
    #[arg(long)]
    full_check: bool,
    /// Run the kernel in a worker process, so that a crash is reported instead of ending
    /// looptune.
    #[arg(long)]
    isolate: bool,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

/// What a run found, before it is printed.
struct Report {
    workload: String,
    /// The throughput's unit and what its ratio to peak is of ([`super::peak::throughput_unit`]).
    unit: (&'static str, &'static str),
    schedule: &'static str,
    threads: usize,
    flops: f64,
    output_elements: usize,
    result: MeasureResult,
    peak_gflops: Option<f64>,
    target: Target,
    backend: looptune::runtime::BackendId,
}

impl Report {
    fn costs(&self) -> Option<&Costs> {
        self.result.outcome.as_ref().ok()
    }

    fn error(&self) -> Option<&MeasureError> {
        self.result.outcome.as_ref().err()
    }

    fn gflops(&self) -> Option<f64> {
        self.costs().map(|costs| costs.gflops(self.flops))
    }

    fn ratio_to_peak(&self) -> Option<f64> {
        Some(self.gflops()? / self.peak_gflops?)
    }

    /// `Some(true)` when the output matched, `Some(false)` on a wrong answer, `None` when the
    /// kernel never got as far as being checked.
    fn correct(&self) -> Option<bool> {
        match self.error() {
            None => Some(true),
            Some(error) if error.kind == MeasureErrorKind::WrongAnswer => Some(false),
            Some(_) => None,
        }
    }

    fn check_method(&self) -> &'static str {
        if self.result.checked_elements >= self.output_elements {
            "full"
        } else {
            "sampled"
        }
    }

    fn json(&self) -> anyhow::Result<serde_json::Value> {
        let costs = self.costs();
        Ok(serde_json::json!({
            "workload": self.workload,
            "schedule": self.schedule,
            "backend": self.backend.name,
            "backend_version": self.backend.version,
            "threads": self.threads,
            "flops": self.flops,
            "gflops": self.gflops(),
            "peak_gflops": self.peak_gflops,
            "ratio_to_peak": self.ratio_to_peak(),
            "compile_ms": self.result.compile_ms,
            "correct": self.correct(),
            "check": self.check_method(),
            "checked_elements": self.result.checked_elements,
            "check_ms": self.result.check_ms,
            "reference_ms": self.result.reference_ms,
            "median_ms": costs.map(|c| c.median_s * 1e3),
            "min_ms": costs.map(|c| c.min_s * 1e3),
            "number": costs.map(|c| c.number),
            "repeats": costs.map(|c| c.repeat),
            "error": self.error().map(|e| e.to_string()),
            "target": serde_json::to_value(&self.target)?,
        }))
    }

    fn text(&self) -> String {
        let mut lines = vec![
            format!("workload    {}", self.workload),
            format!(
                "backend     {} ({})",
                self.backend.name, self.backend.version
            ),
        ];
        if let Some(compile_ms) = self.result.compile_ms {
            lines.push(format!("compile     {compile_ms:.2} ms"));
        }
        if let Some(check_ms) = self
            .result
            .check_ms
            .filter(|_| self.correct() == Some(true))
        {
            let oracle = match self.check_method() {
                "full" => "every element against the reference interpreter",
                _ => "sampled elements against the direct evaluator",
            };
            lines.push(format!(
                "check       correct: {} {oracle} ({:.0} ms, reference {:.0} ms)",
                self.result.checked_elements, check_ms, self.result.reference_ms
            ));
        }
        if let Some(error) = self.error() {
            lines.push(format!("failed      {error}"));
        }
        if let Some(costs) = self.costs() {
            lines.push(format!(
                "time        median {:.3} ms per call (min {:.3} ms; {} repeats of {} call{})",
                costs.median_s * 1e3,
                costs.min_s * 1e3,
                costs.repeat,
                costs.number,
                if costs.number == 1 { "" } else { "s" }
            ));
        }
        if let (Some(gflops), Some(peak), Some(ratio)) =
            (self.gflops(), self.peak_gflops, self.ratio_to_peak())
        {
            let (unit, of_peak) = self.unit;
            lines.push(format!(
                "throughput  {gflops:.2} {unit}, {:.1}% {of_peak} {peak:.1} GFLOP/s ({} thread{})",
                ratio * 100.0,
                self.threads,
                if self.threads == 1 { "" } else { "s" }
            ));
        }
        lines.join("\n")
    }
}

/// The measurer `run` uses: TVM's timing defaults, a generous timeout, in this process unless
/// `--isolate` asks for a worker.
fn measurer(
    args: &RunArgs,
    target: Target,
    backend: &Arc<dyn Backend>,
) -> anyhow::Result<Measurer> {
    let check = if args.full_check {
        CheckMode::Full
    } else {
        CheckMode::Auto
    };
    let options = MeasureOptions::default()
        .with_timeout(TIMEOUT)
        .with_check(check);
    let worker = super::measuring::worker(!args.isolate)?;
    let (measurer, _) = looptune::measuring::measurer(&target, backend, options, &worker)
        .context("setting up the measurer")?;
    Ok(measurer)
}

/// Compiles, checks, times and prints; see the module documentation.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let threads = super::input::threads(args.threads)?;
    input::fits_in_memory(&workload)?;
    let selected = args.backend.select()?;
    let schedule = args
        .schedule
        .build(&workload, args.threads > 1, selected.backend.as_ref())?;
    let nest =
        lower(&schedule).with_context(|| format!("lowering the schedule of `{workload}`"))?;
    // The specification is the plain definition: whatever layout or cache stages the schedule
    // added, the kernel must compute what the operator means.
    let definition = workload
        .program(&Layout::default())
        .map_err(|err| Usage(err.to_string()))?;
    let output_elements = nest.outputs.iter().map(|&id| nest.buffer(id).len()).sum();
    let target = Target::host().with_threads(threads);

    eprintln!("compiling, checking and timing...");
    let mut measurer = measurer(args, target.clone(), &selected.backend)?;
    let result = measurer.measure_one(&MeasureInput::new(definition, nest, workload.flops()));
    let mut report = Report {
        workload: workload.to_string(),
        unit: super::peak::throughput_unit(&workload),
        schedule: args.schedule.name(),
        threads,
        flops: workload.flops(),
        output_elements,
        result,
        peak_gflops: None,
        target,
        backend: selected.backend.id(),
    };
    if report.result.is_ok() {
        eprintln!("measuring the peak...");
        report.peak_gflops = Some(super::peak::full_width(threads)?.gflops);
    }

    if args.json {
        println!("{}", report.json()?);
    } else {
        println!("{}", report.text());
    }
    if let Some(error) = report.error() {
        bail!("`{workload}`: {error}");
    }
    Ok(())
}
