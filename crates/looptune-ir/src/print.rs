//! The pretty printer: loop nests as text people can read and snapshot tests can compare.
//!
//! The format is meant for eyes, not for parsing back:
//!
//! ```text
//! kernel scale(A: f32[10]) -> (B: f32[10]) {
//!   for i.outer in 0..3 {
//!     vectorize i.inner in 0..4 {
//!       if (i.outer * 4 + i.inner < 10) {
//!         B[i.outer * 4 + i.inner] = A[i.outer * 4 + i.inner] * 2.0
//!       }
//!     }
//!   }
//! }
//! ```
//!
//! Operators get the fewest parentheses their precedence allows, except that a right operand of
//! equal precedence keeps them (`a - (b - c)`, and for floats also `a + (b + c)`, since float
//! addition does not associate). `f32` constants, the common case, print without a type suffix;
//! other dtypes keep theirs (`1.0f64`, `3i32`). Names come from the nest's tables; an id outside
//! them prints as `v7` or `buf7` instead of panicking, so broken nests can still be shown in
//! error messages.

use crate::dtype::{DType, Scalar};
use crate::expr::{BinaryOp, BufferId, Cond, IndexExpr, IndexOp, UnaryOp, ValueExpr, VarId};
use crate::loop_nest::{BufferDecl, LoopNest, Stmt};
use std::fmt::{self, Write};

/// A piece of a nest (an expression, a condition or a statement) paired with the nest that
/// names its variables and buffers, so it can be displayed.
pub struct Printed<'a, T: ?Sized> {
    nest: &'a LoopNest,
    item: &'a T,
}

impl<'a, T: ?Sized> Printed<'a, T> {
    /// Pairs `item` with the `nest` it belongs to.
    pub fn new(nest: &'a LoopNest, item: &'a T) -> Printed<'a, T> {
        Printed { nest, item }
    }
}

impl fmt::Display for Printed<'_, IndexExpr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        Printer::new(self.nest, &mut out).index(self.item, 0);
        f.write_str(&out)
    }
}

impl fmt::Display for Printed<'_, ValueExpr> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        Printer::new(self.nest, &mut out).value(self.item, 0);
        f.write_str(&out)
    }
}

impl fmt::Display for Printed<'_, Cond> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        Printer::new(self.nest, &mut out).cond(self.item, 0);
        f.write_str(&out)
    }
}

/// A statement prints as lines indented from column zero, without a final newline.
impl fmt::Display for Printed<'_, Stmt> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        Printer::new(self.nest, &mut out).stmt(self.item, 0);
        f.write_str(out.trim_end_matches('\n'))
    }
}

impl fmt::Display for LoopNest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let mut printer = Printer::new(self, &mut out);
        printer.out.push_str("kernel ");
        printer.out.push_str(&self.name);
        printer.params(&self.inputs);
        printer.out.push_str(" -> ");
        printer.params(&self.outputs);
        printer.out.push_str(" {\n");
        printer.stmt(&self.body, 1);
        printer.out.push('}');
        f.write_str(&out)
    }
}

/// Precedence levels: a child whose level is lower than its context gets parentheses.
const SUM: u8 = 1;
const PRODUCT: u8 = 2;
const PREFIX: u8 = 3;
const ATOM: u8 = 4;

struct Printer<'a, 'o> {
    nest: &'a LoopNest,
    out: &'o mut String,
}

impl<'a, 'o> Printer<'a, 'o> {
    fn new(nest: &'a LoopNest, out: &'o mut String) -> Printer<'a, 'o> {
        Printer { nest, out }
    }

    fn var(&mut self, var: VarId) {
        match self.nest.vars.get(var.index()) {
            Some(decl) => self.out.push_str(&decl.name),
            None => {
                let _ = write!(self.out, "v{}", var.0);
            }
        }
    }

    fn buffer_name(&mut self, buffer: BufferId) {
        match self.nest.buffers.get(buffer.index()) {
            Some(decl) => self.out.push_str(&decl.name),
            None => {
                let _ = write!(self.out, "buf{}", buffer.0);
            }
        }
    }

    fn buffer_decl(&mut self, decl: &BufferDecl) {
        let _ = write!(self.out, "{}: {}[", decl.name, decl.dtype);
        for (dim, extent) in decl.shape.iter().enumerate() {
            if dim > 0 {
                self.out.push_str(", ");
            }
            let _ = write!(self.out, "{extent}");
        }
        self.out.push(']');
    }

    fn params(&mut self, params: &[BufferId]) {
        self.out.push('(');
        for (position, &buffer) in params.iter().enumerate() {
            if position > 0 {
                self.out.push_str(", ");
            }
            match self.nest.buffers.get(buffer.index()) {
                Some(decl) => self.buffer_decl(decl),
                None => self.buffer_name(buffer),
            }
        }
        self.out.push(')');
    }

