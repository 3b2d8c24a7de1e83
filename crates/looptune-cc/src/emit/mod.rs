//! The printer: a [`LoopNest`] in, one C translation unit out.
//!
//! # The ABI of the printed code
//! The file declares everything it uses (no `#include`) and exports exactly one function,
//! `void ENTRY(void *const *args, const lt_runtime *rt)`, `ENTRY` being
//! [`EmitOptions::entry`] (`looptune_entry` by default); everything else is `static`.
//! `args[i]` points at parameter `i`'s `f32` data, in the order of [`LoopNest::params`]
//! (inputs, then outputs), aligned to 4 bytes only. `rt` is the runtime table of
//! `looptune-jit` (`parallel_for`, `alloc`, `free`, `pool`, `threads`, in that order). A
//! [`LoopKind::Parallel`] loop becomes a static body function run over `start..end` through
//! `rt->parallel_for`, enclosing loop counters and pointers to enclosing temporaries passed
//! in the `captured` words. Temporaries up to [`STACK_TEMP_LIMIT`] bytes are local arrays (or
//! registers, below), larger ones come from `rt->alloc`.
//!
//! # What is printed how
//! - Serial loops are `for` loops; unrolled loops are unrolled here, their counter replaced by
//!   constants, and guards that the constants decide are dropped ([`index`]).
//! - Vectorized loops are cut into groups of 16, 8 or 4 lanes (the widest that fit, at most
//!   [`EmitOptions::lanes`]) and the lanes left over; a group's contiguous accesses are one
//!   unaligned vector load or store, its loop-invariant values broadcasts, its FMAs `a * b + c`
//!   on vectors (which gcc and clang contract). What depends on the lane in any other way (a
//!   gather, a scatter, a guard or select whose condition differs between lanes) is computed
//!   lane by lane, so a masked-off lane never loads ([`vector`]).
//! - A temporary whose every access has constant indices once unrolled is a register tile: its
//!   elements become local vector variables, one per vector the code touches ([`tile`]), and no
//!   memory at all. To know which vectors the code touches, the scope of the temporary is
//!   printed twice: once into the void, recording the accesses, then for real.

#![forbid(unsafe_code)]

mod analysis;
mod index;
mod int_vector;
mod prelude;
mod tile;
mod types;
mod vector;

use analysis::{accessed_in_parallel_loop, for_each_access_here};
use index::{floor_div, product_range, Lin};
use looptune_ir::print::Printed;
use looptune_ir::{
    BinaryOp, BufferId, BufferRole, Cond, DType, IndexExpr, IndexOp, Load, Loop, LoopKind,
    LoopNest, Stmt, UnaryOp, ValueExpr, VarId,
};
use thiserror::Error;
use tile::{Recording, Tile};

/// Temporaries up to this many bytes are arrays on the stack of the function that declares
/// them; larger ones come from the runtime's allocator, because worker threads have small
/// stacks (the JIT draws the same line).
pub const STACK_TEMP_LIMIT: usize = 64 * 1024;

/// Unrolled loops with more iterations than this are printed as ordinary loops: past it the
/// code only grows, and a compiler would take seconds over it.
pub const UNROLL_LIMIT: i64 = 256;

/// Vectorized loops with more iterations than this become a loop over vector groups (their
/// variable then a run-time value); shorter ones are printed group by group with constants.
pub const VECTOR_UNROLL_LIMIT: i64 = 64;

/// How to print a nest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmitOptions {
    /// The target's vector width in `f32` lanes: 4, 8 or 16. Vector code uses no wider vectors
    /// (a compiler splits a 16-lane vector into two halves on a target with 8-lane registers).
    pub lanes: usize,
    /// The name of the one exported function. Many kernels can share a C file (and one
    /// compiler run) when each has its own.
    pub entry: String,
}

impl EmitOptions {
    /// Options for `lanes` lanes, exporting `looptune_entry`.
    pub fn new(lanes: usize) -> EmitOptions {
        EmitOptions {
            lanes,
            entry: "looptune_entry".to_string(),
        }
    }

    /// The same options exporting `entry` instead.
    pub fn with_entry(self, entry: impl Into<String>) -> EmitOptions {
        EmitOptions {
            entry: entry.into(),
            ..self
        }
    }
}

impl Default for EmitOptions {
    /// 8 lanes (AVX2), `looptune_entry`.
    fn default() -> EmitOptions {
        EmitOptions::new(8)
    }
}

