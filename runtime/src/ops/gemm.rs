//! GEMM: `C = act(alpha * op(A) op(B) + beta * C + bias) + residual`, batched and strided.
//!
//! Matrices are row-major, as PyTorch stores them: element `(i, j)` of a matrix with leading
//! dimension `ld` is at `i * ld + j`. `op(A)` is `m x k`, stored `[m, k]` (`lda >= k`) or, when
//! transposed, `[k, m]` (`lda >= m`); `op(B)` is `k x n`, stored `[k, n]` (`ldb >= n`) or
//! `[n, k]` (`ldb >= k`, the `nn.Linear` weight layout). C and the residual are `[m, n]`. Batch
//! `i` of an operand starts `i * stride` elements into its slice (stride 0 repeats A, B or the
//! residual for every batch), like `torch.bmm` and cuBLAS's strided-batched GEMM.
//!
//! A and B share a dtype (f32, f16 or bf16) and C may be any of the three, or A is f32 with B
//! f16 or bf16 and C f32 (half-precision weights). Products accumulate in f32.

use super::{same_device, supported_raw, ByteOperand};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut, DeviceSlice};
use crate::dtype::{dtype_name, DType};
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::gemm::{check_c_batches, dtypes_combine, matrix_elems};
use knpu_driver_abi::ops::{dtype_size, is_float};
use knpu_driver_abi::{self as abi, SizedStruct};

/// The activation of a fused epilogue (the op definitions' `KnpuActivation`).
pub use knpu_driver_abi::ops::Activation;

/// Shapes, transposes, leading dimensions, batch strides (all in elements) and scalars of a
/// GEMM: the kernels' own description, so one type serves every layer. [`Gemm::new`] gives
/// `C = A B`, one batch, dense row-major operands, `alpha = 1`, `beta = 0`; the builder
/// methods change one aspect each. [`gemm`] checks every extent against the op definition.
pub use knpu_kernels::gemm::GemmDesc as Gemm;

/// A residual added after the activation: `[m, n]` per batch with leading dimension `ld`,
/// batches `batch_stride` elements apart (0: one residual for all).
#[derive(Clone, Copy)]
pub struct GemmResidual<'a, TC> {
    /// The values.
    pub data: DeviceSlice<'a, TC>,
    /// Leading dimension (`>= n`).
    pub ld: usize,
    /// Elements between batches.
    pub batch_stride: usize,
}

/// The fused epilogue: bias per output column (f32, `n` values), activation, residual.
#[derive(Clone, Copy)]
pub struct GemmEpilogue<'a, TC> {
    /// `n` f32 values added to every row.
    pub bias: Option<DeviceSlice<'a, f32>>,
    /// Applied after the bias.
    pub activation: Activation,
    /// Added last.
    pub residual: Option<GemmResidual<'a, TC>>,
}

impl<TC> Default for GemmEpilogue<'_, TC> {
    fn default() -> Self {
        GemmEpilogue {
            bias: None,
            activation: Activation::None,
            residual: None,
        }
    }
}

impl<'a, TC> GemmEpilogue<'a, TC> {
    /// No bias, no activation, no residual.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bias` (`n` f32 values) to every row.
    pub fn bias(mut self, bias: &'a impl AsDeviceSlice<f32>) -> Self {
        self.bias = Some(bias.as_device_slice());
        self
    }

    /// Applies `activation` after the bias.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Adds a dense `[m, n]` residual per batch, `batch_stride` elements apart.
    pub fn residual(
        mut self,
        residual: &'a impl AsDeviceSlice<TC>,
        ld: usize,
        batch_stride: usize,
    ) -> Self {
        self.residual = Some(GemmResidual {
            data: residual.as_device_slice(),
            ld,
            batch_stride,
        });
        self
    }
}