    fn access(&mut self, buffer: BufferId, indices: &[IndexExpr]) {
        self.buffer_name(buffer);
        self.out.push('[');
        for (position, index) in indices.iter().enumerate() {
            if position > 0 {
                self.out.push_str(", ");
            }
            self.index(index, 0);
        }
        self.out.push(']');
    }

    fn open(&mut self, needed: bool) {
        if needed {
            self.out.push('(');
        }
    }

    fn close(&mut self, needed: bool) {
        if needed {
            self.out.push(')');
        }
    }

    /// Prints `expr` in a context of precedence `context`.
    fn index(&mut self, expr: &IndexExpr, context: u8) {
        match expr {
            IndexExpr::Const(value) => {
                let _ = write!(self.out, "{value}");
            }
            IndexExpr::Var(var) => self.var(*var),
            IndexExpr::Binary(op @ (IndexOp::Min | IndexOp::Max), a, b) => {
                let _ = write!(self.out, "{}(", op.symbol());
                self.index(a, 0);
                self.out.push_str(", ");
                self.index(b, 0);
                self.out.push(')');
            }
            IndexExpr::Binary(op, a, b) => {
                let level = index_level(expr);
                let parens = level < context;
                self.open(parens);
                self.index(a, level);
                let _ = write!(self.out, " {} ", op.symbol());
                // Integer `+` and `*` associate, so `a + (b + c)` may print as `a + b + c`.
                let associates = matches!(
                    (op, &**b),
                    (IndexOp::Add, IndexExpr::Binary(IndexOp::Add, ..))
                        | (IndexOp::Mul, IndexExpr::Binary(IndexOp::Mul, ..))
                );
                self.index(b, if associates { level } else { level + 1 });
                self.close(parens);
            }
        }
    }

    fn value(&mut self, expr: &ValueExpr, context: u8) {
        match expr {
            ValueExpr::Const(scalar) => self.scalar(*scalar),
            ValueExpr::Load(load) => self.access(load.buffer, &load.indices),
            ValueExpr::Binary(op @ (BinaryOp::Min | BinaryOp::Max), a, b) => {
                self.call(op.symbol(), &[a, b]);
            }
            ValueExpr::Binary(BinaryOp::MulShr(shift), a, b) => {
                let name = format!("mulshr{shift}");
                self.call(&name, &[a, b]);
            }
            ValueExpr::Binary(op, a, b) => {
                let level = value_level(expr);
                let parens = level < context;
                self.open(parens);
                self.value(a, level);
                let _ = write!(self.out, " {} ", op.symbol());
                self.value(b, level + 1);
                self.close(parens);
            }
            ValueExpr::Unary(UnaryOp::Neg, a) => {
                let parens = PREFIX < context;
                self.open(parens);
                self.out.push('-');
                self.value(a, PREFIX);
                self.close(parens);
            }
            ValueExpr::Unary(op, a) => self.call(op.name(), &[a]),
            ValueExpr::Fma(a, b, c) => self.call("fma", &[a, b, c]),
            ValueExpr::Select(cond, a, b) => {
                self.out.push_str("select(");
                self.cond(cond, 0);
                self.out.push_str(", ");
                self.value(a, 0);
                self.out.push_str(", ");
                self.value(b, 0);
                self.out.push(')');
            }
            ValueExpr::Cast(dtype, a) => self.call(dtype.name(), &[a]),
            ValueExpr::FromIndex(dtype, index) => {
                let _ = write!(self.out, "{dtype}(");
                self.index(index, 0);
                self.out.push(')');
            }
        }
    }

    fn call(&mut self, name: &str, args: &[&ValueExpr]) {
        self.out.push_str(name);
        self.out.push('(');
        for (position, arg) in args.iter().enumerate() {
            if position > 0 {
                self.out.push_str(", ");
            }
            self.value(arg, 0);
        }
        self.out.push(')');
    }

    fn scalar(&mut self, scalar: Scalar) {
        if scalar.dtype == DType::F32 {
            // `{:?}` on f32 gives the shortest text that reads back to the same f32, always
            // with a decimal point or exponent (`0.0`, `0.1`, `1e-8`, `inf`).
            let _ = write!(self.out, "{:?}", scalar.value as f32);
        } else {
            let _ = write!(self.out, "{scalar}");
        }
    }

