//! KNPU_KERNEL_GEMM (`KnpuGemmParams`): `D = act(alpha * op(A) op(B) + beta * C + bias) +
//! residual`, batched and strided, row-major.

use super::extent::live;
use super::{float_size, rule, strided_span, Activation, Extent, Extents, OpError};
use crate::sys::*;

/// Whether A, B and C of these dtypes (each F32, F16 or BF16) form a combination GEMM
/// defines: A and B of one dtype with any C, or A F32 with B F16 or BF16 and C F32.
pub fn dtypes_combine(a: u32, b: u32, c: u32) -> bool {
    a == b || (a == KNPU_DTYPE_F32 && c == KNPU_DTYPE_F32)
}

/// The stored `(rows, cols)` of an operand whose logical shape is `rows x cols`: swapped
/// when it is stored transposed.
pub fn stored(transposed: bool, rows: u64, cols: u64) -> (u64, u64) {
    if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    }
}

/// Elements a stored `rows x cols` matrix with leading dimension `ld`, repeated `batch`
/// times `stride` apart, addresses (0 when it is empty). [`OpError::Rule`] when `ld < cols`,
/// [`OpError::Overflow`] when the span overflows; both name `operand`.
pub fn matrix_elems(
    operand: &'static str,
    (rows, cols): (u64, u64),
    ld: u64,
    batch: u64,
    stride: u64,
) -> Result<u64, OpError> {
    rule(
        ld >= cols,
        operand,
        "the leading dimension must be at least the stored columns",
    )?;
    strided_span(operand, &[(batch, stride), (rows, ld), (cols, 1)])
}

/// [`OpError::Rule`] when batches of C (`m x n`, leading dimension `ldc`) `stride_c` apart
/// would overlap: the kernel writes batches in parallel.
pub fn check_c_batches(m: u64, n: u64, ldc: u64, batch: u64, stride_c: u64) -> Result<(), OpError> {
    if batch <= 1 || m == 0 || n == 0 {
        return Ok(());
    }
    let one = strided_span("c", &[(m, ldc), (n, 1)])?;
    rule(
        stride_c >= one,
        "stride_c",
        "batches of C must not overlap (stride_c >= (m - 1) * ldc + n)",
    )
}

/// Validates a GEMM parameter struct. The extents are `a`, `b`, `c`, then `bias` and
/// `residual` when given; an input the kernel does not read (the output is empty) has 0
/// bytes.
pub fn validate(p: &KnpuGemmParams) -> Result<Extents, OpError> {
    let size_a = float_size("a", p.a_dtype)?;
    let size_b = float_size("b", p.b_dtype)?;
    let size_c = float_size("c", p.c_dtype)?;
    if !dtypes_combine(p.a_dtype, p.b_dtype, p.c_dtype) {
        return Err(OpError::Unsupported {
            operand: "b",
            what: "a dtype other than a's, unless a and c are f32",
        });
    }
    let trans = |field, v| match v {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(OpError::UnknownValue { field, value }),
    };
    let trans_a = trans("trans_a", p.trans_a)?;
    let trans_b = trans("trans_b", p.trans_b)?;
    Activation::try_from(p.activation)?;
    let work = p.m > 0 && p.n > 0 && p.batch_count > 0;
    let operand = |name, dims, ld, stride| matrix_elems(name, dims, ld, p.batch_count, stride);
    let a = operand("a", stored(trans_a, p.m, p.k), p.lda, p.stride_a)?;
    let b = operand("b", stored(trans_b, p.k, p.n), p.ldb, p.stride_b)?;
    let c = operand("c", (p.m, p.n), p.ldc, p.stride_c)?;
    check_c_batches(p.m, p.n, p.ldc, p.batch_count, p.stride_c)?;
    let mut out = Extents::default();
    out.push(Extent::input("a", p.a, live(work, a), size_a)?);
    out.push(Extent::input("b", p.b, live(work, b), size_b)?);
    out.push(Extent::output("c", p.c, c, size_c)?);
    if p.bias != 0 {
        out.push(Extent::input("bias", p.bias, live(work, p.n), 4)?);
    }
    if p.residual != 0 {
        let r = operand("residual", (p.m, p.n), p.ld_residual, p.stride_residual)?;
        out.push(Extent::input(
            "residual",
            p.residual,
            live(work, r),
            size_c,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SizedStruct;

    fn plain(m: u64, n: u64, k: u64) -> KnpuGemmParams {
        let mut p = KnpuGemmParams::sized();
        (p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.batch_count) = (m, n, k, k, n, n, 1);
        (p.a, p.b, p.c) = (0x1000, 0x10_0000, 0x100_0000);
        p
    }

    #[test]
    fn extents_of_a_plain_gemm() {
        let e = validate(&plain(3, 5, 7)).unwrap();
        let bytes: Vec<u64> = e.as_slice().iter().map(|e| e.bytes).collect();
        assert_eq!(bytes, [3 * 7 * 4, 7 * 5 * 4, 3 * 5 * 4]);
    }

    #[test]
    fn overflow_names_the_operand() {
        let big = 1u64 << 33;
        assert_eq!(
            validate(&plain(big, big, big)).unwrap_err(),
            OpError::Overflow { operand: "a" }
        );
        let mut p = plain(2, 2, 2);
        p.batch_count = 2;
        p.stride_c = u64::MAX;
        assert_eq!(
            validate(&p).unwrap_err(),
            OpError::Overflow { operand: "c" }
        );
    }

    #[test]
    fn rules() {
        let mut p = plain(2, 3, 4);
        p.ldb = 2;
        assert!(matches!(
            validate(&p),
            Err(OpError::Rule { operand: "b", .. })
        ));
        let mut p = plain(2, 3, 4);
        (p.batch_count, p.stride_c) = (2, 1);
        assert!(matches!(
            validate(&p),
            Err(OpError::Rule {
                operand: "stride_c",
                ..
            })
        ));
        let mut p = plain(2, 3, 4);
        p.activation = 77;
        assert!(matches!(validate(&p), Err(OpError::UnknownValue { .. })));
        let mut p = plain(2, 3, 4);
        p.b_dtype = KNPU_DTYPE_F16;
        p.c_dtype = KNPU_DTYPE_F16;
        assert_eq!(
            validate(&p).unwrap_err().status(),
            KNPU_STATUS_NOT_SUPPORTED
        );
    }
}
