//! Ahead-of-time export (`looptune export-c`): the best configs a tuning log or deploy database
//! holds for built-in workloads on this machine, lowered and handed to the C backend's exporter
//! ([`looptune_cc::export`]), which writes them as a standalone Rust crate.
//!
//! The config is chosen exactly as [`crate::deploy`] chooses it for the C backend on this host,
//! except that a fallback is an error here: an exported crate holds tuned kernels or nothing.
//! A workload the file lacks, a config that is no longer a point of today's space, a config
//! that is not a point of the space of the instruction set asked for, and a user's operator
//! (for which no reference loop can be written, so its kernel could not be tested) are each a
//! typed error naming the workload.

use crate::backend::c_backend;
use crate::deploy::{DeployError, Loaded, Origin};
use looptune_cc::export::{export, ExportError, ExportKernel, ExportOptions, Exported, March};
use looptune_ir::Workload;
use looptune_log::{Source, TargetFingerprint};
use looptune_runtime::{CompileError, Target};
use looptune_space::{Task, TaskKey, TemplateError, VectorShape};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why nothing was exported.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportCError {
    /// No working C compiler: the export prints C and checks that it compiles.
    #[error("export-c needs a working C compiler: {0}")]
    NoCompiler(#[source] CompileError),
    /// The file could not be read, or a task's template failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The file has no tuned config of this workload for this machine's C backend.
    #[error("`{}` has no tuned config of `{workload}` for the C backend on this machine; tune it first (looptune tune --backend c {workload})", file.display())]
    NotInLog {
        /// The workload's key.
        workload: String,
        /// The file.
        file: PathBuf,
    },
    /// The file's configs of this workload are not points of today's space.
    #[error("the config `{}` holds for `{workload}` is not a point of today's space ({count} record(s) skipped); tune again", file.display())]
    OutsideSpace {
        /// The workload's key.
        workload: String,
        /// The file.
        file: PathBuf,
        /// How many records were skipped for it.
        count: usize,
    },
    /// The tuned config does not fit the vector shape of the instruction set asked for.
    #[error("the tuned config of `{workload}` is not a point of the space for -march={march}: {message}; tune on such a machine, or export with --march native")]
    MarchSpace {
        /// The workload's key.
        workload: String,
        /// The instruction set.
        march: March,
        /// Why it does not fit.
        message: String,
    },
    /// A user's operator, for which no reference loop (and so no test) can be written.
    #[error("`{key}` in `{}` is a custom operator; export-c exports built-in operators only (name the workloads to export)", file.display())]
    Custom {
        /// Its key.
        key: String,
        /// The file.
        file: PathBuf,
    },
    /// The file has nothing for this machine's C backend.
    #[error("`{}` has no tuned config for the C backend on this machine", file.display())]
    Nothing {
        /// The file.
        file: PathBuf,
    },
    /// Lowering a chosen config failed.
    #[error("lowering the tuned config of `{workload}`: {source}")]
    Lower {
        /// The workload's key.
        workload: String,
        /// What went wrong.
        #[source]
        source: Box<TemplateError>,
    },
    /// Writing the crate failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// One exported kernel and where its config came from.
#[derive(Clone, Debug)]
pub struct ExportedKernel {
    /// The workload's key.
    pub key: String,
    /// Its function in the exported crate.
    pub function: String,
    /// The record it came from: this machine, or a compatible target (and how it differs).
    pub source: Source,
    /// Its measured throughput, when the file holds it.
    pub gflops: Option<f64>,
}

/// What [`export_c`] wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The crate's directory and files.
    pub exported: Exported,
    /// Per kernel, in order.
    pub kernels: Vec<ExportedKernel>,
    /// What the caller should tell its user: damaged lines of the file, records skipped.
    pub warnings: Vec<String>,
}

/// The vector shape of an instruction set's space, `None` for `native` (this host's).
fn march_shape(march: March) -> Option<VectorShape> {
    match march {
        March::Native => None,
        March::X86_64V3 => Some(VectorShape::AVX2),
        March::X86_64V4 => Some(VectorShape::AVX512),
    }
}

/// Writes the crate of the best C-backend kernels `file` (a tuning log or a deploy database,
/// by content) holds for `workloads` on this machine (all of its built-in workloads when
/// `workloads` is empty) into `out`; see the module documentation for what is refused.
pub fn export_c(
    file: &Path,
    workloads: &[Workload],
    out: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, ExportCError> {
    let backend = c_backend().map_err(ExportCError::NoCompiler)?;
    let target = Target::host();
    let loaded = Loaded::read(file)?;
    let fingerprint = TargetFingerprint::new(&target, backend.as_ref());
    let workloads = if workloads.is_empty() {
        workloads_in(&loaded, &fingerprint)?
    } else {
        workloads.to_vec()
    };
    let mut kernels = Vec::new();
    let mut exported = Vec::new();
    let mut warnings = Vec::new();
    for workload in workloads {
        let key = TaskKey::of_workload(&workload).to_string();
        let chosen = loaded.choose(workload.into(), backend.as_ref(), &target)?;
        let (source, gflops) = match chosen.origin {
            Origin::Tuned { source, gflops } => (source, gflops),
            Origin::Fallback { .. } => {
                return Err(match loaded.outside_space.get(&key) {
                    Some(&count) => ExportCError::OutsideSpace {
                        workload: key,
                        file: file.to_path_buf(),
                        count,
                    },
                    None => ExportCError::NotInLog {
                        workload: key,
                        file: file.to_path_buf(),
                    },
                })
            }
        };
        for warning in chosen.warnings {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
        if let Some(shape) = march_shape(options.march) {
            Task::for_shape(workload, shape)
                .map_err(|error| error.to_string())
                .and_then(|task| {
                    task.space()
                        .from_values(&chosen.config.to_values())
                        .map_err(|error| error.to_string())
                })
                .map_err(|message| ExportCError::MarchSpace {
                    workload: key.clone(),
                    march: options.march,
                    message,
                })?;
        }
        let nest = chosen
            .task
            .lower(&chosen.config)
            .map_err(|source| ExportCError::Lower {
                workload: key.clone(),
                source: Box::new(source),
            })?;
        let note = match (&source, gflops) {
            (Source::CompatibleTarget { recorded, .. }, Some(gflops)) => {
                format!("tuned on {} at {gflops:.1} GFLOP/s", recorded.cpu_model)
            }
            (_, Some(gflops)) => format!("tuned at {gflops:.1} GFLOP/s on {}", target.cpu_model),
            (_, None) => "tuned".to_string(),
        };
        kernels.push(ExportKernel {
            key: key.clone(),
            workload,
            nest,
            note: Some(note),
        });
        exported.push(ExportedKernel {
            key,
            function: String::new(),
            source,
            gflops,
        });
    }
    let written = export(&kernels, out, options, backend.compiler(), &target)?;
    for (kernel, (_, function)) in exported.iter_mut().zip(&written.kernels) {
        kernel.function = function.clone();
    }
    Ok(ExportReport {
        exported: written,
        kernels: exported,
        warnings,
    })
}

/// The built-in workloads `loaded` has a tuned config of for `target` (exact or compatible), in
/// the file's order; a custom operator among them is an error.
fn workloads_in(
    loaded: &Loaded,
    target: &TargetFingerprint,
) -> Result<Vec<Workload>, ExportCError> {
    let mut workloads = Vec::new();
    for entry in loaded.dispatcher.db().entries() {
        // What the dispatcher would take for this machine: this target, or a compatible one.
        if entry.target != *target && !entry.target.is_compatible_with(target) {
            continue;
        }
        let workload: Workload = entry.workload.parse().map_err(|_| ExportCError::Custom {
            key: entry.workload.clone(),
            file: loaded.file.clone(),
        })?;
        if !workloads.contains(&workload) {
            workloads.push(workload);
        }
    }
    if workloads.is_empty() {
        return Err(ExportCError::Nothing {
            file: loaded.file.clone(),
        });
    }
    Ok(workloads)
}
