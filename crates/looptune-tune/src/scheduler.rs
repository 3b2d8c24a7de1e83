//! The task scheduler of whole-model tuning: which layer gets the next batch of trials.
//!
//! A model is many tasks (its distinct layers), each occurring some number of times; what counts
//! is the model's latency, the sum over tasks of multiplicity times latency, not any one task's
//! throughput. [`TaskScheduler`] follows Ansor's gradient-based allocation (Zheng et al., OSDI
//! 2020, section 6): after a round-robin warm-up that gives every task one batch, the next batch
//! goes to the task whose estimated gradient of the model latency with respect to its trials is
//! the most negative. For task *i* with best latency *g* after *t* rounds, multiplicity *w*,
//! FLOPs *C*:
//!
//! ```text
//! backward = (g(t) - g(t - window)) / window          (its recent improvement per round)
//! forward  = min(g - g / t, beta * C / V) - g         (optimistic next round: the 1/t rule, or
//!                                                       1/beta of V, the best throughput a task
//!                                                       of the same operator reaches)
//! gradient = w * (alpha * backward + (1 - alpha) * forward)
//! ```
//!
//! A task with no valid measurement yet comes first (its latency is unknown, so its share of the
//! model is too), but only for a few rounds: a task whose every candidate fails is given up
//! rather than allowed to eat the budget. Tasks whose space is exhausted are never chosen.
//!
//! The scheduler is plain arithmetic over reported measurements, so its choices are unit-tested
//! with synthetic curves; [`driver`] connects it to the tuning loop, the log and the tuners.
//!
//! **Invariant:** the scheduler sees measured throughputs only, never wall-clock time: the same
//! measurements make the same choices.

pub mod driver;

/// Parameters of the allocation rule (Ansor's defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerOptions {
    /// Weight of the backward (observed) gradient against the forward (optimistic) one.
    pub alpha: f64,
    /// How far below the best throughput of similar tasks a task may optimistically land: it is
    /// assumed able to reach `1 / beta` of it.
    pub beta: f64,
    /// Rounds over which the backward gradient is measured.
    pub window: usize,
    /// Trials per round, to turn a task's trial count into rounds.
    pub batch_size: usize,
    /// Rounds without any valid measurement after which a task is given up.
    pub max_rounds_without_result: usize,
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            alpha: 0.2,
            beta: 2.0,
            window: 3,
            batch_size: 8,
            max_rounds_without_result: 3,
        }
    }
}

/// What the scheduler knows of a task before measuring it.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerTask {
    /// A name for reports (`C2`).
    pub name: String,
    /// Tasks of one group are similar: the best throughput of one is a target for the others
    /// (the operator's name: `conv2d`, `matmul`).
    pub group: String,
    /// Floating-point operations of one run.
    pub flops: f64,
    /// How many times the task occurs in the model.
    pub multiplicity: u32,
}

/// Why a task was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// The round-robin warm-up: every task gets one batch first.
    WarmUp,
    /// The task has no valid measurement yet.
    NoValidResult,
    /// Its gradient of the model latency (seconds per round, negative) was the steepest.
    Gradient(f64),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::WarmUp => f.write_str("warm-up"),
            Reason::NoValidResult => f.write_str("no valid result yet"),
            Reason::Gradient(gradient) => write!(f, "gradient {:.3} ms/round", gradient * 1e3),
        }
    }
}

/// A choice of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pick {
    /// The task's position.
    pub task: usize,
    /// Why.
    pub reason: Reason,
}

#[derive(Clone, Debug, Default)]
struct TaskState {
    trials: usize,
    best_gflops: Option<f64>,
    /// Best latency after each round of this run, preceded by the resumed best if any.
    history: Vec<f64>,
    rounds: usize,
    rounds_without_result: usize,
    exhausted: bool,
}

/// Chooses the task of each round (see the module doc).
#[derive(Clone, Debug)]
pub struct TaskScheduler {
    tasks: Vec<SchedulerTask>,
    states: Vec<TaskState>,
    options: SchedulerOptions,
}

impl TaskScheduler {
    /// A scheduler over `tasks`, none measured yet.
    pub fn new(tasks: Vec<SchedulerTask>, options: SchedulerOptions) -> TaskScheduler {
        TaskScheduler {
            states: vec![TaskState::default(); tasks.len()],
            tasks,
            options,
        }
    }

    /// The tasks.
    pub fn tasks(&self) -> &[SchedulerTask] {
        &self.tasks
    }

    /// Starts `task` from what a log holds: `trials` measured configs, the best of them.
    pub fn resume(&mut self, task: usize, trials: usize, best_gflops: Option<f64>) {
        let latency = self.latency_of(task, best_gflops);
        let state = &mut self.states[task];
        state.trials = trials;
        state.best_gflops = best_gflops;
        state.history.clear();
        state.history.extend(latency);
    }

