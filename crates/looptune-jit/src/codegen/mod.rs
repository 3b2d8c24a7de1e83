//! Loop IR to Cranelift IR to machine code.
//!
//! One nest becomes one JIT module holding the entry function and one function per parallel
//! loop. The entry function's signature is `fn(args: *const *mut u8, runtime: *const Runtime)`:
//! `args` holds one pointer per parameter buffer (inputs, then outputs), `runtime` the table of
//! host functions generated code calls (the parallel-for driver, the heap allocator for large
//! temporaries). An outlined parallel body is
//! `fn(args, captured: *const i64, start: i64, end: i64, runtime)`, running iterations
//! `start..end` with enclosing loop counters and temporaries passed as captured words.
//!
//! The pieces: [`analysis`] answers questions about expressions, [`validate`] rejects what the
//! call API could not run soundly, [`promote`] decides which temporaries become register tiles,
//! `function` holds per-function state and scalar codegen, `stmt` loops and storage, `vector`
//! f32x4 code for vectorized loops.

pub(crate) mod analysis;
mod bounds;
mod function;
pub(crate) mod promote;
mod stmt;
pub(crate) mod validate;
mod vector;

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Module};
use function::{Captured, FnGen, IVal, Outlined, Storage};
use looptune_ir::LoopNest;
use looptune_runtime::{CompileError, Target};

/// The signatures generated code uses.
pub(crate) struct Signatures {
    entry: Signature,
    body: Signature,
    parallel_for: Signature,
    alloc: Signature,
    free: Signature,
}

impl Signatures {
    fn new(module: &JITModule) -> Signatures {
        let pointer = module.target_config().pointer_type();
        let make = |params: &[cranelift_codegen::ir::Type],
                    returns: &[cranelift_codegen::ir::Type]| {
            let mut signature = module.make_signature();
            signature
                .params
                .extend(params.iter().map(|ty| AbiParam::new(*ty)));
            signature
                .returns
                .extend(returns.iter().map(|ty| AbiParam::new(*ty)));
            signature
        };
        Signatures {
            entry: make(&[pointer, pointer], &[]),
            body: make(&[pointer, pointer, types::I64, types::I64, pointer], &[]),
            parallel_for: make(&[pointer, pointer, pointer, pointer, types::I64], &[]),
            alloc: make(&[pointer], &[pointer]),
            free: make(&[pointer, pointer], &[]),
        }
    }
}

/// A JIT module whose code is freed when it is dropped (Cranelift's `JITModule` leaks its code
/// pages unless `free_memory` is called): the owner a [`looptune_runtime::Kernel`] keeps.
pub(crate) struct OwnedModule(Option<JITModule>);

impl OwnedModule {
    /// Takes ownership of `module`.
    pub(crate) fn new(module: JITModule) -> OwnedModule {
        OwnedModule(Some(module))
    }

    /// The module, for defining functions in it.
    pub(crate) fn get_mut(&mut self) -> &mut JITModule {
        // The option is only emptied in `drop`.
        self.0.as_mut().expect("module present until dropped")
    }
}

// SAFETY: the module is only touched through `&mut self` (defining functions before any kernel
// exists) and on drop; generated code never reads the module's own data structures, so moving
// it to, or dropping it on, another thread is sound.
unsafe impl Send for OwnedModule {}
// SAFETY: no method takes `&self`, so a shared reference allows nothing.
unsafe impl Sync for OwnedModule {}

impl Drop for OwnedModule {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: function pointers into this module are held only by the `Kernel` that owns
            // it (never handed out), and the kernel is being dropped, so no code of the module
            // can run after this.
            unsafe { module.free_memory() };
        }
    }
}

/// A compiled nest: the module that owns the code and the entry point's address.
pub(crate) struct Compiled {
    pub module: OwnedModule,
    pub entry: *const u8,
    pub uses_parallel: bool,
    pub clif: Option<String>,
}

