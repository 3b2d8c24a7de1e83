//! The operator library and workload descriptions.
//!
//! Every operator is an ordinary [`Program`] built with [`ProgramBuilder`]; nothing here is
//! special to the rest of the compiler. A [`Workload`] names an operator and its shape
//! (`matmul:m=1024,n=1024,k=1024`), parses from and prints to that text form, reports its FLOP
//! count, and builds its program given a [`Layout`].
//!
//! Layout choices that change the data flow, such as packing `B` of a matmul into column panels,
//! are parameters of the definition rather than schedule primitives: a packed operand is one more
//! stage, and the schedule then decides where that stage is computed (at the root, once, or at a
//! loop of the consumer, per panel). See docs/architecture.md.
//!
//! Sizes are bounded where a workload is checked ([`Workload::check`], which parsing and
//! [`Workload::program`] both run): every parameter at most [`MAX_EXTENT`], every tensor at most
//! [`MAX_ELEMENTS`] elements and the iteration space at most [`MAX_POINTS`], each product
//! computed with checked arithmetic, so that no later index or size computation in i64 can
//! overflow, whatever a user typed. How many bytes a workload needs is a separate, machine-dependent
//! question ([`Workload::data_bytes`] answers the part that depends on the workload alone).

use crate::dtype::DType;
use crate::error::IrError;
use crate::expr::{Cond, IndexExpr, ValueExpr};
use crate::program::{sum, Program, ProgramBuilder, Tensor};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

mod quant;
pub use quant::{
    qconv2d, qdense, qdepthwise_conv2d, qmatmul, QConv2dParams, QDepthwiseParams, QMatmulParams,
    Requant,
};

/// The largest value of any workload parameter (a dimension, a padding, a stride): 2^31.
pub const MAX_EXTENT: i64 = 1 << 31;

/// The most elements any tensor of a workload may have: 2^40 (4 TiB of f32, more than any
/// machine measures; the memory limit of measurement refuses far less).
pub const MAX_ELEMENTS: i64 = 1 << 40;

/// The most points of a workload's iteration space (multiply-adds): 2^62, so that index and
/// count arithmetic in i64 never overflows.
pub const MAX_POINTS: i64 = 1 << 62;

/// Parameters of `C[m, n] = sum_k A[m, k] * B[k, n]` (or `B[n, k]` when `transpose_b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulParams {
    /// Rows of A and C.
    pub m: i64,
    /// Columns of B and C.
    pub n: i64,
    /// The reduction length.
    pub k: i64,
    /// Whether B is stored as `[n, k]`.
    pub transpose_b: bool,
}

/// Parameters of a batched matmul `C[b, m, n] = sum_k A[b, m, k] * B[b, k, n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchMatmulParams {
    /// The batch size.
    pub b: i64,
    /// Rows of each A and C.
    pub m: i64,
    /// Columns of each B and C.
    pub n: i64,
    /// The reduction length.
    pub k: i64,
    /// Whether each B is stored as `[n, k]`.
    pub transpose_b: bool,
}

/// Parameters of a fully connected layer `Y[m, n] = act(sum_k X[m, k] * W[n, k] + bias[n])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DenseParams {
    /// The batch (rows of X).
    pub m: i64,
    /// Output features (rows of W).
    pub n: i64,
    /// Input features.
    pub k: i64,
    /// Whether a bias vector is added.
    pub bias: bool,
    /// Whether ReLU is applied last.
    pub relu: bool,
}

/// Parameters of a 2-D convolution in NCHW layout with OIHW weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Batch.
    pub n: i64,
    /// Input channels.
    pub ic: i64,
    /// Input height.
    pub h: i64,
    /// Input width.
    pub w: i64,
    /// Output channels.
    pub oc: i64,
    /// Kernel height.
    pub kh: i64,
    /// Kernel width.
    pub kw: i64,
    /// Stride (both directions).
    pub stride: i64,
    /// Zero padding (both sides, both directions).
    pub pad: i64,
    /// Dilation (both directions).
    pub dilation: i64,
    /// Add a bias per output channel (input `bias[oc]`), fused into the kernel.
    pub bias: bool,
    /// Add a residual input `R` of the output's shape (the shortcut of a ResNet basic block),
    /// fused into the kernel.
    pub residual: bool,
    /// Apply ReLU after the bias and the residual, fused into the kernel.
    pub relu: bool,
    /// Channel block of the activations: 1 is NCHW; `b > 1` is NCHW[b]c on both sides
    /// (`X[n, ic/b, h, w, b]`, `Y[n, oc/b, oh, ow, b]`, and `R` like `Y`), the layout of a
    /// network that keeps its activations channel-blocked between layers (TVM's x86
    /// `conv2d_NCHWc` with equal input and output blocks). The weights stay OIHW as given and
    /// are packed to OIHW[b]i[b]o (`W.packed[oc/b, ic/b, kh, kw, b, b]`) by a stage of the
    /// definition. Must divide `ic` and `oc`.
    pub block: i64,
    /// The weights are given already packed, `W[oc/b, ic/b, kh, kw, b, b]` (OIHW[b]i[b]o, what
    /// [`pack_conv2d_weights`] makes of OIHW), and the definition has no packing stage: weights
    /// are constants at inference, so a deployed kernel packs them once rather than per call.
    /// Needs `block > 1`.
    pub prepacked: bool,
}

/// Parameters of a layout transform between NCHW and channel-blocked NCHW[b]c, or between two
/// channel blocks: the explicit stage at the boundary of a channel-blocked network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayoutTransformParams {
    /// Batch.
    pub n: i64,
    /// Channels.
    pub c: i64,
    /// Height.
    pub h: i64,
    /// Width.
    pub w: i64,
    /// Channel block of the input `X`: 1 is NCHW (`X[n, c, h, w]`), `a > 1` is
    /// `X[n, c/a, h, w, a]`. Must divide `c`.
    pub from: i64,
    /// Channel block of the output `Y`, as `from`. Must divide `c`.
    pub to: i64,
}

/// Parameters of a depthwise 2-D convolution (channel multiplier 1), NCHW, weights `[c, 1, kh, kw]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DepthwiseConv2dParams {
    /// Batch.
    pub n: i64,
    /// Channels.
    pub c: i64,
    /// Input height.
    pub h: i64,
    /// Input width.
    pub w: i64,
    /// Kernel height.
    pub kh: i64,
    /// Kernel width.
    pub kw: i64,
    /// Stride (both directions).
    pub stride: i64,
    /// Zero padding (both sides, both directions).
    pub pad: i64,
    /// Dilation (both directions).
    pub dilation: i64,
    /// Channel block of the layout: 1 is NCHW; `b > 1` is NCHW[b]c, the layout of a network
    /// that keeps its activations channel-blocked between layers (`X[n, c/b, h, w, b]`, weights
    /// `W[c/b, kh, kw, b]`, `Y[n, c/b, oh, ow, b]`), where a vector of `b` channels is one
    /// contiguous load at any stride. Must divide `c`.
    pub block: i64,
}

/// An operator with its shape: what a tuning task is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// A matrix product.
    Matmul(MatmulParams),
    /// A batch of matrix products.
    BatchMatmul(BatchMatmulParams),
    /// A fully connected layer with optional fused bias and ReLU.
    Dense(DenseParams),
    /// A 2-D convolution.
    Conv2d(Conv2dParams),
    /// A depthwise 2-D convolution.
    DepthwiseConv2d(DepthwiseConv2dParams),
    /// A quantized matrix product: `u8` x `i8` -> `i32`, requantized to `u8`.
    QMatmul(QMatmulParams),
    /// A quantized fully connected layer: `qmatmul` with the weights stored `[n, k]`.
    QDense(QMatmulParams),
    /// A quantized depthwise 2-D convolution on channel-blocked NCHW[b]c (NHWC when `b = c`).
    QDepthwiseConv2d(QDepthwiseParams),
    /// A quantized 2-D convolution from channel-blocked NCHW[a]c to NCHW[b]c (a block of 1 is
    /// NCHW, a block of all the channels NHWC).
    QConv2d(QConv2dParams),
    /// A copy of an activation tensor from one channel blocking to another.
    LayoutTransform(LayoutTransformParams),
}

/// Data-layout choices an operator definition takes: they add stages (a packed copy of an
/// operand, a padded copy of the input) that the schedule places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Pack the matrix operand read along `n` (B of matmul, W of dense) into panels of this many
    /// columns, `[ceil(n / block), k, block]`, zero-filled past `n`.
    pub pack_columns: Option<i64>,
    /// Split the reduction of a matrix product into blocks of this many steps: a stage
    /// `<out>.partial[kb, i, j]` sums one block, and the output sums the blocks. A schedule that
    /// places the block loop outside its tile loops keeps one block of the packed operand's
    /// panel in L1 and one block of the rows in L2 (the `KC` of BLIS), accumulating into the
    /// output once per block. Must divide `k`; matmul and dense without an epilogue take it.
    pub block_reduction: Option<i64>,
    /// Pack conv2d's OIHW weights into blocks of this many output channels,
    /// `[ceil(oc / block), ic, kh, kw, block]` (OIHW[x]o), zero-filled past `oc`: a tile that
    /// vectorizes output channels then loads its weights as whole vectors instead of lane by
    /// lane from planes `ic * kh * kw` apart.
    pub pack_output_channels: Option<i64>,
    /// Compute a 1x1 conv2d (no padding, no dilation, any stride) as the GEMM it is: per batch
    /// entry `Y[oc, p] = sum_ic W[oc, ic] * X[ic, p]` over the `oh * ow` output positions `p`,
    /// the input gathered into panels of this many positions, `B.packed[n, ceil(P / b), ic, b]`
    /// (zero past `P`), so a GEMM template's register tile streams through it. The output (and
    /// a residual input) is declared `[n, oc, oh * ow]`: the same memory as NCHW.
    pub conv_as_gemm: Option<i64>,
    /// Compute `qconv2d` in its pair form (see [`QConv2dParams`]): `i16` pairs of input
    /// channels and packed weights, one `vpmaddwd` per reduction step. The plain definition
    /// (without it) is what kernels are checked against.
    pub pair_form: bool,
    /// Compute `qdepthwise_conv2d` with its input zero point folded out of the reduction: the
    /// accumulator is `sum x w` on the raw `u8` input (padding still reads the zero point) and
    /// the bias becomes `bias - a_zero sum w` per channel (`W.sum`, `bias.folded`: a few
    /// additions per channel per call), one subtraction per output channel instead of one per
    /// tap. Equal to the plain form bit for bit (the identity holds in wrapping `i32`).
    pub fold_zero_point: bool,
}

/// One parameter of an operator, for `looptune ops` and parsing.
#[derive(Clone, Copy, Debug)]
pub struct ParamInfo {
    /// The key in workload strings.
    pub key: &'static str,
    /// The default value, if the key may be left out.
    pub default: Option<&'static str>,
    /// What it means.
    pub help: &'static str,
}

/// An operator of the library, for `looptune ops`.
#[derive(Clone, Copy, Debug)]
pub struct OpInfo {
    /// The name in workload strings.
    pub name: &'static str,
    /// What it computes.
    pub summary: &'static str,
    /// Its parameters.
    pub params: &'static [ParamInfo],
}

const fn required(key: &'static str, help: &'static str) -> ParamInfo {
    ParamInfo {
        key,
        default: None,
        help,
    }
}

const fn optional(key: &'static str, default: &'static str, help: &'static str) -> ParamInfo {
    ParamInfo {
        key,
        default: Some(default),
        help,
    }
}

