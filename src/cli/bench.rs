//! `looptune bench WORKLOAD`: the figures a user can trust, taken in one process: the log's best
//! config for this target and backend (or the template's fallback), `matrixmultiply`'s sgemm on
//! the same GEMM where the workload is one, and the host's full-width FMA peak, interleaved over
//! several rounds so that all three see the same machine state; medians are reported.
//!
//! Memory-bound operators (depthwise convolutions above all) are judged by bandwidth instead:
//! every round also copies as many bytes as the kernel must move at least (its inputs and
//! outputs once each), and both are reported in GB/s.
//!
//! A conv2d with `prepacked=true` reads its weights packed; the packing, done once at deploy,
//! is timed apart and printed next to the per-call time.
//!
//! The tuned kernel is checked against the operator's definition before any of its time counts
//! (the measurer's first round), then timed on the same inputs in every round. sgemm is timed
//! without a dense layer's epilogue (bias, ReLU), which costs it nothing it would have to do.

use super::backends::BackendArgs;
use super::input::{self, Usage};
use anyhow::{bail, Context};
use clap::Args;
use looptune::ir::random::random_data;
use looptune::ir::{Data, DataMut, DataRef};
use looptune::runtime::baseline::{sgemm, BaselineError};
use looptune::runtime::measure::{time_in_process, Isolation};
use looptune::runtime::{MeasureInput, MeasureOptions, Measurer, Target};
use looptune::Workload;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `looptune bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload, `op:key=value,...` (see `looptune ops`).
    workload: String,
    /// The tuning log whose best config (for this target and backend) is timed; without it,
    /// the template's fallback config.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Rounds of (kernel, sgemm, peak); medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    #[command(flatten)]
    backend: BackendArgs,
    /// Print one JSON object on stdout; progress goes to stderr.
    #[arg(long)]
    json: bool,
}

/// The GEMM sgemm computes for `workload` (`batch` products of `m x k` by `k x n`), if any.
fn gemm_of(workload: &Workload) -> Option<(usize, (i64, i64, i64), bool)> {
    match *workload {
        Workload::Matmul(p) => Some((1, (p.m, p.n, p.k), p.transpose_b)),
        Workload::Dense(p) => Some((1, (p.m, p.n, p.k), true)),
        Workload::BatchMatmul(p) => Some((p.b as usize, (p.m, p.n, p.k), p.transpose_b)),
        // The f32 product of the same shape: what the quantized kernel replaces.
        Workload::QMatmul(p) => Some((1, (p.m, p.n, p.k), false)),
        Workload::QDense(p) => Some((1, (p.m, p.n, p.k), true)),
        _ => None,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `looptune bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let workload = input::workload(&args.workload)?;
    input::fits_in_memory(&workload)?;
    let selected = args.backend.select()?;
    let threads = 1;
    let target = Target::host().with_threads(threads);
    let (schedule, source) = match &args.log {
        Some(log) => {
            let found =
                super::schedule::from_log(log, &workload, false, selected.backend.as_ref())?;
            let source = if found.tuned { "tuned" } else { "fallback" };
            (found.schedule, source)
        }
        None => {
            let task = looptune::backend::task_for(workload, selected.backend.as_ref(), &target)
                .with_context(|| format!("building the task of `{workload}`"))?;
            let fallback = task
                .fallback_config()
                .context("the template's fallback config")?;
            (task.schedule(&fallback)?, "fallback")
        }
    };
    let nest = looptune::lower(&schedule)
        .with_context(|| format!("lowering the schedule of `{workload}`"))?;
    let program = input::program(&workload, &Default::default())?;
    let flops = workload.flops();
    let options = MeasureOptions::default().with_isolation(Isolation::InProcess);

    // Round 0 checks the kernel against the reference; its time is the first sample.
    eprintln!("checking and timing the {source} config of `{workload}`...");
    let mut measurer = Measurer::new(
        options.clone(),
        target.clone(),
        Arc::clone(&selected.backend),
        None,
    )?;
    let first = measurer.measure_one(&MeasureInput::new(program.clone(), nest.clone(), flops));
    let costs = match first.outcome {
        Ok(costs) => costs,
        Err(error) => bail!("`{workload}`: {error}"),
    };
    let kernel = selected
        .backend
        .compile(&nest, &target)
        .context("compiling the kernel")?;
    let inputs = random_data(&program, 0);
    let input_refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
    let mut outputs: Vec<Data> = nest
        .outputs
        .iter()
        .map(|&buffer| {
            let decl = nest.buffer(buffer);
            Data::zeros(decl.dtype, decl.len())
        })
        .collect();

    let gemm = gemm_of(&workload);
    let traffic = super::memory::compulsory_bytes(&workload)?;
    let traffic_bytes = traffic as f64;
    let mut kernel_seconds = vec![costs.median_s];
    let mut copy_gbytes = Vec::new();
    let mut kernel_gflops = vec![flops / costs.median_s / 1e9];
    let mut sgemm_gflops = Vec::new();
    let mut peak_gflops = Vec::new();
    // A quantized kernel's own ceiling: the pair dot product its inner loop is made of.
    let quantized = workload.is_quantized();
    let mut pair_dot_gops = Vec::new();
    for round in 0..args.rounds {
        if round > 0 {
            let costs = time_in_process(&options, || {
                let mut refs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
                kernel.call_data(&input_refs, &mut refs)
            })
            .context("timing the kernel")?;
            kernel_gflops.push(flops / costs.median_s / 1e9);
            kernel_seconds.push(costs.median_s);
        }
        // New buffers every round: a copy's speed depends on where its buffers land.
        copy_gbytes.push(super::memory::TimedCopy::new(traffic).gbytes_per_s(&options)?);
        if let Some((batch, (m, n, k), transpose_b)) = gemm {
            let dims = |value: i64| usize::try_from(value).map_err(|_| Usage(format!("{value}")));
            let (m, n, k) = (dims(m)?, dims(n)?, dims(k)?);
            // sgemm's own f32 operands of the product's shape (a quantized kernel's inputs are
            // integers).
            let operand = |len: usize| -> Vec<f32> {
                (0..len)
                    .map(|index| ((index * 7919) % 251) as f32 / 251.0 - 0.5)
                    .collect()
            };
            let (a, b) = (operand(batch * m * k), operand(batch * k * n));
            let mut c = vec![0.0f32; batch * m * n];
            let costs = time_in_process(&options, || {
                for index in 0..batch {
                    sgemm(
                        (m, n, k),
                        transpose_b,
                        &a[index * m * k..(index + 1) * m * k],
                        &b[index * k * n..(index + 1) * k * n],
                        &mut c[index * m * n..(index + 1) * m * n],
                    )?;
                }
                black_box(&mut c);
                Ok::<(), BaselineError>(())
            })
            .context("timing matrixmultiply's sgemm")?;
            // sgemm does the multiply-adds only: 2 m n k per product.
            sgemm_gflops.push(2.0 * (batch * m * n * k) as f64 / costs.median_s / 1e9);
        }
        peak_gflops.push(super::peak::full_width(threads)?.gflops);
        if quantized {
            let peak =
                looptune::backend::pair_dot_peak(threads).context("measuring the pair-dot peak")?;
            pair_dot_gops.push(peak.gflops);
        }
        eprintln!(
            "round {}/{}: kernel {:.2}, sgemm {}, peak {:.2} GFLOP/s",
            round + 1,
            args.rounds,
            kernel_gflops[kernel_gflops.len() - 1],
            sgemm_gflops
                .last()
                .map_or("-".to_string(), |gflops| format!("{gflops:.2}")),
            peak_gflops[peak_gflops.len() - 1]
        );
    }
    // A conv2d whose weights come packed: packing is done once (at deploy, by
    // `PrepackedConv::new`), so it is timed apart from the per-call kernel.
    let packing_s = match workload {
        Workload::Conv2d(params) if params.prepacked => {
            let oihw = vec![0.5f32; inputs[1].len()];
            let costs = time_in_process(&options, || {
                black_box(looptune::ir::ops::pack_conv2d_weights(
                    &params,
                    black_box(&oihw),
                ))
                .map(|_| ())
            })
            .context("timing the packing of the weights")?;
            Some(costs.median_s)
        }
        _ => None,
    };
    let per_call_s = median(&mut kernel_seconds);
    let gflops = median(&mut kernel_gflops);
    let sgemm = (!sgemm_gflops.is_empty()).then(|| median(&mut sgemm_gflops));
    let peak = median(&mut peak_gflops);
    let pair_dot = (!pair_dot_gops.is_empty()).then(|| median(&mut pair_dot_gops));
    let gbytes = traffic_bytes / per_call_s / 1e9;
    let copy = median(&mut copy_gbytes);
    let backend = selected.backend.id();
    if args.json {
        let object = serde_json::json!({
            "workload": workload.to_string(),
            "backend": backend.name,
            "backend_version": backend.version,
            "config": source,
            "gflops": gflops,
            "sgemm_gflops": sgemm,
            "ratio_to_sgemm": sgemm.map(|sgemm| gflops / sgemm),
            "peak_gflops": peak,
            "ratio_to_peak": gflops / peak,
            "pair_dot_gops": pair_dot,
            "ratio_to_pair_dot": pair_dot.map(|pair_dot| gflops / pair_dot),
            "gbytes_per_s": gbytes,
            "copy_gbytes_per_s": copy,
            "ratio_to_copy": gbytes / copy,
            "rounds": args.rounds,
            "threads": threads,
            "per_call_ms": per_call_s * 1e3,
            "weight_packing_ms": packing_s.map(|seconds| seconds * 1e3),
        });
        println!("{object}");
    } else {
        println!("workload    {workload} ({source} config)");
        println!("backend     {} ({})", backend.name, backend.version);
        let (unit, of_peak) = super::peak::throughput_unit(&workload);
        println!(
            "kernel      {gflops:.2} {unit}, {:.1}% {of_peak} (median of {} rounds)",
            100.0 * gflops / peak,
            args.rounds
        );
        if let Some(sgemm) = sgemm {
            println!(
                "sgemm       {sgemm:.2} GFLOP/s (matrixmultiply); tuned/sgemm {:.2}x",
                gflops / sgemm
            );
        }
        println!("peak        {peak:.2} GFLOP/s (full width, {threads} thread, same rounds)");
        if let Some(pair_dot) = pair_dot {
            println!(
                "pair dot    {pair_dot:.2} GOP/s (vpmaddwd, the quantized ceiling, same rounds); \
                 kernel at {:.1}% of it",
                100.0 * gflops / pair_dot
            );
        }
        println!(
            "memory      {gbytes:.2} GB/s of compulsory traffic ({:.1} MB); a copy of as many \
             bytes {copy:.2} GB/s ({:.2}x)",
            traffic_bytes / 1e6,
            gbytes / copy
        );
        if let Some(packing_s) = packing_s {
            println!(
                "weights     packed once in {:.3} ms (OIHW -> OIHW[b]i[b]o, at deploy); per call \
                 {:.3} ms with them packed",
                packing_s * 1e3,
                per_call_s * 1e3
            );
        }
    }
    Ok(())
}
