//! The state of one generated function and the scalar half of expression codegen: index
//! arithmetic, addresses, element loads and stores, values and conditions.
//!
//! Index arithmetic is emitted as [`IVal`]s, a dynamic part plus a constant offset, so that
//! constants (unrolled loop counters, tile offsets) fold into the immediate offset of the load or
//! store instead of costing an add each; accesses that differ only by constants then share one
//! address register, which is what keeps an unrolled micro-kernel's loads cheap.

use super::analysis::{cond_reads_memory, reads_memory, value_dtype};
use super::Signatures;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, BlockArg, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use cranelift_jit::JITModule;
use cranelift_module::FuncId;
use looptune_ir::{
    BinaryOp, BufferId, BufferRole, CmpOp, Cond, DType, IndexExpr, IndexOp, Load, Loop, LoopNest,
    Scalar, UnaryOp, ValueExpr, VarId,
};
use looptune_runtime::CompileError;

/// An index value: `dynamic + offset`, where a missing dynamic part means the value is the
/// constant `offset`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IVal {
    /// The part only known at run time, an `i64` SSA value.
    pub dynamic: Option<Value>,
    /// The part known at compile time.
    pub offset: i64,
}

impl IVal {
    /// A compile-time constant.
    pub fn constant(offset: i64) -> IVal {
        IVal {
            dynamic: None,
            offset,
        }
    }

    /// A run-time value.
    pub fn value(value: Value) -> IVal {
        IVal {
            dynamic: Some(value),
            offset: 0,
        }
    }

    /// This value plus a constant.
    pub fn plus(self, delta: i64) -> IVal {
        IVal {
            dynamic: self.dynamic,
            offset: self.offset + delta,
        }
    }
}

/// `value * scale` in an element offset, with the binding order of the innermost variable it
/// depends on.
struct AffineTerm {
    value: Value,
    scale: i64,
    order: u32,
}

/// Where a buffer's elements live while code for its scope is emitted.
pub(crate) enum Storage {
    /// In memory at `base` (a parameter, a stack slot or a heap block).
    Memory {
        /// The address of element 0.
        base: Value,
    },
    /// In SSA variables: a register tile.
    Registers(RegTile),
}

/// A temporary kept in Cranelift variables. `F32` tiles touched by vectorized loops are held as
/// f32x4 groups (element `e` is lane `e % 4` of group `e / 4`), so that a vectorized update is
/// one vector operation on one variable; other tiles hold one scalar variable per element.
pub(crate) struct RegTile {
    /// Whether `vars` are f32x4 groups rather than scalars.
    pub grouped: bool,
    /// The variables.
    pub vars: Vec<Variable>,
}

/// A parallel loop body waiting to be compiled as its own function.
pub(crate) struct Outlined<'n> {
    /// The function it will be.
    pub func: FuncId,
    /// The loop whose iterations it runs.
    pub lp: &'n Loop,
    /// Variables bound to constants where the loop was (unrolled counters).
    pub constants: Vec<(VarId, i64)>,
    /// What the caller passes in its captured words, in order.
    pub captured: Vec<Captured>,
    /// The ranges of the captured loop counters.
    pub ranges: Vec<(VarId, (i64, i64))>,
}

/// One captured word of a parallel call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Captured {
    /// The value of an enclosing loop's counter.
    Var(VarId),
    /// The base address of an enclosing temporary that lives in memory.
    Buffer(BufferId),
}

/// Memory flags of a load that is in bounds wherever it is placed (bounded statically): an
/// input's, being read-only for the whole call, may then move freely. That makes it a pure value
/// for Cranelift's e-graph, which places it next to its first use instead of in program order;
/// without this, an unrolled micro-kernel's loads all land at the top of the loop body and the
/// values they load are spilled.
pub(crate) fn load_flags(role: BufferRole, statically_in_bounds: bool) -> MemFlagsData {
    let flags = access_flags(role);
    if role == BufferRole::Input && statically_in_bounds {
        flags.with_can_move()
    } else {
        flags
    }
}

/// Memory flags of element accesses: no trap (indices are verified in bounds), and no alignment
/// promise beyond the element's own, so vector accesses are unaligned loads and stores.
pub(crate) fn access_flags(role: BufferRole) -> MemFlagsData {
    let flags = MemFlagsData::new().with_notrap();
    if role == BufferRole::Input {
        // Inputs are never stored to (validated) and cannot alias outputs (`&[f32]` vs
        // `&mut [f32]`), so their contents are fixed for the whole call.
        flags.with_readonly()
    } else {
        flags
    }
}

/// The Cranelift type of an element of `dtype`.
pub(crate) fn clif_type(dtype: DType, context: &str) -> Result<Type, CompileError> {
    match dtype {
        DType::F32 => Ok(types::F32),
        DType::F64 => Ok(types::F64),
        DType::I32 => Ok(types::I32),
        DType::I16 => Ok(types::I16),
        // Cranelift's integers carry no sign: unsigned operations are chosen per dtype.
        DType::I8 | DType::U8 => Ok(types::I8),
        other => Err(CompileError::UnsupportedDType {
            context: context.to_string(),
            dtype: other,
        }),
    }
}

