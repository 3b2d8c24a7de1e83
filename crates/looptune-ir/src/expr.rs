//! Expressions shared by compute definitions and the loop IR.
//!
//! There are three small expression languages, kept apart because back ends treat them apart:
//! [`IndexExpr`] is integer index arithmetic (always `i64`, scalar, the stuff of addresses),
//! [`ValueExpr`] computes element values (floats now, integers later) and [`Cond`] is a boolean
//! over either. A compute definition and a lowered loop nest use the same types, so lowering is a
//! rewrite of expressions rather than a translation between two IRs.

use crate::dtype::{DType, Scalar};
use serde::{Deserialize, Serialize};
use std::ops::{Add, Mul, Neg, Sub};

/// A variable: a compute axis, a reduction axis or a loop counter. An index into the owning
/// program's or loop nest's variable table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VarId(pub u32);

/// A tensor of a program or a buffer of a loop nest; an index into its owner's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BufferId(pub u32);

impl VarId {
    /// The table index of this variable.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl BufferId {
    /// The table index of this buffer.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Binary operators of index arithmetic. Division and modulo round towards negative infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndexOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `floor(a / b)`
    FloorDiv,
    /// `a - b * floor(a / b)` (the sign follows `b`)
    FloorMod,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
}

impl IndexOp {
    /// Evaluates the operator; `None` on division by zero or overflow.
    pub fn apply(self, a: i64, b: i64) -> Option<i64> {
        match self {
            IndexOp::Add => a.checked_add(b),
            IndexOp::Sub => a.checked_sub(b),
            IndexOp::Mul => a.checked_mul(b),
            IndexOp::FloorDiv => {
                let quotient = a.checked_div(b)?;
                if a % b != 0 && ((a < 0) != (b < 0)) {
                    Some(quotient - 1)
                } else {
                    Some(quotient)
                }
            }
            IndexOp::FloorMod => {
                if b == 0 {
                    None
                } else {
                    let q = IndexOp::FloorDiv.apply(a, b)?;
                    Some(a - b * q)
                }
            }
            IndexOp::Min => Some(a.min(b)),
            IndexOp::Max => Some(a.max(b)),
        }
    }

    /// The operator as printed in IR text.
    pub fn symbol(self) -> &'static str {
        match self {
            IndexOp::Add => "+",
            IndexOp::Sub => "-",
            IndexOp::Mul => "*",
            IndexOp::FloorDiv => "/",
            IndexOp::FloorMod => "%",
            IndexOp::Min => "min",
            IndexOp::Max => "max",
        }
    }
}

/// Integer index arithmetic: the indices of loads and stores, loop bounds, guards.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IndexExpr {
    /// A constant.
    Const(i64),
    /// The current value of a variable.
    Var(VarId),
    /// A binary operation.
    Binary(IndexOp, Box<IndexExpr>, Box<IndexExpr>),
}

impl IndexExpr {
    /// A binary operation node.
    pub fn binary(op: IndexOp, a: IndexExpr, b: IndexExpr) -> IndexExpr {
        IndexExpr::Binary(op, Box::new(a), Box::new(b))
    }

    /// `floor(self / divisor)`.
    pub fn floor_div(self, divisor: impl Into<IndexExpr>) -> IndexExpr {
        IndexExpr::binary(IndexOp::FloorDiv, self, divisor.into())
    }

    /// `self mod divisor`, rounding as [`IndexOp::FloorMod`].
    pub fn floor_mod(self, divisor: impl Into<IndexExpr>) -> IndexExpr {
        IndexExpr::binary(IndexOp::FloorMod, self, divisor.into())
    }

    /// `min(self, other)`.
    pub fn min(self, other: impl Into<IndexExpr>) -> IndexExpr {
        IndexExpr::binary(IndexOp::Min, self, other.into())
    }

    /// `max(self, other)`.
    pub fn max(self, other: impl Into<IndexExpr>) -> IndexExpr {
        IndexExpr::binary(IndexOp::Max, self, other.into())
    }

    /// The condition `self < other`.
    pub fn lt(self, other: impl Into<IndexExpr>) -> Cond {
        Cond::Index(CmpOp::Lt, self, other.into())
    }

    /// The condition `self >= other`.
    pub fn ge(self, other: impl Into<IndexExpr>) -> Cond {
        Cond::Index(CmpOp::Ge, self, other.into())
    }

    /// The constant value, if this is a constant.
    pub fn as_const(&self) -> Option<i64> {
        match self {
            IndexExpr::Const(value) => Some(*value),
            _ => None,
        }
    }

