//! The simplifier: makes lowered nests small and canonical without changing what they compute.
//!
//! Splitting and fusing axes leave index arithmetic such as `(io * 4 + ii) / 4` and guards that
//! can never fail; back ends and the cost model should not pay for them, and printed nests should
//! be readable. The simplifier works in two layers:
//!
//! - Index expressions are normalised to a sum of `coefficient * atom` terms plus a constant,
//!   where an atom is a variable or a non-linear node (`/`, `%`, `min`, `max`, a product of two
//!   non-constants). Terms are merged and sorted, so equal expressions come out identical.
//!   Floor division and modulo by a positive constant split off the terms whose coefficient the
//!   divisor divides (an identity that holds for every value), and vanish entirely when range
//!   analysis proves the remainder lies in `[0, divisor)`.
//! - Statements: loops of extent 1 disappear (their variable becomes the constant 0), guards
//!   proven true or false by the ranges of enclosing loop variables are dropped or pruned with
//!   their body, empty statements vanish and nested sequences are flattened.
//!
//! **Invariant:** simplification preserves the interpreter's result bit for bit. Value
//! expressions are therefore only folded where the folded constant is exactly what the
//! interpreter would have computed (`x * 1.0`, constant operations whose result is exact in the
//! element type, selects with a constant condition).

use crate::dtype::{DType, Scalar};
use crate::expr::{BinaryOp, CmpOp, Cond, IndexExpr, IndexOp, ValueExpr, VarId};
use crate::loop_nest::{Loop, LoopNest, Stmt};
use crate::verify::raw_index_range;
use std::cmp::Ordering;

/// Simplifies every expression and statement of `nest`; see the module documentation.
pub fn simplify(mut nest: LoopNest) -> LoopNest {
    let body = std::mem::replace(&mut nest.body, Stmt::nop());
    let mut simplifier = Simplifier {
        ranges: vec![None; nest.vars.len()],
    };
    nest.body = simplifier.stmt(body);
    nest
}

/// Simplifies an index expression knowing nothing about its variables.
pub fn simplify_index(expr: &IndexExpr) -> IndexExpr {
    simplify_index_in(expr, &|_| None)
}

/// Simplifies an index expression whose variables lie in the inclusive ranges given by `ranges`
/// (`None` for an unknown range). A variable whose range is a single point becomes a constant.
pub fn simplify_index_in(
    expr: &IndexExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> IndexExpr {
    match normalize(expr, ranges) {
        Some(sum) => sum.into_expr(),
        // Normalisation only fails on i64 overflow of coefficients; keep the expression as
        // written then, but still replace pinned variables so removed loops leave no free vars.
        None => expr.substitute(&|var| match ranges(var) {
            Some((low, high)) if low == high => Some(IndexExpr::Const(low)),
            _ => None,
        }),
    }
}

/// A normalised index expression: `constant + sum(coefficient * atom)`.
///
/// Atoms are variables or non-linear nodes whose children are already normalised; no two terms
/// have equal atoms and no coefficient is zero.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sum {
    /// The terms, in no particular order until [`Sum::into_expr`] or [`Sum::sorted_terms`].
    pub(crate) terms: Vec<(IndexExpr, i64)>,
    /// The constant part.
    pub(crate) constant: i64,
}

impl Sum {
    fn constant(value: i64) -> Sum {
        Sum {
            terms: Vec::new(),
            constant: value,
        }
    }

    fn atom(atom: IndexExpr) -> Sum {
        match atom {
            IndexExpr::Const(value) => Sum::constant(value),
            atom => Sum {
                terms: vec![(atom, 1)],
                constant: 0,
            },
        }
    }

    fn as_const(&self) -> Option<i64> {
        self.terms.is_empty().then_some(self.constant)
    }

    /// `self + scale * other`, `None` on overflow.
    fn plus_scaled(mut self, other: &Sum, scale: i64) -> Option<Sum> {
        self.constant = self
            .constant
            .checked_add(other.constant.checked_mul(scale)?)?;
        for (atom, coefficient) in &other.terms {
            let add = coefficient.checked_mul(scale)?;
            match self.terms.iter_mut().find(|(existing, _)| existing == atom) {
                Some((_, existing)) => *existing = existing.checked_add(add)?,
                None => self.terms.push((atom.clone(), add)),
            }
        }
        self.terms.retain(|(_, coefficient)| *coefficient != 0);
        Some(self)
    }

    /// `self - other`, `None` on overflow.
    pub(crate) fn minus(self, other: &Sum) -> Option<Sum> {
        self.plus_scaled(other, -1)
    }

    fn scaled(&self, scale: i64) -> Option<Sum> {
        Sum::constant(0).plus_scaled(self, scale)
    }

    /// The terms in canonical order (see [`compare_index`]).
    pub(crate) fn sorted_terms(&self) -> Vec<(IndexExpr, i64)> {
        let mut terms = self.terms.clone();
        terms.sort_by(|a, b| compare_index(&a.0, &b.0).then(a.1.cmp(&b.1)));
        terms
    }

    /// The inclusive range of the sum, from the ranges of its atoms.
    pub(crate) fn range(&self, ranges: &dyn Fn(VarId) -> Option<(i64, i64)>) -> Option<(i64, i64)> {
        let mut total = (self.constant, self.constant);
        for (atom, coefficient) in &self.terms {
            let (low, high) = raw_index_range(atom, ranges)?;
            let (a, b) = (
                low.checked_mul(*coefficient)?,
                high.checked_mul(*coefficient)?,
            );
            total = (
                total.0.checked_add(a.min(b))?,
                total.1.checked_add(a.max(b))?,
            );
        }
        Some(total)
    }

