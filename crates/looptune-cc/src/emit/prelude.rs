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

/// The register vector type of `width` lanes of `dtype`: `f32` or `i32` (the 4-byte types the
/// vector code computes in).
pub(crate) fn vector_type_of(dtype: looptune_ir::DType, width: usize) -> String {
    if dtype == looptune_ir::DType::F32 {
        vector_type(width)
    } else {
        format!("lt_i32x{width}")
    }
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
typedef unsigned char lt_u8;
typedef signed char lt_i8;
typedef short lt_i16;
typedef unsigned short lt_u16;
typedef int lt_i32;
typedef unsigned int lt_u32;
typedef unsigned long long lt_u64a __attribute__((aligned(1), may_alias));
typedef unsigned int lt_u32a __attribute__((aligned(1), may_alias));
typedef char lt_c8x16 __attribute__((vector_size(16)));
typedef long long lt_i64x2 __attribute__((vector_size(16)));

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
/* A float truncated towards zero and saturated to i32, NaN to 0 (Rust's `as`; C leaves an
   out-of-range conversion undefined). */
static inline __attribute__((unused)) lt_i32 lt_f2i32(float x) {
    return x != x ? 0 : x >= 2147483648.0f ? 2147483647 : x < -2147483648.0f ? (-2147483647 - 1) : (lt_i32)x;
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
    text.push_str(&integer_vectors());
    text.push_str("#endif /* LOOPTUNE_PRELUDE */\n");
    text
}

/// The integer vector types and helpers: `i32` lanes as wide as the `f32` ones (the vector code
/// computes integers in `i32`), loads that widen `u8`, `i8` and `i16` lanes to them, and the
/// pairwise dot product `lt_madd` (`vpmaddwd`: two `i16` products summed exactly into each
/// `i32` lane) that the quantized templates are built around.
fn integer_vectors() -> String {
    let mut text = String::from(
        "/* Two i16 values as the halves of one i32 lane: x0 low, x1 high; or two adjacent i16 in
   memory read as one word (x86 is little-endian: the first is the low half). */
#define lt_pair(x0, x1) ((lt_i32)(((lt_u32)(lt_u16)(x1) << 16) | (lt_u32)(lt_u16)(x0)))
typedef lt_i32 lt_i32p __attribute__((aligned(2), may_alias));
#define lt_load_pair(p) (*(const lt_i32p *)(p))
",
    );
    for width in WIDTHS {
        let bytes = width * 4;
        let pairs = 2 * width;
        text.push_str(&format!(
            "
typedef unsigned int lt_u32x{width} __attribute__((vector_size({bytes})));
typedef int lt_i32x{width}u __attribute__((vector_size({bytes}), aligned(4), may_alias));
typedef lt_u8 lt_u8x{width}u __attribute__((vector_size({width}), aligned(1), may_alias));
typedef lt_i8 lt_i8x{width}u __attribute__((vector_size({width}), aligned(1), may_alias));
typedef lt_i16 lt_i16x{width}u __attribute__((vector_size({half}), aligned(2), may_alias));
typedef lt_i16 lt_i16x{pairs} __attribute__((vector_size({bytes})));
typedef lt_i16 lt_i16x{pairs}u __attribute__((vector_size({bytes}), aligned(2), may_alias));
typedef lt_u8 lt_u8x{width}r __attribute__((vector_size({width})));
typedef lt_i8 lt_i8x{width}r __attribute__((vector_size({width})));
typedef lt_i16 lt_i16x{width}r __attribute__((vector_size({half})));
typedef lt_i64 lt_i64x{width} __attribute__((vector_size({wide})));
#define lt_loadi{width}(p) ((lt_i32x{width})*(const lt_i32x{width}u *)(p))
/* i32 lanes narrowed (wrapped) to u8, i8 or i16 and stored contiguously. */
{mulshr}#define lt_storei{width}(p, v) (*(lt_i32x{width}u *)(p) = (v))
#define lt_splati{width}(x) ((lt_i32x{width}){{0}} + (lt_i32)(x))
/* Wrapping i32 arithmetic: on unsigned lanes, where overflow is defined. */
#define lt_addi{width}(a, b) ((lt_i32x{width})((lt_u32x{width})(a) + (lt_u32x{width})(b)))
#define lt_subi{width}(a, b) ((lt_i32x{width})((lt_u32x{width})(a) - (lt_u32x{width})(b)))
#define lt_muli{width}(a, b) ((lt_i32x{width})((lt_u32x{width})(a) * (lt_u32x{width})(b)))
{fma}{min_max}",
            half = width * 2,
            wide = width * 8,
            mulshr = mulshr(width),
            min_max = min_max(width),
            fma = fma(width),
        ));
        // The dot product of lane pairs: one instruction where the target has it, a loop the
        // compiler vectorizes as it can elsewhere (same result: the products and their sum are
        // exact in i32).
        let native = match width {
            16 => "#if defined(__AVX512BW__) && defined(__clang__)
#define lt_madd16(a, p) ((lt_i32x16)__builtin_ia32_pmaddwd512((lt_i16x32)(a), *(const lt_i16x32u *)(p)))
#elif defined(__AVX512BW__)
#define lt_madd16(a, p) ((lt_i32x16)__builtin_ia32_pmaddwd512_mask((lt_i16x32)(a), *(const lt_i16x32u *)(p), (lt_i32x16){0}, (unsigned short)-1))
"
            .to_string(),
            8 => "#if defined(__AVX2__)
#define lt_madd8(a, p) ((lt_i32x8)__builtin_ia32_pmaddwd256((lt_i16x16)(a), *(const lt_i16x16u *)(p)))
"
            .to_string(),
            _ => "#if defined(__SSE2__)
#define lt_madd4(a, p) ((lt_i32x4)__builtin_ia32_pmaddwd128((lt_i16x8)(a), *(const lt_i16x8u *)(p)))
"
            .to_string(),
        };
        text.push_str(&native);
        text.push_str(&widen_and_narrow(width));
        text.push_str(&format!(
            "#else
#define lt_madd{width}(a, p) ({{ lt_i32x{width} lt_v = (a), lt_r; const lt_i16 *lt_q = (const lt_i16 *)(p); \\
    for (int lt_l = 0; lt_l < {width}; ++lt_l) \\
        lt_r[lt_l] = (lt_i32)(lt_i16)lt_v[lt_l] * lt_q[2 * lt_l] + (lt_i32)(lt_i16)(lt_v[lt_l] >> 16) * lt_q[2 * lt_l + 1]; \\
    lt_r; }})
#endif
"
        ));
    }
    text
}

