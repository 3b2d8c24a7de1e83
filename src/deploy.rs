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
use looptune_space::{Config, TemplateError};
use std::cell::Cell;
use std::path::Path;
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

/// The config to deploy for `task` (a `Workload`, a `CustomTask`, or a reference to either) on
/// `target` with `backend`, from `file` (a tuning log or a deploy database); see the module
/// documentation for the fallback.
pub fn best_config(
    file: &Path,
    task: impl Into<Tunable>,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Chosen, DeployError> {
    let task = task.into();
    let key = task.key();
    let template = |source: TemplateError| DeployError::Template {
        workload: key.to_string(),
        source: Box::new(source),
    };
    let task = task.task_for(backend, target).map_err(template)?;
    let spaces = TodaysSpaces::default();
    let outside_space = Cell::new(0usize);
    let dispatcher = Dispatcher::from_logs_where(&[file], |record| {
        let fits = spaces.fits(record);
        if !fits && record.workload == key.as_str() {
            outside_space.set(outside_space.get() + 1);
        }
        fits
    })
    .map_err(DeployError::Read)?;
    let mut warnings: Vec<String> = dispatcher
        .load_warnings()
        .iter()
        .map(ToString::to_string)
        .collect();
    if outside_space.get() > 0 {
        warnings.push(format!(
            "{} record(s) of `{key}` in `{}` are not points of today's space and were skipped; \
             tune again",
            outside_space.get(),
            file.display()
        ));
    }
    let fallback = task
        .fallback_config()
        .map_err(|error| template(error.into()))?;
    let fingerprint = TargetFingerprint::new(target, backend);
    let dispatch = dispatcher.best(&key, &fingerprint, || fallback.to_values());
    warnings.extend(dispatch.warnings.iter().cloned());
    let (config, origin) = match (&dispatch.source, task.space().from_values(&dispatch.config)) {
        (Source::Fallback, _) => (
            fallback,
            Origin::Fallback {
                reason: format!(
                    "`{}` has nothing for `{key}` on this target",
                    file.display()
                ),
            },
        ),
        (_, Err(error)) => (
            fallback,
            Origin::Fallback {
                reason: format!(
                    "the config `{}` holds for `{key}` is not a point of today's space \
                     ({error}); tune again",
                    file.display()
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

/// The kernel of [`best_config`], compiled with `backend` for `target`.
pub fn best_kernel(
    file: &Path,
    task: impl Into<Tunable>,
    backend: &dyn Backend,
    target: &Target,
) -> Result<Deployed, DeployError> {
    let chosen = best_config(file, task, backend, target)?;
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