const CONV_PARAMS: &[ParamInfo] = &[
    optional("n", "1", "batch"),
    required("ic", "input channels"),
    required("h", "input height"),
    required("w", "input width"),
    required("oc", "output channels"),
    required("kh", "kernel height"),
    required("kw", "kernel width"),
    optional("stride", "1", "stride"),
    optional("pad", "0", "zero padding on each side"),
    optional("dilation", "1", "dilation"),
    optional("bias", "false", "add a bias per output channel"),
    optional("residual", "false", "add a residual input R shaped like Y"),
    optional("relu", "false", "apply ReLU last"),
    optional(
        "block",
        "1",
        "channel block: 1 is NCHW, b > 1 is NCHW[b]c for X, Y and R (b divides ic and oc)",
    ),
    optional(
        "prepacked",
        "false",
        "W given packed OIHW[b]i[b]o (W[oc/b,ic/b,kh,kw,b,b]); needs block > 1",
    ),
];

const QMATMUL_PARAMS: [ParamInfo; 10] = {
    let r = quant::REQUANT_PARAMS;
    [
        required("m", "rows of A and Y"),
        required("n", "columns of W and Y"),
        required("k", "reduction length"),
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
    ]
};

const QCONV_PARAMS: [ParamInfo; 19] = {
    let r = quant::REQUANT_PARAMS;
    [
        optional("n", "1", "batch"),
        required("ic", "input channels"),
        required("h", "input height"),
        required("w", "input width"),
        required("oc", "output channels"),
        required("kh", "kernel height"),
        required("kw", "kernel width"),
        optional("stride", "1", "stride"),
        optional(
            "pad",
            "0",
            "padding on each side (with the input's zero point)",
        ),
        optional("dilation", "1", "dilation"),
        required(
            "block",
            "channel block b of NCHW[b]c for Y (divides oc; 1 is NCHW)",
        ),
        optional(
            "in_block",
            "block",
            "channel block of X (divides ic; ic is NHWC, 1 is NCHW)",
        ),
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
    ]
};

const QDEPTHWISE_PARAMS: [ParamInfo; 17] = {
    let r = quant::REQUANT_PARAMS;
    [
        optional("n", "1", "batch"),
        required("c", "channels"),
        required("h", "input height"),
        required("w", "input width"),
        required("kh", "kernel height"),
        required("kw", "kernel width"),
        optional("stride", "1", "stride"),
        optional(
            "pad",
            "0",
            "padding on each side (with the input's zero point)",
        ),
        optional("dilation", "1", "dilation"),
        required("block", "channel block b of NCHW[b]c; b = c is NHWC"),
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
    ]
};

/// Every operator of the library.
pub const OPERATORS: &[OpInfo] = &[
    OpInfo {
        name: "matmul",
        summary: "C[m,n] = sum_k A[m,k] * B[k,n] (B[n,k] when transpose_b)",
        params: &[
            required("m", "rows of A and C"),
            required("n", "columns of B and C"),
            required("k", "reduction length"),
            optional("transpose_b", "false", "B stored as [n,k]"),
        ],
    },
    OpInfo {
        name: "batch_matmul",
        summary: "C[b,m,n] = sum_k A[b,m,k] * B[b,k,n] (B[b,n,k] when transpose_b)",
        params: &[
            required("b", "batch"),
            required("m", "rows of A and C"),
            required("n", "columns of B and C"),
            required("k", "reduction length"),
            optional("transpose_b", "false", "B stored as [b,n,k]"),
        ],
    },
    OpInfo {
        name: "dense",
        summary: "Y[m,n] = relu?(sum_k X[m,k] * W[n,k] + bias?[n])",
        params: &[
            required("m", "batch rows"),
            required("n", "output features"),
            required("k", "input features"),
            optional("bias", "false", "add a bias vector"),
            optional("relu", "false", "apply ReLU"),
        ],
    },
    OpInfo {
        name: "conv2d",
        summary: "Y[n,oc,y,x] = relu?(sum_{ic,ry,rx} X[n,ic,y*s+ry*d-p,x*s+rx*d-p] * W[oc,ic,ry,rx] + bias?[oc] + R?[n,oc,y,x])",
        params: CONV_PARAMS,
    },
    OpInfo {
        name: "depthwise_conv2d",
        summary: "Y[n,c,y,x] = sum_{ry,rx} X[n,c,y*s+ry*d-p,x*s+rx*d-p] * W[c,0,ry,rx]",
        params: &[
            optional("n", "1", "batch"),
            required("c", "channels"),
            required("h", "input height"),
            required("w", "input width"),
            required("kh", "kernel height"),
            required("kw", "kernel width"),
            optional("stride", "1", "stride"),
            optional("pad", "0", "zero padding on each side"),
            optional("dilation", "1", "dilation"),
            optional(
                "block",
                "1",
                "channel block: 1 is NCHW, b > 1 is NCHW[b]c (X[n,c/b,h,w,b], W[c/b,kh,kw,b])",
            ),
        ],
    },
    OpInfo {
        name: "qmatmul",
        summary: "Y[m,n] = u8(clamp(out_zero + mulshr(sum_k (A[m,k] - a_zero) * W[k,n] + bias[n], M), qmin, qmax)), A u8, W i8, acc i32",
        params: &QMATMUL_PARAMS,
    },
    OpInfo {
        name: "qdense",
        summary: "qmatmul with the weights stored W[n,k] (a fully connected layer), A u8, W i8, acc i32",
        params: &QMATMUL_PARAMS,
    },
    OpInfo {
        name: "qdepthwise_conv2d",
        summary: "Y[n,c/b,y,x,b] = u8(clamp(out_zero + mulshr(sum_{ry,rx} (X[n,c/b,y*s+ry*d-p,x*s+rx*d-p,b] - a_zero) * W[c/b,ry,rx,b] + bias[c], M), qmin, qmax)), NCHW[b]c (b = c: NHWC)",
        params: &QDEPTHWISE_PARAMS,
    },
    OpInfo {
        name: "qconv2d",
        summary: "Y[n,oc/b,y,x,oc%b] = u8(clamp(out_zero + mulshr(sum_{ic,ry,rx} (X[n,ic/a,y*s+ry*d-p,x*s+rx*d-p,ic%a] - a_zero) * W[oc,ic,ry,rx] + bias[oc], M), qmin, qmax)), X NCHW[a]c (a = in_block), Y NCHW[b]c, W OIHW i8",
        params: &QCONV_PARAMS,
    },
    OpInfo {
        name: "layout_transform",
        summary: "Y[n,c/to,y,x,c%to] = X[n,c/from,y,x,c%from] (a block of 1 is plain NCHW)",
        params: &[
            optional("n", "1", "batch"),
            required("c", "channels"),
            required("h", "height"),
            required("w", "width"),
            required("from", "channel block of X: 1 is NCHW (divides c)"),
            required("to", "channel block of Y: 1 is NCHW (divides c)"),
        ],
    },
];

/// Key-value pairs of a workload string, consumed as the operator reads them.
struct Params<'a> {
    workload: &'a str,
    info: &'static OpInfo,
    values: BTreeMap<String, String>,
}

