//! KNPU_KERNEL_SAMPLE (since ABI 2.1): one token id per row of logits, drawn by
//! `knpu_kernels::llm::sample` with the counter-based uniform numbers of the op definition
//! (`knpu_driver_abi::ops::sample::uniform`).
//!
//! The counter is device memory: the kernel reads it, draws row `r`'s number from `(seed,
//! counter, r)`, and stores `counter + 1` after the ids are written, so a command list that
//! is submitted again draws fresh numbers and the driver keeps no random state. Greedy
//! launches draw nothing and still increment a counter that is given.

use knpu_driver_abi::ops::sample::{uniform, validate};
use knpu_driver_abi::ops::{Extent, OpError};
use knpu_driver_abi::*;
use knpu_kernels::llm::{self, SampleParams};

use super::{fault, read, with_float, Cost, Kernel, KernelContext, Peak};
use crate::exec::Fault;

/// A validated KNPU_KERNEL_SAMPLE launch.
pub(crate) struct Sample {
    p: KnpuSampleParams,
    logits: Extent,
    out: Extent,
    counter: Option<Extent>,
}

impl Kernel for Sample {
    const ID: u32 = KNPU_KERNEL_SAMPLE;
    const NAME: &'static str = "sample";

    fn parse(bytes: &[u8]) -> Result<Self, OpError> {
        let p: KnpuSampleParams = read(bytes)?;
        let e = validate(&p)?;
        Ok(Sample {
            p,
            logits: e.as_slice()[0],
            out: e.as_slice()[1],
            counter: e.get("rng_counter").copied(),
        })
    }

    fn cost(&self) -> Cost {
        let counter = self.counter.map_or(0, |c| c.bytes * 2);
        Cost {
            bytes: self.logits.bytes + self.out.bytes + counter,
            ops: self.logits.elems().saturating_mul(4),
            peak: Peak::F32,
        }
    }

    fn run(&self, ctx: &KernelContext<'_>) -> Result<(), Fault> {
        if self.out.bytes == 0 {
            return Ok(());
        }
        let outs: Vec<Extent> = std::iter::once(self.out).chain(self.counter).collect();
        let (rows, vocab) = (self.p.rows as usize, self.p.vocab as usize);
        let params = SampleParams {
            temperature: self.p.temperature,
            top_k: self.p.top_k as usize,
            top_p: self.p.top_p,
        };
        with_float!(self.p.dtype, T => {
            // Inputs first: logits that overlap an output are copied before any output
            // slice exists.
            let x = ctx.input::<T>(&self.logits, &outs)?;
            let counter = match &self.counter {
                // SAFETY: one u64 (8 bytes, 8-aligned by the op definition), disjoint from
                // `out` (checked at parse); the overlapping input was copied above.
                Some(c) => Some(unsafe { ctx.output::<u64>(c) }?),
                None => None,
            };
            let value = counter.as_ref().map_or(0, |c| c[0]);
            let uniforms: Vec<f64> = if params.is_greedy() {
                Vec::new()
            } else {
                (0..self.p.rows).map(|r| uniform(self.p.seed, value, r)).collect()
            };
            // SAFETY: U32 and I32 ids are 4 bytes, written as u32 (ids of an I32 `out` are
            // below 2^31 by the op definition); inputs overlapping an output were copied and
            // the outputs are disjoint.
            let out = unsafe { ctx.output::<u32>(&self.out) }?;
            ctx.run(self.logits.elems() as usize, |par| {
                llm::sample(x.slice(), &uniforms, out, rows, vocab, &params, par)
            })
            .map_err(fault(Self::NAME))?;
            if let Some(c) = counter {
                c[0] = value.wrapping_add(1);
            }
            Ok(())
        })
    }
}