/// Queues `C = A B` for dense row-major A `[m, k]`, B `[k, n]`, C `[m, n]` (`torch.matmul` on
/// 2-D tensors, written into `c`).
pub fn matmul<TA: DType, TB: DType, TC: DType>(
    stream: &Stream,
    a: &impl AsDeviceSlice<TA>,
    b: &impl AsDeviceSlice<TB>,
    c: &mut impl AsDeviceSliceMut<TC>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<()> {
    gemm(stream, &Gemm::new(m, n, k), a, b, c, &GemmEpilogue::new())
}

/// Checks one matrix operand: leading dimension and length for its shape, strides and batch.
#[allow(clippy::too_many_arguments)]
fn check_matrix(
    operand: &'static str,
    shape: (&str, usize, &str, usize),
    ld_name: &str,
    ld: usize,
    batch: usize,
    stride: usize,
    len: usize,
) -> Result<()> {
    let (rn, rows, cn, cols) = shape;
    // The operand's description is only formatted for an error: a launch that passes its
    // checks allocates nothing here (this runs three times on every GEMM launch).
    let described = || {
        let batched = if batch == 1 {
            String::new()
        } else {
            format!(" x {batch} batches {stride} apart")
        };
        format!("[{rn}={rows}, {cn}={cols}]{batched}")
    };
    if ld < cols {
        return Err(Error::Shape {
            operand,
            expected: format!("{} ({ld_name} >= {cols})", described()),
            actual: format!("{ld_name} = {ld}"),
        });
    }
    let need = matrix_elems(
        operand,
        (rows as u64, cols as u64),
        ld as u64,
        batch as u64,
        stride as u64,
    )
    .map_err(|e| {
        Error::invalid(format!(
            "{e}: {} with {ld_name} = {ld} is too large",
            described()
        ))
    })? as usize;
    if len < need {
        return Err(Error::Shape {
            operand,
            expected: format!(
                "{} ({ld_name} = {ld}): at least {need} elements",
                described()
            ),
            actual: format!("{len} elements"),
        });
    }
    Ok(())
}

/// Queues `C = act(alpha * op(A) op(B) + beta * C + bias) + residual` as described by `g`.
///
/// Every operand is checked before anything is queued: device (`Error::DeviceMismatch`),
/// dtype (`Error::Dtype`), leading dimension and length for its shape, strides and batch
/// (`Error::Shape`, naming the operand and the shape it must hold), overlapping batches of
/// C (`Error::InvalidValue`) and whether the device runs GEMM on each dtype
/// (`Error::NotSupported`). `m`, `n` or `batch` of 0 queues nothing; `k` of 0 still scales C
/// by `beta` and applies the epilogue.
pub fn gemm<TA: DType, TB: DType, TC: DType>(
    stream: &Stream,
    g: &Gemm,
    a: &impl AsDeviceSlice<TA>,
    b: &impl AsDeviceSlice<TB>,
    c: &mut impl AsDeviceSliceMut<TC>,
    epilogue: &GemmEpilogue<'_, TC>,
) -> Result<()> {
    queue(
        stream,
        g,
        GemmDtypes {
            a: TA::ABI,
            b: TB::ABI,
            c: TC::ABI,
        },
        [
            Arg::typed(a.as_device_slice()),
            Arg::typed(b.as_device_slice()),
            Arg::typed(c.as_device_slice_mut()),
        ],
        epilogue.bias.map(Arg::typed),
        epilogue.activation,
        epilogue
            .residual
            .map(|r| (Arg::typed(r.data), r.ld, r.batch_stride)),
    )
}

/// The element types of a GEMM's A, B and C, as `KnpuDtype` numbers
/// (`knpu::abi::KNPU_DTYPE_F32`, `..._F16`, `..._BF16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmDtypes {
    /// A's element type.
    pub a: u32,
    /// B's element type.
    pub b: u32,
    /// C's element type.
    pub c: u32,
}