/// `lt_fmai{width}(a, b, c)`, the wrapping `a * b + c` on `i32` lanes of an integer
/// multiply-accumulate that is not a pair product (the 8-bit depthwise convolution's). gcc
/// reassociates chains of wrapping additions (unsigned addition is associative) into trees: in
/// a kernel window unrolled over a register tile it then computes every product first and
/// spills them to the stack (that depthwise convolution ran at 27 GOP/s so, 37 without). With
/// gcc and AVX2, an empty `asm` after each addition keeps every accumulator's chain in its
/// written order; clang does not reassociate so and gets the plain form. (The pair products'
/// accumulations, `lt_addi`, keep the plain form: there the barrier cost 4%.)
fn fma(width: usize) -> String {
    let plain =
        format!("#define lt_fmai{width}(a, b, c) lt_addi{width}(lt_muli{width}((a), (b)), (c))\n");
    if width != 8 {
        return plain;
    }
    format!(
        "#if defined(__AVX2__) && !defined(__clang__)
#define lt_fmai8(a, b, c) ({{ lt_i32x8 lt_s = lt_addi8(lt_muli8((a), (b)), (c)); __asm__(\"\" : \"+x\"(lt_s)); lt_s; }})
#else
{plain}#endif
"
    )
}

/// `lt_mini{width}` and `lt_maxi{width}`: `vpminsd`/`vpmaxsd` with gcc and AVX2 (gcc makes a
/// compare and a blend of the generic form), the generic form elsewhere.
fn min_max(width: usize) -> String {
    let generic = format!(
        "#define lt_mini{width}(a, b) ({{ lt_i32x{width} lt_a = (a), lt_b = (b), lt_m = lt_a < lt_b; (lt_a & lt_m) | (lt_b & ~lt_m); }})
#define lt_maxi{width}(a, b) ({{ lt_i32x{width} lt_a = (a), lt_b = (b), lt_m = lt_a > lt_b; (lt_a & lt_m) | (lt_b & ~lt_m); }})
"
    );
    if width != 8 {
        return generic;
    }
    format!(
        "#if defined(__AVX2__) && !defined(__clang__)
#define lt_mini8(a, b) ((lt_i32x8)__builtin_ia32_pminsd256((a), (b)))
#define lt_maxi8(a, b) ((lt_i32x8)__builtin_ia32_pmaxsd256((a), (b)))
#else
{generic}#endif
"
    )
}

