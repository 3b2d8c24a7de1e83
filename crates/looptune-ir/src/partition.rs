//! Loop partitioning: splits a loop where a guard inside it changes from always true to always
//! false, so that the bulk of the iterations runs without the guard.
//!
//! Lowering guards split tails (`io * 6 + i < 1024`) and padding (`y + ry >= 1`) at the innermost
//! loop that uses them, which is where they are cheapest to state and most expensive to run: in
//! a register-tiled matmul the tail guard sits inside the reduction loop, and a guard inside a
//! vectorized loop makes a back end scalarise it. For a loop over `v` with an index comparison
//! inside whose truth depends on `v` alone once the other variables' ranges are accounted for,
//! the comparison holds on one interval of `v`. The loop is cut into the iterations before that
//! interval, the interval itself and the iterations after it; the simplifier then drops the
//! comparison from the middle piece, where it is proven, and usually from the others too.
//!
//! Pieces reuse the loop variable (they are siblings, never nested) and later pieces see it
//! offset by their start. A budget bounds how many cuts one nest may receive, since each cut
//! copies the loop body.

use crate::expr::{CmpOp, Cond, IndexExpr, ValueExpr, VarId};
use crate::loop_nest::{Loop, LoopKind, LoopNest, Stmt};
use crate::simplify::normalize;

/// How many loops one nest may be cut: each cut copies a loop body up to twice.
const MAX_CUTS: usize = 32;

/// Partitions the loops of `nest`; see the module documentation. The result computes exactly
/// what `nest` computes; simplify it afterwards to drop the guards the pieces prove.
pub fn partition_loops(mut nest: LoopNest) -> LoopNest {
    let body = std::mem::replace(&mut nest.body, Stmt::nop());
    let mut partitioner = Partitioner {
        ranges: vec![None; nest.vars.len()],
        cuts_left: MAX_CUTS,
    };
    nest.body = partitioner.stmt(body);
    nest
}

struct Partitioner {
    ranges: Vec<Option<(i64, i64)>>,
    cuts_left: usize,
}

impl Partitioner {
    fn stmt(&mut self, stmt: Stmt) -> Stmt {
        match stmt {
            Stmt::For(for_loop) => self.for_loop(*for_loop),
            Stmt::Seq(stmts) => Stmt::Seq(stmts.into_iter().map(|stmt| self.stmt(stmt)).collect()),
            Stmt::If { cond, then } => Stmt::If {
                cond,
                then: Box::new(self.stmt(*then)),
            },
            Stmt::Alloc { buffer, body } => Stmt::Alloc {
                buffer,
                body: Box::new(self.stmt(*body)),
            },
            store @ Stmt::Store { .. } => store,
        }
    }

    fn for_loop(&mut self, for_loop: Loop) -> Stmt {
        let Loop {
            var,
            extent,
            kind,
            body,
        } = for_loop;
        let saved = self.ranges[var.index()].replace((0, extent - 1));
        // Unrolled and vectorized loops are resolved by the back end lane by lane or copy by
        // copy; cutting them would only multiply code.
        let cut = match kind {
            LoopKind::Serial | LoopKind::Parallel if self.cuts_left > 0 => {
                self.find_cut(&body, var, extent)
            }
            _ => None,
        };
        let result = match cut {
            Some((low, high)) => {
                self.cuts_left -= 1;
                let mut pieces = Vec::new();
                for (start, end) in [(0, low), (low, high + 1), (high + 1, extent)] {
                    if end <= start {
                        continue;
                    }
                    let piece_body = if start == 0 {
                        body.clone()
                    } else {
                        substitute_stmt(&body, var, &(IndexExpr::Var(var) + start))
                    };
                    let piece = Loop {
                        var,
                        extent: end - start,
                        kind,
                        body: piece_body,
                    };
                    pieces.push(self.for_loop(piece));
                }
                Stmt::Seq(pieces)
            }
            None => {
                let body = self.stmt(body);
                Stmt::For(Box::new(Loop {
                    var,
                    extent,
                    kind,
                    body,
                }))
            }
        };
        self.ranges[var.index()] = saved;
        result
    }

    /// The interval of `var` (within `0..extent`) on which some index comparison in `body` is
    /// provably true, when that interval is neither empty nor the whole loop: the first such
    /// comparison in program order decides.
    fn find_cut(&mut self, body: &Stmt, var: VarId, extent: i64) -> Option<(i64, i64)> {
        let mut cut = |op: CmpOp, a: &IndexExpr, b: &IndexExpr, ranges: &[Option<(i64, i64)>]| {
            // A comparison that does not mention `var` cannot move with it.
            if !a.uses_var(var) && !b.uses_var(var) {
                return None;
            }
            cut_from(op, &(a.clone() - b.clone()), ranges, var, extent)
        };
        find_in_stmt(body, &mut self.ranges, &mut cut)
    }
}