    /// Builds the canonical expression: positive terms, then subtracted negative terms, each
    /// group in canonical atom order, written `atom * coefficient`, then the constant.
    pub(crate) fn into_expr(self) -> IndexExpr {
        let terms = self.sorted_terms();
        let positive = terms.iter().filter(|(_, c)| *c > 0);
        let negative = terms.iter().filter(|(_, c)| *c < 0);
        let scaled = |atom: &IndexExpr, coefficient: i64| {
            if coefficient == 1 {
                atom.clone()
            } else {
                atom.clone() * coefficient
            }
        };
        let mut constant = self.constant;
        let mut expr: Option<IndexExpr> = None;
        for (atom, coefficient) in positive {
            let term = scaled(atom, *coefficient);
            expr = Some(match expr {
                None => term,
                Some(expr) => expr + term,
            });
        }
        for (atom, coefficient) in negative {
            expr = Some(match expr {
                // `10 - i` reads better than `i * -1 + 10`.
                None if constant > 0 => {
                    let start = IndexExpr::Const(constant);
                    constant = 0;
                    match coefficient.checked_neg() {
                        Some(magnitude) => start - scaled(atom, magnitude),
                        None => start + scaled(atom, *coefficient),
                    }
                }
                None => scaled(atom, *coefficient),
                Some(expr) => match coefficient.checked_neg() {
                    Some(magnitude) => expr - scaled(atom, magnitude),
                    None => expr + scaled(atom, *coefficient),
                },
            });
        }
        match expr {
            None => IndexExpr::Const(constant),
            Some(expr) if constant > 0 => expr + constant,
            Some(expr) if constant < 0 && constant != i64::MIN => expr - (-constant),
            Some(expr) if constant < 0 => expr + constant,
            Some(expr) => expr,
        }
    }
}

