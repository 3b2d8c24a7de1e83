//! The scheduler's choices on synthetic measurements: no JIT, no log.

use super::*;

fn task(name: &str, group: &str, gflop: f64, multiplicity: u32) -> SchedulerTask {
    SchedulerTask {
        name: name.to_string(),
        group: group.to_string(),
        flops: gflop * 1e9,
        multiplicity,
    }
}

fn options() -> SchedulerOptions {
    SchedulerOptions {
        batch_size: 4,
        ..SchedulerOptions::default()
    }
}

/// Runs the warm-up, reporting `first[i]` GFLOP/s for task `i`.
fn warmed_up(tasks: Vec<SchedulerTask>, first: &[Option<f64>]) -> TaskScheduler {
    let mut scheduler = TaskScheduler::new(tasks, options());
    for (expected, gflops) in first.iter().enumerate() {
        let pick = scheduler.next().expect("a task");
        assert_eq!(
            pick,
            Pick {
                task: expected,
                reason: Reason::WarmUp
            }
        );
        scheduler.record(pick.task, 4, *gflops, false);
    }
    scheduler
}

#[test]
fn warm_up_is_round_robin_in_order_even_for_resumed_tasks() {
    let mut scheduler = TaskScheduler::new(
        vec![task("a", "conv", 1.0, 1), task("b", "conv", 1.0, 1)],
        options(),
    );
    scheduler.resume(1, 40, Some(10.0));
    let first = scheduler.next().unwrap();
    assert_eq!(first.reason, Reason::WarmUp);
    assert_eq!(first.task, 0);
    scheduler.record(0, 4, Some(1.0), false);
    assert_eq!(
        scheduler.next(),
        Some(Pick {
            task: 1,
            reason: Reason::WarmUp
        })
    );
    assert_eq!(scheduler.trials(1), 40, "resumed trials are counted");
}

#[test]
fn the_model_estimate_weighs_each_layer_by_its_multiplicity() {
    let scheduler = warmed_up(
        vec![task("a", "conv", 2.0, 3), task("b", "dense", 1.0, 1)],
        &[Some(10.0), Some(4.0)],
    );
    // 3 * 2 GFLOP / 10 GFLOP/s + 1 GFLOP / 4 GFLOP/s.
    let latency = scheduler.model_latency_s().unwrap();
    assert!((latency - (0.6 + 0.25)).abs() < 1e-12, "{latency}");
    let unmeasured = TaskScheduler::new(vec![task("a", "conv", 1.0, 1)], options());
    assert_eq!(unmeasured.model_latency_s(), None);
}

#[test]
fn after_warm_up_the_larger_share_of_the_model_is_tuned_first() {
    // Same shape and throughput, different groups (no similarity term): only the multiplicity
    // differs, so the layer that occurs four times has four times the gradient.
    let scheduler = warmed_up(
        vec![task("once", "a", 1.0, 1), task("four", "b", 1.0, 4)],
        &[Some(5.0), Some(5.0)],
    );
    let pick = scheduler.next().unwrap();
    assert_eq!(pick.task, 1);
    let (Some(once), Some(four)) = (scheduler.gradient(0), scheduler.gradient(1)) else {
        panic!("both measured");
    };
    assert!(
        once < 0.0 && (four / once - 4.0).abs() < 1e-9,
        "{once} {four}"
    );
}

#[test]
fn a_task_far_below_what_similar_tasks_reach_is_chosen() {
    // Two conv layers of equal work and weight: `slow` runs at 2 GFLOP/s where `fast` of the
    // same operator reaches 20, so reaching half of 20 would cut its latency by 80%. An unrelated
    // dense layer measured at the same 2 GFLOP/s has no such target. (After a single round the
    // 1/t rule promises every task everything; the target matters from the second round on.)
    let mut scheduler = warmed_up(
        vec![
            task("fast", "conv", 1.0, 1),
            task("slow", "conv", 1.0, 1),
            task("other", "dense", 1.0, 1),
        ],
        &[Some(20.0), Some(2.0), Some(2.0)],
    );
    for _ in 0..2 {
        for (position, gflops) in [20.0, 2.0, 2.0].into_iter().enumerate() {
            scheduler.record(position, 4, Some(gflops), false);
        }
    }
    let pick = scheduler.next().unwrap();
    assert_eq!(
        pick.task,
        1,
        "{:?}",
        [0, 1, 2].map(|t| scheduler.gradient(t))
    );
    assert!(scheduler.gradient(1) < scheduler.gradient(2));
}

