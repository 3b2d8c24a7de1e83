//! `looptune peak`: the JIT's own f32x4 FMA throughput on this host, the ceiling every kernel
//! looptune produces is judged against.

use anyhow::Context;
use clap::Args;
use looptune::jit::{measure_peak, PeakResult, Target};

/// Arguments of `looptune peak`.
#[derive(Debug, Args)]
pub struct PeakArgs {
    /// Threads running the FMA loop concurrently.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Measures and prints the peak.
pub fn run(args: &PeakArgs) -> anyhow::Result<()> {
    let threads = args.threads as usize;
    let target = Target::host().with_threads(threads);
    let peak = measure_peak(threads).context("measuring the peak")?;
    if args.json {
        let mut object = serde_json::to_value(&peak)?;
        object["target"] = serde_json::to_value(&target)?;
        println!("{object}");
    } else {
        println!(
            "peak: {:.1} GFLOP/s on {} thread{} ({} f32 lanes, {} chains, {}) on {}",
            peak.gflops,
            peak.threads,
            if peak.threads == 1 { "" } else { "s" },
            peak.lanes,
            peak.chains,
            if peak.fma { "fma" } else { "mul+add" },
            target.cpu_model,
        );
    }
    Ok(())
}

/// Runs `work` between two peak measurements and returns its result with the higher peak.
///
/// On a shared machine a single peak taken while another process holds the core reads low,
/// and every ratio to it reads high. Two measurements around the work, keeping the higher,
/// make the ratio conservative: a kernel only counts as close to peak if it was close to the
/// best the FMA units did during the run.
pub fn bracketed<T>(
    threads: usize,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, PeakResult)> {
    let before = measure_peak(threads).context("measuring the peak")?;
    let result = work()?;
    let after = measure_peak(threads).context("measuring the peak")?;
    let peak = if after.gflops > before.gflops {
        after
    } else {
        before
    };
    Ok((result, peak))
}
