//! A new operator, its template, and tuning it: a ProjectionNet-style projection layer.
//!
//! ```sh
//! cargo run --release --example custom_op -- --seconds 5
//! ```
//!
//! ProjectionNet (Ravi, 2017) replaces an embedding lookup with locality-sensitive hashing: an
//! input vector `x` is projected on `bits` fixed random directions and each projection keeps only
//! its sign, `bit_j = [P_j · x > 0]`; the bits are then packed into words. Here the layer is
//! written with looptune's `compute`/`sum` builder (two stages: the dot products, then the
//! packing), a template is given for it (a config space of five knobs and a function from a
//! config to a schedule), a random search measures configs for a few seconds in a worker
//! process, and the best one is compiled, called on our own buffers and checked, word for
//! word, against the reference interpreter running the unscheduled definition.
//!
//! The JIT's call API passes `f32` buffers, and an `f32` holds every integer below 2^24 exactly,
//! so each word packs 16 bits (`sum_b 2^b * bit`), an exact value whatever order the kernel
//! adds in. Packing 32 bits per word needs integer parameter buffers, which the call API does
//! not have yet.

#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::Parser;
use looptune::ir::expr::{CmpOp, Cond};
use looptune::ir::program::sum;
use looptune::ir::{interp, DType, IrError, ProgramBuilder, ValueExpr};
use looptune::runtime::measure::time_in_process;
use looptune::runtime::MeasureOptions;
use looptune::space::{
    Annotation, Config, ConfigSpace, CustomTask, Factors, Knob, SpaceError, TemplateError,
};
use looptune::tune::{Observer, Progress, TunerKind};
use looptune::{lower, Program, Schedule, Tuning};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Bits packed in one `f32` word (exact: below 2^24).
const BITS_PER_WORD: i64 = 16;

/// Tune a ProjectionNet-style projection layer written with `compute`.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of tuning (no batch starts after this).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Most configs to measure.
    #[arg(long, default_value_t = 200)]
    trials: usize,
    /// Input vectors per call.
    #[arg(long, default_value_t = 64)]
    batch: i64,
    /// Features of an input vector.
    #[arg(long, default_value_t = 128)]
    features: i64,
    /// Output words per vector (16 bits each).
    #[arg(long, default_value_t = 32)]
    words: i64,
    /// Seed of the random search.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The tuning log: appended to, and resumed from when it exists.
    #[arg(long, default_value = "custom_op.tunelog")]
    log: PathBuf,
}

