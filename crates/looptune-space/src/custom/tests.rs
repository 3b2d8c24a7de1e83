//! A user-defined two-stage operator with a small template: every point is correct through the
//! interpreter and the JIT, and each way of building a task wrongly is a typed error.

use super::*;
use crate::knob::{Annotation, Factors, Knob};
use looptune_ir::eval::{compare, evaluate};
use looptune_ir::program::sum;
use looptune_ir::random::random_inputs;
use looptune_ir::{interp, DType, LoopKind, ProgramBuilder, ValueExpr};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, Target};

const ROWS: i64 = 5;
const COLUMNS: i64 = 12;
const DEPTH: i64 = 6;

/// `Z = max(X · W, 0)`, the product a stage of its own so that the template can place it.
fn relu_product() -> Program {
    let mut builder = ProgramBuilder::new("relu_product");
    let x = builder
        .placeholder("X", &[ROWS, DEPTH], DType::F32)
        .unwrap();
    let w = builder
        .placeholder("W", &[DEPTH, COLUMNS], DType::F32)
        .unwrap();
    let k = builder.reduce_axis("k", DEPTH).unwrap();
    let y = builder
        .compute("Y", DType::F32, &[("i", ROWS), ("j", COLUMNS)], |axes| {
            sum(
                x.at(&[axes[0].clone(), k.var()]) * w.at(&[k.var(), axes[1].clone()]),
                &[&k],
            )
        })
        .unwrap();
    let z = builder
        .compute("Z", DType::F32, &[("i", ROWS), ("j", COLUMNS)], |axes| {
            y.at(&[axes[0].clone(), axes[1].clone()])
                .max(ValueExpr::f32(0.0))
        })
        .unwrap();
    builder.build(&[&z]).unwrap()
}

/// A column split, where the product is computed, and how the inner columns run.
fn relu_product_space() -> ConfigSpace {
    let mut space = ConfigSpace::new();
    space
        .add(Knob::split("tile_j", COLUMNS, &[Factors::List(vec![1, 2, 4, 8])]).unwrap())
        .unwrap();
    space.add(Knob::choice("attach", &[0, 1]).unwrap()).unwrap();
    space
        .add(
            Knob::annotate(
                "inner",
                &["j.inner"],
                &[vec![
                    Annotation::None,
                    Annotation::Unroll,
                    Annotation::Vectorize,
                ]],
            )
            .unwrap(),
        )
        .unwrap();
    space.constrain("vectorized columns are whole f32x4 vectors", |config| {
        let vectorized = config
            .annotate("inner")
            .is_ok_and(|kinds| kinds[0] == Annotation::Vectorize);
        let inner = config.split("tile_j").map_or(0, |parts| parts[1]);
        !vectorized || inner % 4 == 0
    });
    space
}

fn relu_product_schedule(program: &Program, config: &Config) -> Result<Schedule, TemplateError> {
    let inner = config.split("tile_j")?[1];
    let attach = config.choice("attach")?;
    let annotation = config.annotate("inner")?[0];
    let mut schedule = Schedule::new(program);
    let output = schedule.stage("Z")?;
    let product = schedule.stage("Y")?;
    let columns = schedule.spatial_axes(output)[1];
    let (outer_columns, inner_columns) = schedule.split(output, columns, inner)?;
    if annotation != Annotation::None {
        schedule.annotate(output, inner_columns, annotation.loop_kind())?;
    }
    if attach == 1 {
        schedule.compute_at(product, output, outer_columns)?;
    }
    Ok(schedule)
}

fn relu_product_task() -> CustomTask {
    CustomTask::new(
        "relu_product",
        relu_product(),
        relu_product_space(),
        (2 * ROWS * COLUMNS * DEPTH) as f64,
        relu_product_schedule,
    )
    .unwrap()
}

#[test]
fn every_point_of_a_custom_template_is_correct_in_the_interpreter_and_the_jit() {
    let task = relu_product_task();
    let program = task.reference_program();
    let inputs = random_inputs(program, 7);
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let expected = evaluate(program, &slices).unwrap().remove(0);
    let backend = CraneliftBackend::new();
    let target = Target::host();
    let mut points = 0;
    let mut vectorized = 0;
    let mut attached = 0;
    for config in task.space().iter() {
        let nest = task
            .lower(&config)
            .unwrap_or_else(|err| panic!("{config}: {err}"));
        let mut interpreted = vec![0.0; expected.len()];
        interp::run(&nest, &slices, &mut [&mut interpreted])
            .unwrap_or_else(|err| panic!("{config}: {err}"));
        compare(&interpreted, &expected, 1e-5)
            .unwrap_or_else(|err| panic!("interpreter, {config}: {err:?}"));
        let kernel = backend
            .compile(&nest, &target)
            .unwrap_or_else(|err| panic!("{config}: {err}"));
        let mut compiled = vec![0.0; expected.len()];
        kernel
            .call(&slices, &mut [&mut compiled])
            .unwrap_or_else(|err| panic!("{config}: {err}"));
        compare(&compiled, &expected, 1e-5).unwrap_or_else(|err| panic!("JIT, {config}: {err:?}"));
        points += 1;
        vectorized += usize::from(nest_loop_kinds(&nest).contains(&LoopKind::Vectorized));
        attached += usize::from(config.choice("attach").unwrap() == 1);
    }
    // 4 splits x 2 placements x 3 annotations, minus the vectorized splits by 1 and 2.
    assert_eq!(points, 4 * 2 * 3 - 2 * 2);
    assert_eq!(attached, points / 2);
    assert!(vectorized >= 4, "{vectorized} vectorized nests");
}

