//! The plain Rust loop an exported kernel is tested against, written from the workload's
//! parameters alone (not from its program, its schedule or its loop nest), so that the exported
//! crate's tests check the kernel against an independent statement of the operator.
//!
//! Each built-in operator is a [`Reference`]: the output's loops, the reduction's loops, one
//! product term (with the bounds condition of a padded convolution) and an epilogue. The
//! generated function computes in `f64` and also returns each output's *magnitude* (the sum of
//! the absolute values of its terms), which bounds the rounding error of any f32 summation
//! order: the tests allow `(terms + 2) * f32::EPSILON * magnitude`.
//!
//! A quantized operator's reference is integer arithmetic with the operator's own rounding:
//! `i32` products and sums that wrap, the bias, the fixed-point multiplier and shift rounded to
//! nearest in 64 bits, the output's zero point and clamp. Its tests compare bit for bit.

use looptune_ir::ops::{
    BatchMatmulParams, Conv2dParams, DenseParams, DepthwiseConv2dParams, MatmulParams,
    QConv2dParams, QDepthwiseParams, QMatmulParams, Requant,
};
use looptune_ir::{DType, Workload};

/// One operand of a kernel: its name in the loop nest, its length in elements and their type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Operand {
    pub name: &'static str,
    pub len: usize,
    pub dtype: DType,
}

impl Operand {
    /// The Rust element type of its slice.
    pub(crate) fn rust_type(&self) -> &'static str {
        rust_type(self.dtype)
    }
}

/// The Rust type of an element of `dtype` (the exported crate's slices).
pub(crate) fn rust_type(dtype: DType) -> &'static str {
    match dtype {
        DType::U8 => "u8",
        DType::I8 => "i8",
        DType::I16 => "i16",
        DType::I32 => "i32",
        _ => "f32",
    }
}

