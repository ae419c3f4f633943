//! The conformance suite against the simulator linked statically, through `api()`.

mod common;

use common::conformance::conformance_tests;
use common::Sim;

fn sim() -> Sim {
    Sim {
        api: knpu_driver_sim::api(),
    }
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
    queue_limit_and_priorities,
    concurrent_queues,
    latency_report,
    bandwidth_report,
);

#[test]
fn entry_point_refuses_other_majors() {
    let major = knpu_driver_abi::KNPU_DRIVER_ABI_MAJOR;
    assert!(knpu_driver_sim::knpu_driver_get_api(major + 1, 0).is_null());
    assert!(knpu_driver_sim::knpu_driver_get_api(major - 1, 0).is_null());
    assert_eq!(
        knpu_driver_sim::knpu_driver_get_api(major, 0),
        knpu_driver_sim::api() as *const _
    );
}
