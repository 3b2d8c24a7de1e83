//! Quantized operators in the manner of TFLite and gemmlowp: `u8` activations with a zero
//! point, symmetric `i8` weights, `i32` accumulation and a requantization epilogue.
//!
//! `qmatmul` computes, for `A: u8[m, k]` (zero point `a_zero`), `W: i8[k, n]`, `bias: i32[n]`
//! and, with `per_channel`, `M: i32[n]` (one multiplier per output column):
//!
//! ```text
//! acc[i, j] = sum_k (A[i, k] - a_zero) * W[k, j] + bias[j]                 (i32, wrapping)
//! Y[i, j]   = u8(clamp(out_zero + mulshr_{31 + shift}(acc[i, j], M_j), qmin, qmax))
//! ```
//!
//! where `M_j` is `multiplier` (per tensor) or `M[j]`, and `mulshr_s(x, M)` is
//! `(x * M + 2^(s-1)) >> s` exact in 64 bits ([`crate::BinaryOp::MulShr`]): the fixed-point
//! multiplier `M / 2^31` and a right shift, rounded to nearest. ReLU6 is the clamp
//! `[out_zero, out_zero + q6]`. Every intermediate is an integer, so a kernel is checked bit for
//! bit against the reference.
//!
//! With `Layout::pack_columns = Some(b)` the same result is computed in the form fast integer
//! code needs: `A.pairs[i, kk, t] = A[i, 2 kk + t] - a_zero` and
//! `W.packed[jo, kk, ji, t] = W[2 kk + t, jo b + ji]` as `i16` (zero past `k` and `n`), so that
//! one reduction step is the pair product `A.pairs[i, kk, 0] * W.packed[.., 0] +
//! A.pairs[i, kk, 1] * W.packed[.., 1]` that `vpmaddwd` computes for a whole vector of columns.
//! Both products and their sum are exact in `i32` (at most `2 * 255 * 128`), so the two forms
//! agree bit for bit.

use super::{
    check_block, depthwise_out_hw, pad_input_with, DepthwiseConv2dParams, Layout, Workload,
};
use crate::dtype::{DType, Scalar};
use crate::error::IrError;
use crate::expr::{BinaryOp, IndexExpr, ValueExpr};
use crate::program::{sum, Program, ProgramBuilder, Tensor};

/// Parameters of `qmatmul` (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QMatmulParams {
    /// Rows of `A` and `Y`.
    pub m: i64,
    /// Columns of `W` and `Y`.
    pub n: i64,
    /// Reduction length.
    pub k: i64,
    /// Zero points, requantization and clamp.
    pub quant: Requant,
}

/// The quantization of a quantized operator: the input's zero point, the requantization of
/// the `i32` accumulator to the `u8` output, and the output's clamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    /// Zero point of the `u8` input, 0 to 255.
    pub a_zero: i64,
    /// Zero point of `Y`, 0 to 255.
    pub out_zero: i64,
    /// The fixed-point multiplier `M` (scale `M / 2^31`), 1 to `2^31 - 1`; ignored with
    /// `per_channel`.
    pub multiplier: i64,
    /// Right shift after the multiplier, 0 to 31.
    pub shift: i64,
    /// Smallest output value (ReLU6's lower bound is `out_zero`), 0 to 255.
    pub qmin: i64,
    /// Largest output value, `qmin` to 255.
    pub qmax: i64,
    /// One multiplier per output channel (column), read from the input `M: i32[channels]`.
    pub per_channel: bool,
}

/// The quantization parameters as `looptune ops` lists them (shared by every quantized
/// operator).
pub(super) const REQUANT_PARAMS: [super::ParamInfo; 7] = [
    super::optional("a_zero", "128", "zero point of the u8 input (0-255)"),
    super::optional("out_zero", "128", "zero point of the u8 output (0-255)"),
    super::optional(
        "multiplier",
        "1518500250",
        "fixed-point multiplier M, scale M / 2^31",
    ),
    super::optional("shift", "11", "right shift after the multiplier (0-31)"),
    super::optional("qmin", "0", "smallest output (ReLU6: out_zero)"),
    super::optional("qmax", "255", "largest output"),
    super::optional(
        "per_channel",
        "false",
        "one multiplier per output channel, input M",
    ),
];

