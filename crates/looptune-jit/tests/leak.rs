//! Compiling and dropping many kernels does not grow resident memory: every kernel's JIT module
//! is released with `free_memory` when the kernel is dropped.

#![forbid(unsafe_code)]

mod common;

use common::*;
use looptune_ir::LoopKind;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm on Linux");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages field");
    pages * 4096
}

#[test]
fn compiling_and_dropping_kernels_does_not_leak() {
    // A small nest with a vector loop and a parallel loop, so that outlined functions and the
    // pool are exercised too.
    let nest = tiled_matmul(8, 8, 4, 4, 8, LoopKind::Parallel);
    let a = data(32, 1);
    let b = data(32, 2);
    let mut out = vec![0.0; 64];
    let count: usize = std::env::var("LOOPTUNE_LEAK_KERNELS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2_000);
    // Warm up allocator arenas and the thread pool before taking the baseline.
    for _ in 0..200 {
        let kernel = compile(&nest);
        kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
    }
    let before = resident_bytes();
    for _ in 0..count {
        let kernel = compile(&nest);
        kernel.call(&[&a, &b], &mut [&mut out]).expect("call");
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 4 << 20, "{count} kernels grew RSS by {grown} bytes");
}