/// Why a nest could not be printed.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum EmitError {
    /// A vector width the printer has no vector types for.
    #[error("{lanes} f32 lanes requested; the C printer emits 4, 8 or 16")]
    Lanes {
        /// The width asked for.
        lanes: usize,
    },
    /// An entry name that is not a C identifier, or that is in the printer's `lt_` namespace.
    #[error("entry symbol `{name}` is not a C identifier outside the printer's `lt_` namespace")]
    EntryName {
        /// The name asked for.
        name: String,
    },
    /// A nest the IR verifier rejects.
    #[error("nest `{nest}` breaks the loop IR contract: {message}")]
    InvalidNest {
        /// The nest's name.
        nest: String,
        /// The verifier's message.
        message: String,
    },
    /// A buffer or value of a dtype the printer has no C type for (`f64`).
    #[error("{context} has dtype {dtype}; the C printer prints f32, u8, i8, i16 and i32")]
    UnsupportedDType {
        /// The buffer or expression, as printed IR.
        context: String,
        /// Its dtype.
        dtype: DType,
    },
    /// Index arithmetic that divides by zero or overflows `i64` when evaluated while printing.
    #[error("index expression `{expr}` divides by zero or overflows i64")]
    IndexArithmetic {
        /// The expression, as printed IR.
        expr: String,
    },
    /// A bug in the printer: its dry run and its real run disagreed about a register tile.
    #[error("internal error printing `{nest}`: {message}")]
    Internal {
        /// The nest's name.
        nest: String,
        /// What went wrong.
        message: String,
    },
}

/// Prints `nest` as a C translation unit (see the module documentation for its ABI and what is
/// printed how). Fails on nests the IR verifier rejects and on `f64`.
pub fn emit_c(nest: &LoopNest, options: &EmitOptions) -> std::result::Result<String, EmitError> {
    if !prelude::WIDTHS.contains(&options.lanes) {
        return Err(EmitError::Lanes {
            lanes: options.lanes,
        });
    }
    if !is_c_identifier(&options.entry) || options.entry.starts_with("lt_") {
        return Err(EmitError::EntryName {
            name: options.entry.clone(),
        });
    }
    looptune_ir::verify(nest).map_err(|error| EmitError::InvalidNest {
        nest: nest.name.clone(),
        message: error.to_string(),
    })?;
    check_dtypes(nest)?;

    let mut emitter = Emitter::new(nest, options);
    emitter.f.indent = 1;
    emitter.bind_params(&nest.body);
    emitter.stmt(&nest.body)?;
    let body = std::mem::take(&mut emitter.f.out);

    let mut text = format!(
        "/* looptune kernel `{}`, {} f32 lanes (printed by looptune-cc) */\n",
        nest.name.replace("*/", "* /"),
        options.lanes
    );
    text.push_str(&prelude::prelude());
    for function in &emitter.functions {
        text.push('\n');
        text.push_str(function);
    }
    text.push_str(&format!(
        "\nvoid {}(void *const *lt_args, const lt_runtime *lt_rt) {{\n    (void)lt_args;\n    (void)lt_rt;\n{body}}}\n",
        options.entry
    ));
    Ok(text)
}

fn is_c_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !C_KEYWORDS.contains(&name)
}

const C_KEYWORDS: &[&str] = &[
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "asm", "typeof", "main",
];

/// Every buffer, constant, cast and index conversion of a dtype the printer has a C type for.
fn check_dtypes(nest: &LoopNest) -> Result<()> {
    for decl in &nest.buffers {
        if !types::printable(decl.dtype) {
            return Err(EmitError::UnsupportedDType {
                context: format!("buffer `{}`", decl.name),
                dtype: decl.dtype,
            });
        }
    }
    let mut result = Ok(());
    let mut check = |expr: &ValueExpr| {
        let dtype = match expr {
            ValueExpr::Const(scalar) => scalar.dtype,
            ValueExpr::Cast(dtype, _) | ValueExpr::FromIndex(dtype, _) => *dtype,
            _ => DType::F32,
        };
        if !types::printable(dtype) && result.is_ok() {
            result = Err(EmitError::UnsupportedDType {
                context: format!("`{}`", Printed::new(nest, expr)),
                dtype,
            });
        }
    };
    nest.body.walk(&mut |stmt| match stmt {
        Stmt::Store { value, .. } => value.walk(&mut check),
        Stmt::If { cond, .. } => cond.walk_values(&mut check),
        _ => {}
    });
    result
}

/// C identifiers for the nest's variables and buffers: sanitised, unique, and never in the
/// printer's own `lt_` namespace nor a keyword.
struct Names {
    vars: Vec<String>,
    buffers: Vec<String>,
}

