//! `looptune-jit`: the Cranelift backend. Turns a [`LoopNest`](looptune_ir::LoopNest) into
//! machine code for the host CPU in a few milliseconds, with no toolchain installed.
//!
//! Cranelift's x86-64 backend emits 128-bit vectors only, so this is the fallback and the
//! no-toolchain backend; the C backend (`looptune-cc`) emits full-width vectors. Both hand their
//! code to the same [`looptune_runtime::Kernel`], the one safe call API.
//!
//! - [`isa`] builds the Cranelift ISA for a [`Target`](looptune_runtime::Target).
//! - [`codegen`] lowers the loop IR to Cranelift IR: unrolled loops become straight-line code,
//!   vectorized loops f32x4 code, small temporaries indexed by constants SSA variables (register
//!   tiles), parallel loops outlined functions run on the runtime's rayon pool.
//! - [`backend`] is [`CraneliftBackend`], this crate's [`Backend`](looptune_runtime::Backend).
//! - [`peak`] measures Cranelift's own f32x4 FMA ceiling on this host.

#![deny(missing_docs)]

pub mod backend;
pub mod codegen;
pub mod isa;
pub mod peak;

pub use backend::CraneliftBackend;
pub use peak::measure_peak;
