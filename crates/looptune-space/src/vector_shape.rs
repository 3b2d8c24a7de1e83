//! `VectorShape`: the vector machine a space is sized for.
//!
//! A register tile is only fast when it fills the target's vectors and fits in its vector
//! registers: the columns of a GEMM tile are whole vectors, its accumulators plus one row of `B`
//! and a broadcast of `A` must not spill. Those two numbers differ between backends running on
//! the same CPU (the Cranelift JIT stops at f32x4 with 16 XMM registers; C through gcc or clang
//! uses the full width: 8 lanes and 16 registers with AVX2, 16 lanes and 32 registers with
//! AVX-512), so the space takes them as plain data rather than reading a target, and this crate
//! stays independent of any backend.

use crate::error::SpaceError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The vector machine a space's register tiles and vectorized extents are sized for.
///
/// Plain data: a backend fills it in from what it emits on its target. The two numbers that
/// shape a space are `lanes` and `registers`; the cache sizes are carried for cache-block
/// choices and default to a typical x86-64 core's where unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VectorShape {
    /// f32 lanes per vector register the backend emits: 4 (SSE, or Cranelift on any x86-64),
    /// 8 (AVX2) or 16 (AVX-512). A power of two from 1 to 64.
    pub lanes: i64,
    /// Vector registers a register tile may occupy: 16 (SSE/AVX2), 32 (AVX-512). At least 3
    /// (one accumulator, one vector of `B`, one broadcast of `A`).
    pub registers: i64,
    /// Bytes of level-1 data cache per core.
    pub l1d_bytes: i64,
    /// Bytes of level-2 cache per core.
    pub l2_bytes: i64,
}

/// Level-1 data cache assumed where it is unknown: 32 KiB (Intel cores before Ice Lake, Zen).
pub const DEFAULT_L1D_BYTES: i64 = 32 << 10;
/// Level-2 cache assumed where it is unknown: 1 MiB (Skylake-SP and later server cores, Zen 4).
pub const DEFAULT_L2_BYTES: i64 = 1 << 20;

impl VectorShape {
    /// What the Cranelift JIT emits on x86-64: f32x4 vectors, 16 XMM registers (Cranelift
    /// cannot encode 256- or 512-bit forms, nor xmm16-31). The shape every space had before
    /// spaces knew about targets, and still the one `Task::new` uses.
    pub const CRANELIFT: VectorShape = VectorShape::new(4, 16);
    /// AVX2 at full width: 8 f32 lanes (ymm), 16 registers.
    pub const AVX2: VectorShape = VectorShape::new(8, 16);
    /// AVX-512 at full width: 16 f32 lanes (zmm), 32 registers.
    pub const AVX512: VectorShape = VectorShape::new(16, 32);

    /// `lanes` f32 lanes per vector and `registers` vector registers, with the default cache
    /// sizes ([`DEFAULT_L1D_BYTES`], [`DEFAULT_L2_BYTES`]).
    pub const fn new(lanes: i64, registers: i64) -> VectorShape {
        VectorShape {
            lanes,
            registers,
            l1d_bytes: DEFAULT_L1D_BYTES,
            l2_bytes: DEFAULT_L2_BYTES,
        }
    }

    /// The same vectors with known cache sizes.
    pub const fn with_caches(self, l1d_bytes: i64, l2_bytes: i64) -> VectorShape {
        VectorShape {
            l1d_bytes,
            l2_bytes,
            ..self
        }
    }

    /// The Cranelift shape ([`VectorShape::CRANELIFT`]).
    pub const fn cranelift() -> VectorShape {
        VectorShape::CRANELIFT
    }

    /// The AVX2 shape ([`VectorShape::AVX2`]).
    pub const fn avx2() -> VectorShape {
        VectorShape::AVX2
    }

    /// The AVX-512 shape ([`VectorShape::AVX512`]).
    pub const fn avx512() -> VectorShape {
        VectorShape::AVX512
    }

    /// Vectors needed for `extent` consecutive f32 values (a partial vector counts whole).
    pub fn vectors(&self, extent: i64) -> i64 {
        (extent + self.lanes - 1) / self.lanes
    }

    /// Whether `extent` is a whole number of vectors.
    pub fn is_whole_vectors(&self, extent: i64) -> bool {
        extent % self.lanes == 0
    }

    /// The shape, or an error naming what no template can size a space for.
    pub fn check(&self) -> Result<(), SpaceError> {
        let problem = if !(1..=64).contains(&self.lanes) || self.lanes.count_ones() != 1 {
            Some("lanes must be a power of two from 1 to 64")
        } else if !(3..=1024).contains(&self.registers) {
            Some("registers must be from 3 to 1024")
        } else if self.l1d_bytes <= 0 || self.l2_bytes <= 0 {
            Some("cache sizes must be positive")
        } else {
            None
        };
        match problem {
            Some(message) => Err(SpaceError::BadVectorShape {
                shape: self.to_string(),
                message: message.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl Default for VectorShape {
    /// [`VectorShape::CRANELIFT`].
    fn default() -> VectorShape {
        VectorShape::CRANELIFT
    }
}

impl fmt::Display for VectorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "f32x{} x {} registers, L1d {} KiB, L2 {} KiB",
            self.lanes,
            self.registers,
            self.l1d_bytes >> 10,
            self.l2_bytes >> 10
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_backends() {
        assert_eq!(
            (
                VectorShape::CRANELIFT.lanes,
                VectorShape::CRANELIFT.registers
            ),
            (4, 16)
        );
        assert_eq!(
            (VectorShape::avx2().lanes, VectorShape::avx2().registers),
            (8, 16)
        );
        assert_eq!(
            (VectorShape::avx512().lanes, VectorShape::avx512().registers),
            (16, 32)
        );
        assert_eq!(VectorShape::default(), VectorShape::cranelift());
        assert_eq!(VectorShape::AVX2.vectors(17), 3);
        assert!(VectorShape::AVX512.is_whole_vectors(48));
        assert!(!VectorShape::AVX512.is_whole_vectors(24));
        assert_eq!(
            VectorShape::AVX2.with_caches(48 << 10, 2 << 20).to_string(),
            "f32x8 x 16 registers, L1d 48 KiB, L2 2048 KiB"
        );
    }

    #[test]
    fn shapes_no_template_can_size_are_errors_that_name_them() {
        for (shape, message) in [
            (
                VectorShape::new(6, 16),
                "lanes must be a power of two from 1 to 64",
            ),
            (
                VectorShape::new(0, 16),
                "lanes must be a power of two from 1 to 64",
            ),
            (VectorShape::new(8, 2), "registers must be from 3 to 1024"),
            (
                VectorShape::AVX2.with_caches(0, 1 << 20),
                "cache sizes must be positive",
            ),
        ] {
            assert_eq!(
                shape.check(),
                Err(SpaceError::BadVectorShape {
                    shape: shape.to_string(),
                    message: message.to_string(),
                })
            );
        }
        for shape in [
            VectorShape::CRANELIFT,
            VectorShape::AVX2,
            VectorShape::AVX512,
        ] {
            assert_eq!(shape.check(), Ok(()));
        }
    }
}
