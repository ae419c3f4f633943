//! Instruction counts of a launch through the C API against the same launch through Rust.
//!
//! `launch_cost c|rust [ROUNDS]` queues ROUNDS batches of 20 async sgemm launches at
//! m = n = k = 64 on one stream, through `knpublasSgemm` or through `knpu::ops::gemm`,
//! draining the stream between batches. The launches run inside [`launches`], so
//! `valgrind --tool=callgrind --toggle-collect='*launches*' --collect-atstart=no` counts the
//! calling thread's instructions for the launches alone (the device's workers run on other
//! threads and are not in the toggle). See docs/performance.md, "C API cost".

use knpu_capi::header::*;
use knpu_capi::{knpuMalloc, knpuStreamCreate, knpuStreamSynchronize, knpublasCreate};
use knpu_capi::{knpublasSetStream, knpublasSgemm};
use std::ffi::c_void;

const N: usize = 64;
const BATCH: usize = 20;

/// Queues one batch of launches with `launch`.
#[inline(never)]
fn launches(launch: &mut dyn FnMut()) {
    for _ in 0..BATCH {
        launch();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let rounds: usize = args
        .next()
        .map_or(10, |r| r.parse().expect("ROUNDS is a number"));
    match mode.as_str() {
        "c" => c_side(rounds),
        "rust" => rust_side(rounds),
        _ => {
            eprintln!("usage: launch_cost c|rust [ROUNDS]");
            std::process::exit(2);
        }
    }
}

fn c_side(rounds: usize) {
    let mut stream: knpuStream_t = std::ptr::null_mut();
    // SAFETY: `stream` is a writable handle.
    assert_eq!(unsafe { knpuStreamCreate(&mut stream) }, knpuSuccess);
    let mut m = [std::ptr::null_mut::<c_void>(); 3];
    for p in &mut m {
        // SAFETY: `p` is a writable pointer.
        assert_eq!(unsafe { knpuMalloc(p, N * N * 4) }, knpuSuccess);
    }
    let mut handle: knpublasHandle_t = std::ptr::null_mut();
    // SAFETY: `handle` is a writable handle.
    assert_eq!(
        unsafe { knpublasCreate(&mut handle) },
        KNPUBLAS_STATUS_SUCCESS
    );
    assert_eq!(knpublasSetStream(handle, stream), KNPUBLAS_STATUS_SUCCESS);
    let (alpha, beta, n) = (1.0f32, 0.0f32, N as i32);
    let mut launch = || {
        // SAFETY: alpha and beta are floats; the matrices are device pointers.
        let status = unsafe {
            knpublasSgemm(
                handle,
                KNPUBLAS_OP_N,
                KNPUBLAS_OP_N,
                n,
                n,
                n,
                &alpha,
                m[0].cast(),
                n,
                m[1].cast(),
                n,
                &beta,
                m[2].cast(),
                n,
            )
        };
        assert_eq!(status, KNPUBLAS_STATUS_SUCCESS);
    };
    for _ in 0..rounds {
        launches(&mut launch);
        assert_eq!(knpuStreamSynchronize(stream), knpuSuccess);
    }
}

fn rust_side(rounds: usize) {
    let dev = knpu::device(0).expect("device 0");
    let s = knpu::Stream::new(&dev).expect("stream");
    let ones = vec![1.0f32; N * N];
    let a = s.from_slice(&ones).expect("a");
    let b = s.from_slice(&ones).expect("b");
    let mut c = s.alloc::<f32>(N * N).expect("c");
    let g = knpu::ops::Gemm::new(N, N, N);
    let epilogue = knpu::ops::GemmEpilogue::new();
    let mut launch = || knpu::ops::gemm(&s, &g, &a, &b, &mut c, &epilogue).expect("gemm");
    for _ in 0..rounds {
        launches(&mut launch);
        s.synchronize().expect("synchronize");
    }
}
