//! The ahead-of-time exporter: tuned loop nests in, a small standalone Rust crate out, so that a
//! framework ships tuned kernels with no JIT and no looptune at run time.
//!
//! The crate written to the output directory holds:
//! - `c/kernels.c`: every kernel as this backend's printer prints it ([`emit_c`]), each with its
//!   own exported symbol (`CRATE_KEY`, from the crate name and the sanitized task key), in one
//!   file that one compiler run builds (the printer's prelude is guarded for that);
//! - `c/kernels.h`: the runtime table and one prototype per kernel, for C callers;
//! - `build.rs`: compiles the C with the `cc` crate and the flags of the chosen [`March`];
//! - `src/runtime.rs`: the runtime table the printed code calls back into (parallel-for,
//!   allocation of large temporaries) in plain `std` Rust, the same layout as
//!   `looptune-runtime`'s `Runtime`;
//! - `src/lib.rs`: one safe function per kernel that checks every slice's length and returns a
//!   typed error otherwise (slices of the operands' element types: `f32`, or `u8`, `i8` and
//!   `i32` for the quantized operators), and tests that run each kernel on random inputs
//!   against a plain Rust loop written from the workload's parameters ([`reference`]), within
//!   rounding for `f32` and bit for bit for the quantized ones.
//!
//! A workload the reference module has no loop for, or a kernel whose operands differ from what
//! its reference expects, is refused ([`ExportError::Unsupported`]): nothing is exported
//! untested. The C file is compiled once here, with the flags the build script will use, so a
//! compiler that cannot build it is found now, not by the crate's user.

#![forbid(unsafe_code)]

mod files;
mod reference;

use crate::compiler::{Compiler, CODE_FLAGS};
use crate::emit::{emit_c, EmitError, EmitOptions};
use crate::CBackend;
use looptune_ir::{LoopNest, Workload};
use looptune_runtime::{CompileError, Target};
use reference::Reference;
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

/// The instruction set the exported C is compiled for (`-march=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum March {
    /// The machine that builds the crate (`-march=native`): its vector width is assumed to be
    /// this host's.
    #[default]
    Native,
    /// AVX2 and FMA (Haswell and later, Zen): 8 f32 lanes.
    X86_64V3,
    /// AVX-512 (Skylake-X and later, Zen 4): 16 f32 lanes.
    X86_64V4,
}

/// A `--march` value that is none of the supported ones.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown instruction set `{0}`: expected native, x86-64-v3 or x86-64-v4")]
pub struct UnknownMarch(pub String);

impl FromStr for March {
    type Err = UnknownMarch;

    fn from_str(text: &str) -> Result<March, UnknownMarch> {
        match text {
            "native" => Ok(March::Native),
            "x86-64-v3" => Ok(March::X86_64V3),
            "x86-64-v4" => Ok(March::X86_64V4),
            other => Err(UnknownMarch(other.to_string())),
        }
    }
}

impl fmt::Display for March {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            March::Native => "native",
            March::X86_64V3 => "x86-64-v3",
            March::X86_64V4 => "x86-64-v4",
        })
    }
}

impl March {
    /// The f32 lanes the printer uses for this instruction set (`native`: this host's).
    pub fn lanes(self, host: &Target) -> usize {
        match self {
            March::Native => CBackend::lanes_for(host),
            March::X86_64V3 => 8,
            March::X86_64V4 => 16,
        }
    }

    /// The compiler flags of this instruction set, besides optimisation: `-march`, the flags
    /// that shape the printed code ([`CODE_FLAGS`]) and, where 512-bit vectors may exist, the
    /// preference for them (clang halves them otherwise).
    pub fn flags(self) -> Vec<String> {
        let mut flags = vec![format!("-march={self}")];
        flags.extend(CODE_FLAGS.iter().map(|flag| flag.to_string()));
        if self != March::X86_64V3 {
            flags.push("-mprefer-vector-width=512".to_string());
        }
        flags
    }
}

/// How to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The instruction set.
    pub march: March,
    /// The crate's name (`[A-Za-z][A-Za-z0-9_-]*`); also the prefix of the C symbols.
    pub crate_name: String,
    /// Write into a directory that is not empty, replacing the files the export writes (and
    /// nothing else).
    pub force: bool,
}

