//! `looptune run WORKLOAD`: compile a workload's default schedule with the JIT, check it against
//! the reference interpreter, time it and compare it with the peak measured in the same process.
//!
//! The order is the one every measurement in looptune keeps: a kernel's time only counts once
//! its output on random inputs matches the interpreter's; a wrong answer is reported (exit
//! code 1) and not timed. The peak is measured after the kernel so that both numbers come from
//! the same process on the same machine state.

use super::input;
use super::measure::{self, Timing};
use anyhow::{bail, Context};
use clap::Args;
use looptune::ir::eval::compare;
use looptune::ir::interp;
use looptune::ir::random::SplitMix64;
use looptune::jit::{measure_peak, Backend, CraneliftBackend, Target};
use looptune::{lower, LoopNest, Schedule};
use std::time::Instant;

/// The seed of the random inputs: fixed, so that a wrong answer reproduces.
const INPUT_SEED: u64 = 0x100b_7e5e;
/// Relative tolerance of the comparison with the interpreter, which computes in `f64`: the
/// kernel's `f32` accumulation differs from it by rounding, far below this.
const TOLERANCE: f64 = 1e-4;

/// Arguments of `looptune run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workload, `op:key=value,...`, e.g. `matmul:m=256,n=256,k=256` (see `looptune ops`).
    workload: String,
    /// Data-layout choices of the operator definition, e.g. `pack=8` (matmul, dense).
    #[arg(long, default_value = "")]
    layout: String,
    /// Threads for parallel loops and for the peak measurement.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
}

/// What a run found, before it is printed.
struct Report {
    workload: String,
    threads: usize,
    flops: f64,
    compile_ms: f64,
    check_ms: f64,
    mismatch: Option<String>,
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
        Ok(serde_json::json!({
            "workload": self.workload,
            "threads": self.threads,
            "flops": self.flops,
            "gflops": self.gflops(),
            "peak_gflops": self.peak_gflops,
            "ratio_to_peak": self.ratio_to_peak(),
            "compile_ms": self.compile_ms,
            "check_ms": self.check_ms,
            "correct": self.mismatch.is_none(),
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
        match &self.mismatch {
            None => lines.push(format!(
                "check       matches the reference interpreter ({:.0} ms)",
                self.check_ms
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

/// Random inputs in `-1..1` for every input of `nest`, from `seed`.
fn random_inputs(nest: &LoopNest, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::new(seed);
    nest.inputs
        .iter()
        .map(|&id| (0..nest.buffer(id).len()).map(|_| rng.unit_f32()).collect())
        .collect()
}

/// Output buffers filled with NaN, so that an element a kernel fails to write cannot pass the
/// comparison by accident.
fn poisoned_outputs(nest: &LoopNest) -> Vec<Vec<f32>> {
    nest.outputs
        .iter()
        .map(|&id| vec![f32::NAN; nest.buffer(id).len()])
        .collect()
}

/// Compiles, checks, times and prints; see the module documentation.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    let layout = input::layout(&args.layout)?;
    let program = input::program(&workload, &layout)?;
    let nest = lower(&Schedule::new(&program))
        .with_context(|| format!("lowering the default schedule of `{workload}`"))?;
    let threads = args.threads as usize;
    let target = Target::host().with_threads(threads);

    let start = Instant::now();
    let kernel = CraneliftBackend::new()
        .compile(&nest, &target)
        .with_context(|| format!("compiling `{workload}`"))?;
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;

    let inputs = random_inputs(&nest, INPUT_SEED);
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut outputs = poisoned_outputs(&nest);
    let mut output_refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    kernel
        .call(&input_refs, &mut output_refs)
        .context("calling the compiled kernel")?;

    eprintln!("checking against the reference interpreter...");
    let start = Instant::now();
    let mut expected = poisoned_outputs(&nest);
    let mut expected_refs: Vec<&mut [f32]> = expected.iter_mut().map(Vec::as_mut_slice).collect();
    interp::run(&nest, &input_refs, &mut expected_refs)
        .context("running the reference interpreter")?;
    let check_ms = start.elapsed().as_secs_f64() * 1e3;
    let mismatch = nest
        .outputs
        .iter()
        .zip(outputs.iter().zip(&expected))
        .find_map(|(&id, (actual, expected))| {
            compare(actual, expected, TOLERANCE).err().map(|m| {
                format!(
                    "output `{}` element {} is {}, the interpreter says {}",
                    nest.buffer(id).name,
                    m.index,
                    m.actual,
                    m.expected
                )
            })
        });

    let mut report = Report {
        workload: workload.to_string(),
        threads,
        flops: workload.flops(),
        compile_ms,
        check_ms,
        mismatch,
        timing: None,
        peak_gflops: None,
        target,
    };
    if report.mismatch.is_none() {
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
    if let Some(mismatch) = &report.mismatch {
        bail!("wrong answer for `{workload}`: {mismatch}");
    }
    Ok(())
}
