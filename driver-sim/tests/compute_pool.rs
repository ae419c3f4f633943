//! How kernels reach the compute cores on a two-core simulator (`KNPU_SIM_CORES=2`): a big
//! kernel runs on its queue's worker thread, which splits it with the spinning compute team
//! (no hand-off to a parked pool thread per kernel), a LOW priority queue's kernel keeps to
//! half the cores, and several queues running big kernels at once still get right answers
//! (the team serves one of them; the others split on the pool).

mod common;

use std::sync::Once;

use common::{kernel, Sim};
use knpu_driver_abi::*;
use knpu_driver_sim::driver::driver;
use knpu_driver_sim::kernels::{KernelContext, INLINE_ELEMENTS};
use knpu_kernels::Parallelism;

/// The simulator of this process, configured with two cores before its first use.
fn two_core_sim() -> Sim {
    static CONFIGURE: Once = Once::new();
    // Every test calls this before anything reads the environment or starts the driver.
    CONFIGURE.call_once(|| std::env::set_var("KNPU_SIM_CORES", "2"));
    common::linked()
}

#[test]
fn a_big_kernel_runs_on_the_calling_queue_worker_with_every_core() {
    let _ = two_core_sim();
    let d = driver();
    assert_eq!(d.config.cores, 2);
    assert!(
        d.pool_is_global(),
        "nothing else in this test process starts rayon's global pool before the driver"
    );
    let here = std::thread::current().id();
    let ran = |priority| {
        let ctx = KernelContext {
            driver: d,
            device: &d.devices[0],
            priority,
        };
        ctx.run(INLINE_ELEMENTS * 16, |par| {
            (
                std::thread::current().id(),
                rayon::current_thread_index(),
                par,
            )
        })
    };
    assert_eq!(
        ran(KNPU_QUEUE_PRIORITY_NORMAL),
        (here, None, Parallelism::Rayon(2))
    );
    // Half of two cores is one: the kernel runs alone on the worker.
    assert_eq!(
        ran(KNPU_QUEUE_PRIORITY_LOW),
        (here, None, Parallelism::None)
    );
    assert_eq!(
        ran(KNPU_QUEUE_PRIORITY_HIGH),
        (here, None, Parallelism::Rayon(2))
    );
}

const M: usize = 96;
const N: usize = 80;
const K: usize = 64;

fn floats(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13) % 17) as f32 * 0.125 - 1.0)
        .collect()
}

/// `A B` for row-major `M x K` A and `K x N` B. The inputs are multiples of 1/8 with
/// small sums, so every order of summation gives the same f32.
fn reference(a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0f32; M * N];
    for i in 0..M {
        for j in 0..N {
            c[i * N + j] = (0..K).map(|p| a[i * K + p] * b[p * N + j]).sum();
        }
    }
    c
}

/// Runs `rounds` GEMMs big enough for the pool (M N K > `INLINE_ELEMENTS`) on a new queue of
/// `priority`, each with its own inputs, and checks every result.
fn gemms_on_one_queue(sim: &Sim, priority: i32, seed: usize, rounds: usize) {
    const { assert!(M * N * K > INLINE_ELEMENTS) };
    let dev = sim.device(0);
    let mut queue = std::ptr::null_mut();
    assert_eq!(
        // SAFETY: the simulator's table fills every field; arguments follow the header.
        unsafe { (sim.table().queue_create.expect("queue_create"))(dev, priority, &mut queue) },
        KNPU_STATUS_SUCCESS
    );
    for r in 0..rounds {
        let (a, b) = (floats(seed + r, M * K), floats(seed * 3 + r, K * N));
        let mut p = KnpuGemmParams::sized();
        (p.a_dtype, p.b_dtype, p.c_dtype) = (KNPU_DTYPE_F32, KNPU_DTYPE_F32, KNPU_DTYPE_F32);
        p.activation = KNPU_ACTIVATION_NONE;
        (p.m, p.n, p.k) = (M as u64, N as u64, K as u64);
        (p.lda, p.ldb, p.ldc) = (K as u64, N as u64, N as u64);
        p.batch_count = 1;
        (p.stride_a, p.stride_b, p.stride_c) = ((M * K) as u64, (K * N) as u64, (M * N) as u64);
        (p.alpha, p.beta) = (1.0, 0.0);
        p.a = sim.upload(dev, queue, bytemuck::cast_slice(&a));
        p.b = sim.upload(dev, queue, bytemuck::cast_slice(&b));
        p.c = sim.alloc(dev, (M * N * 4) as u64);
        let s = sim.semaphore(dev, 0);
        // Several launches in one submission: consecutive kernels of one worker.
        let launches = [kernel(KNPU_KERNEL_GEMM, &p), kernel(KNPU_KERNEL_GEMM, &p)];
        assert_eq!(sim.run(queue, s, 1, &launches), KNPU_STATUS_SUCCESS);
        sim.destroy_semaphore(s);
        let got: Vec<f32> = sim
            .download(dev, queue, p.c, M * N * 4)
            .chunks_exact(4)
            .map(|x| f32::from_ne_bytes(x.try_into().expect("4 bytes")))
            .collect();
        assert_eq!(got, reference(&a, &b), "queue {seed}, round {r}");
        for x in [p.a, p.b, p.c] {
            sim.free(dev, x);
        }
    }
    sim.destroy_queue(queue);
}

#[test]
fn queues_running_big_kernels_at_once_each_get_right_answers() {
    let sim = two_core_sim();
    let priorities = [
        KNPU_QUEUE_PRIORITY_NORMAL,
        KNPU_QUEUE_PRIORITY_NORMAL,
        KNPU_QUEUE_PRIORITY_HIGH,
        KNPU_QUEUE_PRIORITY_LOW,
    ];
    std::thread::scope(|s| {
        for (i, &priority) in priorities.iter().enumerate() {
            let sim = &sim;
            s.spawn(move || gemms_on_one_queue(sim, priority, i + 1, 12));
        }
    });
}
