//! Shards: a model's tasks split among machines that tune them apart, each into its own log,
//! merged afterwards (`looptune_log::merge_into`).
//!
//! A shard is `index/count` (`0/4` .. `3/4`). Which tasks a shard tunes is decided by
//! [`partition`] from the tasks' estimated costs alone, so it is the same on every machine, in
//! every round and on a rerun of a crashed shard (which then resumes from its own log): nothing
//! measured, no clock, no machine property goes in. Every task lands in exactly one shard; with
//! more shards than tasks the surplus shards have nothing to do.
//!
//! The cost of tuning a task is estimated as its FLOPs times the trials it is expected to get
//! ([`TaskCost`]). Before anything is measured the whole-model scheduler's allocation is not
//! known, so the CLI gives every task the same estimate (the budget split evenly) and the
//! balance is by FLOPs; a caller that knows better passes its own. The split is the classic
//! longest-processing-time rule: tasks by falling cost (ties by key), each to the shard with the
//! least cost so far (ties to the lowest index), which keeps the largest shard within 4/3 of
//! the best possible split.
//!
//! A shard comes from `INDEX/COUNT` text ([`Shard::parse`]), or from the batch system's
//! environment ([`ShardSpec::Auto`], resolved by [`ShardSpec::resolve`]): the index from Slurm's
//! `SLURM_ARRAY_TASK_ID` or Kubernetes' `JOB_COMPLETION_INDEX` (an Indexed Job), the count from
//! an explicit count (the CLI's `--shard-count`), else `LOOPTUNE_SHARD_COUNT`, else Slurm's
//! `SLURM_ARRAY_TASK_COUNT`. An explicit count is what a resubmitted shard needs: `sbatch
//! --array=1` of a 4-shard job is an array of one task, whose `SLURM_ARRAY_TASK_COUNT` is 1.

use looptune_ir::Workload;
use std::fmt;
use thiserror::Error;

/// Slurm's index of an array task (`sbatch --array=0-3` runs 0 .. 3).
pub const SLURM_INDEX: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm's number of tasks in the array.
pub const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// Kubernetes' index of a pod of an Indexed Job.
pub const KUBERNETES_INDEX: &str = "JOB_COMPLETION_INDEX";
/// The shard count, for engines that do not export one (Kubernetes: set it to the Job's
/// `completions`), or to override Slurm's.
pub const COUNT_VARIABLE: &str = "LOOPTUNE_SHARD_COUNT";

/// One shard of `count`: the tasks [`partition`] gives to `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

/// A shard as asked for: a fixed `INDEX/COUNT`, or `auto` (from the environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    /// This shard.
    Fixed(Shard),
    /// The shard the batch system's environment names (see the module doc).
    Auto,
}

