//! One CliqueNet block (Yang et al., CVPR 2018) as convolutions that write straight into their
//! channel slice of one concatenation buffer.
//!
//! In a clique block every layer is connected to every other in both directions. Stage I
//! initialises the layers in order, each from the block's input and every layer before it
//! (`X_i = f(concat(X_0, X_1, .., X_{i-1}))`); stage II refines them, in order too, each from
//! every *other* layer's latest value (`X_i' = f(concat(X_{i+1}, .., X_n, X_1', .., X_{i-1}'))`,
//! the refined ones for the layers before it, the stage-I ones for those after). `f` here is a
//! 3x3 convolution with a fused bias and ReLU (the paper's BN-ReLU-conv with the batch norm
//! folded into the bias, post-activation), in NCHW[[`CLIQUE_BLOCK`]]c.
//!
//! **No concatenation is ever copied.** Within one image a range of whole channel blocks of an
//! NCHW[b]c tensor is one contiguous range of memory, so one buffer holding
//! `[X_0, X_1 .. X_n, X_1' .. X_n']` along channels serves every layer: stage-I layer `i` reads
//! the prefix up to `X_{i-1}` and writes `X_i` just after it; stage-II layer `i` reads the
//! window `X_{i+1} .. X_n, X_1' .. X_{i-1}'` (contiguous: the stage-I values after `i`, then the
//! refined ones before it) and writes `X_i'` just after it. Every convolution's input is the
//! slice just before its output, a kernel's buffers are sub-slices of the one buffer, and the
//! kernels are ordinary conv2d kernels, checked and timed like any other: the concatenation is
//! in where they are called, not in what they compute. A batch of images (NCHW[b]c, one image
//! after another) runs each convolution once per image, on that image's slices: the kernels
//! are the batch-1 ones, and nothing is copied either. (Concatenation order within a window
//! only permutes a convolution's input channels, which its weights absorb. The paper shares
//! the weights `W_ij` between the stages; here each convolution takes its own weights, which
//! changes values, not shapes or kernels.)

use looptune_ir::ops::{Conv2dParams, Workload};
use std::ops::Range;
use thiserror::Error;

/// The channel block of the CliqueNet block's activations: AVX2's f32 lanes, dividing every
/// channel count of the block.
pub const CLIQUE_BLOCK: i64 = 8;

/// The shape of one clique block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CliqueBlock {
    /// Channels of the block's input `X_0`.
    pub input_channels: i64,
    /// Layers in the clique.
    pub layers: i64,
    /// Channels each layer produces.
    pub growth: i64,
    /// Height and width of the feature maps (3x3 convolutions with padding 1 keep them).
    pub size: i64,
}

/// One convolution of a clique block, where it reads and writes the concatenation buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliqueConv {
    /// `I1`, .., `In` for stage I, `II1`, .., `IIn` for stage II.
    pub name: String,
    /// Its operator: NCHW[b]c conv2d, 3x3, padding 1, bias and ReLU fused.
    pub workload: Workload,
    /// Channels of the buffer it reads (its input, in order).
    pub input: Range<i64>,
    /// Channels of the buffer it writes (just after its input).
    pub output: Range<i64>,
}

impl CliqueBlock {
    /// The block `tune-model cliquenet` tunes: 48 input channels, four layers of 32 channels,
    /// 32x32 feature maps (CIFAR's first stage; the paper's CIFAR blocks have 5 layers of 36 to
    /// 80 channels, here multiples of the channel block, and an input width at which no
    /// stage-I convolution has the stage-II shape, so each is a layer of its own).
    pub const REFERENCE: CliqueBlock = CliqueBlock {
        input_channels: 48,
        layers: 4,
        growth: 32,
        size: 32,
    };

    /// Channels of the concatenation buffer `[X_0, X_1 .. X_n, X_1' .. X_n']`.
    pub fn total_channels(&self) -> i64 {
        self.input_channels + 2 * self.layers * self.growth
    }

    /// Where the block's output, the refined layers `X_1' .. X_n'`, lies in the buffer.
    pub fn output_channels(&self) -> Range<i64> {
        self.input_channels + self.layers * self.growth..self.total_channels()
    }

    /// The block's convolutions in the order they run: stage I, then stage II.
    pub fn convs(&self) -> Vec<CliqueConv> {
        let (c0, g, n) = (self.input_channels, self.growth, self.layers);
        let conv = |name: String, input: Range<i64>| {
            let output = input.end..input.end + g;
            let workload = Workload::Conv2d(Conv2dParams {
                n: 1,
                ic: input.end - input.start,
                h: self.size,
                w: self.size,
                oc: g,
                kh: 3,
                kw: 3,
                stride: 1,
                pad: 1,
                dilation: 1,
                bias: true,
                residual: false,
                relu: true,
                block: CLIQUE_BLOCK,
                prepacked: false,
            });
            CliqueConv {
                name,
                workload,
                input,
                output,
            }
        };
        let stage_one = (1..=n).map(|i| conv(format!("I{i}"), 0..c0 + (i - 1) * g));
        let stage_two = (1..=n).map(|i| conv(format!("II{i}"), c0 + i * g..c0 + (n + i - 1) * g));
        stage_one.chain(stage_two).collect()
    }

