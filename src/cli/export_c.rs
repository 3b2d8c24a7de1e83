//! `looptune export-c`: a tuning log's best kernels as a standalone Rust crate (argument
//! parsing and printing only; the export is [`looptune::export_c`]).

use super::{input, Usage};
use clap::Args;
use looptune::cc::export::{ExportOptions, March};
use std::path::PathBuf;

/// Arguments of `looptune export-c`.
#[derive(Debug, Args)]
pub struct ExportCArgs {
    /// The directory to write the crate into: created if missing, and refused if it holds
    /// files, unless --force.
    #[arg(long)]
    out: PathBuf,
    /// The instruction set the C is compiled for: native, x86-64-v3 (AVX2) or x86-64-v4
    /// (AVX-512).
    #[arg(long, default_value = "native")]
    march: String,
    /// The crate's name (also the prefix of the C symbols).
    #[arg(long, default_value = "tuned_kernels")]
    crate_name: String,
    /// Write into a directory that holds files, replacing the ones the export writes.
    #[arg(long)]
    force: bool,
    /// The tuning log or deploy database to take the best configs from.
    log: PathBuf,
    /// The workloads to export, `op:key=value,...` (default: every workload the file has for
    /// this machine's C backend).
    workloads: Vec<String>,
}

/// `looptune export-c`.
pub fn run(args: &ExportCArgs) -> anyhow::Result<()> {
    let march: March = args
        .march
        .parse()
        .map_err(|error: looptune::cc::export::UnknownMarch| Usage(error.to_string()))?;
    let workloads = args
        .workloads
        .iter()
        .map(|text| input::workload(text))
        .collect::<Result<Vec<_>, Usage>>()?;
    let options = ExportOptions {
        march,
        crate_name: args.crate_name.clone(),
        force: args.force,
    };
    let report = looptune::export_c(&args.log, &workloads, &args.out, &options)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    // A config from a compatible rather than the same target is among the warnings.
    for kernel in &report.kernels {
        let speed = kernel
            .gflops
            .map_or(String::new(), |gflops| format!(", {gflops:.1} GFLOP/s"));
        println!("{}  {}{speed}", kernel.function, kernel.key);
    }
    eprintln!(
        "wrote crate `{}` ({} kernel(s), -march={march}) to {}; test it with `cargo test` there",
        args.crate_name,
        report.kernels.len(),
        report.exported.dir.display()
    );
    Ok(())
}