    /// Evaluates with `lookup` giving each variable's value; `None` if a variable is unbound or
    /// the arithmetic fails (division by zero, overflow).
    pub fn eval(&self, lookup: &dyn Fn(VarId) -> Option<i64>) -> Option<i64> {
        match self {
            IndexExpr::Const(value) => Some(*value),
            IndexExpr::Var(var) => lookup(*var),
            IndexExpr::Binary(op, a, b) => op.apply(a.eval(lookup)?, b.eval(lookup)?),
        }
    }

    /// Calls `visit` on every variable this expression reads.
    pub fn for_each_var(&self, visit: &mut dyn FnMut(VarId)) {
        match self {
            IndexExpr::Const(_) => {}
            IndexExpr::Var(var) => visit(*var),
            IndexExpr::Binary(_, a, b) => {
                a.for_each_var(visit);
                b.for_each_var(visit);
            }
        }
    }

    /// Whether `var` occurs in this expression.
    pub fn uses_var(&self, var: VarId) -> bool {
        let mut found = false;
        self.for_each_var(&mut |v| found |= v == var);
        found
    }

    /// The coefficient `c` with `self = c * var + (terms free of var)`, or `None` when the
    /// expression is not of that form with a constant `c` (`var / 2`, `var * n`): how an access
    /// moves with a loop's variable, which every backend's vectorizer asks.
    pub fn linear_coefficient(&self, var: VarId) -> Option<i64> {
        match self {
            IndexExpr::Const(_) => Some(0),
            IndexExpr::Var(other) => Some(i64::from(*other == var)),
            IndexExpr::Binary(op, a, b) => {
                if !self.uses_var(var) {
                    return Some(0);
                }
                match op {
                    IndexOp::Add => a
                        .linear_coefficient(var)?
                        .checked_add(b.linear_coefficient(var)?),
                    IndexOp::Sub => a
                        .linear_coefficient(var)?
                        .checked_sub(b.linear_coefficient(var)?),
                    IndexOp::Mul => match (a.as_const(), b.as_const()) {
                        (Some(k), _) => b.linear_coefficient(var)?.checked_mul(k),
                        (_, Some(k)) => a.linear_coefficient(var)?.checked_mul(k),
                        _ => None,
                    },
                    IndexOp::FloorDiv | IndexOp::FloorMod | IndexOp::Min | IndexOp::Max => None,
                }
            }
        }
    }

    /// Replaces variables for which `replace` returns an expression.
    pub fn substitute(&self, replace: &dyn Fn(VarId) -> Option<IndexExpr>) -> IndexExpr {
        match self {
            IndexExpr::Const(_) => self.clone(),
            IndexExpr::Var(var) => replace(*var).unwrap_or_else(|| self.clone()),
            IndexExpr::Binary(op, a, b) => {
                IndexExpr::binary(*op, a.substitute(replace), b.substitute(replace))
            }
        }
    }
}

impl From<i64> for IndexExpr {
    fn from(value: i64) -> IndexExpr {
        IndexExpr::Const(value)
    }
}

impl From<VarId> for IndexExpr {
    fn from(var: VarId) -> IndexExpr {
        IndexExpr::Var(var)
    }
}

impl From<&IndexExpr> for IndexExpr {
    fn from(expr: &IndexExpr) -> IndexExpr {
        expr.clone()
    }
}

macro_rules! index_binop {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<T: Into<IndexExpr>> $trait<T> for IndexExpr {
            type Output = IndexExpr;
            fn $method(self, rhs: T) -> IndexExpr {
                IndexExpr::binary($op, self, rhs.into())
            }
        }
        impl<T: Into<IndexExpr>> $trait<T> for &IndexExpr {
            type Output = IndexExpr;
            fn $method(self, rhs: T) -> IndexExpr {
                IndexExpr::binary($op, self.clone(), rhs.into())
            }
        }
    };
}
index_binop!(Add, add, IndexOp::Add);
index_binop!(Sub, sub, IndexOp::Sub);
index_binop!(Mul, mul, IndexOp::Mul);