/// The ranges of the integer parameters, for parsing and checks.
pub(super) const RANGES: [(&str, i64, i64); 6] = [
    ("a_zero", 0, 255),
    ("out_zero", 0, 255),
    ("multiplier", 1, i32::MAX as i64),
    ("shift", 0, 31),
    ("qmin", 0, 255),
    ("qmax", 0, 255),
];

impl Requant {
    /// Reads the parameters of [`REQUANT_PARAMS`] from a workload string's pairs.
    pub(super) fn parse(params: &mut super::Params<'_>) -> Result<Requant, IrError> {
        Ok(Requant {
            a_zero: params.any_int("a_zero")?,
            out_zero: params.any_int("out_zero")?,
            multiplier: params.any_int("multiplier")?,
            shift: params.any_int("shift")?,
            qmin: params.any_int("qmin")?,
            qmax: params.any_int("qmax")?,
            per_channel: params.flag("per_channel")?,
        })
    }

    /// The workload-string suffix of every parameter (a stable key).
    pub(super) fn key_suffix(&self) -> String {
        format!(
            "a_zero={},out_zero={},multiplier={},shift={},qmin={},qmax={},per_channel={}",
            self.a_zero,
            self.out_zero,
            self.multiplier,
            self.shift,
            self.qmin,
            self.qmax,
            self.per_channel
        )
    }

    /// The integer parameters by name, in the order of [`RANGES`].
    pub(super) fn integers(&self) -> [(&'static str, i64); 6] {
        [
            ("a_zero", self.a_zero),
            ("out_zero", self.out_zero),
            ("multiplier", self.multiplier),
            ("shift", self.shift),
            ("qmin", self.qmin),
            ("qmax", self.qmax),
        ]
    }

    /// Checks the quantization parameters of operator `op` (the sizes are checked with every
    /// workload's).
    pub(super) fn check(&self, op: &str) -> Result<(), IrError> {
        for ((name, value), (_, low, high)) in self.integers().into_iter().zip(RANGES) {
            if !(low..=high).contains(&value) {
                return Err(IrError::InvalidParameter {
                    op: op.to_string(),
                    message: format!("`{name}={value}` must be in {low}..={high}"),
                });
            }
        }
        if self.qmin > self.qmax {
            return Err(IrError::InvalidParameter {
                op: op.to_string(),
                message: format!(
                    "`qmin={}` is above `qmax={}`: the clamp would be empty",
                    self.qmin, self.qmax
                ),
            });
        }
        Ok(())
    }
}

fn i32_const(value: i64) -> ValueExpr {
    ValueExpr::Const(Scalar::int(DType::I32, value))
}

fn widen(value: ValueExpr) -> ValueExpr {
    ValueExpr::Cast(DType::I32, Box::new(value))
}

/// The requantization epilogue: `u8(clamp(out_zero + mulshr(acc, multiplier), qmin, qmax))`.
fn requantize(p: &Requant, acc: ValueExpr, multiplier: ValueExpr) -> ValueExpr {
    let shift = 31 + p.shift as u8;
    let scaled = ValueExpr::binary(BinaryOp::MulShr(shift), acc, multiplier);
    let shifted = i32_const(p.out_zero) + scaled;
    let clamped = shifted.max(i32_const(p.qmin)).min(i32_const(p.qmax));
    ValueExpr::Cast(DType::U8, Box::new(clamped))
}

/// `qmatmul` with the given layout (see the module documentation).
pub fn qmatmul(params: QMatmulParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::QMatmul(params).check()?;
    quantized_product("qmatmul", params, layout, false)
}

/// `qdense`: `qmatmul` with the weights stored `W: i8[n, k]`, a fully connected layer's rows.
pub fn qdense(params: QMatmulParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::QDense(params).check()?;
    quantized_product("qdense", params, layout, true)
}

/// The quantized product of `qmatmul` (`W[k, n]`) or, with `rows`, `qdense` (`W[n, k]`).
fn quantized_product(
    name: &str,
    params: QMatmulParams,
    layout: &Layout,
    rows: bool,
) -> Result<Program, IrError> {
    let (p, q) = (params, params.quant);
    let mut builder = ProgramBuilder::new(name);
    let a = builder.placeholder("A", &[p.m, p.k], DType::U8)?;
    let w_shape = if rows { [p.n, p.k] } else { [p.k, p.n] };
    let w = builder.placeholder("W", &w_shape, DType::I8)?;
    let read_w = move |kk: IndexExpr, j: IndexExpr| {
        if rows {
            w.at(&[j, kk])
        } else {
            w.at(&[kk, j])
        }
    };
    let bias = builder.placeholder("bias", &[p.n], DType::I32)?;
    let multipliers = if q.per_channel {
        Some(builder.placeholder("M", &[p.n], DType::I32)?)
    } else {
        None
    };
    let acc = match layout.pack_columns {
        None => {
            let reduce = builder.reduce_axis("k", p.k)?;
            builder.compute("acc", DType::I32, &[("i", p.m), ("j", p.n)], |ax| {
                let kk = reduce.var();
                let activation = widen(a.at(&[ax[0].clone(), kk.clone()])) - i32_const(q.a_zero);
                sum(activation * widen(read_w(kk, ax[1].clone())), &[&reduce])
            })?
        }
        Some(block) => {
            check_block(name, block)?;
            paired_product(&mut builder, &p, block, &a, &read_w)?
        }
    };
    let y = builder.compute("Y", DType::U8, &[("i", p.m), ("j", p.n)], |ax| {
        let j = ax[1].clone();
        let multiplier = match &multipliers {
            Some(m) => m.at(std::slice::from_ref(&j)),
            None => i32_const(q.multiplier),
        };
        let total = acc.at(&[ax[0].clone(), j.clone()]) + bias.at(&[j]);
        requantize(&q, total, multiplier)
    })?;
    builder.build(&[&y])
}

/// Parameters of `qdepthwise_conv2d`: a depthwise convolution on channel-blocked NCHW[b]c
/// (`X: u8[n, c/b, h, w, b]`, `W: i8[c/b, kh, kw, b]`, `Y: u8[n, c/b, oh, ow, b]`; `b = c` is
/// NHWC, TFLite's layout), with `bias: i32[c]` and the quantization of [`Requant`]. Padding reads
/// as the input's zero point, so it adds nothing to the accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QDepthwiseParams {
    /// The convolution's geometry and channel block.
    pub conv: DepthwiseConv2dParams,
    /// Zero points, requantization and clamp.
    pub quant: Requant,
}