#[test]
fn recent_improvement_draws_trials_and_a_flat_curve_does_not() {
    // Two layers of equal latency and no similar tasks; one improved steadily over its last
    // rounds, the other has been flat since its first.
    let mut scheduler = warmed_up(
        vec![task("improving", "a", 1.0, 1), task("flat", "b", 1.0, 1)],
        &[Some(1.0), Some(4.0)],
    );
    for gflops in [2.0, 3.0, 4.0] {
        scheduler.record(0, 4, Some(gflops), false);
        scheduler.record(1, 4, Some(4.0), false);
    }
    assert_eq!(scheduler.latency_s(0), scheduler.latency_s(1));
    let (improving, flat) = (
        scheduler.gradient(0).unwrap(),
        scheduler.gradient(1).unwrap(),
    );
    assert!(improving < flat, "{improving} {flat}");
    assert_eq!(scheduler.next().unwrap().task, 0);
}

#[test]
fn a_task_without_a_valid_result_comes_first_until_it_is_given_up() {
    let mut scheduler = warmed_up(
        vec![task("ok", "a", 1.0, 1), task("failing", "b", 1.0, 1)],
        &[Some(5.0), None],
    );
    // The warm-up round was its first without a result; two more are allowed.
    for _ in 0..2 {
        assert_eq!(
            scheduler.next(),
            Some(Pick {
                task: 1,
                reason: Reason::NoValidResult
            })
        );
        scheduler.record(1, 4, None, false);
    }
    let pick = scheduler.next().unwrap();
    assert_eq!(pick.task, 0);
    assert!(matches!(pick.reason, Reason::Gradient(g) if g < 0.0));
    assert_eq!(scheduler.model_latency_s(), None);
}

#[test]
fn exhausted_tasks_are_never_chosen_and_the_end_is_none() {
    let mut scheduler = warmed_up(
        vec![task("big", "a", 10.0, 8), task("small", "b", 0.1, 1)],
        &[Some(1.0), Some(1.0)],
    );
    assert_eq!(scheduler.next().unwrap().task, 0);
    scheduler.record(0, 2, Some(1.0), true);
    assert_eq!(scheduler.next().unwrap().task, 1);
    scheduler.record(1, 0, Some(1.0), true);
    assert_eq!(scheduler.next(), None);
}

/// A synthetic layer: throughput approaches `ceiling` as trials grow, at `rate` per trial.
fn simulated(ceiling: f64, rate: f64, trials: usize) -> f64 {
    ceiling * (1.0 - (-(trials as f64) * rate).exp()).max(0.05)
}

/// The model latency after spending `rounds` rounds of 4 trials, choosing tasks with `choose`.
fn spend(
    tasks: &[(SchedulerTask, f64, f64)],
    rounds: usize,
    mut choose: impl FnMut(&TaskScheduler, usize) -> usize,
) -> (f64, Vec<usize>) {
    let mut scheduler = TaskScheduler::new(
        tasks.iter().map(|(task, ..)| task.clone()).collect(),
        options(),
    );
    for round in 0..rounds {
        let position = choose(&scheduler, round);
        let (_, ceiling, rate) = tasks[position];
        let trials = scheduler.trials(position) + 4;
        scheduler.record(position, 4, Some(simulated(ceiling, rate, trials)), false);
    }
    let spent = (0..tasks.len()).map(|t| scheduler.trials(t)).collect();
    (scheduler.model_latency_s().unwrap(), spent)
}

#[test]
fn gradient_allocation_beats_round_robin_on_a_synthetic_model() {
    // A heavy layer that keeps improving, a light one that converges at once, and a layer of the
    // heavy one's operator that starts far below it.
    let tasks = [
        (task("heavy", "conv", 4.0, 4), 20.0, 0.02),
        (task("light", "dense", 0.1, 1), 10.0, 1.0),
        (task("sibling", "conv", 1.0, 2), 16.0, 0.01),
    ];
    let rounds = 30;
    let (scheduled, spent) = spend(&tasks, rounds, |scheduler, _| {
        scheduler.next().expect("a live task").task
    });
    let (round_robin, _) = spend(&tasks, rounds, |_, round| round % tasks.len());
    assert!(
        scheduled < round_robin,
        "scheduled {scheduled} s, round robin {round_robin} s"
    );
    assert_eq!(
        spent[1], 4,
        "the converged light layer got only its warm-up: {spent:?}"
    );
    assert!(spent[0] > spent[2], "{spent:?}");
}
