//! A network's measured latency: its layers' kernels run back to back, as often as the network
//! has each layer, timed as one call.
//!
//! The per-layer table of whole-model tuning sums multiplicity x latency, each latency measured
//! alone with the layer's data hot in cache. Run in sequence, a layer finds the cache holding
//! the previous layer's data instead, and the parallel runtime starts and stops once per
//! kernel: the chain measures that. Each layer reads and writes buffers of its own (the
//! built-in networks list distinct layers, not the operators between them, so outputs do not
//! feed inputs), allocated afresh before each timing; every kernel was checked against the
//! reference when it was measured, and the chain's outputs are not checked again.

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

/// A layer ready to run: its kernel, compiled once for every round.
struct Compiled<'a> {
    layer: &'a ChainLayer,
    kernel: Kernel,
}

/// Compiles every layer with `backend` for `target`, fills its inputs with small deterministic
/// values, and times one pass of the whole chain (every layer `multiplicity` times, in order)
/// under `options` (warm-up, repeats, median; in this process). Returns the median seconds per
/// pass. To compare chains, use [`time_chains`]: one chain timed after another sees the machine
/// in another state.
pub fn time_chain(
    backend: &dyn Backend,
    target: &Target,
    layers: &[ChainLayer],
    options: &MeasureOptions,
) -> Result<f64, ChainError> {
    let mut times = time_chains(backend, target, &[layers], 1, options)?;
    Ok(times.remove(0))
}

/// Times several chains against each other: compiles them all first, then runs `rounds` rounds,
/// each timing every chain once as [`time_chain`] does, the chains' order reversed every other
/// round. Returns each chain's median over the rounds, in the order given.
///
/// Interleaving makes the chains comparable on a shared machine: whole timings drift from one
/// second to the next (another process, the clock), and a chain timed in the same rounds as its
/// rival drifts with it. Every round also allocates and fills fresh buffers, because a chain's
/// speed depends on where its buffers land: on this project's Zen 3 host the same two MobileNet
/// chains, timed once each, ranged over 0.98x-1.24x of each other in five processes, and
/// 0.94x-1.20x in four with interleaved rounds on one set of buffers; fresh buffers moved one
/// chain over 0.523-0.716 ms within a process. The median is then over placements as well as
/// over time. `rounds` of 0 runs one.
pub fn time_chains(
    backend: &dyn Backend,
    target: &Target,
    chains: &[&[ChainLayer]],
    rounds: usize,
    options: &MeasureOptions,
) -> Result<Vec<f64>, ChainError> {
    if chains.iter().any(|layers| layers.is_empty()) {
        return Err(ChainError::Empty);
    }
    let nests: Vec<&LoopNest> = chains
        .iter()
        .flat_map(|layers| layers.iter().map(|layer| &layer.nest))
        .collect();
    backend.prepare(&nests, target);
    let compiled = chains
        .iter()
        .map(|layers| compile(backend, target, layers))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seconds = vec![Vec::with_capacity(rounds); chains.len()];
    for round in 0..rounds.max(1) {
        let mut order: Vec<usize> = (0..compiled.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            seconds[index].push(time_pass(&compiled[index], options)?);
        }
    }
    Ok(seconds
        .iter_mut()
        .map(|times| crate::noise::median(times).unwrap_or(f64::NAN))
        .collect())
}

/// Compiles a chain's layers.
fn compile<'a>(
    backend: &dyn Backend,
    target: &Target,
    layers: &'a [ChainLayer],
) -> Result<Vec<Compiled<'a>>, ChainError> {
    layers
        .iter()
        .map(|layer| {
            let kernel =
                backend
                    .compile(&layer.nest, target)
                    .map_err(|source| ChainError::Compile {
                        layer: layer.name.clone(),
                        source,
                    })?;
            Ok(Compiled { layer, kernel })
        })
        .collect()
}

/// New buffers for `buffers` of `nest`, filled with small deterministic values.
fn filled(nest: &LoopNest, buffers: &[looptune_ir::BufferId]) -> Vec<Data> {
    buffers
        .iter()
        .map(|&buffer| {
            let decl = nest.buffer(buffer);
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
}

/// The median seconds of one pass of a compiled chain under `options`, on buffers allocated
/// for this pass.
fn time_pass(compiled: &[Compiled<'_>], options: &MeasureOptions) -> Result<f64, ChainError> {
    let mut buffers: Vec<(Vec<Data>, Vec<Data>)> = compiled
        .iter()
        .map(|layer| {
            let nest = &layer.layer.nest;
            (filled(nest, &nest.inputs), filled(nest, &nest.outputs))
        })
        .collect();
    let costs = time_in_process(options, || {
        for (layer, (inputs, outputs)) in compiled.iter().zip(buffers.iter_mut()) {
            let inputs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
            for _ in 0..layer.layer.multiplicity {
                let mut outputs: Vec<DataMut<'_>> = outputs.iter_mut().map(Data::as_mut).collect();
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
    fn chains_are_timed_in_interleaved_rounds_and_reported_in_order() {
        let backend = CraneliftBackend::new();
        let target = Target::host().with_threads(1);
        let small = [layer("matmul:m=8,n=8,k=8", 1)];
        // The same kernel a hundred times per pass: a pass two orders of magnitude longer.
        let large = [layer("matmul:m=8,n=8,k=8", 100)];
        let options = MeasureOptions {
            repeat: 2,
            min_repeat_ms: 2.0,
            ..MeasureOptions::default()
        };
        let seconds =
            time_chains(&backend, &target, &[&small, &large, &small], 3, &options).unwrap();
        assert_eq!(seconds.len(), 3);
        assert!(
            seconds.iter().all(|s| s.is_finite() && *s > 0.0),
            "{seconds:?}"
        );
        // Timing noise is far below a factor of ten; the order of the results is the order given.
        assert!(seconds[1] > 10.0 * seconds[0], "{seconds:?}");
        assert!(seconds[1] > 10.0 * seconds[2], "{seconds:?}");
    }

    #[test]
    fn an_empty_chain_is_an_error() {
        let backend = CraneliftBackend::new();
        let err = time_chain(&backend, &Target::host(), &[], &MeasureOptions::default());
        assert!(matches!(err, Err(ChainError::Empty)));
        let one = [layer("matmul:m=8,n=8,k=8", 1)];
        let err = time_chains(
            &backend,
            &Target::host(),
            &[&one, &[]],
            2,
            &MeasureOptions::default(),
        );
        assert!(matches!(err, Err(ChainError::Empty)));
    }
}
