//! Element types as C: type names, literals, and integer operations with the IR's semantics.
//!
//! The IR's integers wrap to their type after every operation. C's do not quite: `int`
//! arithmetic that overflows is undefined, and operands narrower than `int` are promoted. So
//! `i32` sums, differences and products are printed on `unsigned` operands and converted back
//! (gcc and clang define that conversion as wrapping), and narrower results are converted to
//! their type, which wraps the same way. Values of narrow types are promoted to `int` by C
//! wherever they meet an operator, which never changes them.

use looptune_ir::{BinaryOp, DType, Scalar, UnaryOp};

/// The C type of one element.
pub(crate) fn c_type(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "lt_u8",
        DType::I8 => "lt_i8",
        DType::I16 => "lt_i16",
        DType::I32 => "lt_i32",
        // `check_dtypes` admits no other dtype.
        _ => "float",
    }
}

/// Whether the printer prints buffers and values of `dtype`.
pub(crate) fn printable(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32 | DType::U8 | DType::I8 | DType::I16 | DType::I32
    )
}

/// A C literal of an integer constant, of its own type.
pub(crate) fn int_literal(scalar: Scalar) -> String {
    let value = scalar.dtype.wrap(scalar.value as i64);
    if scalar.dtype == DType::I32 && value == i64::from(i32::MIN) {
        // `-2147483648` is a negated `long` literal in C.
        return "((lt_i32)(-2147483647 - 1))".to_string();
    }
    format!("(({}){value})", c_type(scalar.dtype))
}

/// An integer binary operation of the IR on C operands `a` and `b` of type `dtype`.
pub(crate) fn int_binary(op: BinaryOp, dtype: DType, a: &str, b: &str) -> String {
    let t = c_type(dtype);
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => {
            let symbol = op.symbol();
            format!("(({t})((lt_u32)({a}) {symbol} (lt_u32)({b})))")
        }
        BinaryOp::Min => format!("({{ {t} lt_a = {a}, lt_b = {b}; lt_a < lt_b ? lt_a : lt_b; }})"),
        BinaryOp::Max => format!("({{ {t} lt_a = {a}, lt_b = {b}; lt_a > lt_b ? lt_a : lt_b; }})"),
        BinaryOp::MulShr(shift) => {
            let rounding = if shift == 0 { 0 } else { 1i64 << (shift - 1) };
            format!("((lt_i32)(((lt_i64)({a}) * (lt_i64)({b}) + {rounding}LL) >> {shift}))")
        }
        // The verifier refuses integer division.
        BinaryOp::Div => format!("(({t})0)"),
    }
}

/// An integer unary operation of the IR on a C operand of type `dtype`.
pub(crate) fn int_unary(op: UnaryOp, dtype: DType, a: &str) -> String {
    let t = c_type(dtype);
    match op {
        UnaryOp::Neg => format!("(({t})(0u - (lt_u32)({a})))"),
        UnaryOp::Abs => {
            format!("({{ {t} lt_a = {a}; lt_a < 0 ? ({t})(0u - (lt_u32)lt_a) : lt_a; }})")
        }
        // The verifier refuses integer square roots.
        UnaryOp::Sqrt => a.to_string(),
    }
}

/// `a * b + c` on integers of type `dtype`, wrapping.
pub(crate) fn int_fma(dtype: DType, a: &str, b: &str, c: &str) -> String {
    let t = c_type(dtype);
    format!("(({t})((lt_u32)(({t})((lt_u32)({a}) * (lt_u32)({b}))) + (lt_u32)({c})))")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_have_their_type_and_the_lowest_i32_is_not_a_long() {
        assert_eq!(int_literal(Scalar::int(DType::U8, 200)), "((lt_u8)200)");
        assert_eq!(int_literal(Scalar::i32(-5)), "((lt_i32)-5)");
        assert_eq!(
            int_literal(Scalar::i32(i32::MIN)),
            "((lt_i32)(-2147483647 - 1))"
        );
    }

    #[test]
    fn i32_arithmetic_goes_through_unsigned_and_mulshr_through_64_bits() {
        assert_eq!(
            int_binary(BinaryOp::Add, DType::I32, "a", "b"),
            "((lt_i32)((lt_u32)(a) + (lt_u32)(b)))"
        );
        assert_eq!(
            int_binary(BinaryOp::MulShr(31), DType::I32, "a", "b"),
            "((lt_i32)(((lt_i64)(a) * (lt_i64)(b) + 1073741824LL) >> 31))"
        );
    }
}
