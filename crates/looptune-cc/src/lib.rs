//! `looptune-cc`: the C back end's printer. A lowered [`looptune_ir::LoopNest`] goes in, plain C
//! source comes out, for gcc or clang to compile into full-width vector code.
//!
//! Why C: the Cranelift JIT (`looptune-jit`) compiles in milliseconds but has 128-bit vectors
//! only. gcc and clang have 256- and 512-bit vectors, a mature register allocator and
//! instruction scheduler; what they lack is knowledge of the schedule, so the printer does the
//! schedule-specific work itself and hands the compiler code it cannot misread:
//! - unrolled loops are unrolled here, so their indices are constants;
//! - vectorized loops become GCC vector-extension code (4, 8 or 16 `f32` lanes), contiguous
//!   accesses one unaligned vector load or store, loop-invariant values broadcasts;
//! - register tiles (temporaries indexed only by constants once unrolled) become local vector
//!   variables, which the compiler keeps in registers across the reduction loop.
//!
//! The printed C has no `#include` and one exported function (see [`emit`] for the ABI, which
//! is `looptune-jit`'s runtime table, so both back ends share one runtime). Compiling, caching
//! and loading the code is another crate's job; this one only prints.
//!
//! **Invariant:** this crate runs no compiler and executes no code (its tests do).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod emit;

pub use emit::{emit_c, EmitError, EmitOptions};
