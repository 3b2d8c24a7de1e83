//! Deploy: the best config a tuning log or deploy database holds for a task (a built-in
//! workload or a user's operator, by its one [`TaskKey`](looptune_space::TaskKey)) on this
//! target, compiled into a kernel to call; or the template's fallback config, said.
//!
//! The file is a log or a database by its content, never by its name. A fallback is never
//! silent: [`Origin::Fallback`] says why (the file has nothing for the workload and target, or
//! its config is not a point of today's space), and records a reader skipped are in
//! [`Chosen::warnings`]. Needs none of the tuning half (no XGBoost), so it works with
//! `default-features = false`.

use crate::backend::TodaysSpaces;
use crate::task::{Tunable, TunedTask};
use looptune_log::{Dispatcher, LogError, Source, TargetFingerprint};
use looptune_runtime::{Backend, CompileError, Kernel, Target};
use looptune_space::TaskKey;
use looptune_space::{Config, TemplateError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Where a deployed config came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// The file's best record for this workload: on exactly this target, or on a compatible
    /// one ([`Source::CompatibleTarget`] says how it differs).
    Tuned {
        /// Which target the record was tuned on.
        source: Source,
        /// Its measured throughput, when the file holds it.
        gflops: Option<f64>,
    },
    /// The template's fallback config, and why.
    Fallback {
        /// Why nothing tuned was used, naming the file and the workload.
        reason: String,
    },
}

impl Origin {
    /// Whether the config was tuned (not the fallback).
    pub fn is_tuned(&self) -> bool {
        matches!(self, Origin::Tuned { .. })
    }
}

/// The config chosen for a task, with the task (space and template; a workload's sized for
/// the backend).
#[derive(Debug)]
pub struct Chosen {
    /// The task for the backend and target.
    pub task: TunedTask,
    /// The config to compile.
    pub config: Config,
    /// Where it came from.
    pub origin: Origin,
    /// What the caller should tell its user: damaged lines skipped, a compatible rather than
    /// exact target, records that are no longer points of the space.
    pub warnings: Vec<String>,
}

/// A compiled kernel of a chosen config.
pub struct Deployed {
    /// The kernel, to call on slices ([`Kernel::call`] checks their count and lengths).
    pub kernel: Kernel,
    /// Which config it is and where it came from.
    pub chosen: Chosen,
}

/// Why nothing could be deployed (a fallback is not one of these: it is an [`Origin`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The file is missing, unreadable, neither a log nor a database, or damaged beyond its
    /// skippable lines (the error names the file).
    #[error(transparent)]
    Read(LogError),
    /// The task's template failed (its task, fallback config or lowering).
    #[error("the template of `{workload}`: {source}")]
    Template {
        /// The task's key.
        workload: String,
        /// What went wrong.
        #[source]
        source: Box<TemplateError>,
    },
    /// The backend could not compile the chosen config.
    #[error("compiling `{workload}`: {source}")]
    Compile {
        /// The task's key.
        workload: String,
        /// What went wrong.
        #[source]
        source: CompileError,
    },
}

/// A tuning log or deploy database read once: its best configs, the lines it skipped, and per
/// task the records that are no longer points of today's space.
pub(crate) struct Loaded {
    pub(crate) file: PathBuf,
    pub(crate) dispatcher: Dispatcher,
    /// Per task key, how many records were left out for not being points of today's space.
    pub(crate) outside_space: HashMap<String, usize>,
}

impl Loaded {
    /// Reads `file`, a log or a database by its content.
    pub(crate) fn read(file: &Path) -> Result<Loaded, DeployError> {
        let spaces = TodaysSpaces::default();
        let outside_space = RefCell::new(HashMap::new());
        let dispatcher = Dispatcher::from_logs_where(&[file], |record| {
            let fits = spaces.fits(record);
            if !fits {
                *outside_space
                    .borrow_mut()
                    .entry(record.workload.clone())
                    .or_insert(0) += 1;
            }
            fits
        })
        .map_err(DeployError::Read)?;
        Ok(Loaded {
            file: file.to_path_buf(),
            dispatcher,
            outside_space: outside_space.into_inner(),
        })
    }