/// Comparison operators, for index and value conditions alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// Compares two values of any ordered type.
    pub fn compare<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }

    /// Whether every value in `low..=high` compares with zero as this operator says
    /// (`Some(true)`), none does (`Some(false)`), or it depends (`None`): how the simplifier and
    /// the backends decide a comparison `a - b` from its range.
    pub fn decide_against_zero(self, low: i64, high: i64) -> Option<bool> {
        let (always, never) = match self {
            CmpOp::Lt => (high < 0, low >= 0),
            CmpOp::Le => (high <= 0, low > 0),
            CmpOp::Gt => (low > 0, high <= 0),
            CmpOp::Ge => (low >= 0, high < 0),
            CmpOp::Eq => (low == 0 && high == 0, low > 0 || high < 0),
            CmpOp::Ne => (low > 0 || high < 0, low == 0 && high == 0),
        };
        match (always, never) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }

    /// The operator as printed in IR text.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// A boolean condition: guards of split tails and padding, and the condition of a select.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cond {
    /// Always true or always false.
    Const(bool),
    /// A comparison of two index expressions.
    Index(CmpOp, IndexExpr, IndexExpr),
    /// A comparison of two values of the same dtype.
    Value(CmpOp, Box<ValueExpr>, Box<ValueExpr>),
    /// Both hold.
    And(Box<Cond>, Box<Cond>),
    /// Either holds.
    Or(Box<Cond>, Box<Cond>),
    /// The condition does not hold.
    Not(Box<Cond>),
}

impl Cond {
    /// `self && other`.
    pub fn and(self, other: Cond) -> Cond {
        Cond::And(Box::new(self), Box::new(other))
    }

    /// `self || other`.
    pub fn or(self, other: Cond) -> Cond {
        Cond::Or(Box::new(self), Box::new(other))
    }

    /// The conjunction of all `conds` (`true` when empty).
    pub fn all(conds: impl IntoIterator<Item = Cond>) -> Cond {
        conds
            .into_iter()
            .reduce(Cond::and)
            .unwrap_or(Cond::Const(true))
    }
}

/// Binary operators on element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
    /// The fixed-point multiply of requantization, on `i32` only: `(a * b + 2^(s-1)) >> s`
    /// computed exactly in 64 bits (the shift arithmetic, so the result is rounded to the
    /// nearest integer with ties towards positive infinity; no rounding term when `s` is 0),
    /// then wrapped to `i32`. `s` is at most 62 (checked by the verifier), so the 64-bit sum
    /// cannot overflow for `i32` operands.
    MulShr(u8),
}

/// The largest shift [`BinaryOp::MulShr`] takes.
pub const MAX_MUL_SHIFT: u8 = 62;

/// Why an operation is not defined on a dtype, or `None` when it is. The IR defines division
/// and square roots on floats only (integer division has no agreed rounding here),
/// [`BinaryOp::MulShr`] on `i32` only (with a shift of at most [`MAX_MUL_SHIFT`]), and casts
/// from floats to integers only to `i32`, truncating towards zero and saturating (NaN is 0, as
/// Rust's `as`; C leaves out-of-range conversions undefined, so the C printer spells the
/// saturation out); every back end and both reference evaluators rely on this.
pub fn unsupported_op(value: &ValueExpr, operand: DType, result: DType) -> Option<String> {
    match value {
        ValueExpr::Binary(BinaryOp::Div, ..) | ValueExpr::Unary(UnaryOp::Sqrt, _)
            if operand.is_integer() =>
        {
            Some(format!(
                "division and square root are not defined on {operand}"
            ))
        }
        ValueExpr::Binary(BinaryOp::MulShr(shift), ..) => {
            if operand != DType::I32 {
                Some(format!("mulshr is defined on i32 only, not {operand}"))
            } else if *shift > MAX_MUL_SHIFT {
                Some(format!("mulshr shift {shift} is above {MAX_MUL_SHIFT}"))
            } else {
                None
            }
        }
        ValueExpr::Cast(..)
            if operand.is_float() && result.is_integer() && result != DType::I32 =>
        {
            Some(format!(
                "casts from {operand} to {result} are not defined (floats convert to i32 only)"
            ))
        }
        _ => None,
    }
}