    /// Elements of one channel of a feature map (a channel range of the buffer is this many
    /// elements per channel, contiguous at batch 1 in NCHW[b]c).
    pub fn plane(&self) -> usize {
        (self.size * self.size) as usize
    }

    /// Runs the block over `buffer`, the concatenation buffers of one or more images one after
    /// another (each `total_channels() * plane()` elements, NCHW[b]c, its `X_0` filled in):
    /// `call(index, input, output)` must compute convolution `index` of [`CliqueBlock::convs`]
    /// from `input` into `output`, the two disjoint slices of one image's buffer it reads and
    /// writes. Each convolution runs on every image before the next one starts (its weights
    /// stay in cache). Stops at the first error; a buffer that is not a whole number of images
    /// is an error before anything runs.
    pub fn run<E>(
        &self,
        buffer: &mut [f32],
        mut call: impl FnMut(usize, &[f32], &mut [f32]) -> Result<(), E>,
    ) -> Result<(), RunError<E>>
    where
        E: std::error::Error + 'static,
    {
        let plane = self.plane();
        let image = self.total_channels() as usize * plane;
        if buffer.is_empty() || !buffer.len().is_multiple_of(image) {
            return Err(RunError::BufferLength {
                actual: buffer.len(),
                image,
            });
        }
        for (index, conv) in self.convs().iter().enumerate() {
            let start = conv.input.start as usize * plane;
            let split = conv.input.end as usize * plane;
            let end = conv.output.end as usize * plane;
            for (number, image) in buffer.chunks_exact_mut(image).enumerate() {
                let (before, after) = image.split_at_mut(split);
                call(index, &before[start..], &mut after[..end - split]).map_err(|source| {
                    RunError::Call {
                        conv: conv.name.clone(),
                        image: number,
                        source,
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// Why [`CliqueBlock::run`] stopped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError<E: std::error::Error + 'static> {
    /// The buffer is not one or more whole images' concatenation buffers.
    #[error(
        "the concatenation buffer holds {actual} elements, not a whole number (at least one) \
         of images of {image}"
    )]
    BufferLength {
        /// The buffer's length.
        actual: usize,
        /// Elements of one image's concatenation buffer.
        image: usize,
    },
    /// A convolution's call failed.
    #[error("convolution `{conv}` of image {image} failed")]
    Call {
        /// The convolution's name (`I1`, `II2`, ..).
        conv: String,
        /// The image, from 0.
        image: usize,
        /// The call's error.
        #[source]
        source: E,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_convolution_reads_the_slice_just_before_the_one_it_writes() {
        let block = CliqueBlock {
            input_channels: 16,
            layers: 3,
            growth: 8,
            size: 5,
        };
        let lines: Vec<String> = block
            .convs()
            .iter()
            .map(|conv| format!("{} {:?} -> {:?}", conv.name, conv.input, conv.output))
            .collect();
        assert_eq!(
            lines,
            [
                "I1 0..16 -> 16..24",
                "I2 0..24 -> 24..32",
                "I3 0..32 -> 32..40",
                "II1 24..40 -> 40..48",
                "II2 32..48 -> 48..56",
                "II3 40..56 -> 56..64",
            ]
        );
        assert_eq!(block.total_channels(), 64);
        assert_eq!(block.output_channels(), 40..64);
    }

    /// Two layers of 8 channels on 2x2 maps, and the elements of one image's buffer.
    fn small_block() -> (CliqueBlock, usize) {
        let block = CliqueBlock {
            input_channels: 8,
            layers: 2,
            growth: 8,
            size: 2,
        };
        let image = block.total_channels() as usize * block.plane();
        (block, image)
    }

    #[test]
    fn a_buffer_of_part_of_an_image_is_named_and_nothing_runs() {
        let (block, image) = small_block();
        for length in [0, image - 1, image + 1, 2 * image + 3] {
            let mut calls = 0;
            let mut buffer = vec![0.0; length];
            let err = block
                .run(&mut buffer, |_, _, _| {
                    calls += 1;
                    Ok::<(), std::fmt::Error>(())
                })
                .unwrap_err();
            let named = matches!(
                err,
                RunError::BufferLength { actual, image: i } if actual == length && i == image
            );
            assert!(named, "{err:?}");
            assert!(err.to_string().contains(&length.to_string()), "{err}");
            assert_eq!(calls, 0);
        }
    }

    #[test]
    fn every_convolution_runs_on_every_image_before_the_next_and_errors_name_both() {
        let (block, image) = small_block();
        let mut buffer: Vec<f32> = (0..3 * image).map(|i| i as f32).collect();
        let mut seen = Vec::new();
        block
            .run(&mut buffer, |index, input, output| {
                // The first element of each slice says which image it is in.
                seen.push((index, input[0] as usize / image, output.len()));
                Ok::<(), std::fmt::Error>(())
            })
            .unwrap();
        let expected: Vec<(usize, usize, usize)> = (0..4)
            .flat_map(|index| (0..3).map(move |image| (index, image, 8 * 4)))
            .collect();
        assert_eq!(seen, expected);
        let err = block
            .run(&mut buffer, |index, input, _| {
                if index == 2 && input[0] as usize / image == 1 {
                    Err(std::fmt::Error)
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "convolution `II1` of image 1 failed");
    }
}
