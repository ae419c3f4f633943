//! The conformance suite against the simulator loaded as a plugin: the cdylib, opened with
//! libloading and entered through `knpu_driver_get_api`, the way the runtime loads vendor
//! drivers. Its state is separate from the statically linked copy in this test binary.

mod common;

use common::conformance::conformance_tests;
use common::Sim;
use knpu_driver_abi::*;

fn sim() -> Sim {
    common::plugin()
}

#[test]
fn the_plugin_is_a_separate_instance() {
    assert_ne!(
        sim().api as *const KnpuDriverApi,
        knpu_driver_sim::api() as *const KnpuDriverApi
    );
}

conformance_tests!(sim;
    table_header,
    devices_and_attributes,
    memory_accounting,
    copies_round_trip,
    fill_patterns,
    illegal_addresses_fault_and_the_queue_recovers,
    dependency_failure_propagates,
    host_functions_and_timestamps,
    elementwise_kernels,
    semaphores,
    invalid_handles_are_refused,
    profiling_records_commands,
    concurrent_queues,
    latency_report,
);