    /// Reports a round of `task`: `trials` measured, the best throughput known now (log
    /// included), and whether its tuner has nothing left to propose.
    pub fn record(
        &mut self,
        task: usize,
        trials: usize,
        best_gflops: Option<f64>,
        exhausted: bool,
    ) {
        let latency = self.latency_of(task, best_gflops);
        let state = &mut self.states[task];
        state.trials += trials;
        state.best_gflops = best_gflops;
        state.rounds += 1;
        state.exhausted |= exhausted;
        match latency {
            Some(latency) => state.history.push(latency),
            None => state.rounds_without_result += 1,
        }
    }

    /// Trials spent on `task` (resumed ones included).
    pub fn trials(&self, task: usize) -> usize {
        self.states[task].trials
    }

    /// The best throughput known for `task`.
    pub fn best_gflops(&self, task: usize) -> Option<f64> {
        self.states[task].best_gflops
    }

    /// Seconds of one run of `task` at its best throughput.
    pub fn latency_s(&self, task: usize) -> Option<f64> {
        self.latency_of(task, self.states[task].best_gflops)
    }

    /// The model's estimated latency: multiplicity times latency, summed over the tasks; `None`
    /// while a task has no valid measurement.
    pub fn model_latency_s(&self) -> Option<f64> {
        (0..self.tasks.len())
            .map(|task| {
                self.latency_s(task)
                    .map(|latency| latency * f64::from(self.tasks[task].multiplicity))
            })
            .sum()
    }

    fn latency_of(&self, task: usize, gflops: Option<f64>) -> Option<f64> {
        gflops
            .filter(|gflops| gflops.is_finite() && *gflops > 0.0)
            .map(|gflops| self.tasks[task].flops / (gflops * 1e9))
    }

    /// Whether `task` may still be chosen.
    fn live(&self, task: usize) -> bool {
        let state = &self.states[task];
        !state.exhausted && state.rounds_without_result < self.options.max_rounds_without_result
    }

    /// The gradient of the model latency with respect to one more round of `task` (seconds per
    /// round; more negative is a larger expected gain), or `None` without a valid measurement.
    pub fn gradient(&self, task: usize) -> Option<f64> {
        let latency = self.latency_s(task)?;
        let state = &self.states[task];
        let options = &self.options;
        let window = options.window.max(1);
        let backward = match state.history.len() {
            length if length > window => {
                (state.history[length - 1] - state.history[length - 1 - window]) / window as f64
            }
            _ => 0.0,
        };
        let rounds = (state.trials as f64 / options.batch_size.max(1) as f64).max(1.0);
        let by_rounds = latency - latency / rounds;
        let group = &self.tasks[task].group;
        let members = self.tasks.iter().filter(|t| &t.group == group).count();
        let group_best = (0..self.tasks.len())
            .filter(|&other| &self.tasks[other].group == group)
            .filter_map(|other| self.states[other].best_gflops)
            .fold(None, |best: Option<f64>, gflops| {
                Some(best.map_or(gflops, |best| best.max(gflops)))
            });
        let by_similar = match group_best {
            Some(best) if members > 1 && best > 0.0 => {
                options.beta * self.tasks[task].flops / (best * 1e9)
            }
            _ => f64::INFINITY,
        };
        let forward = by_rounds.min(by_similar) - latency;
        let weight = f64::from(self.tasks[task].multiplicity);
        Some(weight * (options.alpha * backward + (1.0 - options.alpha) * forward))
    }

    /// The task of the next round, or `None` when every task is exhausted or given up.
    pub fn next(&self) -> Option<Pick> {
        let live: Vec<usize> = (0..self.tasks.len()).filter(|&t| self.live(t)).collect();
        if let Some(&task) = live.iter().find(|&&t| self.states[t].rounds == 0) {
            return Some(Pick {
                task,
                reason: Reason::WarmUp,
            });
        }
        if let Some(&task) = live.iter().find(|&&t| self.states[t].best_gflops.is_none()) {
            return Some(Pick {
                task,
                reason: Reason::NoValidResult,
            });
        }
        // The steepest gradient; ties go to the task with the larger share of the model, then to
        // the first listed.
        let weighted = |task: usize| {
            self.latency_s(task).unwrap_or(0.0) * f64::from(self.tasks[task].multiplicity)
        };
        live.into_iter()
            .filter_map(|task| self.gradient(task).map(|gradient| (task, gradient)))
            .min_by(|(a, ga), (b, gb)| {
                ga.total_cmp(gb)
                    .then_with(|| weighted(*b).total_cmp(&weighted(*a)))
                    .then_with(|| a.cmp(b))
            })
            .map(|(task, gradient)| Pick {
                task,
                reason: Reason::Gradient(gradient),
            })
    }
}

#[cfg(test)]
mod tests;