/// The cut `difference (op) 0` gives for `var` in `0..extent` under `ranges`, if any.
fn cut_from(
    op: CmpOp,
    difference: &IndexExpr,
    ranges: &[Option<(i64, i64)>],
    var: VarId,
    extent: i64,
) -> Option<(i64, i64)> {
    let lookup = |v: VarId| ranges.get(v.index()).copied().flatten();
    let sum = normalize(difference, &lookup)?;
    let coefficient: i64 = sum
        .terms
        .iter()
        .filter(|(atom, _)| *atom == IndexExpr::Var(var))
        .map(|(_, c)| *c)
        .sum();
    if coefficient == 0 {
        return None;
    }
    let mut rest = sum;
    rest.terms.retain(|(atom, _)| *atom != IndexExpr::Var(var));
    if rest.terms.iter().any(|(atom, _)| atom.uses_var(var)) {
        return None;
    }
    let (rest_low, rest_high) = rest.range(&lookup)?;
    // `coefficient * var + rest (op) 0` for every value of rest.
    let (low, high) = match op {
        CmpOp::Lt => at_most(coefficient, -rest_high - 1),
        CmpOp::Le => at_most(coefficient, -rest_high),
        CmpOp::Gt => at_least(coefficient, -rest_low + 1),
        CmpOp::Ge => at_least(coefficient, -rest_low),
        CmpOp::Eq | CmpOp::Ne => return None,
    };
    let (low, high) = (low.max(0), high.min(extent - 1));
    (low <= high && (low > 0 || high < extent - 1)).then_some((low, high))
}

/// The values of `v` with `coefficient * v <= bound`, as an interval.
fn at_most(coefficient: i64, bound: i64) -> (i64, i64) {
    if coefficient > 0 {
        (i64::MIN / 4, bound.div_euclid(coefficient))
    } else {
        // v >= bound / coefficient, rounded up.
        (ceil_div(bound, coefficient), i64::MAX / 4)
    }
}

/// The values of `v` with `coefficient * v >= bound`, as an interval.
fn at_least(coefficient: i64, bound: i64) -> (i64, i64) {
    if coefficient > 0 {
        (ceil_div(bound, coefficient), i64::MAX / 4)
    } else {
        (i64::MIN / 4, floor_div(bound, coefficient))
    }
}

fn floor_div(a: i64, b: i64) -> i64 {
    let quotient = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        quotient - 1
    } else {
        quotient
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -floor_div(-a, b)
}

/// What a comparison `a (op) b` gives, seen with the variable ranges in force where it stands.
type Visit<'a> =
    dyn FnMut(CmpOp, &IndexExpr, &IndexExpr, &[Option<(i64, i64)>]) -> Option<(i64, i64)> + 'a;

/// The first result `visit` gives for the index comparisons in guards and select conditions of
/// `stmt`, in program order, each seen with the variable ranges in force where it stands.
fn find_in_stmt(
    stmt: &Stmt,
    ranges: &mut Vec<Option<(i64, i64)>>,
    visit: &mut Visit<'_>,
) -> Option<(i64, i64)> {
    match stmt {
        Stmt::For(for_loop) => {
            let saved = ranges[for_loop.var.index()].replace((0, for_loop.extent - 1));
            let found = find_in_stmt(&for_loop.body, ranges, visit);
            ranges[for_loop.var.index()] = saved;
            found
        }
        Stmt::Seq(stmts) => stmts
            .iter()
            .find_map(|stmt| find_in_stmt(stmt, ranges, visit)),
        Stmt::If { cond, then } => {
            find_in_cond(cond, ranges, visit).or_else(|| find_in_stmt(then, ranges, visit))
        }
        Stmt::Alloc { body, .. } => find_in_stmt(body, ranges, visit),
        Stmt::Store { value, .. } => {
            let mut found = None;
            value.walk(&mut |expr| {
                if found.is_none() {
                    if let ValueExpr::Select(cond, _, _) = expr {
                        found = find_in_cond(cond, ranges, visit);
                    }
                }
            });
            found
        }
    }
}

fn find_in_cond(
    cond: &Cond,
    ranges: &[Option<(i64, i64)>],
    visit: &mut Visit<'_>,
) -> Option<(i64, i64)> {
    match cond {
        Cond::Index(op, a, b) => visit(*op, a, b, ranges),
        Cond::And(a, b) => {
            find_in_cond(a, ranges, visit).or_else(|| find_in_cond(b, ranges, visit))
        }
        // Parts of a disjunction or negation need not hold where the whole does.
        _ => None,
    }
}

/// `stmt` with `var` replaced by `replacement` in every expression.
fn substitute_stmt(stmt: &Stmt, var: VarId, replacement: &IndexExpr) -> Stmt {
    let replace = |v: VarId| (v == var).then(|| replacement.clone());
    match stmt {
        Stmt::For(for_loop) => Stmt::For(Box::new(Loop {
            var: for_loop.var,
            extent: for_loop.extent,
            kind: for_loop.kind,
            body: substitute_stmt(&for_loop.body, var, replacement),
        })),
        Stmt::Seq(stmts) => Stmt::Seq(
            stmts
                .iter()
                .map(|stmt| substitute_stmt(stmt, var, replacement))
                .collect(),
        ),
        Stmt::Store {
            buffer,
            indices,
            value,
        } => Stmt::Store {
            buffer: *buffer,
            indices: indices
                .iter()
                .map(|index| index.substitute(&replace))
                .collect(),
            value: value.substitute(&replace),
        },
        Stmt::If { cond, then } => Stmt::If {
            cond: cond.substitute(&replace),
            then: Box::new(substitute_stmt(then, var, replacement)),
        },
        Stmt::Alloc { buffer, body } => Stmt::Alloc {
            buffer: *buffer,
            body: Box::new(substitute_stmt(body, var, replacement)),
        },
    }
}
