//! The reference interpreter: runs a [`LoopNest`] on the host, slowly and carefully.
//!
//! Every kernel looptune measures is compared with this interpreter's output, so it favours
//! being obviously right over being fast:
//! - float values are computed in `f64` and rounded to the buffer's `f32` only when stored, so
//!   its result is at least as accurate as any back end's; integer values are computed exactly
//!   and wrapped to their type after every operation ([`crate::DType::wrap`]), the semantics
//!   every back end implements, so integer kernels compare bit for bit. Every element of every
//!   supported type is held exactly in an `f64`, which is the one storage type;
//! - every load and store is bounds-checked, every index operation overflow-checked;
//! - temporaries are filled with NaN when their `Alloc` is entered, so reading an element
//!   nobody wrote shows up in the output;
//! - every loop runs serially, whatever its [`crate::LoopKind`] asks for;
//! - `Select` evaluates only its chosen operand, while both operands of `&&` and `||` are
//!   evaluated (no short circuit), as a branch-free back end would.
//!
//! It must still run a 128x128x128 matmul in well under a second, so the nest is first compiled
//! to a compact tree: variables live in a `Vec<i64>` indexed by [`VarId`], index expressions
//! that are affine (the overwhelming majority) become a constant plus `(variable, coefficient)`
//! pairs, and each access carries its buffer's shape and strides. The compiled form is derived
//! from the nest without any simplification, so the interpreter stays an independent oracle for
//! the simplifier.
//!
//! The caller's outputs are written only when the whole run succeeds.

use crate::data::{DataMut, DataRef};
use crate::dtype::DType;
use crate::expr::{BinaryOp, CmpOp, Cond, IndexExpr, IndexOp, UnaryOp, ValueExpr, VarId};
use crate::loop_nest::{BufferRole, LoopNest, Stmt};
use crate::print::Printed;
use thiserror::Error;

/// Why the interpreter could not run a nest.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum InterpError {
    /// The caller passed the wrong number of input or output buffers.
    #[error("kernel `{kernel}` takes {expected} {what} buffers, got {actual}")]
    BufferCount {
        /// The nest's name.
        kernel: String,
        /// `input` or `output`.
        what: &'static str,
        /// How many the nest declares.
        expected: usize,
        /// How many were passed.
        actual: usize,
    },
    /// A caller's buffer whose length differs from its declaration.
    #[error("buffer `{buffer}` has {expected} elements but the slice passed has {actual}")]
    BufferLength {
        /// The buffer.
        buffer: String,
        /// The product of its shape.
        expected: usize,
        /// The slice's length.
        actual: usize,
    },
    /// A buffer passed with a dtype other than its declaration's.
    #[error("buffer `{buffer}` has dtype {expected} but the slice passed holds {actual}")]
    BufferDType {
        /// The buffer.
        buffer: String,
        /// Its declared dtype.
        expected: DType,
        /// The slice's dtype.
        actual: DType,
    },
    /// A value whose operands disagree on dtype, or an operation the IR does not define on
    /// them (see [`crate::expr::unsupported_op`]).
    #[error("{context}: {message}")]
    InvalidValue {
        /// The expression or store, as printed IR.
        context: String,
        /// What is wrong.
        message: String,
    },
    /// A load or store outside its buffer.
    #[error("access to `{buffer}` at {indices:?} is out of bounds of shape {shape:?}")]
    OutOfBounds {
        /// The buffer.
        buffer: String,
        /// The index values of the failing access.
        indices: Vec<i64>,
        /// The buffer's shape.
        shape: Vec<i64>,
    },
    /// An index expression that divides by zero or overflows `i64`.
    #[error("index expression `{expr}` divides by zero or overflows")]
    IndexArithmetic {
        /// The expression, as printed IR.
        expr: String,
    },
    /// An access with a number of indices different from the buffer's rank.
    #[error("buffer `{buffer}` has rank {rank} but is accessed with {indices} indices")]
    RankMismatch {
        /// The buffer.
        buffer: String,
        /// Its rank.
        rank: usize,
        /// The number of indices.
        indices: usize,
    },
    /// A variable read where no enclosing loop binds it, or an undeclared one.
    #[error("variable `{var}` is read outside any loop that binds it")]
    UnboundVar {
        /// The variable's name (or `v<id>` if undeclared).
        var: String,
    },
    /// A loop over a variable an enclosing loop already binds.
    #[error("variable `{var}` is bound by a loop nested in another loop over it")]
    VarBoundTwice {
        /// The variable.
        var: String,
    },
    /// A buffer id outside the nest's table.
    #[error("buffer id {id} is not declared")]
    UnknownBuffer {
        /// The id.
        id: u32,
    },
    /// An access to a buffer that has no storage at that point: a temporary outside its
    /// `Alloc`, or a buffer that is neither a parameter nor a temporary.
    #[error("buffer `{buffer}` has no storage here (not a parameter, or outside its alloc)")]
    NoStorage {
        /// The buffer.
        buffer: String,
    },
    /// An `Alloc` of a buffer that is not a temporary, or of one already allocated.
    #[error("buffer `{buffer}` cannot be allocated: not a temporary, or already allocated")]
    BadAlloc {
        /// The buffer.
        buffer: String,
    },
    /// A store to one of the nest's inputs.
    #[error("input buffer `{buffer}` is stored to")]
    StoreToInput {
        /// The buffer.
        buffer: String,
    },
    /// A buffer listed twice among the parameters.
    #[error("buffer `{buffer}` is listed twice among the kernel's parameters")]
    DuplicateParam {
        /// The buffer.
        buffer: String,
    },
}

