//! Fuzzes the runtime's op launchers with arbitrary shape and size arguments over small
//! buffers: GEMM's `m`, `n`, `k`, leading dimensions and batches, and elementwise ops over
//! arbitrary slice ranges. Each call must return `Ok` or an error, and queued work must
//! complete; a panic (an unchecked overflow, say), a crash or a hang is a finding.
#![no_main]

use knpu::ops::{self, Gemm, GemmEpilogue};
use knpu::Stream;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

mod input;
use input::Input;

fn stream() -> &'static Stream {
    static S: OnceLock<Stream> = OnceLock::new();
    S.get_or_init(|| Stream::new(&knpu::device(0).unwrap()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let s = stream();
    let mut inp = Input(data);
    let a = s.alloc_zeroed::<f32>(1024).unwrap();
    let b = s.alloc_zeroed::<f32>(1024).unwrap();
    let mut c = s.alloc_zeroed::<f32>(1024).unwrap();
    match inp.u8() % 2 {
        0 => {
            let mut g = Gemm::new(inp.size(), inp.size(), inp.size());
            if inp.u8() % 2 == 0 {
                g = g.ld(inp.size(), inp.size(), inp.size());
            }
            if inp.u8() % 2 == 0 {
                g = g.batched(inp.size(), inp.size(), inp.size(), inp.size());
            }
            if inp.u8() % 2 == 0 {
                g = g.transpose_a();
            }
            if inp.u8() % 2 == 0 {
                g = g.transpose_b();
            }
            let _ = ops::gemm(s, &g, &a, &b, &mut c, &GemmEpilogue::new());
        }
        _ => {
            let (start, end) = (inp.size(), inp.size());
            if let (Ok(x), Ok(mut y)) = (a.slice(start..end), c.slice_mut(start..end)) {
                let _ = ops::scale(s, 2.0, &x, &mut y);
            }
        }
    }
    let _ = s.synchronize();
});
