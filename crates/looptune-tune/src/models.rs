//! Built-in networks for whole-model tuning: every distinct layer of a model as a [`Workload`],
//! with how many times it occurs.
//!
//! The shapes are the reference workloads of the design (the TVM/AutoTVM papers' ResNet-18
//! convolutions, MobileNet's depthwise convolutions, BERT-base's GEMMs at sequence length 128).
//! A layer's *multiplicity* is what makes a whole-model estimate out of per-layer latencies:
//! the model's latency is the sum over layers of multiplicity times latency.
//!
//! Multiplicities, counted in the models the papers measured:
//! - ResNet-18 (MXNet's `resnet-18`, batch 1): the stem C1 once; in each of the four stages the
//!   first unit has a 1x1 projection shortcut (C3, C5, C8, C11; stage one's is stride 1 because
//!   MXNet's first unit never matches dimensions) and a strided or first 3x3 convolution (C2's
//!   first use, C4, C7, C10); the remaining 3x3 convolutions of each stage have the stage's
//!   output shape (C2 four times in all, C6, C9 and C12 three times each).
//! - MobileNet v1: thirteen depthwise layers, the 14x14x512 stride-1 layer five times. Only the
//!   depthwise layers are listed in the design, so the pointwise 1x1 convolutions between them
//!   are not part of this network (its estimate covers the depthwise layers only). The layers
//!   are channel-blocked, NCHW[8]c ([`MOBILENET_BLOCK`]), the layout a framework that keeps its
//!   activations blocked between layers runs them in (TVM's x86 `NCHWc`): a vector of channels
//!   is one load at any stride, where NCHW can only vectorize columns and gathers at stride 2.
//! - CliqueNet: one clique block ([`CliqueBlock::REFERENCE`], NCHW[8]c): its stage-I
//!   convolutions each once (each reads one more layer than the one before: distinct shapes),
//!   and its stage-II convolution once per layer (every refinement reads the other layers: one
//!   shape). Each writes straight into its channel slice of the block's concatenation buffer
//!   (see [`crate::cliquenet`]); as a layer here it is the plain kernel that does.
//! - BERT-base, sequence 128, 12 encoder layers: per layer four 768x768 projections (query, key,
//!   value, output), the two feed-forward GEMMs and the attention scores `Q K^T` (12 heads of
//!   128x64 by 64x128, one batch_matmul). The design lists no `scores V` product, so it is not
//!   here either.

use crate::cliquenet::CliqueBlock;
use looptune_ir::ops::{
    BatchMatmulParams, Conv2dParams, DepthwiseConv2dParams, MatmulParams, QConv2dParams,
    QDepthwiseParams, QMatmulParams, Requant, Workload,
};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A built-in network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// ResNet-18's twelve distinct conv2d layers (C1-C12).
    Resnet18,
    /// MobileNet v1's nine distinct depthwise layers (D1-D9).
    Mobilenet,
    /// BERT-base's GEMMs at sequence length 128.
    BertBase,
    /// MobileNet quantized to 8 bits (`tune-model mobilenet --int8`): its depthwise layers as
    /// `qdepthwise_conv2d` on NCHW[`MOBILENET_BLOCK`]c and its pointwise (1x1) layers as the
    /// `qmatmul` each is in NHWC (`Y[hw, oc] = X[hw, ic] W[ic, oc]`), per-channel multipliers.
    MobilenetInt8,
    /// One CliqueNet block's convolutions ([`CliqueBlock::REFERENCE`]).
    Cliquenet,
    /// ResNet-18 quantized to 8 bits (`tune-model resnet18 --int8`): C1-C12 as `qconv2d` on
    /// NCHW[`MOBILENET_BLOCK`]c, the stem reading its 3-channel image NHWC (`in_block=3`),
    /// per-channel multipliers.
    Resnet18Int8,
}

/// One distinct layer of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The name the design gives it (`C2`, `D7`, `ffn1`).
    pub name: &'static str,
    /// Its operator and shape.
    pub workload: Workload,
    /// How many times it occurs in one forward pass of the network.
    pub multiplicity: u32,
}

