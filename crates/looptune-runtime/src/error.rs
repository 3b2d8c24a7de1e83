//! Typed errors of compiling and calling kernels.
//!
//! A failed compile is data for the tuner (an error record), so every message names the value
//! that caused it: the buffer, the dtype, the variable.

use looptune_ir::DType;
use thiserror::Error;

/// Why a loop nest could not be compiled.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum CompileError {
    /// A dtype the back end cannot generate code for in this position.
    #[error("unsupported dtype {dtype} in {context}")]
    UnsupportedDType {
        /// Where it occurred, e.g. "parameter buffer `A`".
        context: String,
        /// The offending dtype.
        dtype: DType,
    },
    /// An operation the back end cannot generate code for.
    #[error("unsupported operation: {what}")]
    UnsupportedOp {
        /// What was asked for, e.g. "integer division of i32 values".
        what: String,
    },
    /// The nest stores to one of its input buffers, which callers pass as shared slices.
    #[error("store to input buffer `{buffer}`")]
    StoreToInput {
        /// The buffer's name.
        buffer: String,
    },
    /// The nest breaks the loop IR contract (the IR verifier's message).
    #[error("invalid loop nest `{nest}`: {message}")]
    InvalidNest {
        /// The nest's name.
        nest: String,
        /// What the verifier found.
        message: String,
    },
    /// A buffer id that is not in the nest's buffer table.
    #[error("buffer id {id} is not declared (the nest has {declared} buffers)")]
    UnknownBuffer {
        /// The offending id.
        id: u32,
        /// How many buffers the nest declares.
        declared: usize,
    },
    /// A buffer used where it has no storage: a temporary outside its `Alloc`.
    #[error("buffer `{buffer}` is used outside the statement that allocates it")]
    BufferNotInScope {
        /// The buffer's name.
        buffer: String,
    },
    /// A parameter listed twice, or a buffer whose role does not fit where it is used.
    #[error("buffer `{buffer}`: {problem}")]
    BadBufferRole {
        /// The buffer's name.
        buffer: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An access with the wrong number of indices.
    #[error("buffer `{buffer}` has {expected} dimensions but is indexed with {actual} indices")]
    IndexRank {
        /// The buffer's name.
        buffer: String,
        /// Its rank.
        expected: usize,
        /// The number of indices used.
        actual: usize,
    },
    /// A variable read where no loop binds it.
    #[error("variable `{var}` is used outside the loop that binds it")]
    UnboundVar {
        /// The variable's name.
        var: String,
    },
    /// Constant index arithmetic that cannot be evaluated (division by zero, overflow).
    #[error("index arithmetic `{a} {op} {b}` fails (division by zero or overflow)")]
    IndexArithmetic {
        /// The operator's symbol.
        op: &'static str,
        /// The left operand.
        a: i64,
        /// The right operand.
        b: i64,
    },
    /// The target asks for something the host cannot run, or its ISA could not be built.
    #[error("target: {message}")]
    Target {
        /// What failed.
        message: String,
    },
    /// Cranelift rejected a generated function (a bug in this crate) or failed to emit it.
    #[error("cranelift failed on function `{function}`: {message}")]
    Cranelift {
        /// The generated function's name.
        function: String,
        /// Cranelift's message.
        message: String,
    },
    /// The C compiler could not be run, or rejected the printed C (a bug in the printer, or a
    /// compiler that cannot build it).
    #[error("C compiler `{compiler}` failed on `{kernel}`: {message}")]
    CCompiler {
        /// The compiler as invoked.
        compiler: String,
        /// The nest's name.
        kernel: String,
        /// Its diagnostics (or why it could not be started).
        message: String,
    },
    /// A compiled object could not be loaded, or lacks its entry point.
    #[error("loading the compiled kernel `{path}`: {message}")]
    Load {
        /// The shared object.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// A measurement worker was asked for a backend it cannot build.
    #[error("unknown backend `{name}` (this build knows {known})")]
    UnknownBackend {
        /// The name asked for.
        name: String,
        /// The backends this build knows, comma-separated.
        known: String,
    },
}

/// Why a call to a compiled kernel was refused. Nothing ran when this is returned.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// The number of input or output slices differs from the nest's parameters.
    #[error("kernel `{kernel}` takes {expected} {role} buffers, got {actual}")]
    BufferCount {
        /// The kernel's name.
        kernel: String,
        /// "input" or "output".
        role: &'static str,
        /// How many the nest declares.
        expected: usize,
        /// How many were passed.
        actual: usize,
    },
    /// A slice whose length differs from the buffer's element count.
    #[error("{role} buffer `{buffer}` needs {expected} elements, got a slice of {actual}")]
    BufferLength {
        /// "input" or "output".
        role: &'static str,
        /// The buffer's name.
        buffer: String,
        /// The buffer's element count.
        expected: usize,
        /// The slice's length.
        actual: usize,
    },
    /// A slice whose element type differs from the buffer's dtype.
    #[error("{role} buffer `{buffer}` holds {expected} elements, got a slice of {actual}")]
    BufferDType {
        /// "input" or "output".
        role: &'static str,
        /// The buffer's name.
        buffer: String,
        /// The buffer's dtype.
        expected: looptune_ir::DType,
        /// The slice's element type.
        actual: looptune_ir::DType,
    },
}

/// Why the peak measurement failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PeakError {
    /// `threads` was zero.
    #[error("peak measurement needs at least one thread, got {threads}")]
    NoThreads {
        /// The value passed.
        threads: usize,
    },
    /// The measuring kernel could not be compiled.
    #[error("compiling the peak kernel: {0}")]
    Compile(#[from] CompileError),
    /// A thread running the peak loop panicked, so a repeat has no time.
    #[error("a thread running the peak loop failed")]
    ThreadFailed,
}