impl Names {
    fn new(nest: &LoopNest) -> Names {
        let mut taken = std::collections::HashSet::new();
        let mut unique = |name: &str| {
            let mut base: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            // Runs of underscores collapse, so that `__` stays free for tile element suffixes.
            while base.contains("__") {
                base = base.replace("__", "_");
            }
            let base = base.trim_end_matches('_').to_string();
            let needs_prefix = base.is_empty()
                || base.starts_with(|c: char| c.is_ascii_digit() || c == '_')
                || base.starts_with("lt_")
                || C_KEYWORDS.contains(&base.as_str());
            let base = if needs_prefix {
                format!("v_{}", base.trim_start_matches('_'))
            } else {
                base
            };
            let mut candidate = base.clone();
            let mut suffix = 1;
            while !taken.insert(candidate.clone()) {
                candidate = format!("{base}_{suffix}");
                suffix += 1;
            }
            candidate
        };
        let buffers = nest.buffers.iter().map(|decl| unique(&decl.name)).collect();
        let vars = nest.vars.iter().map(|decl| unique(&decl.name)).collect();
        Names { vars, buffers }
    }
}

/// A loop variable's value where code is printed: `atom + offset`, or the constant `offset`.
#[derive(Clone, Debug)]
struct Binding {
    atom: Option<Atom>,
    offset: i64,
}

/// A run-time loop counter.
#[derive(Clone, Debug)]
struct Atom {
    /// Its C name.
    code: String,
    /// When its loop was entered (deeper loops later).
    order: u32,
    /// The values it takes.
    range: (i64, i64),
}

impl Binding {
    fn constant(value: i64) -> Binding {
        Binding {
            atom: None,
            offset: value,
        }
    }

    fn plus(&self, delta: i64) -> Binding {
        Binding {
            atom: self.atom.clone(),
            offset: self.offset + delta,
        }
    }
}

/// Where a buffer's elements are while its scope is printed.
#[derive(Clone, Debug)]
enum Storage {
    /// In memory: `name[offset]` (a parameter, a local array or a heap block).
    Pointer { name: String },
    /// In local variables: the register tile `tiles[index]`.
    Tile(usize),
    /// Being recorded by a dry run: `recordings[index]`.
    Recording(usize),
}

/// The state of the function being printed.
#[derive(Default)]
struct FnState {
    out: String,
    indent: usize,
    env: Vec<Option<Binding>>,
    storage: Vec<Option<Storage>>,
    /// Whether this is an outlined parallel body (a nested parallel loop then runs serially).
    in_parallel: bool,
    /// Copies the enclosing unrolled loops make of the statement being printed (0 or 1: none).
    unrolled: i64,
    /// How many dry runs are under way: their text is thrown away, and parallel loops in them
    /// are skipped (an outlined body never sees the temporaries being recorded).
    dry: usize,
    next_order: u32,
}

struct Emitter<'n> {
    nest: &'n LoopNest,
    options: &'n EmitOptions,
    /// Whether every buffer access is checked at run time (`lt_in`): the nest has an access the
    /// IR verifier could not prove in bounds, and printed C must not touch memory outside a
    /// buffer (the Cranelift backend traps the same way).
    checked: bool,
    names: Names,
    /// Outlined parallel bodies, complete.
    functions: Vec<String>,
    next_function: usize,
    next_temp: usize,
    tiles: Vec<Tile>,
    recordings: Vec<Recording>,
    f: FnState,
}

type Result<T> = std::result::Result<T, EmitError>;

/// A C literal of an `f32`.
fn f32_literal(value: f32) -> String {
    if value.is_nan() {
        "__builtin_nanf(\"\")".to_string()
    } else if value.is_infinite() {
        if value > 0.0 {
            "__builtin_inff()".to_string()
        } else {
            "(-__builtin_inff())".to_string()
        }
    } else {
        // Debug prints the shortest text that reads back as the same f32, always with a `.` or
        // an exponent.
        let text = format!("{value:?}f");
        if value.is_sign_negative() {
            format!("({text})")
        } else {
            text
        }
    }
}

