//! `CustomTask`: a template written by a user for an operator of their own.
//!
//! The built-in templates are reached through a [`Workload`](looptune_ir::Workload), a closed
//! set of operators. A user's operator is any [`Program`] built with
//! [`ProgramBuilder`](looptune_ir::ProgramBuilder); its template is a [`ConfigSpace`] (knobs and
//! constraints, built exactly as the built-in templates build theirs) plus a function from a
//! [`Config`] of that space to a [`Schedule`] of the program. A `CustomTask` holds the three
//! together and answers the same questions as [`Task`](crate::Task) (key, space, schedule,
//! lowered nest, fallback config, reference program, FLOPs), so whatever only needs a space
//! and a way to lower a point (the model-free tuners, the measurer) works on it unchanged.
//!
//! The promise of this crate holds here too, but it is the user's to keep: every config of the
//! space must lower to a nest computing the program. [`CustomTask::new`] lowers the fallback
//! config once so that a schedule function written for another program, or one that rejects
//! its own space, fails when the task is built rather than as an error record per candidate;
//! the measurer checks every candidate against the program before timing it.

use crate::error::{SpaceError, TemplateError};
use crate::space::{Config, ConfigSpace};
use crate::value::ConfigValues;
use looptune_ir::{lower, LoopNest, Program, Schedule};
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// The prefix of a custom task's key; no built-in operator has this name, so a custom task's
/// records can never be mistaken for a built-in workload's.
pub const CUSTOM_KEY_PREFIX: &str = "custom:";

/// A template's schedule function: the schedule of a config for the task's program.
pub type ScheduleFn = dyn Fn(&Program, &Config) -> Result<Schedule, TemplateError> + Send + Sync;

/// Why a [`CustomTask`] could not be built.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CustomTaskError {
    /// The name is empty or holds characters a log key cannot (whitespace, `,`, `=`).
    #[error("custom task name `{name}`: {problem}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The FLOP count is negative, NaN or infinite.
    #[error("custom task `{name}`: FLOPs per run must be a finite number >= 0, got {flops}")]
    BadFlops {
        /// The task's name.
        name: String,
        /// The value given.
        flops: f64,
    },
    /// Every point of the space breaks a constraint.
    #[error("custom task `{name}`: the space has no valid point ({size} points, all excluded)")]
    EmptySpace {
        /// The task's name.
        name: String,
        /// The raw size of the space.
        size: u128,
    },
    /// The fallback config is not a point of the space.
    #[error("custom task `{name}`: fallback config {config}: {source}")]
    BadFallback {
        /// The task's name.
        name: String,
        /// The values given.
        config: String,
        /// Why the space refused them.
        source: SpaceError,
    },
    /// The schedule function failed on the fallback config, or its schedule did not lower.
    #[error("custom task `{name}`: config {config} does not lower: {source}")]
    Template {
        /// The task's name.
        name: String,
        /// The config that failed, as knob values.
        config: String,
        /// The failure (boxed: schedule and lowering errors are large, and this one is rare).
        source: Box<TemplateError>,
    },
}

/// A user-defined operator with its template: a program, a space and a schedule function.
#[derive(Clone)]
pub struct CustomTask {
    name: String,
    program: Program,
    space: ConfigSpace,
    schedule: Arc<ScheduleFn>,
    flops: f64,
    fallback: Config,
}

impl fmt::Debug for CustomTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomTask")
            .field("name", &self.name)
            .field("program", &self.program.name)
            .field("space_size", &self.space.size())
            .field("flops", &self.flops)
            .field("fallback", &self.fallback.to_string())
            .finish_non_exhaustive()
    }
}

impl CustomTask {
    /// The task `name` computing `program`, scheduled by `schedule` over `space`; `flops` is
    /// the floating-point operations of one run (for GFLOP/s; 0 when they do not matter).
    ///
    /// The fallback config is the first valid point of the space (see
    /// [`CustomTask::with_fallback`]); it is lowered here, so a schedule function that does not
    /// fit its program or its space is an error now rather than at measure time.
    pub fn new(
        name: &str,
        program: Program,
        space: ConfigSpace,
        flops: f64,
        schedule: impl Fn(&Program, &Config) -> Result<Schedule, TemplateError> + Send + Sync + 'static,
    ) -> Result<CustomTask, CustomTaskError> {
        check_name(name)?;
        if !(flops.is_finite() && flops >= 0.0) {
            return Err(CustomTaskError::BadFlops {
                name: name.to_string(),
                flops,
            });
        }
        let Some(fallback) = space.iter().next() else {
            return Err(CustomTaskError::EmptySpace {
                name: name.to_string(),
                size: space.size(),
            });
        };
        let task = CustomTask {
            name: name.to_string(),
            program,
            space,
            schedule: Arc::new(schedule),
            flops,
            fallback,
        };
        task.check_lowers(&task.fallback)?;
        Ok(task)
    }

    /// The same task with `values` as its fallback config (the config deployed when nothing
    /// has been tuned), checked to be a point of the space that lowers.
    pub fn with_fallback(mut self, values: &ConfigValues) -> Result<CustomTask, CustomTaskError> {
        let fallback =
            self.space
                .from_values(values)
                .map_err(|source| CustomTaskError::BadFallback {
                    name: self.name.clone(),
                    config: show_values(values),
                    source,
                })?;
        self.check_lowers(&fallback)?;
        self.fallback = fallback;
        Ok(self)
    }

    /// The task's name, as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stable key of the task in tuning logs: `custom:` and the name. It never parses as a
    /// built-in [`Workload`](looptune_ir::Workload).
    pub fn key(&self) -> crate::TaskKey {
        crate::TaskKey::custom(&self.name)
    }

    /// The space of the template.
    pub fn space(&self) -> &ConfigSpace {
        &self.space
    }

    /// Floating-point operations of one run, for GFLOP/s.
    pub fn flops(&self) -> f64 {
        self.flops
    }

    /// The schedule of `config`, a point of [`CustomTask::space`].
    pub fn schedule(&self, config: &Config) -> Result<Schedule, TemplateError> {
        (self.schedule)(&self.program, config)
    }

    /// The lowered loop nest of `config`.
    pub fn lower(&self, config: &Config) -> Result<LoopNest, TemplateError> {
        Ok(lower(&self.schedule(config)?)?)
    }

    /// The config used when nothing has been tuned.
    pub fn fallback_config(&self) -> &Config {
        &self.fallback
    }

    /// The program outputs are checked against: the program the task was built with.
    pub fn reference_program(&self) -> &Program {
        &self.program
    }

    fn check_lowers(&self, config: &Config) -> Result<(), CustomTaskError> {
        self.lower(config)
            .map(drop)
            .map_err(|source| CustomTaskError::Template {
                name: self.name.clone(),
                config: config.to_string(),
                source: Box::new(source),
            })
    }
}

/// `name=value` pairs, as [`Config`]'s `Display` writes them.
fn show_values(values: &ConfigValues) -> String {
    values
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A name is part of a log key, whose workload part is `op:key=value,...`; characters that
/// would make the key ambiguous are refused.
fn check_name(name: &str) -> Result<(), CustomTaskError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(char::is_whitespace) {
        Some("it holds whitespace")
    } else if name.contains([',', '=']) {
        Some("it holds `,` or `=`")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(CustomTaskError::BadName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