    /// The config for `task` on `target` with `backend`; see the module documentation.
    pub(crate) fn choose(
        &self,
        task: Tunable,
        backend: &dyn Backend,
        target: &Target,
    ) -> Result<Chosen, DeployError> {
        let key = task.key();
        let file = self.file.display();
        let template = |source: TemplateError| DeployError::Template {
            workload: key.to_string(),
            source: Box::new(source),
        };
        let task = task.task_for(backend, target).map_err(template)?;
        let mut warnings: Vec<String> = self
            .dispatcher
            .load_warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(count) = self.outside_space.get(key.as_str()) {
            warnings.push(format!(
                "{count} record(s) of `{key}` in `{file}` are not points of today's space and \
                 were skipped; tune again"
            ));
        }
        let fallback = task
            .fallback_config()
            .map_err(|error| template(error.into()))?;
        let fingerprint = TargetFingerprint::new(target, backend);
        let dispatch = self
            .dispatcher
            .best(&key, &fingerprint, || fallback.to_values());
        warnings.extend(dispatch.warnings.iter().cloned());
        let (config, origin) = match (&dispatch.source, task.space().from_values(&dispatch.config))
        {
            (Source::Fallback, _) => (
                fallback,
                Origin::Fallback {
                    reason: format!("`{file}` has nothing for `{key}` on this target"),
                },
            ),
            (_, Err(error)) => (
                fallback,
                Origin::Fallback {
                    reason: format!(
                        "the config `{file}` holds for `{key}` is not a point of today's space \
                         ({error}); tune again"
                    ),
                },
            ),
            (source, Ok(config)) => (
                config,
                Origin::Tuned {
                    source: source.clone(),
                    gflops: dispatch.gflops,
                },
            ),
        };
        Ok(Chosen {
            task,
            config,
            origin,
            warnings,
        })
    }
}