/// Block arguments from values.
pub(crate) fn block_args(values: &[Value]) -> Vec<BlockArg> {
    values.iter().copied().map(BlockArg::Value).collect()
}

/// Code generation state for one Cranelift function.
pub(crate) struct FnGen<'n, 'b> {
    pub nest: &'n LoopNest,
    pub builder: FunctionBuilder<'b>,
    pub module: &'b mut JITModule,
    pub pending: &'b mut Vec<Outlined<'n>>,
    pub sigs: &'b Signatures,
    pub has_fma: bool,
    pub pointer: Type,
    /// The binding of each variable, `None` outside its loop.
    pub env: Vec<Option<IVal>>,
    /// The range `[0, extent - 1]` of each loop variable bound to a run-time value, for
    /// bounding indices (see `bounds`).
    pub ranges: Vec<Option<(i64, i64)>>,
    /// The storage of each buffer, `None` outside its scope.
    pub storage: Vec<Option<Storage>>,
    /// When each variable bound to a run-time value was bound, in order of binding: a variable
    /// bound later belongs to a loop nested deeper (0 for bindings outside any loop).
    pub binding_order: Vec<u32>,
    /// The last binding order handed out.
    pub last_binding: u32,
    /// The `args` parameter: one pointer per parameter buffer.
    pub args: Value,
    /// The `runtime` parameter: the host function table.
    pub runtime: Value,
    /// Whether this function is an outlined parallel body (nested parallel loops run serially).
    pub in_parallel: bool,
    /// Copies the enclosing unrolled loops make of the statement being emitted (0 or 1: none;
    /// an outlined body counts afresh).
    pub unrolled: i64,
}

