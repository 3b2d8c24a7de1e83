//! The C backend: print, compile (or find in the cache), load, wrap in a [`Kernel`].

use crate::cache::{discard, ObjectCache};
use crate::compiler::Compiler;
use crate::emit::{emit_c, EmitError, EmitOptions};
use looptune_ir::{LoopKind, LoopNest, Stmt};
use looptune_runtime::{Backend, BackendId, BackendSpec, CompileError, Kernel, Target};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The backend's name in tuning logs and on the command line.
pub const NAME: &str = "c";

/// The exported symbol of every printed kernel.
const ENTRY: &str = "looptune_entry";

/// The C backend: a compiler, its flags and an object cache.
#[derive(Debug)]
pub struct CBackend {
    compiler: Compiler,
    cache: ObjectCache,
    /// Wall time spent compiling (cache misses only), in microseconds.
    compile_micros: AtomicU64,
    /// Objects compiled (cache misses).
    compiled: AtomicU64,
}

impl CBackend {
    /// The backend with the compiler [`Compiler::discover`] finds, the default cache directory,
    /// and a probe: a small vectorized kernel compiled, run and checked against the reference
    /// interpreter, so that a compiler that accepts the code but computes wrong results is
    /// refused here, once, rather than as wrong answers during tuning.
    pub fn detect() -> Result<CBackend, CompileError> {
        CBackend::probe_with(
            Compiler::discover()?,
            ObjectCache::new(crate::cache::default_dir()),
        )
    }

    /// The backend with `compiler` and `cache`, accepted only after the probe
    /// [`CBackend::detect`] runs; an error names the compiler and what the probe found.
    pub fn probe_with(compiler: Compiler, cache: ObjectCache) -> Result<CBackend, CompileError> {
        let backend = CBackend::with(compiler, cache);
        crate::probe::check(&backend)?;
        Ok(backend)
    }

    /// The backend with `compiler` and `cache`, unprobed (for tests and for rebuilding a probed
    /// backend in a worker process).
    pub fn with(compiler: Compiler, cache: ObjectCache) -> CBackend {
        CBackend {
            compiler,
            cache,
            compile_micros: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
        }
    }

    /// Rebuilds the backend a [`BackendSpec`] of this backend describes: compiler program,
    /// its leading arguments and the cache directory (no probe: the spec comes from a backend
    /// that passed it).
    pub fn from_spec(spec: &BackendSpec) -> Result<CBackend, CompileError> {
        let malformed = || CompileError::UnknownBackend {
            name: format!("{} {:?}", spec.name, spec.settings),
            known: NAME.to_string(),
        };
        if spec.name != NAME || spec.settings.len() < 2 {
            return Err(malformed());
        }
        let program = PathBuf::from(&spec.settings[0]);
        let cache = ObjectCache::new(&spec.settings[1]);
        let leading = spec.settings[2..].to_vec();
        Ok(CBackend::with(Compiler::at(program, leading)?, cache))
    }

    /// The compiler.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// The object cache.
    pub fn cache(&self) -> &ObjectCache {
        &self.cache
    }

    /// f32 lanes of the vectors printed for `target`: 16 with AVX-512, 8 with AVX, else 4.
    pub fn lanes_for(target: &Target) -> usize {
        if target.features.avx512f {
            16
        } else if target.features.avx {
            8
        } else {
            4
        }
    }

    /// The C source of `nest` for `target`, as it is compiled (`looptune lower --emit c`). A
    /// nest with an access the IR verifier could not prove in bounds is printed with every
    /// access checked (a trap past the buffer), so `Kernel::call` stays safe for it too.
    pub fn source(&self, nest: &LoopNest, target: &Target) -> Result<String, CompileError> {
        let options = EmitOptions::new(CBackend::lanes_for(target));
        emit_c(nest, &options).map_err(|error| match error {
            EmitError::InvalidNest { nest, message } => CompileError::InvalidNest { nest, message },
            EmitError::UnsupportedDType { context, dtype } => {
                CompileError::UnsupportedDType { context, dtype }
            }
            other => CompileError::CCompiler {
                compiler: "(printer)".to_string(),
                kernel: nest.name.clone(),
                message: other.to_string(),
            },
        })
    }