impl Params<'_> {
    fn error(&self, message: String) -> IrError {
        IrError::BadWorkload {
            workload: self.workload.to_string(),
            message,
        }
    }

    fn raw(&mut self, key: &str) -> Result<String, IrError> {
        let info = self
            .info
            .params
            .iter()
            .find(|param| param.key == key)
            .ok_or_else(|| self.error(format!("internal: no parameter `{key}`")))?;
        match (self.values.remove(key), info.default) {
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_string()),
            (None, None) => Err(self.error(format!("missing parameter `{key}`"))),
        }
    }

    fn int(&mut self, key: &str) -> Result<i64, IrError> {
        let raw = self.raw(key)?;
        let value: i64 = raw
            .parse()
            .map_err(|_| self.error(format!("`{key}={raw}` is not an integer")))?;
        if value < 1 && key != "pad" {
            return Err(self.error(format!("`{key}={raw}` must be at least 1")));
        }
        if value < 0 {
            return Err(self.error(format!("`{key}={raw}` must not be negative")));
        }
        if value > MAX_EXTENT {
            return Err(self.error(format!(
                "`{key}={raw}` is larger than the largest supported value {MAX_EXTENT}"
            )));
        }
        Ok(value)
    }

    /// An integer that may be 0 (a zero point, a shift), bounded by the operator's own check.
    fn any_int(&mut self, key: &str) -> Result<i64, IrError> {
        let raw = self.raw(key)?;
        raw.parse()
            .map_err(|_| self.error(format!("`{key}={raw}` is not an integer")))
    }

    fn flag(&mut self, key: &str) -> Result<bool, IrError> {
        let raw = self.raw(key)?;
        match raw.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(self.error(format!("`{key}={raw}` is not true or false"))),
        }
    }

    fn finish(self) -> Result<(), IrError> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(key) => Err(self.error(format!(
                "unknown parameter `{key}` for `{}` (known: {})",
                self.info.name,
                self.info
                    .params
                    .iter()
                    .map(|p| p.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

impl FromStr for Workload {
    type Err = IrError;

    fn from_str(text: &str) -> Result<Workload, IrError> {
        let bad = |message: String| IrError::BadWorkload {
            workload: text.to_string(),
            message,
        };
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let info = OPERATORS
            .iter()
            .find(|op| op.name == name.trim())
            .ok_or_else(|| {
                bad(format!(
                    "unknown operator `{name}` (known: {})",
                    OPERATORS
                        .iter()
                        .map(|op| op.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let mut values = BTreeMap::new();
        for part in rest
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("`{part}` is not of the form key=value")))?;
            if values
                .insert(key.trim().to_string(), value.trim().to_string())
                .is_some()
            {
                return Err(bad(format!("parameter `{}` given twice", key.trim())));
            }
        }
        let mut params = Params {
            workload: text,
            info,
            values,
        };
        let workload = match info.name {
            "matmul" => Workload::Matmul(MatmulParams {
                m: params.int("m")?,
                n: params.int("n")?,
                k: params.int("k")?,
                transpose_b: params.flag("transpose_b")?,
            }),
            "batch_matmul" => Workload::BatchMatmul(BatchMatmulParams {
                b: params.int("b")?,
                m: params.int("m")?,
                n: params.int("n")?,
                k: params.int("k")?,
                transpose_b: params.flag("transpose_b")?,
            }),
            "dense" => Workload::Dense(DenseParams {
                m: params.int("m")?,
                n: params.int("n")?,
                k: params.int("k")?,
                bias: params.flag("bias")?,
                relu: params.flag("relu")?,
            }),
            "conv2d" => Workload::Conv2d(Conv2dParams {
                n: params.int("n")?,
                ic: params.int("ic")?,
                h: params.int("h")?,
                w: params.int("w")?,
                oc: params.int("oc")?,
                kh: params.int("kh")?,
                kw: params.int("kw")?,
                stride: params.int("stride")?,
                pad: params.int("pad")?,
                dilation: params.int("dilation")?,
                bias: params.flag("bias")?,
                residual: params.flag("residual")?,
                relu: params.flag("relu")?,
                block: params.int("block")?,
                prepacked: params.flag("prepacked")?,
            }),
            "layout_transform" => Workload::LayoutTransform(LayoutTransformParams {
                n: params.int("n")?,
                c: params.int("c")?,
                h: params.int("h")?,
                w: params.int("w")?,
                from: params.int("from")?,
                to: params.int("to")?,
            }),
            "qmatmul" | "qdense" => {
                let product = QMatmulParams {
                    m: params.int("m")?,
                    n: params.int("n")?,
                    k: params.int("k")?,
                    quant: Requant::parse(&mut params)?,
                };
                if info.name == "qdense" {
                    Workload::QDense(product)
                } else {
                    Workload::QMatmul(product)
                }
            }
            "qconv2d" => {
                let block = params.int("block")?;
                let in_block = if params.values.contains_key("in_block") {
                    params.int("in_block")?
                } else {
                    block
                };
                Workload::QConv2d(QConv2dParams {
                    conv: Conv2dParams {
                        n: params.int("n")?,
                        ic: params.int("ic")?,
                        h: params.int("h")?,
                        w: params.int("w")?,
                        oc: params.int("oc")?,
                        kh: params.int("kh")?,
                        kw: params.int("kw")?,
                        stride: params.int("stride")?,
                        pad: params.int("pad")?,
                        dilation: params.int("dilation")?,
                        bias: false,
                        residual: false,
                        relu: false,
                        block,
                        prepacked: false,
                    },
                    in_block,
                    quant: Requant::parse(&mut params)?,
                })
            }
            "qdepthwise_conv2d" => Workload::QDepthwiseConv2d(QDepthwiseParams {
                conv: DepthwiseConv2dParams {
                    n: params.int("n")?,
                    c: params.int("c")?,
                    h: params.int("h")?,
                    w: params.int("w")?,
                    kh: params.int("kh")?,
                    kw: params.int("kw")?,
                    stride: params.int("stride")?,
                    pad: params.int("pad")?,
                    dilation: params.int("dilation")?,
                    block: params.int("block")?,
                },
                quant: Requant::parse(&mut params)?,
            }),
            _ => Workload::DepthwiseConv2d(DepthwiseConv2dParams {
                n: params.int("n")?,
                c: params.int("c")?,
                h: params.int("h")?,
                w: params.int("w")?,
                kh: params.int("kh")?,
                kw: params.int("kw")?,
                stride: params.int("stride")?,
                pad: params.int("pad")?,
                dilation: params.int("dilation")?,
                block: params.int("block")?,
            }),
        };
        params.finish()?;
        workload.check().map_err(|err| bad(err.to_string()))?;
        Ok(workload)
    }
}

impl fmt::Display for Workload {
    /// The canonical text form, with every parameter spelled out: a stable workload key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Matmul(p) => {
                write!(
                    f,
                    "matmul:m={},n={},k={},transpose_b={}",
                    p.m, p.n, p.k, p.transpose_b
                )
            }
            Workload::BatchMatmul(p) => write!(
                f,
                "batch_matmul:b={},m={},n={},k={},transpose_b={}",
                p.b, p.m, p.n, p.k, p.transpose_b
            ),
            Workload::Dense(p) => write!(
                f,
                "dense:m={},n={},k={},bias={},relu={}",
                p.m, p.n, p.k, p.bias, p.relu
            ),
            Workload::Conv2d(p) => {
                write!(
                    f,
                    "conv2d:n={},ic={},h={},w={},oc={},kh={},kw={},stride={},pad={},dilation={}",
                    p.n, p.ic, p.h, p.w, p.oc, p.kh, p.kw, p.stride, p.pad, p.dilation
                )?;
                // Fused epilogues are spelled out only when present, so that the key of a
                // plain convolution stays what it was before they existed.
                for (flag, name) in [(p.bias, "bias"), (p.residual, "residual"), (p.relu, "relu")] {
                    if flag {
                        write!(f, ",{name}=true")?;
                    }
                }
                // Spelled out only when blocked, so that the NCHW key stays what it was.
                if p.block != 1 {
                    write!(f, ",block={}", p.block)?;
                }
                if p.prepacked {
                    write!(f, ",prepacked=true")?;
                }
                Ok(())
            }
            Workload::LayoutTransform(p) => write!(
                f,
                "layout_transform:n={},c={},h={},w={},from={},to={}",
                p.n, p.c, p.h, p.w, p.from, p.to
            ),
            Workload::DepthwiseConv2d(p) => {
                write!(
                    f,
                    "depthwise_conv2d:n={},c={},h={},w={},kh={},kw={},stride={},pad={},dilation={}",
                    p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation
                )?;
                // Spelled out only when blocked, so that the NCHW key stays what it was.
                if p.block != 1 {
                    write!(f, ",block={}", p.block)?;
                }
                Ok(())
            }
            Workload::QMatmul(p) | Workload::QDense(p) => write!(
                f,
                "{}:m={},n={},k={},{}",
                self.op_name(),
                p.m,
                p.n,
                p.k,
                p.quant.key_suffix()
            ),
            Workload::QDepthwiseConv2d(q) => {
                let p = q.conv;
                write!(
                    f,
                    "qdepthwise_conv2d:n={},c={},h={},w={},kh={},kw={},stride={},pad={},dilation={},block={},{}",
                    p.n, p.c, p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation, p.block,
                    q.quant.key_suffix()
                )
            }
            Workload::QConv2d(q) => {
                let p = q.conv;
                write!(
                    f,
                    "qconv2d:n={},ic={},h={},w={},oc={},kh={},kw={},stride={},pad={},dilation={},block={},in_block={},{}",
                    p.n, p.ic, p.h, p.w, p.oc, p.kh, p.kw, p.stride, p.pad, p.dilation, p.block,
                    q.in_block, q.quant.key_suffix()
                )
            }
        }
    }
}

/// Output extent of a convolution along one direction, or an error naming the parameters.
fn conv_out(
    op: &str,
    input: i64,
    kernel: i64,
    stride: i64,
    pad: i64,
    dilation: i64,
) -> Result<i64, IrError> {
    let overflow = || {
        IrError::InvalidParameter {
        op: op.to_string(),
        message: format!(
            "input {input}, kernel {kernel}, padding {pad} and dilation {dilation} overflow 64-bit sizes"
        ),
    }
    };
    let span = dilation
        .checked_mul(kernel - 1)
        .and_then(|extent| extent.checked_add(1))
        .ok_or_else(overflow)?;
    let padded = pad
        .checked_mul(2)
        .and_then(|both| both.checked_add(input))
        .ok_or_else(overflow)?;
    if padded < span {
        return Err(IrError::InvalidParameter {
            op: op.to_string(),
            message: format!(
                "kernel extent {kernel} with dilation {dilation} spans {span}, more than the padded input {padded}"
            ),
        });
    }
    Ok((padded - span) / stride + 1)
}

impl Workload {
    /// The operator's name.
    pub fn op_name(&self) -> &'static str {
        match self {
            Workload::Matmul(_) => "matmul",
            Workload::BatchMatmul(_) => "batch_matmul",
            Workload::Dense(_) => "dense",
            Workload::Conv2d(_) => "conv2d",
            Workload::DepthwiseConv2d(_) => "depthwise_conv2d",
            Workload::QMatmul(_) => "qmatmul",
            Workload::QDense(_) => "qdense",
            Workload::QDepthwiseConv2d(_) => "qdepthwise_conv2d",
            Workload::QConv2d(_) => "qconv2d",
            Workload::LayoutTransform(_) => "layout_transform",
        }
    }

    /// Checks the parameters: every size at least 1, padding not negative, the kernel fits.
    pub fn check(&self) -> Result<(), IrError> {
        let op = self.op_name();
        let positive = |name: &str, value: i64| {
            if value < 1 {
                Err(IrError::InvalidParameter {
                    op: op.to_string(),
                    message: format!("`{name}={value}` must be at least 1"),
                })
            } else {
                Ok(())
            }
        };
        // Sizes that must be at least 1, and for convolutions the window geometry.
        let (sizes, window): (Vec<(&str, i64)>, Option<[i64; 7]>) = match *self {
            Workload::Matmul(p) => (vec![("m", p.m), ("n", p.n), ("k", p.k)], None),
            Workload::BatchMatmul(p) => {
                (vec![("b", p.b), ("m", p.m), ("n", p.n), ("k", p.k)], None)
            }
            Workload::Dense(p) => (vec![("m", p.m), ("n", p.n), ("k", p.k)], None),
            Workload::QMatmul(p) | Workload::QDense(p) => {
                p.quant.check(op)?;
                (vec![("m", p.m), ("n", p.n), ("k", p.k)], None)
            }
            Workload::QDepthwiseConv2d(QDepthwiseParams { conv: p, quant }) => {
                quant.check(op)?;
                (
                    vec![
                        ("n", p.n),
                        ("c", p.c),
                        ("h", p.h),
                        ("w", p.w),
                        ("kh", p.kh),
                        ("kw", p.kw),
                        ("block", p.block),
                    ],
                    Some([p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation]),
                )
            }
            Workload::QConv2d(QConv2dParams {
                conv: p,
                quant,
                in_block,
            }) => {
                quant.check(op)?;
                if p.bias || p.residual || p.relu || p.prepacked {
                    return Err(IrError::InvalidParameter {
                        op: op.to_string(),
                        message: format!(
                            "the f32 epilogue flags (bias={}, residual={}, relu={}, prepacked={}) \
                             do not apply: the bias is always added and ReLU is the clamp",
                            p.bias, p.residual, p.relu, p.prepacked
                        ),
                    });
                }
                (
                    vec![
                        ("n", p.n),
                        ("ic", p.ic),
                        ("h", p.h),
                        ("w", p.w),
                        ("oc", p.oc),
                        ("kh", p.kh),
                        ("kw", p.kw),
                        ("block", p.block),
                        ("in_block", in_block),
                    ],
                    Some([p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation]),
                )
            }
            Workload::Conv2d(p) => (
                vec![
                    ("n", p.n),
                    ("ic", p.ic),
                    ("h", p.h),
                    ("w", p.w),
                    ("oc", p.oc),
                    ("kh", p.kh),
                    ("kw", p.kw),
                    ("block", p.block),
                ],
                Some([p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation]),
            ),
            Workload::LayoutTransform(p) => (
                vec![
                    ("n", p.n),
                    ("c", p.c),
                    ("h", p.h),
                    ("w", p.w),
                    ("from", p.from),
                    ("to", p.to),
                ],
                None,
            ),
            Workload::DepthwiseConv2d(p) => (
                vec![
                    ("n", p.n),
                    ("c", p.c),
                    ("h", p.h),
                    ("w", p.w),
                    ("kh", p.kh),
                    ("kw", p.kw),
                    ("block", p.block),
                ],
                Some([p.h, p.w, p.kh, p.kw, p.stride, p.pad, p.dilation]),
            ),
        };
        let too_large = |name: &str, value: i64| {
            if value > MAX_EXTENT {
                Err(IrError::InvalidParameter {
                    op: op.to_string(),
                    message: format!(
                        "`{name}={value}` is larger than the largest supported value {MAX_EXTENT}"
                    ),
                })
            } else {
                Ok(())
            }
        };
        for &(name, value) in &sizes {
            positive(name, value)?;
            too_large(name, value)?;
        }
        let divides = |block_name: &str, block: i64, name: &str, value: i64| {
            if value % block != 0 {
                Err(IrError::InvalidParameter {
                    op: op.to_string(),
                    message: format!("`{block_name}={block}` must divide `{name}={value}`"),
                })
            } else {
                Ok(())
            }
        };
        match *self {
            Workload::DepthwiseConv2d(p)
            | Workload::QDepthwiseConv2d(QDepthwiseParams { conv: p, .. }) => {
                divides("block", p.block, "c", p.c)?
            }
            Workload::QConv2d(QConv2dParams {
                conv: p, in_block, ..
            }) => {
                divides("in_block", in_block, "ic", p.ic)?;
                divides("block", p.block, "oc", p.oc)?;
            }
            Workload::Conv2d(p) => {
                divides("block", p.block, "ic", p.ic)?;
                divides("block", p.block, "oc", p.oc)?;
                if p.prepacked && p.block == 1 {
                    return Err(IrError::InvalidParameter {
                        op: op.to_string(),
                        message: "`prepacked=true` needs a channel block: `block=1`".to_string(),
                    });
                }
            }
            Workload::LayoutTransform(p) => {
                divides("from", p.from, "c", p.c)?;
                divides("to", p.to, "c", p.c)?;
            }
            _ => {}
        }
        if let Some([h, w, kh, kw, stride, pad, dilation]) = window {
            positive("stride", stride)?;
            positive("dilation", dilation)?;
            if pad < 0 {
                return Err(IrError::InvalidParameter {
                    op: op.to_string(),
                    message: format!("`pad={pad}` must not be negative"),
                });
            }
            for (name, value) in [("stride", stride), ("pad", pad), ("dilation", dilation)] {
                too_large(name, value)?;
            }
            conv_out(op, h, kh, stride, pad, dilation)?;
            conv_out(op, w, kw, stride, pad, dilation)?;
        }
        for (tensor, shape) in self.tensor_shapes()? {
            checked_product(op, &format!("tensor `{tensor}`"), &shape, MAX_ELEMENTS)?;
        }
        let (points, dims) = self.iteration_space()?;
        checked_product(
            op,
            &format!("the iteration space ({points})"),
            &dims,
            MAX_POINTS,
        )?;
        Ok(())
    }

    /// The shapes of the tensors the operator reads, writes and (for padding) materialises, by
    /// name, for size checks. Convolution output extents are computed with checked arithmetic.
    fn tensor_shapes(&self) -> Result<Vec<(&'static str, Vec<i64>)>, IrError> {
        let op = self.op_name();
        Ok(match *self {
            Workload::Matmul(p) => vec![
                ("A", vec![p.m, p.k]),
                ("B", vec![p.k, p.n]),
                ("C", vec![p.m, p.n]),
            ],
            Workload::BatchMatmul(p) => vec![
                ("A", vec![p.b, p.m, p.k]),
                ("B", vec![p.b, p.k, p.n]),
                ("C", vec![p.b, p.m, p.n]),
            ],
            Workload::Dense(p) => vec![
                ("X", vec![p.m, p.k]),
                ("W", vec![p.n, p.k]),
                ("Y", vec![p.m, p.n]),
            ],
            Workload::QMatmul(p) | Workload::QDense(p) => vec![
                ("A", vec![p.m, p.k]),
                ("W", vec![p.k, p.n]),
                ("Y", vec![p.m, p.n]),
            ],
            Workload::Conv2d(p) | Workload::QConv2d(QConv2dParams { conv: p, .. }) => {
                let oh = conv_out(op, p.h, p.kh, p.stride, p.pad, p.dilation)?;
                let ow = conv_out(op, p.w, p.kw, p.stride, p.pad, p.dilation)?;
                vec![
                    ("X", vec![p.n, p.ic, p.h + 2 * p.pad, p.w + 2 * p.pad]),
                    ("W", vec![p.oc, p.ic, p.kh, p.kw]),
                    ("Y", vec![p.n, p.oc, oh, ow]),
                ]
            }
            Workload::DepthwiseConv2d(p)
            | Workload::QDepthwiseConv2d(QDepthwiseParams { conv: p, .. }) => {
                let oh = conv_out(op, p.h, p.kh, p.stride, p.pad, p.dilation)?;
                let ow = conv_out(op, p.w, p.kw, p.stride, p.pad, p.dilation)?;
                vec![
                    ("X", vec![p.n, p.c, p.h + 2 * p.pad, p.w + 2 * p.pad]),
                    ("W", vec![p.c, p.kh, p.kw]),
                    ("Y", vec![p.n, p.c, oh, ow]),
                ]
            }
            Workload::LayoutTransform(p) => vec![
                ("X", vec![p.n, p.c, p.h, p.w]),
                ("Y", vec![p.n, p.c, p.h, p.w]),
            ],
        })
    }

    /// The iteration space's name and extents (every loop of the operator's main computation).
    fn iteration_space(&self) -> Result<(&'static str, Vec<i64>), IrError> {
        let op = self.op_name();
        Ok(match *self {
            Workload::Matmul(p) => ("m x n x k", vec![p.m, p.n, p.k]),
            Workload::BatchMatmul(p) => ("b x m x n x k", vec![p.b, p.m, p.n, p.k]),
            Workload::Dense(p) => ("m x n x k", vec![p.m, p.n, p.k]),
            Workload::QMatmul(p) | Workload::QDense(p) => ("m x n x k", vec![p.m, p.n, p.k]),
            Workload::Conv2d(p) | Workload::QConv2d(QConv2dParams { conv: p, .. }) => {
                let oh = conv_out(op, p.h, p.kh, p.stride, p.pad, p.dilation)?;
                let ow = conv_out(op, p.w, p.kw, p.stride, p.pad, p.dilation)?;
                (
                    "n x oc x oh x ow x ic x kh x kw",
                    vec![p.n, p.oc, oh, ow, p.ic, p.kh, p.kw],
                )
            }
            Workload::DepthwiseConv2d(p)
            | Workload::QDepthwiseConv2d(QDepthwiseParams { conv: p, .. }) => {
                let oh = conv_out(op, p.h, p.kh, p.stride, p.pad, p.dilation)?;
                let ow = conv_out(op, p.w, p.kw, p.stride, p.pad, p.dilation)?;
                (
                    "n x c x oh x ow x kh x kw",
                    vec![p.n, p.c, oh, ow, p.kh, p.kw],
                )
            }
            Workload::LayoutTransform(p) => ("n x c x h x w", vec![p.n, p.c, p.h, p.w]),
        })
    }

    /// Bytes of the operator's data: its inputs, its outputs and a padded copy of the input
    /// where padding is materialised (f32 everywhere), saturating at `u64::MAX`. A checked
    /// workload never saturates. What a measurement needs on top (a reference copy of the
    /// outputs, the temporaries of a schedule) is the measurer's estimate, built on this one.
    pub fn data_bytes(&self) -> u64 {
        let Ok(shapes) = self.tensor_shapes() else {
            return u64::MAX;
        };
        shapes
            .iter()
            .map(|(_, shape)| {
                shape
                    .iter()
                    .try_fold(4u64, |bytes, &extent| {
                        bytes.checked_mul(u64::try_from(extent).ok()?)
                    })
                    .unwrap_or(u64::MAX)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// Whether this is an 8-bit quantized operator: its kernels compute on integers, so
    /// [`Workload::flops`] counts integer operations (reported as GOP/s, not GFLOP/s).
    pub fn is_quantized(&self) -> bool {
        matches!(
            self,
            Workload::QMatmul(_)
                | Workload::QDense(_)
                | Workload::QDepthwiseConv2d(_)
                | Workload::QConv2d(_)
        )
    }

    /// Floating-point operations of one run (a multiply-add counts as two). A layout transform
    /// computes nothing; it counts one operation per element it moves, so that its throughput
    /// (elements per second) ranks its configs like any other workload's.
    pub fn flops(&self) -> f64 {
        match *self {
            // In f64 factor by factor: exact for every checked workload, and no overflow for
            // an unchecked one.
            Workload::Matmul(p) => 2.0 * product(&[p.m, p.n, p.k]),
            Workload::BatchMatmul(p) => 2.0 * product(&[p.b, p.m, p.n, p.k]),
            Workload::Dense(p) => {
                let epilogue = (p.bias as i64 + p.relu as i64) as f64 * product(&[p.m, p.n]);
                2.0 * product(&[p.m, p.n, p.k]) + epilogue
            }
            Workload::Conv2d(p) | Workload::QConv2d(QConv2dParams { conv: p, .. }) => {
                let (oh, ow) = conv2d_out_hw(p);
                2.0 * product(&[p.n, p.oc, oh, ow, p.ic, p.kh, p.kw])
            }
            Workload::DepthwiseConv2d(p)
            | Workload::QDepthwiseConv2d(QDepthwiseParams { conv: p, .. }) => {
                let (oh, ow) = depthwise_out_hw(p);
                2.0 * product(&[p.n, p.c, oh, ow, p.kh, p.kw])
            }
            // Operations, a multiply-add counting two, so that GOP/s compare with GFLOP/s.
            Workload::QMatmul(p) | Workload::QDense(p) => 2.0 * product(&[p.m, p.n, p.k]),
            Workload::LayoutTransform(p) => product(&[p.n, p.c, p.h, p.w]),
        }
    }

    /// Builds the operator's program with the given layout choices.
    pub fn program(&self, layout: &Layout) -> Result<Program, IrError> {
        self.check()?;
        match *self {
            Workload::Matmul(p) => matmul(p, layout),
            Workload::BatchMatmul(p) => batch_matmul(p),
            Workload::Dense(p) => dense(p, layout),
            Workload::Conv2d(p) => conv2d(p, layout),
            Workload::DepthwiseConv2d(p) => depthwise_conv2d(p),
            Workload::QMatmul(p) => qmatmul(p, layout),
            Workload::QDense(p) => qdense(p, layout),
            Workload::QDepthwiseConv2d(p) => qdepthwise_conv2d(p, layout),
            Workload::QConv2d(p) => qconv2d(p, layout),
            Workload::LayoutTransform(p) => layout_transform(p),
        }
    }
}

/// The product of `factors` in f64.
fn product(factors: &[i64]) -> f64 {
    factors.iter().map(|&factor| factor as f64).product()
}

/// The product of `dims`, or an error naming `what` when it overflows or passes `limit`.
fn checked_product(op: &str, what: &str, dims: &[i64], limit: i64) -> Result<i64, IrError> {
    let shape = dims
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" x ");
    dims.iter()
        .try_fold(1i64, |total, &extent| total.checked_mul(extent))
        .filter(|&total| total <= limit)
        .ok_or_else(|| IrError::InvalidParameter {
            op: op.to_string(),
            message: format!("{what} of {shape} is larger than the supported {limit}"),
        })
}

/// Output extent of a convolution along one direction (parameters already checked), saturating
/// instead of overflowing for unchecked ones.
fn out_extent(input: i64, kernel: i64, stride: i64, pad: i64, dilation: i64) -> i64 {
    let padded = input.saturating_add(pad.saturating_mul(2));
    let span = dilation.saturating_mul(kernel.saturating_sub(1));
    (padded.saturating_sub(span).saturating_sub(1) / stride.max(1)).saturating_add(1)
}

pub(crate) fn depthwise_out_hw(p: DepthwiseConv2dParams) -> (i64, i64) {
    (
        out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
        out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
    )
}

pub(crate) fn conv2d_out_hw(p: Conv2dParams) -> (i64, i64) {
    let oh = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
    let ow = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
    (oh, ow)
}

fn check_block(op: &str, block: i64) -> Result<(), IrError> {
    if block < 1 {
        return Err(IrError::InvalidParameter {
            op: op.to_string(),
            message: format!("pack block {block} must be at least 1"),
        });
    }
    Ok(())
}

/// A column-panel copy `packed[jo, k, ji] = source(k, jo * block + ji)`, zero past `n`: the
/// layout a register-tiled kernel streams through contiguously.
fn pack_columns(
    builder: &mut ProgramBuilder,
    name: &str,
    n: i64,
    k: i64,
    block: i64,
    source: impl Fn(IndexExpr, IndexExpr) -> ValueExpr,
) -> Result<Tensor, IrError> {
    let panels = (n + block - 1) / block;
    builder.compute(
        name,
        DType::F32,
        &[("jo", panels), ("k", k), ("ji", block)],
        |axes| {
            let column = &axes[0] * block + &axes[2];
            let value = source(axes[1].clone(), column.clone());
            if n % block == 0 {
                value
            } else {
                ValueExpr::select(column.lt(n), value, ValueExpr::f32(0.0))
            }
        },
    )
}

/// The product `name[i, j] = sum_k term(i, k, j)` over `(m, n, k)`: one reduction stage, or,
/// with `layout.block_reduction`, a stage `<name>.partial[kb, i, j]` summing one block of `k`
/// and the output summing the blocks (see [`Layout::block_reduction`]).
fn matrix_product(
    builder: &mut ProgramBuilder,
    op: &str,
    name: &str,
    (m, n, k): (i64, i64, i64),
    layout: &Layout,
    term: impl Fn(IndexExpr, IndexExpr, IndexExpr) -> ValueExpr,
) -> Result<Tensor, IrError> {
    let Some(block) = layout.block_reduction else {
        let reduce = builder.reduce_axis("k", k)?;
        return builder.compute(name, DType::F32, &[("i", m), ("j", n)], |ax| {
            sum(term(ax[0].clone(), reduce.var(), ax[1].clone()), &[&reduce])
        });
    };
    if block < 1 || k % block != 0 {
        return Err(IrError::InvalidParameter {
            op: op.to_string(),
            message: format!("reduction block {block} must be at least 1 and divide k = {k}"),
        });
    }
    let reduce = builder.reduce_axis("k", block)?;
    let partial = builder.compute(
        &format!("{name}.partial"),
        DType::F32,
        &[("kb", k / block), ("i", m), ("j", n)],
        |ax| {
            let kk = ax[0].clone() * block + reduce.var();
            sum(term(ax[1].clone(), kk, ax[2].clone()), &[&reduce])
        },
    )?;
    let blocks = builder.reduce_axis("kb", k / block)?;
    builder.compute(name, DType::F32, &[("i", m), ("j", n)], |ax| {
        sum(
            partial.at(&[blocks.var(), ax[0].clone(), ax[1].clone()]),
            &[&blocks],
        )
    })
}

/// `C = A @ B` (or `A @ B^T`), with B optionally packed into column panels.
pub fn matmul(p: MatmulParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::Matmul(p).check()?;
    let mut builder = ProgramBuilder::new("matmul");
    let a = builder.placeholder("A", &[p.m, p.k], DType::F32)?;
    let b_shape = if p.transpose_b {
        [p.n, p.k]
    } else {
        [p.k, p.n]
    };
    let b = builder.placeholder("B", &b_shape, DType::F32)?;
    let read_b = |kk: IndexExpr, j: IndexExpr| {
        if p.transpose_b {
            b.at(&[j, kk])
        } else {
            b.at(&[kk, j])
        }
    };
    let c = match layout.pack_columns {
        None => matrix_product(
            &mut builder,
            "matmul",
            "C",
            (p.m, p.n, p.k),
            layout,
            |i, kk, j| a.at(&[i, kk.clone()]) * read_b(kk, j),
        )?,
        Some(block) => {
            check_block("matmul", block)?;
            let packed = pack_columns(&mut builder, "B.packed", p.n, p.k, block, read_b)?;
            matrix_product(
                &mut builder,
                "matmul",
                "C",
                (p.m, p.n, p.k),
                layout,
                |i, kk, j| {
                    let panel = j.clone().floor_div(block);
                    let lane = j.floor_mod(block);
                    a.at(&[i, kk.clone()]) * packed.at(&[panel, kk, lane])
                },
            )?
        }
    };
    builder.build(&[&c])
}

/// `C[b] = A[b] @ B[b]` for every batch entry.
pub fn batch_matmul(p: BatchMatmulParams) -> Result<Program, IrError> {
    Workload::BatchMatmul(p).check()?;
    let mut builder = ProgramBuilder::new("batch_matmul");
    let a = builder.placeholder("A", &[p.b, p.m, p.k], DType::F32)?;
    let b_shape = if p.transpose_b {
        [p.b, p.n, p.k]
    } else {
        [p.b, p.k, p.n]
    };
    let b = builder.placeholder("B", &b_shape, DType::F32)?;
    let reduce = builder.reduce_axis("k", p.k)?;
    let c = builder.compute(
        "C",
        DType::F32,
        &[("b", p.b), ("i", p.m), ("j", p.n)],
        |ax| {
            let kk = reduce.var();
            let rhs = if p.transpose_b {
                b.at(&[ax[0].clone(), ax[2].clone(), kk.clone()])
            } else {
                b.at(&[ax[0].clone(), kk.clone(), ax[2].clone()])
            };
            sum(a.at(&[ax[0].clone(), ax[1].clone(), kk]) * rhs, &[&reduce])
        },
    )?;
    builder.build(&[&c])
}

/// Adds an elementwise epilogue stage `relu?(input + bias?[last axis])`; returns `input` when
/// there is nothing to do. Usable after any operator whose last axis is the feature axis.
pub fn epilogue(
    builder: &mut ProgramBuilder,
    name: &str,
    input: &Tensor,
    bias: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor, IrError> {
    if bias.is_none() && !relu {
        return Ok(input.clone());
    }
    let names = ["i", "j", "l", "m", "n", "o"];
    let axes: Vec<(&str, i64)> = input
        .shape
        .iter()
        .enumerate()
        .map(|(dim, &extent)| (names[dim.min(names.len() - 1)], extent))
        .collect();
    builder.compute(name, input.dtype, &axes, |ax| {
        let mut value = input.at(ax);
        if let Some(bias) = bias {
            value = value + bias.at(&[ax[ax.len() - 1].clone()]);
        }
        if relu {
            value = value.max(ValueExpr::f32(0.0));
        }
        value
    })
}

/// `Y = relu?(X @ W^T + bias?)` with W stored `[n, k]`, optionally packed into column panels.
pub fn dense(p: DenseParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::Dense(p).check()?;
    let mut builder = ProgramBuilder::new("dense");
    let x = builder.placeholder("X", &[p.m, p.k], DType::F32)?;
    let w = builder.placeholder("W", &[p.n, p.k], DType::F32)?;
    let bias = if p.bias {
        Some(builder.placeholder("bias", &[p.n], DType::F32)?)
    } else {
        None
    };
    let product_name = if p.bias || p.relu { "Y.matmul" } else { "Y" };
    if layout.block_reduction.is_some() && (p.bias || p.relu) {
        return Err(IrError::InvalidParameter {
            op: "dense".to_string(),
            message: "a blocked reduction needs the product to be the output (no bias, no relu)"
                .to_string(),
        });
    }
    let shape = (p.m, p.n, p.k);
    let product = match layout.pack_columns {
        None => matrix_product(
            &mut builder,
            "dense",
            product_name,
            shape,
            layout,
            |i, kk, j| x.at(&[i, kk.clone()]) * w.at(&[j, kk]),
        )?,
        Some(block) => {
            check_block("dense", block)?;
            let packed = pack_columns(&mut builder, "W.packed", p.n, p.k, block, |kk, j| {
                w.at(&[j, kk])
            })?;
            matrix_product(
                &mut builder,
                "dense",
                product_name,
                shape,
                layout,
                |i, kk, j| {
                    let panel = j.clone().floor_div(block);
                    let lane = j.floor_mod(block);
                    x.at(&[i, kk.clone()]) * packed.at(&[panel, kk, lane])
                },
            )?
        }
    };
    let output = epilogue(&mut builder, "Y", &product, bias.as_ref(), p.relu)?;
    builder.build(&[&output])
}

/// A zero-padded copy of an NCHW input: a stage of its own so that a schedule may materialise
/// it, though the default schedule inlines it (padding then lives in the convolution's loads).
fn pad_input(builder: &mut ProgramBuilder, input: &Tensor, pad: i64) -> Result<Tensor, IrError> {
    pad_input_with(builder, input, pad, ValueExpr::f32(0.0))
}

/// [`pad_input`] with `fill` outside the input (a quantized input's zero point).
pub(crate) fn pad_input_with(
    builder: &mut ProgramBuilder,
    input: &Tensor,
    pad: i64,
    fill: ValueExpr,
) -> Result<Tensor, IrError> {
    if pad == 0 {
        return Ok(input.clone());
    }
    // NCHW, or NCHW[b]c with its channel lanes last: rows and columns are axes 2 and 3.
    let names: &[&str] = if input.shape.len() == 5 {
        &["n", "cb", "hp", "wp", "ci"]
    } else {
        &["n", "c", "hp", "wp"]
    };
    let (h, w) = (input.shape[2], input.shape[3]);
    let axes: Vec<(&str, i64)> = names
        .iter()
        .zip(&input.shape)
        .enumerate()
        .map(|(dim, (&name, &extent))| {
            let padded = if dim == 2 || dim == 3 {
                extent + 2 * pad
            } else {
                extent
            };
            (name, padded)
        })
        .collect();
    builder.compute("X.pad", input.dtype, &axes, |ax| {
        let inside = Cond::all([
            ax[2].clone().ge(pad),
            ax[2].clone().lt(h + pad),
            ax[3].clone().ge(pad),
            ax[3].clone().lt(w + pad),
        ]);
        let mut index = ax.to_vec();
        index[2] = &ax[2] - pad;
        index[3] = &ax[3] - pad;
        ValueExpr::select(inside, input.at(&index), fill.clone())
    })
}

/// A direct NCHW convolution with OIHW weights, optionally packed into output-channel blocks
/// (`Layout::pack_output_channels`); padding is a stage the default schedule inlines.
pub fn conv2d(p: Conv2dParams, layout: &Layout) -> Result<Program, IrError> {
    Workload::Conv2d(p).check()?;
    if p.block != 1 {
        return blocked_conv2d(p, layout);
    }
    if let Some(block) = layout.conv_as_gemm {
        return conv2d_as_gemm(p, block);
    }
    let (oh, ow) = conv2d_out_hw(p);
    let mut builder = ProgramBuilder::new("conv2d");
    let x = builder.placeholder("X", &[p.n, p.ic, p.h, p.w], DType::F32)?;
    let weight = builder.placeholder("W", &[p.oc, p.ic, p.kh, p.kw], DType::F32)?;
    let packed = match layout.pack_output_channels {
        None => None,
        Some(block) => {
            check_block("conv2d", block)?;
            let blocks = (p.oc + block - 1) / block;
            let packed = builder.compute(
                "W.packed",
                DType::F32,
                &[
                    ("ocb", blocks),
                    ("ic", p.ic),
                    ("kh", p.kh),
                    ("kw", p.kw),
                    ("oci", block),
                ],
                |ax| {
                    let channel = &ax[0] * block + &ax[4];
                    let value =
                        weight.at(&[channel.clone(), ax[1].clone(), ax[2].clone(), ax[3].clone()]);
                    if p.oc % block == 0 {
                        value
                    } else {
                        ValueExpr::select(channel.lt(p.oc), value, ValueExpr::f32(0.0))
                    }
                },
            )?;
            Some((packed, block))
        }
    };
    let padded = pad_input(&mut builder, &x, p.pad)?;
    let rc = builder.reduce_axis("rc", p.ic)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let shape = [("n", p.n), ("oc", p.oc), ("y", oh), ("x", ow)];
    let epilogue = ConvEpilogue::declare(&mut builder, &p, &shape)?;
    let fused = epilogue.is_some();
    let product_name = if fused { "Y.conv" } else { "Y" };
    let y = builder.compute(product_name, DType::F32, &shape, |ax| {
        let row = &ax[2] * p.stride + ry.var() * p.dilation;
        let col = &ax[3] * p.stride + rx.var() * p.dilation;
        let w = match &packed {
            Some((packed, block)) => packed.at(&[
                ax[1].clone().floor_div(*block),
                rc.var(),
                ry.var(),
                rx.var(),
                ax[1].clone().floor_mod(*block),
            ]),
            None => weight.at(&[ax[1].clone(), rc.var(), ry.var(), rx.var()]),
        };
        let value = padded.at(&[ax[0].clone(), rc.var(), row, col]) * w;
        sum(value, &[&rc, &ry, &rx])
    })?;
    match epilogue {
        None => builder.build(&[&y]),
        Some(epilogue) => {
            let output = epilogue.apply(&mut builder, &y, &shape)?;
            builder.build(&[&output])
        }
    }
}

/// The NCHW[b]c conv2d (`p.block = b > 1`, dividing `ic` and `oc`): the OIHW weights packed to
/// OIHW[b]i[b]o by a stage `W.packed[oc/b, ic/b, kh, kw, b, b]`, so that one reduction step
/// reads a broadcast input channel and a contiguous vector of the block's output channels; the
/// input channels reduced as a block loop `rco` and an in-block loop `rci`, with no division in
/// any index. Padding is a stage the default schedule inlines, as for NCHW. With `prepacked`,
/// `W` is that packed tensor and there is no stage. The layout is the workload's own, so no
/// other convolution [`Layout`] applies.
fn blocked_conv2d(p: Conv2dParams, layout: &Layout) -> Result<Program, IrError> {
    if layout.pack_output_channels.is_some() || layout.conv_as_gemm.is_some() {
        return Err(IrError::InvalidParameter {
            op: "conv2d".to_string(),
            message: format!(
                "a channel-blocked conv2d (`block={}`) packs its own weights and takes no other \
                 convolution layout ({layout:?})",
                p.block
            ),
        });
    }
    let (oh, ow) = conv2d_out_hw(p);
    let block = p.block;
    let (in_blocks, out_blocks) = (p.ic / block, p.oc / block);
    let mut builder = ProgramBuilder::new("conv2d");
    let x = builder.placeholder("X", &[p.n, in_blocks, p.h, p.w, block], DType::F32)?;
    let packed = if p.prepacked {
        builder.placeholder(
            "W",
            &[out_blocks, in_blocks, p.kh, p.kw, block, block],
            DType::F32,
        )?
    } else {
        let weight = builder.placeholder("W", &[p.oc, p.ic, p.kh, p.kw], DType::F32)?;
        builder.compute(
            "W.packed",
            DType::F32,
            &[
                ("ocb", out_blocks),
                ("icb", in_blocks),
                ("kh", p.kh),
                ("kw", p.kw),
                ("ici", block),
                ("oci", block),
            ],
            |ax| {
                weight.at(&[
                    &ax[0] * block + &ax[5],
                    &ax[1] * block + &ax[4],
                    ax[2].clone(),
                    ax[3].clone(),
                ])
            },
        )?
    };
    let padded = pad_input(&mut builder, &x, p.pad)?;
    let rco = builder.reduce_axis("rco", in_blocks)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let rci = builder.reduce_axis("rci", block)?;
    let shape = [
        ("n", p.n),
        ("ocb", out_blocks),
        ("y", oh),
        ("x", ow),
        ("oci", block),
    ];
    let epilogue = ConvEpilogue::declare(&mut builder, &p, &shape)?;
    let product_name = if epilogue.is_some() { "Y.conv" } else { "Y" };
    let y = builder.compute(product_name, DType::F32, &shape, |ax| {
        let row = &ax[2] * p.stride + ry.var() * p.dilation;
        let col = &ax[3] * p.stride + rx.var() * p.dilation;
        let input = padded.at(&[ax[0].clone(), rco.var(), row, col, rci.var()]);
        let w = packed.at(&[
            ax[1].clone(),
            rco.var(),
            ry.var(),
            rx.var(),
            rci.var(),
            ax[4].clone(),
        ]);
        sum(input * w, &[&rco, &ry, &rx, &rci])
    })?;
    match epilogue {
        None => builder.build(&[&y]),
        Some(epilogue) => {
            let output = epilogue.apply(&mut builder, &y, &shape)?;
            builder.build(&[&output])
        }
    }
}

/// OIHW weights `oihw` of a channel-blocked conv2d packed to OIHW[b]i[b]o, the `W` a
/// `prepacked=true` conv2d takes: element `[ocb, icb, ry, rx, ici, oci]` is
/// `oihw[ocb * b + oci, icb * b + ici, ry, rx]`, the definition of the `W.packed` stage of the
/// same conv2d without `prepacked`. Done once per set of weights (at deploy), not per call.
pub fn pack_conv2d_weights(p: &Conv2dParams, oihw: &[f32]) -> Result<Vec<f32>, IrError> {
    Workload::Conv2d(*p).check()?;
    let bad = |message: String| IrError::InvalidParameter {
        op: "conv2d".to_string(),
        message,
    };
    if p.block == 1 {
        return Err(bad(
            "packing weights needs a channel block: `block=1`".to_string()
        ));
    }
    let [oc, ic, kh, kw, b] = [p.oc, p.ic, p.kh, p.kw, p.block].map(|v| v as usize);
    if oihw.len() != oc * ic * kh * kw {
        return Err(bad(format!(
            "{} weights given for OIHW {oc} x {ic} x {kh} x {kw}",
            oihw.len()
        )));
    }
    let mut packed = vec![0.0; oihw.len()];
    let mut index = 0;
    for ocb in 0..oc / b {
        for icb in 0..ic / b {
            for ry in 0..kh {
                for rx in 0..kw {
                    for ici in 0..b {
                        for oci in 0..b {
                            let (o, i) = (ocb * b + oci, icb * b + ici);
                            packed[index] = oihw[((o * ic + i) * kh + ry) * kw + rx];
                            index += 1;
                        }
                    }
                }
            }
        }
    }
    Ok(packed)
}

/// A layout transform ([`LayoutTransformParams`]): `Y` in blocks of `to` channels holds what
/// `X` holds in blocks of `from`. A block of 1 is plain NCHW (four axes, not a fifth of extent
/// 1), so the transform at a network's boundary reads or writes the tensor users have.
pub fn layout_transform(p: LayoutTransformParams) -> Result<Program, IrError> {
    Workload::LayoutTransform(p).check()?;
    let blocked_shape = |block: i64| -> Vec<i64> {
        if block == 1 {
            vec![p.n, p.c, p.h, p.w]
        } else {
            vec![p.n, p.c / block, p.h, p.w, block]
        }
    };
    let mut builder = ProgramBuilder::new("layout_transform");
    let x = builder.placeholder("X", &blocked_shape(p.from), DType::F32)?;
    let axes: Vec<(&str, i64)> = if p.to == 1 {
        vec![("n", p.n), ("c", p.c), ("y", p.h), ("x", p.w)]
    } else {
        vec![
            ("n", p.n),
            ("cb", p.c / p.to),
            ("y", p.h),
            ("x", p.w),
            ("ci", p.to),
        ]
    };
    let y = builder.compute("Y", DType::F32, &axes, |ax| {
        let channel = if p.to == 1 {
            ax[1].clone()
        } else {
            &ax[1] * p.to + &ax[4]
        };
        if p.from == 1 {
            x.at(&[ax[0].clone(), channel, ax[2].clone(), ax[3].clone()])
        } else {
            x.at(&[
                ax[0].clone(),
                channel.clone().floor_div(p.from),
                ax[2].clone(),
                ax[3].clone(),
                channel.floor_mod(p.from),
            ])
        }
    })?;
    builder.build(&[&y])
}

/// A conv2d's fused epilogue, `relu?(product + bias?[oc] + R?)`, and the inputs it reads.
struct ConvEpilogue {
    bias: Option<Tensor>,
    residual: Option<Tensor>,
    relu: bool,
    /// The channel block of the output: 1 for `[n, oc, ..]`, `b` for NCHW[b]c, whose channel
    /// is `ocb * b + oci` (axes 1 and 4).
    block: i64,
}

impl ConvEpilogue {
    /// Declares the epilogue's inputs (`bias[oc]`, then `R` shaped like the output), or `None`
    /// when the convolution has no epilogue.
    fn declare(
        builder: &mut ProgramBuilder,
        p: &Conv2dParams,
        output: &[(&str, i64)],
    ) -> Result<Option<ConvEpilogue>, IrError> {
        if !(p.bias || p.residual || p.relu) {
            return Ok(None);
        }
        let bias = if p.bias {
            Some(builder.placeholder("bias", &[p.oc], DType::F32)?)
        } else {
            None
        };
        let residual = if p.residual {
            let shape: Vec<i64> = output.iter().map(|&(_, extent)| extent).collect();
            Some(builder.placeholder("R", &shape, DType::F32)?)
        } else {
            None
        };
        Ok(Some(ConvEpilogue {
            bias,
            residual,
            relu: p.relu,
            block: p.block,
        }))
    }

    /// The output `Y` over `product`. It reads the product once per output element: a schedule
    /// computes the product's tile at the epilogue's tile loop, so the sum never leaves
    /// registers.
    fn apply(
        &self,
        builder: &mut ProgramBuilder,
        product: &Tensor,
        output: &[(&str, i64)],
    ) -> Result<Tensor, IrError> {
        builder.compute("Y", DType::F32, output, |ax| {
            let mut value = product.at(ax);
            if let Some(bias) = &self.bias {
                let channel = if self.block == 1 {
                    ax[1].clone()
                } else {
                    &ax[1] * self.block + &ax[4]
                };
                value = value + bias.at(&[channel]);
            }
            if let Some(residual) = &self.residual {
                value = value + residual.at(ax);
            }
            if self.relu {
                value = value.max(ValueExpr::f32(0.0));
            }
            value
        })
    }
}

/// Whether a conv2d is a GEMM over its output positions (1x1, no padding, no dilation).
pub fn conv2d_is_gemm(p: &Conv2dParams) -> bool {
    p.kh == 1 && p.kw == 1 && p.pad == 0 && p.dilation == 1
}

/// A 1x1 conv2d as a GEMM ([`Layout::conv_as_gemm`]).
fn conv2d_as_gemm(p: Conv2dParams, block: i64) -> Result<Program, IrError> {
    check_block("conv2d", block)?;
    if !conv2d_is_gemm(&p) {
        return Err(IrError::InvalidParameter {
            op: "conv2d".to_string(),
            message: format!(
                "only a 1x1 convolution without padding or dilation is a GEMM (kh={}, kw={}, \
                 pad={}, dilation={})",
                p.kh, p.kw, p.pad, p.dilation
            ),
        });
    }
    let (oh, ow) = conv2d_out_hw(p);
    let positions = oh * ow;
    let panels = (positions + block - 1) / block;
    let mut builder = ProgramBuilder::new("conv2d");
    let x = builder.placeholder("X", &[p.n, p.ic, p.h, p.w], DType::F32)?;
    let weight = builder.placeholder("W", &[p.oc, p.ic, 1, 1], DType::F32)?;
    let packed = builder.compute(
        "B.packed",
        DType::F32,
        &[("n", p.n), ("jo", panels), ("ic", p.ic), ("ji", block)],
        |ax| {
            let position = &ax[1] * block + &ax[3];
            let row = position.clone().floor_div(ow) * p.stride;
            let col = position.clone().floor_mod(ow) * p.stride;
            let value = x.at(&[ax[0].clone(), ax[2].clone(), row, col]);
            if positions % block == 0 {
                value
            } else {
                ValueExpr::select(position.lt(positions), value, ValueExpr::f32(0.0))
            }
        },
    )?;
    let shape = [("n", p.n), ("oc", p.oc), ("p", positions)];
    let epilogue = ConvEpilogue::declare(&mut builder, &p, &shape)?;
    let fused = epilogue.is_some();
    let rc = builder.reduce_axis("rc", p.ic)?;
    let product_name = if fused { "Y.gemm" } else { "Y" };
    let product = builder.compute(product_name, DType::F32, &shape, |ax| {
        let panel = ax[2].clone().floor_div(block);
        let lane = ax[2].clone().floor_mod(block);
        let w = weight.at(&[
            ax[1].clone(),
            rc.var(),
            IndexExpr::Const(0),
            IndexExpr::Const(0),
        ]);
        sum(
            w * packed.at(&[ax[0].clone(), panel, rc.var(), lane]),
            &[&rc],
        )
    })?;
    match epilogue {
        None => builder.build(&[&product]),
        Some(epilogue) => {
            let output = epilogue.apply(&mut builder, &product, &shape)?;
            builder.build(&[&output])
        }
    }
}

/// A depthwise NCHW convolution (multiplier 1), weights `[c, 1, kh, kw]`.
pub fn depthwise_conv2d(p: DepthwiseConv2dParams) -> Result<Program, IrError> {
    Workload::DepthwiseConv2d(p).check()?;
    if p.block != 1 {
        return blocked_depthwise_conv2d(p);
    }
    let (oh, ow) = depthwise_out_hw(p);
    let mut builder = ProgramBuilder::new("depthwise_conv2d");
    let x = builder.placeholder("X", &[p.n, p.c, p.h, p.w], DType::F32)?;
    let weight = builder.placeholder("W", &[p.c, 1, p.kh, p.kw], DType::F32)?;
    let padded = pad_input(&mut builder, &x, p.pad)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let y = builder.compute(
        "Y",
        DType::F32,
        &[("n", p.n), ("c", p.c), ("y", oh), ("x", ow)],
        |ax| {
            let row = &ax[2] * p.stride + ry.var() * p.dilation;
            let col = &ax[3] * p.stride + rx.var() * p.dilation;
            let value = padded.at(&[ax[0].clone(), ax[1].clone(), row, col])
                * weight.at(&[ax[1].clone(), IndexExpr::Const(0), ry.var(), rx.var()]);
            sum(value, &[&ry, &rx])
        },
    )?;
    builder.build(&[&y])
}

/// The NCHW[b]c depthwise convolution (`p.block = b > 1`, dividing `c`): padding is a stage
/// the default schedule inlines, as for NCHW.
fn blocked_depthwise_conv2d(p: DepthwiseConv2dParams) -> Result<Program, IrError> {
    let (oh, ow) = depthwise_out_hw(p);
    let blocks = p.c / p.block;
    let mut builder = ProgramBuilder::new("depthwise_conv2d");
    let x = builder.placeholder("X", &[p.n, blocks, p.h, p.w, p.block], DType::F32)?;
    let weight = builder.placeholder("W", &[blocks, p.kh, p.kw, p.block], DType::F32)?;
    let padded = pad_input(&mut builder, &x, p.pad)?;
    let ry = builder.reduce_axis("ry", p.kh)?;
    let rx = builder.reduce_axis("rx", p.kw)?;
    let y = builder.compute(
        "Y",
        DType::F32,
        &[
            ("n", p.n),
            ("cb", blocks),
            ("y", oh),
            ("x", ow),
            ("ci", p.block),
        ],
        |ax| {
            let row = &ax[2] * p.stride + ry.var() * p.dilation;
            let col = &ax[3] * p.stride + rx.var() * p.dilation;
            let value = padded.at(&[ax[0].clone(), ax[1].clone(), row, col, ax[4].clone()])
                * weight.at(&[ax[1].clone(), ry.var(), rx.var(), ax[4].clone()]);
            sum(value, &[&ry, &rx])
        },
    )?;
    builder.build(&[&y])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_round_trip_through_text() {
        for text in [
            "matmul:m=1024,n=1024,k=1024",
            "conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1",
            "depthwise_conv2d:n=1,c=32,h=112,w=112,kh=3,kw=3,stride=1,pad=1",
            "batch_matmul:b=12,m=128,n=128,k=64",
            "dense:m=1,n=1000,k=512,bias=true,relu=true",
        ] {
            let workload: Workload = text.parse().expect(text);
            let canonical = workload.to_string();
            assert_eq!(canonical.parse::<Workload>().expect(&canonical), workload);
        }
    }

    #[test]
    fn the_quantized_operators_are_those_whose_programs_compute_on_integers() {
        for text in [
            "matmul:m=4,n=4,k=4",
            "dense:m=1,n=8,k=8,bias=true",
            "conv2d:n=1,ic=8,h=5,w=5,oc=8,kh=3,kw=3,pad=1,block=8",
            "depthwise_conv2d:n=1,c=8,h=5,w=5,kh=3,kw=3,pad=1",
            "qmatmul:m=4,n=4,k=4",
            "qdense:m=1,n=8,k=8",
            "qconv2d:n=1,ic=8,h=5,w=5,oc=8,kh=3,kw=3,pad=1,block=8",
            "qdepthwise_conv2d:n=1,c=8,h=5,w=5,kh=3,kw=3,pad=1,block=8",
        ] {
            let workload: Workload = text.parse().expect(text);
            let program = workload.program(&Layout::default()).expect(text);
            let integer = program
                .tensors
                .iter()
                .any(|tensor| tensor.dtype.is_integer());
            assert_eq!(workload.is_quantized(), integer, "{text}");
            assert_eq!(workload.is_quantized(), text.starts_with('q'), "{text}");
        }
    }

    #[test]
    fn malformed_workloads_name_the_bad_part() {
        let cases = [
            ("matmul:m=4,n=4", "missing parameter `k`"),
            ("matmul:m=4,n=4,k=4,q=1", "unknown parameter `q`"),
            ("matmul:m=4,n=x,k=4", "`n=x` is not an integer"),
            ("matmul:m=0,n=4,k=4", "`m=0` must be at least 1"),
            ("matmal:m=1", "unknown operator `matmal`"),
            ("matmul:m=4,n=4,k", "`k` is not of the form key=value"),
            (
                "dense:m=1,n=2,k=3,bias=maybe",
                "`bias=maybe` is not true or false",
            ),
            (
                "conv2d:ic=1,h=2,w=2,oc=1,kh=5,kw=5",
                "spans 5, more than the padded input 2",
            ),
            ("matmul:m=4,m=4,n=4,k=4", "parameter `m` given twice"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Workload>().expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: `{err}` lacks `{expected}`");
            assert!(
                err.contains(text),
                "{text}: `{err}` does not name the workload"
            );
        }
    }

    #[test]
    fn sizes_near_i64_max_are_refused_by_name_not_wrapped() {
        let max = i64::MAX;
        let cases = [
            (
                format!("matmul:m={max},n=4,k=4"),
                format!("`m={max}` is larger"),
            ),
            (
                "matmul:m=2147483648,n=2147483648,k=4".to_string(),
                "tensor `C` of 2147483648 x 2147483648".to_string(),
            ),
            (
                "batch_matmul:b=65536,m=65536,n=65536,k=65536".to_string(),
                "is larger than the supported".to_string(),
            ),
            (
                "conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad=2147483648".to_string(),
                "tensor `X` of 1 x 1 x 4294967300 x 4294967300".to_string(),
            ),
            (
                format!("conv2d:ic=1,h=4,w=4,oc=1,kh=3,kw=3,pad={max}"),
                format!("`pad={max}` is larger"),
            ),
            (
                "matmul:m=99999999999999999999,n=1,k=1".to_string(),
                "`m=99999999999999999999` is not an integer".to_string(),
            ),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Workload>().expect_err(&text).to_string();
            assert!(
                err.contains(&expected),
                "{text}: `{err}` lacks `{expected}`"
            );
        }
        // A workload built in code, never parsed, is held to the same bounds by `program`.
        let built = Workload::Matmul(MatmulParams {
            m: max,
            n: max,
            k: max,
            transpose_b: false,
        });
        assert!(built.program(&Layout::default()).is_err());
        assert!(built.flops().is_finite());
        assert_eq!(built.data_bytes(), u64::MAX);
    }

    #[test]
    fn data_bytes_count_inputs_outputs_and_padding() {
        let matmul: Workload = "matmul:m=2,n=3,k=4".parse().unwrap();
        assert_eq!(matmul.data_bytes(), 4 * (2 * 4 + 4 * 3 + 2 * 3));
        let conv: Workload = "conv2d:ic=1,h=2,w=2,oc=1,kh=1,kw=1,pad=1".parse().unwrap();
        assert_eq!(conv.data_bytes(), 4 * (16 + 1 + 16));
    }

    #[test]
    fn flop_counts() {
        let matmul: Workload = "matmul:m=2,n=3,k=4".parse().unwrap();
        assert_eq!(matmul.flops(), 48.0);
        let conv: Workload = "conv2d:ic=64,h=56,w=56,oc=64,kh=3,kw=3,pad=1"
            .parse()
            .unwrap();
        assert_eq!(conv.flops(), 2.0 * 64.0 * 56.0 * 56.0 * 64.0 * 9.0);
        let dense: Workload = "dense:m=2,n=3,k=4,bias=true,relu=true".parse().unwrap();
        assert_eq!(dense.flops(), 48.0 + 12.0);
    }

    /// The program of `workload` with `layout` and with the default layout, evaluated on the
    /// same random inputs: the layouts change the data flow, never the result.
    fn check_layout_is_the_same_function(workload: &str, layout: Layout) {
        let workload: Workload = workload.parse().unwrap();
        let plain = workload.program(&Layout::default()).unwrap();
        let laid_out = workload.program(&layout).unwrap();
        let mut random = crate::random::SplitMix64::new(5);
        let inputs: Vec<Vec<f32>> = plain
            .inputs()
            .iter()
            .map(|&t| {
                (0..plain.tensor(t).len())
                    .map(|_| random.unit_f32())
                    .collect()
            })
            .collect();
        let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let expected = crate::eval::evaluate(&plain, &slices).unwrap();
        let actual = crate::eval::evaluate(&laid_out, &slices).unwrap();
        crate::eval::compare(&actual[0], &expected[0], 1e-5)
            .unwrap_or_else(|err| panic!("{workload} {layout:?}: {err:?}"));
    }

    #[test]
    fn a_channel_blocked_depthwise_convolution_is_the_nchw_one_in_another_layout() {
        for text in [
            "depthwise_conv2d:n=2,c=6,h=5,w=7,kh=3,kw=3,stride=2,pad=1,block=3",
            "depthwise_conv2d:n=1,c=8,h=9,w=6,kh=3,kw=2,stride=3,pad=2,dilation=2,block=8",
            "depthwise_conv2d:n=1,c=4,h=3,w=5,kh=1,kw=1,block=2",
        ] {
            let Workload::DepthwiseConv2d(p) = text.parse::<Workload>().unwrap() else {
                unreachable!("a depthwise workload")
            };
            let plain = depthwise_conv2d(DepthwiseConv2dParams { block: 1, ..p }).unwrap();
            let blocked = depthwise_conv2d(p).unwrap();
            let mut random = crate::random::SplitMix64::new(3);
            let mut draw =
                |len: usize| -> Vec<f32> { (0..len).map(|_| random.unit_f32() - 0.5).collect() };
            let (c, h, w, b) = (p.c as usize, p.h as usize, p.w as usize, p.block as usize);
            let (kh, kw) = (p.kh as usize, p.kw as usize);
            let x = draw(p.n as usize * c * h * w);
            let weights = draw(c * kh * kw);
            // NCHW -> NCHW[b]c: channel `cb * b + ci` goes to block `cb`, lane `ci`.
            let to_blocked = |plane: usize, data: &[f32], outer: usize| -> Vec<f32> {
                let mut out = vec![0.0; data.len()];
                for o in 0..outer {
                    for channel in 0..c {
                        for position in 0..plane {
                            let (cb, ci) = (channel / b, channel % b);
                            out[((o * (c / b) + cb) * plane + position) * b + ci] =
                                data[(o * c + channel) * plane + position];
                        }
                    }
                }
                out
            };
            let x_blocked = to_blocked(h * w, &x, p.n as usize);
            let w_blocked = to_blocked(kh * kw, &weights, 1);
            let expected = crate::eval::evaluate(&plain, &[&x, &weights]).unwrap();
            let actual = crate::eval::evaluate(&blocked, &[&x_blocked, &w_blocked]).unwrap();
            let (oh, ow) = depthwise_out_hw(p);
            let expected_blocked = to_blocked((oh * ow) as usize, &expected[0], p.n as usize);
            assert_eq!(actual[0], expected_blocked, "{text}");
        }
    }

    /// NCHW -> NCHW[b]c of `data`, `outer` entries of `c` channels of `plane` positions each:
    /// channel `cb * b + ci` goes to block `cb`, lane `ci`.
    fn to_blocked(data: &[f32], outer: usize, c: usize, plane: usize, b: usize) -> Vec<f32> {
        let mut out = vec![0.0; data.len()];
        for o in 0..outer {
            for channel in 0..c {
                for position in 0..plane {
                    let (cb, ci) = (channel / b, channel % b);
                    out[((o * (c / b) + cb) * plane + position) * b + ci] =
                        data[(o * c + channel) * plane + position];
                }
            }
        }
        out
    }

    #[test]
    fn a_channel_blocked_conv2d_is_the_nchw_one_in_another_layout() {
        for text in [
            "conv2d:n=2,ic=6,h=5,w=7,oc=9,kh=3,kw=3,stride=2,pad=1,block=3",
            "conv2d:n=1,ic=8,h=9,w=6,oc=8,kh=3,kw=2,stride=3,pad=2,dilation=2,block=8",
            "conv2d:n=1,ic=4,h=3,w=5,oc=6,kh=1,kw=1,block=2",
            "conv2d:n=1,ic=4,h=7,w=5,oc=4,kh=3,kw=3,pad=1,bias=true,residual=true,relu=true,block=4",
        ] {
            let Workload::Conv2d(p) = text.parse::<Workload>().unwrap() else {
                unreachable!("a conv2d workload")
            };
            let plain = conv2d(Conv2dParams { block: 1, ..p }, &Layout::default()).unwrap();
            let blocked = conv2d(p, &Layout::default()).unwrap();
            let mut random = crate::random::SplitMix64::new(3);
            let mut draw =
                |len: usize| -> Vec<f32> { (0..len).map(|_| random.unit_f32() - 0.5).collect() };
            let (n, ic, oc, b) = (p.n as usize, p.ic as usize, p.oc as usize, p.block as usize);
            let (oh, ow) = conv2d_out_hw(p);
            let output_plane = (oh * ow) as usize;
            let x = draw(n * ic * (p.h * p.w) as usize);
            let weights = draw(oc * ic * (p.kh * p.kw) as usize);
            let bias = draw(oc);
            let residual = draw(n * oc * output_plane);
            let x_blocked = to_blocked(&x, n, ic, (p.h * p.w) as usize, b);
            let residual_blocked = to_blocked(&residual, n, oc, output_plane, b);
            let mut plain_inputs: Vec<&[f32]> = vec![&x, &weights];
            let mut blocked_inputs: Vec<&[f32]> = vec![&x_blocked, &weights];
            if p.bias {
                plain_inputs.push(&bias);
                blocked_inputs.push(&bias);
            }
            if p.residual {
                plain_inputs.push(&residual);
                blocked_inputs.push(&residual_blocked);
            }
            let expected = crate::eval::evaluate(&plain, &plain_inputs).unwrap();
            let actual = crate::eval::evaluate(&blocked, &blocked_inputs).unwrap();
            let expected_blocked = to_blocked(&expected[0], n, oc, output_plane, b);
            crate::eval::compare(&actual[0], &expected_blocked, 1e-5)
                .unwrap_or_else(|err| panic!("{text}: {err:?}"));
        }
        let error = "conv2d:ic=8,h=5,w=5,oc=12,kh=3,kw=3,block=8"
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`block=8` must divide `oc=12`"), "{error}");
        let error = "conv2d:ic=6,h=5,w=5,oc=8,kh=3,kw=3,block=4"
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`block=4` must divide `ic=6`"), "{error}");
        let plain: Workload = "conv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3".parse().unwrap();
        assert!(!plain.to_string().contains("block"));
        let blocked: Workload = "conv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,relu=true,block=4"
            .parse()
            .unwrap();
        assert!(
            blocked.to_string().ends_with(",relu=true,block=4"),
            "{blocked}"
        );
        assert_eq!(blocked.to_string().parse::<Workload>().unwrap(), blocked);
        assert_eq!(blocked.flops(), plain.flops());
        let packed = Layout {
            pack_output_channels: Some(4),
            ..Layout::default()
        };
        let error = blocked.program(&packed).unwrap_err().to_string();
        assert!(
            error.contains("(`block=4`) packs its own weights"),
            "{error}"
        );
    }

    #[test]
    fn prepacked_weights_are_the_packing_stage_done_ahead() {
        for text in [
            "conv2d:n=1,ic=6,h=5,w=7,oc=9,kh=3,kw=2,stride=2,pad=1,block=3",
            "conv2d:n=2,ic=8,h=4,w=5,oc=8,kh=1,kw=1,bias=true,relu=true,block=4",
        ] {
            let Workload::Conv2d(p) = text.parse::<Workload>().unwrap() else {
                unreachable!("a conv2d workload")
            };
            let prepacked = Conv2dParams {
                prepacked: true,
                ..p
            };
            let key = Workload::Conv2d(prepacked).to_string();
            assert!(key.ends_with(",prepacked=true"), "{key}");
            assert_eq!(
                key.parse::<Workload>().unwrap(),
                Workload::Conv2d(prepacked)
            );
            let program = conv2d(p, &Layout::default()).unwrap();
            let ahead = conv2d(prepacked, &Layout::default()).unwrap();
            let mut random = crate::random::SplitMix64::new(9);
            let inputs: Vec<Vec<f32>> = program
                .inputs()
                .iter()
                .map(|&t| {
                    (0..program.tensor(t).len())
                        .map(|_| random.unit_f32() - 0.5)
                        .collect()
                })
                .collect();
            let mut packed_inputs = inputs.clone();
            packed_inputs[1] = pack_conv2d_weights(&p, &inputs[1]).unwrap();
            let plain: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let packed: Vec<&[f32]> = packed_inputs.iter().map(Vec::as_slice).collect();
            let expected = crate::eval::evaluate(&program, &plain).unwrap();
            let actual = crate::eval::evaluate(&ahead, &packed).unwrap();
            assert_eq!(actual, expected, "{text}");
            let error = pack_conv2d_weights(&p, &inputs[1][1..])
                .unwrap_err()
                .to_string();
            assert!(error.contains("weights given for OIHW"), "{error}");
        }
        let error = "conv2d:ic=8,h=5,w=5,oc=8,kh=3,kw=3,prepacked=true"
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`prepacked=true` needs a channel block"),
            "{error}"
        );
    }

    #[test]
    fn layout_transforms_pack_and_unpack_channel_blocks() {
        let (n, c, h, w) = (2usize, 12usize, 3usize, 5usize);
        let x: Vec<f32> = (0..n * c * h * w).map(|i| i as f32 * 0.25 - 7.0).collect();
        let run = |text: &str, input: &[f32]| -> Vec<f32> {
            let workload: Workload = text.parse().unwrap();
            let program = workload.program(&Layout::default()).unwrap();
            crate::eval::evaluate(&program, &[input]).unwrap().remove(0)
        };
        let shape = format!("layout_transform:n={n},c={c},h={h},w={w}");
        for (from, to) in [(1, 4), (4, 1), (3, 4), (12, 6), (1, 1)] {
            let source = if from == 1 {
                x.clone()
            } else {
                to_blocked(&x, n, c, h * w, from)
            };
            let expected = if to == 1 {
                x.clone()
            } else {
                to_blocked(&x, n, c, h * w, to)
            };
            let actual = run(&format!("{shape},from={from},to={to}"), &source);
            assert_eq!(actual, expected, "from={from} to={to}");
        }
        let error = format!("{shape},from=5,to=4")
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`from=5` must divide `c=12`"), "{error}");
        let transform: Workload = format!("{shape},from=1,to=4").parse().unwrap();
        assert_eq!(
            transform.to_string().parse::<Workload>().unwrap(),
            transform
        );
        assert_eq!(transform.flops(), (n * c * h * w) as f64);
    }

    #[test]
    fn a_channel_block_must_divide_the_channels() {
        let error = "depthwise_conv2d:c=12,h=5,w=5,kh=3,kw=3,block=8"
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`block=8` must divide `c=12`"), "{error}");
        let error = "depthwise_conv2d:c=12,h=5,w=5,kh=3,kw=3,block=0"
            .parse::<Workload>()
            .unwrap_err()
            .to_string();
        assert!(error.contains("`block=0` must be at least 1"), "{error}");
        // The NCHW key is what it was; a blocked one names its block.
        let plain: Workload = "depthwise_conv2d:c=12,h=5,w=5,kh=3,kw=3".parse().unwrap();
        assert!(!plain.to_string().contains("block"));
        let blocked: Workload = "depthwise_conv2d:c=12,h=5,w=5,kh=3,kw=3,block=4"
            .parse()
            .unwrap();
        assert!(blocked.to_string().ends_with(",block=4"));
        assert_eq!(blocked.to_string().parse::<Workload>().unwrap(), blocked);
        assert_eq!(blocked.flops(), plain.flops());
    }

    #[test]
    fn blocked_reductions_and_packed_weights_compute_the_same_function() {
        let blocked = |block| Layout {
            block_reduction: Some(block),
            ..Layout::default()
        };
        check_layout_is_the_same_function("matmul:m=5,n=7,k=12", blocked(4));
        check_layout_is_the_same_function("matmul:m=5,n=7,k=12,transpose_b=true", blocked(3));
        check_layout_is_the_same_function(
            "matmul:m=5,n=7,k=12",
            Layout {
                pack_columns: Some(4),
                block_reduction: Some(6),
                ..Layout::default()
            },
        );
        check_layout_is_the_same_function("dense:m=3,n=5,k=8", blocked(2));
        // 1x1 convolutions as GEMMs: positions a whole number of panels or not, stride 2,
        // batches, fused epilogues.
        for (workload, block) in [
            ("conv2d:n=1,ic=5,h=4,w=4,oc=3,kh=1,kw=1", 8),
            ("conv2d:n=2,ic=3,h=7,w=5,oc=6,kh=1,kw=1,stride=2", 4),
            (
                "conv2d:n=1,ic=4,h=5,w=3,oc=7,kh=1,kw=1,bias=true,residual=true,relu=true",
                6,
            ),
            (
                "conv2d:n=2,ic=2,h=9,w=9,oc=5,kh=1,kw=1,stride=3,relu=true",
                1,
            ),
        ] {
            let layout = Layout {
                conv_as_gemm: Some(block),
                ..Layout::default()
            };
            check_layout_is_the_same_function(workload, layout);
        }
        let not_a_gemm: Workload = "conv2d:ic=2,h=5,w=5,oc=3,kh=3,kw=3,pad=1".parse().unwrap();
        let error = not_a_gemm
            .program(&Layout {
                conv_as_gemm: Some(4),
                ..Layout::default()
            })
            .unwrap_err()
            .to_string();
        assert!(error.contains("kh=3"), "{error}");
        for block in [1, 4, 5, 8] {
            check_layout_is_the_same_function(
                "conv2d:n=1,ic=3,h=6,w=5,oc=7,kh=3,kw=3,stride=2,pad=1",
                Layout {
                    pack_output_channels: Some(block),
                    ..Layout::default()
                },
            );
        }
    }

    #[test]
    fn a_reduction_block_must_divide_k_and_needs_a_plain_product() {
        let workload: Workload = "matmul:m=4,n=4,k=10".parse().unwrap();
        let err = workload
            .program(&Layout {
                block_reduction: Some(4),
                ..Layout::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("reduction block 4"), "{err}");
        assert!(err.to_string().contains("k = 10"), "{err}");
        let workload: Workload = "dense:m=4,n=4,k=8,relu=true".parse().unwrap();
        let err = workload
            .program(&Layout {
                block_reduction: Some(4),
                ..Layout::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("no bias, no relu"), "{err}");
    }
}