impl Default for ExportOptions {
    /// `native`, crate `tuned_kernels`, no overwriting.
    fn default() -> ExportOptions {
        ExportOptions {
            march: March::Native,
            crate_name: "tuned_kernels".to_string(),
            force: false,
        }
    }
}

/// One kernel to export: the tuned nest of a built-in workload.
#[derive(Clone, Debug)]
pub struct ExportKernel {
    /// The task key (the workload's canonical text), which names the kernel.
    pub key: String,
    /// The workload, which its reference loop is written from.
    pub workload: Workload,
    /// The lowered nest of its best config.
    pub nest: LoopNest,
    /// A line for the wrapper's documentation (where the config came from, its speed).
    pub note: Option<String>,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The crate's directory.
    pub dir: PathBuf,
    /// Per kernel, in the order given: its task key and its Rust function's name.
    pub kernels: Vec<(String, String)>,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
}

/// Why an export failed. Nothing is written until every kernel is printed; the C file is
/// compiled after it is written, so a [`ExportError::Compile`] leaves the crate for inspection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Nothing to export.
    #[error("no kernels to export")]
    NoKernels,
    /// A crate name Cargo or C would not take.
    #[error("crate name `{name}` is not of the form [A-Za-z][A-Za-z0-9_-]*")]
    CrateName {
        /// The name given.
        name: String,
    },
    /// The output directory holds files and `force` was not given.
    #[error("`{}` is not empty; choose another directory or pass --force to replace the exported files in it", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// A workload whose kernel cannot be exported with a test.
    #[error("cannot export `{workload}`: {reason}")]
    Unsupported {
        /// The task key.
        workload: String,
        /// Why.
        reason: String,
    },
    /// The printer refused a nest.
    #[error("printing `{workload}` as C: {source}")]
    Emit {
        /// The task key.
        workload: String,
        /// What the printer said.
        #[source]
        source: EmitError,
    },
    /// The C file did not compile with the crate's flags (or no compiler ran).
    #[error("the exported C does not compile for -march={march}: {source}")]
    Compile {
        /// The instruction set asked for.
        march: March,
        /// The compiler's failure.
        #[source]
        source: CompileError,
    },
    /// Writing a file failed.
    #[error("writing `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// A kernel ready to be written: its names, its reference and its C.
pub(crate) struct Prepared {
    pub key: String,
    pub rust_name: String,
    pub c_symbol: String,
    pub note: Option<String>,
    pub reference: Reference,
    /// The shapes of its operands, inputs then output, as the nest declares them.
    pub shapes: Vec<Vec<i64>>,
    pub source: String,
}

/// The Rust function name of a task key: `matmul:m=64,n=64,k=64` is `matmul_m64_n64_k64`; a
/// `flag=true` becomes `flag` and a `flag=false` is left out.
pub fn kernel_name(key: &str) -> String {
    let (op, params) = key.split_once(':').unwrap_or((key, ""));
    let mut parts = vec![op.to_string()];
    for param in params.split(',').filter(|param| !param.is_empty()) {
        match param.split_once('=') {
            Some((name, "true")) => parts.push(name.to_string()),
            Some((_, "false")) => {}
            Some((name, value)) => parts.push(format!("{name}{value}")),
            None => parts.push(param.to_string()),
        }
    }
    let mut name: String = parts
        .join("_")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = name.trim_matches('_').to_string();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("k_{name}")
    } else {
        name
    }
}

fn valid_crate_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks `kernel` against its reference and prints it.
fn prepare(
    kernel: &ExportKernel,
    rust_name: String,
    c_symbol: String,
    lanes: usize,
) -> Result<Prepared, ExportError> {
    let unsupported = |reason: String| ExportError::Unsupported {
        workload: kernel.key.clone(),
        reason,
    };
    let reference = reference::reference(&kernel.workload).ok_or_else(|| {
        unsupported(
            "no reference loop is written for this operator, so it could not be tested".into(),
        )
    })?;
    let nest = &kernel.nest;
    let params: Vec<_> = nest.params().map(|id| &nest.buffers[id.index()]).collect();
    let expected: Vec<_> = reference
        .inputs
        .iter()
        .chain(std::iter::once(&reference.output))
        .collect();
    let found: Vec<String> = params
        .iter()
        .map(|decl| format!("{} ({} {})", decl.name, decl.len(), decl.dtype))
        .collect();
    let wanted: Vec<String> = expected
        .iter()
        .map(|operand| format!("{} ({} {})", operand.name, operand.len, operand.dtype))
        .collect();
    if found != wanted || nest.outputs.len() != 1 {
        return Err(unsupported(format!(
            "its kernel takes {}, its reference loop {}",
            found.join(", "),
            wanted.join(", ")
        )));
    }
    let source =
        emit_c(nest, &EmitOptions::new(lanes).with_entry(c_symbol.clone())).map_err(|source| {
            ExportError::Emit {
                workload: kernel.key.clone(),
                source,
            }
        })?;
    Ok(Prepared {
        key: kernel.key.clone(),
        rust_name,
        c_symbol,
        note: kernel.note.clone(),
        reference,
        shapes: params.iter().map(|decl| decl.shape.clone()).collect(),
        source,
    })
}