/// `qdepthwise_conv2d` (see [`QDepthwiseParams`]).
pub fn qdepthwise_conv2d(params: QDepthwiseParams) -> Result<Program, IrError> {
    Workload::QDepthwiseConv2d(params).check()?;
    let (p, q) = (params.conv, params.quant);
    let (oh, ow) = depthwise_out_hw(p);
    let blocks = p.c / p.block;
    let mut builder = ProgramBuilder::new("qdepthwise_conv2d");
    let x = builder.placeholder("X", &[p.n, blocks, p.h, p.w, p.block], DType::U8)?;
    let weight = builder.placeholder("W", &[blocks, p.kh, p.kw, p.block], DType::I8)?;
    let bias = builder.placeholder("bias", &[p.c], DType::I32)?;
    let multipliers = if q.per_channel {
        Some(builder.placeholder("M", &[p.c], DType::I32)?)
    } else {
        None
    };
    let zero = ValueExpr::Const(Scalar::int(DType::U8, q.a_zero));
    let padded = pad_input_with(&mut builder, &x, p.pad, zero)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let axes = [
        ("n", p.n),
        ("cb", blocks),
        ("y", oh),
        ("x", ow),
        ("ci", p.block),
    ];
    let acc = builder.compute("acc", DType::I32, &axes, |ax| {
        let row = &ax[2] * p.stride + ry.var() * p.dilation;
        let col = &ax[3] * p.stride + rx.var() * p.dilation;
        let input = padded.at(&[ax[0].clone(), ax[1].clone(), row, col, ax[4].clone()]);
        let tap = weight.at(&[ax[1].clone(), ry.var(), rx.var(), ax[4].clone()]);
        sum(
            (widen(input) - i32_const(q.a_zero)) * widen(tap),
            &[&ry, &rx],
        )
    })?;
    let y = builder.compute("Y", DType::U8, &axes, |ax| {
        let channel = &ax[1] * p.block + &ax[4];
        let multiplier = match &multipliers {
            Some(m) => m.at(std::slice::from_ref(&channel)),
            None => i32_const(q.multiplier),
        };
        let total = acc.at(ax) + bias.at(&[channel]);
        requantize(&q, total, multiplier)
    })?;
    builder.build(&[&y])
}