/// Why a shard could not be made.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardError {
    /// The text is not `INDEX/COUNT` or `auto`.
    #[error("shard `{text}` is not INDEX/COUNT (such as `0/4`) or `auto`")]
    Syntax {
        /// The text.
        text: String,
    },
    /// A part of `INDEX/COUNT` is not a whole number.
    #[error("shard `{text}`: `{part}` is not a whole number")]
    NotANumber {
        /// The whole text.
        text: String,
        /// The part that is not a number.
        part: String,
    },
    /// The count is zero.
    #[error("shard `{text}`: the count is 0; there must be at least one shard")]
    ZeroCount {
        /// The shard as written (`0/0`), or where it came from.
        text: String,
    },
    /// The index is not below the count.
    #[error(
        "shard `{text}`: index {index} is not below the count {count} (shards are numbered 0 to \
         count - 1)"
    )]
    IndexOutOfRange {
        /// The shard as written, or where it came from.
        text: String,
        /// The index.
        index: usize,
        /// The count.
        count: usize,
    },
    /// `auto` found no index in the environment.
    #[error(
        "shard `auto`: neither {SLURM_INDEX} (a Slurm job array) nor {KUBERNETES_INDEX} (a \
         Kubernetes Indexed Job) is set; give the shard as INDEX/COUNT"
    )]
    NoIndex,
    /// `auto` found an index but no count.
    #[error(
        "shard `auto`: {index_variable} is set but there is no shard count: give one (the CLI's \
         --shard-count) or set {COUNT_VARIABLE}"
    )]
    NoCount {
        /// The variable the index came from.
        index_variable: &'static str,
    },
    /// An environment variable holds something other than a whole number.
    #[error("shard `auto`: {variable}=`{value}` is not a whole number")]
    BadVariable {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, ShardError> {
        check(index, count, || format!("{index}/{count}"))
    }

    /// The whole model as one shard.
    pub fn whole() -> Shard {
        Shard { index: 0, count: 1 }
    }

    /// Parses `INDEX/COUNT` (`auto` is [`ShardSpec`]'s).
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let Some((index, count)) = text.split_once('/') else {
            return Err(ShardError::Syntax {
                text: text.to_string(),
            });
        };
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| ShardError::NotANumber {
                    text: text.to_string(),
                    part: part.to_string(),
                })
        };
        let (index, count) = (number(index)?, number(count)?);
        check(index, count, || text.to_string())
    }

    /// Its index, from 0.
    pub fn index(self) -> usize {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> usize {
        self.count
    }

    /// The positions in `costs` of the tasks this shard tunes, in their order in `costs`.
    pub fn positions(self, costs: &[TaskCost]) -> Vec<usize> {
        partition(costs, self.count)
            .into_iter()
            .enumerate()
            .filter(|&(_, shard)| shard == self.index)
            .map(|(position, _)| position)
            .collect()
    }

    /// This shard's items of `items` (a model's layers or tasks), in their order, each costed
    /// by `cost`.
    pub fn take<T>(self, items: Vec<T>, cost: impl Fn(&T) -> TaskCost) -> Vec<T> {
        let costs: Vec<TaskCost> = items.iter().map(cost).collect();
        let assigned = partition(&costs, self.count);
        items
            .into_iter()
            .zip(assigned)
            .filter(|&(_, shard)| shard == self.index)
            .map(|(item, _)| item)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardSpec {
    /// Parses `INDEX/COUNT` or `auto`.
    pub fn parse(text: &str) -> Result<ShardSpec, ShardError> {
        if text.trim() == "auto" {
            Ok(ShardSpec::Auto)
        } else {
            Shard::parse(text).map(ShardSpec::Fixed)
        }
    }

    /// The shard: the fixed one, or for `auto` the one `variable` (the environment, or a map in
    /// tests) names, with `count` (when given) as the count.
    pub fn resolve(
        self,
        count: Option<usize>,
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<Shard, ShardError> {
        if let ShardSpec::Fixed(shard) = self {
            return Ok(shard);
        }
        let number =
            |name: &'static str| -> Result<Option<usize>, ShardError> {
                match variable(name) {
                    None => Ok(None),
                    Some(value) => value.trim().parse::<usize>().map(Some).map_err(|_| {
                        ShardError::BadVariable {
                            variable: name,
                            value,
                        }
                    }),
                }
            };
        let (index_variable, index) = match number(SLURM_INDEX)? {
            Some(index) => (SLURM_INDEX, index),
            None => match number(KUBERNETES_INDEX)? {
                Some(index) => (KUBERNETES_INDEX, index),
                None => return Err(ShardError::NoIndex),
            },
        };
        let (count_source, count) = match count {
            Some(count) => ("count", count),
            None => match number(COUNT_VARIABLE)? {
                Some(count) => (COUNT_VARIABLE, count),
                None => match (index_variable, number(SLURM_COUNT)?) {
                    (SLURM_INDEX, Some(count)) => (SLURM_COUNT, count),
                    _ => return Err(ShardError::NoCount { index_variable }),
                },
            },
        };
        check(index, count, || {
            format!("auto: {index_variable}={index}, {count_source}={count}")
        })
    }
}

/// `index/count` if the index is below a count of at least 1; `text` names it in the error.
fn check(index: usize, count: usize, text: impl Fn() -> String) -> Result<Shard, ShardError> {
    if count == 0 {
        return Err(ShardError::ZeroCount { text: text() });
    }
    if index >= count {
        return Err(ShardError::IndexOutOfRange {
            text: text(),
            index,
            count,
        });
    }
    Ok(Shard { index, count })
}

/// What a task is expected to cost to tune, for balancing shards.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCost {
    /// The task's log key (a workload's canonical text): breaks ties between equal costs, so the
    /// partition does not depend on the order tasks are listed in.
    pub key: String,
    /// Floating-point operations of one call.
    pub flops: f64,
    /// Trials the task is expected to get.
    pub trials: f64,
}

impl TaskCost {
    /// The cost of tuning `workload` with `trials` trials expected; keyed by its canonical text.
    pub fn for_workload(workload: &Workload, trials: f64) -> TaskCost {
        TaskCost {
            key: workload.to_string(),
            flops: workload.flops(),
            trials,
        }
    }

    /// FLOPs times trials; a non-finite or negative product counts as 0.
    pub fn estimate(&self) -> f64 {
        let cost = self.flops * self.trials;
        if cost.is_finite() && cost > 0.0 {
            cost
        } else {
            0.0
        }
    }
}

/// The shard of each task (by position in `costs`) when they are split among `count` shards
/// (at least 1; 0 is taken as 1): longest processing time first, see the module doc.
pub fn partition(costs: &[TaskCost], count: usize) -> Vec<usize> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| {
        costs[b]
            .estimate()
            .total_cmp(&costs[a].estimate())
            .then_with(|| costs[a].key.cmp(&costs[b].key))
            .then_with(|| a.cmp(&b))
    });
    let mut loads = vec![0.0f64; count];
    let mut shards = vec![0; costs.len()];
    for position in order {
        let lightest = (0..count)
            .min_by(|&a, &b| loads[a].total_cmp(&loads[b]).then_with(|| a.cmp(&b)))
            .unwrap_or(0);
        loads[lightest] += costs[position].estimate();
        shards[position] = lightest;
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Network;
    use std::collections::HashMap;

    fn costs(network: Network) -> Vec<TaskCost> {
        network
            .layers()
            .iter()
            .map(|layer| TaskCost::for_workload(&layer.workload, 10.0))
            .collect()
    }

    #[test]
    fn every_task_lands_in_exactly_one_shard_for_any_count() {
        for network in Network::ALL {
            let costs = costs(network);
            for count in 1..=costs.len() + 3 {
                let mut seen = vec![0; costs.len()];
                for index in 0..count {
                    let shard = Shard::new(index, count).expect("valid");
                    for position in shard.positions(&costs) {
                        seen[position] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&times| times == 1),
                    "{network} in {count} shards: {seen:?}"
                );
                // Every shard gets a task while there are tasks enough.
                let used: std::collections::HashSet<usize> =
                    partition(&costs, count).into_iter().collect();
                assert_eq!(used.len(), count.min(costs.len()), "{network} / {count}");
            }
        }
    }

    #[test]
    fn the_partition_is_the_same_whatever_the_order_of_the_tasks() {
        let costs = costs(Network::Resnet18);
        let mut reversed = costs.clone();
        reversed.reverse();
        for count in 1..=5 {
            let forward = partition(&costs, count);
            let backward = partition(&reversed, count);
            for (position, shard) in forward.iter().enumerate() {
                assert_eq!(*shard, backward[costs.len() - 1 - position]);
            }
            assert_eq!(forward, partition(&costs, count), "deterministic");
        }
    }

    #[test]
    fn resnet18_in_two_shards_is_balanced_by_flops() {
        let costs = costs(Network::Resnet18);
        let assigned = partition(&costs, 2);
        let mut loads = [0.0; 2];
        for (cost, shard) in costs.iter().zip(&assigned) {
            loads[*shard] += cost.estimate();
        }
        let total: f64 = loads.iter().sum();
        let largest = loads.iter().cloned().fold(0.0, f64::max);
        assert!(largest / total < 0.55, "{loads:?}");
        // A pinned split: a change of rule changes which shard resumes which log.
        let names: Vec<Vec<&str>> = (0..2)
            .map(|shard| {
                Network::Resnet18
                    .layers()
                    .iter()
                    .zip(&assigned)
                    .filter(|(_, s)| **s == shard)
                    .map(|(layer, _)| layer.name)
                    .collect()
            })
            .collect();
        expect_test::expect![[r#"
            [
                [
                    "C1",
                    "C3",
                    "C5",
                    "C7",
                    "C8",
                    "C10",
                    "C11",
                    "C12",
                ],
                [
                    "C2",
                    "C4",
                    "C6",
                    "C9",
                ],
            ]
        "#]]
        .assert_debug_eq(&names);
    }

    #[test]
    fn take_keeps_this_shards_items_in_order() {
        let layers = Network::Resnet18.layers();
        let cost = |layer: &crate::models::Layer| TaskCost {
            key: layer.workload.to_string(),
            flops: layer.workload.flops(),
            trials: 1.0,
        };
        let first = Shard::new(0, 2).expect("valid").take(layers.clone(), cost);
        let second = Shard::new(1, 2).expect("valid").take(layers.clone(), cost);
        assert_eq!(first.len() + second.len(), layers.len());
        assert!(Shard::whole().take(layers.clone(), cost) == layers);
    }

    #[test]
    fn fixed_shards_parse_and_bad_ones_name_the_value() {
        assert_eq!(Shard::parse("1/4"), Shard::new(1, 4));
        assert_eq!(
            Shard::parse(" 0 / 1 ").map(|shard| shard.to_string()),
            Ok("0/1".to_string())
        );
        let message = |text: &str| ShardSpec::parse(text).expect_err("refused").to_string();
        assert_eq!(
            message("3/2"),
            "shard `3/2`: index 3 is not below the count 2 (shards are numbered 0 to count - 1)"
        );
        assert_eq!(
            message("0/0"),
            "shard `0/0`: the count is 0; there must be at least one shard"
        );
        assert_eq!(message("x/y"), "shard `x/y`: `x` is not a whole number");
        assert_eq!(message("1/-2"), "shard `1/-2`: `-2` is not a whole number");
        assert_eq!(
            message("3"),
            "shard `3` is not INDEX/COUNT (such as `0/4`) or `auto`"
        );
        assert_eq!(ShardSpec::parse("auto"), Ok(ShardSpec::Auto));
    }

    fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn auto_reads_slurm_then_kubernetes_and_prefers_an_explicit_count() {
        let slurm = environment(&[(SLURM_INDEX, "1"), (SLURM_COUNT, "3")]);
        assert_eq!(ShardSpec::Auto.resolve(None, &slurm), Shard::new(1, 3));
        // A resubmitted shard is an array of one; the explicit count wins.
        let resubmitted = environment(&[(SLURM_INDEX, "2"), (SLURM_COUNT, "1")]);
        assert_eq!(
            ShardSpec::Auto.resolve(Some(4), &resubmitted),
            Shard::new(2, 4)
        );
        let with_variable = environment(&[
            (SLURM_INDEX, "2"),
            (SLURM_COUNT, "1"),
            (COUNT_VARIABLE, "4"),
        ]);
        assert_eq!(
            ShardSpec::Auto.resolve(None, &with_variable),
            Shard::new(2, 4)
        );
        let error = ShardSpec::Auto
            .resolve(None, &resubmitted)
            .expect_err("2 of 1");
        assert_eq!(
            error.to_string(),
            "shard `auto: SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=1`: index 2 is not below \
             the count 1 (shards are numbered 0 to count - 1)"
        );
        let kubernetes = environment(&[(KUBERNETES_INDEX, "3"), (COUNT_VARIABLE, "5")]);
        assert_eq!(ShardSpec::Auto.resolve(None, &kubernetes), Shard::new(3, 5));
        assert_eq!(
            ShardSpec::Auto.resolve(None, environment(&[(KUBERNETES_INDEX, "3")])),
            Err(ShardError::NoCount {
                index_variable: KUBERNETES_INDEX
            })
        );
        // A fixed shard ignores the environment.
        assert_eq!(
            ShardSpec::parse("0/2").and_then(|spec| spec.resolve(Some(9), &slurm)),
            Shard::new(0, 2)
        );
    }

    #[test]
    fn auto_without_an_index_or_with_garbage_is_an_error_naming_it() {
        assert_eq!(
            ShardSpec::Auto.resolve(Some(2), environment(&[])),
            Err(ShardError::NoIndex)
        );
        let error = ShardSpec::Auto
            .resolve(None, environment(&[(SLURM_INDEX, "x"), (SLURM_COUNT, "2")]))
            .expect_err("garbage");
        assert_eq!(
            error.to_string(),
            "shard `auto`: SLURM_ARRAY_TASK_ID=`x` is not a whole number"
        );
        let error = ShardSpec::Auto
            .resolve(Some(0), environment(&[(SLURM_INDEX, "0")]))
            .expect_err("zero");
        assert!(matches!(error, ShardError::ZeroCount { .. }), "{error}");
    }
}
