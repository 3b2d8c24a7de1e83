//! Finding the system C compiler the way Rust users expect, and what it is.
//!
//! `CC` if set (as the `cc` crate and every build system read it: a program, optionally followed
//! by arguments such as `ccache gcc`), else the first of `cc`, `gcc` and `clang` on `PATH`. The
//! compiler's `--version` line and the flags it is run with are part of the backend's identity
//! (a kernel is a function of source, compiler, version and flags), and a compiler is only
//! accepted after it built and ran a probe kernel correctly (see `CBackend::detect`): some
//! compilers (tcc) accept `vector_size` and compute wrong results.

use looptune_runtime::target::FEATURE_NAMES;
use looptune_runtime::{CompileError, Target};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one compiler run may take before it is killed: a kernel compiles in well under a
/// second, so this only stops a compiler that hangs, which would otherwise stop a tuning run.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The flags the printed code is written for, whatever it is compiled into (a kernel's shared
/// object, an exported crate's library): the GNU dialect (statement expressions), `a * b + c`
/// contracted into FMAs, no `errno` from math, aliasing through the printer's vector types, and
/// no warnings (printed code is not read by people).
pub const CODE_FLAGS: [&str; 5] = [
    "-std=gnu11",
    "-fno-math-errno",
    "-ffp-contract=fast",
    "-fno-strict-aliasing",
    "-w",
];

/// What GCC is told to skip to compile faster without changing the code: bit-level constant
/// propagation took half of `cc1`'s time on register-tiled kernels (gcc 12 `-ftime-report`:
/// 0.27 of 0.55 s in "tree CCP"), and over the 102 objects of a 512^3 matmul tuning run the
/// assembly was identical for 101 and differed in one `vmovaps` for `vmovups` in the last
/// (docs/benchmarks.md, "Cheap trials"). Clang has no such pass.
pub const GCC_SPEED_FLAGS: [&str; 1] = ["-fno-tree-bit-ccp"];

/// What GCC is told to skip because it compiles printed code wrongly: gcc 12.2's late dead-store
/// elimination (`dse5`, after induction-variable optimisation had rewritten the accesses to a
/// local array through an integer) deleted stores that the next loop reads, so a random legal
/// schedule of `dense:m=11,n=6,k=6` (fresh seed 13979447684378593492) computed three wrong
/// elements at `-O2`, right at `-O1` and `-O3`, with clang, and with this flag. Skipping dead-store
/// elimination cost nothing measurable on tuned matmul, conv2d and depthwise kernels
/// (docs/benchmarks.md).
pub const GCC_CORRECTNESS_FLAGS: [&str; 1] = ["-fno-tree-dse"];

/// The compilers tried, in order, when `CC` is not set.
pub const CANDIDATES: [&str; 3] = ["cc", "gcc", "clang"];

/// Which command-line dialect a compiler speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GCC (and compilers that claim to be it).
    Gcc,
    /// Clang: prefers 256-bit vectors unless told otherwise.
    Clang,
}

/// A C compiler that can be run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiler {
    /// The program, as found on `PATH` or given by `CC`.
    pub program: PathBuf,
    /// Arguments `CC` put before ours (e.g. the real compiler after `ccache`).
    pub leading_args: Vec<String>,
    /// The first line of `--version`.
    pub version: String,
    /// Its dialect.
    pub family: Family,
}

/// Why no usable compiler was found.
fn not_found(message: String) -> CompileError {
    CompileError::CCompiler {
        compiler: "(none)".to_string(),
        kernel: "(compiler discovery)".to_string(),
        message,
    }
}

impl Compiler {
    /// The compiler `CC` names, else the first of [`CANDIDATES`] on `PATH`.
    pub fn discover() -> Result<Compiler, CompileError> {
        Compiler::discover_from(std::env::var("CC").ok())
    }

    /// [`Compiler::discover`] with `cc` as the value of `CC` (`None`, or only blanks: unset),
    /// so that the rule can be exercised without changing this process's environment.
    pub fn discover_from(cc: Option<String>) -> Result<Compiler, CompileError> {
        match cc {
            Some(value) if !value.trim().is_empty() => {
                let mut words = value.split_whitespace().map(str::to_string);
                let program = words.next().unwrap_or_default();
                let leading: Vec<String> = words.collect();
                let resolved = find_on_path(&program).ok_or_else(|| {
                    not_found(format!(
                        "CC=`{value}` names `{program}`, which is not found"
                    ))
                })?;
                Compiler::at(resolved, leading)
            }
            _ => {
                let found = CANDIDATES
                    .iter()
                    .find_map(|name| find_on_path(name))
                    .ok_or_else(|| {
                        not_found(format!(
                            "CC is not set and none of {} is on PATH",
                            CANDIDATES.join(", ")
                        ))
                    })?;
                Compiler::at(found, Vec::new())
            }
        }
    }

