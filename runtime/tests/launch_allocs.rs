//! Heap allocations a launcher makes on the calling thread when its checks pass.
//!
//! The Python layer pays every launcher's host cost on each call, so a launcher's checks
//! must not build their error messages before they know there is an error. Counting is per
//! thread (the device's workers allocate on their own threads), and GEMM is compared with
//! the binary kernel's launcher over the same submission path, so the driver's own
//! allocations cancel out.

use knpu::ops::{self, BinaryOp, Broadcast, Gemm, GemmEpilogue};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call forwards to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(|c| c.get());
    f();
    ALLOCS.with(|c| c.get()) - before
}

/// A stream on device 0 with 16 ones, 16 twos and room for 16 results.
fn stream_and_operands() -> (knpu::Stream, Buffer, Buffer, Buffer) {
    let stream = knpu::Stream::new(&knpu::device(0).unwrap()).unwrap();
    let a = stream.from_slice(&[1.0f32; 16]).unwrap();
    let b = stream.from_slice(&[2.0f32; 16]).unwrap();
    let c = stream.alloc::<f32>(16).unwrap();
    (stream, a, b, c)
}

type Buffer = knpu::DeviceBuffer<f32>;

#[test]
fn gemm_launch_formats_no_operand_descriptions_when_the_checks_pass() {
    let (stream, a, b, mut c) = stream_and_operands();
    let g = Gemm::new(4, 4, 4);
    let ep = GemmEpilogue::new();
    let gemm = |c: &mut knpu::DeviceBuffer<f32>| {
        ops::gemm(&stream, &g, &a, &b, c, &ep).unwrap();
    };
    let binary = |c: &mut knpu::DeviceBuffer<f32>| {
        ops::binary(&stream, BinaryOp::Add, &a, &b, c, 4, 4, Broadcast::None).unwrap();
    };
    // Warm up first: the stream's and buffers' bookkeeping grows on first use.
    for _ in 0..3 {
        gemm(&mut c);
        binary(&mut c);
    }
    stream.synchronize().unwrap();
    let by_gemm = allocs_during(|| gemm(&mut c));
    stream.synchronize().unwrap();
    let by_binary = allocs_during(|| binary(&mut c));
    stream.synchronize().unwrap();
    assert!(
        by_gemm <= by_binary,
        "a GEMM launch allocated {by_gemm} times, a binary launch over the same submission \
         path {by_binary}: the GEMM checks allocate on success"
    );
    let mut got = [0.0f32; 16];
    stream.memcpy_dtoh(&mut got, &c).unwrap();
    assert_eq!(got, [3.0f32; 16]);
}

/// The simulator recycles each finished submission's body (with its command vector), so once
/// warm a launch of the binary kernel allocates nothing of its own on the calling thread: what
/// is left is the queue channel's block of 31 slots, one allocation every 31 launches. It used
/// to allocate the command vector on every launch.
#[test]
fn binary_launch_allocates_no_command_storage_once_warm() {
    let (stream, a, b, mut c) = stream_and_operands();
    for _ in 0..64 {
        ops::add(&stream, &a, &b, &mut c).unwrap();
    }
    stream.synchronize().unwrap();
    let mut allocs = 0;
    for _ in 0..8 {
        allocs += allocs_during(|| {
            for _ in 0..16 {
                ops::add(&stream, &a, &b, &mut c).unwrap();
            }
        });
        stream.synchronize().unwrap();
    }
    let channel_blocks = 128usize.div_ceil(31) + 1;
    assert!(
        allocs <= channel_blocks,
        "128 warm binary launches allocated {allocs} times (the channel's blocks account for \
         {channel_blocks})"
    );
    let mut got = [0.0f32; 16];
    stream.memcpy_dtoh(&mut got, &c).unwrap();
    assert_eq!(got, [3.0f32; 16]);
}
