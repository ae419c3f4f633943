//! Elementwise activations: SiLU, GELU (erf and tanh forms) and the fused SwiGLU
//! `silu(gate) * up`.
//!
//! Accuracy (f32 storage, finite inputs, against f64): SiLU and SwiGLU within 1e-6 relative;
//! erf-GELU within 2e-6 relative including the far negative tail, which is computed without
//! cancellation (see the crate-internal `math` module); tanh-GELU within
//! 5e-7 · (1 + |2y|) relative, y its tanh argument, the conditioning of exp at 2y. Infinite inputs follow the
//! formula's IEEE arithmetic as PyTorch does (SiLU and GELU of -inf are NaN).

use super::math;
use super::simd::{map, simd_entry, with_f32_out, Simd};
use super::{check_len, f32_row, for_flat_blocks, Element, Scratch};
use crate::{Exec, KernelError};

/// Which form of GELU to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluApprox {
    /// The exact form `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`.
    Erf,
    /// The tanh approximation `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    Tanh,
}

#[derive(Clone, Copy)]
enum Act {
    Silu,
    Gelu(GeluApprox),
    SwiGlu,
}

/// SiLU (swish): `out[i] = x[i] / (1 + exp(-x[i]))` for `i < len`.
pub fn silu<T: Element>(
    x: &[T],
    out: &mut [T],
    len: usize,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    run(exec.into(), Act::Silu, x, None, out, len)
}

/// GELU in the given form, `out[i] = gelu(x[i])` for `i < len`.
pub fn gelu<T: Element>(
    x: &[T],
    out: &mut [T],
    len: usize,
    approx: GeluApprox,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    run(exec.into(), Act::Gelu(approx), x, None, out, len)
}

/// SwiGLU: `out[i] = silu(gate[i]) * up[i]` for `i < len`, in one pass.
pub fn swiglu<T: Element>(
    gate: &[T],
    up: &[T],
    out: &mut [T],
    len: usize,
    exec: impl Into<Exec>,
) -> Result<(), KernelError> {
    check_len("up", len, up.len())?;
    run(exec.into(), Act::SwiGlu, gate, Some(up), out, len)
}

fn run<T: Element>(
    exec: Exec,
    act: Act,
    x: &[T],
    y: Option<&[T]>,
    out: &mut [T],
    len: usize,
) -> Result<(), KernelError> {
    let Exec { isa, par } = exec;
    isa.require()?;
    check_len(if y.is_some() { "gate" } else { "x" }, len, x.len())?;
    check_len("out", len, out.len())?;
    for_flat_blocks(par, &mut out[..len], |start, block| {
        let end = start + block.len();
        act_entry(isa, act, &x[start..end], y.map(|y| &y[start..end]), block);
    });
    Ok(())
}

/// Elements converted per step for f16/bf16, so scratch rows stay in L1.
const CHUNK: usize = 2048;

#[inline(always)]
fn act_block<S: Simd, T: Element>(s: S, act: Act, x: &[T], y: Option<&[T]>, out: &mut [T]) {
    let isa = s.isa();
    let mut sc = Scratch::default();
    for (c, oc) in out.chunks_mut(CHUNK).enumerate() {
        let r = c * CHUNK..c * CHUNK + oc.len();
        let xc = f32_row(isa, &x[r.clone()], &mut sc.a);
        let yc = y.map(|y| f32_row(isa, &y[r], &mut sc.b));
        with_f32_out!(isa, oc, &mut sc.out, |o| match (act, yc) {
            (Act::SwiGlu, Some(u)) => {
                map!(s, [xc, u], o, |g, u| math::mul_sigmoid(s, s.mul(g, u), g))
            }
            (Act::Silu, _) => map!(s, [xc], o, |v| math::mul_sigmoid(s, v, v)),
            (Act::Gelu(GeluApprox::Erf), _) => {
                map!(s, [xc], o, |v| s.mul(v, math::gelu_erf_phi(s, v)))
            }
            // 0.5·x·(1 + tanh(y)) = x·σ(2y), 2y = 2·√(2/π)·x·(1 + 0.044715·x²).
            (Act::Gelu(GeluApprox::Tanh), _) => map!(s, [xc], o, |v| math::mul_sigmoid(
                s,
                v,
                s.mul(
                    s.mul(v, s.splat(2.0 * 0.797_884_6)),
                    s.fma(s.mul(v, v), s.splat(0.044_715), s.splat(1.0)),
                ),
            )),
            (Act::SwiGlu, None) => unreachable!("swiglu always has `up`"),
        });
    }
}

simd_entry!(fn act_entry = act_block<T: Element>(act: Act, x: &[T], y: Option<&[T]>, out: &mut [T]));