#[test]
fn the_schedule_places_the_product_where_the_config_says() {
    let task = relu_product_task();
    let mut allocations = Vec::new();
    for attach in [0, 1] {
        let values: ConfigValues = vec![
            ("tile_j".to_string(), crate::KnobValue::Split(vec![3, 4])),
            ("attach".to_string(), crate::KnobValue::Choice(attach)),
            (
                "inner".to_string(),
                crate::KnobValue::Annotate(vec!["vectorize".to_string()]),
            ),
        ];
        let config = task.space().from_values(&values).unwrap();
        let nest = task.lower(&config).unwrap();
        let printed = nest.to_string();
        let line = printed
            .lines()
            .find(|line| line.contains("alloc Y"))
            .unwrap_or_else(|| panic!("no allocation of Y in\n{printed}"))
            .trim()
            .to_string();
        allocations.push(line);
        let kinds = nest_loop_kinds(&nest);
        assert!(kinds.contains(&LoopKind::Vectorized), "{printed}");
    }
    // At the root the product is the whole matrix; at the column block, one row of 4 columns.
    assert!(allocations[0].contains("[5, 12]"), "{}", allocations[0]);
    assert!(allocations[1].contains("[1, 4]"), "{}", allocations[1]);
}

fn nest_loop_kinds(nest: &LoopNest) -> Vec<LoopKind> {
    let mut kinds = Vec::new();
    nest.body.walk(&mut |stmt| {
        if let looptune_ir::Stmt::For(for_loop) = stmt {
            kinds.push(for_loop.kind);
        }
    });
    kinds
}

#[test]
fn the_key_is_prefixed_and_never_a_builtin_workload() {
    let task = relu_product_task();
    assert_eq!(task.key(), "custom:relu_product");
    assert_eq!(task.name(), "relu_product");
    assert!(task
        .key()
        .as_str()
        .parse::<looptune_ir::Workload>()
        .is_err());
    assert_eq!(task.flops(), 720.0);
}

#[test]
fn the_fallback_is_the_first_valid_point_unless_given() {
    let task = relu_product_task();
    assert_eq!(task.fallback_config(), &task.space().iter().next().unwrap());
    let wanted = task.space().iter().nth(5).unwrap();
    let task = task.with_fallback(&wanted.to_values()).unwrap();
    assert_eq!(task.fallback_config(), &wanted);
}

#[test]
fn a_fallback_outside_the_space_is_refused() {
    let values: ConfigValues = vec![
        ("tile_j".to_string(), crate::KnobValue::Split(vec![6, 2])),
        ("attach".to_string(), crate::KnobValue::Choice(0)),
        (
            "inner".to_string(),
            crate::KnobValue::Annotate(vec!["vectorize".to_string()]),
        ),
    ];
    let error = relu_product_task().with_fallback(&values).unwrap_err();
    assert!(
        matches!(
            &error,
            CustomTaskError::BadFallback {
                source: SpaceError::Violates { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("tile_j=split[6, 2]"), "{error}");
}

#[test]
fn bad_names_and_flops_are_refused() {
    for (name, problem) in [
        ("", "it is empty"),
        ("two words", "it holds whitespace"),
        ("a=b", "it holds `,` or `=`"),
    ] {
        let error = CustomTask::new(
            name,
            relu_product(),
            relu_product_space(),
            1.0,
            relu_product_schedule,
        )
        .unwrap_err();
        assert_eq!(
            error,
            CustomTaskError::BadName {
                name: name.to_string(),
                problem
            }
        );
    }
    for flops in [-1.0, f64::NAN, f64::INFINITY] {
        let error = CustomTask::new(
            "relu_product",
            relu_product(),
            relu_product_space(),
            flops,
            relu_product_schedule,
        )
        .unwrap_err();
        assert!(
            matches!(error, CustomTaskError::BadFlops { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn a_space_without_valid_points_is_refused() {
    let mut space = relu_product_space();
    space.constrain("nothing", |_| false);
    let error =
        CustomTask::new("empty", relu_product(), space, 1.0, relu_product_schedule).unwrap_err();
    assert_eq!(
        error,
        CustomTaskError::EmptySpace {
            name: "empty".to_string(),
            size: 24
        }
    );
}

#[test]
fn a_schedule_function_for_another_program_fails_when_the_task_is_built() {
    // The schedule asks for a stage the program does not have.
    let error = CustomTask::new(
        "wrong_stage",
        relu_product(),
        relu_product_space(),
        1.0,
        |program, _config| {
            let schedule = Schedule::new(program);
            schedule.stage("C")?;
            Ok(schedule)
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            &error,
            CustomTaskError::Template { source, .. }
                if matches!(**source, TemplateError::Schedule(_))
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("wrong_stage"), "{error}");
}