/// The config to deploy for `task` (a `Workload`, a `CustomTask`, or a reference to either) on
/// `target` with `backend`, from `file` (a tuning log or a deploy database); see the module
/// documentation for the fallback.
pub fn best_config(
    file: &Path,
    task: impl Into<Tunable>,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Chosen, DeployError> {
    Loaded::read(file)?.choose(task.into(), backend, target)
}

/// The compiled kernel of `chosen`.
fn compile(
    chosen: Chosen,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Deployed, DeployError> {
    let key = chosen.task.key().to_string();
    let nest = chosen
        .task
        .lower(&chosen.config)
        .map_err(|source| DeployError::Template {
            workload: key.clone(),
            source: Box::new(source),
        })?;
    let kernel = backend
        .compile(&nest, target)
        .map_err(|source| DeployError::Compile {
            workload: key,
            source,
        })?;
    Ok(Deployed { kernel, chosen })
}

/// A deploy file's kernels for one backend and target: the file is read once, each task's
/// kernel is compiled on its first [`KernelCache::get`] and shared after that, across threads
/// (a [`Kernel`] is `Send + Sync`). What a framework keeps for the life of its process.
pub struct KernelCache {
    loaded: Loaded,
    backend: Arc<dyn Backend>,
    target: Target,
    kernels: Mutex<HashMap<TaskKey, Arc<Deployed>>>,
}

impl KernelCache {
    /// Reads `file` (a tuning log or a deploy database, by content) for kernels compiled with
    /// `backend` for `target`.
    pub fn open(
        file: &Path,
        backend: Arc<dyn Backend>,
        target: Target,
    ) -> Result<KernelCache, DeployError> {
        Ok(KernelCache {
            loaded: Loaded::read(file)?,
            backend,
            target,
            kernels: Mutex::new(HashMap::new()),
        })
    }

    /// The kernel of `task` (its best config, or the fallback, said in
    /// [`Chosen::origin`]), compiled the first time it is asked for. The compile holds the
    /// cache's lock, so a kernel is compiled once however many threads ask at once.
    pub fn get(&self, task: impl Into<Tunable>) -> Result<Arc<Deployed>, DeployError> {
        let task = task.into();
        let key = task.key();
        // A thread that panicked while holding the lock left the map as it was: still usable.
        let mut kernels = self
            .kernels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(deployed) = kernels.get(&key) {
            return Ok(Arc::clone(deployed));
        }
        let chosen = self
            .loaded
            .choose(task, self.backend.as_ref(), &self.target)?;
        let deployed = Arc::new(compile(chosen, self.backend.as_ref(), &self.target)?);
        kernels.insert(key, Arc::clone(&deployed));
        Ok(deployed)
    }
}

/// The kernel of [`best_config`], compiled with `backend` for `target`.
pub fn best_kernel(
    file: &Path,
    task: impl Into<Tunable>,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Deployed, DeployError> {
    compile(best_config(file, task, backend, target)?, backend, target)
}

/// A deployed channel-blocked conv2d whose weights were packed once, when it was made: the
/// kernel of the `prepacked=true` workload and its weights in OIHW[b]i[b]o. Weights are
/// constants at inference, so the per-call kernel does not repack them, and the packing time
/// is reported apart ([`PrepackedConv::packing_time`]); `looptune bench` prints both.
pub struct PrepackedConv {
    deployed: Arc<Deployed>,
    weights: Vec<f32>,
    packing_time: std::time::Duration,
}

/// Why weights could not be packed for a deployed kernel.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PrepackError {
    /// The kernel is not the `prepacked=true` conv2d of the given parameters.
    #[error("the kernel of `{deployed}` is not the pre-packed kernel of `{expected}`")]
    WrongKernel {
        /// The deployed kernel's task.
        deployed: String,
        /// The pre-packed conv2d the parameters name.
        expected: String,
    },
    /// The weights do not fit the parameters (their count), or the parameters are not a
    /// channel-blocked conv2d.
    #[error(transparent)]
    Weights(#[from] looptune_ir::IrError),
}

impl PrepackedConv {
    /// Packs `oihw` (the conv2d's weights as `W[oc, ic, kh, kw]`) for `deployed`, the kernel of
    /// `params` with `prepacked=true` (from [`KernelCache::get`] or [`best_kernel`]), timing
    /// the packing.
    pub fn new(
        deployed: Arc<Deployed>,
        params: &looptune_ir::ops::Conv2dParams,
        oihw: &[f32],
    ) -> Result<PrepackedConv, PrepackError> {
        let expected = looptune_ir::Workload::Conv2d(looptune_ir::ops::Conv2dParams {
            prepacked: true,
            ..*params
        });
        let key = deployed.chosen.task.key();
        if key != TaskKey::from(&expected) {
            return Err(PrepackError::WrongKernel {
                deployed: key.to_string(),
                expected: expected.to_string(),
            });
        }
        let start = std::time::Instant::now();
        let weights = looptune_ir::ops::pack_conv2d_weights(params, oihw)?;
        let packing_time = start.elapsed();
        Ok(PrepackedConv {
            deployed,
            weights,
            packing_time,
        })
    }

    /// How long packing the weights took, once.
    pub fn packing_time(&self) -> std::time::Duration {
        self.packing_time
    }

    /// The packed weights (OIHW[b]i[b]o).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The deployed kernel and its config.
    pub fn deployed(&self) -> &Deployed {
        &self.deployed
    }

    /// Calls the kernel: `inputs` are the conv2d's inputs without the weights (`X`, then
    /// `bias` and `R` where the workload has them); the packed weights go in second place.
    pub fn call(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> Result<(), looptune_runtime::CallError> {
        let mut all: Vec<&[f32]> = Vec::with_capacity(inputs.len() + 1);
        all.extend(inputs.first().copied());
        all.push(&self.weights);
        all.extend(inputs.iter().skip(1).copied());
        self.deployed.kernel.call(&all, outputs)
    }
}
