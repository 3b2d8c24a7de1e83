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
//! code needs: `A.pairs[i, k2] = A[i, k2] - a_zero` (a row's elements in pairs, `2 kk + t`) and
//! `W.packed[jo, kk, ji, t] = W[2 kk + t, jo b + ji]` as `i16` (zero past `k` and `n`), so that
//! one reduction step is the pair product `A.pairs[i, 2 kk] * W.packed[.., 0] +
//! A.pairs[i, 2 kk + 1] * W.packed[.., 1]` that `vpmaddwd` computes for a whole vector of
//! columns.
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

/// The input `M: i32[channels]` of per-channel multipliers, when the quantization has them.
fn multiplier_input(
    builder: &mut ProgramBuilder,
    q: &Requant,
    channels: i64,
) -> Result<Option<Tensor>, IrError> {
    if q.per_channel {
        Ok(Some(builder.placeholder("M", &[channels], DType::I32)?))
    } else {
        Ok(None)
    }
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
    let multipliers = multiplier_input(&mut builder, &q, p.n)?;
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
/// `qdepthwise_conv2d` (see [`QDepthwiseParams`]), plain or, with `layout.fold_zero_point`,
/// with the input's zero point folded into the bias.
pub fn qdepthwise_conv2d(params: QDepthwiseParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::QDepthwiseConv2d(params).check()?;
    let (p, q) = (params.conv, params.quant);
    let (oh, ow) = depthwise_out_hw(p);
    let blocks = p.c / p.block;
    let mut builder = ProgramBuilder::new("qdepthwise_conv2d");
    let x = builder.placeholder("X", &[p.n, blocks, p.h, p.w, p.block], DType::U8)?;
    let weight = builder.placeholder("W", &[blocks, p.kh, p.kw, p.block], DType::I8)?;
    let bias = builder.placeholder("bias", &[p.c], DType::I32)?;
    let multipliers = multiplier_input(&mut builder, &q, p.c)?;
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
    let fold = layout.fold_zero_point;
    let acc = builder.compute("acc", DType::I32, &axes, |ax| {
        let row = &ax[2] * p.stride + ry.var() * p.dilation;
        let col = &ax[3] * p.stride + rx.var() * p.dilation;
        let input = padded.at(&[ax[0].clone(), ax[1].clone(), row, col, ax[4].clone()]);
        let tap = weight.at(&[ax[1].clone(), ry.var(), rx.var(), ax[4].clone()]);
        let input = if fold {
            widen(input)
        } else {
            widen(input) - i32_const(q.a_zero)
        };
        sum(input * widen(tap), &[&ry, &rx])
    })?;
    // sum (x - z) w + bias = sum x w + (bias - z sum w), in wrapping i32 as in exact integers.
    let bias = if fold {
        let sy = builder.reduce_axis("sy", p.kh)?;
        let sx = builder.reduce_axis("sx", p.kw)?;
        let w_sum = builder.compute("W.sum", DType::I32, &[("c", p.c)], |ax| {
            let (block, lane) = (
                ax[0].clone().floor_div(p.block),
                ax[0].clone().floor_mod(p.block),
            );
            sum(
                widen(weight.at(&[block, sy.var(), sx.var(), lane])),
                &[&sy, &sx],
            )
        })?;
        builder.compute("bias.folded", DType::I32, &[("c", p.c)], |ax| {
            bias.at(ax) - i32_const(q.a_zero) * w_sum.at(ax)
        })?
    } else {
        bias
    };
    requantized_blocks(
        builder,
        &q,
        p.block,
        &axes,
        &acc,
        &bias,
        multipliers.as_ref(),
    )
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
    // A row's pairs are its `2 * pairs` elements in one axis (the last zero when `k` is odd),
    // so that the conversion can be one vector loop; the reduction reads element `2 kk + t`.
    let a_pairs = builder.compute(
        "A.pairs",
        DType::I16,
        &[("i", p.m), ("k2", 2 * pairs)],
        |ax| {
            let centred = widen(a.at(&[ax[0].clone(), ax[1].clone()])) - i32_const(p.quant.a_zero);
            let value = ValueExpr::Cast(DType::I16, Box::new(centred));
            if p.k % 2 == 0 {
                value
            } else {
                ValueExpr::select(
                    ax[1].clone().lt(p.k),
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
            // Through `i32`, as every narrowing store is written (the same value).
            let value = ValueExpr::Cast(DType::I16, Box::new(widen(read_w(kk, column.clone()))));
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
            widen(a_pairs.at(&[i.clone(), kk.clone() * 2 + t]))
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

/// Parameters of `qconv2d`: a convolution on channel-blocked activations, `X: u8[n, ic/a, h, w,
/// a]` (zero point `a_zero`, input block `a = in_block`), OIHW weights `W: i8[oc, ic, kh, kw]`,
/// `bias: i32[oc]` and, with `per_channel`, `M: i32[oc]`, writing `Y: u8[n, oc/b, oh, ow, b]`
/// (block `b`) requantized as in [`Requant`]. A block of 1 is NCHW, a block of all the channels
/// NHWC: a network's first layer reads its 3-channel image NHWC (`in_block=3`) and writes
/// NCHW[8]c. Padding reads as the input's zero point.
///
/// With `Layout::pair_form` the same result is computed as fast integer code needs it, as for
/// `qmatmul`: the padded input as `i16` pairs of consecutive channels of an input block, zero
/// point subtracted (`X.pairs[n, ic/a, h + 2 pad, w + 2 pad, 2 ceil(a / 2)]`, a pair being two
/// adjacent channels), the weights packed to OIHW[a]i[b]o with the input channels in pairs
/// (`W.packed[oc/b, ic/a, kh, kw, ceil(a / 2), b, 2]`, zero past `a` when `a` is odd), and one
/// reduction step the pair product `vpmaddwd` computes for a vector of the block's output
/// channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QConv2dParams {
    /// The convolution's geometry and the output's channel block (`block` divides `oc`; the
    /// `f32` epilogue flags `bias`, `residual`, `relu` and `prepacked` must be false: the bias
    /// is always there and ReLU is the clamp).
    pub conv: super::Conv2dParams,
    /// Zero points, requantization and clamp.
    pub quant: Requant,
    /// The channel block of `X` (divides `ic`); `conv.block` is `Y`'s (divides `oc`).
    pub in_block: i64,
}

/// `qconv2d` (see [`QConv2dParams`]), plain or, with `layout.pair_form`, in its pair form.
pub fn qconv2d(params: QConv2dParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::QConv2d(params).check()?;
    let (p, q) = (params.conv, params.quant);
    let (oh, ow) = super::conv2d_out_hw(p);
    let (block, in_block) = (p.block, params.in_block);
    let (in_blocks, out_blocks) = (p.ic / in_block, p.oc / block);
    let mut builder = ProgramBuilder::new("qconv2d");
    let x = builder.placeholder("X", &[p.n, in_blocks, p.h, p.w, in_block], DType::U8)?;
    let weight = builder.placeholder("W", &[p.oc, p.ic, p.kh, p.kw], DType::I8)?;
    let bias = builder.placeholder("bias", &[p.oc], DType::I32)?;
    let multipliers = multiplier_input(&mut builder, &q, p.oc)?;
    let shape = [
        ("n", p.n),
        ("ocb", out_blocks),
        ("y", oh),
        ("x", ow),
        ("oci", block),
    ];
    let acc = if layout.pair_form {
        paired_convolution(&mut builder, &params, &x, &weight, &shape)?
    } else {
        let zero = ValueExpr::Const(Scalar::int(DType::U8, q.a_zero));
        let padded = pad_input_with(&mut builder, &x, p.pad, zero)?;
        let rco = builder.reduce_axis("rco", in_blocks)?;
        let ry = builder.reduce_axis("ry", p.kh)?;
        let rx = builder.reduce_axis("rx", p.kw)?;
        let rci = builder.reduce_axis("rci", in_block)?;
        builder.compute("acc", DType::I32, &shape, |ax| {
            let row = &ax[2] * p.stride + ry.var() * p.dilation;
            let col = &ax[3] * p.stride + rx.var() * p.dilation;
            let input = padded.at(&[ax[0].clone(), rco.var(), row, col, rci.var()]);
            let tap = weight.at(&[
                &ax[1] * block + &ax[4],
                rco.var() * in_block + rci.var(),
                ry.var(),
                rx.var(),
            ]);
            sum(
                (widen(input) - i32_const(q.a_zero)) * widen(tap),
                &[&rco, &ry, &rx, &rci],
            )
        })?
    };
    requantized_blocks(
        builder,
        &q,
        block,
        &shape,
        &acc,
        &bias,
        multipliers.as_ref(),
    )
}

/// The output `Y` of a channel-blocked quantized convolution, `[n, c/b, oh, ow, b]`: the
/// accumulator plus the bias of its channel, requantized with the channel's multiplier (or the
/// tensor's), and the program built.
fn requantized_blocks(
    mut builder: ProgramBuilder,
    q: &Requant,
    block: i64,
    axes: &[(&str, i64)],
    acc: &Tensor,
    bias: &Tensor,
    multipliers: Option<&Tensor>,
) -> Result<Program, IrError> {
    let y = builder.compute("Y", DType::U8, axes, |ax| {
        let channel = &ax[1] * block + &ax[4];
        let multiplier = match multipliers {
            Some(m) => m.at(std::slice::from_ref(&channel)),
            None => i32_const(q.multiplier),
        };
        let total = acc.at(ax) + bias.at(&[channel]);
        requantize(q, total, multiplier)
    })?;
    builder.build(&[&y])
}

/// The pair form of `qconv2d`'s accumulator (see [`QConv2dParams`]): the reduction runs over
/// input-channel blocks, the kernel window and the pairs of a block, as the `f32` NCHW[b]c
/// convolution runs over blocks, window and channels, so the same template schedules both.
fn paired_convolution(
    builder: &mut ProgramBuilder,
    params: &QConv2dParams,
    x: &Tensor,
    weight: &Tensor,
    shape: &[(&str, i64); 5],
) -> Result<Tensor, IrError> {
    let (p, q) = (params.conv, params.quant);
    let (block, in_block) = (p.block, params.in_block);
    let pairs = (in_block + 1) / 2;
    let (in_blocks, out_blocks) = (p.ic / in_block, p.oc / block);
    let i16_zero = || ValueExpr::Const(Scalar::int(DType::I16, 0));
    let within_block =
        |pair: &IndexExpr, t: &IndexExpr| (pair.clone() * 2 + t.clone()).lt(in_block);
    // The pairs of a block are its channels in one axis (`2 * pairs` of them, the last zero
    // when the block is odd), so that the conversion is one vector loop; the reduction reads
    // channel `2 rcp + t`.
    let x_pairs = builder.compute(
        "X.pairs",
        DType::I16,
        &[
            ("n", p.n),
            ("icb", in_blocks),
            ("hp", p.h + 2 * p.pad),
            ("wp", p.w + 2 * p.pad),
            ("c", 2 * pairs),
        ],
        |ax| {
            let channel = ax[4].clone();
            let row = &ax[2] - p.pad;
            let col = &ax[3] - p.pad;
            let input = x.at(&[ax[0].clone(), ax[1].clone(), row, col, channel.clone()]);
            let centred = widen(input) - i32_const(q.a_zero);
            let value = ValueExpr::Cast(DType::I16, Box::new(centred));
            let mut inside = Vec::new();
            if p.pad > 0 {
                inside.extend([
                    ax[2].clone().ge(p.pad),
                    ax[2].clone().lt(p.h + p.pad),
                    ax[3].clone().ge(p.pad),
                    ax[3].clone().lt(p.w + p.pad),
                ]);
            }
            if in_block % 2 == 1 {
                inside.push(channel.lt(in_block));
            }
            if inside.is_empty() {
                value
            } else {
                ValueExpr::select(crate::expr::Cond::all(inside), value, i16_zero())
            }
        },
    )?;
    let w_packed = builder.compute(
        "W.packed",
        DType::I16,
        &[
            ("ocb", out_blocks),
            ("icb", in_blocks),
            ("kh", p.kh),
            ("kw", p.kw),
            ("pair", pairs),
            ("oci", block),
            ("t", 2),
        ],
        |ax| {
            let in_channel = &ax[1] * in_block + ax[4].clone() * 2 + ax[6].clone();
            let tap = weight.at(&[
                &ax[0] * block + &ax[5],
                in_channel,
                ax[2].clone(),
                ax[3].clone(),
            ]);
            let value = ValueExpr::Cast(DType::I16, Box::new(tap));
            if in_block % 2 == 1 {
                ValueExpr::select(within_block(&ax[4], &ax[6]), value, i16_zero())
            } else {
                value
            }
        },
    )?;
    let rco = builder.reduce_axis("rco", in_blocks)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let rcp = builder.reduce_axis("rcp", pairs)?;
    builder.compute("acc", DType::I32, shape, |ax| {
        let row = &ax[2] * p.stride + ry.var() * p.dilation;
        let col = &ax[3] * p.stride + rx.var() * p.dilation;
        let term = |t: i64| {
            let input = x_pairs.at(&[
                ax[0].clone(),
                rco.var(),
                row.clone(),
                col.clone(),
                rcp.var() * 2 + t,
            ]);
            let tap = w_packed.at(&[
                ax[1].clone(),
                rco.var(),
                ry.var(),
                rx.var(),
                rcp.var(),
                ax[4].clone(),
                IndexExpr::Const(t),
            ]);
            widen(input) * widen(tap)
        };
        sum(term(0) + term(1), &[&rco, &ry, &rx, &rcp])
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

    /// `text`'s program under `layout` computes what its plain definition computes, bit for
    /// bit, on random inputs from `seed`.
    fn assert_same_function(text: &str, layout: Layout, seed: u64) {
        let workload: Workload = text.parse().expect("a workload");
        let plain = workload.program(&Layout::default()).expect("plain");
        let laid_out = workload.program(&layout).expect("laid out");
        let inputs = crate::random::random_data(&plain, seed);
        let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
        let expected = eval::evaluate_data(&plain, &refs).expect("plain evaluates");
        let actual = eval::evaluate_data(&laid_out, &refs).expect("laid out evaluates");
        assert_eq!(actual, expected, "{text} with {layout:?}, seed {seed}");
    }

    #[test]
    fn the_pair_form_equals_the_plain_definition_bit_for_bit() {
        for text in [
            "qmatmul:m=3,n=5,k=7,a_zero=255,out_zero=0,shift=3",
            "qmatmul:m=1,n=17,k=1,a_zero=0,per_channel=true,shift=0",
            "qmatmul:m=4,n=8,k=16,a_zero=128,qmin=128,qmax=200,shift=9",
        ] {
            for block in [1, 4, 8] {
                let layout = Layout {
                    pack_columns: Some(block),
                    ..Layout::default()
                };
                assert_same_function(text, layout, 11);
            }
        }
    }

    #[test]
    fn the_folded_depthwise_equals_the_plain_definition_bit_for_bit() {
        for text in [
            "qdepthwise_conv2d:c=8,h=7,w=9,kh=3,kw=3,pad=1,block=8,a_zero=255,shift=3",
            "qdepthwise_conv2d:c=6,h=8,w=5,kh=5,kw=3,pad=2,stride=2,dilation=2,block=3,a_zero=128,per_channel=true,shift=0",
            "qdepthwise_conv2d:n=2,c=5,h=4,w=4,kh=1,kw=1,block=5,a_zero=0,qmin=100,qmax=160,shift=31",
        ] {
            for seed in [3, 4] {
                let layout = Layout {
                    fold_zero_point: true,
                    ..Layout::default()
                };
                assert_same_function(text, layout, seed);
            }
        }
    }

    /// `qconv2d` by plain loops over NCHW[b]c, written from the operator's documentation alone:
    /// the independent check of both program forms.
    fn qconv2d_by_hand(q: &QConv2dParams, inputs: &[Data]) -> Vec<u8> {
        let (p, r) = (q.conv, q.quant);
        let (Data::U8(x), Data::I8(w), Data::I32(bias)) = (&inputs[0], &inputs[1], &inputs[2])
        else {
            panic!("qconv2d inputs are u8, i8, i32")
        };
        let multipliers = match inputs.get(3) {
            Some(Data::I32(m)) => Some(m),
            _ => None,
        };
        let (oh, ow) = crate::ops::conv2d_out_hw(p);
        let (b, a) = (p.block, q.in_block);
        let mut out = Vec::new();
        for n in 0..p.n {
            for ocb in 0..p.oc / b {
                for y in 0..oh {
                    for xo in 0..ow {
                        for oci in 0..b {
                            let oc = ocb * b + oci;
                            let mut acc: i32 = 0;
                            for ic in 0..p.ic {
                                for ry in 0..p.kh {
                                    for rx in 0..p.kw {
                                        let row = y * p.stride + ry * p.dilation - p.pad;
                                        let col = xo * p.stride + rx * p.dilation - p.pad;
                                        let inside =
                                            (0..p.h).contains(&row) && (0..p.w).contains(&col);
                                        let value = if inside {
                                            let at = (((n * (p.ic / a) + ic / a) * p.h + row)
                                                * p.w
                                                + col)
                                                * a
                                                + ic % a;
                                            x[at as usize] as i32
                                        } else {
                                            r.a_zero as i32
                                        };
                                        let tap = w
                                            [(((oc * p.ic + ic) * p.kh + ry) * p.kw + rx) as usize]
                                            as i32;
                                        acc = acc.wrapping_add((value - r.a_zero as i32) * tap);
                                    }
                                }
                            }
                            let total = acc.wrapping_add(bias[oc as usize]) as i64;
                            let m = multipliers.map_or(r.multiplier, |m| m[oc as usize] as i64);
                            let shift = 31 + r.shift;
                            let scaled = (total * m + (1 << (shift - 1))) >> shift;
                            let clamped = (r.out_zero + scaled).clamp(r.qmin, r.qmax);
                            out.push(clamped as u8);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn qconv2d_in_both_forms_equals_the_convolution_written_out_by_hand() {
        for text in [
            "qconv2d:ic=8,h=6,w=7,oc=16,kh=3,kw=3,pad=1,block=8,a_zero=255,out_zero=0,shift=3",
            "qconv2d:n=2,ic=6,h=9,w=5,oc=9,kh=5,kw=3,stride=2,pad=2,dilation=2,block=3,per_channel=true,shift=0",
            "qconv2d:ic=3,h=7,w=7,oc=2,kh=7,kw=7,stride=3,pad=3,block=1,a_zero=0,qmin=128,qmax=200,shift=9",
            "qconv2d:ic=10,h=4,w=4,oc=10,kh=1,kw=1,stride=2,block=5,a_zero=128,multiplier=2147483647,shift=31",
            "qconv2d:ic=3,h=9,w=8,oc=16,kh=7,kw=7,stride=2,pad=3,block=8,in_block=3,per_channel=true",
            "qconv2d:ic=16,h=5,w=5,oc=6,kh=3,kw=3,pad=1,block=2,in_block=8,shift=2",
        ] {
            let workload: Workload = text.parse().expect("a workload");
            let Workload::QConv2d(params) = workload else {
                panic!("{text} is a qconv2d");
            };
            let plain = workload.program(&Layout::default()).expect("plain");
            let inputs = crate::random::random_data(&plain, 23);
            let refs: Vec<DataRef<'_>> = inputs.iter().map(Data::as_ref).collect();
            let expected = Data::U8(qconv2d_by_hand(&params, &inputs));
            let by_plain = eval::evaluate_data(&plain, &refs).expect("plain evaluates");
            assert_eq!(by_plain[0], expected, "{text}: the plain definition");
            let layout = Layout {
                pair_form: true,
                ..Layout::default()
            };
            let paired = workload.program(&layout).expect("pair form");
            let by_pairs = eval::evaluate_data(&paired, &refs).expect("pair form evaluates");
            assert_eq!(by_pairs[0], expected, "{text}: the pair form");
            // And the lowered pair form, through the interpreter.
            let nest = lower(&Schedule::new(&paired)).expect("lowers");
            let mut output = Data::zeros(DType::U8, expected.len());
            interp::run_data(&nest, &refs, &mut [output.as_mut()]).expect("runs");
            assert_eq!(output, expected, "{text}: the pair form, interpreted");
        }
    }

    #[test]
    fn qconv2d_parameters_are_checked_and_named() {
        for (text, named) in [
            (
                "qconv2d:ic=8,h=5,w=5,oc=12,kh=3,kw=3,block=8",
                "`block=8` must divide `oc=12`",
            ),
            (
                "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3",
                "missing parameter `block`",
            ),
            (
                "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,block=8,relu=true",
                "unknown parameter `relu`",
            ),
            (
                "qconv2d:ic=8,h=2,w=5,oc=8,kh=3,kw=3,block=8",
                "more than the padded input 2",
            ),
            (
                "qconv2d:ic=3,h=5,w=5,oc=8,kh=3,kw=3,block=8",
                "`in_block=8` must divide `ic=3`",
            ),
            (
                "qconv2d:ic=3,h=5,w=5,oc=8,kh=3,kw=3,block=8,in_block=0",
                "`in_block=0` must be at least 1",
            ),
        ] {
            let error = text.parse::<Workload>().unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
        let mut params: QConv2dParams =
            match "qconv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,block=8".parse::<Workload>() {
                Ok(Workload::QConv2d(params)) => params,
                other => panic!("{other:?}"),
            };
        params.conv.relu = true;
        let error = qconv2d(params, &Layout::default()).unwrap_err().to_string();
        assert!(error.contains("relu=true"), "{error}");
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