/// Queues `C = alpha * op(A) op(B) + beta * C` on untyped memory: A, B and C are given as
/// [`ByteOperand`]s (a byte buffer and the offset where the matrix starts) holding elements of
/// `dtypes`, for front ends that hold device memory as bytes and know element types only at
/// run time (the C API's knpublas). It is [`gemm`] without the fused epilogue, with the same
/// checks; an operand's length is the room from its offset to the end of its buffer, in
/// whole elements, and the shape decides how much of it is used. Besides those checks, an
/// offset past the end of its buffer, or an operand whose address is not aligned to its
/// element size, is `Error::InvalidValue`.
pub fn gemm_bytes(
    stream: &Stream,
    g: &Gemm,
    dtypes: GemmDtypes,
    a: ByteOperand<'_>,
    b: ByteOperand<'_>,
    c: ByteOperand<'_>,
) -> Result<()> {
    let (Some(ra), Some(rb), Some(rc)) = (
        Arg::room(a, dtypes.a),
        Arg::room(b, dtypes.b),
        Arg::room(c, dtypes.c),
    ) else {
        return Err(misplaced([
            ("a", a, dtypes.a),
            ("b", b, dtypes.b),
            ("c", c, dtypes.c),
        ]));
    };
    let args = [ra, rb, rc];
    queue(stream, g, dtypes, args, None, Activation::None, None)
}

/// An operand as the untyped core takes it: its bytes and the elements they hold.
#[derive(Clone, Copy)]
struct Arg<'a> {
    bytes: DeviceSlice<'a, u8>,
    elems: usize,
}