/// A total order on index expressions used to sort terms and commutative operands: constants,
/// then variables by id, then operations by operator and operands.
pub(crate) fn compare_index(a: &IndexExpr, b: &IndexExpr) -> Ordering {
    fn rank(expr: &IndexExpr) -> u8 {
        match expr {
            IndexExpr::Const(_) => 0,
            IndexExpr::Var(_) => 1,
            IndexExpr::Binary(..) => 2,
        }
    }
    fn op_rank(op: IndexOp) -> u8 {
        match op {
            IndexOp::Add => 0,
            IndexOp::Sub => 1,
            IndexOp::Mul => 2,
            IndexOp::FloorDiv => 3,
            IndexOp::FloorMod => 4,
            IndexOp::Min => 5,
            IndexOp::Max => 6,
        }
    }
    match (a, b) {
        (IndexExpr::Const(x), IndexExpr::Const(y)) => x.cmp(y),
        (IndexExpr::Var(x), IndexExpr::Var(y)) => x.cmp(y),
        (IndexExpr::Binary(op_a, a1, a2), IndexExpr::Binary(op_b, b1, b2)) => op_rank(*op_a)
            .cmp(&op_rank(*op_b))
            .then_with(|| compare_index(a1, b1))
            .then_with(|| compare_index(a2, b2)),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Normalises `expr` to a [`Sum`], applying every index rule; `None` on i64 overflow.
pub(crate) fn normalize(
    expr: &IndexExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> Option<Sum> {
    match expr {
        IndexExpr::Const(value) => Some(Sum::constant(*value)),
        IndexExpr::Var(var) => Some(match ranges(*var) {
            Some((low, high)) if low == high => Sum::constant(low),
            _ => Sum::atom(expr.clone()),
        }),
        IndexExpr::Binary(op, a, b) => {
            let a = normalize(a, ranges)?;
            let b = normalize(b, ranges)?;
            if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
                // Division by zero stays in the nest so that running it still fails.
                if let Some(value) = op.apply(x, y) {
                    return Some(Sum::constant(value));
                }
            }
            match op {
                IndexOp::Add => a.plus_scaled(&b, 1),
                IndexOp::Sub => a.plus_scaled(&b, -1),
                IndexOp::Mul => match (a.as_const(), b.as_const()) {
                    (_, Some(factor)) => a.scaled(factor),
                    (Some(factor), _) => b.scaled(factor),
                    _ => Some(commutative_atom(IndexOp::Mul, a, b)),
                },
                IndexOp::FloorDiv => match b.as_const() {
                    Some(divisor) if divisor > 0 => floor_div(a, divisor, ranges),
                    _ => Some(Sum::atom(IndexExpr::binary(
                        IndexOp::FloorDiv,
                        a.into_expr(),
                        b.into_expr(),
                    ))),
                },
                IndexOp::FloorMod => match b.as_const() {
                    Some(divisor) if divisor > 0 => floor_mod(a, divisor, ranges),
                    _ => Some(Sum::atom(IndexExpr::binary(
                        IndexOp::FloorMod,
                        a.into_expr(),
                        b.into_expr(),
                    ))),
                },
                IndexOp::Min | IndexOp::Max => {
                    let difference = a.clone().plus_scaled(&b, -1)?;
                    let a_is_smaller = match difference.range(ranges) {
                        Some((_, high)) if high <= 0 => Some(true),
                        Some((low, _)) if low >= 0 => Some(false),
                        _ => None,
                    };
                    match (a_is_smaller, op) {
                        (Some(true), IndexOp::Min) | (Some(false), IndexOp::Max) => Some(a),
                        (Some(_), _) => Some(b),
                        (None, _) => Some(commutative_atom(*op, a, b)),
                    }
                }
            }
        }
    }
}

/// An atom `a op b` with its operands in canonical order.
fn commutative_atom(op: IndexOp, a: Sum, b: Sum) -> Sum {
    let (mut a, mut b) = (a.into_expr(), b.into_expr());
    if compare_index(&a, &b) == Ordering::Greater {
        std::mem::swap(&mut a, &mut b);
    }
    Sum::atom(IndexExpr::binary(op, a, b))
}

/// Splits `sum` into `divisor * quotient + remainder`, where the quotient collects the terms
/// whose coefficient `divisor` divides and the remainder keeps the rest and `constant mod
/// divisor` (so it is as small as the terms allow).
fn split_by(sum: Sum, divisor: i64) -> (Sum, Sum) {
    let mut quotient = Sum::constant(sum.constant.div_euclid(divisor));
    let mut remainder = Sum::constant(sum.constant.rem_euclid(divisor));
    for (atom, coefficient) in sum.terms {
        if coefficient % divisor == 0 {
            quotient.terms.push((atom, coefficient / divisor));
        } else {
            remainder.terms.push((atom, coefficient));
        }
    }
    (quotient, remainder)
}

/// `floor(sum / divisor)` for `divisor > 0`, using `floor((d*q + r) / d) == q + floor(r / d)`.
fn floor_div(sum: Sum, divisor: i64, ranges: &dyn Fn(VarId) -> Option<(i64, i64)>) -> Option<Sum> {
    let (quotient, remainder) = split_by(sum, divisor);
    if let Some((low, high)) = remainder.range(ranges) {
        if low.div_euclid(divisor) == high.div_euclid(divisor) {
            return quotient.plus_scaled(&Sum::constant(low.div_euclid(divisor)), 1);
        }
    }
    let remainder = remainder.into_expr();
    // `floor(floor(x / a) / b) == floor(x / (a * b))` for positive `a` and `b`.
    let atom = match &remainder {
        IndexExpr::Binary(IndexOp::FloorDiv, inner, inner_divisor) => {
            match inner_divisor
                .as_const()
                .and_then(|a| a.checked_mul(divisor))
            {
                Some(combined) if combined > 0 => {
                    IndexExpr::binary(IndexOp::FloorDiv, (**inner).clone(), combined.into())
                }
                _ => remainder.floor_div(divisor),
            }
        }
        _ => remainder.floor_div(divisor),
    };
    quotient.plus_scaled(&Sum::atom(atom), 1)
}

/// `sum mod divisor` for `divisor > 0`, using `(d*q + r) mod d == r mod d`.
fn floor_mod(sum: Sum, divisor: i64, ranges: &dyn Fn(VarId) -> Option<(i64, i64)>) -> Option<Sum> {
    let (_, mut remainder) = split_by(sum, divisor);
    // Coefficients only matter modulo the divisor: `(-i) % 2` is `i % 2`, `(i * 5) % 4` is
    // `i % 4`. Take the smaller of the two representatives so `(-i) % 4` stays as written.
    for (_, coefficient) in &mut remainder.terms {
        let reduced = coefficient.rem_euclid(divisor);
        if i128::from(reduced) <= i128::from(*coefficient).abs() {
            *coefficient = reduced;
        }
    }
    if let Some((low, high)) = remainder.range(ranges) {
        let block = low.div_euclid(divisor);
        if block == high.div_euclid(divisor) {
            return remainder.plus_scaled(&Sum::constant(block.checked_mul(divisor)?), -1);
        }
    }
    let remainder = remainder.into_expr();
    // `(x mod a) mod b == x mod b` when `b` divides `a`.
    let atom = match &remainder {
        IndexExpr::Binary(IndexOp::FloorMod, inner, inner_divisor)
            if inner_divisor
                .as_const()
                .is_some_and(|a| a > 0 && a % divisor == 0) =>
        {
            (**inner).clone().floor_mod(divisor)
        }
        _ => remainder.floor_mod(divisor),
    };
    Some(Sum::atom(atom))
}

/// Decides an index comparison from ranges: `Some(true)` if it holds for every value of its
/// variables, `Some(false)` if it holds for none, `None` if that depends.
pub(crate) fn decide_index_cmp(
    op: CmpOp,
    a: &IndexExpr,
    b: &IndexExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> Option<bool> {
    let difference = normalize(a, ranges)?.plus_scaled(&normalize(b, ranges)?, -1)?;
    let (low, high) = difference.range(ranges)?;
    // Compare `a - b` in [low, high] with zero.
    op.decide_against_zero(low, high)
}

/// Tightens `ranges` with what `cond` (or its negation, when `holds` is false) says about
/// single variables: `i < 10`, `i * 4 >= 8`, `10 > i + 2` and conjunctions of them. Returns
/// `false` if some variable's range became empty, i.e. the condition can never hold here.
pub(crate) fn tighten_ranges(cond: &Cond, holds: bool, ranges: &mut [Option<(i64, i64)>]) -> bool {
    match (cond, holds) {
        (Cond::Index(op, a, b), _) => {
            let op = if holds { *op } else { negate(*op) };
            let lookup = |var: VarId| ranges.get(var.index()).copied().flatten();
            let Some(difference) = normalize(a, &lookup)
                .and_then(|a| normalize(b, &lookup).and_then(|b| a.plus_scaled(&b, -1)))
            else {
                return true;
            };
            let (low, high) = match linear_bounds(op, difference.constant) {
                Some(bounds) => bounds,
                None => return true,
            };
            match difference.terms.as_slice() {
                [] => low <= 0 && 0 <= high,
                [(IndexExpr::Var(var), coefficient)] => {
                    let (low, high) = divide_bounds(low, high, *coefficient);
                    let Some(slot) = ranges.get_mut(var.index()) else {
                        return true;
                    };
                    let (old_low, old_high) = slot.unwrap_or((i64::MIN, i64::MAX));
                    let new = (old_low.max(low), old_high.min(high));
                    *slot = Some(new);
                    new.0 <= new.1
                }
                terms => tighten_sum(terms, (low, high), ranges),
            }
        }
        (Cond::And(a, b), true) | (Cond::Or(a, b), false) => {
            // Both parts must be applied even if the first proves the code dead.
            let first = tighten_ranges(a, holds, ranges);
            let second = tighten_ranges(b, holds, ranges);
            first && second
        }
        (Cond::Not(inner), _) => tighten_ranges(inner, !holds, ranges),
        (Cond::Const(value), _) => *value == holds,
        _ => true,
    }
}

/// Tightens every variable of `low <= sum(coefficient * var) <= high` by what the other terms
/// can reach: a tail guard `6 * io + ii <= 3` with `ii` in `[0, 5]` bounds `io` by 0, which an
/// access indexed by `io` alone (a row panel, `i / 6`) needs to be proven in bounds. A sum with
/// an atom that is not a variable, or a variable with no known range, tightens nothing. Returns
/// false when some variable's range becomes empty (the code under the guard is dead).
fn tighten_sum(
    terms: &[(IndexExpr, i64)],
    (low, high): (i64, i64),
    ranges: &mut [Option<(i64, i64)>],
) -> bool {
    let mut parts = Vec::with_capacity(terms.len());
    for (atom, coefficient) in terms {
        let IndexExpr::Var(var) = atom else {
            return true;
        };
        let Some(Some((var_low, var_high))) = ranges.get(var.index()).copied() else {
            return true;
        };
        let (Some(a), Some(b)) = (
            var_low.checked_mul(*coefficient),
            var_high.checked_mul(*coefficient),
        ) else {
            return true;
        };
        parts.push((*var, *coefficient, a.min(b), a.max(b)));
    }
    let total = parts
        .iter()
        .try_fold((0i64, 0i64), |(sum_low, sum_high), part| {
            Some((sum_low.checked_add(part.2)?, sum_high.checked_add(part.3)?))
        });
    let Some((total_low, total_high)) = total else {
        return true;
    };
    let bounded = |value: i64| value != i64::MIN && value != i64::MAX;
    for (var, coefficient, part_low, part_high) in parts {
        // What the other terms reach; the variable's term must make up the rest.
        let (Some(rest_low), Some(rest_high)) = (
            total_low.checked_sub(part_low),
            total_high.checked_sub(part_high),
        ) else {
            continue;
        };
        let term_low = if bounded(low) {
            low.checked_sub(rest_high).unwrap_or(i64::MIN)
        } else {
            i64::MIN
        };
        let term_high = if bounded(high) {
            high.checked_sub(rest_low).unwrap_or(i64::MAX)
        } else {
            i64::MAX
        };
        let (new_low, new_high) = divide_bounds(term_low, term_high, coefficient);
        let Some(Some((old_low, old_high))) = ranges.get(var.index()).copied() else {
            continue;
        };
        let new = (old_low.max(new_low), old_high.min(new_high));
        ranges[var.index()] = Some(new);
        if new.0 > new.1 {
            return false;
        }
    }
    true
}

/// The negation of a comparison.
pub(crate) fn negate(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Ge,
        CmpOp::Le => CmpOp::Gt,
        CmpOp::Gt => CmpOp::Le,
        CmpOp::Ge => CmpOp::Lt,
        CmpOp::Eq => CmpOp::Ne,
        CmpOp::Ne => CmpOp::Eq,
    }
}

/// For `linear + constant (op) 0`, the inclusive bounds on `linear`; `None` for `!=` (which
/// bounds nothing) or on overflow.
pub(crate) fn linear_bounds(op: CmpOp, constant: i64) -> Option<(i64, i64)> {
    let minus = constant.checked_neg()?;
    Some(match op {
        CmpOp::Lt => (i64::MIN, minus.checked_sub(1)?),
        CmpOp::Le => (i64::MIN, minus),
        CmpOp::Gt => (minus.checked_add(1)?, i64::MAX),
        CmpOp::Ge => (minus, i64::MAX),
        CmpOp::Eq => (minus, minus),
        CmpOp::Ne => return None,
    })
}

/// The bounds on `x` implied by `low <= coefficient * x <= high` (`coefficient != 0`); the
/// extremes of `i64` stand for unbounded sides and stay unbounded.
fn divide_bounds(low: i64, high: i64, coefficient: i64) -> (i64, i64) {
    let bounded = |value: i64| value != i64::MIN && value != i64::MAX;
    let floor = |value: i64| IndexOp::FloorDiv.apply(value, coefficient);
    let ceil = |value: i64| {
        let quotient = floor(value)?;
        Some(if quotient.checked_mul(coefficient)? == value {
            quotient
        } else {
            quotient + 1
        })
    };
    // Dividing by a negative number swaps the sides.
    let (low, high) = if coefficient > 0 {
        (low, high)
    } else {
        (high, low)
    };
    let new_low = if bounded(low) { ceil(low) } else { None };
    let new_high = if bounded(high) { floor(high) } else { None };
    (new_low.unwrap_or(i64::MIN), new_high.unwrap_or(i64::MAX))
}

struct Simplifier {
    /// The inclusive range of each variable at the current point, `None` where unknown.
    ranges: Vec<Option<(i64, i64)>>,
}

impl Simplifier {
    fn lookup(&self) -> impl Fn(VarId) -> Option<(i64, i64)> + '_ {
        |var| self.ranges.get(var.index()).copied().flatten()
    }

    fn index(&self, expr: &IndexExpr) -> IndexExpr {
        simplify_index_in(expr, &self.lookup())
    }

    fn cond(&self, cond: &Cond) -> Cond {
        simplify_cond(cond, &self.lookup())
    }

    fn value(&self, value: &ValueExpr) -> ValueExpr {
        let lookup = self.lookup();
        simplify_value(value, &lookup)
    }

    fn stmt(&mut self, stmt: Stmt) -> Stmt {
        match stmt {
            Stmt::For(for_loop) => {
                let Loop {
                    var,
                    extent,
                    kind,
                    body,
                } = *for_loop;
                if extent <= 0 {
                    return Stmt::nop();
                }
                let Some(slot) = self.ranges.get_mut(var.index()) else {
                    // An undeclared variable: leave the loop for the verifier to report.
                    let body = self.stmt(body);
                    return Stmt::For(Box::new(Loop {
                        var,
                        extent,
                        kind,
                        body,
                    }));
                };
                let saved = slot.replace((0, extent - 1));
                let body = self.stmt(body);
                self.ranges[var.index()] = saved;
                if body.is_nop() {
                    Stmt::nop()
                } else if extent == 1 {
                    // The body was simplified with `var` pinned to 0, so no use of it is left.
                    body
                } else {
                    Stmt::For(Box::new(Loop {
                        var,
                        extent,
                        kind,
                        body,
                    }))
                }
            }
            Stmt::Seq(stmts) => {
                let mut flat = Vec::with_capacity(stmts.len());
                for stmt in stmts {
                    match self.stmt(stmt) {
                        Stmt::Seq(inner) => flat.extend(inner),
                        other => flat.push(other),
                    }
                }
                if flat.len() == 1 {
                    flat.pop().unwrap_or_else(Stmt::nop)
                } else {
                    Stmt::Seq(flat)
                }
            }
            Stmt::Store {
                buffer,
                indices,
                value,
            } => Stmt::Store {
                buffer,
                indices: indices.iter().map(|index| self.index(index)).collect(),
                value: self.value(&value),
            },
            Stmt::If { cond, then } => match self.cond(&cond) {
                Cond::Const(true) => self.stmt(*then),
                Cond::Const(false) => Stmt::nop(),
                cond => {
                    let saved = self.ranges.clone();
                    let reachable = tighten_ranges(&cond, true, &mut self.ranges);
                    let then = if reachable {
                        self.stmt(*then)
                    } else {
                        Stmt::nop()
                    };
                    self.ranges = saved;
                    if then.is_nop() {
                        Stmt::nop()
                    } else {
                        Stmt::If {
                            cond,
                            then: Box::new(then),
                        }
                    }
                }
            },
            Stmt::Alloc { buffer, body } => {
                let body = self.stmt(*body);
                if body.is_nop() {
                    Stmt::nop()
                } else {
                    Stmt::Alloc {
                        buffer,
                        body: Box::new(body),
                    }
                }
            }
        }
    }
}

/// Simplifies a condition: index expressions as [`simplify_index_in`], comparisons decided by
/// ranges folded to constants, and constant operands of `&&`, `||`, `!` folded away.
pub fn simplify_cond(cond: &Cond, ranges: &dyn Fn(VarId) -> Option<(i64, i64)>) -> Cond {
    match cond {
        Cond::Const(_) => cond.clone(),
        Cond::Index(op, a, b) => match decide_index_cmp(*op, a, b, ranges) {
            Some(value) => Cond::Const(value),
            None => Cond::Index(
                *op,
                simplify_index_in(a, ranges),
                simplify_index_in(b, ranges),
            ),
        },
        Cond::Value(op, a, b) => {
            let (a, b) = (simplify_value(a, ranges), simplify_value(b, ranges));
            match (&a, &b) {
                (ValueExpr::Const(x), ValueExpr::Const(y)) if x.dtype == y.dtype => {
                    Cond::Const(op.compare(rounded(*x), rounded(*y)))
                }
                _ => Cond::Value(*op, Box::new(a), Box::new(b)),
            }
        }
        // Both operands are kept even when one decides the result: the interpreter evaluates
        // both, and a load among them may fail; only constant operands are dropped.
        Cond::And(a, b) => match (simplify_cond(a, ranges), simplify_cond(b, ranges)) {
            (Cond::Const(true), other) | (other, Cond::Const(true)) => other,
            (Cond::Const(false), other) | (other, Cond::Const(false)) if is_pure(&other) => {
                Cond::Const(false)
            }
            (a, b) => a.and(b),
        },
        Cond::Or(a, b) => match (simplify_cond(a, ranges), simplify_cond(b, ranges)) {
            (Cond::Const(false), other) | (other, Cond::Const(false)) => other,
            (Cond::Const(true), other) | (other, Cond::Const(true)) if is_pure(&other) => {
                Cond::Const(true)
            }
            (a, b) => a.or(b),
        },
        Cond::Not(inner) => match simplify_cond(inner, ranges) {
            Cond::Const(value) => Cond::Const(!value),
            Cond::Index(op, a, b) => Cond::Index(negate(op), a, b),
            Cond::Not(inner) => *inner,
            other => Cond::Not(Box::new(other)),
        },
    }
}

/// Whether evaluating `cond` can never fail (it reads no buffer), so it may be dropped.
fn is_pure(cond: &Cond) -> bool {
    let mut loads = false;
    cond.walk_values(&mut |value| loads |= matches!(value, ValueExpr::Load(_)));
    !loads
}

/// A constant's value as the interpreter sees it: rounded to its element type.
fn rounded(scalar: Scalar) -> f64 {
    match scalar.dtype {
        DType::F32 => scalar.value as f32 as f64,
        _ => scalar.value,
    }
}

/// A value `v` of dtype `dtype` as a constant, if `v` is exactly representable in it.
fn exact_constant(dtype: DType, value: f64) -> Option<ValueExpr> {
    let exact = match dtype {
        DType::F32 => (value as f32 as f64) == value || value.is_nan(),
        DType::F64 => true,
        _ => false,
    };
    exact.then_some(ValueExpr::Const(Scalar { dtype, value }))
}

/// Simplifies a value expression: its index expressions and conditions as above, selects with a
/// constant condition replaced by the chosen operand, `x * 1.0` by `x`, and operations on
/// constants folded when the result is exact in the element type.
pub fn simplify_value(
    value: &ValueExpr,
    ranges: &dyn Fn(VarId) -> Option<(i64, i64)>,
) -> ValueExpr {
    let index = |expr: &IndexExpr| simplify_index_in(expr, ranges);
    let fold = |expr: ValueExpr| -> ValueExpr {
        match expr {
            ValueExpr::Select(cond, then, otherwise) => match simplify_cond(&cond, ranges) {
                Cond::Const(true) => *then,
                Cond::Const(false) => *otherwise,
                cond => ValueExpr::Select(Box::new(cond), then, otherwise),
            },
            ValueExpr::Binary(op, a, b) => match (&*a, &*b) {
                (ValueExpr::Const(x), ValueExpr::Const(y)) if x.dtype == y.dtype => {
                    exact_constant(x.dtype, op.apply(rounded(*x), rounded(*y)))
                        .unwrap_or(ValueExpr::Binary(op, a, b))
                }
                (_, ValueExpr::Const(one)) if op == BinaryOp::Mul && rounded(*one) == 1.0 => *a,
                (ValueExpr::Const(one), _) if op == BinaryOp::Mul && rounded(*one) == 1.0 => *b,
                _ => ValueExpr::Binary(op, a, b),
            },
            ValueExpr::FromIndex(dtype, IndexExpr::Const(constant)) if dtype.is_float() => {
                let value = match dtype {
                    DType::F32 => constant as f32 as f64,
                    _ => constant as f64,
                };
                ValueExpr::Const(Scalar { dtype, value })
            }
            other => other,
        }
    };
    value.rewrite(&index, &fold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::expr::BufferId;
    use crate::interp;
    use crate::loop_nest::{BufferRole, LoopKind};
    use crate::print::Printed;
    use crate::test_nests::*;
    use crate::verify::verify;
    use expect_test::{expect, Expect};

    /// A nest whose only purpose is naming `io`, `ii`, `i`, `j` for printing.
    fn names() -> (LoopNest, [VarId; 4]) {
        let mut b = Builder::new("names");
        let vars = [b.var("io"), b.var("ii"), b.var("i"), b.var("j")];
        (b.finish(Stmt::nop()), vars)
    }

    /// Simplifies `expr` with `io` in [0, 7], `ii` in [0, 3] and `i`, `j` unknown, and compares
    /// the printed result.
    fn check_index(build: impl Fn([VarId; 4]) -> IndexExpr, expect: Expect) {
        let (nest, vars) = names();
        let ranges = |var: VarId| match var.0 {
            0 => Some((0, 7)),
            1 => Some((0, 3)),
            _ => None,
        };
        let simplified = simplify_index_in(&build(vars), &ranges);
        expect.assert_eq(&Printed::new(&nest, &simplified).to_string());
    }

    fn check(nest: LoopNest, expect: Expect) {
        expect.assert_eq(&simplify(nest).to_string());
    }

    #[test]
    fn split_index_arithmetic_cancels() {
        check_index(|[io, ii, ..]| v(io) * 4 + v(ii) - v(io) * 4, expect!["ii"]);
        check_index(
            |[io, ii, ..]| (v(io) * 4 + v(ii)).floor_div(4),
            expect!["io"],
        );
        check_index(
            |[io, ii, ..]| (v(io) * 4 + v(ii)).floor_mod(4),
            expect!["ii"],
        );
        check_index(
            |[io, ii, ..]| (v(io) * 8 + v(ii) * 2 + 1).floor_div(2),
            expect!["io * 4 + ii"],
        );
        check_index(
            |[io, ii, ..]| (v(io) * 8 + v(ii)).floor_div(2).floor_div(2),
            expect!["io * 2"],
        );
    }

    #[test]
    fn a_guard_on_a_sum_bounds_each_of_its_variables() {
        // The tail guard of a row panel of 6: `io * 6 + ii + 1020 < 1024`, io and ii in [0, 5].
        let (io, ii) = (VarId(0), VarId(1));
        let mut ranges = vec![Some((0, 5)), Some((0, 5))];
        let guard = (v(io) * 6 + v(ii) + 1020).lt(IndexExpr::Const(1024));
        assert!(tighten_ranges(&guard, true, &mut ranges));
        assert_eq!(ranges, vec![Some((0, 0)), Some((0, 3))]);
        // Its negation bounds from below: io * 6 + ii >= 4.
        let mut ranges = vec![Some((0, 5)), Some((0, 5))];
        assert!(tighten_ranges(&guard, false, &mut ranges));
        assert_eq!(ranges, vec![Some((0, 5)), Some((0, 5))]);
        let mut ranges = vec![Some((0, 0)), Some((0, 5))];
        assert!(tighten_ranges(&guard, false, &mut ranges));
        assert_eq!(ranges, vec![Some((0, 0)), Some((4, 5))]);
        // A sum the ranges cannot reach: the guarded code is dead.
        let mut ranges = vec![Some((0, 5)), Some((0, 5))];
        let unreachable = (v(io) * 6 + v(ii)).ge(IndexExpr::Const(36));
        assert!(!tighten_ranges(&unreachable, true, &mut ranges));
        // A variable with no known range tightens nothing.
        let mut ranges = vec![Some((0, 5)), None];
        assert!(tighten_ranges(&guard, true, &mut ranges));
        assert_eq!(ranges, vec![Some((0, 5)), None]);
    }

    #[test]
    fn division_splits_exactly_without_ranges() {
        check_index(
            |[.., i, j]| (v(i) * 4 + v(j)).floor_div(4),
            expect!["i + j / 4"],
        );
        check_index(
            |[.., i, j]| (v(i) * 4 + v(j) + 9).floor_mod(4),
            expect!["(j + 1) % 4"],
        );
        check_index(
            |[.., i, _]| v(i).floor_div(2).floor_div(3),
            expect!["i / 6"],
        );
        check_index(
            |[.., i, _]| v(i).floor_mod(8).floor_mod(4),
            expect!["i % 4"],
        );
        check_index(
            |[.., i, _]| v(i).floor_mod(4).floor_mod(8),
            expect!["i % 4 % 8"],
        );
        check_index(
            |[.., i, j]| (v(j) * 5 - v(i)).floor_mod(2),
            expect!["(i + j) % 2"],
        );
        check_index(
            |[.., i, _]| (IndexExpr::Const(0) - v(i)).floor_mod(4),
            expect!["i * -1 % 4"],
        );
        // Division by zero is kept, so running the nest still reports it.
        check_index(|[.., i, _]| v(i).floor_div(0) + 1, expect!["i / 0 + 1"]);
    }

    #[test]
    fn affine_terms_are_merged_and_ordered() {
        check_index(
            |[.., i, j]| v(j) + v(i) * 1 + 0 - 3 + v(i),
            expect!["i * 2 + j - 3"],
        );
        check_index(
            |[.., i, j]| (IndexExpr::Const(2) + 3) * (v(j) - v(i)),
            expect!["j * 5 - i * 5"],
        );
        check_index(|[.., i, _]| IndexExpr::Const(10) - v(i), expect!["10 - i"]);
        check_index(
            |[.., i, _]| IndexExpr::Const(0) - v(i) - 1,
            expect!["i * -1 - 1"],
        );
        check_index(|[.., i, j]| v(j) * v(i) - v(i) * v(j), expect!["0"]);
        check_index(|[.., i, j]| v(j).min(v(i)), expect!["min(i, j)"]);
    }

    #[test]
    fn min_and_max_decided_by_ranges() {
        check_index(|[io, ii, ..]| (v(io) + 8).min(v(ii) + 4), expect!["ii + 4"]);
        check_index(|[io, ii, ..]| v(io).max(v(ii) - 3), expect!["io"]);
        check_index(|[io, ii, ..]| v(io).min(v(ii)), expect!["min(io, ii)"]);
    }

    #[test]
    fn guards_proven_true_vanish_and_tails_stay() {
        check(
            scaled_with_tail(12),
            expect![[r#"
                kernel scale(A: f32[12]) -> (B: f32[12]) {
                  for i.outer in 0..3 {
                    vectorize i.inner in 0..4 {
                      B[i.outer * 4 + i.inner] = A[i.outer * 4 + i.inner] * 2.0 + 1.0
                    }
                  }
                }"#]],
        );
        check(
            scaled_with_tail(10),
            expect![[r#"
                kernel scale(A: f32[10]) -> (B: f32[10]) {
                  for i.outer in 0..3 {
                    vectorize i.inner in 0..4 {
                      if (i.outer * 4 + i.inner < 10) {
                        B[i.outer * 4 + i.inner] = A[i.outer * 4 + i.inner] * 2.0 + 1.0
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn unit_loops_dead_guards_and_empty_statements_disappear() {
        let mut b = Builder::new("unit");
        let (i, o, e) = (b.var("i"), b.var("o"), b.var("e"));
        let a = b.buffer("A", &[4], BufferRole::Input);
        let out = b.buffer("B", &[4], BufferRole::Output);
        let temp = b.buffer("T", &[1], BufferRole::Temp);
        let body = Stmt::Seq(vec![
            Stmt::nop(),
            loop_(
                LoopKind::Parallel,
                o,
                1,
                for_(
                    i,
                    4,
                    Stmt::Seq(vec![
                        Stmt::Seq(vec![store(
                            out,
                            vec![v(o) * 4 + v(i)],
                            load(a, vec![v(i) + v(o)]) * ValueExpr::f32(1.0),
                        )]),
                        if_(v(i).ge(4), store(out, vec![v(i)], ValueExpr::f32(0.0))),
                        if_(
                            v(i).lt(2),
                            if_(
                                v(i).lt(3),
                                store(out, vec![v(i)], ValueExpr::FromIndex(DType::F32, v(o) + 2)),
                            ),
                        ),
                    ]),
                ),
            ),
            for_(e, 3, alloc(temp, Stmt::Seq(vec![Stmt::nop()]))),
            if_(
                Cond::Not(Box::new(IndexExpr::Const(1).lt(0))),
                store(
                    out,
                    vec![IndexExpr::Const(0)],
                    ValueExpr::select(
                        IndexExpr::Const(1).lt(2),
                        ValueExpr::f32(0.5) + ValueExpr::f32(0.25),
                        ValueExpr::f32(0.1) + ValueExpr::f32(0.2),
                    ),
                ),
            ),
        ]);
        check(
            b.finish(body),
            expect![[r#"
                kernel unit(A: f32[4]) -> (B: f32[4]) {
                  for i in 0..4 {
                    B[i] = A[i]
                    if (i < 2) {
                      B[i] = 2.0
                    }
                  }
                  B[0] = 0.75
                }"#]],
        );
    }

    #[test]
    fn inexact_constant_arithmetic_is_not_folded() {
        // 0.1 + 0.2 is not exact in f32; folding it would change the interpreter's result.
        let (nest, _) = names();
        let value = ValueExpr::f32(0.1) + ValueExpr::f32(0.2);
        let simplified = simplify_value(&value, &|_| None);
        assert_eq!(Printed::new(&nest, &simplified).to_string(), "0.1 + 0.2");
    }

    /// A tiny deterministic generator (xorshift), so failures reproduce from the seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }

        fn range(&mut self, low: i64, high: i64) -> i64 {
            low + self.below((high - low + 1) as u64) as i64
        }
    }

    /// Random nests in the shapes scheduling produces: splits (`o * f + i`), guards, extent-1
    /// loops, div/mod/min/max index arithmetic, selects, temporaries. Every access is wrapped
    /// in `% extent` or guarded, so most nests run without error.
    struct NestGen {
        rng: Rng,
        builder: Builder,
        input: BufferId,
        output: BufferId,
        temp: BufferId,
        input_shape: [i64; 2],
        output_len: i64,
    }

    impl NestGen {
        fn new(seed: u64) -> NestGen {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let input_shape = [rng.range(1, 6), rng.range(1, 6)];
            let output_len = rng.range(1, 12);
            let mut builder = Builder::new("random");
            let input = builder.buffer("A", &input_shape, BufferRole::Input);
            let output = builder.buffer("B", &[output_len], BufferRole::Output);
            let temp = builder.buffer("T", &[3], BufferRole::Temp);
            NestGen {
                rng,
                builder,
                input,
                output,
                temp,
                input_shape,
                output_len,
            }
        }

        fn index(&mut self, vars: &[VarId], depth: u32) -> IndexExpr {
            let leaf = depth == 0 || self.rng.below(3) == 0;
            if leaf {
                if vars.is_empty() || self.rng.below(4) == 0 {
                    return IndexExpr::Const(self.rng.range(-3, 6));
                }
                return v(vars[self.rng.below(vars.len() as u64) as usize]);
            }
            let a = self.index(vars, depth - 1);
            match self.rng.below(8) {
                0 | 1 => a + self.index(vars, depth - 1),
                2 => a - self.index(vars, depth - 1),
                3 => a * self.rng.range(-2, 5),
                4 => a.floor_div(self.rng.range(1, 5)),
                5 => a.floor_mod(self.rng.range(1, 5)),
                6 => a.min(self.index(vars, depth - 1)),
                _ => a.max(self.index(vars, depth - 1)),
            }
        }

        /// An index into a dimension of `extent`, in bounds by construction.
        fn bounded_index(&mut self, vars: &[VarId], extent: i64) -> IndexExpr {
            let index = self.index(vars, 3);
            index.floor_mod(extent)
        }

        fn cond(&mut self, vars: &[VarId]) -> Cond {
            let ops = [
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
                CmpOp::Eq,
                CmpOp::Ne,
            ];
            let op = ops[self.rng.below(6) as usize];
            let cond = Cond::Index(
                op,
                self.index(vars, 2),
                IndexExpr::Const(self.rng.range(-1, 6)),
            );
            match self.rng.below(5) {
                0 => cond.and(self.cond(vars)),
                1 => cond.or(self.cond(vars)),
                2 => Cond::Not(Box::new(cond)),
                _ => cond,
            }
        }

        fn value(&mut self, vars: &[VarId], depth: u32, temp_live: bool) -> ValueExpr {
            if depth == 0 || self.rng.below(3) == 0 {
                return match self.rng.below(4) {
                    0 => ValueExpr::f32(self.rng.range(-4, 4) as f32 * 0.375),
                    1 => ValueExpr::FromIndex(DType::F32, self.index(vars, 2)),
                    2 if temp_live => {
                        let index = self.bounded_index(vars, 3);
                        load(self.temp, vec![index])
                    }
                    _ => {
                        let [rows, cols] = self.input_shape;
                        let indices = vec![
                            self.bounded_index(vars, rows),
                            self.bounded_index(vars, cols),
                        ];
                        load(self.input, indices)
                    }
                };
            }
            let a = self.value(vars, depth - 1, temp_live);
            match self.rng.below(6) {
                0 => a + self.value(vars, depth - 1, temp_live),
                1 => a * self.value(vars, depth - 1, temp_live),
                2 => a - ValueExpr::f32(1.0),
                3 => a * ValueExpr::f32(1.0),
                4 => {
                    let (b, c) = (
                        self.value(vars, depth - 1, temp_live),
                        self.value(vars, 0, temp_live),
                    );
                    a.fma(b, c)
                }
                _ => {
                    let cond = self.cond(vars);
                    ValueExpr::select(cond, a, self.value(vars, depth - 1, temp_live))
                }
            }
        }

        fn stmt(&mut self, vars: &mut Vec<VarId>, depth: u32, temp_live: bool) -> Stmt {
            let choice = if depth == 0 { 0 } else { self.rng.below(6) };
            match choice {
                0 | 1 => {
                    let (buffer, extent) = if temp_live && self.rng.below(3) == 0 {
                        (self.temp, 3)
                    } else {
                        (self.output, self.output_len)
                    };
                    let index = self.bounded_index(vars, extent);
                    let value = self.value(vars, 2, temp_live);
                    store(buffer, vec![index], value)
                }
                2 => {
                    // A split: `for o { for i { if (o * f + i < n) { ... } } }`.
                    let (factor, total) = (self.rng.range(1, 4), self.rng.range(1, 9));
                    let outer = self.builder.var(&format!("o{}", vars.len()));
                    let inner = self.builder.var(&format!("i{}", vars.len()));
                    vars.extend([outer, inner]);
                    let body = self.stmt(vars, depth - 1, temp_live);
                    vars.truncate(vars.len() - 2);
                    let guarded = if_((v(outer) * factor + v(inner)).lt(total), body);
                    for_(
                        outer,
                        (total + factor - 1) / factor,
                        for_(inner, factor, guarded),
                    )
                }
                3 => {
                    let var = self.builder.var(&format!("l{}", vars.len()));
                    let extent = self.rng.range(1, 4);
                    vars.push(var);
                    let body = self.stmt(vars, depth - 1, temp_live);
                    vars.pop();
                    let kinds = [LoopKind::Serial, LoopKind::Unrolled];
                    loop_(kinds[self.rng.below(2) as usize], var, extent, body)
                }
                4 => {
                    let cond = self.cond(vars);
                    if_(cond, self.stmt(vars, depth - 1, temp_live))
                }
                _ if !temp_live => {
                    let body = Stmt::Seq(vec![
                        self.stmt(vars, depth - 1, true),
                        self.stmt(vars, depth - 1, true),
                    ]);
                    alloc(self.temp, body)
                }
                _ => Stmt::Seq(vec![
                    self.stmt(vars, depth - 1, temp_live),
                    self.stmt(vars, depth - 1, temp_live),
                ]),
            }
        }

        fn nest(mut self) -> LoopNest {
            let body = Stmt::Seq(vec![
                self.stmt(&mut Vec::new(), 4, false),
                self.stmt(&mut Vec::new(), 4, false),
            ]);
            self.builder.finish(body)
        }
    }

    fn run_nest(nest: &LoopNest) -> Result<Vec<f32>, interp::InterpError> {
        let input = data(nest.buffers[0].len(), 7);
        let mut output = data(nest.buffers[1].len(), 8);
        interp::run(nest, &[&input], &mut [&mut output])?;
        Ok(output)
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// Simplification never changes what a nest computes, and keeps valid nests valid.
    #[test]
    fn simplify_preserves_interpreter_results_on_random_nests() {
        let mut ran = 0;
        for seed in 0..600 {
            let nest = NestGen::new(seed).nest();
            let simplified = simplify(nest.clone());
            let context = || format!("seed {seed}\n{nest}\nsimplified:\n{simplified}");
            if verify(&nest).is_ok() {
                assert_eq!(verify(&simplified), Ok(()), "{}", context());
            }
            // A failing original may be simplified into a succeeding one (an index division
            // by zero multiplied by 0 disappears); the reverse must never happen.
            let Ok(expected) = run_nest(&nest) else {
                continue;
            };
            ran += 1;
            match run_nest(&simplified) {
                Ok(actual) => assert!(
                    same_bits(&expected, &actual),
                    "{}\nexpected {expected:?}\nactual {actual:?}",
                    context()
                ),
                Err(err) => panic!("{}\nsimplified nest fails: {err}", context()),
            }
            // Simplifying twice changes nothing more.
            assert_eq!(simplify(simplified.clone()), simplified, "{}", context());
        }
        eprintln!("ran {ran}");
        assert!(ran > 400, "only {ran} random nests ran");
    }
}
