//! Sampling token ids on the device (KNPU_KERNEL_SAMPLE, driver ABI 2.1): greedy,
//! temperature, top-k and top-p, so a decoder reads back one id per row instead of the
//! logits.
//!
//! The random numbers are counter-based: row `r` draws from `(seed, counter, r)`, where
//! `counter` is a `u64` in device memory that each launch reads and increments by one. A
//! captured graph that is replayed therefore draws fresh numbers every replay, and the same
//! seed and counter give the same ids on every driver. [`sample`]'s `rng_counter` is that
//! counter; reset it (write a value to it) to replay a sequence.

use super::{float, optional, submit, supported, Operand};
use crate::buffer::{AsDeviceSlice, AsDeviceSliceMut};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::stream::Stream;
use knpu_driver_abi::ops::sample as rules;
use knpu_driver_abi::{self as abi, SizedStruct};

/// The scalars of a sampling launch. The default is plain sampling from the softmax
/// (temperature 1, no top-k, no top-p) with seed 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleParams {
    /// Divides the logits; 0 is greedy (the argmax, lowest index on ties). Finite, `>= 0`.
    pub temperature: f32,
    /// Keep only the `top_k` largest logits; 0 keeps all. At most the vocabulary.
    pub top_k: usize,
    /// Keep the shortest prefix of the sorted probabilities whose sum reaches `top_p`;
    /// 1 keeps all. In `(0, 1]`.
    pub top_p: f32,
    /// The generator's seed.
    pub seed: u64,
}

impl Default for SampleParams {
    fn default() -> SampleParams {
        SampleParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A token id type `sample` writes: `u32` or `i32` (sealed).
pub trait TokenId: DType + private::Sealed {}
impl TokenId for u32 {}
impl TokenId for i32 {}

mod private {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
}

/// Whether the stream's driver speaks ABI minor `minor` (of the runtime's major): an older
/// driver does not know the ops that minor added, so using one is `NotSupported`.
pub(crate) fn require_minor(stream: &Stream, minor: u32, what: &str) -> Result<()> {
    let (major, have) = stream.device().driver().abi_version();
    if have < minor {
        return Err(Error::NotSupported {
            detail: format!(
                "{what} needs driver ABI {major}.{minor}; device {} ({}) has a driver of ABI \
                 {major}.{have}",
                stream.device().ordinal(),
                stream.device().name()
            ),
        });
    }
    Ok(())
}

/// Queues `out[r] = ` one token id drawn from row `r` of `logits` (`[rows, vocab]`) by
/// `params` (see [`SampleParams`] and the driver header's KNPU_KERNEL_SAMPLE for the exact
/// rule).
///
/// `rng_counter` is one `u64` of device memory that the launch reads and then increments by
/// one (initialise it, typically to 0, before the first launch); it may be `None` only for
/// greedy sampling (`temperature == 0`). Errors, before anything is queued: a parameter out
/// of range, a shape that does not match (`out` holds `rows` ids, `rng_counter` one value),
/// `out` and `rng_counter` overlapping, operands on another device, or a device without the
/// kernel (`NotSupported`).
pub fn sample<T: DType, I: TokenId>(
    stream: &Stream,
    logits: &impl AsDeviceSlice<T>,
    out: &mut impl AsDeviceSliceMut<I>,
    rows: usize,
    vocab: usize,
    params: &SampleParams,
    rng_counter: Option<&mut dyn AsDeviceSliceMut<u64>>,
) -> Result<()> {
    let (x, o) = (logits.as_device_slice(), out.as_device_slice_mut());
    let c = rng_counter.map(|c| c.as_device_slice_mut());
    float::<T>("logits")?;
    rules::check_shape(rows as u64, vocab as u64, I::ABI)
        .map_err(|e| Error::invalid(format!("{e} ({rows} rows of {vocab} ids)")))?;
    rules::check_params(
        params.temperature,
        params.top_k as u64,
        params.top_p,
        vocab as u64,
    )?;
    x.check_shape(stream, "logits", &[rows, vocab])?;
    o.check_shape(stream, "out", &[rows])?;
    if let Some(c) = &c {
        c.check_shape(stream, "rng_counter", &[1])?;
    } else if params.temperature != 0.0 {
        return Err(Error::invalid(
            "sampling with temperature > 0 needs an rng_counter (one u64 of device memory)",
        ));
    }
    require_minor(stream, rules::SINCE_MINOR, "sample")?;
    supported::<T>(stream, abi::KNPU_KERNEL_SAMPLE, "sample")?;
    if rows == 0 {
        return Ok(());
    }
    let mut p = abi::KnpuSampleParams::sized();
    p.dtype = T::ABI;
    p.out_dtype = I::ABI;
    p.rows = rows as u64;
    p.vocab = vocab as u64;
    p.top_k = params.top_k as u64;
    p.seed = params.seed;
    p.logits = x.addr();
    p.out = o.addr();
    p.rng_counter = c.as_ref().map_or(0, |c| c.addr());
    p.temperature = params.temperature;
    p.top_p = params.top_p;
    // The op definition's remaining rules (out and rng_counter disjoint) before queueing.
    rules::validate(&p)?;
    let used = [Some(&x as &dyn Operand), Some(&o), optional(&c)];
    submit(stream, abi::KNPU_KERNEL_SAMPLE, &p, &used)
}
