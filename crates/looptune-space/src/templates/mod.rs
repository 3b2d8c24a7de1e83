//! One template per operator: its space, the schedule of a point, and a fallback point.
//!
//! Each operator module has the same three functions: `space(params, &shape)` builds the
//! [`ConfigSpace`], `template(params, &shape, &config)` applies a point as schedule primitives,
//! and `fallback_config(params, &shape)` picks a point by a simple heuristic (a register tile of
//! a sensible size) for when no tuning log knows the workload. The GEMM-like operators share
//! [`gemm`]'s register-tiled template, and so does a 1x1 conv2d without padding or dilation
//! (a GEMM over its output positions); the other NCHW convolutions share [`conv`]'s direct
//! template;
//! a depthwise convolution on channel-blocked NCHW[b]c has [`blocked_depthwise`], a conv2d on
//! NCHW[b]c has [`nchwc_conv`] (AutoTVM's x86 `conv2d_NCHWc`), and a layout transform between
//! channel blockings has [`transform`]. The quantized `qconv2d` shares [`nchwc_conv`] in its
//! pair form, `qmatmul` and `qdense` the GEMM template. The functions here dispatch on a
//! [`Workload`].
//!
//! Every function takes the [`VectorShape`] the space is sized for: register tiles are whole
//! vectors of its lanes and fit in its registers. A config belongs to the space of one shape;
//! give `template` and `fallback_config` the shape its space was built with.

pub mod blocked_depthwise;
pub mod conv;
pub mod gemm;
pub mod nchwc_conv;
pub mod transform;

use crate::error::{SpaceError, TemplateError};
use crate::space::{Config, ConfigSpace};
use crate::value::KnobValue;
use crate::vector_shape::VectorShape;
use blocked_depthwise::BlockedDepthwise;
use conv::DirectConv;
use gemm::Gemm;
use looptune_ir::ops::{
    conv2d_is_gemm, BatchMatmulParams, Conv2dParams, DenseParams, DepthwiseConv2dParams,
    LayoutTransformParams, MatmulParams,
};
use looptune_ir::{Schedule, Workload};
use nchwc_conv::NchwcConv;

/// The space of a workload's template, sized for `vector_shape` (an error if the shape is one
/// no template can size a space for).
pub fn space(workload: &Workload, vector_shape: &VectorShape) -> Result<ConfigSpace, SpaceError> {
    vector_shape.check()?;
    match shape(workload) {
        Shape::Gemm(gemm) => gemm::space(&gemm, vector_shape),
        Shape::Conv(conv) => conv::space(&conv, vector_shape),
        Shape::BlockedDepthwise(conv) => blocked_depthwise::space(&conv, vector_shape),
        Shape::NchwcConv(conv) => nchwc_conv::space(&conv, vector_shape),
        Shape::LayoutTransform(params) => transform::space(&params, vector_shape),
    }
}

/// The schedule of `config`, a point of [`space`]`(workload, vector_shape)`.
pub fn template(
    workload: &Workload,
    vector_shape: &VectorShape,
    config: &Config,
) -> Result<Schedule, TemplateError> {
    match shape(workload) {
        Shape::Gemm(gemm) => gemm::template(&gemm, vector_shape, config),
        Shape::Conv(conv) => conv::template(&conv, config),
        Shape::BlockedDepthwise(conv) => blocked_depthwise::template(&conv, config),
        Shape::NchwcConv(conv) => nchwc_conv::template(&conv, config),
        Shape::LayoutTransform(params) => transform::template(&params, config),
    }
}

/// The heuristic point of `space`, built by [`space`]`(workload, vector_shape)`, used when
/// nothing has been tuned.
pub fn fallback_config(
    workload: &Workload,
    vector_shape: &VectorShape,
    space: &ConfigSpace,
) -> Result<Config, SpaceError> {
    match shape(workload) {
        Shape::Gemm(gemm) => gemm::fallback_config(&gemm, vector_shape, space),
        Shape::Conv(conv) => conv::fallback_config(&conv, vector_shape, space),
        Shape::BlockedDepthwise(conv) => blocked_depthwise::fallback_config(&conv, space),
        Shape::NchwcConv(conv) => nchwc_conv::fallback_config(&conv, vector_shape, space),
        Shape::LayoutTransform(params) => transform::fallback_config(&params, vector_shape, space),
    }
}

