//! The probe a compiler must pass before it is used: a small vectorized, register-tiled kernel
//! with a parallel loop and a tail, compiled, run and compared with the reference interpreter.

use crate::backend::CBackend;
use looptune_ir::eval::compare;
use looptune_ir::random::random_inputs;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{interp, lower, Workload};
use looptune_runtime::{Backend, CompileError, Target};

/// Compiles and runs the probe with `backend`; an error names the compiler and what was wrong.
pub(crate) fn check(backend: &CBackend) -> Result<(), CompileError> {
    let refused = |message: String| CompileError::CCompiler {
        compiler: backend.compiler().describe(),
        kernel: "probe".to_string(),
        message,
    };
    let workload: Workload = "matmul:m=13,n=37,k=9"
        .parse()
        .map_err(|error| refused(format!("probe workload: {error}")))?;
    let params = match workload {
        Workload::Matmul(params) => params,
        _ => return Err(refused("the probe is a matmul".to_string())),
    };
    let target = Target::host().with_threads(2);
    let lanes = backend.vector_lanes(&target) as i64;
    let tiling = MatmulTiling {
        tile_rows: 3,
        tile_columns: 2 * lanes,
        unroll_reduction: 3,
        block_rows: 1,
        parallel: true,
    };
    let schedule = register_tiled_matmul(params, tiling)
        .map_err(|error| refused(format!("probe schedule: {error}")))?;
    let nest = lower(&schedule).map_err(|error| refused(format!("probe lowering: {error}")))?;
    let program = schedule.program();
    let inputs = random_inputs(program, 7);
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut expected = vec![0.0; nest.buffer(nest.outputs[0]).len()];
    interp::run(&nest, &input_refs, &mut [&mut expected])
        .map_err(|error| refused(format!("probe reference: {error}")))?;
    let kernel = backend.compile(&nest, &target)?;
    let mut actual = vec![f32::NAN; expected.len()];
    kernel
        .call(&input_refs, &mut [&mut actual])
        .map_err(|error| refused(format!("calling the probe: {error}")))?;
    compare(&actual, &expected, 1e-4).map_err(|mismatch| {
        refused(format!(
            "the probe kernel computed a wrong result ({mismatch:?}): this compiler does not \
             build looptune's C correctly"
        ))
    })
}
