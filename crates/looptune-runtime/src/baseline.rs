//! A peer's GEMM to measure looptune's kernels against: `matrixmultiply`'s `sgemm`, a
//! BLIS-style pure-Rust GEMM with AVX/FMA micro-kernels (feature `baseline`).
//!
//! Only benchmarks and the main job's comparison column use it; looptune never returns it as a
//! kernel. It lives here because calling it takes `unsafe` (raw pointers and strides), and
//! `unsafe` lives only in this crate, behind a safe call that checks the buffers first.

use thiserror::Error;

/// Buffers that do not match the GEMM's shape.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "sgemm {m}x{n}x{k}: buffers of {a}, {b} and {c} elements, expected {} (A), {} (B) and {} (C)",
    m * k,
    k * n,
    m * n
)]
pub struct BaselineError {
    /// Rows of `A` and `C`.
    pub m: usize,
    /// Columns of `B` and `C`.
    pub n: usize,
    /// The reduction.
    pub k: usize,
    /// Elements of `A` given.
    pub a: usize,
    /// Elements of `B` given.
    pub b: usize,
    /// Elements of `C` given.
    pub c: usize,
}

/// `C = A B` with `matrixmultiply`, row-major, `C` overwritten. `A` is `m x k`; `B` is `k x n`,
/// or `n x k` when `transpose_b` (the layout of looptune's `matmul:...,transpose_b=true`).
pub fn sgemm(
    (m, n, k): (usize, usize, usize),
    transpose_b: bool,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) -> Result<(), BaselineError> {
    let fits = m.checked_mul(k) == Some(a.len())
        && k.checked_mul(n) == Some(b.len())
        && m.checked_mul(n) == Some(c.len());
    if !fits {
        return Err(BaselineError {
            m,
            n,
            k,
            a: a.len(),
            b: b.len(),
            c: c.len(),
        });
    }
    let (row_stride_b, column_stride_b) = if transpose_b { (1, k) } else { (n, 1) };
    // SAFETY: the lengths checked above are exactly the elements the strides reach (A m x k with
    // row stride k, B k x n read with the strides of its stored layout, C m x n with row stride
    // n; the products did not overflow, and slices never exceed isize::MAX bytes, so the isize
    // strides are exact), and `c` is a unique borrow, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            row_stride_b as isize,
            column_stride_b as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_a_triple_loop_in_both_layouts_of_b() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|x| x as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|x| (x % 4) as f32 - 1.5).collect();
        for transpose_b in [false, true] {
            let mut c = vec![f32::NAN; m * n];
            sgemm((m, n, k), transpose_b, &a, &b, &mut c).expect("shapes match");
            for i in 0..m {
                for j in 0..n {
                    let expected: f32 = (0..k)
                        .map(|p| {
                            let b = if transpose_b {
                                b[j * k + p]
                            } else {
                                b[p * n + j]
                            };
                            a[i * k + p] * b
                        })
                        .sum();
                    assert!(
                        (c[i * n + j] - expected).abs() < 1e-4,
                        "{transpose_b} {i} {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn buffers_of_the_wrong_length_are_refused() {
        let mut c = vec![0.0; 4];
        let error = sgemm((2, 2, 2), false, &[0.0; 4], &[0.0; 3], &mut c).expect_err("short B");
        assert_eq!(error.b, 3);
        assert!(
            error
                .to_string()
                .contains("expected 4 (A), 4 (B) and 4 (C)"),
            "{error}"
        );
    }
}
