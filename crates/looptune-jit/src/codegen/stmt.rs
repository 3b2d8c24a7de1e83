//! Statements: loops of every kind, guards, sequences, stores and the storage of temporaries.

use super::analysis::value_dtype;
use super::function::{block_args, clif_type, Captured, FnGen, IVal, Outlined, RegTile, Storage};
use super::promote::{self, TilePlan};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{
    types, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Value,
};
use cranelift_module::Module;
use looptune_ir::{BufferId, BufferRole, Loop, LoopKind, Stmt, VarId};
use looptune_runtime::runtime::{RUNTIME_ALLOC, RUNTIME_FREE, RUNTIME_PARALLEL_FOR};
use looptune_runtime::CompileError;

/// Temporaries up to this many bytes live in the function's stack frame; larger ones on the
/// heap, because rayon's worker threads have 2 MiB stacks.
pub(crate) const STACK_TEMP_LIMIT: u32 = 64 * 1024;

impl<'n> FnGen<'n, '_> {
    /// Emits a statement.
    pub fn stmt(&mut self, stmt: &'n Stmt) -> Result<(), CompileError> {
        match stmt {
            Stmt::For(lp) => self.for_loop(lp),
            Stmt::Seq(stmts) => stmts.iter().try_for_each(|stmt| self.stmt(stmt)),
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                let computed = self.value(value)?;
                let computed = self.convert_for_buffer(*buffer, value, computed)?;
                self.store_scalar(*buffer, indices, computed)
            }
            Stmt::If { cond, then } => match self.known_cond(cond)? {
                Some(true) => self.stmt(then),
                Some(false) => Ok(()),
                None => {
                    let holds = self.cond(cond)?;
                    self.guarded(holds, |this| this.stmt(then))
                }
            },
            Stmt::Alloc { buffer, body } => self.alloc(*buffer, body),
        }
    }

    /// Converts a stored value to its buffer's dtype when the two differ.
    pub fn convert_for_buffer(
        &mut self,
        buffer: BufferId,
        value: &looptune_ir::ValueExpr,
        computed: Value,
    ) -> Result<Value, CompileError> {
        let from = value_dtype(self.nest, value);
        let to = self.nest.buffer(buffer).dtype;
        if from == to {
            Ok(computed)
        } else {
            self.cast(from, to, computed)
        }
    }

    /// Runs `then` only when `holds` is true.
    pub fn guarded(
        &mut self,
        holds: Value,
        then: impl FnOnce(&mut Self) -> Result<(), CompileError>,
    ) -> Result<(), CompileError> {
        let then_block = self.builder.create_block();
        let merge = self.builder.create_block();
        self.builder.ins().brif(holds, then_block, &[], merge, &[]);
        self.builder.switch_to_block(then_block);
        then(self)?;
        self.builder.ins().jump(merge, &[]);
        self.builder.switch_to_block(merge);
        Ok(())
    }

    /// Records that run-time values of `var` lie in `0..extent` while `body` is emitted.
    pub fn with_range<T>(
        &mut self,
        var: VarId,
        range: (i64, i64),
        body: impl FnOnce(&mut Self) -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        let slot = var.index();
        if slot >= self.ranges.len() {
            self.ranges.resize(slot + 1, None);
        }
        let previous = self.ranges[slot].replace(range);
        let result = body(self);
        self.ranges[slot] = previous;
        result
    }

    /// Binds `var` to `value` while `body` is emitted.
    pub fn with_var<T>(
        &mut self,
        var: VarId,
        value: IVal,
        body: impl FnOnce(&mut Self) -> Result<T, CompileError>,
    ) -> Result<T, CompileError> {
        let slot = var.index();
        if slot >= self.env.len() {
            self.env.resize(slot + 1, None);
        }
        if slot >= self.binding_order.len() {
            self.binding_order.resize(slot + 1, 0);
        }
        self.last_binding += 1;
        let previous_order = std::mem::replace(&mut self.binding_order[slot], self.last_binding);
        let previous = self.env[slot].replace(value);
        let result = body(self);
        self.env[slot] = previous;
        self.binding_order[slot] = previous_order;
        result
    }

    fn for_loop(&mut self, lp: &'n Loop) -> Result<(), CompileError> {
        if lp.extent <= 0 {
            return Ok(());
        }
        if lp.extent == 1 {
            return self.with_var(lp.var, IVal::constant(0), |this| this.stmt(&lp.body));
        }
        match lp.kind {
            LoopKind::Unrolled if looptune_ir::unrolls_within_budget(lp.extent, self.unrolled) => {
                let outer = self.unrolled;
                self.unrolled = outer.max(1) * lp.extent;
                let emitted = (0..lp.extent).try_for_each(|iteration| {
                    self.with_var(lp.var, IVal::constant(iteration), |this| {
                        this.stmt(&lp.body)
                    })
                });
                self.unrolled = outer;
                emitted
            }
            // Past the budget of copies (`looptune_ir::UNROLL_BUDGET`).
            LoopKind::Unrolled | LoopKind::Serial => self.serial_loop(lp.var, lp.extent, &lp.body),
            LoopKind::Vectorized => self.vectorized_loop(lp),
            LoopKind::Parallel if self.in_parallel => {
                // The IR forbids nested parallel loops; running one serially is still correct.
                self.serial_loop(lp.var, lp.extent, &lp.body)
            }
            LoopKind::Parallel => self.parallel_loop(lp),
        }
    }

    /// `for var in 0..extent { body }` as a run-time loop.
    pub fn serial_loop(
        &mut self,
        var: VarId,
        extent: i64,
        body: &'n Stmt,
    ) -> Result<(), CompileError> {
        let start = self.builder.ins().iconst(types::I64, 0);
        self.with_range(var, (0, extent - 1), |this| {
            this.counted_loop(start, IVal::constant(extent), 1, |this, counter| {
                this.with_var(var, IVal::value(counter), |this| this.stmt(body))
            })
        })
    }

    /// A loop `counter = start, start + step, ...` while `counter < end`.
    ///
    /// The test is at the top, in a header of its own, and the body jumps back to it: the exit
    /// block then reads loop-carried variables as the header's parameters, so the last value the
    /// body computes for each (an accumulator's final FMA) has exactly one use, the back edge.
    /// Cranelift's lowering treats everything a multiply-used value depends on as used many
    /// times, and a bottom test with the exit reading the body's values made every load feeding
    /// an accumulator chain "used many times", which keeps it from folding into its user (a
    /// broadcast load, an FMA's memory operand).
    pub fn counted_loop(
        &mut self,
        start: Value,
        end: IVal,
        step: i64,
        body: impl FnOnce(&mut Self, Value) -> Result<(), CompileError>,
    ) -> Result<(), CompileError> {
        let end_offset = end.offset;
        let header = self.builder.create_block();
        let counter = self.builder.append_block_param(header, types::I64);
        let body_block = self.builder.create_block();
        let exit = self.builder.create_block();
        let end = end.dynamic.map(|_| self.materialize(end));
        let less_than_end = |this: &mut Self, value: Value| match end {
            None => this
                .builder
                .ins()
                .icmp_imm_s(IntCC::SignedLessThan, value, end_offset),
            Some(end) => this.builder.ins().icmp(IntCC::SignedLessThan, value, end),
        };
        // The entry test makes the preheader, not the header, the exit's immediate dominator.
        // Cranelift's e-graph elaboration walks the dominator tree keeping a stack of the loops
        // it is in, and pops a loop for good when it visits a block outside it; were the exit a
        // dominator-tree child of the header and visited before the body, the body would be
        // elaborated as if outside every loop, and nothing would be hoisted out of it.
        let nonempty = less_than_end(self, start);
        self.builder
            .ins()
            .brif(nonempty, header, &block_args(&[start]), exit, &[]);
        self.builder.switch_to_block(header);
        let more = less_than_end(self, counter);
        self.builder.ins().brif(more, body_block, &[], exit, &[]);
        self.builder.switch_to_block(body_block);
        body(self, counter)?;
        let next = self.builder.ins().iadd_imm_s(counter, step);
        self.builder.ins().jump(header, &block_args(&[next]));
        self.builder.switch_to_block(exit);
        Ok(())
    }

    fn alloc(&mut self, buffer: BufferId, body: &'n Stmt) -> Result<(), CompileError> {
        let decl = self.nest.buffer(buffer);
        let name = decl.name.clone();
        let scalar = clif_type(decl.dtype, &format!("temporary `{name}`"))?;
        let env = &self.env;
        let is_constant =
            |var: VarId| matches!(env.get(var.index()), Some(Some(IVal { dynamic: None, .. })));
        let plan = promote::plan(self.nest, buffer, body, &is_constant, self.unrolled);
        let elements = decl.len();
        let storage = match plan {
            TilePlan::Scalars | TilePlan::Groups => {
                let grouped = plan == TilePlan::Groups;
                let (count, var_type) = if grouped {
                    (elements.div_ceil(4), types::F32X4)
                } else {
                    (elements, scalar)
                };
                // The IR leaves a temporary's contents undefined; zero is a cheap definition
                // that also gives every variable a value on every path.
                let zero = self.zero(var_type);
                let vars = (0..count)
                    .map(|_| {
                        let var = self.builder.declare_var(var_type);
                        self.builder.def_var(var, zero);
                        var
                    })
                    .collect();
                Storage::Registers(RegTile { grouped, vars })
            }
            TilePlan::Memory => {
                let bytes = u32::try_from(elements * scalar.bytes() as usize)
                    .ok()
                    .filter(|bytes| *bytes <= STACK_TEMP_LIMIT);
                match bytes {
                    Some(bytes) => {
                        let slot = self.builder.create_sized_stack_slot(StackSlotData::new(
                            StackSlotKind::ExplicitSlot,
                            bytes.max(4),
                            4,
                        ));
                        let base = self.builder.ins().stack_addr(self.pointer, slot, 0);
                        Storage::Memory { base }
                    }
                    None => {
                        let bytes = elements as i64 * i64::from(scalar.bytes());
                        let base = self.heap_alloc(bytes);
                        self.storage[buffer.index()] = Some(Storage::Memory { base });
                        let result = self.stmt(body);
                        self.storage[buffer.index()] = None;
                        result?;
                        self.heap_free(base, bytes);
                        return Ok(());
                    }
                }
            }
        };
        self.storage[buffer.index()] = Some(storage);
        let result = self.stmt(body);
        self.storage[buffer.index()] = None;
        result
    }

    /// A zero of `ty` (scalar or vector).
    pub fn zero(&mut self, ty: cranelift_codegen::ir::Type) -> Value {
        let ins = self.builder.ins();
        if ty.is_vector() {
            let lane = ins.f32const(0.0);
            self.builder.ins().splat(ty, lane)
        } else if ty == types::F32 {
            ins.f32const(0.0)
        } else if ty == types::F64 {
            ins.f64const(0.0)
        } else {
            ins.iconst(ty, 0)
        }
    }

    fn runtime_fn(&mut self, offset: i32) -> Value {
        self.builder.ins().load(
            self.pointer,
            MemFlagsData::trusted().with_readonly(),
            self.runtime,
            offset,
        )
    }

    fn heap_alloc(&mut self, bytes: i64) -> Value {
        let callee = self.runtime_fn(RUNTIME_ALLOC);
        let signature = self.builder.import_signature(self.sigs.alloc.clone());
        let size = self.builder.ins().iconst(self.pointer, bytes);
        let call = self.builder.ins().call_indirect(signature, callee, &[size]);
        self.builder.inst_results(call)[0]
    }

    fn heap_free(&mut self, base: Value, bytes: i64) {
        let callee = self.runtime_fn(RUNTIME_FREE);
        let signature = self.builder.import_signature(self.sigs.free.clone());
        let size = self.builder.ins().iconst(self.pointer, bytes);
        self.builder
            .ins()
            .call_indirect(signature, callee, &[base, size]);
    }

    /// Outlines the body into its own function over a range of iterations and calls the
    /// runtime's parallel-for with it. Enclosing loop counters and memory temporaries are passed
    /// as captured words; counters bound to constants are compiled into the body instead.
    fn parallel_loop(&mut self, lp: &'n Loop) -> Result<(), CompileError> {
        let mut constants = Vec::new();
        let mut captured = Vec::new();
        let mut ranges = Vec::new();
        let mut words = Vec::new();
        for (slot, binding) in self.env.iter().enumerate() {
            match binding {
                Some(IVal {
                    dynamic: None,
                    offset,
                }) => constants.push((VarId(slot as u32), *offset)),
                Some(value) => {
                    captured.push(Captured::Var(VarId(slot as u32)));
                    words.push(*value);
                    if let Some(Some(range)) = self.ranges.get(slot) {
                        ranges.push((VarId(slot as u32), *range));
                    }
                }
                None => {}
            }
        }
        let mut words: Vec<Value> = words
            .into_iter()
            .map(|word| self.materialize(word))
            .collect();
        for (slot, storage) in self.storage.iter().enumerate() {
            let buffer = BufferId(slot as u32);
            if let Some(Storage::Memory { base }) = storage {
                if self.nest.buffer(buffer).role == BufferRole::Temp {
                    captured.push(Captured::Buffer(buffer));
                    words.push(*base);
                }
            }
        }
        let slot = self.builder.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (8 * words.len().max(1)) as u32,
            3,
        ));
        for (index, word) in words.iter().enumerate() {
            self.builder
                .ins()
                .stack_store(self.pointer, *word, slot, (8 * index) as i32);
        }
        let func = self
            .module
            .declare_anonymous_function(&self.sigs.body)
            .map_err(|error| CompileError::Cranelift {
                function: format!("{}.parallel", self.nest.name),
                message: error.to_string(),
            })?;
        let func_ref = self.module.declare_func_in_func(func, self.builder.func);
        let body_address = self.builder.ins().func_addr(self.pointer, func_ref);
        let captured_address = self.builder.ins().stack_addr(self.pointer, slot, 0);
        let callee = self.runtime_fn(RUNTIME_PARALLEL_FOR);
        let signature = self
            .builder
            .import_signature(self.sigs.parallel_for.clone());
        let extent = self.builder.ins().iconst(types::I64, lp.extent);
        let arguments = [
            self.runtime,
            body_address,
            self.args,
            captured_address,
            extent,
        ];
        self.builder
            .ins()
            .call_indirect(signature, callee, &arguments);
        self.pending.push(Outlined {
            func,
            lp,
            constants,
            captured,
            ranges,
        });
        Ok(())
    }
}
