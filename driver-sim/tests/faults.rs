//! Fault injection and device loss. Faults are device-wide, so these checks run one after
//! another in this binary's only test, on a driver configured with two devices, statically
//! linked first and then as a plugin.

mod common;

use common::{conformance, Sim};

#[test]
fn faults_and_device_loss() {
    // The only test of this process, so setting the environment before the driver first
    // starts races with nothing.
    std::env::set_var("KNPU_SIM_DEVICES", "2");
    for sim in [
        Sim {
            api: knpu_driver_sim::api(),
        },
        common::plugin(),
    ] {
        conformance::injected_kernel_fault(sim);
        conformance::injected_alloc_failure(sim);
        conformance::peer_copies_between_devices(sim);
        conformance::queue_limit(sim, 1);
        conformance::device_loss(sim, 1);
    }
}