/// The IR's `mulshr` on `i32` lanes, `(a * b + 2^(s-1)) >> s` (exact: `|a b| < 2^62`), as
/// `lt_mulshr{width}(a, b, s, r)` with the rounding term `r = 2^(s-1)`. Generically the lanes
/// are widened to 64 bits; AVX2 has no 64-bit arithmetic shift and no 64 x 64-bit multiply, so
/// gcc spends about 30 instructions per vector on that, as much as the whole reduction of a
/// 1x1 convolution over 64 channels. With AVX2 and the shift of requantization (`s >= 32`: 31
/// plus the operator's shift) the product is two `vpmuldq` (even and odd lanes, exact 64-bit
/// products), and since `|a b + r| < 2^63` the high half of each sum, shifted by `s - 32` as
/// an `i32` lane, is the same result: about ten instructions.
fn mulshr(width: usize) -> String {
    let widened = |name: &str| {
        format!(
            "#define {name}(a, b, s, r) ({{ lt_i64x{width} lt_p = __builtin_convertvector((a), lt_i64x{width}) * __builtin_convertvector((b), lt_i64x{width}); __builtin_convertvector((lt_p + (r)) >> (s), lt_i32x{width}); }})\n"
        )
    };
    let generic = widened(&format!("lt_mulshr{width}"));
    let comment = "/* The IR's mulshr on i32 lanes: (a * b + 2^(s-1)) >> s in 64-bit lanes (exact: |a b| < 2^62). */\n";
    if width != 8 {
        return format!("{comment}{generic}");
    }
    format!(
        "{comment}#if defined(__AVX2__)
/* s >= 32: the high halves of the exact products of two vpmuldq (even lanes, odd lanes), plus
   r, shifted by s - 32 as i32 lanes (|a b + r| < 2^63, so the high half holds the result). */
typedef long long lt_i64q4 __attribute__((vector_size(32)));
typedef unsigned long long lt_u64q4 __attribute__((vector_size(32)));
static inline __attribute__((always_inline, unused)) lt_i32x8 lt_mulshr_high8(lt_i32x8 a, lt_i32x8 b, lt_i64 r, int s) {{
    lt_i64q4 lt_even = (lt_i64q4)__builtin_ia32_pmuldq256(a, b) + r;
    lt_i64q4 lt_odd = (lt_i64q4)__builtin_ia32_pmuldq256((lt_i32x8)((lt_u64q4)a >> 32), (lt_i32x8)((lt_u64q4)b >> 32)) + r;
#if defined(__clang__)
    lt_i32x8 lt_high = __builtin_shufflevector((lt_i32x8)lt_even, (lt_i32x8)lt_odd, 1, 9, 3, 11, 5, 13, 7, 15);
#else
    lt_i32x8 lt_high = __builtin_shuffle((lt_i32x8)lt_even, (lt_i32x8)lt_odd, (lt_i32x8){{1, 9, 3, 11, 5, 13, 7, 15}});
#endif
    return lt_high >> s;
}}
{wide}#define lt_mulshr8(a, b, s, r) ((s) >= 32 ? lt_mulshr_high8((a), (b), (r), (s) - 32) : lt_mulshr8_wide((a), (b), (s), (r)))
#else
{generic}#endif
",
        wide = widened("lt_mulshr8_wide"),
    )
}

/// Widening loads (`u8`, `i8`, `i16` lanes to `i32`) and narrowing stores (`i32` lanes wrapped to
/// `u8`, `i8`, `i16`) of `width` lanes. gcc 12 turns `__builtin_convertvector` between these
/// widths into one byte at a time, so with gcc on AVX2 (8 lanes) and SSE4.1 (4) the loads are
/// `vpmovzx`/`vpmovsx` builtins reading exactly the lanes' bytes, and everywhere the stores
/// pick the low bytes of each lane with one shuffle and store them; elsewhere (clang, 16 lanes)
/// the conversions are the generic ones, the same values.
fn widen_and_narrow(width: usize) -> String {
    let bytes = 4 * width;
    let half = width / 2;
    let zip = |ty: &str| {
        format!(
            "#define lt_widen_{ty}_zip{width}(p0, p1) ({{ lt_i32x{width} lt_z; const lt_{ty} *lt_p0 = (const lt_{ty} *)(p0), *lt_p1 = (const lt_{ty} *)(p1); \\
    for (int lt_l = 0; lt_l < {half}; ++lt_l) {{ lt_z[2 * lt_l] = lt_p0[lt_l]; lt_z[2 * lt_l + 1] = lt_p1[lt_l]; }} \\
    lt_z; }})
