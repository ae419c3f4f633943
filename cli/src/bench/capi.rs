//! `knpu bench capi`: the host cost of a call through the C API (libknpu's exported
//! functions) against the same call through the Rust API, in one process.
//!
//! Cases: `memcpy_async` (`knpuMemcpyAsync` of 4 bytes host to device against
//! `Stream::memcpy_htod_async`) and `sgemm_async` (`knpublasSgemm` at m = n = k = 64 against
//! `knpu::ops::gemm`), each queued on its own stream of device 0. Every round times a batch of
//! C calls and a batch of Rust calls (the order alternating from round to round), draining
//! both streams outside the timed region so queues never grow without bound. Each case emits
//! the median per call of each side (`api` `c` and `rust`) and the difference (`c_minus_rust`:
//! the difference of the medians, and `paired_ns`, the median of the per-round differences).
//! While a batch is timed, its stream is held behind a host function waiting on a gate that
//! opens once the batch is queued, so the device's workers do not run the queued work on the
//! other core meanwhile: the figure is the calling thread's own cost per call, not its share
//! of the machine with the device. Under a loaded machine only the same-run difference means
//! anything.
//!
//! `--launches-only c|rust [--rounds N]` times nothing: it queues N batches of 20 of the same
//! sgemm launches through one API, draining the stream between batches, all inside one
//! function (`launches`), so `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*capi*launches*'` counts the calling thread's instructions for the
//! launches alone (the device's workers run on other threads). See docs/performance.md,
//! "C API cost".

use super::{err, median, Record, Sink};
use knpu_capi::header::*;
use knpu_capi::{
    knpuFree, knpuGetErrorString, knpuLaunchHostFunc, knpuMalloc, knpuMemcpyAsync,
    knpuStreamCreate, knpuStreamDestroy, knpuStreamSynchronize, knpublasCreate, knpublasDestroy,
    knpublasSetStream, knpublasSgemm,
};
use std::ffi::{c_void, CStr};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Holds a stream's queued work until the timed batch behind it has been queued.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn close(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Blocks until the gate is open (run on the device's host-function thread).
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// `knpuHostFn_t` that waits on the [`Gate`] `user` points at.
extern "C" fn wait_on_gate(user: *mut c_void) {
    // SAFETY: `user` is the `Arc<Gate>` the bench passes, which outlives every stream it is
    // queued on (each stream is drained before the bench returns).
    let gate = unsafe { &*(user as *const Gate) };
    gate.wait();
}

/// Options of `knpu bench capi`.
#[derive(clap::Args)]
pub struct Opts {
    /// Fewer rounds (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Time nothing: queue `--rounds` batches of sgemm launches through this API only, for
    /// counting instructions under callgrind (`--toggle-collect='*capi*launches*'`).
    #[arg(long, value_enum)]
    pub launches_only: Option<Api>,
    /// Batches queued by `--launches-only`.
    #[arg(long, default_value_t = 10, requires = "launches_only")]
    pub rounds: usize,
}

/// The API a launch goes through.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Api {
    /// libknpu's exported C functions.
    C,
    /// The Rust API (`knpu::ops`).
    Rust,
}

/// Edge of the square sgemm both sides launch.
const SGEMM_N: usize = 64;
/// Launches per timed (or counted) batch of sgemm.
const SGEMM_BATCH: usize = 20;

/// `knpublasSgemm` at m = n = k = [`SGEMM_N`] on three device allocations, through a handle
/// bound to one stream.
struct CSgemm {
    handle: knpublasHandle_t,
    m: [*mut c_void; 3],
}

impl CSgemm {
    fn new(stream: knpuStream_t) -> Result<CSgemm, String> {
        let mut m = [std::ptr::null_mut::<c_void>(); 3];
        for p in &mut m {
            // SAFETY: `p` is a writable pointer.
            check(
                unsafe { knpuMalloc(p, SGEMM_N * SGEMM_N * 4) },
                "knpuMalloc",
            )?;
        }
        let mut handle: knpublasHandle_t = std::ptr::null_mut();
        // SAFETY: `handle` is a writable handle.
        check_blas(unsafe { knpublasCreate(&mut handle) }, "knpublasCreate")?;
        check_blas(knpublasSetStream(handle, stream), "knpublasSetStream")?;
        Ok(CSgemm { handle, m })
    }