/// A workload's reference loop, as data the printer turns into Rust.
#[derive(Clone, Debug)]
pub(crate) struct Reference {
    /// The inputs, in the order the program declares them (the kernel's argument order).
    pub inputs: Vec<Operand>,
    /// The one output.
    pub output: Operand,
    /// Output loops, outermost first: `(variable, extent)`.
    pub outer: Vec<(&'static str, i64)>,
    /// Reduction loops, outermost first.
    pub reduce: Vec<(&'static str, i64)>,
    /// `let` lines computed inside the reduction before the condition (such as a padded row).
    pub lets: Vec<String>,
    /// When the term is not zero (a tap inside the unpadded input), if ever.
    pub condition: Option<String>,
    /// The two factors of the term, as Rust expressions reading the input slices.
    pub factors: (String, String),
    /// The output's flat index.
    pub out_index: String,
    /// A bias added after the reduction: the index into `bias`.
    pub bias: Option<String>,
    /// A residual input `r` added at the output's own index.
    pub residual: bool,
    /// `max(0, value)` last.
    pub relu: bool,
    /// A quantized operator: the first factor is the `u8` input (its zero point subtracted),
    /// the second the `i8` weight, and the bias index also picks the multiplier of `m` when
    /// the multipliers are per channel.
    pub quant: Option<Requant>,
}

/// The output extent of a convolution along one direction.
fn out_extent(input: i64, kernel: i64, stride: i64, pad: i64, dilation: i64) -> i64 {
    (input + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1
}

fn operand(name: &'static str, dims: &[i64]) -> Operand {
    typed(name, dims, DType::F32)
}

fn typed(name: &'static str, dims: &[i64], dtype: DType) -> Operand {
    Operand {
        name,
        len: dims.iter().product::<i64>() as usize,
        dtype,
    }
}

/// The reference of `workload`, or `None` for an operator this module has no loop for.
pub(crate) fn reference(workload: &Workload) -> Option<Reference> {
    Some(match *workload {
        Workload::Matmul(p) => matmul(p),
        Workload::BatchMatmul(p) => batch_matmul(p),
        Workload::Dense(p) => dense(p),
        // Channel-blocked convolutions have no reference loop here yet: refused, not guessed.
        Workload::Conv2d(p) if p.block != 1 || p.prepacked => return None,
        Workload::Conv2d(p) => conv2d(p),
        Workload::DepthwiseConv2d(p) => depthwise(p),
        Workload::QMatmul(p) => qmatmul(p, false),
        Workload::QDense(p) => qmatmul(p, true),
        Workload::QDepthwiseConv2d(p) => qdepthwise(p),
        Workload::QConv2d(p) => qconv2d(p),
        Workload::LayoutTransform(_) => return None,
    })
}

fn matmul(p: MatmulParams) -> Reference {
    let (m, n, k) = (p.m, p.n, p.k);
    let b = if p.transpose_b {
        format!("b[(j * {k} + kk) as usize]")
    } else {
        format!("b[(kk * {n} + j) as usize]")
    };
    Reference {
        inputs: vec![operand("A", &[m, k]), operand("B", &[k, n])],
        output: operand("C", &[m, n]),
        outer: vec![("i", m), ("j", n)],
        reduce: vec![("kk", k)],
        lets: Vec::new(),
        condition: None,
        factors: (format!("a[(i * {k} + kk) as usize]"), b),
        out_index: format!("i * {n} + j"),
        bias: None,
        residual: false,
        relu: false,
        quant: None,
    }
}

fn batch_matmul(p: BatchMatmulParams) -> Reference {
    let (batch, m, n, k) = (p.b, p.m, p.n, p.k);
    let b = if p.transpose_b {
        format!("b[((bb * {n} + j) * {k} + kk) as usize]")
    } else {
        format!("b[((bb * {k} + kk) * {n} + j) as usize]")
    };
    Reference {
        inputs: vec![operand("A", &[batch, m, k]), operand("B", &[batch, k, n])],
        output: operand("C", &[batch, m, n]),
        outer: vec![("bb", batch), ("i", m), ("j", n)],
        reduce: vec![("kk", k)],
        lets: Vec::new(),
        condition: None,
        factors: (format!("a[((bb * {m} + i) * {k} + kk) as usize]"), b),
        out_index: format!("(bb * {m} + i) * {n} + j"),
        bias: None,
        residual: false,
        relu: false,
        quant: None,
    }
}

fn dense(p: DenseParams) -> Reference {
    let (m, n, k) = (p.m, p.n, p.k);
    let mut inputs = vec![operand("X", &[m, k]), operand("W", &[n, k])];
    if p.bias {
        inputs.push(operand("bias", &[n]));
    }
    Reference {
        inputs,
        output: operand("Y", &[m, n]),
        outer: vec![("i", m), ("j", n)],
        reduce: vec![("kk", k)],
        lets: Vec::new(),
        condition: None,
        factors: (
            format!("x_in[(i * {k} + kk) as usize]"),
            format!("w[(j * {k} + kk) as usize]"),
        ),
        out_index: format!("i * {n} + j"),
        bias: p.bias.then(|| "j".to_string()),
        residual: false,
        relu: p.relu,
        quant: None,
    }
}

/// The padded row and column of a convolution tap and the condition that it is inside the
/// input (`None` without padding, when every tap is).
fn taps((h, w): (i64, i64), stride: i64, pad: i64, dilation: i64) -> (Vec<String>, Option<String>) {
    let lets = vec![
        format!("let row = y * {stride} + ky * {dilation} - {pad};"),
        format!("let col = x * {stride} + kx * {dilation} - {pad};"),
    ];
    let condition = (pad > 0).then(|| format!("row >= 0 && row < {h} && col >= 0 && col < {w}"));
    (lets, condition)
}

fn conv2d(p: Conv2dParams) -> Reference {
    let oh = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
    let ow = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
    let (lets, condition) = taps((p.h, p.w), p.stride, p.pad, p.dilation);
    let mut inputs = vec![
        operand("X", &[p.n, p.ic, p.h, p.w]),
        operand("W", &[p.oc, p.ic, p.kh, p.kw]),
    ];
    if p.bias {
        inputs.push(operand("bias", &[p.oc]));
    }
    if p.residual {
        inputs.push(operand("R", &[p.n, p.oc, oh, ow]));
    }
    let (ic, h, w, kh, kw) = (p.ic, p.h, p.w, p.kh, p.kw);
    Reference {
        inputs,
        // NCHW; a 1x1 conv2d's GEMM form declares `[n, oc, oh * ow]`, the same memory.
        output: operand("Y", &[p.n, p.oc, oh, ow]),
        outer: vec![("nn", p.n), ("o", p.oc), ("y", oh), ("x", ow)],
        reduce: vec![("c", p.ic), ("ky", p.kh), ("kx", p.kw)],
        lets,
        condition,
        factors: (
            format!("x_in[(((nn * {ic} + c) * {h} + row) * {w} + col) as usize]"),
            format!("w[(((o * {ic} + c) * {kh} + ky) * {kw} + kx) as usize]"),
        ),
        out_index: format!("((nn * {} + o) * {oh} + y) * {ow} + x", p.oc),
        bias: p.bias.then(|| "o".to_string()),
        residual: p.residual,
        relu: p.relu,
        quant: None,
    }
}

fn depthwise(p: DepthwiseConv2dParams) -> Reference {
    let oh = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
    let ow = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
    let (lets, condition) = taps((p.h, p.w), p.stride, p.pad, p.dilation);
    let (c, h, w, kh, kw) = (p.c, p.h, p.w, p.kh, p.kw);
    let reduce = vec![("ky", kh), ("kx", kw)];
    if p.block == 1 {
        return Reference {
            inputs: vec![operand("X", &[p.n, c, h, w]), operand("W", &[c, 1, kh, kw])],
            output: operand("Y", &[p.n, c, oh, ow]),
            outer: vec![("nn", p.n), ("ch", c), ("y", oh), ("x", ow)],
            reduce,
            lets,
            condition,
            factors: (
                format!("x_in[(((nn * {c} + ch) * {h} + row) * {w} + col) as usize]"),
                format!("w[((ch * {kh} + ky) * {kw} + kx) as usize]"),
            ),
            out_index: format!("((nn * {c} + ch) * {oh} + y) * {ow} + x"),
            bias: None,
            residual: false,
            relu: false,
            quant: None,
        };
    }
    // NCHW[b]c: channel `cb * b + ci` of row `r`, column `q` is `X[n, cb, r, q, ci]`.
    let (block, blocks) = (p.block, p.c / p.block);
    Reference {
        inputs: vec![
            operand("X", &[p.n, blocks, h, w, block]),
            operand("W", &[blocks, kh, kw, block]),
        ],
        output: operand("Y", &[p.n, blocks, oh, ow, block]),
        outer: vec![
            ("nn", p.n),
            ("cb", blocks),
            ("y", oh),
            ("x", ow),
            ("ci", block),
        ],
        reduce,
        lets,
        condition,
        factors: (
            format!(
                "x_in[((((nn * {blocks} + cb) * {h} + row) * {w} + col) * {block} + ci) as usize]"
            ),
            format!("w[(((cb * {kh} + ky) * {kw} + kx) * {block} + ci) as usize]"),
        ),
        out_index: format!("(((nn * {blocks} + cb) * {oh} + y) * {ow} + x) * {block} + ci"),
        bias: None,
        residual: false,
        relu: false,
        quant: None,
    }
}

/// The inputs of a requantized operator: `inputs` (the bias last), then the per-channel
/// multipliers `M` when the quantization has them.
fn with_multipliers(mut inputs: Vec<Operand>, channels: i64, quant: &Requant) -> Vec<Operand> {
    if quant.per_channel {
        inputs.push(typed("M", &[channels], DType::I32));
    }
    inputs
}

fn qmatmul(p: QMatmulParams, rows: bool) -> Reference {
    let (m, n, k) = (p.m, p.n, p.k);
    let (w_shape, w) = if rows {
        ([n, k], format!("w[(j * {k} + kk) as usize]"))
    } else {
        ([k, n], format!("w[(kk * {n} + j) as usize]"))
    };
    let inputs = vec![
        typed("A", &[m, k], DType::U8),
        typed("W", &w_shape, DType::I8),
        typed("bias", &[n], DType::I32),
    ];
    Reference {
        inputs: with_multipliers(inputs, n, &p.quant),
        output: typed("Y", &[m, n], DType::U8),
        outer: vec![("i", m), ("j", n)],
        reduce: vec![("kk", k)],
        lets: Vec::new(),
        condition: None,
        factors: (format!("a[(i * {k} + kk) as usize]"), w),
        out_index: format!("i * {n} + j"),
        bias: Some("j".to_string()),
        residual: false,
        relu: false,
        quant: Some(p.quant),
    }
}

fn qdepthwise(q: QDepthwiseParams) -> Reference {
    let p = q.conv;
    let oh = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
    let ow = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
    let (h, w, kh, kw, block) = (p.h, p.w, p.kh, p.kw, p.block);
    let blocks = p.c / block;
    let (lets, condition) = taps((h, w), p.stride, p.pad, p.dilation);
    let inputs = vec![
        typed("X", &[p.n, blocks, h, w, block], DType::U8),
        typed("W", &[blocks, kh, kw, block], DType::I8),
        typed("bias", &[p.c], DType::I32),
    ];
    Reference {
        inputs: with_multipliers(inputs, p.c, &q.quant),
        output: typed("Y", &[p.n, blocks, oh, ow, block], DType::U8),
        outer: vec![
            ("nn", p.n),
            ("cb", blocks),
            ("y", oh),
            ("x", ow),
            ("ci", block),
        ],
        reduce: vec![("ky", kh), ("kx", kw)],
        lets,
        condition,
        factors: (
            format!(
                "x_in[((((nn * {blocks} + cb) * {h} + row) * {w} + col) * {block} + ci) as usize]"
            ),
            format!("w[(((cb * {kh} + ky) * {kw} + kx) * {block} + ci) as usize]"),
        ),
        out_index: format!("(((nn * {blocks} + cb) * {oh} + y) * {ow} + x) * {block} + ci"),
        bias: Some(format!("cb * {block} + ci")),
        residual: false,
        relu: false,
        quant: Some(q.quant),
    }
}

fn qconv2d(q: QConv2dParams) -> Reference {
    let p = q.conv;
    let oh = out_extent(p.h, p.kh, p.stride, p.pad, p.dilation);
    let ow = out_extent(p.w, p.kw, p.stride, p.pad, p.dilation);
    let (ic, h, w, kh, kw) = (p.ic, p.h, p.w, p.kh, p.kw);
    let (block, in_block) = (p.block, q.in_block);
    let (in_blocks, out_blocks) = (ic / in_block, p.oc / block);
    let (lets, condition) = taps((h, w), p.stride, p.pad, p.dilation);
    let inputs = vec![
        typed("X", &[p.n, in_blocks, h, w, in_block], DType::U8),
        typed("W", &[p.oc, ic, kh, kw], DType::I8),
        typed("bias", &[p.oc], DType::I32),
    ];
    Reference {
        inputs: with_multipliers(inputs, p.oc, &q.quant),
        output: typed("Y", &[p.n, out_blocks, oh, ow, block], DType::U8),
        outer: vec![
            ("nn", p.n),
            ("ob", out_blocks),
            ("y", oh),
            ("x", ow),
            ("oi", block),
        ],
        reduce: vec![("c", ic), ("ky", kh), ("kx", kw)],
        lets,
        condition,
        factors: (
            format!(
                "x_in[((((nn * {in_blocks} + c / {in_block}) * {h} + row) * {w} + col) * {in_block} + c % {in_block}) as usize]"
            ),
            format!("w[((((ob * {block} + oi) * {ic} + c) * {kh} + ky) * {kw} + kx) as usize]"),
        ),
        out_index: format!("(((nn * {out_blocks} + ob) * {oh} + y) * {ow} + x) * {block} + oi"),
        bias: Some(format!("ob * {block} + oi")),
        residual: false,
        relu: false,
        quant: Some(q.quant),
    }
}

impl Reference {
    /// The Rust name of an input slice in the reference function (`x` is a loop variable of
    /// the convolutions, so their input is `x_in`).
    pub(crate) fn slice_name(name: &str) -> String {
        match name {
            "X" => "x_in".to_string(),
            other => other.to_ascii_lowercase(),
        }
    }

    /// Terms summed into each output.
    pub(crate) fn terms(&self) -> i64 {
        self.reduce.iter().map(|&(_, extent)| extent).product()
    }

    /// The Rust function `name(inputs...) -> (values, magnitudes)`, or for a quantized
    /// operator `name(inputs...) -> values`, the exact `u8` outputs.
    pub(crate) fn function(&self, name: &str) -> String {
        let parameters: Vec<String> = self
            .inputs
            .iter()
            .map(|input| {
                format!(
                    "{}: &[{}]",
                    Reference::slice_name(input.name),
                    input.rust_type()
                )
            })
            .collect();
        if let Some(quant) = &self.quant {
            return self.quantized_function(name, &parameters, quant);
        }
        let mut text = format!(
            "    fn {name}({}) -> (Vec<f64>, Vec<f64>) {{\n",
            parameters.join(", ")
        );
        let len = self.output.len;
        text.push_str(&format!(
            "        let mut values = vec![0.0f64; {len}];\n        let mut magnitudes = vec![0.0f64; {len}];\n"
        ));
        let mut indent = 2;
        let pad = |indent: usize| "    ".repeat(indent);
        for (var, extent) in &self.outer {
            text.push_str(&format!("{}for {var} in 0..{extent}i64 {{\n", pad(indent)));
            indent += 1;
        }
        text.push_str(&format!(
            "{}let (mut sum, mut magnitude) = (0.0f64, 0.0f64);\n",
            pad(indent)
        ));
        let outer_indent = indent;
        for (var, extent) in &self.reduce {
            text.push_str(&format!("{}for {var} in 0..{extent}i64 {{\n", pad(indent)));
            indent += 1;
        }
        for line in &self.lets {
            text.push_str(&format!("{}{line}\n", pad(indent)));
        }
        let (lhs, rhs) = &self.factors;
        let term = format!("let term = f64::from({lhs}) * f64::from({rhs});");
        let accumulate = "sum += term;\n".to_string();
        match &self.condition {
            Some(condition) => {
                text.push_str(&format!("{}if {condition} {{\n", pad(indent)));
                text.push_str(&format!("{}{term}\n", pad(indent + 1)));
                text.push_str(&format!("{}{accumulate}", pad(indent + 1)));
                text.push_str(&format!("{}magnitude += term.abs();\n", pad(indent + 1)));
                text.push_str(&format!("{}}}\n", pad(indent)));
            }
            None => {
                text.push_str(&format!("{}{term}\n", pad(indent)));
                text.push_str(&format!("{}{accumulate}", pad(indent)));
                text.push_str(&format!("{}magnitude += term.abs();\n", pad(indent)));
            }
        }
        while indent > outer_indent {
            indent -= 1;
            text.push_str(&format!("{}}}\n", pad(indent)));
        }
        text.push_str(&format!(
            "{}let out = ({}) as usize;\n",
            pad(indent),
            self.out_index
        ));
        if let Some(index) = &self.bias {
            text.push_str(&format!(
                "{0}sum += f64::from(bias[{index} as usize]);\n{0}magnitude += f64::from(bias[{index} as usize]).abs();\n",
                pad(indent)
            ));
        }
        if self.residual {
            text.push_str(&format!(
                "{0}sum += f64::from(r[out]);\n{0}magnitude += f64::from(r[out]).abs();\n",
                pad(indent)
            ));
        }
        if self.relu {
            text.push_str(&format!("{}sum = sum.max(0.0);\n", pad(indent)));
        }
        text.push_str(&format!(
            "{0}values[out] = sum;\n{0}magnitudes[out] = magnitude;\n",
            pad(indent)
        ));
        while indent > 2 {
            indent -= 1;
            text.push_str(&format!("{}}}\n", pad(indent)));
        }
        text.push_str("        (values, magnitudes)\n    }\n");
        text
    }

    /// The integer reference of a quantized operator, as the module documentation states it.
    fn quantized_function(&self, name: &str, parameters: &[String], quant: &Requant) -> String {
        let pad = |indent: usize| "    ".repeat(indent);
        let len = self.output.len;
        let mut text = format!(
            "    fn {name}({}) -> Vec<u8> {{\n        let mut values = vec![0u8; {len}];\n",
            parameters.join(", ")
        );
        let mut indent = 2;
        for (var, extent) in &self.outer {
            text.push_str(&format!("{}for {var} in 0..{extent}i64 {{\n", pad(indent)));
            indent += 1;
        }
        text.push_str(&format!("{}let mut acc = 0i32;\n", pad(indent)));
        let outer_indent = indent;
        for (var, extent) in &self.reduce {
            text.push_str(&format!("{}for {var} in 0..{extent}i64 {{\n", pad(indent)));
            indent += 1;
        }
        for line in &self.lets {
            text.push_str(&format!("{}{line}\n", pad(indent)));
        }
        // A padded tap reads the zero point, which adds nothing: skipping it is the same.
        let (input, weight) = &self.factors;
        let term = format!(
            "acc = acc.wrapping_add((i32::from({input}) - {}).wrapping_mul(i32::from({weight})));",
            quant.a_zero
        );
        match &self.condition {
            Some(condition) => text.push_str(&format!(
                "{0}if {condition} {{\n{1}{term}\n{0}}}\n",
                pad(indent),
                pad(indent + 1)
            )),
            None => text.push_str(&format!("{}{term}\n", pad(indent))),
        }
        while indent > outer_indent {
            indent -= 1;
            text.push_str(&format!("{}}}\n", pad(indent)));
        }
        let channel = self.bias.as_deref().unwrap_or("0");
        let multiplier = if quant.per_channel {
            format!("i128::from(m[({channel}) as usize])")
        } else {
            format!("{}i128", quant.multiplier)
        };
        let shift = 31 + quant.shift;
        let lines = [
            format!("let total = acc.wrapping_add(bias[({channel}) as usize]);"),
            format!(
                "let scaled = ((i128::from(total) * {multiplier} + (1i128 << {})) >> {shift}) as i32;",
                shift - 1
            ),
            format!(
                "let value = {}i32.wrapping_add(scaled).max({}).min({});",
                quant.out_zero, quant.qmin, quant.qmax
            ),
            format!("values[({}) as usize] = value as u8;", self.out_index),
        ];
        for line in lines {
            text.push_str(&format!("{}{line}\n", pad(indent)));
        }
        while indent > 2 {
            indent -= 1;
            text.push_str(&format!("{}}}\n", pad(indent)));
        }
        text.push_str("        values\n    }\n");
        text
    }
}