"
        )
    };
    let generic = format!(
        "#define lt_widen_u8_{width}(p) __builtin_convertvector(*(const lt_u8x{width}u *)(p), lt_i32x{width})
#define lt_widen_i8_{width}(p) __builtin_convertvector(*(const lt_i8x{width}u *)(p), lt_i32x{width})
#define lt_widen_i16_{width}(p) __builtin_convertvector(*(const lt_i16x{width}u *)(p), lt_i32x{width})
{}{}{}",
        zip("u8"),
        zip("i8"),
        zip("i16")
    );
    let native = match width {
        8 => "#if defined(__AVX2__) && !defined(__clang__)
#define lt_widen_u8_8(p) ((lt_i32x8)__builtin_ia32_pmovzxbd256((lt_c8x16)(lt_i64x2){*(const lt_u64a *)(p), 0}))
#define lt_widen_i8_8(p) ((lt_i32x8)__builtin_ia32_pmovsxbd256((lt_c8x16)(lt_i64x2){*(const lt_u64a *)(p), 0}))
#define lt_widen_i16_8(p) ((lt_i32x8)__builtin_ia32_pmovsxwd256(*(const lt_i16x8u *)(p)))
/* Four bytes from each pointer, interleaved (p0[0], p1[0], p0[1], ...), widened. */
#define lt_zip_bytes4(p0, p1) __builtin_shuffle((lt_c8x16)(lt_i32x4){*(const lt_u32a *)(p0), 0, 0, 0}, (lt_c8x16)(lt_i32x4){*(const lt_u32a *)(p1), 0, 0, 0}, (lt_c8x16){0, 16, 1, 17, 2, 18, 3, 19, 0, 0, 0, 0, 0, 0, 0, 0})
#define lt_widen_u8_zip8(p0, p1) ((lt_i32x8)__builtin_ia32_pmovzxbd256(lt_zip_bytes4((p0), (p1))))
#define lt_widen_i8_zip8(p0, p1) ((lt_i32x8)__builtin_ia32_pmovsxbd256(lt_zip_bytes4((p0), (p1))))
#define lt_widen_i16_zip8(p0, p1) ((lt_i32x8)__builtin_ia32_pmovsxwd256(__builtin_shuffle((lt_i16x8)(lt_i64x2){*(const lt_u64a *)(p0), 0}, (lt_i16x8)(lt_i64x2){*(const lt_u64a *)(p1), 0}, (lt_i16x8){0, 8, 1, 9, 2, 10, 3, 11})))
#else
",
        4 => "#if defined(__SSE4_1__) && !defined(__clang__)
#define lt_widen_u8_4(p) ((lt_i32x4)__builtin_ia32_pmovzxbd128((lt_c8x16)(lt_i32x4){*(const lt_u32a *)(p), 0, 0, 0}))
#define lt_widen_i8_4(p) ((lt_i32x4)__builtin_ia32_pmovsxbd128((lt_c8x16)(lt_i32x4){*(const lt_u32a *)(p), 0, 0, 0}))
#define lt_widen_i16_4(p) ((lt_i32x4)__builtin_ia32_pmovsxwd128((lt_i16x8)(lt_i64x2){*(const lt_u64a *)(p), 0}))
#else
",
        _ => "#if 0
#else
",
    };
    let pick = |per_lane: usize| -> String {
        (0..bytes)
            .map(|index| {
                let (lane, byte) = (index / per_lane, index % per_lane);
                if lane < width {
                    (4 * lane + byte).to_string()
                } else {
                    "0".to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (one, two) = (pick(1), pick(2));
    format!(
        "{native}{generic}#endif
typedef lt_u8 lt_u8x{bytes}b __attribute__((vector_size({bytes})));
#if defined(__clang__)
#define lt_narrow_bytes{width}(v, mask) __builtin_shufflevector((lt_u8x{bytes}b)(v), (lt_u8x{bytes}b)(v), mask)
#else
#define lt_narrow_bytes{width}(v, mask) __builtin_shuffle((lt_u8x{bytes}b)(v), (lt_u8x{bytes}b){{mask}})
#endif
#define lt_mask1_{width} {one}
#define lt_mask2_{width} {two}
#define lt_store_u8_{width}(p, v) ({{ lt_u8x{bytes}b lt_b = lt_narrow_bytes{width}((v), lt_mask1_{width}); __builtin_memcpy((p), &lt_b, {width}); }})
#define lt_store_i8_{width}(p, v) ({{ lt_u8x{bytes}b lt_b = lt_narrow_bytes{width}((v), lt_mask1_{width}); __builtin_memcpy((p), &lt_b, {width}); }})
#define lt_store_i16_{width}(p, v) ({{ lt_u8x{bytes}b lt_b = lt_narrow_bytes{width}((v), lt_mask2_{width}); __builtin_memcpy((p), &lt_b, {two_width}); }})
",
        two_width = 2 * width
    )
}
