//! Measures matmul candidates end to end in a worker process, the way the tuner will.
//!
//! `cargo run --release -p looptune-jit --example measure [SIZE...]` (default 128 1024)
//!
//! For each size, the register-tiled recipe is measured three times in one measurer (the first
//! pays for the reference and the worker start) and the default schedule once, with the default
//! options (one warm-up, repeats of at least 50 ms, five repeats, 10 s timeout). The example
//! re-executes itself with the argument `worker` as the measurement worker, which is how the
//! `looptune` binary does it.

#![forbid(unsafe_code)]

use looptune_ir::ops::MatmulParams;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{lower, Schedule, Workload};
use looptune_runtime::measure::{
    serve_stdio, MeasureInput, MeasureOptions, Measurer, WorkerCommand,
};
use looptune_runtime::Target;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        serve_stdio(&|spec| {
            Ok(std::sync::Arc::new(looptune_jit::CraneliftBackend::from_spec(spec)?) as _)
        })?;
        return Ok(());
    }
    let sizes: Vec<i64> = if args.is_empty() {
        vec![128, 1024]
    } else {
        args.iter()
            .map(|arg| arg.parse())
            .collect::<Result<_, _>>()?
    };
    let worker = WorkerCommand::new(std::env::current_exe()?).arg("worker");
    let mut measurer = Measurer::new(
        MeasureOptions::default(),
        Target::host().with_threads(1),
        std::sync::Arc::new(looptune_jit::CraneliftBackend::new()),
        Some(worker),
    )?;
    let start = Instant::now();
    measurer.start_worker()?;
    println!(
        "worker started in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    for size in sizes {
        let params = MatmulParams {
            m: size,
            n: size,
            k: size,
            transpose_b: false,
        };
        let flops = Workload::Matmul(params).flops();
        let schedule = register_tiled_matmul(params, MatmulTiling::default())?;
        let tiled = MeasureInput::new(schedule.program().clone(), lower(&schedule)?, flops);
        let program = Workload::Matmul(params).program(&Default::default())?;
        let naive = MeasureInput::new(program.clone(), lower(&Schedule::new(&program))?, flops);
        let candidates = [
            ("tiled", &tiled),
            ("tiled", &tiled),
            ("tiled", &tiled),
            ("default", &naive),
        ];
        for (name, input) in candidates {
            let result = measurer.measure_one(input);
            let outcome = match &result.outcome {
                Ok(costs) => format!(
                    "{:.2} GFLOP/s (median {:.3} ms, {} x {} calls)",
                    costs.gflops(flops),
                    costs.median_s * 1e3,
                    costs.repeat,
                    costs.number
                ),
                Err(error) => error.to_string(),
            };
            println!(
                "{size}^3 {name:8} total {:8.1} ms  compile {:6.1} ms  check {:7.1} ms ({} \
                 elements)  reference {:7.1} ms  {outcome}",
                result.total_ms,
                result.compile_ms.unwrap_or(f64::NAN),
                result.check_ms.unwrap_or(f64::NAN),
                result.checked_elements,
                result.reference_ms,
            );
        }
    }
    Ok(())
}
