//! Helpers shared by the runtime's test binaries: a stream on device 0, deterministic operand
//! values, bitwise comparison, read-back, and one stream waiting for another.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use knpu::{DeviceBuffer, Event, Stream};

/// A new stream on device 0.
pub fn stream() -> Stream {
    Stream::new(&knpu::device(0).unwrap()).unwrap()
}

/// `n` deterministic values in `[lo, hi)` (xorshift), distinct per `seed`.
pub fn rand_values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * (hi - lo) + lo
        })
        .collect()
}

fn bits<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// Asserts that `got` equals `want` bit for bit, naming the first element that differs.
#[track_caller]
pub fn assert_same<T: bytemuck::Pod + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if bits(got) != bits(want) {
        let i = got
            .iter()
            .zip(want)
            .position(|(g, w)| bits(std::slice::from_ref(g)) != bits(std::slice::from_ref(w)))
            .unwrap();
        panic!("{what}: element {i}: got {:?}, want {:?}", got[i], want[i]);
    }
}

/// `b`'s contents once the stream's work is done.
pub fn down<T: bytemuck::Pod>(s: &Stream, b: &DeviceBuffer<T>) -> Vec<T> {
    s.synchronize().unwrap();
    b.to_vec().unwrap()
}

/// Makes `waiter` wait for the work queued so far on `on`, through an event recorded on `on`:
/// how a capture forks to a second stream and joins it back.
pub fn wait_for(waiter: &Stream, on: &Stream) -> knpu::Result<()> {
    let e = Event::with_timing(on.device(), false);
    e.record(on)?;
    waiter.wait_event(&e)
}