impl<'a> Arg<'a> {
    fn typed<T>(s: DeviceSlice<'a, T>) -> Arg<'a> {
        Arg {
            elems: s.len(),
            bytes: s.as_bytes(),
        }
    }

    /// The room from `o`'s offset to its buffer's end, holding elements of `dtype`: `None`
    /// when the offset is past the end or the address is not aligned to the element size
    /// ([`misplaced`] says which). A dtype GEMM does not take passes here (as 1-byte
    /// elements) and is refused by the core's dtype check.
    #[inline]
    fn room(o: ByteOperand<'a>, dtype: u32) -> Option<Arg<'a>> {
        let size = dtype_size(dtype).unwrap_or(1);
        let bytes = o.buffer.tail(o.offset)?;
        // Every element size is a power of two, so alignment is a mask test.
        (bytes.addr() & (size - 1) == 0).then(|| Arg {
            elems: bytes.len() / size as usize,
            bytes,
        })
    }
}

/// The error for the first operand [`Arg::room`] refused.
#[cold]
fn misplaced(operands: [(&'static str, ByteOperand<'_>, u32); 3]) -> Error {
    for (operand, o, dtype) in operands {
        if o.offset > o.buffer.len() {
            return Error::invalid(format!(
                "operand {operand}: offset {} is past the end of its {}-byte buffer",
                o.offset,
                o.buffer.len()
            ));
        }
        let size = dtype_size(dtype).unwrap_or(1);
        let addr = o.buffer.device_address() + o.offset as u64;
        if addr & (size - 1) != 0 {
            return Error::invalid(format!(
                "operand {operand}: device address {addr:#x} is not aligned to {size} bytes \
                 for {}",
                dtype_name(dtype)
            ));
        }
    }
    Error::Internal {
        detail: "a GEMM operand was refused for no reason found".into(),
    }
}

/// The one GEMM launcher behind [`gemm`] and [`gemm_bytes`]: checks every operand against
/// the op definition's rules and queues the kernel.
fn queue(
    stream: &Stream,
    g: &Gemm,
    dtypes: GemmDtypes,
    [a, b, c]: [Arg<'_>; 3],
    bias: Option<Arg<'_>>,
    activation: Activation,
    residual: Option<(Arg<'_>, usize, usize)>,
) -> Result<()> {
    same_device(stream, "a", &a.bytes)?;
    same_device(stream, "b", &b.bytes)?;
    same_device(stream, "c", &c.bytes)?;
    if let Some(bias) = &bias {
        same_device(stream, "bias", &bias.bytes)?;
    }
    if let Some((r, _, _)) = &residual {
        same_device(stream, "residual", &r.bytes)?;
    }
    for (operand, raw) in [("a", dtypes.a), ("b", dtypes.b), ("c", dtypes.c)] {
        if !is_float(raw) {
            return Err(Error::Dtype {
                operand,
                expected: "f32, f16 or bf16".into(),
                actual: dtype_name(raw).into(),
            });
        }
    }
    if !dtypes_combine(dtypes.a, dtypes.b, dtypes.c) {
        return Err(Error::Dtype {
            operand: "b",
            expected: format!(
                "{} (as a), or f16/bf16 with a f32 and c f32",
                dtype_name(dtypes.a)
            ),
            actual: dtype_name(dtypes.b).into(),
        });
    }
    let (a_shape, b_shape) = (
        if g.trans_a {
            ("k", g.k, "m", g.m)
        } else {
            ("m", g.m, "k", g.k)
        },
        if g.trans_b {
            ("n", g.n, "k", g.k)
        } else {
            ("k", g.k, "n", g.n)
        },
    );
    check_matrix("a", a_shape, "lda", g.lda, g.batch, g.stride_a, a.elems)?;
    check_matrix("b", b_shape, "ldb", g.ldb, g.batch, g.stride_b, b.elems)?;
    check_matrix(
        "c",
        ("m", g.m, "n", g.n),
        "ldc",
        g.ldc,
        g.batch,
        g.stride_c,
        c.elems,
    )?;
    let work = g.m > 0 && g.n > 0 && g.batch > 0;
    check_c_batches(
        g.m as u64,
        g.n as u64,
        g.ldc as u64,
        g.batch as u64,
        g.stride_c as u64,
    )
    .map_err(|e| Error::invalid(format!("{e} (stride_c = {})", g.stride_c)))?;
    if let Some(bias) = &bias {
        if bias.elems != g.n {
            return Err(Error::Shape {
                operand: "bias",
                expected: format!("[n={}]", g.n),
                actual: format!("[{}]", bias.elems),
            });
        }
    }
    if let Some((r, ld, batch_stride)) = &residual {
        check_matrix(
            "residual",
            ("m", g.m, "n", g.n),
            "ld",
            *ld,
            g.batch,
            *batch_stride,
            r.elems,
        )?;
    }
    supported_raw(stream, abi::KNPU_KERNEL_GEMM, dtypes.a, "gemm")?;
    supported_raw(stream, abi::KNPU_KERNEL_GEMM, dtypes.b, "gemm")?;
    supported_raw(stream, abi::KNPU_KERNEL_GEMM, dtypes.c, "gemm")?;
    if !work {
        return Ok(());
    }
    let mut p = abi::KnpuGemmParams::sized();
    p.a_dtype = dtypes.a;
    p.b_dtype = dtypes.b;
    p.c_dtype = dtypes.c;
    p.trans_a = g.trans_a as u32;
    p.trans_b = g.trans_b as u32;
    p.activation = activation.raw();
    p.m = g.m as u64;
    p.n = g.n as u64;
    p.k = g.k as u64;
    p.a = a.bytes.addr();
    p.b = b.bytes.addr();
    p.c = c.bytes.addr();
    p.lda = g.lda as u64;
    p.ldb = g.ldb as u64;
    p.ldc = g.ldc as u64;
    p.batch_count = g.batch as u64;
    p.stride_a = g.stride_a as u64;
    p.stride_b = g.stride_b as u64;
    p.stride_c = g.stride_c as u64;
    p.alpha = g.alpha;
    p.beta = g.beta;
    p.bias = bias.as_ref().map_or(0, |s| s.bytes.addr());
    if let Some((r, ld, batch_stride)) = &residual {
        p.residual = r.bytes.addr();
        p.ld_residual = *ld as u64;
        p.stride_residual = *batch_stride as u64;
    }
    let v = stream.launch_kernel(abi::KNPU_KERNEL_GEMM, &p)?;
    a.bytes.note_use(stream, v);
    b.bytes.note_use(stream, v);
    c.bytes.note_use(stream, v);
    if let Some(bias) = &bias {
        bias.bytes.note_use(stream, v);
    }
    if let Some((r, _, _)) = &residual {
        r.bytes.note_use(stream, v);
    }
    Ok(())
}
