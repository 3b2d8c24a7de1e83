//! `looptune peak`: the host's FMA ceilings, measured in one run: the full-width one (the C
//! backend's widest vectors, what every "ratio to peak" is taken against) and Cranelift's f32x4
//! one.

use anyhow::Context;
use clap::Args;
use looptune::runtime::{PeakResult, Target};

/// Arguments of `looptune peak`.
#[derive(Debug, Args)]
pub struct PeakArgs {
    /// Threads running the FMA loop concurrently (at most the host's hardware threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Measures and prints the peaks.
pub fn run(args: &PeakArgs) -> anyhow::Result<()> {
    let threads = super::input::threads(args.threads)?;
    let target = Target::host().with_threads(threads);
    let peaks = looptune::backend::peaks(threads).context("measuring the peaks")?;
    let pair_dot = looptune::backend::pair_dot_peak(threads);
    if args.json {
        let object = serde_json::json!({
            "pair_dot": pair_dot.as_ref().ok(),
            "full_width": peaks.full_width.as_ref().ok(),
            "full_width_error": peaks.full_width.as_ref().err().map(ToString::to_string),
            "cranelift": peaks.cranelift,
            "gflops": peaks.reference().gflops,
            "threads": threads,
            "target": target,
        });
        println!("{object}");
    } else {
        let line = |name: &str, peak: &PeakResult| {
            println!(
                "{name:<11} {:.1} GFLOP/s on {} thread{} ({} f32 lanes, {} chains, {}) on {}",
                peak.gflops,
                peak.threads,
                if peak.threads == 1 { "" } else { "s" },
                peak.lanes,
                peak.chains,
                if peak.fma { "fma" } else { "mul+add" },
                target.cpu_model,
            )
        };
        match &peaks.full_width {
            Ok(peak) => line("full width", peak),
            Err(why) => println!("full width  not measured: {why}"),
        }
        line("cranelift", &peaks.cranelift);
        match &pair_dot {
            Ok(peak) => println!(
                "pair dot    {:.1} GOP/s on {} thread{} ({} i16 lanes, vpmaddwd + add: the \
                 ceiling of quantized kernels, {:.2} of the full-width FMA peak)",
                peak.gflops,
                peak.threads,
                if peak.threads == 1 { "" } else { "s" },
                peak.lanes,
                peaks
                    .full_width
                    .as_ref()
                    .map_or(f64::NAN, |full| peak.gflops / full.gflops),
            ),
            Err(why) => println!("pair dot    not measured: {why}"),
        }
    }
    Ok(())
}

/// The full-width peak (see [`looptune::backend::full_width_peak`]).
pub fn full_width(threads: usize) -> anyhow::Result<PeakResult> {
    looptune::backend::full_width_peak(threads).context("measuring the peak")
}

/// Runs `work` between two full-width peak measurements and returns its result with the higher
/// peak.
///
/// On a shared machine a single peak taken while another process holds the core reads low,
/// and every ratio to it reads high. Two measurements around the work, keeping the higher,
/// make the ratio conservative: a kernel only counts as close to peak if it was close to the
/// best the FMA units did during the run.
pub fn bracketed<T>(
    threads: usize,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, PeakResult)> {
    let before = full_width(threads)?;
    let result = work()?;
    // After a Ctrl-C the user wants the summary now, not another peak measurement.
    if super::interrupt::requested() {
        return Ok((result, before));
    }
    let after = full_width(threads)?;
    let peak = if after.gflops > before.gflops {
        after
    } else {
        before
    };
    Ok((result, peak))
}

/// How a workload's throughput is printed: its unit and what its ratio to the full-width peak
/// is of. A quantized kernel computes integer operations (a multiply-add is two, as for f32), so
/// its figure is GOP/s, and its ratio is to the f32 FMA peak, which it can exceed.
pub fn throughput_unit(workload: &looptune::Workload) -> (&'static str, &'static str) {
    if workload.is_quantized() {
        ("GOP/s", "of the f32 FMA peak")
    } else {
        ("GFLOP/s", "of peak")
    }
}