impl BinaryOp {
    /// Evaluates on `f64` (the interpreter's float arithmetic). [`BinaryOp::MulShr`], an integer
    /// operation, is computed as on integers.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Min => a.min(b),
            BinaryOp::Max => a.max(b),
            BinaryOp::MulShr(_) => self.apply_int(a as i64, b as i64).unwrap_or(0) as f64,
        }
    }

    /// Evaluates on integers, exactly (in 128 bits where a product needs it), before the result
    /// is wrapped to the operands' type ([`crate::DType::wrap`]). `None` for a division, which
    /// the IR does not define on integers.
    pub fn apply_int(self, a: i64, b: i64) -> Option<i64> {
        Some(match self {
            BinaryOp::Add => a.wrapping_add(b),
            BinaryOp::Sub => a.wrapping_sub(b),
            BinaryOp::Mul => a.wrapping_mul(b),
            BinaryOp::Div => return None,
            BinaryOp::Min => a.min(b),
            BinaryOp::Max => a.max(b),
            BinaryOp::MulShr(shift) => {
                let shift = u32::from(shift.min(MAX_MUL_SHIFT));
                let rounding = if shift == 0 { 0 } else { 1i128 << (shift - 1) };
                ((i128::from(a) * i128::from(b) + rounding) >> shift) as i64
            }
        })
    }

    /// The operator as printed in IR text.
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Min => "min",
            BinaryOp::Max => "max",
            BinaryOp::MulShr(_) => "mulshr",
        }
    }
}

/// Unary operators on element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `-a`
    Neg,
    /// `|a|`
    Abs,
    /// `sqrt(a)`
    Sqrt,
}

impl UnaryOp {
    /// Evaluates on `f64`.
    pub fn apply(self, a: f64) -> f64 {
        match self {
            UnaryOp::Neg => -a,
            UnaryOp::Abs => a.abs(),
            UnaryOp::Sqrt => a.sqrt(),
        }
    }

    /// The operator's name in IR text.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
        }
    }
}

/// A read of one element: `buffer[indices...]`, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// The tensor or buffer read.
    pub buffer: BufferId,
    /// One index per dimension.
    pub indices: Vec<IndexExpr>,
}

/// An expression computing an element value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ValueExpr {
    /// A typed constant.
    Const(Scalar),
    /// An element of a tensor or buffer.
    Load(Load),
    /// A binary operation on two values of the same dtype.
    Binary(BinaryOp, Box<ValueExpr>, Box<ValueExpr>),
    /// A unary operation.
    Unary(UnaryOp, Box<ValueExpr>),
    /// `a * b + c`, fused where the target has it.
    Fma(Box<ValueExpr>, Box<ValueExpr>, Box<ValueExpr>),
    /// `cond ? a : b`. Only the chosen operand is evaluated, so a load guarded by the condition
    /// (the padding of a convolution) never reads out of bounds.
    Select(Box<Cond>, Box<ValueExpr>, Box<ValueExpr>),
    /// Converts a value to another dtype.
    Cast(DType, Box<ValueExpr>),
    /// An index expression's value as an element of the given dtype.
    FromIndex(DType, IndexExpr),
}

impl ValueExpr {
    /// An `f32` constant.
    pub fn f32(value: f32) -> ValueExpr {
        ValueExpr::Const(Scalar::f32(value))
    }

    /// A load of `buffer[indices]`.
    pub fn load(buffer: BufferId, indices: Vec<IndexExpr>) -> ValueExpr {
        ValueExpr::Load(Load { buffer, indices })
    }

    /// A binary operation node.
    pub fn binary(op: BinaryOp, a: ValueExpr, b: ValueExpr) -> ValueExpr {
        ValueExpr::Binary(op, Box::new(a), Box::new(b))
    }

    /// `max(self, other)`.
    pub fn max(self, other: ValueExpr) -> ValueExpr {
        ValueExpr::binary(BinaryOp::Max, self, other)
    }

    /// `min(self, other)`.
    pub fn min(self, other: ValueExpr) -> ValueExpr {
        ValueExpr::binary(BinaryOp::Min, self, other)
    }

    /// `self * b + c`, one rounding where the back end fuses it.
    pub fn fma(self, b: ValueExpr, c: ValueExpr) -> ValueExpr {
        ValueExpr::Fma(Box::new(self), Box::new(b), Box::new(c))
    }

    /// `cond ? then : otherwise`, evaluating only the chosen operand.
    pub fn select(cond: Cond, then: ValueExpr, otherwise: ValueExpr) -> ValueExpr {
        ValueExpr::Select(Box::new(cond), Box::new(then), Box::new(otherwise))
    }

    /// Calls `visit` on every load, outermost first.
    pub fn for_each_load(&self, visit: &mut dyn FnMut(&Load)) {
        self.walk(&mut |expr| {
            if let ValueExpr::Load(load) = expr {
                visit(load);
            }
        });
    }