    /// The compiler at `program` (run with `leading_args` first), after asking its version.
    pub fn at(program: PathBuf, leading_args: Vec<String>) -> Result<Compiler, CompileError> {
        let output = Command::new(&program)
            .args(&leading_args)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| {
                not_found(format!(
                    "`{} --version` did not run: {error}",
                    program.display()
                ))
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.lines().next().unwrap_or("").trim().to_string();
        if !output.status.success() || version.is_empty() {
            return Err(not_found(format!(
                "`{} --version` failed ({}): {}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let family = if text.to_ascii_lowercase().contains("clang") {
            Family::Clang
        } else {
            Family::Gcc
        };
        Ok(Compiler {
            program,
            leading_args,
            version,
            family,
        })
    }

    /// The flags a kernel for `target` is compiled with: optimisation, the host's instruction
    /// set less the features the target does not have, position-independent shared object, and
    /// for GCC [`GCC_SPEED_FLAGS`] and [`GCC_CORRECTNESS_FLAGS`].
    pub fn flags(&self, target: &Target) -> Vec<String> {
        // The order is part of the backend's identity in tuning logs (and of cache keys), so
        // it stays the one records were written with: `-std` before the shared-object flags.
        let (dialect, code) = CODE_FLAGS.split_at(1);
        let mut flags: Vec<String> = ["-O2", "-march=native"]
            .iter()
            .chain(dialect)
            .chain(&["-fPIC", "-shared"])
            .chain(code)
            .map(|flag| flag.to_string())
            .collect();
        // Every feature the host has and the target lacks is switched off, so the object runs
        // on the machine the target describes (gcc and clang name them as `FEATURE_NAMES` do).
        let host = looptune_runtime::IsaFeatures::host().as_array();
        let wanted = target.features.as_array();
        for ((name, host_has), want) in FEATURE_NAMES.iter().zip(host).zip(wanted) {
            if host_has && !want {
                flags.push(format!("-mno-{name}"));
            }
        }
        if target.features.avx512f {
            // Clang (and GCC on some Intel cores) halve 512-bit work unless told to use it.
            flags.push("-mprefer-vector-width=512".to_string());
        }
        if self.family == Family::Gcc {
            flags.extend(
                GCC_SPEED_FLAGS
                    .iter()
                    .chain(&GCC_CORRECTNESS_FLAGS)
                    .map(|flag| flag.to_string()),
            );
        }
        flags
    }

    /// The command line as one string, for identities and messages.
    pub fn describe(&self) -> String {
        let mut words = vec![self.program.display().to_string()];
        words.extend(self.leading_args.iter().cloned());
        words.join(" ")
    }

    /// Compiles `source_path` into the shared object `output` with `flags`.
    pub fn compile(
        &self,
        source_path: &Path,
        output: &Path,
        flags: &[String],
        kernel: &str,
    ) -> Result<(), CompileError> {
        let failed = |message: String| CompileError::CCompiler {
            compiler: self.describe(),
            kernel: kernel.to_string(),
            message,
        };
        let mut child = Command::new(&self.program)
            .args(&self.leading_args)
            .args(flags)
            .arg("-o")
            .arg(output)
            .arg(source_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| failed(format!("could not run it: {error}")))?;
        // The diagnostics are read on a thread so that a chatty compiler cannot block on a full
        // pipe while this thread waits for it.
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = stderr {
                let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
            }
            text
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < COMPILE_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!(
                        "no result within {} s; the compiler was killed",
                        COMPILE_TIMEOUT.as_secs()
                    )));
                }
                Err(error) => return Err(failed(format!("waiting for it: {error}"))),
            }
        };
        let stderr = reader.join().unwrap_or_default();
        let result = std::process::Output {
            status,
            stdout: Vec::new(),
            stderr,
        };
        if result.status.success() {
            return Ok(());
        }
        let diagnostics = String::from_utf8_lossy(&result.stderr);
        // The first lines say what is wrong; the rest repeats it for every use.
        let head: Vec<&str> = diagnostics.lines().take(12).collect();
        Err(CompileError::CCompiler {
            compiler: self.describe(),
            kernel: kernel.to_string(),
            message: format!("{} ({})", head.join("\n"), result.status),
        })
    }
}

/// `name` itself when it is a path, else the first executable `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named() {
        let error = Compiler::at(PathBuf::from("/nonexistent/looptune-cc"), Vec::new())
            .expect_err("no such compiler");
        assert!(
            error.to_string().contains("/nonexistent/looptune-cc"),
            "{error}"
        );
    }

    #[test]
    fn the_flags_follow_the_target() {
        let Ok(compiler) = Compiler::discover() else {
            return;
        };
        let host = Target::host();
        let flags = compiler.flags(&host.clone().without_fma());
        if host.features.fma {
            assert!(flags.iter().any(|flag| flag == "-mno-fma"), "{flags:?}");
        }
        assert!(flags.iter().any(|flag| flag == "-O2"));
        let has_speed_flags = GCC_SPEED_FLAGS
            .iter()
            .chain(&GCC_CORRECTNESS_FLAGS)
            .all(|speed| flags.iter().any(|flag| flag == speed));
        assert_eq!(has_speed_flags, compiler.family == Family::Gcc, "{flags:?}");
        let clang = Compiler {
            family: Family::Clang,
            ..compiler
        };
        let flags = clang.flags(&host);
        assert!(!flags.iter().any(|flag| {
            GCC_SPEED_FLAGS.contains(&flag.as_str())
                || GCC_CORRECTNESS_FLAGS.contains(&flag.as_str())
        }));
    }
}