/// The pair form of the product: `i16` pairs of `A` (zero point subtracted) and of `W` (in
/// column panels of `block`), summed a pair at a time.
fn paired_product(
    builder: &mut ProgramBuilder,
    p: &QMatmulParams,
    block: i64,
    a: &Tensor,
    read_w: &dyn Fn(IndexExpr, IndexExpr) -> ValueExpr,
) -> Result<Tensor, IrError> {
    let pairs = (p.k + 1) / 2;
    let panels = (p.n + block - 1) / block;
    let within_k = |kk: &IndexExpr, t: &IndexExpr| (kk.clone() * 2 + t.clone()).lt(p.k);
    let a_pairs = builder.compute(
        "A.pairs",
        DType::I16,
        &[("i", p.m), ("kk", pairs), ("t", 2)],
        |ax| {
            let kk = ax[1].clone() * 2 + ax[2].clone();
            let centred = widen(a.at(&[ax[0].clone(), kk])) - i32_const(p.quant.a_zero);
            let value = ValueExpr::Cast(DType::I16, Box::new(centred));
            if p.k % 2 == 0 {
                value
            } else {
                ValueExpr::select(
                    within_k(&ax[1], &ax[2]),
                    value,
                    ValueExpr::Const(Scalar::int(DType::I16, 0)),
                )
            }
        },
    )?;
    let w_packed = builder.compute(
        "W.packed",
        DType::I16,
        &[("jo", panels), ("kk", pairs), ("ji", block), ("t", 2)],
        |ax| {
            let column = &ax[0] * block + &ax[2];
            let kk = ax[1].clone() * 2 + ax[3].clone();
            let value = ValueExpr::Cast(DType::I16, Box::new(read_w(kk, column.clone())));
            let inside = match (p.k % 2 == 0, p.n % block == 0) {
                (true, true) => None,
                (true, false) => Some(column.lt(p.n)),
                (false, true) => Some(within_k(&ax[1], &ax[3])),
                (false, false) => Some(column.lt(p.n).and(within_k(&ax[1], &ax[3]))),
            };
            match inside {
                None => value,
                Some(cond) => {
                    ValueExpr::select(cond, value, ValueExpr::Const(Scalar::int(DType::I16, 0)))
                }
            }
        },
    )?;
    let reduce = builder.reduce_axis("kk", pairs)?;
    builder.compute("acc", DType::I32, &[("i", p.m), ("j", p.n)], |ax| {
        let (i, j) = (ax[0].clone(), ax[1].clone());
        let panel = j.clone().floor_div(block);
        let lane = j.floor_mod(block);
        let kk = reduce.var();
        let term = |t: i64| {
            widen(a_pairs.at(&[i.clone(), kk.clone(), IndexExpr::Const(t)]))
                * widen(w_packed.at(&[
                    panel.clone(),
                    kk.clone(),
                    lane.clone(),
                    IndexExpr::Const(t),
                ]))
        };
        sum(term(0) + term(1), &[&reduce])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Data, DataRef};
    use crate::{eval, interp, lower, Schedule};

    /// `Y` of a 1x1x1 `qmatmul` whose accumulator is exactly `acc` (`A = 1`, `W = 1`,
    /// `bias = acc - 1`), by the interpreter and by the direct evaluator, which must agree.
    fn requantized(acc: i64, params: &str) -> u8 {
        let text = format!("qmatmul:m=1,n=1,k=1,a_zero=0,{params}");
        let workload: Workload = text.parse().expect("a workload");
        let program = workload.program(&Layout::default()).expect("a program");
        let inputs = [
            Data::U8(vec![1]),
            Data::I8(vec![1]),
            Data::I32(vec![(acc - 1) as i32]),
        ];
        let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let nest = lower(&Schedule::new(&program)).expect("lowers");
        let mut output = Data::zeros(DType::U8, 1);
        interp::run_data(&nest, &refs, &mut [output.as_mut()]).expect("runs");
        let evaluated = eval::evaluate_data(&program, &refs).expect("evaluates");
        assert_eq!(evaluated[0], output, "{text} at acc {acc}");
        match output {
            Data::U8(values) => values[0],
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requantization_matches_hand_computed_values() {
        let half = "multiplier=1073741824,out_zero=128"; // M / 2^31 = 0.5
                                                         // (acc, parameters, expected): ties round towards positive infinity.
        let table: &[(i64, String, u8)] = &[
            (3, format!("{half},shift=0"), 130),  // 1.5 -> 2
            (-3, format!("{half},shift=0"), 127), // -1.5 -> -1
            (-5, format!("{half},shift=0"), 126), // -2.5 -> -2
            (5, format!("{half},shift=1"), 129),  // 1.25 -> 1
            (7, format!("{half},shift=2"), 129),  // 0.875 -> 1
            (-7, format!("{half},shift=2"), 127), // -0.875 -> -1
            (0, format!("{half},shift=31"), 128),
            // Shift 31: (2^31 - 1)^2 / 2^62 is just below 1 and rounds to 1, its negation to -1.
            (
                i32::MAX as i64,
                "multiplier=2147483647,out_zero=128,shift=31".to_string(),
                129,
            ),
            (
                -(i32::MAX as i64),
                "multiplier=2147483647,out_zero=128,shift=31".to_string(),
                127,
            ),
            // The smallest multiplier: 2^30 / 2^31 is a tie, one less is not.
            (1 << 30, "multiplier=1,out_zero=0,shift=0".to_string(), 1),
            (
                (1 << 30) - 1,
                "multiplier=1,out_zero=0,shift=0".to_string(),
                0,
            ),
            // Saturation at both ends of u8.
            (1000, format!("{half},shift=0"), 255),
            (-1000, format!("{half},shift=0"), 0),
            // A ReLU6-like clamp [out_zero, out_zero + 12].
            (-10, format!("{half},shift=0,qmin=128,qmax=140"), 128),
            (100, format!("{half},shift=0,qmin=128,qmax=140"), 140),
            (10, format!("{half},shift=0,qmin=128,qmax=140"), 133),
        ];
        for (acc, params, expected) in table {
            assert_eq!(
                requantized(*acc, params),
                *expected,
                "acc {acc} with {params}"
            );
        }
    }

    #[test]
    fn the_pair_form_equals_the_plain_definition_bit_for_bit() {
        for text in [
            "qmatmul:m=3,n=5,k=7,a_zero=255,out_zero=0,shift=3",
            "qmatmul:m=1,n=17,k=1,a_zero=0,per_channel=true,shift=0",
            "qmatmul:m=4,n=8,k=16,a_zero=128,qmin=128,qmax=200,shift=9",
        ] {
            let workload: Workload = text.parse().expect("a workload");
            let plain = workload.program(&Layout::default()).expect("plain");
            let inputs = crate::random::random_data(&plain, 11);
            let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
            let expected = eval::evaluate_data(&plain, &refs).expect("plain evaluates");
            for block in [1, 4, 8] {
                let layout = Layout {
                    pack_columns: Some(block),
                    ..Layout::default()
                };
                let paired = workload.program(&layout).expect("pair form");
                let actual = eval::evaluate_data(&paired, &refs).expect("pair form evaluates");
                assert_eq!(actual, expected, "{text} in panels of {block}");
            }
        }
    }

    #[test]
    fn quantization_parameters_out_of_range_are_named() {
        for (text, named) in [
            (
                "qmatmul:m=1,n=1,k=1,a_zero=256",
                "`a_zero=256` must be in 0..=255",
            ),
            (
                "qmatmul:m=1,n=1,k=1,shift=32",
                "`shift=32` must be in 0..=31",
            ),
            (
                "qmatmul:m=1,n=1,k=1,multiplier=0",
                "`multiplier=0` must be in 1..=2147483647",
            ),
            (
                "qmatmul:m=1,n=1,k=1,qmin=10,qmax=9",
                "`qmin=10` is above `qmax=9`",
            ),
            (
                "qmatmul:m=1,n=1,k=1,out_zero=x",
                "`out_zero=x` is not an integer",
            ),
        ] {
            let error = text.parse::<Workload>().unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
    }
}
