//! Helpers of the tests of the C backend as users get it (`backend.rs`, `measure.rs`,
//! `compiler.rs`): the discovered compiler with a cache in a temporary directory, nests under
//! the default schedule or the register-tiled recipe, and a check of a compiled kernel against
//! the reference interpreter.

#![allow(dead_code)]

use looptune_cc::cache::ObjectCache;
use looptune_cc::{CBackend, Compiler};
use looptune_ir::eval::{compare_with_magnitudes, magnitudes};
use looptune_ir::ops::Workload;
use looptune_ir::random::random_inputs;
use looptune_ir::recipes::{register_tiled_matmul, MatmulTiling};
use looptune_ir::{interp, lower, Layout, LoopNest, Program, Schedule};
use looptune_runtime::Kernel;
use std::path::Path;

/// The compiler the user's environment selects (`CC`, else `cc`, `gcc`, `clang`).
pub fn compiler() -> Compiler {
    Compiler::discover().expect("a C compiler: CC, or cc, gcc or clang on PATH")
}

/// The backend with the discovered compiler and its object cache in `dir` (never the user's).
pub fn backend(dir: &Path) -> CBackend {
    CBackend::with(compiler(), ObjectCache::new(dir))
}

/// The program and default-schedule nest of `text` (`matmul:m=4,n=4,k=4`).
pub fn default_schedule(text: &str) -> (Program, LoopNest) {
    let workload: Workload = text.parse().expect("a workload");
    let program = workload.program(&Layout::default()).expect("a program");
    let nest = lower(&Schedule::new(&program)).expect("the default schedule lowers");
    (program, nest)
}

/// The program and register-tiled nest of the matmul `text`.
pub fn tiled(text: &str, tiling: MatmulTiling) -> (Program, LoopNest) {
    let Workload::Matmul(params) = text.parse().expect("a workload") else {
        panic!("`{text}` is not a matmul");
    };
    let schedule = register_tiled_matmul(params, tiling).expect("the recipe applies");
    let nest = lower(&schedule).expect("the recipe lowers");
    (schedule.program().clone(), nest)
}

/// A nest with its inputs and the interpreter's outputs.
pub struct Checked {
    /// What a failure message calls it (a seed and workload, a shape and schedule).
    pub label: String,
    /// The nest compiled.
    pub nest: LoopNest,
    /// Its inputs.
    pub inputs: Vec<Vec<f32>>,
    /// The interpreter's outputs.
    pub expected: Vec<Vec<f32>>,
    /// The magnitude of every output element (see `looptune_ir::eval::magnitudes`).
    pub magnitudes: Vec<Vec<f32>>,
}

/// Outputs filled with a value no kernel computes by accident everywhere.
pub fn fresh_outputs(nest: &LoopNest) -> Vec<Vec<f32>> {
    nest.outputs
        .iter()
        .map(|&buffer| vec![0.5; nest.buffer(buffer).len()])
        .collect()
}

impl Checked {
    /// Runs the interpreter on `nest` with inputs from `input_seed`.
    pub fn new(
        label: String,
        program: &Program,
        nest: LoopNest,
        input_seed: u64,
    ) -> Result<Checked, String> {
        let inputs = random_inputs(program, input_seed);
        let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut expected = fresh_outputs(&nest);
        {
            let mut refs: Vec<&mut [f32]> = expected.iter_mut().map(Vec::as_mut_slice).collect();
            interp::run(&nest, &input_refs, &mut refs)
                .map_err(|error| format!("{label}: interpreter: {error}"))?;
        }
        let magnitudes = magnitudes(program, &input_refs)
            .map_err(|error| format!("{label}: evaluator: {error}"))?;
        Ok(Checked {
            label,
            nest,
            inputs,
            expected,
            magnitudes,
        })
    }

    /// Calls `kernel` and compares its outputs with the interpreter's: relative 1e-4 of the
    /// element's magnitude (the interpreter computes in f64, the kernel in f32).
    pub fn check(&self, kernel: &Kernel) -> Result<(), String> {
        let input_refs: Vec<&[f32]> = self.inputs.iter().map(Vec::as_slice).collect();
        let mut actual = fresh_outputs(&self.nest);
        {
            let mut refs: Vec<&mut [f32]> = actual.iter_mut().map(Vec::as_mut_slice).collect();
            kernel
                .call(&input_refs, &mut refs)
                .map_err(|error| format!("{}: call: {error}", self.label))?;
        }
        for ((actual, expected), magnitudes) in
            actual.iter().zip(&self.expected).zip(&self.magnitudes)
        {
            compare_with_magnitudes(actual, expected, magnitudes, 1e-4)
                .map_err(|mismatch| format!("{}: {mismatch:?}\n{}", self.label, self.nest))?;
        }
        Ok(())
    }
}

/// A fake compiler: `/bin/sh` running the script `body`, written to `dir/name` (run by the
/// shell, not executed itself, so no other thread's fork can hold it open for writing when it
/// starts: no `ETXTBSY`). As `CC` it is `/bin/sh DIR/NAME`.
pub fn shell_compiler(dir: &Path, name: &str, body: &str) -> Compiler {
    let script = dir.join(name);
    std::fs::write(&script, body).expect("write the script");
    Compiler::at("/bin/sh".into(), vec![script.display().to_string()]).expect("sh runs the script")
}

/// A compiler that answers `--version` and refuses every source with a diagnostic.
pub const REFUSING_COMPILER: &str = r#"
case "$1" in --version) echo "fake-cc 1.0 (refuses everything)"; exit 0;; esac
echo "fake-cc: error: this compiler refuses every kernel" >&2
exit 1
"#;

/// A compiler that compiles, instead of the kernel it is given, one whose `looptune_entry`
/// writes zeros into its third parameter, 13 x 37 of them: the output of the probe's matmul
/// (`A`, `B`, then `C`). It is the discovered compiler otherwise, so it passes for a good one
/// until its results are checked.
pub fn wrong_code_compiler(dir: &Path) -> Compiler {
    let broken = dir.join("zeros.c");
    std::fs::write(
        &broken,
        "void looptune_entry(void *const *args, const void *runtime) {\n\
         \x20   float *output = (float *)args[2];\n\
         \x20   (void)runtime;\n\
         \x20   for (int index = 0; index < 13 * 37; index++) output[index] = 0.0f;\n\
         }\n",
    )
    .expect("write the replacement kernel");
    let real = compiler();
    let mut words = vec![format!("'{}'", real.program.display())];
    words.extend(real.leading_args.iter().map(|arg| format!("'{arg}'")));
    let body = format!(
        "for arg do\n\
         \x20 shift\n\
         \x20 case \"$arg\" in\n\
         \x20   *.c) set -- \"$@\" '{}' ;;\n\
         \x20   *) set -- \"$@\" \"$arg\" ;;\n\
         \x20 esac\n\
         done\n\
         exec {} \"$@\"\n",
        broken.display(),
        words.join(" ")
    );
    shell_compiler(dir, "zeros-cc.sh", &body)
}