/// The name of a workload's template, as logs and messages print it.
pub fn template_name(workload: &Workload) -> &'static str {
    match workload {
        Workload::Matmul(_) => "matmul.register_tile",
        Workload::BatchMatmul(_) => "batch_matmul.register_tile",
        Workload::Dense(_) => "dense.register_tile",
        Workload::Conv2d(p) if p.block > 1 => "conv2d.nchwc",
        Workload::Conv2d(p) if conv2d_is_gemm(p) => "conv2d.gemm_1x1",
        Workload::Conv2d(_) => "conv2d.direct",
        Workload::DepthwiseConv2d(p) if p.block > 1 => "depthwise_conv2d.blocked",
        Workload::DepthwiseConv2d(_) => "depthwise_conv2d.direct",
        Workload::QMatmul(_) => "qmatmul.pair_tile",
        Workload::QDense(_) => "qdense.pair_tile",
        Workload::QDepthwiseConv2d(_) => "qdepthwise_conv2d.blocked",
        Workload::QConv2d(_) => "qconv2d.nchwc_pairs",
        Workload::LayoutTransform(_) => "layout_transform.copy",
    }
}

enum Shape {
    Gemm(Gemm),
    Conv(DirectConv),
    BlockedDepthwise(BlockedDepthwise),
    NchwcConv(NchwcConv),
    LayoutTransform(LayoutTransformParams),
}

