//! Element types and typed scalar constants.
//!
//! Every tensor, buffer and constant carries a [`DType`]. Floats are IEEE; integers are two's
//! complement and their arithmetic wraps to the type (see [`DType::wrap`]), the same in the
//! interpreter, the evaluator and every back end, so that an integer kernel can be checked bit
//! for bit. Widening between types is always an explicit [`crate::ValueExpr::Cast`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor, a buffer or a value expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 8-bit unsigned integer: quantized activations.
    U8,
    /// 8-bit signed integer: quantized weights.
    I8,
    /// 16-bit signed integer: widened operands of a pairwise dot product.
    I16,
    /// 32-bit signed integer: accumulators, biases, requantization multipliers.
    I32,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::I16 => 2,
            DType::U8 | DType::I8 => 1,
        }
    }

    /// Whether this is an integer type.
    pub fn is_integer(self) -> bool {
        !self.is_float()
    }

    /// Whether this is a signed integer type.
    pub fn is_signed_integer(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32)
    }

    /// The smallest and largest value of an integer type (`None` for floats).
    pub fn integer_range(self) -> Option<(i64, i64)> {
        match self {
            DType::U8 => Some((0, u8::MAX as i64)),
            DType::I8 => Some((i8::MIN as i64, i8::MAX as i64)),
            DType::I16 => Some((i16::MIN as i64, i16::MAX as i64)),
            DType::I32 => Some((i32::MIN as i64, i32::MAX as i64)),
            DType::F32 | DType::F64 => None,
        }
    }

    /// `value` wrapped to an integer type, two's complement (the low bits kept, then sign- or
    /// zero-extended): the result of every integer operation and integer-to-integer cast.
    /// Floats are returned unchanged.
    pub fn wrap(self, value: i64) -> i64 {
        match self {
            DType::U8 => value as u8 as i64,
            DType::I8 => value as i8 as i64,
            DType::I16 => value as i16 as i64,
            DType::I32 => value as i32 as i64,
            DType::F32 | DType::F64 => value,
        }
    }

    /// Every dtype, for parsers and tests.
    pub const ALL: [DType; 6] = [
        DType::F32,
        DType::F64,
        DType::U8,
        DType::I8,
        DType::I16,
        DType::I32,
    ];

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// The short name used in printed IR and workload strings (`f32`, `i8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A constant of a given [`DType`].
///
/// Float constants are stored as `f64` and rounded to the element type where they are used, so
/// that `f32` and `f64` share one representation without losing `f32` values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    /// The type this constant has in expressions.
    pub dtype: DType,
    /// The value; integers are exact in `f64` for the types we support.
    pub value: f64,
}

impl Scalar {
    /// An `f32` constant.
    pub fn f32(value: f32) -> Scalar {
        Scalar {
            dtype: DType::F32,
            value: value as f64,
        }
    }

    /// The additive identity of `dtype`.
    pub fn zero(dtype: DType) -> Scalar {
        Scalar { dtype, value: 0.0 }
    }

    /// The identity of `max` for `dtype`: negative infinity for floats, the minimum for integers.
    pub fn lowest(dtype: DType) -> Scalar {
        let value = match dtype {
            DType::F32 | DType::F64 => f64::NEG_INFINITY,
            integer => integer.integer_range().map_or(0, |(low, _)| low) as f64,
        };
        Scalar { dtype, value }
    }

    /// An integer constant of `dtype`, wrapped to it.
    pub fn int(dtype: DType, value: i64) -> Scalar {
        Scalar {
            dtype,
            value: dtype.wrap(value) as f64,
        }
    }

    /// An `i32` constant.
    pub fn i32(value: i32) -> Scalar {
        Scalar::int(DType::I32, value as i64)
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dtype.is_float() {
            if self.value.is_infinite() {
                let sign = if self.value < 0.0 { "-" } else { "" };
                write!(f, "{sign}inf{}", self.dtype)
            } else if self.value.fract() == 0.0 && self.value.abs() < 1e15 {
                write!(f, "{:.1}{}", self.value, self.dtype)
            } else {
                write!(f, "{}{}", self.value, self.dtype)
            }
        } else {
            write!(f, "{}{}", self.value as i64, self.dtype)
        }
    }
}