    fn cond(&mut self, cond: &Cond, context: u8) {
        match cond {
            Cond::Const(value) => {
                let _ = write!(self.out, "{value}");
            }
            Cond::Index(op, a, b) => {
                let parens = PREFIX < context;
                self.open(parens);
                self.index(a, 0);
                let _ = write!(self.out, " {} ", op.symbol());
                self.index(b, 0);
                self.close(parens);
            }
            Cond::Value(op, a, b) => {
                let parens = PREFIX < context;
                self.open(parens);
                self.value(a, 0);
                let _ = write!(self.out, " {} ", op.symbol());
                self.value(b, 0);
                self.close(parens);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                let (level, symbol) = match cond {
                    Cond::Or(..) => (SUM, "||"),
                    _ => (PRODUCT, "&&"),
                };
                let parens = level < context;
                self.open(parens);
                self.cond(a, level);
                let _ = write!(self.out, " {symbol} ");
                self.cond(b, level + 1);
                self.close(parens);
            }
            Cond::Not(inner) => {
                self.out.push('!');
                self.cond(inner, ATOM);
            }
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn stmt(&mut self, stmt: &Stmt, depth: usize) {
        match stmt {
            Stmt::For(for_loop) => {
                self.indent(depth);
                let _ = write!(self.out, "{} ", for_loop.kind.keyword());
                self.var(for_loop.var);
                let _ = writeln!(self.out, " in 0..{} {{", for_loop.extent);
                self.block(&for_loop.body, depth);
            }
            Stmt::Seq(stmts) => {
                for stmt in stmts {
                    self.stmt(stmt, depth);
                }
            }
            Stmt::Store {
                buffer,
                indices,
                value,
            } => {
                self.indent(depth);
                self.access(*buffer, indices);
                self.out.push_str(" = ");
                self.value(value, 0);
                self.out.push('\n');
            }
            Stmt::If { cond, then } => {
                self.indent(depth);
                self.out.push_str("if (");
                self.cond(cond, 0);
                self.out.push_str(") {\n");
                self.block(then, depth);
            }
            Stmt::Alloc { buffer, body } => {
                self.indent(depth);
                self.out.push_str("alloc ");
                match self.nest.buffers.get(buffer.index()) {
                    Some(decl) => self.buffer_decl(decl),
                    None => self.buffer_name(*buffer),
                }
                self.out.push_str(" {\n");
                self.block(body, depth);
            }
        }
    }

    /// The body of a braced statement whose opening line is printed, and its closing brace.
    fn block(&mut self, body: &Stmt, depth: usize) {
        self.stmt(body, depth + 1);
        self.indent(depth);
        self.out.push_str("}\n");
    }
}

fn index_level(expr: &IndexExpr) -> u8 {
    match expr {
        IndexExpr::Binary(IndexOp::Add | IndexOp::Sub, ..) => SUM,
        IndexExpr::Binary(IndexOp::Mul | IndexOp::FloorDiv | IndexOp::FloorMod, ..) => PRODUCT,
        // A negative constant reads like a negation.
        IndexExpr::Const(value) if *value < 0 => PREFIX,
        _ => ATOM,
    }
}

fn value_level(expr: &ValueExpr) -> u8 {
    match expr {
        ValueExpr::Binary(BinaryOp::Add | BinaryOp::Sub, ..) => SUM,
        ValueExpr::Binary(BinaryOp::Mul | BinaryOp::Div, ..) => PRODUCT,
        ValueExpr::Unary(UnaryOp::Neg, _) => PREFIX,
        ValueExpr::Const(scalar) if scalar.value.is_sign_negative() => PREFIX,
        _ => ATOM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::CmpOp;
    use crate::loop_nest::{BufferRole, LoopKind};
    use crate::test_nests::*;
    use expect_test::{expect, Expect};

    fn check(nest: &LoopNest, expect: Expect) {
        expect.assert_eq(&nest.to_string());
    }

    /// A nest storing `value` to `Out[index]` inside loops over `i`, `j` and `k`, to print
    /// expressions in context.
    fn expression_nest(
        index: impl Fn(VarId, VarId, VarId) -> IndexExpr,
        value: impl Fn(BufferId, VarId, VarId) -> ValueExpr,
    ) -> LoopNest {
        let mut b = Builder::new("expr");
        let (i, j, k) = (b.var("i"), b.var("j"), b.var("k"));
        let a = b.buffer("A", &[8, 8], BufferRole::Input);
        let out = b.buffer("Out", &[64], BufferRole::Output);
        let body = for_(
            i,
            8,
            for_(
                j,
                8,
                for_(k, 8, store(out, vec![index(i, j, k)], value(a, i, j))),
            ),
        );
        b.finish(body)
    }

    #[test]
    fn plain_matmul() {
        check(
            &matmul(64, 48, 32),
            expect![[r#"
                kernel matmul(A: f32[64, 32], B: f32[32, 48]) -> (C: f32[64, 48]) {
                  for i in 0..64 {
                    for j in 0..48 {
                      C[i, j] = 0.0
                      for k in 0..32 {
                        C[i, j] = C[i, j] + A[i, k] * B[k, j]
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn vectorized_tail_guard() {
        check(
            &scaled_with_tail(10),
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
    fn local_accumulator() {
        check(
            &tiled_matmul(8, 8, 3),
            expect![[r#"
                kernel matmul_tiled(A: f32[8, 3], B: f32[3, 8]) -> (C: f32[8, 8]) {
                  parallel i in 0..8 {
                    for j.outer in 0..2 {
                      alloc C.local: f32[4] {
                        vectorize j.inner.init in 0..4 {
                          C.local[j.inner.init] = 0.0
                        }
                        for k in 0..3 {
                          vectorize j.inner in 0..4 {
                            C.local[j.inner] = fma(A[i, k], B[k, j.outer * 4 + j.inner], C.local[j.inner])
                          }
                        }
                        unroll j.inner.out in 0..4 {
                          C[i, j.outer * 4 + j.inner.out] = C.local[j.inner.out]
                        }
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn index_parentheses_follow_precedence() {
        let nest = expression_nest(
            |i, j, k| {
                ((v(i) + v(j)) * 2 - (v(j) - v(k))).floor_div(v(k) * 3)
                    + (v(i) + (v(j) + v(k)))
                    + v(i).floor_mod(4).min(v(j).max(-1))
            },
            |a, i, j| load(a, vec![v(i), v(j)]),
        );
        check(
            &nest,
            expect![[r#"
                kernel expr(A: f32[8, 8]) -> (Out: f32[64]) {
                  for i in 0..8 {
                    for j in 0..8 {
                      for k in 0..8 {
                        Out[((i + j) * 2 - (j - k)) / (k * 3) + i + j + k + min(i % 4, max(j, -1))] = A[i, j]
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn value_parentheses_and_calls() {
        let nest = expression_nest(
            |i, _, _| v(i),
            |a, i, j| {
                let x = load(a, vec![v(i), v(j)]);
                let y = load(a, vec![v(j), v(i)]);
                let sum = x.clone() + y.clone();
                ValueExpr::select(
                    Cond::Value(
                        CmpOp::Gt,
                        Box::new(x.clone()),
                        Box::new(ValueExpr::f32(0.5)),
                    )
                    .and(Cond::Not(Box::new(v(i).lt(v(j)))))
                    .or(Cond::Const(false)),
                    -sum.clone() * (x.clone() - (y.clone() - x.clone())),
                    ValueExpr::Unary(UnaryOp::Sqrt, Box::new(sum / ValueExpr::f32(0.1)))
                        .max(ValueExpr::FromIndex(DType::F32, v(i) + 1))
                        + ValueExpr::Cast(DType::F32, Box::new(ValueExpr::f32(-3.0)))
                        + x.fma(y, ValueExpr::f32(1e-8)),
                )
            },
        );
        check(
            &nest,
            expect![[r#"
                kernel expr(A: f32[8, 8]) -> (Out: f32[64]) {
                  for i in 0..8 {
                    for j in 0..8 {
                      for k in 0..8 {
                        Out[i] = select(A[i, j] > 0.5 && !(i < j) || false, -(A[i, j] + A[j, i]) * (A[i, j] - (A[j, i] - A[i, j])), max(sqrt((A[i, j] + A[j, i]) / 0.1), f32(i + 1)) + f32(-3.0) + fma(A[i, j], A[j, i], 1e-8))
                      }
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn non_f32_constants_keep_their_suffix() {
        let nest = expression_nest(
            |i, _, _| v(i),
            |_, _, _| {
                ValueExpr::Cast(
                    DType::F32,
                    Box::new(
                        ValueExpr::Const(Scalar {
                            dtype: DType::F64,
                            value: 2.5,
                        }) + ValueExpr::Const(Scalar::lowest(DType::F64)),
                    ),
                )
            },
        );
        let body = Printed::new(&nest, &nest.body).to_string();
        assert!(body.contains("= f32(2.5f64 + -inff64)"), "{body}");
    }

    #[test]
    fn broken_ids_print_instead_of_panicking() {
        let mut b = Builder::new("broken");
        let i = b.var("i");
        let nest = b.finish(loop_(
            LoopKind::Serial,
            i,
            2,
            store(BufferId(9), vec![v(VarId(7))], ValueExpr::f32(1.0)),
        ));
        check(
            &nest,
            expect![[r#"
                kernel broken() -> () {
                  for i in 0..2 {
                    buf9[v7] = 1.0
                  }
                }"#]],
        );
    }
}
