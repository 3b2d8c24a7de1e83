//! The call API refuses wrong buffers, and the compiler refuses nests it cannot run soundly,
//! with errors that name the offending value.

#![forbid(unsafe_code)]

mod common;

use common::*;
use looptune_ir::{DType, LoopKind, ValueExpr};
use looptune_jit::CraneliftBackend;
use looptune_runtime::{Backend, CallError, CompileError, Kernel, Target};

fn copy_kernel() -> Kernel {
    let mut builder = NestBuilder::new("copy");
    let a = builder.input("A", &[3, 4]);
    let out = builder.output("out", &[12]);
    let i = builder.var("i");
    let j = builder.var("j");
    let nest = builder.build(serial(
        i,
        3,
        serial(
            j,
            4,
            store(out, vec![v(i) * 4 + v(j)], ld(a, vec![v(i), v(j)])),
        ),
    ));
    compile(&nest)
}

#[test]
fn wrong_buffer_counts_are_refused() {
    let kernel = copy_kernel();
    let input = vec![0.0; 12];
    let mut output = vec![0.0; 12];
    let error = kernel.call(&[], &mut [&mut output]).expect_err("no inputs");
    assert_eq!(
        error,
        CallError::BufferCount {
            kernel: "copy".to_string(),
            role: "input",
            expected: 1,
            actual: 0
        }
    );
    let error = kernel.call(&[&input], &mut []).expect_err("no outputs");
    assert_eq!(
        error.to_string(),
        "kernel `copy` takes 1 output buffers, got 0"
    );
}

#[test]
fn wrong_buffer_lengths_are_refused_by_name() {
    let kernel = copy_kernel();
    let short = vec![0.0; 11];
    let mut output = vec![0.0; 12];
    let error = kernel
        .call(&[&short], &mut [&mut output])
        .expect_err("short input");
    assert_eq!(
        error.to_string(),
        "input buffer `A` needs 12 elements, got a slice of 11"
    );
    let input = vec![1.0; 12];
    let mut long = vec![0.0; 13];
    let error = kernel
        .call(&[&input], &mut [&mut long])
        .expect_err("long output");
    assert_eq!(
        error,
        CallError::BufferLength {
            role: "output",
            buffer: "out".to_string(),
            expected: 12,
            actual: 13
        }
    );
    assert!(long.iter().all(|x| *x == 0.0), "nothing ran");
}

#[test]
fn stores_to_inputs_do_not_compile_and_parameters_of_another_dtype_are_refused_at_the_call() {
    let mut builder = NestBuilder::new("bad");
    let a = builder.input("A", &[4]);
    let i = builder.var("i");
    let nest = builder.build(for_(
        i,
        4,
        LoopKind::Serial,
        store(a, vec![v(i)], ValueExpr::f32(0.0)),
    ));
    let error = CraneliftBackend::new()
        .compile(&nest, &Target::host())
        .expect_err("store to input");
    assert_eq!(
        error,
        CompileError::StoreToInput {
            buffer: "A".to_string()
        }
    );

    // Parameters of any dtype compile; the call checks each slice's element type.
    let mut nest = nest;
    nest.buffers[0].dtype = DType::I32;
    nest.body = looptune_ir::Stmt::nop();
    let kernel = CraneliftBackend::new()
        .compile(&nest, &Target::host())
        .expect("an i32 parameter compiles");
    let error = kernel
        .call(&[&[0.0; 4]], &mut [])
        .expect_err("f32 slice for i32");
    assert!(matches!(error, CallError::BufferDType { .. }), "{error}");
    assert!(error.to_string().contains("`A` holds i32"), "{error}");
    kernel
        .call_data(&[looptune_ir::DataRef::I32(&[0; 4])], &mut [])
        .expect("an i32 slice");
}

#[test]
fn unbound_variables_and_wrong_ranks_are_named() {
    let mut builder = NestBuilder::new("bad_vars");
    let a = builder.input("A", &[4]);
    let out = builder.output("out", &[4]);
    let i = builder.var("i");
    let stray = builder.var("stray");
    let nest = builder.with_body(serial(i, 4, store(out, vec![v(i)], ld(a, vec![v(stray)]))));
    let error = CraneliftBackend::new()
        .compile(&nest, &Target::host())
        .expect_err("unbound");
    assert!(matches!(error, CompileError::InvalidNest { .. }), "{error}");
    assert!(error.to_string().contains("`stray`"), "{error}");
    let nest = builder.with_body(serial(
        i,
        4,
        store(out, vec![v(i), c(0)], ld(a, vec![v(i)])),
    ));
    let error = CraneliftBackend::new()
        .compile(&nest, &Target::host())
        .expect_err("rank");
    assert_eq!(
        error.to_string(),
        "buffer `out` has 1 dimensions but is indexed with 2 indices"
    );
}

#[test]
fn kernels_are_send_and_sync_and_callable_from_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let kernel = copy_kernel();
    assert_send_sync(&kernel);
    let input: Vec<f32> = (0..12).map(|x| x as f32).collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut output = vec![0.0; 12];
                kernel.call(&[&input], &mut [&mut output]).expect("call");
                assert_eq!(output, input);
            });
        }
    });
}
