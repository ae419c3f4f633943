//! LLM ops against plain f64 references over awkward shapes, on every ISA path this host runs,
//! for f32, f16 and bf16 storage.

// References index several arrays by the same row/column counters, as the maths reads.
#![allow(clippy::needless_range_loop)]

mod activation;
mod cast;
mod common;
mod elementwise;
mod embedding;
mod errors;
mod norm;
mod rope;
mod sample;
mod softmax;
mod topk;