impl<'n> Emitter<'n> {
    fn new(nest: &'n LoopNest, options: &'n EmitOptions) -> Emitter<'n> {
        Emitter {
            nest,
            options,
            checked: !looptune_ir::verify::unproven_accesses(nest).is_empty(),
            names: Names::new(nest),
            functions: Vec::new(),
            next_function: 0,
            next_temp: 0,
            tiles: Vec::new(),
            recordings: Vec::new(),
            f: FnState {
                env: vec![None; nest.vars.len()],
                storage: vec![None; nest.buffers.len()],
                ..FnState::default()
            },
        }
    }

    fn line(&mut self, text: &str) {
        for _ in 0..self.f.indent {
            self.f.out.push_str("    ");
        }
        self.f.out.push_str(text);
        self.f.out.push('\n');
    }

    fn temp_name(&mut self, what: &str) -> String {
        self.next_temp += 1;
        format!("lt_{what}{}", self.next_temp)
    }

    fn index_error(&self, expr: &IndexExpr) -> EmitError {
        EmitError::IndexArithmetic {
            expr: Printed::new(self.nest, expr).to_string(),
        }
    }

    /// Declares pointers to the parameters `stmt` uses and places every parameter in memory.
    fn bind_params(&mut self, stmt: &Stmt) {
        let mut used = vec![false; self.nest.buffers.len()];
        let outlined_apart = !self.f.in_parallel;
        for_each_access_here(stmt, outlined_apart, &mut |buffer| {
            used[buffer.index()] = true
        });
        let params: Vec<BufferId> = self.nest.params().collect();
        for (slot, buffer) in params.into_iter().enumerate() {
            let name = self.names.buffers[buffer.index()].clone();
            if used[buffer.index()] {
                let constness = if self.nest.buffer(buffer).role == BufferRole::Input {
                    "const "
                } else {
                    ""
                };
                let t = types::c_type(self.nest.buffer(buffer).dtype);
                self.line(&format!(
                    "{constness}{t} *__restrict {name} = ({constness}{t} *)lt_args[{slot}];"
                ));
            }
            self.f.storage[buffer.index()] = Some(Storage::Pointer { name });
        }
    }

    /// Runs `body` with `var` bound to `binding`.
    fn with_var<T>(
        &mut self,
        var: VarId,
        binding: Binding,
        body: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let previous = self.f.env[var.index()].replace(binding);
        let result = body(self);
        self.f.env[var.index()] = previous;
        result
    }

    /// A fresh run-time counter named after `var`.
    fn counter(&mut self, var: VarId, range: (i64, i64)) -> Binding {
        self.f.next_order += 1;
        Binding {
            atom: Some(Atom {
                code: self.names.vars[var.index()].clone(),
                order: self.f.next_order,
                range,
            }),
            offset: 0,
        }
    }

    // ----- index arithmetic -----

    fn var_value(&self, var: VarId) -> Lin {
        match &self.f.env[var.index()] {
            Some(Binding {
                atom: Some(atom),
                offset,
            }) => Lin {
                constant: *offset,
                terms: Lin::atom(atom.code.clone(), atom.order, Some(atom.range)).terms,
            },
            Some(Binding { atom: None, offset }) => Lin::constant(*offset),
            // The verifier guarantees every variable is bound where it is read.
            None => Lin::atom(self.names.vars[var.index()].clone(), 0, None),
        }
    }

    /// An index expression as a linear form under the current bindings.
    fn index(&self, expr: &IndexExpr) -> Result<Lin> {
        match expr {
            IndexExpr::Const(value) => Ok(Lin::constant(*value)),
            IndexExpr::Var(var) => Ok(self.var_value(*var)),
            IndexExpr::Binary(op, a, b) => {
                let (a, b) = (self.index(a)?, self.index(b)?);
                self.index_binary(*op, a, b)
                    .ok_or_else(|| self.index_error(expr))
            }
        }
    }

    fn index_binary(&self, op: IndexOp, a: Lin, b: Lin) -> Option<Lin> {
        if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
            return op.apply(x, y).map(Lin::constant);
        }
        let order = a.order().max(b.order());
        let opaque = |code: String, range: Option<(i64, i64)>| Some(Lin::atom(code, order, range));
        match op {
            IndexOp::Add => a.add_scaled(&b, 1),
            IndexOp::Sub => a.add_scaled(&b, -1),
            IndexOp::Mul => match (a.as_const(), b.as_const()) {
                (_, Some(factor)) => a.scale(factor),
                (Some(factor), _) => b.scale(factor),
                _ => {
                    let range = a
                        .range()
                        .zip(b.range())
                        .and_then(|(x, y)| product_range(x, y));
                    opaque(
                        format!("({} * {})", a.to_c_operand(), b.to_c_operand()),
                        range,
                    )
                }
            },
            IndexOp::FloorDiv | IndexOp::FloorMod => {
                let divisor = b.as_const();
                if divisor == Some(0) {
                    return None;
                }
                let nonnegative = a.range().filter(|(low, _)| *low >= 0);
                match (op, divisor, nonnegative) {
                    (IndexOp::FloorDiv, Some(1), _) => Some(a),
                    (IndexOp::FloorMod, Some(1 | -1), _) => Some(Lin::constant(0)),
                    (IndexOp::FloorDiv, Some(d), Some((low, high))) if d > 0 => {
                        if high < d {
                            Some(Lin::constant(0))
                        } else {
                            opaque(
                                format!("({} / {d})", a.to_c_operand()),
                                Some((low / d, high / d)),
                            )
                        }
                    }
                    (IndexOp::FloorMod, Some(d), Some((_, high))) if d > 0 => {
                        if high < d {
                            Some(a)
                        } else {
                            opaque(format!("({} % {d})", a.to_c_operand()), Some((0, d - 1)))
                        }
                    }
                    (IndexOp::FloorDiv, _, _) => {
                        let range = match (a.range(), divisor) {
                            (Some((low, high)), Some(d)) if d > 0 => {
                                Some((floor_div(low, d)?, floor_div(high, d)?))
                            }
                            _ => None,
                        };
                        opaque(format!("lt_floordiv({}, {})", a.to_c(), b.to_c()), range)
                    }
                    _ => {
                        let range = match divisor {
                            Some(d) if d > 0 => Some((0, d - 1)),
                            Some(d) => Some((d + 1, 0)),
                            None => None,
                        };
                        opaque(format!("lt_floormod({}, {})", a.to_c(), b.to_c()), range)
                    }
                }
            }
            IndexOp::Min | IndexOp::Max => {
                if let (Some((a_low, a_high)), Some((b_low, b_high))) = (a.range(), b.range()) {
                    let a_below = a_high <= b_low;
                    let b_below = b_high <= a_low;
                    match (op, a_below, b_below) {
                        (IndexOp::Min, true, _) | (IndexOp::Max, _, true) => return Some(a),
                        (IndexOp::Min, _, true) | (IndexOp::Max, true, _) => return Some(b),
                        _ => {}
                    }
                }
                let range = a.range().zip(b.range()).map(|((al, ah), (bl, bh))| {
                    if op == IndexOp::Min {
                        (al.min(bl), ah.min(bh))
                    } else {
                        (al.max(bl), ah.max(bh))
                    }
                });
                let name = if op == IndexOp::Min {
                    "lt_imin"
                } else {
                    "lt_imax"
                };
                opaque(format!("{name}({}, {})", a.to_c(), b.to_c()), range)
            }
        }
    }

    /// The row-major element offset of an access.
    fn offset(&self, buffer: BufferId, indices: &[IndexExpr]) -> Result<Lin> {
        let strides = self.nest.buffer(buffer).strides();
        let mut total = Lin::constant(0);
        for (index, stride) in indices.iter().zip(strides) {
            let value = self.index(index)?;
            total = total
                .add_scaled(&value, stride)
                .ok_or_else(|| self.index_error(index))?;
        }
        Ok(total)
    }

    // ----- conditions -----

    /// The value of `cond` when the bindings decide it: constants, or ranges of counters that
    /// put a comparison's two sides always in the same order. Code under a guard that cannot
    /// hold is not printed at all (an unrolled copy may index a register tile past its end
    /// under a guard false for that copy).
    fn known_cond(&self, cond: &Cond) -> Result<Option<bool>> {
        Ok(match cond {
            Cond::Const(value) => Some(*value),
            Cond::Index(op, a, b) => {
                let (a_form, b_form) = (self.index(a)?, self.index(b)?);
                let difference = a_form
                    .add_scaled(&b_form, -1)
                    .ok_or_else(|| self.index_error(a))?;
                difference
                    .range()
                    .and_then(|(low, high)| op.decide_against_zero(low, high))
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

    /// A condition as a C expression of type `int`.
    fn cond(&mut self, cond: &Cond) -> Result<String> {
        if let Some(holds) = self.known_cond(cond)? {
            return Ok(if holds { "1" } else { "0" }.to_string());
        }
        Ok(match cond {
            Cond::Const(value) => i32::from(*value).to_string(),
            Cond::Index(op, a, b) => {
                let (a, b) = (self.index(a)?, self.index(b)?);
                format!("({} {} {})", a.to_c(), op.symbol(), b.to_c())
            }
            Cond::Value(op, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                format!("({a} {} {b})", op.symbol())
            }
            Cond::And(a, b) => format!("({} && {})", self.cond(a)?, self.cond(b)?),
            Cond::Or(a, b) => format!("({} || {})", self.cond(a)?, self.cond(b)?),
            Cond::Not(a) => format!("!{}", self.cond(a)?),
        })
    }

    // ----- scalar values -----

    /// The dtype of a value of the (verified) nest.
    fn dtype(&self, expr: &ValueExpr) -> DType {
        let nest = self.nest;
        looptune_ir::program::value_dtype_with(
            &|buffer| nest.buffers.get(buffer.index()).map(|decl| decl.dtype),
            expr,
        )
        .unwrap_or(DType::F32)
    }

    /// A value expression as a scalar C expression of its dtype's C type.
    fn value(&mut self, expr: &ValueExpr) -> Result<String> {
        let dtype = self.dtype(expr);
        if dtype.is_integer() {
            return self.int_value(expr, dtype);
        }
        Ok(match expr {
            ValueExpr::Const(scalar) => f32_literal(scalar.value as f32),
            ValueExpr::Load(load) => self.load_scalar(load)?,
            ValueExpr::Binary(op, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                match op {
                    BinaryOp::Min => format!("lt_fmin({a}, {b})"),
                    BinaryOp::Max => format!("lt_fmax({a}, {b})"),
                    _ => format!("({a} {} {b})", op.symbol()),
                }
            }
            ValueExpr::Unary(op, a) => {
                let a = self.value(a)?;
                match op {
                    UnaryOp::Neg => format!("(-{a})"),
                    UnaryOp::Abs => format!("__builtin_fabsf({a})"),
                    UnaryOp::Sqrt => format!("__builtin_sqrtf({a})"),
                }
            }
            ValueExpr::Fma(a, b, c) => {
                let (a, b, c) = (self.value(a)?, self.value(b)?, self.value(c)?);
                format!("({a} * {b} + {c})")
            }
            ValueExpr::Select(cond, a, b) => self.select(cond, a, b)?,
            // A cast to f32 of an integer converts it; of an f32 it is the value.
            ValueExpr::Cast(_, a) if self.dtype(a).is_integer() => {
                format!("((float)({}))", self.value(a)?)
            }
            ValueExpr::Cast(_, a) => self.value(a)?,
            ValueExpr::FromIndex(_, index) => format!("((float)({}))", self.index(index)?.to_c()),
        })
    }

    /// `cond ? a : b` as a scalar of either type: only the chosen operand is printed when the
    /// bindings decide the condition, and C's conditional operator evaluates only the chosen
    /// operand otherwise, as the IR asks.
    fn select(&mut self, cond: &Cond, a: &ValueExpr, b: &ValueExpr) -> Result<String> {
        Ok(match self.known_cond(cond)? {
            Some(true) => self.value(a)?,
            Some(false) => self.value(b)?,
            None => {
                let cond = self.cond(cond)?;
                format!("({cond} ? {} : {})", self.value(a)?, self.value(b)?)
            }
        })
    }

    /// An integer value expression of `dtype` as C (see [`types`] for the wrapping rules).
    fn int_value(&mut self, expr: &ValueExpr, dtype: DType) -> Result<String> {
        let t = types::c_type(dtype);
        Ok(match expr {
            ValueExpr::Const(scalar) => types::int_literal(*scalar),
            ValueExpr::Load(load) => self.load_scalar(load)?,
            ValueExpr::Binary(op, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                types::int_binary(*op, dtype, &a, &b)
            }
            ValueExpr::Unary(op, a) => {
                let a = self.value(a)?;
                types::int_unary(*op, dtype, &a)
            }
            ValueExpr::Fma(a, b, c) => {
                let (a, b, c) = (self.value(a)?, self.value(b)?, self.value(c)?);
                types::int_fma(dtype, &a, &b, &c)
            }
            ValueExpr::Select(cond, a, b) => self.select(cond, a, b)?,
            // Integer to integer: C's conversion keeps the value when it widens and wraps when
            // it narrows (gcc and clang), as the IR does. Floats convert to i32 only, above.
            ValueExpr::Cast(_, a) if self.dtype(a).is_float() => {
                format!("lt_f2i32({})", self.value(a)?)
            }
            ValueExpr::Cast(_, a) => format!("(({t})({}))", self.value(a)?),
            ValueExpr::FromIndex(_, index) => format!("(({t})({}))", self.index(index)?.to_c()),
        })
    }

    /// The C of an access's offset into `buffer` for `width` consecutive elements: checked
    /// against the buffer's length when the nest is printed checked.
    fn access_offset(&self, buffer: BufferId, offset: &Lin, width: usize) -> String {
        if self.checked {
            let last = self.nest.buffer(buffer).len() as i64 - width as i64;
            format!("lt_in({}, {last})", offset.to_c())
        } else {
            offset.to_c()
        }
    }

    fn load_scalar(&mut self, load: &Load) -> Result<String> {
        let offset = self.offset(load.buffer, &load.indices)?;
        match self.storage(load.buffer)? {
            Storage::Pointer { name } => Ok(format!(
                "{name}[{}]",
                self.access_offset(load.buffer, &offset, 1)
            )),
            Storage::Tile(tile) => self.tile_read(tile, &offset),
            Storage::Recording(recording) => {
                self.recordings[recording].record(&[offset]);
                Ok("0.0f".to_string())
            }
        }
    }

    fn storage(&self, buffer: BufferId) -> Result<Storage> {
        // The verifier guarantees storage wherever a buffer is accessed.
        Ok(self.f.storage[buffer.index()]
            .clone()
            .unwrap_or_else(|| Storage::Pointer {
                name: self.names.buffers[buffer.index()].clone(),
            }))
    }

    // ----- statements -----

    fn stmt(&mut self, stmt: &Stmt) -> Result<()> {
        match stmt {
            Stmt::For(lp) => self.for_loop(lp),
            Stmt::Seq(stmts) => stmts.iter().try_for_each(|stmt| self.stmt(stmt)),
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                let value = self.value(value)?;
                self.store_scalar(*buffer, indices, &value)
            }
            Stmt::If { cond, then } => match self.known_cond(cond)? {
                Some(true) => self.stmt(then),
                Some(false) => Ok(()),
                None => {
                    let cond = self.cond(cond)?;
                    self.line(&format!("if {} {{", parenthesised(&cond)));
                    self.f.indent += 1;
                    self.stmt(then)?;
                    self.f.indent -= 1;
                    self.line("}");
                    Ok(())
                }
            },
            Stmt::Alloc { buffer, body } => self.alloc(*buffer, body),
        }
    }

    fn store_scalar(&mut self, buffer: BufferId, indices: &[IndexExpr], value: &str) -> Result<()> {
        let offset = self.offset(buffer, indices)?;
        match self.storage(buffer)? {
            Storage::Pointer { name } => {
                let offset = self.access_offset(buffer, &offset, 1);
                self.line(&format!("{name}[{offset}] = {value};"));
            }
            Storage::Tile(tile) => {
                let target = self.tile_element(tile, &offset)?;
                self.line(&format!("{target} = {value};"));
            }
            Storage::Recording(recording) => self.recordings[recording].record(&[offset]),
        }
        Ok(())
    }

    fn for_loop(&mut self, lp: &Loop) -> Result<()> {
        if lp.extent <= 0 {
            return Ok(());
        }
        if lp.extent == 1 {
            return self.with_var(lp.var, Binding::constant(0), |this| this.stmt(&lp.body));
        }
        match lp.kind {
            LoopKind::Unrolled
                if lp.extent <= UNROLL_LIMIT
                    && looptune_ir::unrolls_within_budget(lp.extent, self.f.unrolled) =>
            {
                let outer = self.f.unrolled;
                self.f.unrolled = outer.max(1) * lp.extent;
                let printed = (0..lp.extent).try_for_each(|iteration| {
                    self.with_var(lp.var, Binding::constant(iteration), |this| {
                        this.stmt(&lp.body)
                    })
                });
                self.f.unrolled = outer;
                printed
            }
            LoopKind::Vectorized => self.vectorized_loop(lp),
            LoopKind::Parallel if !self.f.in_parallel => self.parallel_loop(lp),
            // Long unrolled loops (or past the budget of copies), and parallel loops nested in a
            // parallel body (which the IR forbids, and which are still correct run serially).
            _ => self.serial_loop(lp.var, lp.extent, &lp.body),
        }
    }

    fn serial_loop(&mut self, var: VarId, extent: i64, body: &Stmt) -> Result<()> {
        let binding = self.counter(var, (0, extent - 1));
        let name = &self.names.vars[var.index()];
        self.line(&format!(
            "for (lt_i64 {name} = 0; {name} < {extent}; ++{name}) {{"
        ));
        self.f.indent += 1;
        self.with_var(var, binding, |this| this.stmt(body))?;
        self.f.indent -= 1;
        self.line("}");
        Ok(())
    }

    fn alloc(&mut self, buffer: BufferId, body: &Stmt) -> Result<()> {
        let decl = self.nest.buffer(buffer);
        let elements = decl.len();
        let name = self.names.buffers[buffer.index()].clone();
        let previous = self.f.storage[buffer.index()].take();
        self.line(&format!("{{ /* {} */", decl.name.replace("*/", "* /")));
        self.f.indent += 1;
        let tile = if elements <= tile::MAX_TILE_ELEMENTS
            && (self.f.in_parallel || !accessed_in_parallel_loop(body, buffer))
        {
            self.plan_tile(buffer, &name, elements, body)?
        } else {
            None
        };
        let result = match tile {
            Some(tile) => {
                for declaration in self.tiles[tile].declarations() {
                    self.line(&declaration);
                }
                self.f.storage[buffer.index()] = Some(Storage::Tile(tile));
                self.stmt(body)
            }
            None if elements * decl.dtype.size_bytes() <= STACK_TEMP_LIMIT => {
                let t = types::c_type(decl.dtype);
                self.line(&format!(
                    "{t} {name}[{elements}] __attribute__((aligned(64)));"
                ));
                self.f.storage[buffer.index()] = Some(Storage::Pointer { name });
                self.stmt(body)
            }
            None => {
                let bytes = elements * decl.dtype.size_bytes();
                let t = types::c_type(decl.dtype);
                self.line(&format!(
                    "{t} *__restrict {name} = ({t} *)lt_rt->alloc({bytes});"
                ));
                self.f.storage[buffer.index()] = Some(Storage::Pointer { name: name.clone() });
                let result = self.stmt(body);
                self.line(&format!("lt_rt->free({name}, {bytes});"));
                result
            }
        };
        self.f.storage[buffer.index()] = previous;
        self.f.indent -= 1;
        self.line("}");
        result
    }

    /// Prints `body` into the void with `buffer` recorded, and makes it a register tile if
    /// every access had constant indices.
    fn plan_tile(
        &mut self,
        buffer: BufferId,
        name: &str,
        elements: usize,
        body: &Stmt,
    ) -> Result<Option<usize>> {
        let recording = self.recordings.len();
        self.recordings.push(Recording::new(elements));
        self.f.storage[buffer.index()] = Some(Storage::Recording(recording));
        let mark = self.f.out.len();
        self.f.dry += 1;
        let result = self.stmt(body);
        self.f.dry -= 1;
        self.f.out.truncate(mark);
        self.f.storage[buffer.index()] = None;
        result?;
        let recorded = std::mem::replace(&mut self.recordings[recording], Recording::new(0));
        let dtype = self.nest.buffer(buffer).dtype;
        Ok(recorded.plan(name, dtype).map(|tile| {
            self.tiles.push(tile);
            self.tiles.len() - 1
        }))
    }

    /// Outlines the loop's body into a static function over `start..end` and calls it through
    /// the runtime's parallel-for; run-time counters and temporaries in memory travel in the
    /// captured words, constant counters are printed into the body.
    fn parallel_loop(&mut self, lp: &Loop) -> Result<()> {
        if self.f.dry > 0 {
            // A dry run records the temporaries of this function, which the outlined body
            // cannot touch (see `accessed_in_parallel_loop`).
            return Ok(());
        }
        let function = format!("{}_parallel_{}", self.options.entry, self.next_function);
        self.next_function += 1;
        let mut words = Vec::new();
        let mut unpack = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for binding in self.f.env.iter().flatten() {
            if let Some(atom) = &binding.atom {
                if seen.insert(atom.code.clone()) {
                    unpack.push(format!(
                        "const lt_i64 {} = lt_captured[{}];",
                        atom.code,
                        words.len()
                    ));
                    words.push(atom.code.clone());
                }
            }
        }
        let mut body_storage = vec![None; self.nest.buffers.len()];
        for (slot, storage) in self.f.storage.iter().enumerate() {
            let role = self.nest.buffers[slot].role;
            match storage {
                Some(Storage::Pointer { name }) if role == BufferRole::Temp => {
                    let t = types::c_type(self.nest.buffers[slot].dtype);
                    unpack.push(format!(
                        "{t} *__restrict {name} = ({t} *)(lt_usize)lt_captured[{}];",
                        words.len()
                    ));
                    words.push(format!("(lt_i64)(lt_usize){name}"));
                    body_storage[slot] = storage.clone();
                }
                // Register tiles are not accessed in the body (or they would not be tiles).
                _ => {}
            }
        }
        let captured = self.temp_name("captured");
        let words_text = if words.is_empty() {
            "0".to_string()
        } else {
            words.join(", ")
        };
        self.line("{");
        self.f.indent += 1;
        self.line(&format!(
            "const lt_i64 {captured}[{}] = {{{words_text}}};",
            words.len().max(1)
        ));
        self.line(&format!(
            "lt_rt->parallel_for(lt_rt, {function}, lt_args, {captured}, {});",
            lp.extent
        ));
        self.f.indent -= 1;
        self.line("}");

        let outlined = FnState {
            out: String::new(),
            indent: 1,
            env: self.f.env.clone(),
            storage: body_storage,
            in_parallel: true,
            unrolled: self.f.unrolled,
            dry: 0,
            next_order: self.f.next_order,
        };
        let caller = std::mem::replace(&mut self.f, outlined);
        let result = self.outlined_body(lp, &unpack);
        let outlined = std::mem::replace(&mut self.f, caller);
        result?;
        self.functions.push(format!(
            "static void {function}(void *const *lt_args, const lt_i64 *lt_captured, lt_i64 lt_start,\n        lt_i64 lt_end, const lt_runtime *lt_rt) {{\n    (void)lt_args;\n    (void)lt_captured;\n    (void)lt_rt;\n{}}}\n",
            outlined.out
        ));
        Ok(())
    }

    fn outlined_body(&mut self, lp: &Loop, unpack: &[String]) -> Result<()> {
        self.bind_params(&lp.body);
        for line in unpack {
            self.line(line);
        }
        let binding = self.counter(lp.var, (0, lp.extent - 1));
        let name = &self.names.vars[lp.var.index()];
        self.line(&format!(
            "for (lt_i64 {name} = lt_start; {name} < lt_end; ++{name}) {{"
        ));
        self.f.indent += 1;
        self.with_var(lp.var, binding, |this| this.stmt(&lp.body))?;
        self.f.indent -= 1;
        self.line("}");
        Ok(())
    }
}

/// `text` in parentheses unless it already is (a condition printed by [`Emitter::cond`]).
fn parenthesised(text: &str) -> String {
    if text.starts_with('(') && text.ends_with(')') && balanced_outer(text) {
        text.to_string()
    } else {
        format!("({text})")
    }
}

/// Whether the first `(` of `text` closes at its last character.
fn balanced_outer(text: &str) -> bool {
    let mut depth = 0;
    for (position, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && position + 1 != text.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}