/// Compiles `nest` for `target`. With `capture_clif`, the optimized CLIF of every function is
/// kept as text (for tests and for looking at what was generated).
pub(crate) fn compile(
    nest: &LoopNest,
    target: &Target,
    capture_clif: bool,
) -> Result<Compiled, CompileError> {
    validate::validate(nest)?;
    let isa = crate::isa::isa(target)?;
    if isa.pointer_type() != types::I64 {
        return Err(CompileError::Target {
            message: format!("pointer type {} is not 64-bit", isa.pointer_type()),
        });
    }
    // Only x86-64 makes FMA optional; other 64-bit hosts Cranelift supports have it natively.
    let has_fma = target.features.fma || target.arch != "x86_64";
    let mut module = OwnedModule::new(JITModule::new(JITBuilder::with_isa(
        isa,
        default_libcall_names(),
    )));
    let jit = module.get_mut();
    let sigs = Signatures::new(jit);
    let frontend_config = jit.target_config();
    let mut context = jit.make_context();
    let mut builder_context = FunctionBuilderContext::new();
    let mut clif = capture_clif.then(String::new);
    let mut pending: Vec<Outlined<'_>> = Vec::new();

    let entry = declare(jit, &sigs.entry, &nest.name)?;
    context.func.signature = sigs.entry.clone();
    {
        let mut builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
        let block = builder.create_block();
        builder.append_block_params_for_function_params(block);
        builder.switch_to_block(block);
        let params = builder.block_params(block).to_vec();
        let mut generator = FnGen::fresh(
            nest,
            builder,
            &mut *jit,
            &mut pending,
            &sigs,
            has_fma,
            params[0],
            params[1],
            false,
        );
        generator.bind_params();
        generator.stmt(&nest.body)?;
        generator.builder.ins().return_(&[]);
        generator.builder.seal_all_blocks();
        generator.builder.finalize(frontend_config);
    }
    define(jit, entry, &mut context, &mut clif, &nest.name)?;

    let mut uses_parallel = false;
    while let Some(job) = pending.pop() {
        uses_parallel = true;
        context.func.signature = sigs.body.clone();
        let mut more = Vec::new();
        {
            let mut builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
            let block = builder.create_block();
            builder.append_block_params_for_function_params(block);
            builder.switch_to_block(block);
            let params = builder.block_params(block).to_vec();
            let mut generator = FnGen::fresh(
                nest, builder, &mut *jit, &mut more, &sigs, has_fma, params[0], params[4], true,
            );
            generator.emit_parallel_body(&job, params[1], params[2], params[3])?;
            generator.builder.ins().return_(&[]);
            generator.builder.seal_all_blocks();
            generator.builder.finalize(frontend_config);
        }
        define(
            jit,
            job.func,
            &mut context,
            &mut clif,
            &format!("{}.parallel", nest.name),
        )?;
        pending.extend(more);
    }

    jit.finalize_definitions()
        .map_err(|error| CompileError::Cranelift {
            function: nest.name.clone(),
            message: error.to_string(),
        })?;
    let entry = jit.get_finalized_function(entry);
    Ok(Compiled {
        module,
        entry,
        uses_parallel,
        clif,
    })
}

fn declare(
    module: &mut JITModule,
    signature: &Signature,
    name: &str,
) -> Result<FuncId, CompileError> {
    // Anonymous: every kernel has its own module, and names would only collide across nests.
    module
        .declare_anonymous_function(signature)
        .map_err(|error| CompileError::Cranelift {
            function: name.to_string(),
            message: error.to_string(),
        })
}

fn define(
    module: &mut JITModule,
    func: FuncId,
    context: &mut Context,
    clif: &mut Option<String>,
    name: &str,
) -> Result<(), CompileError> {
    if clif.is_some() {
        context.set_disasm(true);
    }
    module
        .define_function(func, context)
        .map_err(|error| CompileError::Cranelift {
            function: name.to_string(),
            message: format!("{error:?}"),
        })?;
    if let Some(text) = clif {
        text.push_str(&format!("; {name}\n{}\n", context.func.display()));
        if let Some(vcode) = context.compiled_code().and_then(|code| code.vcode.as_ref()) {
            text.push_str(&format!("; {name}: machine code\n{vcode}\n"));
        }
    }
    module.clear_context(context);
    Ok(())
}

impl<'n> FnGen<'n, '_> {
    /// The body of an outlined parallel loop: parameters and captured words rebound, then the
    /// loop over `start..end`.
    fn emit_parallel_body(
        &mut self,
        job: &Outlined<'n>,
        captured: cranelift_codegen::ir::Value,
        start: cranelift_codegen::ir::Value,
        end: cranelift_codegen::ir::Value,
    ) -> Result<(), CompileError> {
        self.bind_params();
        for (var, value) in &job.constants {
            self.env[var.index()] = Some(IVal::constant(*value));
        }
        for (index, capture) in job.captured.iter().enumerate() {
            let word = self.builder.ins().load(
                types::I64,
                cranelift_codegen::ir::MemFlagsData::trusted().with_readonly(),
                captured,
                (8 * index) as i32,
            );
            match capture {
                Captured::Var(var) => self.env[var.index()] = Some(IVal::value(word)),
                Captured::Buffer(buffer) => {
                    self.storage[buffer.index()] = Some(Storage::Memory { base: word })
                }
            }
        }
        let nonempty = self.builder.ins().icmp(
            cranelift_codegen::ir::condcodes::IntCC::SignedLessThan,
            start,
            end,
        );
        let lp = job.lp;
        for (var, range) in &job.ranges {
            self.ranges[var.index()] = Some(*range);
        }
        self.ranges[lp.var.index()] = Some((0, lp.extent - 1));
        self.guarded(nonempty, |this| {
            this.counted_loop(start, IVal::value(end), 1, |this, counter| {
                this.with_var(lp.var, IVal::value(counter), |this| this.stmt(&lp.body))
            })
        })
    }
}