/// Runs an `f32` nest on `inputs` and `outputs` (in the order of `nest.inputs` and
/// `nest.outputs`): [`run_data`] for the common case.
pub fn run(
    nest: &LoopNest,
    inputs: &[&[f32]],
    outputs: &mut [&mut [f32]],
) -> Result<(), InterpError> {
    let inputs: Vec<DataRef<'_>> = inputs.iter().map(|slice| DataRef::F32(slice)).collect();
    let mut outputs: Vec<DataMut<'_>> = outputs
        .iter_mut()
        .map(|slice| DataMut::F32(slice))
        .collect();
    run_data(nest, &inputs, &mut outputs)
}

/// Runs `nest` on typed `inputs` and `outputs` (in the order of `nest.inputs` and
/// `nest.outputs`), each of its parameter's dtype and length.
///
/// Outputs are read as well as written (a kernel may accumulate into them) and are only
/// updated if the run succeeds.
pub fn run_data(
    nest: &LoopNest,
    inputs: &[DataRef<'_>],
    outputs: &mut [DataMut<'_>],
) -> Result<(), InterpError> {
    let count = |what, expected: usize, actual: usize| {
        if expected == actual {
            Ok(())
        } else {
            Err(InterpError::BufferCount {
                kernel: nest.name.clone(),
                what,
                expected,
                actual,
            })
        }
    };
    count("input", nest.inputs.len(), inputs.len())?;
    count("output", nest.outputs.len(), outputs.len())?;

    let mut storage: Vec<Vec<f64>> = vec![Vec::new(); nest.buffers.len()];
    let mut has_storage = vec![false; nest.buffers.len()];
    let params = nest.inputs.iter().zip(inputs.iter().copied()).chain(
        nest.outputs
            .iter()
            .zip(outputs.iter().map(|slice| slice.as_ref())),
    );
    for (&buffer, slice) in params {
        let decl = nest
            .buffers
            .get(buffer.index())
            .ok_or(InterpError::UnknownBuffer { id: buffer.0 })?;
        if has_storage[buffer.index()] {
            return Err(InterpError::DuplicateParam {
                buffer: decl.name.clone(),
            });
        }
        if decl.len() != slice.len() {
            return Err(InterpError::BufferLength {
                buffer: decl.name.clone(),
                expected: decl.len(),
                actual: slice.len(),
            });
        }
        if decl.dtype != slice.dtype() {
            return Err(InterpError::BufferDType {
                buffer: decl.name.clone(),
                expected: decl.dtype,
                actual: slice.dtype(),
            });
        }
        storage[buffer.index()] = slice.to_f64();
        has_storage[buffer.index()] = true;
    }

    let mut compiler = Compiler {
        nest,
        bound: vec![false; nest.vars.len()],
    };
    let program = compiler.stmt(&nest.body)?;
    let mut machine = Machine {
        nest,
        vars: vec![0; nest.vars.len()],
        storage,
        has_storage,
        dtypes: nest.buffers.iter().map(|decl| decl.dtype).collect(),
    };
    // Errors are boxed inside the machine to keep its hot `Result`s small.
    machine.stmt(&program).map_err(|err| *err)?;

    for (&buffer, slice) in nest.outputs.iter().zip(outputs.iter_mut()) {
        // Every stored value was already rounded or wrapped to the buffer's dtype.
        slice.set_from_f64(&machine.storage[buffer.index()]);
    }
    Ok(())
}

/// An index expression ready to evaluate.
enum CIndex<'a> {
    /// `constant + sum(coefficient * vars[var])`.
    Affine {
        constant: i64,
        terms: Box<[(usize, i64)]>,
        source: &'a IndexExpr,
    },
    /// Anything else, evaluated as written.
    Binary(IndexOp, Box<CIndex<'a>>, Box<CIndex<'a>>, &'a IndexExpr),
}

impl CIndex<'_> {
    #[inline]
    fn eval(&self, vars: &[i64]) -> Option<i64> {
        match self {
            CIndex::Affine {
                constant, terms, ..
            } => {
                let mut value = *constant;
                for &(var, coefficient) in terms.iter() {
                    value = value.checked_add(vars[var].checked_mul(coefficient)?)?;
                }
                Some(value)
            }
            CIndex::Binary(op, a, b, _) => op.apply(a.eval(vars)?, b.eval(vars)?),
        }
    }

    fn source(&self) -> &IndexExpr {
        match self {
            CIndex::Affine { source, .. } | CIndex::Binary(.., source) => source,
        }
    }
}

/// A load or store target.
struct Access<'a> {
    buffer: usize,
    indices: Box<[CIndex<'a>]>,
    shape: &'a [i64],
    strides: Box<[i64]>,
}

/// A value ready to evaluate. Every value is an `f64`; integer nodes compute exactly on the
/// integers their operands hold and wrap the result to their dtype.
enum CValue<'a> {
    Const(f64),
    Load(Access<'a>),
    Binary(BinaryOp, Box<CValue<'a>>, Box<CValue<'a>>),
    IntBinary(BinaryOp, DType, Box<CValue<'a>>, Box<CValue<'a>>),
    Unary(UnaryOp, Box<CValue<'a>>),
    IntUnary(UnaryOp, DType, Box<CValue<'a>>),
    Fma(Box<CValue<'a>>, Box<CValue<'a>>, Box<CValue<'a>>),
    IntFma(DType, Box<CValue<'a>>, Box<CValue<'a>>, Box<CValue<'a>>),
    Select(Box<CCond<'a>>, Box<CValue<'a>>, Box<CValue<'a>>),
    /// Rounds to `f32` (a cast to `f32`).
    ToF32(Box<CValue<'a>>),
    /// Wraps an integer to a narrower or equal integer type (a cast between integers; widening
    /// keeps the value).
    Wrap(DType, Box<CValue<'a>>),
    /// A float truncated towards zero and saturated to `i32` (NaN is 0), rounded to `f32`
    /// first when it is one: the integer a kernel computes is that of the `f32` value, not of
    /// the interpreter's wider one.
    FloatToI32(DType, Box<CValue<'a>>),
    /// An index as a value of a dtype: rounded to `f32`, or wrapped to an integer type.
    FromIndex(DType, CIndex<'a>),
}

enum CCond<'a> {
    Const(bool),
    Index(CmpOp, CIndex<'a>, CIndex<'a>),
    Value(CmpOp, CValue<'a>, CValue<'a>),
    And(Box<CCond<'a>>, Box<CCond<'a>>),
    Or(Box<CCond<'a>>, Box<CCond<'a>>),
    Not(Box<CCond<'a>>),
}

enum CStmt<'a> {
    For {
        var: usize,
        extent: i64,
        body: Box<CStmt<'a>>,
    },
    Seq(Vec<CStmt<'a>>),
    Store {
        access: Access<'a>,
        value: CValue<'a>,
    },
    If {
        cond: CCond<'a>,
        then: Box<CStmt<'a>>,
    },
    Alloc {
        buffer: usize,
        len: usize,
        body: Box<CStmt<'a>>,
    },
}

/// Turns the nest into the compact form, checking what can be checked once: variables bound,
/// buffers declared, ranks, dtypes.
struct Compiler<'a> {
    nest: &'a LoopNest,
    bound: Vec<bool>,
}

impl<'a> Compiler<'a> {
    fn var_name(&self, var: VarId) -> String {
        match self.nest.vars.get(var.index()) {
            Some(decl) => decl.name.clone(),
            None => format!("v{}", var.0),
        }
    }

    fn stmt(&mut self, stmt: &'a Stmt) -> Result<CStmt<'a>, InterpError> {
        Ok(match stmt {
            Stmt::For(for_loop) => {
                let var = for_loop.var;
                match self.bound.get(var.index()) {
                    None => {
                        return Err(InterpError::UnboundVar {
                            var: self.var_name(var),
                        })
                    }
                    Some(true) => {
                        return Err(InterpError::VarBoundTwice {
                            var: self.var_name(var),
                        })
                    }
                    Some(false) => {}
                }
                self.bound[var.index()] = true;
                let body = self.stmt(&for_loop.body);
                self.bound[var.index()] = false;
                CStmt::For {
                    var: var.index(),
                    extent: for_loop.extent,
                    body: Box::new(body?),
                }
            }
            Stmt::Seq(stmts) => CStmt::Seq(
                stmts
                    .iter()
                    .map(|stmt| self.stmt(stmt))
                    .collect::<Result<_, _>>()?,
            ),
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                let access = self.access(*buffer, indices)?;
                if self.nest.inputs.contains(buffer) {
                    return Err(InterpError::StoreToInput {
                        buffer: self.nest.buffers[access.buffer].name.clone(),
                    });
                }
                let decl = &self.nest.buffers[access.buffer];
                let dtype = self.dtype(value)?;
                if dtype != decl.dtype {
                    return Err(InterpError::InvalidValue {
                        context: format!("store to `{}`", decl.name),
                        message: format!("a {dtype} value stored into a {} buffer", decl.dtype),
                    });
                }
                CStmt::Store {
                    access,
                    value: self.value(value)?,
                }
            }
            Stmt::If { cond, then } => CStmt::If {
                cond: self.cond(cond)?,
                then: Box::new(self.stmt(then)?),
            },
            Stmt::Alloc { buffer, body } => {
                let decl = self
                    .nest
                    .buffers
                    .get(buffer.index())
                    .ok_or(InterpError::UnknownBuffer { id: buffer.0 })?;
                if decl.role != BufferRole::Temp {
                    return Err(InterpError::BadAlloc {
                        buffer: decl.name.clone(),
                    });
                }
                CStmt::Alloc {
                    buffer: buffer.index(),
                    len: decl.len(),
                    body: Box::new(self.stmt(body)?),
                }
            }
        })
    }

    fn access(
        &mut self,
        buffer: crate::expr::BufferId,
        indices: &'a [IndexExpr],
    ) -> Result<Access<'a>, InterpError> {
        let decl = self
            .nest
            .buffers
            .get(buffer.index())
            .ok_or(InterpError::UnknownBuffer { id: buffer.0 })?;
        if decl.shape.len() != indices.len() {
            return Err(InterpError::RankMismatch {
                buffer: decl.name.clone(),
                rank: decl.shape.len(),
                indices: indices.len(),
            });
        }
        Ok(Access {
            buffer: buffer.index(),
            indices: indices
                .iter()
                .map(|index| self.index(index))
                .collect::<Result<_, _>>()?,
            shape: &decl.shape,
            strides: decl.strides().into_boxed_slice(),
        })
    }

    fn index(&mut self, expr: &'a IndexExpr) -> Result<CIndex<'a>, InterpError> {
        let mut unbound = None;
        expr.for_each_var(&mut |var| {
            if !self.bound.get(var.index()).copied().unwrap_or(false) {
                unbound.get_or_insert(var);
            }
        });
        if let Some(var) = unbound {
            return Err(InterpError::UnboundVar {
                var: self.var_name(var),
            });
        }
        Ok(compile_index(expr))
    }

    /// The dtype of `expr`, checking that its operands agree and that the IR defines its
    /// operations on them.
    fn dtype(&self, expr: &ValueExpr) -> Result<DType, InterpError> {
        let nest = self.nest;
        crate::program::value_dtype_with(
            &|buffer| nest.buffers.get(buffer.index()).map(|decl| decl.dtype),
            expr,
        )
        .map_err(|err| InterpError::InvalidValue {
            context: format!("`{}`", Printed::new(nest, expr)),
            message: err.to_string(),
        })
    }

    fn value(&mut self, expr: &'a ValueExpr) -> Result<CValue<'a>, InterpError> {
        let boxed = |value: CValue<'a>| Box::new(value);
        // A load's buffer is checked (and named in the error) by `access`, before any dtype.
        let dtype = match expr {
            ValueExpr::Load(_) => DType::F32,
            _ => self.dtype(expr)?,
        };
        let integer = dtype.is_integer();
        Ok(match expr {
            ValueExpr::Const(scalar) => CValue::Const(match scalar.dtype {
                DType::F32 => scalar.value as f32 as f64,
                DType::F64 => scalar.value,
                other => other.wrap(scalar.value as i64) as f64,
            }),
            ValueExpr::Load(load) => CValue::Load(self.access(load.buffer, &load.indices)?),
            ValueExpr::Binary(op, a, b) if integer => {
                CValue::IntBinary(*op, dtype, boxed(self.value(a)?), boxed(self.value(b)?))
            }
            ValueExpr::Binary(op, a, b) => {
                CValue::Binary(*op, boxed(self.value(a)?), boxed(self.value(b)?))
            }
            ValueExpr::Unary(op, a) if integer => {
                CValue::IntUnary(*op, dtype, boxed(self.value(a)?))
            }
            ValueExpr::Unary(op, a) => CValue::Unary(*op, boxed(self.value(a)?)),
            ValueExpr::Fma(a, b, c) if integer => CValue::IntFma(
                dtype,
                boxed(self.value(a)?),
                boxed(self.value(b)?),
                boxed(self.value(c)?),
            ),
            ValueExpr::Fma(a, b, c) => CValue::Fma(
                boxed(self.value(a)?),
                boxed(self.value(b)?),
                boxed(self.value(c)?),
            ),
            ValueExpr::Select(cond, a, b) => CValue::Select(
                Box::new(self.cond(cond)?),
                boxed(self.value(a)?),
                boxed(self.value(b)?),
            ),
            // Integer to float: exact in f64, then rounded like any f32 value; float to float
            // or integer widening: the value itself. (Float to integer is not defined.)
            ValueExpr::Cast(DType::F32, a) => CValue::ToF32(boxed(self.value(a)?)),
            ValueExpr::Cast(_, a) if integer && self.dtype(a)?.is_float() => {
                CValue::FloatToI32(self.dtype(a)?, boxed(self.value(a)?))
            }
            ValueExpr::Cast(to, a) if to.is_integer() => CValue::Wrap(*to, boxed(self.value(a)?)),
            ValueExpr::Cast(_, a) => self.value(a)?,
            ValueExpr::FromIndex(dtype, index) => CValue::FromIndex(*dtype, self.index(index)?),
        })
    }

    fn cond(&mut self, cond: &'a Cond) -> Result<CCond<'a>, InterpError> {
        Ok(match cond {
            Cond::Const(value) => CCond::Const(*value),
            Cond::Index(op, a, b) => CCond::Index(*op, self.index(a)?, self.index(b)?),
            Cond::Value(op, a, b) => CCond::Value(*op, self.value(a)?, self.value(b)?),
            Cond::And(a, b) => CCond::And(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            Cond::Or(a, b) => CCond::Or(Box::new(self.cond(a)?), Box::new(self.cond(b)?)),
            Cond::Not(a) => CCond::Not(Box::new(self.cond(a)?)),
        })
    }
}

/// Compiles an index expression, recognising affine forms. Deliberately independent of the
/// simplifier: only `+`, `-` and multiplication by a constant are folded.
fn compile_index(expr: &IndexExpr) -> CIndex<'_> {
    match affine(expr) {
        Some((constant, terms)) => CIndex::Affine {
            constant,
            terms: terms.into_boxed_slice(),
            source: expr,
        },
        None => match expr {
            IndexExpr::Binary(op, a, b) => CIndex::Binary(
                *op,
                Box::new(compile_index(a)),
                Box::new(compile_index(b)),
                expr,
            ),
            // Constants and variables are always affine.
            IndexExpr::Const(_) | IndexExpr::Var(_) => CIndex::Affine {
                constant: expr.as_const().unwrap_or(0),
                terms: Box::new([]),
                source: expr,
            },
        },
    }
}

/// `expr` as `constant + sum(coefficient * var)`, or `None` if it is not affine or a
/// coefficient overflows (then it is evaluated as written, and fails at run time if the
/// overflow is real).
fn affine(expr: &IndexExpr) -> Option<(i64, Vec<(usize, i64)>)> {
    fn add_scaled(
        into: &mut (i64, Vec<(usize, i64)>),
        from: (i64, Vec<(usize, i64)>),
        scale: i64,
    ) -> Option<()> {
        into.0 = into.0.checked_add(from.0.checked_mul(scale)?)?;
        for (var, coefficient) in from.1 {
            let add = coefficient.checked_mul(scale)?;
            match into.1.iter_mut().find(|(existing, _)| *existing == var) {
                Some((_, existing)) => *existing = existing.checked_add(add)?,
                None => into.1.push((var, add)),
            }
        }
        Some(())
    }
    match expr {
        IndexExpr::Const(value) => Some((*value, Vec::new())),
        IndexExpr::Var(var) => Some((0, vec![(var.index(), 1)])),
        IndexExpr::Binary(op, a, b) => {
            let (a, b) = (affine(a)?, affine(b)?);
            let mut result = (0, Vec::new());
            match op {
                IndexOp::Add => {
                    add_scaled(&mut result, a, 1)?;
                    add_scaled(&mut result, b, 1)?;
                }
                IndexOp::Sub => {
                    add_scaled(&mut result, a, 1)?;
                    add_scaled(&mut result, b, -1)?;
                }
                IndexOp::Mul if b.1.is_empty() => add_scaled(&mut result, a, b.0)?,
                IndexOp::Mul if a.1.is_empty() => add_scaled(&mut result, b, a.0)?,
                _ => return None,
            }
            result.1.retain(|(_, coefficient)| *coefficient != 0);
            Some(result)
        }
    }
}

struct Machine<'a> {
    nest: &'a LoopNest,
    vars: Vec<i64>,
    storage: Vec<Vec<f64>>,
    has_storage: Vec<bool>,
    dtypes: Vec<DType>,
}

impl Machine<'_> {
    fn stmt(&mut self, stmt: &CStmt<'_>) -> Result<(), Box<InterpError>> {
        match stmt {
            CStmt::For { var, extent, body } => {
                for value in 0..*extent {
                    self.vars[*var] = value;
                    self.stmt(body)?;
                }
            }
            CStmt::Seq(stmts) => {
                for stmt in stmts {
                    self.stmt(stmt)?;
                }
            }
            CStmt::Store { access, value } => {
                let value = self.value(value)?;
                let offset = self.offset(access)?;
                // f32 values are rounded once, here; integer values are already wrapped.
                self.storage[access.buffer][offset] = match self.dtypes[access.buffer] {
                    DType::F32 => value as f32 as f64,
                    _ => value,
                };
            }
            CStmt::If { cond, then } => {
                if self.cond(cond)? {
                    self.stmt(then)?;
                }
            }
            CStmt::Alloc { buffer, len, body } => {
                if self.has_storage[*buffer] {
                    return Err(Box::new(InterpError::BadAlloc {
                        buffer: self.nest.buffers[*buffer].name.clone(),
                    }));
                }
                // Reuse the storage of earlier entries; only its contents must start over.
                let storage = &mut self.storage[*buffer];
                storage.clear();
                storage.resize(*len, f64::NAN);
                self.has_storage[*buffer] = true;
                let result = self.stmt(body);
                self.has_storage[*buffer] = false;
                result?;
            }
        }
        Ok(())
    }

    /// The element offset of an access, bounds-checked.
    #[inline]
    fn offset(&self, access: &Access<'_>) -> Result<usize, Box<InterpError>> {
        if !self.has_storage[access.buffer] {
            return Err(Box::new(InterpError::NoStorage {
                buffer: self.nest.buffers[access.buffer].name.clone(),
            }));
        }
        let mut offset = 0;
        for ((index, &extent), &stride) in access
            .indices
            .iter()
            .zip(access.shape)
            .zip(&*access.strides)
        {
            match index.eval(&self.vars) {
                Some(value) if (0..extent).contains(&value) => offset += value * stride,
                _ => return Err(self.access_error(access)),
            }
        }
        Ok(offset as usize)
    }

    #[cold]
    fn access_error(&self, access: &Access<'_>) -> Box<InterpError> {
        let mut indices = Vec::with_capacity(access.indices.len());
        for index in access.indices.iter() {
            match index.eval(&self.vars) {
                Some(value) => indices.push(value),
                None => {
                    return Box::new(InterpError::IndexArithmetic {
                        expr: Printed::new(self.nest, index.source()).to_string(),
                    })
                }
            }
        }
        Box::new(InterpError::OutOfBounds {
            buffer: self.nest.buffers[access.buffer].name.clone(),
            indices,
            shape: access.shape.to_vec(),
        })
    }

    fn index(&self, index: &CIndex<'_>) -> Result<i64, Box<InterpError>> {
        index.eval(&self.vars).ok_or_else(|| {
            Box::new(InterpError::IndexArithmetic {
                expr: Printed::new(self.nest, index.source()).to_string(),
            })
        })
    }

    fn value(&self, value: &CValue<'_>) -> Result<f64, Box<InterpError>> {
        Ok(match value {
            CValue::Const(value) => *value,
            CValue::Load(access) => {
                let offset = self.offset(access)?;
                self.storage[access.buffer][offset]
            }
            CValue::Binary(op, a, b) => op.apply(self.value(a)?, self.value(b)?),
            CValue::IntBinary(op, dtype, a, b) => {
                let (a, b) = (self.value(a)? as i64, self.value(b)? as i64);
                // Division, the one operation without an integer result, was refused when
                // compiling.
                dtype.wrap(op.apply_int(a, b).unwrap_or(0)) as f64
            }
            CValue::Unary(op, a) => op.apply(self.value(a)?),
            CValue::IntUnary(op, dtype, a) => {
                let a = self.value(a)? as i64;
                dtype.wrap(match op {
                    UnaryOp::Neg => a.wrapping_neg(),
                    UnaryOp::Abs => a.wrapping_abs(),
                    // Refused when compiling.
                    UnaryOp::Sqrt => a,
                }) as f64
            }
            CValue::IntFma(dtype, a, b, c) => {
                let (a, b, c) = (
                    self.value(a)? as i64,
                    self.value(b)? as i64,
                    self.value(c)? as i64,
                );
                dtype.wrap(dtype.wrap(a.wrapping_mul(b)).wrapping_add(c)) as f64
            }
            // Computed in f64 like everything else; when `a` and `b` are f32 loads their product is
            // exact in f64, so the result is rounded once, as a fused multiply-add would be.
            CValue::Fma(a, b, c) => self.value(a)? * self.value(b)? + self.value(c)?,
            CValue::Select(cond, a, b) => {
                if self.cond(cond)? {
                    self.value(a)?
                } else {
                    self.value(b)?
                }
            }
            CValue::ToF32(a) => self.value(a)? as f32 as f64,
            CValue::Wrap(dtype, a) => dtype.wrap(self.value(a)? as i64) as f64,
            CValue::FloatToI32(DType::F32, a) => self.value(a)? as f32 as i32 as f64,
            CValue::FloatToI32(_, a) => self.value(a)? as i32 as f64,
            CValue::FromIndex(dtype, index) => {
                let index = self.index(index)?;
                match dtype {
                    DType::F32 => index as f32 as f64,
                    DType::F64 => index as f64,
                    integer => integer.wrap(index) as f64,
                }
            }
        })
    }

    fn cond(&self, cond: &CCond<'_>) -> Result<bool, Box<InterpError>> {
        Ok(match cond {
            CCond::Const(value) => *value,
            CCond::Index(op, a, b) => op.compare(self.index(a)?, self.index(b)?),
            CCond::Value(op, a, b) => op.compare(self.value(a)?, self.value(b)?),
            // Both operands are evaluated: a load in either must be valid on its own.
            CCond::And(a, b) => {
                let (a, b) = (self.cond(a)?, self.cond(b)?);
                a && b
            }
            CCond::Or(a, b) => {
                let (a, b) = (self.cond(a)?, self.cond(b)?);
                a || b
            }
            CCond::Not(a) => !self.cond(a)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Scalar;
    use crate::expr::BufferId;
    use crate::test_nests::*;

    fn run_matmul(nest: &LoopNest, m: usize, n: usize, k: usize) -> Vec<f32> {
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let mut c = vec![f32::NAN; m * n];
        run(nest, &[&a, &b], &mut [&mut c]).expect("matmul runs");
        assert_eq!(c, reference_matmul(&a, &b, m, n, k));
        c
    }

    #[test]
    fn matmul_matches_reference() {
        run_matmul(&matmul(5, 7, 3), 5, 7, 3);
    }

    #[test]
    fn tiled_matmul_with_local_accumulator_matches_reference() {
        run_matmul(&tiled_matmul(3, 8, 5), 3, 8, 5);
    }

    /// The size the interpreter must handle quickly: about 2M inner iterations. Run
    /// `cargo test --release -p looptune-ir matmul_128 -- --nocapture` to see its speed.
    #[test]
    fn matmul_128() {
        let nest = matmul(128, 128, 128);
        let (a, b) = (data(128 * 128, 1), data(128 * 128, 2));
        let mut c = vec![0.0; 128 * 128];
        let mut fastest = std::time::Duration::MAX;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            run(&nest, &[&a, &b], &mut [&mut c]).expect("matmul runs");
            fastest = fastest.min(start.elapsed());
        }
        eprintln!("interp: 128x128x128 matmul in {fastest:?} (fastest of 3)");
        assert_eq!(c, reference_matmul(&a, &b, 128, 128, 128));
    }

    #[test]
    fn tail_guard_skips_the_padding_lanes() {
        let nest = scaled_with_tail(10);
        let a = data(10, 3);
        let mut b = vec![0.0; 10];
        run(&nest, &[&a], &mut [&mut b]).expect("runs");
        let expected: Vec<f32> = a.iter().map(|x| x * 2.0 + 1.0).collect();
        assert_eq!(b, expected);
    }

    #[test]
    fn wrong_buffer_count_and_length_are_named() {
        let nest = scaled_with_tail(10);
        let a = vec![0.0; 10];
        let mut b = vec![0.0; 9];
        assert_eq!(
            run(&nest, &[], &mut [&mut b]),
            Err(InterpError::BufferCount {
                kernel: "scale".into(),
                what: "input",
                expected: 1,
                actual: 0
            })
        );
        let err = run(&nest, &[&a], &mut [&mut b]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "buffer `B` has 10 elements but the slice passed has 9"
        );
    }

    #[test]
    fn out_of_bounds_load_names_buffer_indices_and_shape() {
        let mut b = Builder::new("shift");
        let i = b.var("i");
        let a = b.buffer("A", &[4, 2], BufferRole::Input);
        let out = b.buffer("B", &[4], BufferRole::Output);
        let nest = b.finish(for_(
            i,
            4,
            store(
                out,
                vec![v(i)],
                load(a, vec![v(i) + 1, IndexExpr::Const(1)]),
            ),
        ));
        let input = vec![1.0; 8];
        let mut output = vec![7.0; 4];
        let err = run(&nest, &[&input], &mut [&mut output]).unwrap_err();
        assert_eq!(
            err,
            InterpError::OutOfBounds {
                buffer: "A".into(),
                indices: vec![4, 1],
                shape: vec![4, 2]
            }
        );
        // A failed run leaves the caller's outputs alone.
        assert_eq!(output, vec![7.0; 4]);
    }

    #[test]
    fn select_evaluates_only_the_chosen_operand() {
        // Convolution-style padding: `B[i] = i >= 1 ? A[i - 1] : 0`.
        let mut b = Builder::new("pad");
        let i = b.var("i");
        let a = b.buffer("A", &[3], BufferRole::Input);
        let out = b.buffer("B", &[4], BufferRole::Output);
        let shifted = v(i) - 1;
        let nest = b.finish(for_(
            i,
            4,
            store(
                out,
                vec![v(i)],
                ValueExpr::select(
                    shifted.clone().ge(0).and(shifted.clone().lt(3)),
                    load(a, vec![shifted]),
                    ValueExpr::f32(0.0),
                ),
            ),
        ));
        let mut output = vec![9.0; 4];
        run(&nest, &[&[1.0, 2.0, 3.0]], &mut [&mut output]).expect("runs");
        assert_eq!(output, vec![0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn uninitialised_temporaries_read_as_nan() {
        let mut b = Builder::new("uninit");
        let i = b.var("i");
        let out = b.buffer("B", &[2], BufferRole::Output);
        let temp = b.buffer("T", &[2], BufferRole::Temp);
        let nest = b.finish(alloc(
            temp,
            Stmt::Seq(vec![
                store(temp, vec![IndexExpr::Const(0)], ValueExpr::f32(5.0)),
                for_(i, 2, store(out, vec![v(i)], load(temp, vec![v(i)]))),
            ]),
        ));
        let mut output = vec![0.0; 2];
        run(&nest, &[], &mut [&mut output]).expect("runs");
        assert_eq!(output[0], 5.0);
        assert!(output[1].is_nan());
    }

    #[test]
    fn values_are_computed_in_f64_and_rounded_on_store() {
        // (1e8 + 1 - 1e8) is 1 in f64 but 0 in f32 arithmetic.
        let mut b = Builder::new("round");
        let out = b.buffer("B", &[1], BufferRole::Output);
        let big = ValueExpr::f32(1e8);
        let nest = b.finish(store(
            out,
            vec![IndexExpr::Const(0)],
            big.clone() + ValueExpr::f32(1.0) - big,
        ));
        let mut output = vec![0.0];
        run(&nest, &[], &mut [&mut output]).expect("runs");
        assert_eq!(output, vec![1.0]);
    }

    #[test]
    fn structural_errors_are_typed() {
        let mut b = Builder::new("bad");
        let (i, j) = (b.var("i"), b.var("j"));
        let a = b.buffer("A", &[2], BufferRole::Input);
        let out = b.buffer("B", &[2], BufferRole::Output);
        let temp = b.buffer("T", &[2], BufferRole::Temp);
        let base = b.finish(Stmt::nop());
        let with_body = |body: Stmt| LoopNest {
            body,
            ..base.clone()
        };
        let run_it = |nest: &LoopNest| {
            let mut output = vec![0.0; 2];
            run(nest, &[&[1.0, 2.0]], &mut [&mut output])
        };
        let one = || ValueExpr::f32(1.0);
        assert_eq!(
            run_it(&with_body(for_(i, 2, store(out, vec![v(j)], one())))),
            Err(InterpError::UnboundVar { var: "j".into() })
        );
        assert_eq!(
            run_it(&with_body(for_(
                i,
                2,
                for_(i, 2, store(out, vec![v(i)], one()))
            ))),
            Err(InterpError::VarBoundTwice { var: "i".into() })
        );
        assert_eq!(
            run_it(&with_body(for_(i, 2, store(a, vec![v(i)], one())))),
            Err(InterpError::StoreToInput { buffer: "A".into() })
        );
        assert_eq!(
            run_it(&with_body(for_(i, 2, store(temp, vec![v(i)], one())))),
            Err(InterpError::NoStorage { buffer: "T".into() })
        );
        assert_eq!(
            run_it(&with_body(alloc(out, Stmt::nop()))),
            Err(InterpError::BadAlloc { buffer: "B".into() })
        );
        assert_eq!(
            run_it(&with_body(store(out, vec![], one()))),
            Err(InterpError::RankMismatch {
                buffer: "B".into(),
                rank: 1,
                indices: 0
            })
        );
        assert_eq!(
            run_it(&with_body(store(BufferId(5), vec![], one()))),
            Err(InterpError::UnknownBuffer { id: 5 })
        );
        let divide_by_zero = store(out, vec![v(i).floor_div(v(i))], one());
        assert_eq!(
            run_it(&with_body(for_(i, 2, divide_by_zero))),
            Err(InterpError::IndexArithmetic {
                expr: "i / i".into()
            })
        );
    }

    #[test]
    fn mismatched_dtypes_are_reported_not_miscomputed() {
        let mut b = Builder::new("f64");
        let out = b.buffer("B", &[1], BufferRole::Output);
        let nest = b.finish(store(
            out,
            vec![IndexExpr::Const(0)],
            ValueExpr::Const(Scalar {
                dtype: DType::F64,
                value: 1.0,
            }),
        ));
        let err = run(&nest, &[], &mut [&mut [0.0]]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "store to `B`: a f64 value stored into a f32 buffer"
        );
        let mut integer = [0i32];
        let err = run_data(&nest, &[], &mut [DataMut::I32(&mut integer)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "buffer `B` has dtype f32 but the slice passed holds i32"
        );
    }

    /// `B[0] = value` with `B` of `dtype`, run, the stored element.
    fn integer_result(dtype: DType, value: ValueExpr) -> i64 {
        let mut b = Builder::new("int");
        let out = b.typed_buffer("B", dtype, &[1], BufferRole::Output);
        let nest = b.finish(store(out, vec![IndexExpr::Const(0)], value));
        let mut data = crate::Data::zeros(dtype, 1);
        run_data(&nest, &[], &mut [data.as_mut()]).expect("runs");
        data.get_f64(0).expect("one element") as i64
    }

    #[test]
    fn integer_arithmetic_wraps_to_its_type_and_casts_are_explicit() {
        let int = |dtype, value| ValueExpr::Const(Scalar::int(dtype, value));
        let cast = |dtype, value| ValueExpr::Cast(dtype, Box::new(value));
        // u8: 200 + 100 wraps to 44; i8: 100 + 100 wraps to -56.
        assert_eq!(
            integer_result(DType::U8, int(DType::U8, 200) + int(DType::U8, 100)),
            44
        );
        assert_eq!(
            integer_result(DType::I8, int(DType::I8, 100) + int(DType::I8, 100)),
            -56
        );
        // Widening keeps the value (zero-extended from u8, sign-extended from i8).
        let product =
            cast(DType::I32, int(DType::U8, 255)) * cast(DType::I32, int(DType::I8, -128));
        assert_eq!(integer_result(DType::I32, product), -32640);
        // i32 overflow wraps.
        let big = int(DType::I32, i32::MAX as i64) + int(DType::I32, 1);
        assert_eq!(integer_result(DType::I32, big), i32::MIN as i64);
        // Narrowing keeps the low bits.
        assert_eq!(
            integer_result(DType::U8, cast(DType::U8, int(DType::I32, 300))),
            44
        );
        assert_eq!(
            integer_result(DType::I8, cast(DType::I8, int(DType::I32, 255))),
            -1
        );
    }

    #[test]
    fn mulshr_rounds_to_nearest_with_ties_up_exactly_in_64_bits() {
        let int = |value| ValueExpr::Const(Scalar::i32(value));
        let mulshr = |a, b, shift| ValueExpr::binary(BinaryOp::MulShr(shift), int(a), int(b));
        // (5 * 1) >> 1 = 2.5 rounds up to 3; -5 >> 1 = -2.5 rounds up to -2.
        assert_eq!(integer_result(DType::I32, mulshr(5, 1, 1)), 3);
        assert_eq!(integer_result(DType::I32, mulshr(-5, 1, 1)), -2);
        // Shift 0: no rounding term; a product beyond 32 bits is exact before the shift.
        assert_eq!(integer_result(DType::I32, mulshr(7, 3, 0)), 21);
        let big = integer_result(DType::I32, mulshr(i32::MAX, i32::MAX, 31));
        assert_eq!(
            big,
            ((i32::MAX as i128 * i32::MAX as i128 + (1 << 30)) >> 31) as i64
        );
        // mulshr on anything but i32 is refused, not computed.
        let on_u8 = ValueExpr::binary(
            BinaryOp::MulShr(1),
            ValueExpr::Const(Scalar::int(DType::U8, 1)),
            ValueExpr::Const(Scalar::int(DType::U8, 1)),
        );
        let mut b = Builder::new("bad");
        let out = b.typed_buffer("B", DType::U8, &[1], BufferRole::Output);
        let nest = b.finish(store(out, vec![IndexExpr::Const(0)], on_u8));
        let err = run_data(&nest, &[], &mut [crate::DataMut::U8(&mut [0])]).unwrap_err();
        assert!(
            err.to_string().contains("mulshr is defined on i32 only"),
            "{err}"
        );
    }
}