/// Writes the crate of `kernels` into `out` (see the module documentation), after compiling its
/// C once with `compiler` and the flags of `options.march`. `host` is the machine whose vector
/// width `native` means.
pub fn export(
    kernels: &[ExportKernel],
    out: &Path,
    options: &ExportOptions,
    compiler: &Compiler,
    host: &Target,
) -> Result<Exported, ExportError> {
    if kernels.is_empty() {
        return Err(ExportError::NoKernels);
    }
    if !valid_crate_name(&options.crate_name) {
        return Err(ExportError::CrateName {
            name: options.crate_name.clone(),
        });
    }
    check_output_dir(out, options.force)?;
    let prefix = options.crate_name.replace('-', "_");
    let lanes = options.march.lanes(host);
    let mut taken = HashSet::new();
    let mut prepared = Vec::new();
    for kernel in kernels {
        let base = kernel_name(&kernel.key);
        let mut rust_name = base.clone();
        let mut suffix = 2;
        while !taken.insert(rust_name.clone()) {
            rust_name = format!("{base}_{suffix}");
            suffix += 1;
        }
        let c_symbol = format!("{prefix}_{rust_name}");
        prepared.push(prepare(kernel, rust_name, c_symbol, lanes)?);
    }

    let mut c_source = format!(
        "/* Tuned kernels exported by looptune for -march={}, {lanes} f32 lanes. */\n",
        options.march
    );
    for kernel in &prepared {
        c_source.push('\n');
        c_source.push_str(&kernel.source);
    }
    let flags = options.march.flags();
    let files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), files::cargo_toml(options)),
        ("build.rs".into(), files::build_rs(&flags)),
        ("c/kernels.c".into(), c_source),
        ("c/kernels.h".into(), files::header(&prepared)),
        ("src/runtime.rs".into(), files::runtime_rs()),
        ("src/lib.rs".into(), files::lib_rs(&prepared, options)),
    ];
    for directory in ["c", "src"] {
        let path = out.join(directory);
        std::fs::create_dir_all(&path).map_err(|source| ExportError::Io { path, source })?;
    }
    for (relative, text) in &files {
        let path = out.join(relative);
        std::fs::write(&path, text).map_err(|source| ExportError::Io { path, source })?;
    }
    check_compiles(compiler, &out.join("c/kernels.c"), &flags, options.march)?;
    Ok(Exported {
        dir: out.to_path_buf(),
        kernels: prepared
            .iter()
            .map(|kernel| (kernel.key.clone(), kernel.rust_name.clone()))
            .collect(),
        files: files.into_iter().map(|(path, _)| path).collect(),
    })
}

/// `out` may be written: missing (it is created with the files), empty, or `force`d; never a
/// file.
fn check_output_dir(out: &Path, force: bool) -> Result<(), ExportError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(ExportError::NotEmpty {
                    dir: out.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExportError::Io {
            path: out.to_path_buf(),
            source,
        }),
    }
}

/// Compiles `source` to an object that is thrown away, with the crate's flags.
fn check_compiles(
    compiler: &Compiler,
    source: &Path,
    flags: &[String],
    march: March,
) -> Result<(), ExportError> {
    let mut all = vec!["-O2".to_string(), "-c".to_string()];
    all.extend(flags.iter().cloned());
    compiler
        .compile(source, Path::new("/dev/null"), &all, "exported kernels")
        .map_err(|source| ExportError::Compile { march, source })
}

#[cfg(test)]
mod tests;
