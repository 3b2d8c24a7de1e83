//! A network's measured latency: its layers' kernels run back to back, as often as the network
//! has each layer, timed as one call.
//!
//! The per-layer table of whole-model tuning sums multiplicity x latency, each latency measured
//! alone with the layer's data hot in cache. Run in sequence, a layer finds the cache holding
//! the previous layer's data instead, and the parallel runtime starts and stops once per
//! kernel: the chain measures that. Each layer reads and writes buffers of its own (the
//! built-in networks list distinct layers, not the operators between them, so outputs do not
//! feed inputs), allocated once before timing; every kernel was checked against the reference
//! when it was measured, and the chain's outputs are not checked again.

use looptune_ir::{Data, DataMut, DataRef, LoopNest};
use looptune_runtime::measure::time_in_process;
use looptune_runtime::{Backend, CallError, CompileError, Kernel, MeasureOptions, Target};
use thiserror::Error;

/// One layer of a chain: its lowered kernel and how many times one pass runs it.
#[derive(Clone, Debug)]
pub struct ChainLayer {
    /// The layer's name (`C2`), for errors.
    pub name: String,
    /// The lowered nest of the config the chain runs for this layer.
    pub nest: LoopNest,
    /// Calls per pass.
    pub multiplicity: u32,
}

/// Why a chain could not be timed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A layer's kernel did not compile.
    #[error("layer `{layer}` does not compile")]
    Compile {
        /// The layer.
        layer: String,
        /// Why.
        #[source]
        source: CompileError,
    },
    /// A kernel call failed, or timing passed the measure options' timeout.
    #[error("timing the chain failed")]
    Timing(#[source] looptune_runtime::measure::TimingError<CallError>),
    /// The chain is empty.
    #[error("a chain needs at least one layer")]
    Empty,
}

/// A layer ready to run: its kernel and its buffers.
struct Prepared {
    kernel: Kernel,
    inputs: Vec<Data>,
    outputs: Vec<Data>,
    multiplicity: u32,
}

/// Compiles every layer with `backend` for `target`, fills its inputs with small deterministic
/// values, and times one pass of the whole chain (every layer `multiplicity` times, in order)
/// under `options` (warm-up, repeats, median; in this process). Returns the median seconds per
/// pass.
pub fn time_chain(
    backend: &dyn Backend,
    target: &Target,
    layers: &[ChainLayer],
    options: &MeasureOptions,
) -> Result<f64, ChainError> {
    if layers.is_empty() {
        return Err(ChainError::Empty);
    }
    let nests: Vec<&LoopNest> = layers.iter().map(|layer| &layer.nest).collect();
    backend.prepare(&nests, target);
    let mut prepared = Vec::with_capacity(layers.len());
    for layer in layers {
        let kernel =
            backend
                .compile(&layer.nest, target)
                .map_err(|source| ChainError::Compile {
                    layer: layer.name.clone(),
                    source,
                })?;
        let filled = |buffers: &[looptune_ir::BufferId]| -> Vec<Data> {
            buffers
                .iter()
                .map(|&buffer| {
                    let decl = layer.nest.buffer(buffer);
                    let values: Vec<f64> = (0..decl.len())
                        .map(|index| {
                            if decl.dtype.is_float() {
                                ((index % 13) as f64 - 6.0) / 16.0
                            } else {
                                // Integers of every size (wrapped to the type).
                                ((index * 37) % 251) as f64
                            }
                        })
                        .collect();
                    Data::from_f64(decl.dtype, &values)
                })
                .collect()
        };
        prepared.push(Prepared {
            kernel,
            inputs: filled(&layer.nest.inputs),
            outputs: filled(&layer.nest.outputs),
            multiplicity: layer.multiplicity,
        });
    }
    let costs = time_in_process(options, || {
        for layer in &mut prepared {
            let inputs: Vec<DataRef<'_>> = layer.inputs.iter().map(Data::as_ref).collect();
            for _ in 0..layer.multiplicity {
                let mut outputs: Vec<DataMut<'_>> =
                    layer.outputs.iter_mut().map(Data::as_mut).collect();
                layer.kernel.call_data(&inputs, &mut outputs)?;
            }
        }
        Ok(())
    })
    .map_err(ChainError::Timing)?;
    Ok(costs.median_s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use looptune_ir::ops::Workload;
    use looptune_ir::{lower, Layout, Schedule};
    use looptune_jit::CraneliftBackend;

    fn layer(workload: &str, multiplicity: u32) -> ChainLayer {
        let workload: Workload = workload.parse().unwrap();
        let program = workload.program(&Layout::default()).unwrap();
        ChainLayer {
            name: workload.to_string(),
            nest: lower(&Schedule::new(&program)).unwrap(),
            multiplicity,
        }
    }

    #[test]
    fn a_chain_of_layers_is_timed_as_one_pass() {
        let backend = CraneliftBackend::new();
        let target = Target::host().with_threads(1);
        let seconds = time_chain(
            &backend,
            &target,
            &[
                layer("matmul:m=48,n=40,k=64", 3),
                layer("conv2d:n=1,ic=3,h=9,w=9,oc=4,kh=3,kw=3,pad=1", 1),
            ],
            &MeasureOptions::default(),
        )
        .unwrap();
        assert!(seconds.is_finite() && seconds > 0.0, "{seconds}");
    }

    #[test]
    fn an_empty_chain_is_an_error() {
        let backend = CraneliftBackend::new();
        let err = time_chain(&backend, &Target::host(), &[], &MeasureOptions::default());
        assert!(matches!(err, Err(ChainError::Empty)));
    }
}
