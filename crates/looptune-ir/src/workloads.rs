//! Short constructors of common workloads, for code that builds them rather than parsing
//! `op:key=value,...` (`Workload::matmul(m, n, k)` instead of a struct literal with every
//! parameter spelled out). Shapes are checked where every workload is: when its program is
//! built ([`Workload::check`]), with errors naming the bad parameter.

use crate::ops::{BatchMatmulParams, MatmulParams, Workload};

impl Workload {
    /// `C[m, n] = A[m, k] · B[k, n]`.
    pub fn matmul(m: i64, n: i64, k: i64) -> Workload {
        Workload::Matmul(MatmulParams {
            m,
            n,
            k,
            transpose_b: false,
        })
    }

    /// `b` independent products `C[b, m, n] = A[b, m, k] · B[b, k, n]`.
    pub fn batch_matmul(b: i64, m: i64, n: i64, k: i64) -> Workload {
        Workload::BatchMatmul(BatchMatmulParams {
            b,
            m,
            n,
            k,
            transpose_b: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_are_the_workloads_their_text_parses_to() {
        let parsed: Workload = "matmul:m=3,n=5,k=7".parse().expect("valid");
        assert_eq!(Workload::matmul(3, 5, 7), parsed);
        let parsed: Workload = "batch_matmul:b=2,m=3,n=5,k=7".parse().expect("valid");
        assert_eq!(Workload::batch_matmul(2, 3, 5, 7), parsed);
        assert!(Workload::matmul(0, 5, 7).check().is_err());
    }
}