    fn launch(&self) -> Result<(), String> {
        let (alpha, beta, n) = (1.0f32, 0.0f32, SGEMM_N as i32);
        let m = &self.m;
        // SAFETY: alpha and beta are floats; the matrices are device pointers.
        let status = unsafe {
            knpublasSgemm(
                self.handle,
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
        check_blas(status, "knpublasSgemm")
    }

    fn free(self) -> Result<(), String> {
        check_blas(knpublasDestroy(self.handle), "knpublasDestroy")?;
        for p in self.m {
            check(knpuFree(p), "knpuFree")?;
        }
        Ok(())
    }
}

/// `knpu::ops::gemm` at m = n = k = [`SGEMM_N`].
struct RustSgemm {
    a: knpu::DeviceBuffer<f32>,
    b: knpu::DeviceBuffer<f32>,
    out: knpu::DeviceBuffer<f32>,
    gemm: knpu::ops::Gemm,
    epilogue: knpu::ops::GemmEpilogue<'static, f32>,
}

impl RustSgemm {
    fn new(stream: &knpu::Stream) -> Result<RustSgemm, String> {
        let ones = vec![1.0f32; SGEMM_N * SGEMM_N];
        Ok(RustSgemm {
            a: stream.from_slice(&ones).map_err(err)?,
            b: stream.from_slice(&ones).map_err(err)?,
            out: stream.alloc::<f32>(SGEMM_N * SGEMM_N).map_err(err)?,
            gemm: knpu::ops::Gemm::new(SGEMM_N, SGEMM_N, SGEMM_N),
            epilogue: knpu::ops::GemmEpilogue::new(),
        })
    }

    fn launch(&mut self, stream: &knpu::Stream) -> Result<(), String> {
        let s = self;
        knpu::ops::gemm(stream, &s.gemm, &s.a, &s.b, &mut s.out, &s.epilogue).map_err(err)
    }
}

/// Queues one batch of sgemm launches; the function callgrind's toggle names.
#[inline(never)]
fn launches(launch: &mut dyn FnMut() -> Result<(), String>) -> Result<(), String> {
    for _ in 0..SGEMM_BATCH {
        launch()?;
    }
    Ok(())
}

/// `--launches-only`: `rounds` batches through `api`, each drained outside [`launches`].
fn launches_only(api: Api, rounds: usize) -> Result<(), String> {
    match api {
        Api::C => {
            let mut stream: knpuStream_t = std::ptr::null_mut();
            // SAFETY: `stream` is a writable handle.
            check(unsafe { knpuStreamCreate(&mut stream) }, "knpuStreamCreate")?;
            let sgemm = CSgemm::new(stream)?;
            for _ in 0..rounds {
                launches(&mut || sgemm.launch())?;
                check(knpuStreamSynchronize(stream), "knpuStreamSynchronize")?;
            }
            sgemm.free()?;
            check(knpuStreamDestroy(stream), "knpuStreamDestroy")
        }
        Api::Rust => {
            let stream = knpu::Stream::new(&knpu::device(0).map_err(err)?).map_err(err)?;
            let mut sgemm = RustSgemm::new(&stream)?;
            for _ in 0..rounds {
                launches(&mut || sgemm.launch(&stream))?;
                stream.synchronize().map_err(err)?;
            }
            Ok(())
        }
    }
}

/// A C API status as a Rust result, with the library's message.
fn check(code: knpuError_t, what: &str) -> Result<(), String> {
    if code == knpuSuccess {
        return Ok(());
    }
    // SAFETY: knpuGetErrorString returns a NUL-terminated string that stays valid until the
    // next failing call on this thread; it is copied at once.
    let msg = unsafe { CStr::from_ptr(knpuGetErrorString(code)) };
    Err(format!("{what}: {}", msg.to_string_lossy()))
}

fn check_blas(status: knpublasStatus_t, what: &str) -> Result<(), String> {
    if status == KNPUBLAS_STATUS_SUCCESS {
        return Ok(());
    }
    check(knpu_capi::knpuPeekAtLastError(), what)?;
    Err(format!("{what}: knpublas status {status}"))
}

/// Seconds per call of `batch` calls of `f`.
fn per_call(batch: usize, f: &mut dyn FnMut() -> Result<(), String>) -> Result<f64, String> {
    let t = Instant::now();
    for _ in 0..batch {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / batch as f64)
}

/// One side of a comparison: the timed call, how to hold its stream behind the gate, and the
/// drain of its stream.
struct Side<'a> {
    call: &'a mut dyn FnMut() -> Result<(), String>,
    hold: &'a dyn Fn() -> Result<(), String>,
    drain: &'a dyn Fn() -> Result<(), String>,
}

/// Seconds per call of one batch of `side`, its stream held while the batch is queued.
fn held_batch(gate: &Gate, batch: usize, side: &mut Side<'_>) -> Result<f64, String> {
    gate.close();
    if let Err(e) = (side.hold)() {
        gate.open();
        return Err(e);
    }
    let t = per_call(batch, side.call);
    gate.open();
    (side.drain)()?;
    t
}

/// Interleaved rounds of both sides; per-call seconds of C and of Rust, round by round.
fn interleave(
    gate: &Gate,
    rounds: usize,
    batch: usize,
    mut c: Side<'_>,
    mut rust: Side<'_>,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let (mut tc, mut tr) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    // Warm-up rounds (caches, allocator, worker threads) are not kept.
    for round in 0..rounds + 2 {
        let (a, b) = if round % 2 == 0 {
            let a = held_batch(gate, batch, &mut c)?;
            (a, held_batch(gate, batch, &mut rust)?)
        } else {
            let b = held_batch(gate, batch, &mut rust)?;
            (held_batch(gate, batch, &mut c)?, b)
        };
        if round >= 2 {
            tc.push(a);
            tr.push(b);
        }
    }
    Ok((tc, tr))
}

fn emit(sink: &mut Sink, op: &str, batch: usize, mut c: Vec<f64>, mut rust: Vec<f64>) {
    let mut paired: Vec<f64> = c.iter().zip(&rust).map(|(a, b)| a - b).collect();
    let runs = c.len();
    let (mc, mr) = (median(&mut c), median(&mut rust));
    let paired = median(&mut paired);
    for (api, t) in [("c", mc), ("rust", mr)] {
        sink.emit(Record {
            bench: "capi",
            case: case! {"op" => op, "api" => api, "batch" => batch},
            runs,
            median_s: t,
            rates: vec![("ns", t * 1e9)],
        });
    }
    sink.emit(Record {
        bench: "capi",
        case: case! {"op" => op, "api" => "c_minus_rust", "batch" => batch},
        runs,
        median_s: mc - mr,
        rates: vec![("ns", (mc - mr) * 1e9), ("paired_ns", paired * 1e9)],
    });
}

/// Runs the suite.
pub fn run(opts: &Opts, sink: &mut Sink) -> Result<(), String> {
    if let Some(api) = opts.launches_only {
        return launches_only(api, opts.rounds);
    }
    let rounds = if opts.quick { 10 } else { 200 };
    let dev = knpu::device(0).map_err(err)?;
    let rs = knpu::Stream::new(&dev).map_err(err)?;
    let mut cs: knpuStream_t = std::ptr::null_mut();
    // SAFETY: `cs` is a writable handle.
    check(unsafe { knpuStreamCreate(&mut cs) }, "knpuStreamCreate")?;
    let c_drain = || check(knpuStreamSynchronize(cs), "knpuStreamSynchronize");
    let r_drain = || rs.synchronize().map_err(err);
    let gate = Arc::new(Gate::default());
    let gate_ptr = Arc::as_ptr(&gate) as *mut c_void;
    // `wait_on_gate` only reads the gate, which `gate` keeps alive past every drain.
    let c_hold = || {
        check(
            knpuLaunchHostFunc(cs, Some(wait_on_gate), gate_ptr),
            "knpuLaunchHostFunc",
        )
    };
    let r_gate = Arc::clone(&gate);
    let r_hold = || {
        let g = Arc::clone(&r_gate);
        rs.launch_host_func(move || g.wait()).map_err(err)
    };

    // memcpy_async: 4 bytes host to device.
    let host = [1.0f32];
    let mut rbuf = rs.alloc::<f32>(1).map_err(err)?;
    let mut cbuf: *mut c_void = std::ptr::null_mut();
    // SAFETY: `cbuf` is a writable pointer.
    check(unsafe { knpuMalloc(&mut cbuf, 4) }, "knpuMalloc")?;
    let mut c_copy = || {
        // SAFETY: `host` outlives every copy (each batch is drained before it goes).
        let code =
            unsafe { knpuMemcpyAsync(cbuf, host.as_ptr().cast(), 4, knpuMemcpyHostToDevice, cs) };
        check(code, "knpuMemcpyAsync")
    };
    let mut r_copy = || {
        // SAFETY: as above.
        unsafe { rs.memcpy_htod_async(&mut rbuf, &host) }
            .map(drop)
            .map_err(err)
    };
    let batch = 200;
    let (c, r) = interleave(
        &gate,
        rounds,
        batch,
        Side {
            call: &mut c_copy,
            hold: &c_hold,
            drain: &c_drain,
        },
        Side {
            call: &mut r_copy,
            hold: &r_hold,
            drain: &r_drain,
        },
    )?;
    emit(sink, "memcpy_async", batch, c, r);

    // sgemm_async: 64 x 64 x 64 in f32.
    let c_sgemm = CSgemm::new(cs)?;
    let mut r_sgemm = RustSgemm::new(&rs)?;
    let mut c_gemm = || c_sgemm.launch();
    let mut r_gemm = || r_sgemm.launch(&rs);
    let (c, r) = interleave(
        &gate,
        rounds,
        SGEMM_BATCH,
        Side {
            call: &mut c_gemm,
            hold: &c_hold,
            drain: &c_drain,
        },
        Side {
            call: &mut r_gemm,
            hold: &r_hold,
            drain: &r_drain,
        },
    )?;
    emit(sink, "sgemm_async", SGEMM_BATCH, c, r);

    c_sgemm.free()?;
    check(knpuFree(cbuf), "knpuFree")?;
    check(knpuStreamDestroy(cs), "knpuStreamDestroy")
}
