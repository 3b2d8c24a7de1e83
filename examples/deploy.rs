//! Deploy: the best tuned kernel of a workload, from a tuning log or a deploy database, with
//! none of the tuning half of looptune linked (no tuners, no XGBoost).
//!
//! ```sh
//! cargo run --release --no-default-features --example deploy -- quickstart.tunelog
//! cargo run --release -- export-db --out kernels.db quickstart.tunelog
//! cargo run --release --no-default-features --example deploy -- kernels.db
//! cargo run --release --no-default-features --example deploy -- kernels.db \
//!     --workload conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1
//! ```
//!
//! This is what a framework embedding looptune does at start-up: read the log (JSON lines, as
//! `looptune tune` and `examples/quickstart.rs` write it) or the bincode database of best
//! configs (`looptune export-db`), and with `looptune::best_kernel` get the workload's best
//! config on this target (exact target, else a compatible one, said so) compiled, and call it.
//! When the
//! file knows nothing usable for the workload, the template's fallback config is used and a
//! warning says so: the kernel is slower, never missing. A missing or damaged file is an error
//! with its path and what is wrong, never a panic.

#![forbid(unsafe_code)]

use anyhow::{bail, Result};
use clap::Parser;
use looptune::backend::{select, BackendChoice};
use looptune::ir::eval::{compare, evaluate_points};
use looptune::ir::random::SplitMix64;
use looptune::log::Source;
use looptune::runtime::measure::time_in_process;
use looptune::runtime::{MeasureOptions, Target};
use looptune::{Deployed, Origin, Workload};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Call the best tuned kernel of a workload, from a tuning log or a deploy database.
#[derive(Debug, Parser)]
struct Args {
    /// A tuning log (JSON lines) or a deploy database (`looptune export-db`).
    file: PathBuf,
    /// The workload, `op:key=value,...` (the default is what the quickstart tunes).
    #[arg(long, default_value = "matmul:m=256,n=256,k=256")]
    workload: String,
    /// Threads of the target (a log's records match only the thread count they were tuned at):
    /// from 1 to this host's hardware threads, the rule of the CLI's `--threads`.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Refuse to run the template's fallback config: fail unless the file holds a tuned config
    /// for this workload (for a service that must not start with an untuned kernel).
    #[arg(long)]
    require_tuned: bool,
}

/// Errors are printed as a chain of causes (`error: reading x: No such file`) and exit code 1,
/// never a panic.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", looptune::error_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    // The parse error names the workload and its bad part.
    let workload: Workload = args.workload.parse()?;
    // A mistyped dimension is refused here, naming the workload and the bytes it would take,
    // before any buffer is allocated.
    looptune::runtime::memory::check_program(
        &workload.to_string(),
        &workload.program(&looptune::Layout::default())?,
    )?;
    // The backend the kernels were tuned with is part of the target a record belongs to: C when
    // a compiler works here (as when tuning), else Cranelift.
    let selected = select(BackendChoice::Auto)?;
    if let Some(note) = &selected.note {
        eprintln!("{note}");
    }
    let backend = selected.backend;
    let threads = looptune::runtime::target::check_threads(args.threads)
        .map_err(|error| anyhow::anyhow!("--threads {error}"))?;
    let target = Target::host().with_threads(threads);

    // 1. Which config: the file's best for this workload and target (the file is a log or a
    //    database by its content), or the template's fallback, which says why.
    let file = args.file.display();
    let Deployed { kernel, chosen } =
        looptune::best_kernel(&args.file, workload, backend.as_ref(), &target)?;
    for warning in &chosen.warnings {
        eprintln!("warning: {warning}");
    }
    let origin = match &chosen.origin {
        Origin::Fallback { reason } => format!("the template's fallback: {reason}"),
        Origin::Tuned { source, gflops } => {
            let measured = gflops.map_or(String::new(), |gflops| {
                format!(", {gflops:.2} GFLOP/s when tuned")
            });
            match source {
                Source::CompatibleTarget { differences, .. } => format!(
                    "best of {file} for a compatible target ({}){measured}",
                    differences.join(", ")
                ),
                _ => format!("best of {file} for this target{measured}"),
            }
        }
    };
    if args.require_tuned && !chosen.origin.is_tuned() {
        bail!("{origin} (--require-tuned)");
    }
    println!("config      {origin}");
    println!("            {}", chosen.config);

    // 2. Call the compiled kernel on our own buffers.
    let program = chosen.task.reference_program()?;
    let mut random = SplitMix64::new(42);
    let inputs: Vec<Vec<f32>> = program
        .inputs()
        .into_iter()
        .map(|tensor| {
            (0..program.tensor(tensor).len())
                .map(|_| random.unit_f32())
                .collect()
        })
        .collect();
    let input_slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let output_tensor = program.outputs[0];
    let output_shape = program.tensor(output_tensor).shape.clone();
    let mut output = vec![0.0f32; program.tensor(output_tensor).len()];
    kernel.call(&input_slices, &mut [&mut output])?;

    // 3. Check a sample of elements against the operator's definition, then time it.
    let points = sample_points(&output_shape, 256, &mut random);
    let expected = evaluate_points(&program, &input_slices, output_tensor, &points)?;
    let actual: Vec<f32> = points
        .iter()
        .map(|point| output[flat_index(point, &output_shape)])
        .collect();
    if let Err(mismatch) = compare(&actual, &expected, 1e-4) {
        bail!(
            "the kernel's output at {:?} is {}, the definition says {}",
            points[mismatch.index],
            mismatch.actual,
            mismatch.expected
        );
    }
    println!(
        "checked     {} sampled elements of {} against the definition",
        points.len(),
        output.len()
    );
    let per_call = Duration::from_secs_f64(
        time_in_process(&MeasureOptions::default(), || {
            kernel.call(&input_slices, &mut [&mut output])
        })?
        .median_s,
    );
    println!(
        "kernel      {workload}: {:.3} ms per call, {:.2} GFLOP/s",
        per_call.as_secs_f64() * 1e3,
        workload.flops() / per_call.as_secs_f64() / 1e9
    );
    Ok(())
}

/// Every corner of `shape` and random points, `wanted` in all (or fewer for tiny outputs).
fn sample_points(shape: &[i64], wanted: usize, random: &mut SplitMix64) -> Vec<Vec<i64>> {
    let mut points: Vec<Vec<i64>> = (0..1usize << shape.len())
        .map(|corner| {
            shape
                .iter()
                .enumerate()
                .map(|(dim, &extent)| {
                    if corner >> dim & 1 == 1 {
                        extent - 1
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect();
    while points.len() < wanted {
        points.push(
            shape
                .iter()
                .map(|&extent| (random.next_u64() % extent as u64) as i64)
                .collect(),
        );
    }
    points.sort();
    points.dedup();
    points
}

/// The row-major position of `point` in a tensor of `shape`.
fn flat_index(point: &[i64], shape: &[i64]) -> usize {
    point
        .iter()
        .zip(shape)
        .fold(0, |flat, (&index, &extent)| flat * extent + index) as usize
}