/// Errors are printed as a chain of causes (`error: reading x: No such file`) and exit code 1,
/// never a panic.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", looptune::error_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // Candidates run in a child process (a crashing kernel becomes an error, not the end of
    // the search): this same executable, which this call serves and ends when it is started as
    // the worker.
    looptune::serve_worker_if_requested();
    let args = Args::parse();
    if !(args.seconds.is_finite() && args.seconds >= 0.0) {
        bail!(
            "--seconds {} must be a number of seconds, at least 0",
            args.seconds
        );
    }
    for (name, value) in [
        ("--batch", args.batch),
        ("--features", args.features),
        ("--words", args.words),
    ] {
        if value < 1 {
            bail!("{name} {value} must be at least 1");
        }
    }

    // 1. The operator and its template.
    let program = projection(args.batch, args.features, args.words)
        .context("defining the projection layer")?;
    let space = projection_space(args.words).context("building the config space")?;
    let flops = (2 * args.batch * args.features * args.words * BITS_PER_WORD) as f64;
    let task = CustomTask::new(
        &format!(
            "projection_b{}_f{}_w{}",
            args.batch, args.features, args.words
        ),
        program,
        space,
        flops,
        projection_schedule,
    )?;
    println!(
        "operator    {} ({} raw points in the space)",
        task.key(),
        task.space().size()
    );

    // 2. Tune: random configs, each checked against the program and timed in the worker,
    //    compiled with C through the system compiler when one works, else Cranelift.
    let mut lines = Lines;
    let tuned = Tuning::new(task.clone())
        .tuner(TunerKind::Random)
        .seed(args.seed)
        .trials(args.trials)
        .time_budget(Duration::from_secs_f64(args.seconds))
        .log(&args.log)
        .measure_options(MeasureOptions {
            repeat: 3,
            min_repeat_ms: 20.0,
            timeout: Duration::from_secs(10),
            ..MeasureOptions::default()
        })
        .observer(&mut lines)
        .run()?;
    for note in tuned.notes() {
        eprintln!("{note}");
    }
    let report = &tuned.report;
    let Some(best) = &report.best else {
        bail!(
            "none of the {} configs measured passed its check ({} errors)",
            report.trials,
            report.errors
        );
    };
    let best_config = task.space().from_values(&best.values)?;
    println!(
        "searched    {} configs ({} failed, {} resumed from {}), stopped: {}",
        report.trials,
        report.errors,
        report.resumed,
        args.log.display(),
        report.stop_reason
    );
    println!("best        {:.2} GFLOP/s: {best_config}", best.gflops);

    // 3. Compile the best config and call it on our own buffers.
    let batch = args.batch as usize;
    let features = args.features as usize;
    let bits = (args.words * BITS_PER_WORD) as usize;
    let inputs: Vec<f32> = (0..batch * features)
        .map(|index| ((index * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let directions: Vec<f32> = (0..features * bits)
        .map(|index| ((index * 53 % 97) as f32 - 48.0) / 48.0)
        .collect();
    let kernel = tuned.best_kernel()?;
    let mut packed = vec![0.0f32; batch * args.words as usize];
    kernel.call(&[&inputs, &directions], &mut [&mut packed])?;

    // 4. The reference interpreter on the unscheduled definition must give the same words.
    let reference_nest = lower(&Schedule::new(task.reference_program()))?;
    let mut expected = vec![0.0f32; packed.len()];
    interp::run(
        &reference_nest,
        &[&inputs, &directions],
        &mut [&mut expected],
    )?;
    if let Some(word) = (0..packed.len()).find(|&word| packed[word] != expected[word]) {
        bail!(
            "word {word} is {:016b}, the interpreter says {:016b}",
            packed[word] as u32,
            expected[word] as u32
        );
    }
    let per_call = Duration::from_secs_f64(
        time_in_process(&MeasureOptions::default(), || {
            kernel.call(&[&inputs, &directions], &mut [&mut packed])
        })?
        .median_s,
    );
    println!(
        "checked     all {} words equal the reference interpreter's",
        packed.len()
    );
    println!(
        "tuned       {:.3} ms per call, {:.2} GFLOP/s on our buffers",
        per_call.as_secs_f64() * 1e3,
        flops / per_call.as_secs_f64() / 1e9
    );
    let ones: u32 = packed.iter().map(|&word| (word as u32).count_ones()).sum();
    println!(
        "bits        {} ... (vector 0; {ones} of {} bits set overall)",
        packed[..4.min(packed.len())]
            .iter()
            .map(|&word| format!("{:016b}", word as u32))
            .collect::<Vec<_>>()
            .join(" "),
        batch * bits
    );
    Ok(())
}

/// `bits[i, w] = sum_b 2^b * [dots[i, 16w + b] > 0]` where `dots = X · P`: `X` holds `batch`
/// input vectors of `features` values, `P` one random direction per column.
fn projection(batch: i64, features: i64, words: i64) -> Result<Program, IrError> {
    let columns = words * BITS_PER_WORD;
    let mut builder = ProgramBuilder::new("projection");
    let x = builder.placeholder("X", &[batch, features], DType::F32)?;
    let p = builder.placeholder("P", &[features, columns], DType::F32)?;
    let k = builder.reduce_axis("k", features)?;
    let dots = builder.compute(
        "dots",
        DType::F32,
        &[("i", batch), ("j", columns)],
        |axes| {
            sum(
                x.at(&[axes[0].clone(), k.var()]) * p.at(&[k.var(), axes[1].clone()]),
                &[&k],
            )
        },
    )?;
    let bits = builder.compute("bits", DType::F32, &[("i", batch), ("w", words)], |axes| {
        (0..BITS_PER_WORD)
            .map(|bit| {
                let column = axes[1].clone() * BITS_PER_WORD + bit;
                let positive = Cond::Value(
                    CmpOp::Gt,
                    Box::new(dots.at(&[axes[0].clone(), column])),
                    Box::new(ValueExpr::f32(0.0)),
                );
                ValueExpr::select(
                    positive,
                    ValueExpr::f32((1u32 << bit) as f32),
                    ValueExpr::f32(0.0),
                )
            })
            .reduce(|sum, term| sum + term)
            .unwrap_or_else(|| ValueExpr::f32(0.0))
    })?;
    builder.build(&[&bits])
}

/// Where the dot products are computed relative to the packing loops.
const AT_ROOT: i64 = 0;
const AT_ROW: i64 = 1;
const AT_WORD_BLOCK: i64 = 2;

/// The template's knobs:
/// - `tile_w`: words packed per block of the packing stage's `w` loop;
/// - `attach`: the dot products all at once (a whole matrix), per input row, or per block of
///   words (a temporary of 16 x `tile_w` values that stays in cache);
/// - `tile_j`: the dot products' column block;
/// - `order`: within a column block, the reduction outside the columns (one FMA per column
///   and step, columns contiguous in `P`) or inside them (one dot product at a time);
/// - `inner`: how the innermost column loop runs: plain, unrolled, or as f32x4 vectors.
fn projection_space(words: i64) -> Result<ConfigSpace, SpaceError> {
    let mut space = ConfigSpace::new();
    space.add(Knob::split(
        "tile_w",
        words,
        &[Factors::List(vec![1, 2, 4])],
    )?)?;
    space.add(Knob::choice("attach", &[AT_ROOT, AT_ROW, AT_WORD_BLOCK])?)?;
    // Column blocks divide a word's 16 bits, so they divide every region the dot products may
    // be computed over.
    space.add(Knob::split(
        "tile_j",
        words * BITS_PER_WORD,
        &[Factors::List(vec![4, 8, 16])],
    )?)?;
    space.add(Knob::reorder(
        "order",
        &["k", "j.inner"],
        &[vec![0, 1], vec![1, 0]],
    )?)?;
    space.add(Knob::annotate(
        "inner",
        &["j.inner"],
        &[vec![
            Annotation::None,
            Annotation::Unroll,
            Annotation::Vectorize,
        ]],
    )?)?;
    // A vectorized loop must be innermost: the column block inside the reduction.
    space.constrain("vectorized columns are innermost", |config| {
        let vectorized = config
            .annotate("inner")
            .is_ok_and(|kinds| kinds[0] == Annotation::Vectorize);
        !vectorized || config.reorder("order").is_ok_and(|order| order == [0, 1])
    });
    Ok(space)
}

/// The schedule of a point of [`projection_space`].
fn projection_schedule(program: &Program, config: &Config) -> Result<Schedule, TemplateError> {
    let words_per_block = config.split("tile_w")?[1];
    let attach = config.choice("attach")?;
    let columns_per_block = config.split("tile_j")?[1];
    let reduction_outside = config.reorder("order")? == [0, 1];
    let inner = config.annotate("inner")?[0];

    let mut schedule = Schedule::new(program);
    let bits = schedule.stage("bits")?;
    let dots = schedule.stage("dots")?;
    let [row, word] = [
        schedule.spatial_axes(bits)[0],
        schedule.spatial_axes(bits)[1],
    ];
    let (word_block, _) = schedule.split(bits, word, words_per_block)?;
    match attach {
        AT_ROW => schedule.compute_at(dots, bits, row)?,
        AT_WORD_BLOCK => schedule.compute_at(dots, bits, word_block)?,
        _ => {}
    }
    let [dot_row, column] = [
        schedule.spatial_axes(dots)[0],
        schedule.spatial_axes(dots)[1],
    ];
    let reduction = schedule.reduce_axes(dots)[0];
    let (column_block, column_inner) = schedule.split(dots, column, columns_per_block)?;
    let order = if reduction_outside {
        [dot_row, column_block, reduction, column_inner]
    } else {
        [dot_row, column_block, column_inner, reduction]
    };
    schedule.reorder(dots, &order)?;
    if inner != Annotation::None {
        schedule.annotate(dots, column_inner, inner.loop_kind())?;
    }
    Ok(schedule)
}

/// Prints one line per batch on stderr.
struct Lines;

impl Observer for Lines {
    fn batch_done(&mut self, progress: &Progress) {
        let best = progress
            .best_gflops
            .map_or("-".to_string(), |gflops| format!("{gflops:.2} GFLOP/s"));
        eprintln!(
            "  {}/{} configs, best {best}, {} failed",
            progress.trials, progress.budget, progress.errors
        );
    }
}
