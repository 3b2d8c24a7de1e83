//! The backend's own floating-point ceiling on this host.
//!
//! [`measure_peak`] JITs a loop of f32x4 FMAs over independent accumulators (enough chains to
//! cover the FMA latency on every port) and times it. Tuned kernels are judged against this
//! number rather than a datasheet's, because it is what this code generator can reach: 128-bit
//! vectors on x86-64, whatever FMA ports the core has.

use crate::codegen::OwnedModule;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, BlockArg, InstBuilder, MemFlagsData};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};
use looptune_runtime::peak::{time_peak, PeakLoop, PeakResult};
use looptune_runtime::{CompileError, PeakError, Target};

/// Independent accumulator chains: latency 4 x 2 ports needs 8; 12 leaves slack and still fits
/// in 16 XMM registers with the two operands.
const CHAINS: usize = 12;
/// `fn(operands: *const f32, out: *mut f32, iterations: i64)`.
type PeakFn = unsafe extern "C" fn(*const f32, *mut f32, i64);

/// Measures the f32x4 FMA throughput of `threads` threads running concurrently.
pub fn measure_peak(threads: usize) -> Result<PeakResult, PeakError> {
    if threads == 0 {
        return Err(PeakError::NoThreads { threads });
    }
    let target = Target::host();
    let (module, function) = compile_peak_loop(&target)?;
    let operands = [
        1.000_001_f32,
        0.999_999,
        1.000_002,
        0.999_998,
        1e-7,
        1e-7,
        1e-7,
        1e-7,
    ];
    let run = |iterations: i64| {
        let mut out = [0.0_f32; CHAINS * 4];
        // SAFETY: `function` was generated for exactly this signature; it reads 8 floats from
        // `operands` and writes `CHAINS * 4` floats to `out`, both of which have that size, and
        // `module` (which owns the code) is alive for the whole of `measure_peak`.
        unsafe { function(operands.as_ptr(), out.as_mut_ptr(), iterations) }
    };
    let shape = PeakLoop {
        lanes: 4,
        chains: CHAINS,
        fma: target.features.fma,
    };
    let result = time_peak(threads, shape, &run);
    drop(module);
    result
}

/// Generates the measuring loop directly in CLIF, independent of the loop-IR codegen, so that
/// the ceiling does not move when that codegen changes.
fn compile_peak_loop(target: &Target) -> Result<(OwnedModule, PeakFn), CompileError> {
    let cranelift_error = |error: String| CompileError::Cranelift {
        function: "peak".to_string(),
        message: error,
    };
    let mut owned = OwnedModule::new(JITModule::new(JITBuilder::with_isa(
        crate::isa::isa(target)?,
        default_libcall_names(),
    )));
    let module = owned.get_mut();
    let pointer = module.target_config().pointer_type();
    let mut context = module.make_context();
    context.func.signature.params.extend([
        AbiParam::new(pointer),
        AbiParam::new(pointer),
        AbiParam::new(types::I64),
    ]);
    let func = module
        .declare_anonymous_function(&context.func.signature)
        .map_err(|error| cranelift_error(error.to_string()))?;
    let mut builder_context = FunctionBuilderContext::new();
    {
        let mut builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
        let entry = builder.create_block();
        builder.append_block_params_for_function_params(entry);
        builder.switch_to_block(entry);
        let params = builder.block_params(entry).to_vec();
        let flags = MemFlagsData::trusted();
        let x = builder.ins().load(types::F32X4, flags, params[0], 0);
        let y = builder.ins().load(types::F32X4, flags, params[0], 16);
        let header = builder.create_block();
        let exit = builder.create_block();
        let counter = builder.append_block_param(header, types::I64);
        let accumulators: Vec<_> = (0..CHAINS)
            .map(|_| builder.append_block_param(header, types::F32X4))
            .collect();
        let zero = builder.ins().iconst(types::I64, 0);
        let mut initial = vec![BlockArg::Value(zero)];
        initial.extend((0..CHAINS).map(|_| BlockArg::Value(y)));
        builder.ins().jump(header, &initial);
        builder.switch_to_block(header);
        let mut next = vec![];
        for accumulator in &accumulators {
            // `acc = x * y + acc`, the accumulation every kernel does: the addend is the
            // accumulator, which `vfmadd231ps` updates in place (see vendor/README.md).
            let updated = if target.features.fma || target.arch != "x86_64" {
                builder.ins().fma(x, y, *accumulator)
            } else {
                let product = builder.ins().fmul(x, y);
                builder.ins().fadd(product, *accumulator)
            };
            next.push(updated);
        }
        let counter_next = builder.ins().iadd_imm_s(counter, 1);
        let more = builder
            .ins()
            .icmp(IntCC::SignedLessThan, counter_next, params[2]);
        let mut back = vec![BlockArg::Value(counter_next)];
        back.extend(next.iter().map(|value| BlockArg::Value(*value)));
        let exit_args: Vec<_> = next.iter().map(|value| BlockArg::Value(*value)).collect();
        for _ in 0..CHAINS {
            builder.append_block_param(exit, types::F32X4);
        }
        builder.ins().brif(more, header, &back, exit, &exit_args);
        builder.switch_to_block(exit);
        let results = builder.block_params(exit).to_vec();
        for (index, value) in results.into_iter().enumerate() {
            builder
                .ins()
                .store(flags, value, params[1], (16 * index) as i32);
        }
        builder.ins().return_(&[]);
        builder.seal_all_blocks();
        builder.finalize(module.target_config());
    }
    module
        .define_function(func, &mut context)
        .map_err(|error| cranelift_error(format!("{error:?}")))?;
    module
        .finalize_definitions()
        .map_err(|error| cranelift_error(error.to_string()))?;
    let address = module.get_finalized_function(func);
    // SAFETY: the function was generated above with exactly `PeakFn`'s parameters in the
    // default (C) calling convention.
    let function = unsafe { std::mem::transmute::<*const u8, PeakFn>(address) };
    Ok((owned, function))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_positive_and_four_lanes_wide() {
        let peak = measure_peak(1).expect("peak");
        assert!(peak.gflops > 0.0);
        assert_eq!(peak.lanes, 4);
    }
}
