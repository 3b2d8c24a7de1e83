//! Element types and typed scalar constants.
//!
//! Only `f32` kernels are built today, but every tensor, buffer and constant carries a [`DType`]
//! so that int8 GEMM with i32 accumulation and f64 can be added without changing the IR's shape.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor, a buffer or a value expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit IEEE float, the only type the operator library uses today.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 8-bit signed integer (planned: int8 GEMM inputs).
    I8,
    /// 32-bit signed integer (planned: int8 GEMM accumulators).
    I32,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 => 8,
            DType::I8 => 1,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// The short name used in printed IR and workload strings (`f32`, `i8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
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
            DType::I8 => i8::MIN as f64,
            DType::I32 => i32::MIN as f64,
        };
        Scalar { dtype, value }
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