    /// Calls `visit` on this expression and every value sub-expression, including those inside
    /// conditions.
    pub fn walk(&self, visit: &mut dyn FnMut(&ValueExpr)) {
        visit(self);
        match self {
            ValueExpr::Const(_) | ValueExpr::Load(_) | ValueExpr::FromIndex(..) => {}
            ValueExpr::Binary(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            ValueExpr::Unary(_, a) | ValueExpr::Cast(_, a) => a.walk(visit),
            ValueExpr::Fma(a, b, c) => {
                a.walk(visit);
                b.walk(visit);
                c.walk(visit);
            }
            ValueExpr::Select(cond, a, b) => {
                cond.walk_values(visit);
                a.walk(visit);
                b.walk(visit);
            }
        }
    }

    /// Whether `var` is read anywhere in the expression (indices, `FromIndex`, conditions).
    pub fn uses_var(&self, var: VarId) -> bool {
        let mut found = false;
        self.for_each_index(&mut |index| found |= index.uses_var(var));
        found
    }

    /// Calls `visit` on every index expression (load indices, `FromIndex`, index conditions).
    pub fn for_each_index(&self, visit: &mut dyn FnMut(&IndexExpr)) {
        self.walk(&mut |expr| match expr {
            ValueExpr::Load(load) => load.indices.iter().for_each(&mut *visit),
            ValueExpr::FromIndex(_, index) => visit(index),
            ValueExpr::Select(cond, _, _) => cond.for_each_index_shallow(visit),
            _ => {}
        });
    }

    /// Rebuilds the expression bottom-up, giving `rewrite` the chance to replace each node after
    /// its children were rebuilt. Index expressions are rewritten with `index`.
    pub fn rewrite(
        &self,
        index: &dyn Fn(&IndexExpr) -> IndexExpr,
        rewrite: &dyn Fn(ValueExpr) -> ValueExpr,
    ) -> ValueExpr {
        let rebuilt = match self {
            ValueExpr::Const(_) => self.clone(),
            ValueExpr::Load(load) => ValueExpr::Load(Load {
                buffer: load.buffer,
                indices: load.indices.iter().map(index).collect(),
            }),
            ValueExpr::Binary(op, a, b) => {
                ValueExpr::binary(*op, a.rewrite(index, rewrite), b.rewrite(index, rewrite))
            }
            ValueExpr::Unary(op, a) => ValueExpr::Unary(*op, Box::new(a.rewrite(index, rewrite))),
            ValueExpr::Cast(dtype, a) => {
                ValueExpr::Cast(*dtype, Box::new(a.rewrite(index, rewrite)))
            }
            ValueExpr::Fma(a, b, c) => ValueExpr::Fma(
                Box::new(a.rewrite(index, rewrite)),
                Box::new(b.rewrite(index, rewrite)),
                Box::new(c.rewrite(index, rewrite)),
            ),
            ValueExpr::Select(cond, a, b) => ValueExpr::Select(
                Box::new(cond.rewrite(index, rewrite)),
                Box::new(a.rewrite(index, rewrite)),
                Box::new(b.rewrite(index, rewrite)),
            ),
            ValueExpr::FromIndex(dtype, expr) => ValueExpr::FromIndex(*dtype, index(expr)),
        };
        rewrite(rebuilt)
    }

    /// Replaces index variables for which `replace` returns an expression.
    pub fn substitute(&self, replace: &dyn Fn(VarId) -> Option<IndexExpr>) -> ValueExpr {
        self.rewrite(&|expr| expr.substitute(replace), &|expr| expr)
    }
}

impl Cond {
    /// Calls `visit` on every value expression inside this condition (and their children).
    pub fn walk_values(&self, visit: &mut dyn FnMut(&ValueExpr)) {
        match self {
            Cond::Const(_) | Cond::Index(..) => {}
            Cond::Value(_, a, b) => {
                a.walk(visit);
                b.walk(visit);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.walk_values(visit);
                b.walk_values(visit);
            }
            Cond::Not(a) => a.walk_values(visit),
        }
    }

    /// Calls `visit` on the index expressions compared directly by this condition (not those
    /// inside its value comparisons, which [`ValueExpr::walk`] reaches).
    pub fn for_each_index_shallow(&self, visit: &mut dyn FnMut(&IndexExpr)) {
        match self {
            Cond::Const(_) | Cond::Value(..) => {}
            Cond::Index(_, a, b) => {
                visit(a);
                visit(b);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.for_each_index_shallow(visit);
                b.for_each_index_shallow(visit);
            }
            Cond::Not(a) => a.for_each_index_shallow(visit),
        }
    }

