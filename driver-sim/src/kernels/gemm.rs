//! KNPU_KERNEL_GEMM: `D = act(alpha * op(A) op(B) + beta * C + bias) + residual`, batched
//! and strided, computed by `knpu_kernels::gemm` (f32 accumulation).
//!
//! Dtypes: A and B of the same dtype (F32, F16 or BF16) with C of any of the three, and A
//! F32 with B F16 or BF16 and C F32. The capability query answers for one dtype (every one
//! of the three is an input dtype of some supported combination); the full combination is
//! checked at submit and an unsupported one is NOT_SUPPORTED.
//!
//! Every operand's extent comes from the op definition (`knpu_driver_abi::ops::gemm`) and
//! is resolved through the memory table when the kernel runs, so an address outside a live
//! allocation is an ILLEGAL_ADDRESS fault naming the operand.
//!
//! Aliasing of device ranges: an input (A, B, bias, residual) whose extent overlaps C's is
//! copied to a private buffer first, so the result is as if every input were read before C
//! was written; this makes an in-place residual (`residual == c`, `beta == 0`) work. Inputs
//! may overlap each other freely.

use half::{bf16, f16};
use knpu_driver_abi::ops::{gemm as defs, Extent, OpError};
use knpu_driver_abi::*;
use knpu_kernels::gemm::{gemm, Activation, Element, Epilogue, GemmDesc, Residual};

use super::{fault, read, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

/// A validated GEMM.
pub(crate) struct Gemm {
    dtypes: (u32, u32, u32),
    desc: GemmDesc,
    activation: Activation,
    a: Extent,
    b: Extent,
    c: Extent,
    bias: Option<Extent>,
    residual: Option<(Extent, usize, usize)>,
}

fn to_usize(operand: &'static str, v: u64) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| OpError::Overflow { operand })
}

/// The ABI dtype of a storage type.
trait Stored {
    const DTYPE: u32;
}

impl Stored for f32 {
    const DTYPE: u32 = KNPU_DTYPE_F32;
}

impl Stored for f16 {
    const DTYPE: u32 = KNPU_DTYPE_F16;
}

impl Stored for bf16 {
    const DTYPE: u32 = KNPU_DTYPE_BF16;
}

/// The dtypes of storage types `A`, `B` and `C`.
const fn dtypes<A: Stored, B: Stored, C: Stored>() -> (u32, u32, u32) {
    (A::DTYPE, B::DTYPE, C::DTYPE)
}

/// Runs `$gemm.run_typed::<A, B, C>` for the listed combination `A B C` of storage types
/// whose dtypes are `$gemm.dtypes`; any other combination is NOT_SUPPORTED.
macro_rules! run_by_dtypes {
    ($gemm:ident, $ctx:ident; $($a:ident $b:ident $c:ident),+) => {
        match $gemm.dtypes {
            $(d if d == dtypes::<$a, $b, $c>() => $gemm.run_typed::<$a, $b, $c>($ctx),)+
            (a, b, c) => Err(Fault::new(
                KNPU_STATUS_NOT_SUPPORTED,
                format!("gemm dtypes (a {a}, b {b}, c {c}) are not supported"),
            )),
        }
    };
}

impl Kernel for Gemm {
    const ID: u32 = KNPU_KERNEL_GEMM;
    const NAME: &'static str = "gemm";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuGemmParams = read(bytes)?;
        let e = defs::validate(&p)?;
        let desc = GemmDesc {
            m: to_usize("m", p.m)?,
            n: to_usize("n", p.n)?,
            k: to_usize("k", p.k)?,
            alpha: p.alpha,
            beta: p.beta,
            trans_a: p.trans_a == 1,
            trans_b: p.trans_b == 1,
            lda: to_usize("lda", p.lda)?,
            ldb: to_usize("ldb", p.ldb)?,
            ldc: to_usize("ldc", p.ldc)?,
            batch: to_usize("batch_count", p.batch_count)?,
            stride_a: to_usize("stride_a", p.stride_a)?,
            stride_b: to_usize("stride_b", p.stride_b)?,
            stride_c: to_usize("stride_c", p.stride_c)?,
        };
        let residual = match e.get("residual") {
            Some(r) => Some((
                *r,
                to_usize("ld_residual", p.ld_residual)?,
                to_usize("stride_residual", p.stride_residual)?,
            )),
            None => None,
        };
        Ok(Gemm {
            dtypes: (p.a_dtype, p.b_dtype, p.c_dtype),
            desc,
            activation: super::kernel_activation!(p.activation, Activation)?,
            a: e.as_slice()[0],
            b: e.as_slice()[1],
            c: e.as_slice()[2],
            bias: e.get("bias").copied(),
            residual,
        })
    }

    fn cost(&self) -> Cost {
        let (a, b, _) = self.dtypes;
        let peak = if a != KNPU_DTYPE_F32 && b != KNPU_DTYPE_F32 {
            Peak::F16
        } else {
            Peak::F32
        };
        // C is read (beta != 0) and written; inputs are read once at best.
        let c_moves = if self.desc.beta != 0.0 { 2 } else { 1 };
        let bytes = self
            .a
            .bytes
            .saturating_add(self.b.bytes)
            .saturating_add(self.c.bytes.saturating_mul(c_moves))
            .saturating_add(self.bias.map_or(0, |e| e.bytes))
            .saturating_add(self.residual.map_or(0, |(e, _, _)| e.bytes));
        Cost {
            bytes,
            ops: self.desc.flops().min(u64::MAX as f64) as u64,
            peak,
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        // The combinations the op definition accepts, as A B C storage types.
        run_by_dtypes!(self, ctx;
            f32 f32 f32, f32 f32 f16, f32 f32 bf16,
            f16 f16 f32, f16 f16 f16, f16 f16 bf16,
            bf16 bf16 f32, bf16 bf16 f16, bf16 bf16 bf16,
            f32 f16 f32, f32 bf16 f32)
    }
}

impl Gemm {
    fn run_typed<TA: Element, TB: Element, TC: Element>(
        &self,
        ctx: &KernelContext<'_>,
    ) -> Result<(), Fault> {
        let d = &self.desc;
        if self.c.bytes == 0 {
            return Ok(());
        }
        let outs = [self.c];
        let a = ctx.input::<TA>(&self.a, &outs)?;
        let b = ctx.input::<TB>(&self.b, &outs)?;
        let bias = self.bias.map(|e| ctx.input::<f32>(&e, &outs)).transpose()?;
        let residual = self
            .residual
            .map(|(e, ld, stride)| Ok::<_, Fault>((ctx.input::<TC>(&e, &outs)?, ld, stride)))
            .transpose()?;
        // SAFETY: TC matches C's element size (chosen by its dtype); no input slice overlaps
        // C (overlapping inputs were copied above).
        let c = unsafe { ctx.output::<TC>(&self.c) }?;
        let epilogue = Epilogue {
            bias: bias.as_ref().map(|b| b.slice()),
            activation: self.activation,
            residual: residual.as_ref().map(|(r, ld, stride)| Residual {
                data: r.slice(),
                ld: *ld,
                batch_stride: *stride,
            }),
        };
        let work =
            d.m.saturating_mul(d.n)
                .saturating_mul(d.k)
                .saturating_mul(d.batch);
        let (a, b) = (a.slice(), b.slice());
        ctx.run(work, |par| gemm(d, a, b, c, &epilogue, par))
            .map_err(fault(Self::NAME))
    }
}