fn out_extent(input: i64, kernel: i64, stride: i64, pad: i64, dilation: i64) -> i64 {
    (input + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1
}

fn shape(workload: &Workload) -> Shape {
    match *workload {
        Workload::Matmul(p) => Shape::Gemm(Gemm {
            workload: *workload,
            batch: false,
            m: p.m,
            n: p.n,
            k: p.k,
            output: "C",
            product: None,
            packed: Some("B.packed"),
            conv: false,
            quantized: false,
        }),
        Workload::BatchMatmul(p) => Shape::Gemm(Gemm {
            workload: *workload,
            batch: true,
            m: p.m,
            n: p.n,
            k: p.k,
            output: "C",
            product: None,
            packed: None,
            conv: false,
            quantized: false,
        }),
        Workload::Dense(p) => Shape::Gemm(Gemm {
            workload: *workload,
            batch: false,
            m: p.m,
            n: p.n,
            k: p.k,
            output: "Y",
            product: (p.bias || p.relu).then_some("Y.matmul"),
            packed: Some("W.packed"),
            conv: false,
            quantized: false,
        }),
        Workload::Conv2d(p) if p.block > 1 => Shape::NchwcConv(NchwcConv {
            workload: *workload,
            params: p,
            out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
            out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
            product: (p.bias || p.residual || p.relu).then_some("Y.conv"),
        }),
        Workload::Conv2d(p) if conv2d_is_gemm(&p) => {
            let out_h = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
            let out_w = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
            Shape::Gemm(Gemm {
                workload: *workload,
                batch: true,
                m: p.oc,
                n: out_h * out_w,
                k: p.ic,
                output: "Y",
                product: (p.bias || p.residual || p.relu).then_some("Y.gemm"),
                packed: Some("B.packed"),
                conv: true,
                quantized: false,
            })
        }
        Workload::Conv2d(p) => Shape::Conv(DirectConv {
            workload: *workload,
            channels: p.oc,
            out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
            out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
            pad: p.pad,
            input_channels: true,
            product: (p.bias || p.residual || p.relu).then_some("Y.conv"),
        }),
        Workload::DepthwiseConv2d(p) if p.block > 1 => Shape::BlockedDepthwise(BlockedDepthwise {
            workload: *workload,
            params: p,
            out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
            out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
            product: None,
        }),
        // Any block, 1 (NCHW) included: the pair form reads its pairs within a block.
        Workload::QConv2d(q) => {
            let p = q.conv;
            Shape::NchwcConv(NchwcConv {
                workload: *workload,
                params: p,
                out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
                out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
                product: Some("acc"),
            })
        }
        Workload::QDepthwiseConv2d(q) => {
            let p = q.conv;
            Shape::BlockedDepthwise(BlockedDepthwise {
                workload: *workload,
                params: p,
                out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
                out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
                product: Some("acc"),
            })
        }
        Workload::QMatmul(p) | Workload::QDense(p) => Shape::Gemm(Gemm {
            workload: *workload,
            batch: false,
            m: p.m,
            n: p.n,
            k: (p.k + 1) / 2,
            output: "Y",
            product: Some("acc"),
            packed: Some("W.packed"),
            conv: false,
            quantized: true,
        }),
        Workload::DepthwiseConv2d(p) => Shape::Conv(DirectConv {
            workload: *workload,
            channels: p.c,
            out_h: out_extent(p.h, p.kh, p.stride, p.pad, p.dilation),
            out_w: out_extent(p.w, p.kw, p.stride, p.pad, p.dilation),
            pad: p.pad,
            input_channels: false,
            product: None,
        }),
        Workload::LayoutTransform(p) => Shape::LayoutTransform(p),
    }
}

/// The stage a template's register tile accumulates in: the product stage when the output is
/// an epilogue over it (a fused bias, residual or ReLU, a requantization), which is then
/// applied as the tile is copied out; otherwise a `cache_write` of the output.
pub(crate) fn accumulator(
    s: &mut Schedule,
    output: looptune_ir::StageId,
    product: Option<&str>,
) -> Result<looptune_ir::StageId, TemplateError> {
    Ok(match product {
        Some(name) => s.stage(name)?,
        None => s.cache_write(output)?,
    })
}

/// Materialises the padded input of a channel-blocked convolution (`X.pad[n, cb, hp, wp, ci]`)
/// once, at the root: its channel lanes vectorized, its channel blocks in parallel when the
/// output's loop is.
pub(crate) fn pad_blocked_input_at_root(
    s: &mut Schedule,
    parallel: bool,
) -> Result<(), TemplateError> {
    let pad = s.stage("X.pad")?;
    s.compute_root(pad)?;
    let pad_axes = s.spatial_axes(pad);
    s.vectorize(pad, pad_axes[4])?;
    if parallel {
        s.parallel(pad, pad_axes[1])?;
    }
    Ok(())
}

/// The point whose value of each knob has the lowest `score(knob, value)` (ties: the first),
/// or, when that point breaks a constraint, the valid point with the lowest total score among
/// its neighbours in one knob, then the first valid point of the space.
pub(crate) fn pick_fallback(
    space: &ConfigSpace,
    score: impl Fn(&str, &KnobValue) -> i64,
) -> Result<Config, SpaceError> {
    let choices: Vec<usize> = space
        .knobs()
        .iter()
        .map(|knob| {
            (0..knob.len())
                .min_by_key(|&choice| score(knob.name(), &knob.values()[choice]))
                .unwrap_or(0)
        })
        .collect();
    let preferred = space.from_choices(&choices);
    if preferred.is_ok() {
        return preferred;
    }
    let total = |config: &Config| -> i64 {
        config
            .to_values()
            .iter()
            .map(|(name, value)| score(name, value))
            .sum()
    };
    let mut best: Option<Config> = None;
    for (position, knob) in space.knobs().iter().enumerate() {
        for choice in 0..knob.len() {
            let mut moved = choices.clone();
            moved[position] = choice;
            if let Ok(config) = space.from_choices(&moved) {
                if best
                    .as_ref()
                    .is_none_or(|best| total(&config) < total(best))
                {
                    best = Some(config);
                }
            }
        }
    }
    match best.or_else(|| space.iter().next()) {
        Some(config) => Ok(config),
        None => preferred,
    }
}

macro_rules! operator_module {
    ($module:ident, $params:ty, $variant:ident, $doc:literal) => {
        #[doc = $doc]
        pub mod $module {
            //! The operator's template, its space and its fallback point (see the parent module).
            use super::*;

            /// The space of the template for these parameters, sized for `shape`.
            pub fn space(params: $params, shape: &VectorShape) -> Result<ConfigSpace, SpaceError> {
                super::space(&Workload::$variant(params), shape)
            }

            /// The schedule of `config`, a point of [`space`]`(params, shape)`.
            pub fn template(
                params: $params,
                shape: &VectorShape,
                config: &Config,
            ) -> Result<Schedule, TemplateError> {
                super::template(&Workload::$variant(params), shape, config)
            }

            /// The heuristic point of [`space`]`(params, shape)`, used when nothing has been
            /// tuned.
            pub fn fallback_config(
                params: $params,
                shape: &VectorShape,
            ) -> Result<Config, SpaceError> {
                let space = space(params, shape)?;
                super::fallback_config(&Workload::$variant(params), shape, &space)
            }
        }
    };
}

operator_module!(
    matmul,
    MatmulParams,
    Matmul,
    "Register-tiled matmul (BLIS micro-kernel)."
);
operator_module!(
    batch_matmul,
    BatchMatmulParams,
    BatchMatmul,
    "Register-tiled batch_matmul, one product per batch entry."
);
operator_module!(
    dense,
    DenseParams,
    Dense,
    "Register-tiled dense layer with its bias and ReLU fused into the tile's copy-out."
);
operator_module!(
    conv2d,
    Conv2dParams,
    Conv2d,
    "Direct NCHW conv2d with a register tile, or NCHW[b]c (`block > 1`) with a register tile \
     of columns x output-channel vectors."
);
operator_module!(
    depthwise_conv2d,
    DepthwiseConv2dParams,
    DepthwiseConv2d,
    "Direct depthwise conv2d: NCHW with a register tile of vectorized columns, or NCHW[b]c \
     (`block > 1`) with the channel block vectorized."
);

operator_module!(
    layout_transform,
    LayoutTransformParams,
    LayoutTransform,
    "A layout transform between NCHW and NCHW[b]c: a copy with its innermost axis vectorized."
);

#[cfg(test)]
mod tests;