    /// Whether `var` is read anywhere in the condition, value comparisons included.
    pub fn uses_var(&self, var: VarId) -> bool {
        let mut found = false;
        self.for_each_index(&mut |index| found |= index.uses_var(var));
        found
    }

    /// Calls `visit` on every index expression, including those inside value comparisons.
    pub fn for_each_index(&self, visit: &mut dyn FnMut(&IndexExpr)) {
        self.for_each_index_shallow(visit);
        self.walk_values(&mut |value| match value {
            ValueExpr::Load(load) => load.indices.iter().for_each(&mut *visit),
            ValueExpr::FromIndex(_, index) => visit(index),
            ValueExpr::Select(cond, _, _) => cond.for_each_index_shallow(visit),
            _ => {}
        });
    }

    /// Rebuilds the condition, rewriting index and value expressions as
    /// [`ValueExpr::rewrite`] does.
    pub fn rewrite(
        &self,
        index: &dyn Fn(&IndexExpr) -> IndexExpr,
        rewrite: &dyn Fn(ValueExpr) -> ValueExpr,
    ) -> Cond {
        match self {
            Cond::Const(_) => self.clone(),
            Cond::Index(op, a, b) => Cond::Index(*op, index(a), index(b)),
            Cond::Value(op, a, b) => Cond::Value(
                *op,
                Box::new(a.rewrite(index, rewrite)),
                Box::new(b.rewrite(index, rewrite)),
            ),
            Cond::And(a, b) => a.rewrite(index, rewrite).and(b.rewrite(index, rewrite)),
            Cond::Or(a, b) => a.rewrite(index, rewrite).or(b.rewrite(index, rewrite)),
            Cond::Not(a) => Cond::Not(Box::new(a.rewrite(index, rewrite))),
        }
    }

    /// Replaces index variables for which `replace` returns an expression.
    pub fn substitute(&self, replace: &dyn Fn(VarId) -> Option<IndexExpr>) -> Cond {
        self.rewrite(&|expr| expr.substitute(replace), &|expr| expr)
    }
}

macro_rules! value_binop {
    ($trait:ident, $method:ident, $op:expr) => {
        impl $trait<ValueExpr> for ValueExpr {
            type Output = ValueExpr;
            fn $method(self, rhs: ValueExpr) -> ValueExpr {
                ValueExpr::binary($op, self, rhs)
            }
        }
    };
}
value_binop!(Add, add, BinaryOp::Add);
value_binop!(Sub, sub, BinaryOp::Sub);
value_binop!(Mul, mul, BinaryOp::Mul);

impl std::ops::Div<ValueExpr> for ValueExpr {
    type Output = ValueExpr;
    fn div(self, rhs: ValueExpr) -> ValueExpr {
        ValueExpr::binary(BinaryOp::Div, self, rhs)
    }
}

impl Neg for ValueExpr {
    type Output = ValueExpr;
    fn neg(self) -> ValueExpr {
        ValueExpr::Unary(UnaryOp::Neg, Box::new(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_coefficients_follow_affine_arithmetic_and_refuse_the_rest() {
        let v = VarId(0);
        let w = VarId(1);
        let expr = IndexExpr::Var(w) * 8 + IndexExpr::Var(v) * 3 - IndexExpr::Var(v);
        assert_eq!(expr.linear_coefficient(v), Some(2));
        assert_eq!(expr.linear_coefficient(w), Some(8));
        assert_eq!(IndexExpr::Var(v).floor_div(2).linear_coefficient(v), None);
        assert_eq!(
            IndexExpr::Var(w).floor_div(2).linear_coefficient(v),
            Some(0)
        );
        assert_eq!(
            (IndexExpr::Var(v) * IndexExpr::Var(w)).linear_coefficient(v),
            None
        );
    }

    #[test]
    fn floor_division_rounds_down() {
        assert_eq!(IndexOp::FloorDiv.apply(7, 2), Some(3));
        assert_eq!(IndexOp::FloorDiv.apply(-7, 2), Some(-4));
        assert_eq!(IndexOp::FloorDiv.apply(7, -2), Some(-4));
        assert_eq!(IndexOp::FloorDiv.apply(-7, -2), Some(3));
        assert_eq!(IndexOp::FloorMod.apply(-7, 2), Some(1));
        assert_eq!(IndexOp::FloorMod.apply(7, -2), Some(-1));
        assert_eq!(IndexOp::FloorDiv.apply(1, 0), None);
    }
}