/// A network name that is not built in.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "unknown network `{name}` (known: resnet18, mobilenet, bert-base, cliquenet, mobilenet-int8, resnet18-int8)"
)]
pub struct UnknownNetwork {
    /// What was asked for.
    pub name: String,
}

impl Network {
    /// Every built-in network.
    pub const ALL: [Network; 6] = [
        Network::Resnet18,
        Network::Mobilenet,
        Network::BertBase,
        Network::Cliquenet,
        Network::MobilenetInt8,
        Network::Resnet18Int8,
    ];

    /// Its command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Network::Resnet18 => "resnet18",
            Network::Mobilenet => "mobilenet",
            Network::BertBase => "bert-base",
            Network::MobilenetInt8 => "mobilenet-int8",
            Network::Cliquenet => "cliquenet",
            Network::Resnet18Int8 => "resnet18-int8",
        }
    }

    /// Its distinct layers, in the order the design lists them.
    pub fn layers(self) -> Vec<Layer> {
        match self {
            Network::Resnet18 => resnet18(),
            Network::Mobilenet => mobilenet(),
            Network::BertBase => bert_base(),
            Network::Cliquenet => cliquenet(CliqueBlock::REFERENCE),
            Network::MobilenetInt8 => mobilenet_int8(),
            Network::Resnet18Int8 => resnet18_int8(),
        }
    }

    /// The 8-bit quantized version of this network, if there is one.
    pub fn quantized(self) -> Option<Network> {
        match self {
            Network::Mobilenet | Network::MobilenetInt8 => Some(Network::MobilenetInt8),
            Network::Resnet18 | Network::Resnet18Int8 => Some(Network::Resnet18Int8),
            _ => None,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Network {
    type Err = UnknownNetwork;

    fn from_str(text: &str) -> Result<Network, UnknownNetwork> {
        Network::ALL
            .into_iter()
            .find(|network| network.name() == text)
            .ok_or_else(|| UnknownNetwork {
                name: text.to_string(),
            })
    }
}

/// A square NCHW convolution of batch 1 with padding `kernel / 2`.
fn conv(size: i64, in_channels: i64, out_channels: i64, kernel: i64, stride: i64) -> Workload {
    Workload::Conv2d(conv_params(size, in_channels, out_channels, kernel, stride))
}

/// The geometry of [`conv`].
fn conv_params(
    size: i64,
    in_channels: i64,
    out_channels: i64,
    kernel: i64,
    stride: i64,
) -> Conv2dParams {
    Conv2dParams {
        n: 1,
        ic: in_channels,
        h: size,
        w: size,
        oc: out_channels,
        kh: kernel,
        kw: kernel,
        stride,
        pad: kernel / 2,
        dilation: 1,
        bias: false,
        residual: false,
        relu: false,
        block: 1,
        prepacked: false,
    }
}

/// The channel block of MobileNet's layers: the f32 lanes of AVX2. Every channel count of the
/// network is a multiple of it (and of 16: with AVX-512 a block of 16 would fill its vectors).
pub const MOBILENET_BLOCK: i64 = 8;

/// A square 3x3 depthwise convolution of batch 1, padding 1, in NCHW[`MOBILENET_BLOCK`]c.
fn depthwise(size: i64, channels: i64, stride: i64) -> Workload {
    Workload::DepthwiseConv2d(depthwise_params(size, channels, stride))
}

/// The geometry of [`depthwise`].
fn depthwise_params(size: i64, channels: i64, stride: i64) -> DepthwiseConv2dParams {
    DepthwiseConv2dParams {
        n: 1,
        c: channels,
        h: size,
        w: size,
        kh: 3,
        kw: 3,
        stride,
        pad: 1,
        dilation: 1,
        block: MOBILENET_BLOCK,
    }
}

fn gemm(m: i64, n: i64, k: i64) -> Workload {
    Workload::Matmul(MatmulParams {
        m,
        n,
        k,
        transpose_b: false,
    })
}

fn layer(name: &'static str, workload: Workload, multiplicity: u32) -> Layer {
    Layer {
        name,
        workload,
        multiplicity,
    }
}

fn resnet18() -> Vec<Layer> {
    resnet18_layers(conv)
}

/// ResNet-18's twelve layers (name, input size, input and output channels, kernel, stride,
/// multiplicity), each made a workload by `make(size, in, out, kernel, stride)`.
fn resnet18_layers(make: fn(i64, i64, i64, i64, i64) -> Workload) -> Vec<Layer> {
    const LAYERS: [(&str, i64, i64, i64, i64, i64, u32); 12] = [
        ("C1", 224, 3, 64, 7, 2, 1),
        ("C2", 56, 64, 64, 3, 1, 4),
        ("C3", 56, 64, 64, 1, 1, 1),
        ("C4", 56, 64, 128, 3, 2, 1),
        ("C5", 56, 64, 128, 1, 2, 1),
        ("C6", 28, 128, 128, 3, 1, 3),
        ("C7", 28, 128, 256, 3, 2, 1),
        ("C8", 28, 128, 256, 1, 2, 1),
        ("C9", 14, 256, 256, 3, 1, 3),
        ("C10", 14, 256, 512, 3, 2, 1),
        ("C11", 14, 256, 512, 1, 2, 1),
        ("C12", 7, 512, 512, 3, 1, 3),
    ];
    LAYERS
        .iter()
        .map(
            |&(name, size, input, output, kernel, stride, multiplicity)| {
                layer(
                    name,
                    make(size, input, output, kernel, stride),
                    multiplicity,
                )
            },
        )
        .collect()
}

fn mobilenet() -> Vec<Layer> {
    vec![
        layer("D1", depthwise(112, 32, 1), 1),
        layer("D2", depthwise(112, 64, 2), 1),
        layer("D3", depthwise(56, 128, 1), 1),
        layer("D4", depthwise(56, 128, 2), 1),
        layer("D5", depthwise(28, 256, 1), 1),
        layer("D6", depthwise(28, 256, 2), 1),
        layer("D7", depthwise(14, 512, 1), 5),
        layer("D8", depthwise(14, 512, 2), 1),
        layer("D9", depthwise(7, 1024, 1), 1),
    ]
}

/// Quantization of every int8 layer: zero points in mid-range, per-channel multipliers, a
/// ReLU6-like clamp above the output's zero point.
fn int8_quant() -> Requant {
    Requant {
        a_zero: 128,
        out_zero: 0,
        multiplier: 1_518_500_250,
        shift: 8,
        qmin: 0,
        qmax: 255,
        per_channel: true,
    }
}

/// A quantized square 3x3 depthwise convolution of batch 1, padding 1, on
/// NCHW[`MOBILENET_BLOCK`]c.
fn qdepthwise(size: i64, channels: i64, stride: i64) -> Workload {
    Workload::QDepthwiseConv2d(QDepthwiseParams {
        conv: depthwise_params(size, channels, stride),
        quant: int8_quant(),
    })
}

/// A quantized square convolution of batch 1 with padding `kernel / 2`, on
/// NCHW[`MOBILENET_BLOCK`]c, or from an NHWC image when it has fewer channels than a block.
fn qconv(size: i64, in_channels: i64, out_channels: i64, kernel: i64, stride: i64) -> Workload {
    let conv = Conv2dParams {
        block: MOBILENET_BLOCK,
        ..conv_params(size, in_channels, out_channels, kernel, stride)
    };
    let in_block = if in_channels % MOBILENET_BLOCK == 0 {
        MOBILENET_BLOCK
    } else {
        in_channels
    };
    Workload::QConv2d(QConv2dParams {
        conv,
        quant: int8_quant(),
        in_block,
    })
}

/// ResNet-18's layers, quantized.
fn resnet18_int8() -> Vec<Layer> {
    resnet18_layers(qconv)
}

/// A quantized pointwise (1x1) convolution on a `size x size` NHWC input: a `qmatmul`.
fn qpointwise(size: i64, in_channels: i64, out_channels: i64) -> Workload {
    Workload::QMatmul(QMatmulParams {
        m: size * size,
        n: out_channels,
        k: in_channels,
        quant: int8_quant(),
    })
}

fn mobilenet_int8() -> Vec<Layer> {
    vec![
        layer("D1", qdepthwise(112, 32, 1), 1),
        layer("P1", qpointwise(112, 32, 64), 1),
        layer("D2", qdepthwise(112, 64, 2), 1),
        layer("P2", qpointwise(56, 64, 128), 1),
        layer("D3", qdepthwise(56, 128, 1), 1),
        layer("P3", qpointwise(56, 128, 128), 1),
        layer("D4", qdepthwise(56, 128, 2), 1),
        layer("P4", qpointwise(28, 128, 256), 1),
        layer("D5", qdepthwise(28, 256, 1), 1),
        layer("P5", qpointwise(28, 256, 256), 1),
        layer("D6", qdepthwise(28, 256, 2), 1),
        layer("P6", qpointwise(14, 256, 512), 1),
        layer("D7", qdepthwise(14, 512, 1), 5),
        layer("P7", qpointwise(14, 512, 512), 5),
        layer("D8", qdepthwise(14, 512, 2), 1),
        layer("P8", qpointwise(7, 512, 1024), 1),
        layer("D9", qdepthwise(7, 1024, 1), 1),
        layer("P9", qpointwise(7, 1024, 1024), 1),
    ]
}

/// A clique block's distinct convolutions: stage I's in order, then stage II's one shape,
/// once per layer.
fn cliquenet(block: CliqueBlock) -> Vec<Layer> {
    // Layer names are static: stage I by its layer, stage II as one.
    const STAGE_ONE: [&str; 8] = ["I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8"];
    let mut layers: Vec<Layer> = Vec::new();
    for (index, conv) in block.convs().into_iter().enumerate() {
        match layers
            .iter_mut()
            .find(|layer| layer.workload == conv.workload)
        {
            Some(layer) => layer.multiplicity += 1,
            None => {
                let name = if conv.name.starts_with("II") {
                    "II"
                } else {
                    STAGE_ONE.get(index).copied().unwrap_or("I")
                };
                layers.push(layer(name, conv.workload, 1));
            }
        }
    }
    layers
}

fn bert_base() -> Vec<Layer> {
    let encoder_layers = 12;
    vec![
        layer("qkvo", gemm(128, 768, 768), 4 * encoder_layers),
        layer("ffn1", gemm(128, 3072, 768), encoder_layers),
        layer("ffn2", gemm(128, 768, 3072), encoder_layers),
        layer(
            "scores",
            Workload::BatchMatmul(BatchMatmulParams {
                b: 12,
                m: 128,
                n: 128,
                k: 64,
                transpose_b: false,
            }),
            encoder_layers,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_round_trips_through_the_workload_parser_and_has_a_task() {
        for network in Network::ALL {
            for layer in network.layers() {
                let text = layer.workload.to_string();
                assert_eq!(text.parse::<Workload>(), Ok(layer.workload), "{text}");
                assert!(
                    looptune_space::Task::new(layer.workload).is_ok(),
                    "{network} {}: no task",
                    layer.name
                );
            }
        }
    }

    #[test]
    fn layers_are_the_design_reference_workloads() {
        let keys = |network: Network| -> Vec<String> {
            network
                .layers()
                .iter()
                .map(|layer| format!("{} {} x{}", layer.name, layer.workload, layer.multiplicity))
                .collect()
        };
        assert_eq!(
            keys(Network::Resnet18),
            [
                "C1 conv2d:n=1,ic=3,h=224,w=224,oc=64,kh=7,kw=7,stride=2,pad=3,dilation=1 x1",
                "C2 conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=3,kw=3,stride=1,pad=1,dilation=1 x4",
                "C3 conv2d:n=1,ic=64,h=56,w=56,oc=64,kh=1,kw=1,stride=1,pad=0,dilation=1 x1",
                "C4 conv2d:n=1,ic=64,h=56,w=56,oc=128,kh=3,kw=3,stride=2,pad=1,dilation=1 x1",
                "C5 conv2d:n=1,ic=64,h=56,w=56,oc=128,kh=1,kw=1,stride=2,pad=0,dilation=1 x1",
                "C6 conv2d:n=1,ic=128,h=28,w=28,oc=128,kh=3,kw=3,stride=1,pad=1,dilation=1 x3",
                "C7 conv2d:n=1,ic=128,h=28,w=28,oc=256,kh=3,kw=3,stride=2,pad=1,dilation=1 x1",
                "C8 conv2d:n=1,ic=128,h=28,w=28,oc=256,kh=1,kw=1,stride=2,pad=0,dilation=1 x1",
                "C9 conv2d:n=1,ic=256,h=14,w=14,oc=256,kh=3,kw=3,stride=1,pad=1,dilation=1 x3",
                "C10 conv2d:n=1,ic=256,h=14,w=14,oc=512,kh=3,kw=3,stride=2,pad=1,dilation=1 x1",
                "C11 conv2d:n=1,ic=256,h=14,w=14,oc=512,kh=1,kw=1,stride=2,pad=0,dilation=1 x1",
                "C12 conv2d:n=1,ic=512,h=7,w=7,oc=512,kh=3,kw=3,stride=1,pad=1,dilation=1 x3",
            ]
        );
        // ResNet-18 has 17 convolutions on its main path and 3 strided projection shortcuts;
        // MXNet's first stage adds one stride-1 projection (C3): 21 in all.
        let count = |network: Network| -> u32 {
            network
                .layers()
                .iter()
                .map(|layer| layer.multiplicity)
                .sum()
        };
        assert_eq!(count(Network::Resnet18), 21);
        assert_eq!(count(Network::Resnet18Int8), 21);
        // The quantized ResNet-18 is the same twelve shapes on NCHW8c, the stem reading its
        // 3-channel image NHWC.
        let quantized = Network::Resnet18Int8.layers();
        for (plain, quantized) in Network::Resnet18.layers().iter().zip(&quantized) {
            let (Workload::Conv2d(p), Workload::QConv2d(q)) = (plain.workload, quantized.workload)
            else {
                panic!("{:?} and {:?}", plain.workload, quantized.workload);
            };
            assert_eq!(plain.name, quantized.name);
            assert_eq!(
                (p.ic, p.oc, p.h, p.kh, p.stride, p.pad),
                (
                    q.conv.ic,
                    q.conv.oc,
                    q.conv.h,
                    q.conv.kh,
                    q.conv.stride,
                    q.conv.pad
                )
            );
            assert_eq!(q.conv.block, MOBILENET_BLOCK);
            let expected_in_block = if p.ic == 3 { 3 } else { MOBILENET_BLOCK };
            assert_eq!(q.in_block, expected_in_block, "{}", plain.name);
        }
        assert_eq!(count(Network::Mobilenet), 13);
        assert_eq!(count(Network::BertBase), 12 * 7);
        assert_eq!(
            keys(Network::Cliquenet),
            [
                "I1 conv2d:n=1,ic=48,h=32,w=32,oc=32,kh=3,kw=3,stride=1,pad=1,dilation=1,bias=true,relu=true,block=8 x1",
                "I2 conv2d:n=1,ic=80,h=32,w=32,oc=32,kh=3,kw=3,stride=1,pad=1,dilation=1,bias=true,relu=true,block=8 x1",
                "I3 conv2d:n=1,ic=112,h=32,w=32,oc=32,kh=3,kw=3,stride=1,pad=1,dilation=1,bias=true,relu=true,block=8 x1",
                "I4 conv2d:n=1,ic=144,h=32,w=32,oc=32,kh=3,kw=3,stride=1,pad=1,dilation=1,bias=true,relu=true,block=8 x1",
                "II conv2d:n=1,ic=96,h=32,w=32,oc=32,kh=3,kw=3,stride=1,pad=1,dilation=1,bias=true,relu=true,block=8 x4",
            ]
        );
        assert_eq!(Network::Mobilenet.layers().len(), 9);
        assert_eq!(
            Network::BertBase.layers()[3].workload.to_string(),
            "batch_matmul:b=12,m=128,n=128,k=64,transpose_b=false"
        );
    }

    #[test]
    fn names_parse_and_unknown_names_are_errors() {
        for network in Network::ALL {
            assert_eq!(network.name().parse(), Ok(network));
        }
        let error = "resnet50".parse::<Network>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown network `resnet50` (known: resnet18, mobilenet, bert-base, cliquenet, mobilenet-int8, resnet18-int8)"
        );
    }
}
