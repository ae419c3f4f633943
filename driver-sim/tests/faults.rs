//! The software NPU's kernel fault injection at the driver ABI: counting launches of one
//! kernel id, firing once, disarming, and the message naming the faulting command. (What
//! every driver's fault injection must do is checked by the conformance kit,
//! `knpu-conformance`.)

mod common;

use common::{elementwise, fill, host_fn, kernel, CallCounter, Sim};
use knpu_driver_abi::*;

/// Faults are device-wide, so this binary has one test, statically linked and then as a
/// plugin.
#[test]
fn injected_kernel_faults() {
    for sim in [common::linked(), common::plugin()] {
        injected_kernel_fault(sim);
    }
}

fn injected_kernel_fault(sim: Sim) {
    let d = sim.device(0);
    let q = sim.queue(d);
    let s = sim.semaphore(d, 0);
    let a = sim.alloc(d, 4096);
    let p = elementwise(KNPU_ELEMENTWISE_SCALE, KNPU_DTYPE_F32, 1024, a, 0, a, 1.0);
    let k = kernel(KNPU_KERNEL_ELEMENTWISE, &p);
    let counter = CallCounter::default();
    // Counting only another kernel id: elementwise launches do not fire it.
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, 4242, 1),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(sim.run(q, s, 1, &[k, k]), KNPU_STATUS_SUCCESS);
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, KNPU_KERNEL_ELEMENTWISE, 2),
        KNPU_STATUS_SUCCESS
    );
    assert_eq!(
        sim.run(q, s, 2, &[k, k, fill(a, 8, 0, 1), host_fn(&counter)]),
        KNPU_STATUS_KERNEL_FAULT
    );
    let (st, msg) = sim.error(s);
    assert_eq!(st, KNPU_STATUS_KERNEL_FAULT);
    assert!(msg.contains("command 1 (kernel elementwise)"), "{msg}");
    assert_eq!(counter.get().2, KNPU_STATUS_KERNEL_FAULT);
    let s2 = sim.semaphore(d, 0);
    assert_eq!(
        sim.run(q, s2, 1, &[k]),
        KNPU_STATUS_SUCCESS,
        "the fault fires once"
    );
    assert_eq!(sim.inject(d, KNPU_FAULT_KERNEL, 0, 1), KNPU_STATUS_SUCCESS);
    assert_eq!(sim.inject(d, KNPU_FAULT_NONE, 0, 0), KNPU_STATUS_SUCCESS);
    assert_eq!(sim.run(q, s2, 2, &[k]), KNPU_STATUS_SUCCESS, "NONE disarms");
    assert_eq!(
        sim.inject(d, KNPU_FAULT_KERNEL, 0, 0),
        KNPU_STATUS_INVALID_VALUE
    );
    assert_eq!(sim.inject(d, 99, 0, 1), KNPU_STATUS_INVALID_VALUE);
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_semaphore(s2);
    sim.destroy_queue(q);
}
