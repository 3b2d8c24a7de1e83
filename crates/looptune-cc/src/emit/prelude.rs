//! The declarations every printed file starts with: integer types, the runtime table, vector
//! types and the few helpers the printed code calls.
//!
//! No `#include`: a header costs more compile time than a whole small kernel. Everything the
//! code needs is declared here, once per file (guarded, so that many kernels can share one file
//! and one compiler run). Every identifier starts with `lt_`, a prefix printed names never get.
//! Helpers taking vectors are macros rather than functions: a function with a 64-byte vector
//! parameter draws gcc's ABI warning on a target without AVX-512.

/// The vector widths the printer uses, in `f32` lanes, widest first.
pub(crate) const WIDTHS: [usize; 3] = [16, 8, 4];

/// The register vector type of `width` lanes.
pub(crate) fn vector_type(width: usize) -> String {
    format!("lt_f32x{width}")
}

/// The memory vector type of `width` lanes: aligned like an `f32` and allowed to alias, so a
/// load or store through it is one unaligned vector access of any `float` buffer.
pub(crate) fn memory_type(width: usize) -> String {
    format!("lt_f32x{width}u")
}

/// The prelude text.
pub(crate) fn prelude() -> String {
    let mut text = String::from(
        "#ifndef LOOPTUNE_PRELUDE
#define LOOPTUNE_PRELUDE
typedef long long lt_i64;
typedef unsigned long lt_usize;

/* The runtime table; the layout of looptune-runtime's `Runtime` (repr(C)). */
typedef struct lt_runtime lt_runtime;
typedef void (*lt_body)(void *const *args, const lt_i64 *captured, lt_i64 start, lt_i64 end,
                        const lt_runtime *rt);
struct lt_runtime {
    void (*parallel_for)(const lt_runtime *rt, lt_body body, void *const *args,
                         const lt_i64 *captured, lt_i64 extent);
    void *(*alloc)(lt_usize bytes); /* 64-byte aligned, uninitialised */
    void (*free)(void *block, lt_usize bytes);
    const void *pool;
    lt_usize threads;
};

/* Index arithmetic rounds towards negative infinity. */
static inline __attribute__((unused)) lt_i64 lt_floordiv(lt_i64 a, lt_i64 b) {
    lt_i64 q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
static inline __attribute__((unused)) lt_i64 lt_floormod(lt_i64 a, lt_i64 b) {
    lt_i64 r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
/* An offset checked against the last one an access may start at: a trap past it. Printed only
   in nests with an access the IR verifier could not prove in bounds. */
static inline __attribute__((unused)) lt_i64 lt_in(lt_i64 offset, lt_i64 last) {
    if ((unsigned long long)offset > (unsigned long long)last) __builtin_trap();
    return offset;
}
static inline __attribute__((unused)) lt_i64 lt_imin(lt_i64 a, lt_i64 b) { return a < b ? a : b; }
static inline __attribute__((unused)) lt_i64 lt_imax(lt_i64 a, lt_i64 b) { return a > b ? a : b; }
/* min and max return the operand that is not NaN, like Rust's f32::min and f32::max. */
static inline __attribute__((unused)) float lt_fmin(float a, float b) { return (a < b || b != b) ? a : b; }
static inline __attribute__((unused)) float lt_fmax(float a, float b) { return (a > b || b != b) ? a : b; }
",
    );
    for width in WIDTHS {
        let bytes = width * 4;
        let v = vector_type(width);
        let u = memory_type(width);
        let i = format!("lt_i32x{width}");
        text.push_str(&format!(
            "
typedef float {v} __attribute__((vector_size({bytes})));
typedef float {u} __attribute__((vector_size({bytes}), aligned(4), may_alias));
typedef int {i} __attribute__((vector_size({bytes})));
#define lt_load{width}(p) (({v})*(const {u} *)(p))
#define lt_store{width}(p, v) (*({u} *)(p) = (v))
/* x - 0 is x for every x (also -0 and NaN), and compilers fold it: a plain broadcast. */
#define lt_splat{width}(x) ((x) - ({v}){{0}})
#define lt_select{width}(m, a, b) (({v})((({i})(a) & (m)) | (({i})(b) & ~(m))))
#define lt_min{width}(a, b) ({{ {v} lt_a = (a), lt_b = (b); lt_select{width}((lt_a < lt_b) | (lt_b != lt_b), lt_a, lt_b); }})
#define lt_max{width}(a, b) ({{ {v} lt_a = (a), lt_b = (b); lt_select{width}((lt_a > lt_b) | (lt_b != lt_b), lt_a, lt_b); }})
#define lt_abs{width}(a) (({v})(({i})(a) & 0x7fffffff))
"
        ));
        // Lane l of a stride-2 load is p[2 l]; the second load ends on the last of them, so
        // nothing past the elements the lanes read is touched.
        let second = width - 1;
        let lanes: Vec<String> = (0..width)
            .map(|lane| {
                let element = 2 * lane;
                if element < width {
                    element
                } else {
                    width + element - second
                }
                .to_string()
            })
            .collect();
        let lanes = lanes.join(", ");
        text.push_str(&format!(
            "/* Every second element of p[0 .. {span}): two loads and one shuffle instead of a gather. */
#if defined(__clang__)
#define lt_stride2_{width}(p) __builtin_shufflevector(lt_load{width}(p), lt_load{width}((p) + {second}), {lanes})
#else
#define lt_stride2_{width}(p) __builtin_shuffle(lt_load{width}(p), lt_load{width}((p) + {second}), ({i}){{{lanes}}})
#endif
",
            span = 2 * width - 1
        ));
    }
    text.push_str("#endif /* LOOPTUNE_PRELUDE */\n");
    text
}
