//! `looptune-cc`: the C backend. A lowered [`looptune_ir::LoopNest`] is printed as plain C with
//! GCC vector extensions, compiled by the system C compiler into a shared object, loaded, and
//! called through the same safe [`looptune_runtime::Kernel`] as the Cranelift backend's kernels.
//!
//! Why C: the Cranelift JIT (`looptune-jit`) compiles in milliseconds but has 128-bit vectors
//! only. gcc and clang have 256- and 512-bit vectors, a mature register allocator and
//! instruction scheduler; what they lack is knowledge of the schedule, so the printer ([`emit`])
//! does the schedule-specific work itself and hands the compiler code it cannot misread.
//!
//! - [`emit`] prints C (no `#include`, one exported function using the runtime table of
//!   `looptune-runtime`, so both backends share one runtime).
//! - [`compiler`] finds the compiler (`CC`, else `cc`/`gcc`/`clang`), its version and flags.
//! - [`cache`] keeps compiled objects by content (source + compiler + version + flags).
//! - [`backend`] is [`CBackend`]: print, compile or hit the cache, load, wrap in a `Kernel`;
//!   batches are compiled in parallel before they are measured.
//! - [`export`] writes tuned nests as a standalone Rust crate (C, build script, safe
//!   wrappers, tests against reference loops): ahead-of-time deployment without looptune.
//! - [`peak`] measures the host's full-width FMA ceiling with the same compiler.
//!
//! **Invariant:** `unsafe` here is only loading objects and calling the peak loop (`load`,
//! `peak`), each block with its argument.

#![deny(missing_docs)]

pub mod backend;
pub mod cache;
pub mod compiler;
pub mod emit;
pub mod export;
mod load;
pub mod peak;
mod probe;

pub use backend::CBackend;
pub use compiler::Compiler;
pub use emit::{emit_c, EmitError, EmitOptions};
pub use peak::{measure_pair_dot_peak, measure_peak};