    /// The text the cache is keyed by: the compiler, its flags and the CPU the object is for
    /// (`-march=native` means this CPU, so an object from another machine sharing the cache
    /// directory is never loaded here) as a comment, then the source.
    fn key(&self, source: &str, target: &Target) -> String {
        format!(
            "/* looptune-cc: {} ({}) {} for {} {} {:?} */\n{source}",
            self.compiler.describe(),
            self.compiler.version,
            self.compiler.flags(target).join(" "),
            target.arch,
            target.cpu_model,
            target.features
        )
    }

    /// Compiles `key` (the full text compiled) into the cache unless it is there; returns the
    /// object's path. Kernels and the peak loop both go through it.
    pub(crate) fn ensure_object(
        &self,
        key: &str,
        target: &Target,
        kernel: &str,
    ) -> Result<PathBuf, CompileError> {
        if let Some(entry) = self.cache.lookup(key) {
            return Ok(entry.object);
        }
        let io_error = |error: std::io::Error| CompileError::CCompiler {
            compiler: self.compiler.describe(),
            kernel: kernel.to_string(),
            message: format!("object cache `{}`: {error}", self.cache.dir().display()),
        };
        let (entry, staged_source, staged_object) = self.cache.stage(key).map_err(io_error)?;
        let start = Instant::now();
        let compiled = self.compiler.compile(
            &staged_source,
            &staged_object,
            &self.compiler.flags(target),
            kernel,
        );
        self.compile_micros
            .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = compiled {
            discard(&[&staged_source, &staged_object]);
            return Err(error);
        }
        self.cache
            .publish(&entry, &staged_source, &staged_object)
            .map_err(io_error)?;
        Ok(entry.object)
    }

    /// Seconds spent running the compiler so far (cache hits cost nothing here).
    pub fn compile_seconds(&self) -> f64 {
        self.compile_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Objects compiled so far (cache misses).
    pub fn objects_compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Loads `object` as the kernel of `nest`.
    fn load(
        &self,
        nest: &LoopNest,
        object: &Path,
        source: String,
        target: &Target,
    ) -> Result<Kernel, CompileError> {
        crate::load::load(nest, object, ENTRY, source, target.threads)
    }
}

/// Whether `nest` has a parallel loop (its kernel then needs the runtime's pool).
pub(crate) fn uses_parallel(nest: &LoopNest) -> bool {
    let mut found = false;
    nest.body.walk(&mut |stmt| {
        found |= matches!(stmt, Stmt::For(body) if body.kind == LoopKind::Parallel);
    });
    found
}

impl Backend for CBackend {
    fn compile(&self, nest: &LoopNest, target: &Target) -> Result<Kernel, CompileError> {
        let source = self.source(nest, target)?;
        let key = self.key(&source, target);
        let object = self.ensure_object(&key, target, &nest.name)?;
        match self.load(nest, &object, source.clone(), target) {
            Ok(kernel) => Ok(kernel),
            Err(_) => {
                // A damaged cache entry (a truncated object, say): compile it once more.
                self.cache.evict(&self.cache.entry(&key));
                let object = self.ensure_object(&key, target, &nest.name)?;
                self.load(nest, &object, source, target)
            }
        }
    }

    fn prepare(&self, nests: &[&LoopNest], target: &Target) {
        // Compile what the cache lacks on every core; failures are left for `compile`, which
        // reports them per nest.
        nests.par_iter().for_each(|nest| {
            if let Ok(source) = self.source(nest, target) {
                let _ = self.ensure_object(&self.key(&source, target), target, &nest.name);
            }
        });
    }

    fn id(&self) -> BackendId {
        BackendId {
            name: NAME.to_string(),
            version: format!(
                "looptune-cc {} / {} ({}) {}",
                env!("CARGO_PKG_VERSION"),
                self.compiler.describe(),
                self.compiler.version,
                self.compiler.flags(&Target::host()).join(" ")
            ),
        }
    }

    fn spec(&self) -> BackendSpec {
        let mut settings = vec![
            self.compiler.program.display().to_string(),
            self.cache.dir().display().to_string(),
        ];
        settings.extend(self.compiler.leading_args.iter().cloned());
        BackendSpec {
            name: NAME.to_string(),
            settings,
        }
    }

    fn vector_lanes(&self, target: &Target) -> usize {
        CBackend::lanes_for(target)
    }

    fn vector_registers(&self, target: &Target) -> usize {
        if target.features.avx512f {
            32
        } else {
            16
        }
    }
}

/// The backend as a shared trait object, for measurers and dispatchers.
impl From<CBackend> for Arc<dyn Backend> {
    fn from(backend: CBackend) -> Arc<dyn Backend> {
        Arc::new(backend)
    }
}