impl<'n, 'b> FnGen<'n, 'b> {
    /// A generator for one function (the kernel entry or an outlined parallel body) with no
    /// variable bound and no buffer placed yet; `args` and `runtime` are its parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn fresh(
        nest: &'n LoopNest,
        builder: FunctionBuilder<'b>,
        module: &'b mut JITModule,
        pending: &'b mut Vec<Outlined<'n>>,
        sigs: &'b Signatures,
        has_fma: bool,
        args: Value,
        runtime: Value,
        in_parallel: bool,
    ) -> FnGen<'n, 'b> {
        FnGen {
            nest,
            builder,
            module,
            pending,
            sigs,
            has_fma,
            pointer: types::I64,
            env: vec![None; nest.vars.len()],
            ranges: vec![None; nest.vars.len()],
            storage: (0..nest.buffers.len()).map(|_| None).collect(),
            binding_order: vec![0; nest.vars.len()],
            last_binding: 0,
            args,
            runtime,
            in_parallel,
            unrolled: 0,
        }
    }

    pub fn var_name(&self, var: VarId) -> String {
        self.nest
            .vars
            .get(var.index())
            .map_or_else(|| format!("v{}", var.0), |decl| decl.name.clone())
    }

    pub fn buffer_name(&self, buffer: BufferId) -> String {
        self.nest
            .buffers
            .get(buffer.index())
            .map_or_else(|| format!("b{}", buffer.0), |decl| decl.name.clone())
    }

    /// Loads the parameter base pointers from `args` into memory storage.
    pub fn bind_params(&mut self) {
        let params: Vec<BufferId> = self.nest.params().collect();
        for (slot, buffer) in params.into_iter().enumerate() {
            let base = self.builder.ins().load(
                self.pointer,
                MemFlagsData::trusted().with_readonly(),
                self.args,
                (slot * 8) as i32,
            );
            self.storage[buffer.index()] = Some(Storage::Memory { base });
        }
    }

    // ----- index arithmetic -----

    /// Emits an index expression.
    pub fn index(&mut self, expr: &IndexExpr) -> Result<IVal, CompileError> {
        match expr {
            IndexExpr::Const(value) => Ok(IVal::constant(*value)),
            IndexExpr::Var(var) => self.env.get(var.index()).copied().flatten().ok_or_else(|| {
                CompileError::UnboundVar {
                    var: self.var_name(*var),
                }
            }),
            IndexExpr::Binary(op, a, b) => {
                let a = self.index(a)?;
                let b = self.index(b)?;
                self.index_binary(*op, a, b)
            }
        }
    }

    fn fold(op: IndexOp, a: i64, b: i64) -> Result<i64, CompileError> {
        op.apply(a, b).ok_or(CompileError::IndexArithmetic {
            op: op.symbol(),
            a,
            b,
        })
    }

    /// `a + b` for optional dynamic parts.
    fn add_dynamic(&mut self, a: Option<Value>, b: Option<Value>) -> Option<Value> {
        match (a, b) {
            (Some(a), Some(b)) => Some(self.builder.ins().iadd(a, b)),
            (a, None) => a,
            (None, b) => b,
        }
    }

    /// `value * factor`, folding the constant.
    pub fn scale(&mut self, value: IVal, factor: i64) -> Result<IVal, CompileError> {
        let offset = Self::fold(IndexOp::Mul, value.offset, factor)?;
        let dynamic = match (value.dynamic, factor) {
            (None, _) | (_, 0) => None,
            (Some(d), 1) => Some(d),
            (Some(d), _) => Some(self.builder.ins().imul_imm_s(d, factor)),
        };
        Ok(IVal { dynamic, offset })
    }

    /// An index value as one `i64` SSA value.
    pub fn materialize(&mut self, value: IVal) -> Value {
        match value.dynamic {
            None => self.builder.ins().iconst(types::I64, value.offset),
            Some(d) if value.offset == 0 => d,
            Some(d) => self.builder.ins().iadd_imm_s(d, value.offset),
        }
    }

    fn index_binary(&mut self, op: IndexOp, a: IVal, b: IVal) -> Result<IVal, CompileError> {
        if let (None, None) = (a.dynamic, b.dynamic) {
            return Ok(IVal::constant(Self::fold(op, a.offset, b.offset)?));
        }
        match op {
            IndexOp::Add => Ok(IVal {
                dynamic: self.add_dynamic(a.dynamic, b.dynamic),
                offset: Self::fold(IndexOp::Add, a.offset, b.offset)?,
            }),
            IndexOp::Sub => {
                let negated = self.scale(b, -1)?;
                self.index_binary(IndexOp::Add, a, negated)
            }
            IndexOp::Mul => match (a.dynamic, b.dynamic) {
                (None, _) => self.scale(b, a.offset),
                (_, None) => self.scale(a, b.offset),
                _ => {
                    let a = self.materialize(a);
                    let b = self.materialize(b);
                    Ok(IVal::value(self.builder.ins().imul(a, b)))
                }
            },
            IndexOp::Min | IndexOp::Max => {
                let a = self.materialize(a);
                let b = self.materialize(b);
                let result = if op == IndexOp::Min {
                    self.builder.ins().smin(a, b)
                } else {
                    self.builder.ins().smax(a, b)
                };
                Ok(IVal::value(result))
            }
            IndexOp::FloorDiv | IndexOp::FloorMod => self.floor_div_mod(op, a, b),
        }
    }

    /// Floor division and modulo (rounding towards negative infinity, the IR's semantics),
    /// which differ from Cranelift's truncating `sdiv`/`srem` for negative operands.
    fn floor_div_mod(&mut self, op: IndexOp, a: IVal, b: IVal) -> Result<IVal, CompileError> {
        let dividend = self.materialize(a);
        if b.dynamic.is_none() && b.offset > 0 && (b.offset as u64).is_power_of_two() {
            // For a positive power-of-two divisor, the arithmetic shift and the mask are exactly
            // floor division and floor modulo in two's complement.
            let shift = i64::from(b.offset.trailing_zeros());
            let result = if op == IndexOp::FloorDiv {
                self.builder.ins().sshr_imm_s(dividend, shift)
            } else {
                self.builder.ins().band_imm_s(dividend, b.offset - 1)
            };
            return Ok(IVal::value(result));
        }
        if b.dynamic.is_none() && b.offset == 0 {
            return Err(CompileError::IndexArithmetic {
                op: op.symbol(),
                a: a.offset,
                b: 0,
            });
        }
        let divisor = self.materialize(b);
        let ins = self.builder.ins();
        let quotient = ins.sdiv(dividend, divisor);
        let product = self.builder.ins().imul(quotient, divisor);
        let remainder = self.builder.ins().isub(dividend, product);
        // Truncation rounded up exactly when the remainder is non-zero and its sign differs
        // from the divisor's.
        let nonzero = self.builder.ins().icmp_imm_s(IntCC::NotEqual, remainder, 0);
        let signs = self.builder.ins().bxor(remainder, divisor);
        let differ = self
            .builder
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, signs, 0);
        let adjust = self.builder.ins().band(nonzero, differ);
        let result = if op == IndexOp::FloorDiv {
            let adjust = self.builder.ins().uextend(types::I64, adjust);
            self.builder.ins().isub(quotient, adjust)
        } else {
            let corrected = self.builder.ins().iadd(remainder, divisor);
            self.builder.ins().select(adjust, corrected, remainder)
        };
        Ok(IVal::value(result))
    }

    // ----- buffers -----

    /// The row-major element offset of an access.
    pub fn element_offset(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
    ) -> Result<IVal, CompileError> {
        let strides = self.nest.buffer(buffer).strides();
        let mut total = IVal::constant(0);
        for (index, stride) in indices.iter().zip(strides) {
            let value = self.index(index)?;
            let scaled = self.scale(value, stride)?;
            total = self.index_binary(IndexOp::Add, total, scaled)?;
        }
        Ok(total)
    }

    /// The address and immediate offset of the element at `indices` of `buffer` (elements of
    /// `size` bytes at `base`).
    ///
    /// The offset is taken apart into affine terms (a run-time value times a constant) and the
    /// address summed from the outermost loop's term to the innermost's, starting at `base`:
    /// every partial sum but the last is then invariant in the inner loops, which Cranelift
    /// hoists out of them, and the innermost term, when its scale is 1, 2, 4 or 8 bytes, folds
    /// into the addressing mode. An access in a reduction loop costs no instruction of its own;
    /// summed the other way round (`base + (row * K + k) * 4`), the partial sums all depend on
    /// the innermost counter and are recomputed on every iteration.
    pub fn element_address(
        &mut self,
        base: Value,
        buffer: BufferId,
        indices: &[IndexExpr],
        size: i64,
    ) -> Result<(Value, i32), CompileError> {
        let strides = self.nest.buffer(buffer).strides();
        let mut terms = Vec::new();
        let mut constant = 0;
        for (index, stride) in indices.iter().zip(strides) {
            self.affine_terms(index, stride, &mut terms, &mut constant)?;
        }
        // Terms of the same value (the same variable reached through two indices) add up.
        let mut merged: Vec<AffineTerm> = Vec::with_capacity(terms.len());
        for term in terms {
            match merged.iter_mut().find(|other| other.value == term.value) {
                Some(other) => {
                    other.scale = Self::fold(IndexOp::Add, other.scale, term.scale)?;
                    other.order = other.order.max(term.order);
                }
                None => merged.push(term),
            }
        }
        merged.retain(|term| term.scale != 0);
        merged.sort_by_key(|term| term.order);
        let mut address = base;
        for term in merged {
            let bytes = Self::fold(IndexOp::Mul, term.scale, size)?;
            let scaled = if bytes == 1 {
                term.value
            } else if bytes > 0 && (bytes as u64).is_power_of_two() {
                self.builder
                    .ins()
                    .ishl_imm_s(term.value, i64::from(bytes.trailing_zeros()))
            } else {
                self.builder.ins().imul_imm_s(term.value, bytes)
            };
            address = self.builder.ins().iadd(address, scaled);
        }
        let bytes = Self::fold(IndexOp::Mul, constant, size)?;
        match i32::try_from(bytes) {
            Ok(immediate) => Ok((address, immediate)),
            Err(_) => Ok((self.builder.ins().iadd_imm_s(address, bytes), 0)),
        }
    }

    /// Adds `scale * expr` to `terms` and `constant`: affine parts term by term, anything else
    /// (floor division, modulo, min, max, products of variables) as one opaque term.
    fn affine_terms(
        &mut self,
        expr: &IndexExpr,
        scale: i64,
        terms: &mut Vec<AffineTerm>,
        constant: &mut i64,
    ) -> Result<(), CompileError> {
        match expr {
            IndexExpr::Binary(IndexOp::Add, a, b) => {
                self.affine_terms(a, scale, terms, constant)?;
                self.affine_terms(b, scale, terms, constant)
            }
            IndexExpr::Binary(IndexOp::Sub, a, b) => {
                self.affine_terms(a, scale, terms, constant)?;
                let negated = Self::fold(IndexOp::Mul, scale, -1)?;
                self.affine_terms(b, negated, terms, constant)
            }
            IndexExpr::Binary(IndexOp::Mul, a, b) => match (&**a, &**b) {
                (IndexExpr::Const(factor), other) | (other, IndexExpr::Const(factor)) => {
                    let scale = Self::fold(IndexOp::Mul, scale, *factor)?;
                    self.affine_terms(other, scale, terms, constant)
                }
                _ => self.opaque_term(expr, scale, terms, constant),
            },
            _ => self.opaque_term(expr, scale, terms, constant),
        }
    }

    fn opaque_term(
        &mut self,
        expr: &IndexExpr,
        scale: i64,
        terms: &mut Vec<AffineTerm>,
        constant: &mut i64,
    ) -> Result<(), CompileError> {
        let value = self.index(expr)?;
        let part = Self::fold(IndexOp::Mul, value.offset, scale)?;
        *constant = Self::fold(IndexOp::Add, *constant, part)?;
        if let Some(dynamic) = value.dynamic {
            let mut order = 0;
            expr.for_each_var(&mut |var| {
                order = order.max(self.binding_order.get(var.index()).copied().unwrap_or(0));
            });
            terms.push(AffineTerm {
                value: dynamic,
                scale,
                order,
            });
        }
        Ok(())
    }

    /// The storage of `buffer`, or the error naming it when it is out of scope.
    pub fn storage_of(&self, buffer: BufferId) -> Result<&Storage, CompileError> {
        self.storage
            .get(buffer.index())
            .and_then(Option::as_ref)
            .ok_or_else(|| CompileError::BufferNotInScope {
                buffer: self.buffer_name(buffer),
            })
    }

    /// A register tile's element index, which must be a compile-time constant here.
    pub fn tile_element(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
    ) -> Result<usize, CompileError> {
        let offset = self.element_offset(buffer, indices)?;
        match offset.dynamic {
            None if offset.offset >= 0 => Ok(offset.offset as usize),
            // The promotion analysis only keeps buffers whose indices are constants here; a
            // dynamic one means that analysis and emission disagree.
            _ => Err(CompileError::UnsupportedOp {
                what: format!(
                    "register tile `{}` indexed by a run-time value",
                    self.buffer_name(buffer)
                ),
            }),
        }
    }

    /// Whether `buffer`'s tile is grouped, and the variable holding `element`.
    pub fn tile_slot(
        &self,
        buffer: BufferId,
        element: usize,
    ) -> Result<(bool, Variable), CompileError> {
        let not_a_tile = || CompileError::UnsupportedOp {
            what: format!(
                "element {element} of `{}` read as a register tile",
                self.buffer_name(buffer)
            ),
        };
        match self.storage_of(buffer)? {
            Storage::Registers(tile) => {
                let slot = if tile.grouped { element / 4 } else { element };
                let var = tile.vars.get(slot).copied().ok_or_else(not_a_tile)?;
                Ok((tile.grouped, var))
            }
            Storage::Memory { .. } => Err(not_a_tile()),
        }
    }

    /// Whether `element` is inside `buffer`'s tile. An unrolled copy may index a register
    /// tile past its end under a guard that is false whenever that copy runs, but that
    /// compile-time evaluation cannot decide ([`Self::known_cond`] only compares constants, and
    /// the guard may hold a serial loop's variable: seed 2521307633532214008 stores element 8
    /// of an 8-element tile under `ji.inner.inner + 2 < 3 && ji.outer * 3 + ji.inner.inner + 2
    /// < 8`, false for the copy `ji.outer = 2` only because `ji.inner.inner >= 0`). Such an
    /// access is what an access to memory the bounds analysis cannot prove in bounds is: code
    /// that must trap if it ever runs (see `bounds.rs`), not a compile error.
    fn tile_holds(&self, buffer: BufferId, element: usize) -> bool {
        element < self.nest.buffer(buffer).len()
    }

    /// Emits the trap of an access past a register tile's end (see [`Self::tile_holds`]).
    fn trap_outside_tile(&mut self) {
        let always = self.builder.ins().iconst(types::I8, 1);
        self.builder
            .ins()
            .trapnz(always, super::bounds::OUT_OF_BOUNDS);
    }

    /// Reads one element of a register tile; past its end, a trap and a zero that is never
    /// used.
    pub fn tile_read(&mut self, buffer: BufferId, element: usize) -> Result<Value, CompileError> {
        if !self.tile_holds(buffer, element) {
            self.trap_outside_tile();
            let dtype = self.nest.buffer(buffer).dtype;
            return self.constant(Scalar::zero(dtype));
        }
        let (grouped, var) = self.tile_slot(buffer, element)?;
        let value = self.builder.use_var(var);
        Ok(if grouped {
            self.builder.ins().extractlane(value, (element % 4) as u8)
        } else {
            value
        })
    }

    /// Writes one element of a register tile.
    pub fn tile_write(
        &mut self,
        buffer: BufferId,
        element: usize,
        value: Value,
    ) -> Result<(), CompileError> {
        if !self.tile_holds(buffer, element) {
            self.trap_outside_tile();
            return Ok(());
        }
        let (grouped, var) = self.tile_slot(buffer, element)?;
        if grouped {
            let group = self.builder.use_var(var);
            let updated = self
                .builder
                .ins()
                .insertlane(group, value, (element % 4) as u8);
            self.builder.def_var(var, updated);
        } else {
            self.builder.def_var(var, value);
        }
        Ok(())
    }

    /// Loads one element.
    pub fn load_scalar(&mut self, load: &Load) -> Result<Value, CompileError> {
        let decl = self.nest.buffer(load.buffer);
        let ty = clif_type(decl.dtype, &format!("buffer `{}`", decl.name))?;
        let role = decl.role;
        match self.storage_of(load.buffer)? {
            Storage::Registers(_) => {
                let element = self.tile_element(load.buffer, &load.indices)?;
                self.tile_read(load.buffer, element)
            }
            Storage::Memory { base } => {
                let base = *base;
                let offset = self.element_offset(load.buffer, &load.indices)?;
                let bounded = self.check_bounds(load.buffer, &load.indices, offset, 1)?;
                let flags = load_flags(role, bounded);
                let size = i64::from(ty.bytes());
                let (address, immediate) =
                    self.element_address(base, load.buffer, &load.indices, size)?;
                Ok(self.builder.ins().load(ty, flags, address, immediate))
            }
        }
    }

    /// Stores one element.
    pub fn store_scalar(
        &mut self,
        buffer: BufferId,
        indices: &[IndexExpr],
        value: Value,
    ) -> Result<(), CompileError> {
        let decl = self.nest.buffer(buffer);
        let flags = access_flags(decl.role);
        let size = i64::from(self.builder.func.dfg.value_type(value).bytes());
        match self.storage_of(buffer)? {
            Storage::Registers(_) => {
                let element = self.tile_element(buffer, indices)?;
                self.tile_write(buffer, element, value)
            }
            Storage::Memory { base } => {
                let base = *base;
                let offset = self.element_offset(buffer, indices)?;
                self.check_bounds(buffer, indices, offset, 1)?;
                let (address, immediate) = self.element_address(base, buffer, indices, size)?;
                self.builder.ins().store(flags, value, address, immediate);
                Ok(())
            }
        }
    }

    // ----- scalar values -----

    /// A constant of `scalar`'s dtype.
    pub fn constant(&mut self, scalar: Scalar) -> Result<Value, CompileError> {
        Ok(match scalar.dtype {
            DType::F32 => self.builder.ins().f32const(scalar.value as f32),
            DType::F64 => self.builder.ins().f64const(scalar.value),
            integer @ (DType::I32 | DType::I16 | DType::I8 | DType::U8) => {
                let ty = clif_type(integer, "a constant")?;
                // A narrow immediate is given as its bits, zero-extended.
                let bits = (integer.wrap(scalar.value as i64) as u64) & ty.bounds(false).1 as u64;
                self.builder.ins().iconst(ty, bits as i64)
            }
            other => {
                return Err(CompileError::UnsupportedDType {
                    context: "a constant".to_string(),
                    dtype: other,
                })
            }
        })
    }

    /// Emits a value expression as a scalar.
    pub fn value(&mut self, expr: &ValueExpr) -> Result<Value, CompileError> {
        let dtype = value_dtype(self.nest, expr);
        match expr {
            ValueExpr::Const(scalar) => self.constant(*scalar),
            ValueExpr::Load(load) => self.load_scalar(load),
            ValueExpr::Binary(op, a, b) => {
                let a = self.value(a)?;
                let b = self.value(b)?;
                self.binary(*op, dtype, a, b)
            }
            ValueExpr::Unary(op, a) => {
                let a = self.value(a)?;
                self.unary(*op, dtype, a)
            }
            ValueExpr::Fma(a, b, c) => {
                let a = self.value(a)?;
                let b = self.value(b)?;
                let c = self.value(c)?;
                self.fma(dtype, a, b, c)
            }
            ValueExpr::Select(cond, a, b) => {
                let ty = clif_type(dtype, "a select")?;
                if let Some(holds) = self.known_cond(cond)? {
                    // Only the chosen side exists in this copy of the code (see `known_cond`).
                    return self.value(if holds { a } else { b });
                }
                if reads_memory(a) || reads_memory(b) {
                    let cond = self.cond(cond)?;
                    self.branchy_select(cond, ty, |this| this.value(a), |this| this.value(b))
                } else {
                    // Neither side can fault or have effects, so evaluating both and picking one
                    // is the same as evaluating only the chosen one, and has no branch.
                    let cond = self.cond(cond)?;
                    let a = self.value(a)?;
                    let b = self.value(b)?;
                    Ok(self.builder.ins().select(cond, a, b))
                }
            }
            ValueExpr::Cast(to, a) => {
                let from = value_dtype(self.nest, a);
                let a = self.value(a)?;
                self.cast(from, *to, a)
            }
            ValueExpr::FromIndex(to, index) => {
                let index = self.index(index)?;
                let index = self.materialize(index);
                self.index_to_value(*to, index)
            }
        }
    }

    /// `cond ? then() : otherwise()` with only the chosen side emitted on its path.
    pub fn branchy_select(
        &mut self,
        cond: Value,
        ty: Type,
        then: impl FnOnce(&mut Self) -> Result<Value, CompileError>,
        otherwise: impl FnOnce(&mut Self) -> Result<Value, CompileError>,
    ) -> Result<Value, CompileError> {
        let then_block = self.builder.create_block();
        let else_block = self.builder.create_block();
        let merge = self.builder.create_block();
        self.builder.append_block_param(merge, ty);
        self.builder
            .ins()
            .brif(cond, then_block, &[], else_block, &[]);
        self.builder.switch_to_block(then_block);
        let chosen = then(self)?;
        self.builder.ins().jump(merge, &block_args(&[chosen]));
        self.builder.switch_to_block(else_block);
        let chosen = otherwise(self)?;
        self.builder.ins().jump(merge, &block_args(&[chosen]));
        self.builder.switch_to_block(merge);
        Ok(self.builder.block_params(merge)[0])
    }

    /// A binary operation on scalars or vectors of `dtype`.
    pub fn binary(
        &mut self,
        op: BinaryOp,
        dtype: DType,
        a: Value,
        b: Value,
    ) -> Result<Value, CompileError> {
        let ins = self.builder.ins();
        Ok(if dtype.is_float() {
            match op {
                BinaryOp::Add => ins.fadd(a, b),
                BinaryOp::Sub => ins.fsub(a, b),
                BinaryOp::Mul => ins.fmul(a, b),
                BinaryOp::Div => ins.fdiv(a, b),
                BinaryOp::Min => ins.fmin(a, b),
                BinaryOp::Max => ins.fmax(a, b),
                BinaryOp::MulShr(_) => {
                    return Err(CompileError::UnsupportedOp {
                        what: format!("mulshr of {dtype} values"),
                    })
                }
            }
        } else {
            let unsigned = !dtype.is_signed_integer();
            match op {
                BinaryOp::Add => ins.iadd(a, b),
                BinaryOp::Sub => ins.isub(a, b),
                BinaryOp::Mul => ins.imul(a, b),
                BinaryOp::Min if unsigned => ins.umin(a, b),
                BinaryOp::Max if unsigned => ins.umax(a, b),
                BinaryOp::Min => ins.smin(a, b),
                BinaryOp::Max => ins.smax(a, b),
                BinaryOp::MulShr(shift) => {
                    // Exact in 64 bits, rounded to nearest with ties up, wrapped to i32.
                    let wide_a = ins.sextend(types::I64, a);
                    let wide_b = self.builder.ins().sextend(types::I64, b);
                    let product = self.builder.ins().imul(wide_a, wide_b);
                    let rounded = if shift == 0 {
                        product
                    } else {
                        self.builder.ins().iadd_imm_s(product, 1i64 << (shift - 1))
                    };
                    let shifted = self.builder.ins().sshr_imm_s(rounded, i64::from(shift));
                    return Ok(self.builder.ins().ireduce(types::I32, shifted));
                }
                BinaryOp::Div => {
                    // Integer division traps on zero and has no agreed rounding in the IR yet.
                    return Err(CompileError::UnsupportedOp {
                        what: format!("division of {dtype} values"),
                    });
                }
            }
        })
    }

    /// A unary operation on scalars or vectors of `dtype`.
    pub fn unary(&mut self, op: UnaryOp, dtype: DType, a: Value) -> Result<Value, CompileError> {
        let ins = self.builder.ins();
        Ok(if dtype.is_float() {
            match op {
                UnaryOp::Neg => ins.fneg(a),
                UnaryOp::Abs => ins.fabs(a),
                UnaryOp::Sqrt => ins.sqrt(a),
            }
        } else {
            match op {
                UnaryOp::Neg => ins.ineg(a),
                UnaryOp::Abs => ins.iabs(a),
                UnaryOp::Sqrt => {
                    return Err(CompileError::UnsupportedOp {
                        what: format!("sqrt of {dtype} values"),
                    })
                }
            }
        })
    }

    /// `a * b + c`: one fused instruction where the target has FMA, else a multiply and an add
    /// (Cranelift would otherwise legalize `fma` to a libcall).
    pub fn fma(
        &mut self,
        dtype: DType,
        a: Value,
        b: Value,
        c: Value,
    ) -> Result<Value, CompileError> {
        if dtype.is_float() {
            if self.has_fma {
                return Ok(self.builder.ins().fma(a, b, c));
            }
            let product = self.builder.ins().fmul(a, b);
            return Ok(self.builder.ins().fadd(product, c));
        }
        let product = self.builder.ins().imul(a, b);
        Ok(self.builder.ins().iadd(product, c))
    }

    /// Converts a scalar between dtypes. Float to integer saturates (never traps), like Rust's
    /// `as`.
    pub fn cast(&mut self, from: DType, to: DType, value: Value) -> Result<Value, CompileError> {
        let to_ty = clif_type(to, "a cast")?;
        let from_ty = clif_type(from, "a cast")?;
        let ins = self.builder.ins();
        Ok(match (from.is_float(), to.is_float()) {
            _ if from_ty == to_ty => value,
            (true, true) if to_ty.bits() > from_ty.bits() => ins.fpromote(to_ty, value),
            (true, true) => ins.fdemote(to_ty, value),
            (true, false) => ins.fcvt_to_sint_sat(to_ty, value),
            (false, true) if !from.is_signed_integer() => ins.fcvt_from_uint(to_ty, value),
            (false, true) => ins.fcvt_from_sint(to_ty, value),
            (false, false) if to_ty.bits() > from_ty.bits() && !from.is_signed_integer() => {
                ins.uextend(to_ty, value)
            }
            (false, false) if to_ty.bits() > from_ty.bits() => ins.sextend(to_ty, value),
            (false, false) => ins.ireduce(to_ty, value),
        })
    }

    /// An `i64` index value as an element of `to`.
    pub fn index_to_value(&mut self, to: DType, value: Value) -> Result<Value, CompileError> {
        let to_ty = clif_type(to, "an index converted to a value")?;
        let ins = self.builder.ins();
        Ok(if to.is_float() {
            ins.fcvt_from_sint(to_ty, value)
        } else if to_ty == types::I64 {
            value
        } else {
            ins.ireduce(to_ty, value)
        })
    }

    // ----- conditions -----

    /// The value of `cond` when it is known while compiling (constants and unrolled loop
    /// counters). Code under a condition that cannot hold must not be emitted at all: an
    /// unrolled copy may index a register tile past its end under a guard that is false for
    /// that copy, and such an element has no register.
    pub fn known_cond(&mut self, cond: &Cond) -> Result<Option<bool>, CompileError> {
        Ok(match cond {
            Cond::Const(value) => Some(*value),
            Cond::Index(op, a, b) => {
                let a = self.index(a)?;
                let b = self.index(b)?;
                (a.dynamic == b.dynamic).then(|| op.compare(a.offset, b.offset))
            }
            Cond::Value(..) => None,
            Cond::And(a, b) => match (self.known_cond(a)?, self.known_cond(b)?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Cond::Or(a, b) => match (self.known_cond(a)?, self.known_cond(b)?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Cond::Not(a) => self.known_cond(a)?.map(|holds| !holds),
        })
    }

    /// Emits a condition as an `i8` truth value.
    pub fn cond(&mut self, cond: &Cond) -> Result<Value, CompileError> {
        match cond {
            Cond::Const(value) => Ok(self.builder.ins().iconst(types::I8, i64::from(*value))),
            Cond::Index(op, a, b) => {
                let a = self.index(a)?;
                let b = self.index(b)?;
                let a = self.materialize(a);
                let b = self.materialize(b);
                Ok(self.builder.ins().icmp(int_cc(*op), a, b))
            }
            Cond::Value(op, a, b) => {
                let dtype = value_dtype(self.nest, a);
                let a = self.value(a)?;
                let b = self.value(b)?;
                Ok(if dtype.is_float() {
                    self.builder.ins().fcmp(float_cc(*op), a, b)
                } else if dtype.is_signed_integer() {
                    self.builder.ins().icmp(int_cc(*op), a, b)
                } else {
                    self.builder.ins().icmp(unsigned_cc(*op), a, b)
                })
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                let is_and = matches!(cond, Cond::And(..));
                let left = self.cond(a)?;
                if cond_reads_memory(b) {
                    // Short-circuit: the right side may read what the left side guards.
                    let short = self.builder.ins().iconst(types::I8, i64::from(!is_and));
                    if is_and {
                        self.branchy_select(left, types::I8, |this| this.cond(b), |_| Ok(short))
                    } else {
                        self.branchy_select(left, types::I8, |_| Ok(short), |this| this.cond(b))
                    }
                } else {
                    let right = self.cond(b)?;
                    Ok(if is_and {
                        self.builder.ins().band(left, right)
                    } else {
                        self.builder.ins().bor(left, right)
                    })
                }
            }
            Cond::Not(a) => {
                let a = self.cond(a)?;
                Ok(self.builder.ins().bxor_imm_s(a, 1))
            }
        }
    }
}

/// The signed integer comparison for `op`.
pub(crate) fn int_cc(op: CmpOp) -> IntCC {
    match op {
        CmpOp::Lt => IntCC::SignedLessThan,
        CmpOp::Le => IntCC::SignedLessThanOrEqual,
        CmpOp::Gt => IntCC::SignedGreaterThan,
        CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
        CmpOp::Eq => IntCC::Equal,
        CmpOp::Ne => IntCC::NotEqual,
    }
}

/// The unsigned integer comparison for `op`.
pub(crate) fn unsigned_cc(op: CmpOp) -> IntCC {
    match op {
        CmpOp::Lt => IntCC::UnsignedLessThan,
        CmpOp::Le => IntCC::UnsignedLessThanOrEqual,
        CmpOp::Gt => IntCC::UnsignedGreaterThan,
        CmpOp::Ge => IntCC::UnsignedGreaterThanOrEqual,
        CmpOp::Eq => IntCC::Equal,
        CmpOp::Ne => IntCC::NotEqual,
    }
}

/// The float comparison for `op`; ordered except `!=`, which holds for NaN as in Rust.
pub(crate) fn float_cc(op: CmpOp) -> FloatCC {
    match op {
        CmpOp::Lt => FloatCC::LessThan,
        CmpOp::Le => FloatCC::LessThanOrEqual,
        CmpOp::Gt => FloatCC::GreaterThan,
        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
        CmpOp::Eq => FloatCC::Equal,
        CmpOp::Ne => FloatCC::NotEqual,
    }
}
