//! The verifier: checks that a [`LoopNest`] is well formed before anything consumes it.
//!
//! Back ends trust the nest (the JIT does no bounds checks), so every structural rule of the
//! contract in [`crate::loop_nest`] is checked here: variables are bound by an enclosing loop
//! and only once on a path, buffers are declared and indexed with their rank, temporaries are
//! used only inside their `Alloc`, inputs are never written, extents are positive, vectorized
//! loops contain no loop, parallel loops do not nest, and value expressions agree on dtypes.
//!
//! Bounds are checked with interval arithmetic over the loop variables' ranges `[0, extent)`,
//! tightened by enclosing guards and by the condition of a `Select` around a load. An access
//! that is provably out of bounds on every iteration that reaches it is an error; one that
//! cannot be proven either way is not (the interpreter checks every access at run time) and is
//! listed by [`unproven_accesses`], so lowering can be held to "everything proven".

use crate::dtype::DType;
use crate::expr::{Cond, IndexExpr, IndexOp, ValueExpr, VarId};
use crate::loop_nest::{BufferRole, LoopKind, LoopNest, Stmt};
use crate::print::Printed;
use crate::simplify::{linear_bounds, negate, normalize, tighten_ranges};
use std::collections::HashSet;
use thiserror::Error;

/// A rule of the loop IR contract that a nest breaks.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A variable id outside the nest's variable table.
    #[error("variable id {id} is not declared (the nest has {declared} variables)")]
    UnknownVar {
        /// The id.
        id: u32,
        /// How many variables are declared.
        declared: usize,
    },
    /// A variable read where no enclosing loop binds it.
    #[error("variable `{var}` is used outside any loop that binds it")]
    UnboundVar {
        /// The variable.
        var: String,
    },
    /// A loop binding a variable that an enclosing loop already binds.
    #[error("variable `{var}` is bound by a loop nested in another loop over `{var}`")]
    VarBoundTwice {
        /// The variable.
        var: String,
    },
    /// A buffer id outside the nest's buffer table.
    #[error("buffer id {id} is not declared (the nest has {declared} buffers)")]
    UnknownBuffer {
        /// The id.
        id: u32,
        /// How many buffers are declared.
        declared: usize,
    },
    /// Two buffers or two variables with one name.
    #[error("two {what} are named `{name}`")]
    DuplicateName {
        /// `buffers` or `variables`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A buffer with a dimension smaller than 1, or with no dimensions.
    #[error("buffer `{buffer}` has shape {shape:?}; every dimension must be at least 1")]
    BadShape {
        /// The buffer.
        buffer: String,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// A parameter list entry whose buffer has the wrong role, or a buffer listed twice.
    #[error("buffer `{buffer}` (role {role:?}) cannot be listed in the nest's {list}")]
    BadParam {
        /// The buffer.
        buffer: String,
        /// Its declared role.
        role: BufferRole,
        /// `inputs` or `outputs`.
        list: &'static str,
    },
    /// An access to an input or output buffer that is not a parameter of the nest.
    #[error("buffer `{buffer}` is accessed but is not in the nest's inputs or outputs")]
    NotAParam {
        /// The buffer.
        buffer: String,
    },
    /// An access to a temporary outside the `Alloc` that gives it storage.
    #[error("temporary buffer `{buffer}` is used outside its alloc")]
    TempOutsideAlloc {
        /// The buffer.
        buffer: String,
    },
    /// An `Alloc` of a buffer that is not a temporary, or of a temporary already allocated.
    #[error("buffer `{buffer}` (role {role:?}) cannot be allocated here: {reason}")]
    BadAlloc {
        /// The buffer.
        buffer: String,
        /// Its declared role.
        role: BufferRole,
        /// Why not.
        reason: &'static str,
    },
    /// A store to an input buffer.
    #[error("input buffer `{buffer}` is stored to")]
    StoreToInput {
        /// The buffer.
        buffer: String,
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
    /// A loop with an extent smaller than 1.
    #[error("loop over `{var}` has extent {extent}; extents must be at least 1")]
    BadExtent {
        /// The loop variable.
        var: String,
        /// The extent.
        extent: i64,
    },
    /// A loop inside a vectorized loop.
    #[error("loop over `{inner}` is nested in vectorized loop over `{vectorized}`")]
    LoopInVectorized {
        /// The vectorized loop's variable.
        vectorized: String,
        /// The nested loop's variable.
        inner: String,
    },
    /// A parallel loop inside another parallel loop.
    #[error("parallel loop over `{inner}` is nested in parallel loop over `{outer}`")]
    NestedParallel {
        /// The outer parallel loop's variable.
        outer: String,
        /// The inner parallel loop's variable.
        inner: String,
    },
    /// Operands, or a stored value and its buffer, with different dtypes.
    #[error("dtype mismatch in {context}: {left} vs {right}")]
    DTypeMismatch {
        /// Where, as printed IR.
        context: String,
        /// One dtype.
        left: DType,
        /// The other.
        right: DType,
    },
    /// An operation the IR does not define on its operands' dtype (see
    /// [`crate::expr::unsupported_op`]).
    #[error("unsupported operation in {context}: {message}")]
    UnsupportedOperation {
        /// Where, as printed IR.
        context: String,
        /// What, and on which dtype.
        message: String,
    },
    /// An access whose index is outside the buffer on every iteration that reaches it.
    #[error("{access}: index {dim} is always out of bounds (in [{low}, {high}], extent {extent})")]
    OutOfBounds {
        /// The access, as printed IR.
        access: String,
        /// The dimension.
        dim: usize,
        /// The smallest value the index takes.
        low: i64,
        /// The largest value the index takes.
        high: i64,
        /// The dimension's extent.
        extent: i64,
    },
}

/// Checks every rule of the loop IR contract; see the module documentation.
pub fn verify(nest: &LoopNest) -> Result<(), VerifyError> {
    Verifier::new(nest).run().map(|_| ())
}

/// The accesses of `nest` whose indices could not be proven in bounds, each described with its
/// printed IR and the index range found. Empty for a nest that verifies with every access
/// proven; for a nest that does not verify, lists those found before the first error.
pub fn unproven_accesses(nest: &LoopNest) -> Vec<String> {
    let mut verifier = Verifier::new(nest);
    let _ = verifier.run_inner();
    verifier.unproven
}

/// The inclusive range of values `expr` takes when each variable ranges over `ranges(var)`
/// (inclusive; `None` when unknown). `None` if no finite range is known, e.g. for a division by
/// a range containing zero.
///
/// The expression is normalised first (as the simplifier does), so `(io * 4 + ii) - io * 4` has
/// the range of `ii` rather than the wider one plain interval arithmetic would give.
pub fn index_range(
    expr: &IndexExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> Option<(i64, i64)> {
    match normalize(expr, ranges) {
        Some(sum) => sum.range(ranges),
        None => raw_index_range(expr, ranges),
    }
}

/// Plain interval arithmetic over the expression tree as written.
pub(crate) fn raw_index_range(
    expr: &IndexExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> Option<(i64, i64)> {
    match expr {
        IndexExpr::Const(value) => Some((*value, *value)),
        IndexExpr::Var(var) => ranges(*var).filter(|(low, high)| low <= high),
        IndexExpr::Binary(op, a, b) => {
            let (a_low, a_high) = raw_index_range(a, ranges)?;
            let (b_low, b_high) = raw_index_range(b, ranges)?;
            match op {
                IndexOp::Add => Some((a_low.checked_add(b_low)?, a_high.checked_add(b_high)?)),
                IndexOp::Sub => Some((a_low.checked_sub(b_high)?, a_high.checked_sub(b_low)?)),
                IndexOp::Min => Some((a_low.min(b_low), a_high.min(b_high))),
                IndexOp::Max => Some((a_low.max(b_low), a_high.max(b_high))),
                // Products and quotients are monotone in each operand on a box that (for the
                // divisor) excludes zero, so the extremes are at the corners.
                IndexOp::Mul | IndexOp::FloorDiv => {
                    if *op == IndexOp::FloorDiv && b_low <= 0 && b_high >= 0 {
                        return None;
                    }
                    let corners = [
                        op.apply(a_low, b_low)?,
                        op.apply(a_low, b_high)?,
                        op.apply(a_high, b_low)?,
                        op.apply(a_high, b_high)?,
                    ];
                    Some((*corners.iter().min()?, *corners.iter().max()?))
                }
                IndexOp::FloorMod => {
                    if b_low == b_high && b_low != 0 {
                        let divisor = b_low;
                        let block = IndexOp::FloorDiv.apply(a_low, divisor)?;
                        if block == IndexOp::FloorDiv.apply(a_high, divisor)? {
                            // No wrap-around: the remainder moves with the operand.
                            let low = IndexOp::FloorMod.apply(a_low, divisor)?;
                            let high = IndexOp::FloorMod.apply(a_high, divisor)?;
                            return Some((low.min(high), low.max(high)));
                        }
                    }
                    if b_low > 0 {
                        let high = b_high - 1;
                        // A non-negative operand smaller than the divisor is its own remainder.
                        let high = if a_low >= 0 { high.min(a_high) } else { high };
                        Some((0, high))
                    } else if b_high < 0 {
                        Some((b_low + 1, 0))
                    } else {
                        None
                    }
                }
            }
        }
    }
}

/// A guard's statement about a linear combination: `low <= sum(coefficient * atom) <= high`.
#[derive(Clone, Debug)]
struct Fact {
    terms: Vec<(IndexExpr, i64)>,
    low: i64,
    high: i64,
}

/// What is known at a point of the walk.
#[derive(Clone)]
struct Knowledge {
    /// Inclusive range per variable; `None` for variables not bound here.
    ranges: Vec<Option<(i64, i64)>>,
    /// Facts about linear combinations of several variables (`io * 4 + ii < 10`).
    facts: Vec<Fact>,
    /// Whether some guard on the path can never hold, making this code unreachable.
    dead: bool,
}

impl Knowledge {
    fn lookup(&self) -> impl Fn(VarId) -> Option<(i64, i64)> + '_ {
        |var| self.ranges.get(var.index()).copied().flatten()
    }

    /// Adds what `cond` (or its negation, when `holds` is false) says.
    fn assume(&mut self, cond: &Cond, holds: bool) {
        if !tighten_ranges(cond, holds, &mut self.ranges) {
            self.dead = true;
        }
        self.collect_facts(cond, holds);
    }

    fn collect_facts(&mut self, cond: &Cond, holds: bool) {
        match (cond, holds) {
            (Cond::Index(op, a, b), _) => {
                let op = if holds { *op } else { negate(*op) };
                let difference = {
                    let lookup = self.lookup();
                    normalize(a, &lookup)
                        .and_then(|a| normalize(b, &lookup).and_then(|b| a.minus(&b)))
                };
                let Some(difference) = difference else { return };
                if difference.terms.len() < 2 {
                    return; // Single variables are handled by `tighten_ranges`.
                }
                if let Some((low, high)) = linear_bounds(op, difference.constant) {
                    self.facts.push(Fact {
                        terms: difference.sorted_terms(),
                        low,
                        high,
                    });
                }
            }
            (Cond::And(a, b), true) | (Cond::Or(a, b), false) => {
                self.collect_facts(a, holds);
                self.collect_facts(b, holds);
            }
            (Cond::Not(inner), _) => self.collect_facts(inner, !holds),
            _ => {}
        }
    }

    /// The range of an index, using variable ranges and facts.
    fn range_of(&self, expr: &IndexExpr) -> Option<(i64, i64)> {
        let lookup = self.lookup();
        let Some(sum) = normalize(expr, &lookup) else {
            return raw_index_range(expr, &lookup);
        };
        let mut range = sum.range(&lookup);
        let terms = sum.sorted_terms();
        for fact in &self.facts {
            if fact.terms == terms {
                let low = fact.low.saturating_add(sum.constant);
                let high = fact.high.saturating_add(sum.constant);
                range = Some(match range {
                    Some((old_low, old_high)) => (old_low.max(low), old_high.min(high)),
                    None => (low, high),
                });
            }
        }
        // A one-sided fact alone leaves the other side unbounded: that is no range at all.
        range.filter(|(low, high)| *low != i64::MIN && *high != i64::MAX)
    }
}

struct Verifier<'a> {
    nest: &'a LoopNest,
    /// Whether each variable is bound by an enclosing loop.
    bound: Vec<bool>,
    /// Whether each temporary is inside its `Alloc`.
    live: Vec<bool>,
    /// Whether each buffer is a parameter.
    is_param: Vec<bool>,
    knowledge: Knowledge,
    parallel: Option<VarId>,
    vectorized: Option<VarId>,
    unproven: Vec<String>,
}

/// Where an access occurs, for messages.
#[derive(Clone, Copy)]
enum AccessKind {
    Load,
    Store,
}

impl<'a> Verifier<'a> {
    fn new(nest: &'a LoopNest) -> Verifier<'a> {
        Verifier {
            nest,
            bound: vec![false; nest.vars.len()],
            live: vec![false; nest.buffers.len()],
            is_param: vec![false; nest.buffers.len()],
            knowledge: Knowledge {
                ranges: vec![None; nest.vars.len()],
                facts: Vec::new(),
                dead: false,
            },
            parallel: None,
            vectorized: None,
            unproven: Vec::new(),
        }
    }

    fn run(mut self) -> Result<Vec<String>, VerifyError> {
        self.run_inner()?;
        Ok(self.unproven)
    }

    fn run_inner(&mut self) -> Result<(), VerifyError> {
        self.check_decls()?;
        self.stmt(&self.nest.body)
    }

    fn var_name(&self, var: VarId) -> String {
        match self.nest.vars.get(var.index()) {
            Some(decl) => decl.name.clone(),
            None => format!("v{}", var.0),
        }
    }

    fn check_decls(&mut self) -> Result<(), VerifyError> {
        let nest = self.nest;
        let mut names = HashSet::new();
        for buffer in &nest.buffers {
            if !names.insert(buffer.name.as_str()) {
                return Err(VerifyError::DuplicateName {
                    what: "buffers",
                    name: buffer.name.clone(),
                });
            }
            if buffer.shape.is_empty() || buffer.shape.iter().any(|&dim| dim < 1) {
                return Err(VerifyError::BadShape {
                    buffer: buffer.name.clone(),
                    shape: buffer.shape.clone(),
                });
            }
        }
        let mut names = HashSet::new();
        for var in &nest.vars {
            if !names.insert(var.name.as_str()) {
                return Err(VerifyError::DuplicateName {
                    what: "variables",
                    name: var.name.clone(),
                });
            }
        }
        let lists = [
            ("inputs", &nest.inputs, BufferRole::Input),
            ("outputs", &nest.outputs, BufferRole::Output),
        ];
        for (list, ids, role) in lists {
            for &id in ids {
                let decl = nest
                    .buffers
                    .get(id.index())
                    .ok_or(VerifyError::UnknownBuffer {
                        id: id.0,
                        declared: nest.buffers.len(),
                    })?;
                if decl.role != role || self.is_param[id.index()] {
                    return Err(VerifyError::BadParam {
                        buffer: decl.name.clone(),
                        role: decl.role,
                        list,
                    });
                }
                self.is_param[id.index()] = true;
            }
        }
        Ok(())
    }

    fn check_var(&self, var: VarId) -> Result<(), VerifyError> {
        match self.bound.get(var.index()) {
            None => Err(VerifyError::UnknownVar {
                id: var.0,
                declared: self.nest.vars.len(),
            }),
            Some(false) => Err(VerifyError::UnboundVar {
                var: self.var_name(var),
            }),
            Some(true) => Ok(()),
        }
    }

    fn check_index(&self, expr: &IndexExpr) -> Result<(), VerifyError> {
        let mut result = Ok(());
        expr.for_each_var(&mut |var| {
            if result.is_ok() {
                result = self.check_var(var);
            }
        });
        result
    }

    fn stmt(&mut self, stmt: &Stmt) -> Result<(), VerifyError> {
        match stmt {
            Stmt::For(for_loop) => {
                let var = for_loop.var;
                if var.index() >= self.bound.len() {
                    return Err(VerifyError::UnknownVar {
                        id: var.0,
                        declared: self.nest.vars.len(),
                    });
                }
                if self.bound[var.index()] {
                    return Err(VerifyError::VarBoundTwice {
                        var: self.var_name(var),
                    });
                }
                if for_loop.extent < 1 {
                    return Err(VerifyError::BadExtent {
                        var: self.var_name(var),
                        extent: for_loop.extent,
                    });
                }
                if let Some(vectorized) = self.vectorized {
                    return Err(VerifyError::LoopInVectorized {
                        vectorized: self.var_name(vectorized),
                        inner: self.var_name(var),
                    });
                }
                let saved = (self.parallel, self.vectorized);
                match for_loop.kind {
                    LoopKind::Parallel => {
                        if let Some(outer) = self.parallel {
                            return Err(VerifyError::NestedParallel {
                                outer: self.var_name(outer),
                                inner: self.var_name(var),
                            });
                        }
                        self.parallel = Some(var);
                    }
                    LoopKind::Vectorized => self.vectorized = Some(var),
                    LoopKind::Serial | LoopKind::Unrolled => {}
                }
                self.bound[var.index()] = true;
                let saved_range = self.knowledge.ranges[var.index()];
                self.knowledge.ranges[var.index()] = Some((0, for_loop.extent - 1));
                let result = self.stmt(&for_loop.body);
                self.knowledge.ranges[var.index()] = saved_range;
                self.bound[var.index()] = false;
                (self.parallel, self.vectorized) = saved;
                result
            }
            Stmt::Seq(stmts) => stmts.iter().try_for_each(|stmt| self.stmt(stmt)),
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                let printed = Printed::new(self.nest, stmt);
                let decl = self.access(AccessKind::Store, &printed, *buffer, indices)?;
                if decl.role == BufferRole::Input {
                    return Err(VerifyError::StoreToInput {
                        buffer: decl.name.clone(),
                    });
                }
                let dtype = self.value(value)?;
                if dtype != decl.dtype {
                    return Err(VerifyError::DTypeMismatch {
                        context: format!("store to `{}`", decl.name),
                        left: decl.dtype,
                        right: dtype,
                    });
                }
                Ok(())
            }
            Stmt::If { cond, then } => {
                self.cond(cond)?;
                let saved = self.knowledge.clone();
                self.knowledge.assume(cond, true);
                let result = self.stmt(then);
                self.knowledge = saved;
                result
            }
            Stmt::Alloc { buffer, body } => {
                let decl =
                    self.nest
                        .buffers
                        .get(buffer.index())
                        .ok_or(VerifyError::UnknownBuffer {
                            id: buffer.0,
                            declared: self.nest.buffers.len(),
                        })?;
                let reason = if decl.role != BufferRole::Temp {
                    Some("only temporaries are allocated")
                } else if self.live[buffer.index()] {
                    Some("it is already allocated by an enclosing alloc")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(VerifyError::BadAlloc {
                        buffer: decl.name.clone(),
                        role: decl.role,
                        reason,
                    });
                }
                self.live[buffer.index()] = true;
                let result = self.stmt(body);
                self.live[buffer.index()] = false;
                result
            }
        }
    }

    /// Checks an access's buffer, rank, variables and bounds; returns the buffer's declaration.
    fn access(
        &mut self,
        kind: AccessKind,
        stmt_or_load: &dyn std::fmt::Display,
        buffer: crate::expr::BufferId,
        indices: &[IndexExpr],
    ) -> Result<&'a crate::loop_nest::BufferDecl, VerifyError> {
        let nest = self.nest;
        let decl = nest
            .buffers
            .get(buffer.index())
            .ok_or(VerifyError::UnknownBuffer {
                id: buffer.0,
                declared: nest.buffers.len(),
            })?;
        match decl.role {
            BufferRole::Temp if !self.live[buffer.index()] => {
                return Err(VerifyError::TempOutsideAlloc {
                    buffer: decl.name.clone(),
                })
            }
            BufferRole::Input | BufferRole::Output if !self.is_param[buffer.index()] => {
                return Err(VerifyError::NotAParam {
                    buffer: decl.name.clone(),
                })
            }
            _ => {}
        }
        if indices.len() != decl.shape.len() {
            return Err(VerifyError::RankMismatch {
                buffer: decl.name.clone(),
                rank: decl.shape.len(),
                indices: indices.len(),
            });
        }
        for index in indices {
            self.check_index(index)?;
        }
        if self.knowledge.dead {
            return Ok(decl);
        }
        let what = match kind {
            AccessKind::Load => "load",
            AccessKind::Store => "store",
        };
        for (dim, (index, &extent)) in indices.iter().zip(&decl.shape).enumerate() {
            match self.knowledge.range_of(index) {
                // Guards that contradict each other: no iteration reaches this access.
                Some((low, high)) if low > high => {}
                Some((low, high)) if low >= 0 && high < extent => {}
                Some((low, high)) if high < 0 || low >= extent => {
                    return Err(VerifyError::OutOfBounds {
                        access: format!("{what} {stmt_or_load}"),
                        dim,
                        low,
                        high,
                        extent,
                    });
                }
                range => {
                    let range = match range {
                        Some((low, high)) => format!("in [{low}, {high}]"),
                        None => "unbounded".to_string(),
                    };
                    self.unproven.push(format!(
                        "{what} {stmt_or_load}: index {dim} {range}, extent {extent}"
                    ));
                }
            }
        }
        Ok(decl)
    }

    fn cond(&mut self, cond: &Cond) -> Result<(), VerifyError> {
        match cond {
            Cond::Const(_) => Ok(()),
            Cond::Index(_, a, b) => {
                self.check_index(a)?;
                self.check_index(b)
            }
            Cond::Value(op, a, b) => {
                let (left, right) = (self.value(a)?, self.value(b)?);
                if left != right {
                    return Err(VerifyError::DTypeMismatch {
                        context: format!(
                            "comparison `{}`",
                            Printed::new(self.nest, &Cond::Value(*op, a.clone(), b.clone()))
                        ),
                        left,
                        right,
                    });
                }
                Ok(())
            }
            // Both operands are evaluated (there is no short circuit), so neither may rely on
            // the other for its bounds.
            Cond::And(a, b) | Cond::Or(a, b) => {
                self.cond(a)?;
                self.cond(b)
            }
            Cond::Not(inner) => self.cond(inner),
        }
    }

    fn value(&mut self, value: &ValueExpr) -> Result<DType, VerifyError> {
        let nest = self.nest;
        let same = |context: &ValueExpr, left: DType, right: DType| {
            if left == right {
                Ok(left)
            } else {
                Err(VerifyError::DTypeMismatch {
                    context: format!("`{}`", Printed::new(nest, context)),
                    left,
                    right,
                })
            }
        };
        let supported = |operand: DType, result: DType| match crate::expr::unsupported_op(
            value, operand, result,
        ) {
            None => Ok(result),
            Some(message) => Err(VerifyError::UnsupportedOperation {
                context: format!("`{}`", Printed::new(nest, value)),
                message,
            }),
        };
        match value {
            ValueExpr::Const(scalar) => Ok(scalar.dtype),
            ValueExpr::Load(load) => {
                let printed = Printed::new(nest, value);
                let decl = self.access(AccessKind::Load, &printed, load.buffer, &load.indices)?;
                Ok(decl.dtype)
            }
            ValueExpr::Binary(_, a, b) => {
                let (left, right) = (self.value(a)?, self.value(b)?);
                let operand = same(value, left, right)?;
                supported(operand, operand)
            }
            ValueExpr::Unary(_, a) => {
                let operand = self.value(a)?;
                supported(operand, operand)
            }
            ValueExpr::Fma(a, b, c) => {
                let (first, second, third) = (self.value(a)?, self.value(b)?, self.value(c)?);
                same(value, first, second)?;
                same(value, first, third)
            }
            ValueExpr::Select(cond, then, otherwise) => {
                self.cond(cond)?;
                let saved = self.knowledge.clone();
                self.knowledge.assume(cond, true);
                let left = self.value(then);
                self.knowledge = saved.clone();
                self.knowledge.assume(cond, false);
                let right = self.value(otherwise);
                self.knowledge = saved;
                same(value, left?, right?)
            }
            ValueExpr::Cast(dtype, a) => {
                let from = self.value(a)?;
                supported(from, *dtype)
            }
            ValueExpr::FromIndex(dtype, index) => {
                self.check_index(index)?;
                Ok(*dtype)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Scalar;
    use crate::expr::BufferId;
    use crate::test_nests::*;

    fn ranges_of(pairs: &[(VarId, (i64, i64))]) -> impl Fn(VarId) -> Option<(i64, i64)> + '_ {
        |var| {
            pairs
                .iter()
                .find(|(v, _)| *v == var)
                .map(|(_, range)| *range)
        }
    }

    #[test]
    fn sample_nests_verify_with_every_access_proven() {
        for nest in [matmul(4, 5, 6), scaled_with_tail(10), tiled_matmul(3, 8, 2)] {
            assert_eq!(verify(&nest), Ok(()), "{nest}");
            assert_eq!(unproven_accesses(&nest), Vec::<String>::new(), "{nest}");
        }
    }

    #[test]
    fn index_range_uses_normalised_form() {
        let (io, ii) = (VarId(0), VarId(1));
        let pairs = [(io, (0, 7)), (ii, (0, 3))];
        let ranges = ranges_of(&pairs);
        assert_eq!(index_range(&(v(io) * 4 + v(ii)), &ranges), Some((0, 31)));
        // Plain interval arithmetic would give [-28, 31] here.
        assert_eq!(
            index_range(&(v(io) * 4 + v(ii) - v(io) * 4), &ranges),
            Some((0, 3))
        );
        assert_eq!(
            index_range(&(v(io) * 4 + v(ii)).floor_div(4), &ranges),
            Some((0, 7))
        );
        assert_eq!(
            index_range(&(v(io) * 3 + 1).floor_mod(4), &ranges),
            Some((0, 3))
        );
        assert_eq!(
            index_range(&(v(ii) + 1).floor_mod(8), &ranges),
            Some((1, 4))
        );
        assert_eq!(
            index_range(&(v(io) - 2).min(v(ii)).max(-1), &ranges),
            Some((-1, 3))
        );
        assert_eq!(index_range(&v(io).floor_div(v(ii)), &ranges), None);
        assert_eq!(index_range(&(v(io) + VarId(9)), &ranges), None);
        assert_eq!(
            raw_index_range(&(v(io) * 4 + v(ii) - v(io) * 4), &ranges),
            Some((-28, 31))
        );
    }

    #[test]
    fn select_condition_proves_padded_loads() {
        let mut b = Builder::new("pad");
        let (i, r) = (b.var("i"), b.var("r"));
        let a = b.buffer("A", &[6], BufferRole::Input);
        let out = b.buffer("B", &[6], BufferRole::Output);
        let shifted = v(i) + v(r) - 1;
        let nest = b.finish(for_(
            i,
            6,
            for_(
                r,
                3,
                store(
                    out,
                    vec![v(i)],
                    ValueExpr::select(
                        shifted.clone().ge(0).and(shifted.clone().lt(6)),
                        load(a, vec![shifted.clone()]),
                        ValueExpr::f32(0.0),
                    ),
                ),
            ),
        ));
        assert_eq!(verify(&nest), Ok(()));
        assert_eq!(unproven_accesses(&nest), Vec::<String>::new());
    }

    #[test]
    fn accesses_that_cannot_be_proven_are_listed_not_rejected() {
        let mut b = Builder::new("gather");
        let (i, j) = (b.var("i"), b.var("j"));
        let a = b.buffer("A", &[10], BufferRole::Input);
        let out = b.buffer("B", &[5, 5], BufferRole::Output);
        let nest = b.finish(for_(
            i,
            5,
            for_(
                j,
                5,
                store(out, vec![v(i), v(j)], load(a, vec![v(i) * v(j)])),
            ),
        ));
        assert_eq!(verify(&nest), Ok(()));
        assert_eq!(
            unproven_accesses(&nest),
            vec!["load A[i * j]: index 0 in [0, 16], extent 10".to_string()]
        );
        // With room for every product, interval arithmetic proves it.
        let mut roomy = nest.clone();
        roomy.buffers[a.index()].shape = vec![17];
        assert_eq!(unproven_accesses(&roomy), Vec::<String>::new());
    }

    #[test]
    fn provably_out_of_bounds_access_is_an_error() {
        let mut b = Builder::new("shift");
        let i = b.var("i");
        let a = b.buffer("A", &[4], BufferRole::Input);
        let out = b.buffer("B", &[4], BufferRole::Output);
        let nest = b.finish(for_(i, 4, store(out, vec![v(i)], load(a, vec![v(i) + 4]))));
        let err = verify(&nest).unwrap_err();
        assert_eq!(
            err.to_string(),
            "load A[i + 4]: index 0 is always out of bounds (in [4, 7], extent 4)"
        );
        // The same access behind a guard that can never hold is dead code, not an error.
        let guarded = LoopNest {
            body: for_(
                i,
                4,
                if_(v(i).ge(4), store(out, vec![v(i)], load(a, vec![v(i) + 4]))),
            ),
            ..nest
        };
        assert_eq!(verify(&guarded), Ok(()));
    }

    #[test]
    fn tail_guard_proves_split_accesses() {
        let nest = scaled_with_tail(10);
        assert_eq!(unproven_accesses(&nest), Vec::<String>::new());
        // Without its guard the tail reads past the end on some iterations only.
        let Stmt::For(outer) = &nest.body else {
            panic!("scaled_with_tail starts with a loop")
        };
        let Stmt::For(inner) = &outer.body else {
            panic!("and nests another")
        };
        let Stmt::If { then, .. } = &inner.body else {
            panic!("around a guard")
        };
        let mut unguarded = nest.clone();
        unguarded.body = for_(
            outer.var,
            outer.extent,
            loop_(inner.kind, inner.var, inner.extent, (**then).clone()),
        );
        assert_eq!(verify(&unguarded), Ok(()));
        assert_eq!(unproven_accesses(&unguarded).len(), 2);
    }

    #[test]
    fn structural_errors_name_the_offender() {
        let mut b = Builder::new("bad");
        let (i, j) = (b.var("i"), b.var("j"));
        let a = b.buffer("A", &[4], BufferRole::Input);
        let out = b.buffer("B", &[4], BufferRole::Output);
        let temp = b.buffer("T", &[4], BufferRole::Temp);
        let base = b.finish(Stmt::nop());
        let check = |body: Stmt| {
            verify(&LoopNest {
                body,
                ..base.clone()
            })
            .map_err(|err| err.to_string())
        };
        let one = || ValueExpr::f32(1.0);
        let cases = [
            (
                for_(i, 4, store(out, vec![v(j)], one())),
                "variable `j` is used outside any loop that binds it",
            ),
            (
                for_(i, 4, for_(i, 4, store(out, vec![v(i)], one()))),
                "variable `i` is bound by a loop nested in another loop over `i`",
            ),
            (
                store(BufferId(7), vec![], one()),
                "buffer id 7 is not declared (the nest has 3 buffers)",
            ),
            (
                for_(i, 4, store(out, vec![v(i), v(i)], one())),
                "buffer `B` has rank 1 but is accessed with 2 indices",
            ),
            (
                for_(i, 4, store(temp, vec![v(i)], one())),
                "temporary buffer `T` is used outside its alloc",
            ),
            (
                alloc(temp, alloc(temp, Stmt::nop())),
                "buffer `T` (role Temp) cannot be allocated here: it is already allocated by an \
                 enclosing alloc",
            ),
            (
                for_(i, 4, store(a, vec![v(i)], one())),
                "input buffer `A` is stored to",
            ),
            (
                for_(i, 0, store(out, vec![v(i)], one())),
                "loop over `i` has extent 0; extents must be at least 1",
            ),
            (
                loop_(
                    LoopKind::Vectorized,
                    i,
                    4,
                    for_(j, 1, store(out, vec![v(i)], one())),
                ),
                "loop over `j` is nested in vectorized loop over `i`",
            ),
            (
                loop_(
                    LoopKind::Parallel,
                    i,
                    2,
                    loop_(LoopKind::Parallel, j, 2, store(out, vec![v(i)], one())),
                ),
                "parallel loop over `j` is nested in parallel loop over `i`",
            ),
            (
                for_(
                    i,
                    4,
                    store(
                        out,
                        vec![v(i)],
                        load(a, vec![v(i)])
                            + ValueExpr::Const(Scalar {
                                dtype: DType::F64,
                                value: 1.0,
                            }),
                    ),
                ),
                "dtype mismatch in `A[i] + 1.0f64`: f32 vs f64",
            ),
            (
                for_(
                    i,
                    4,
                    store(out, vec![v(i)], ValueExpr::FromIndex(DType::I32, v(i))),
                ),
                "dtype mismatch in store to `B`: f32 vs i32",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(check(body), Err(message.to_string()));
        }
    }

    #[test]
    fn declarations_are_checked() {
        let mut nest = matmul(2, 2, 2);
        nest.buffers[0].shape = vec![2, 0];
        assert_eq!(
            verify(&nest).unwrap_err().to_string(),
            "buffer `A` has shape [2, 0]; every dimension must be at least 1"
        );
        let mut nest = matmul(2, 2, 2);
        nest.vars[1].name = "i".into();
        assert_eq!(
            verify(&nest).unwrap_err().to_string(),
            "two variables are named `i`"
        );
        let mut nest = matmul(2, 2, 2);
        nest.outputs.push(nest.inputs[0]);
        assert_eq!(
            verify(&nest).unwrap_err().to_string(),
            "buffer `A` (role Input) cannot be listed in the nest's outputs"
        );
        let mut nest = matmul(2, 2, 2);
        nest.inputs.pop();
        assert_eq!(
            verify(&nest).unwrap_err().to_string(),
            "buffer `B` is accessed but is not in the nest's inputs or outputs"
        );
    }
}
