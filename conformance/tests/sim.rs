//! The kit against the software NPU, built in and loaded from its cdylib, and against test
//! doubles built from the simulator: one that lies about a copy, which the kit must catch and
//! name, and drivers without kernels (a bare table, and a C shared library), whose kernel
//! families and missing capabilities must be skipped, not failed.
//!
//! One test runs everything in order: the simulator's device count is read once per process
//! (three devices, so two can be lost), and the kit runs one case at a time anyway.

use std::path::PathBuf;

use knpu_conformance::{run, Expectations, Feature, Outcome, Report, Target};
use knpu_driver_abi::*;

/// The simulator's cdylib, built by cargo beside this test binary.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().expect("profile dir")] {
        let p = dir.join(libloading::library_filename("knpu_driver_sim"));
        if p.exists() {
            return p;
        }
    }
    panic!(
        "the simulator's cdylib is not beside {}; build it with `cargo build -p knpu-driver-sim`",
        exe.display()
    );
}

fn run_quietly(target: &Target, expectations: &Expectations, filter: Option<&str>) -> Report {
    let report = run(target, expectations, filter, &mut |c| {
        eprintln!("{} {}", c.outcome.name(), c.id)
    });
    eprint!("{}", report.table());
    report
}

fn assert_passes(report: &Report) {
    let failures: Vec<String> = report
        .failures()
        .iter()
        .map(|c| format!("{}: {:?}", c.id, c.outcome))
        .collect();
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    // The simulator has every capability: nothing may be skipped.
    let skipped: Vec<&str> = report
        .cases()
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .map(|c| c.id.as_str())
        .collect();
    assert!(skipped.is_empty(), "skipped on the simulator: {skipped:?}");
}

#[test]
fn the_software_npu_passes_built_in_and_as_a_plugin_and_doubles_are_judged() {
    // The only test of this process, so setting the environment before the simulator first
    // starts races with nothing.
    std::env::set_var("KNPU_SIM_DEVICES", "3");

    // The doubles first: they share the linked simulator's devices, which the built-in run
    // below loses two of.
    lying_copy_is_caught_and_named();
    capabilities_a_table_lacks_are_skipped();
    expectations_turn_failures_into_expected_ones_and_catch_stale_ones();
    a_library_without_kernels_passes_with_its_kernel_families_skipped();

    let builtin = Target::builtin().unwrap();
    assert_eq!(builtin.driver_name(), "sim");
    let report = run_quietly(&builtin, &Expectations::for_driver("sim"), None);
    assert_passes(&report);
    assert!(report.cases().len() >= 50, "the whole kit ran");
    for f in Feature::ALL {
        assert!(
            report
                .by_feature()
                .iter()
                .any(|(g, c)| *g == f && c.pass > 0),
            "feature {f} has a passing case"
        );
    }

    let plugin = Target::library(&plugin_path()).unwrap();
    assert_eq!(plugin.driver_name(), "sim");
    let report = run_quietly(&plugin, &Expectations::for_driver("sim"), None);
    assert_passes(&report);
}

/// The linked simulator's table with some functions replaced. Fault injection is left out,
/// so a double never loses one of the simulator's devices.
fn double(edit: impl FnOnce(&mut KnpuDriverApi)) -> &'static KnpuDriverApi {
    let mut t = *knpu_driver_sim::api();
    t.device_inject_fault = None;
    edit(&mut t);
    Box::leak(Box::new(t))
}

fn sim_submit() -> unsafe extern "C" fn(KnpuQueue, *const KnpuSubmitInfo) -> KnpuStatus {
    knpu_driver_sim::api().queue_submit.unwrap()
}

/// Submits like the simulator, except that a device-to-device copy of more than one byte
/// copies one byte less than asked, and still reports success.
unsafe extern "C" fn short_d2d_submit(q: KnpuQueue, info: *const KnpuSubmitInfo) -> KnpuStatus {
    if info.is_null() {
        // SAFETY: forwarding the caller's arguments unchanged.
        return unsafe { sim_submit()(q, info) };
    }
    // SAFETY: non-null; the caller passes a valid submission.
    let mut copy = unsafe { *info };
    let cmds: Vec<KnpuCommand> = if copy.command_count == 0 || copy.commands.is_null() {
        Vec::new()
    } else {
        // SAFETY: `command_count` commands at `commands` (this test's client uses the
        // header's own struct size, so the stride is size_of::<KnpuCommand>()).
        unsafe { std::slice::from_raw_parts(copy.commands, copy.command_count as usize) }
            .iter()
            .map(|c| {
                let mut c = *c;
                if c.type_ == KNPU_COMMAND_COPY_DEVICE_TO_DEVICE {
                    // SAFETY: a copy command's union member is `copy`.
                    unsafe {
                        if c.u.copy.size > 1 {
                            c.u.copy.size -= 1;
                        }
                    }
                }
                c
            })
            .collect()
    };
    if !cmds.is_empty() {
        copy.commands = cmds.as_ptr();
    }
    // SAFETY: the same submission with edited copies of its commands, which the driver
    // copies during the call.
    unsafe { sim_submit()(q, &copy) }
}

fn lying_copy_is_caught_and_named() {
    let api = double(|t| t.queue_submit = Some(short_d2d_submit));
    // SAFETY: the table lives for the process; its functions are the simulator's or wrap them.
    let target = unsafe { Target::from_table("short device-to-device copies", api) };
    let report = run_quietly(&target, &Expectations::none(), Some("abi/"));
    assert!(!report.is_success());
    let failed: Vec<&str> = report.failures().iter().map(|c| c.id.as_str()).collect();
    assert!(
        failed.contains(&"abi/copies/copies_round_trip"),
        "the lying copy is named: {failed:?}"
    );
    match &report.case("abi/copies/copies_round_trip").unwrap().outcome {
        Outcome::Fail(message) => assert!(message.contains("device to device"), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(report
        .table()
        .contains("FAIL  abi/copies/copies_round_trip"));
    // Cases that copy nothing device to device still pass.
    assert_eq!(
        report.case("abi/memory/memory_accounting").unwrap().outcome,
        Outcome::Pass
    );
}

unsafe extern "C" fn no_kernels(
    _device: KnpuDriverDevice,
    _kernel_id: u32,
    _dtype: u32,
    supported: *mut i32,
) -> KnpuStatus {
    if supported.is_null() {
        return KNPU_STATUS_INVALID_VALUE;
    }
    // SAFETY: non-null out-pointer from the caller.
    unsafe { *supported = 0 };
    KNPU_STATUS_SUCCESS
}

fn capabilities_a_table_lacks_are_skipped() {
    let api = double(|t| {
        t.device_supports_kernel = Some(no_kernels);
        t.device_set_profiling = None;
        t.device_read_profile = None;
        t.command_list_create = None;
        t.command_list_update = None;
        t.command_list_destroy = None;
    });
    // SAFETY: as above.
    let target = unsafe { Target::from_table("memory, copies and semaphores only", api) };
    let report = run_quietly(&target, &Expectations::none(), None);
    assert!(report.is_success(), "{}", report.table());
    for id in [
        "abi/faults/injected_alloc_failure",
        "abi/command-lists/malformed_lists_are_refused",
        "abi/profiling/profiling_records_commands",
    ] {
        assert!(
            matches!(report.case(id).unwrap().outcome, Outcome::Skipped(_)),
            "{id} is skipped"
        );
    }
    assert_eq!(
        report.case("abi/copies/fill_patterns").unwrap().outcome,
        Outcome::Pass
    );
}

/// Builds `tests/drivers/no_kernels.c` into a shared library over a private copy of the
/// simulator's cdylib (a separate instance, so its devices are its own).
fn no_kernels_library() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance-doubles");
    std::fs::create_dir_all(&dir).unwrap();
    let sim_copy = dir.join("libknpu_driver_sim_private.so");
    std::fs::copy(plugin_path(), &sim_copy).unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("libknpu_no_kernels.so");
    let status = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-I"])
        .arg(manifest.join("../ffi/include"))
        .arg("-o")
        .arg(&out)
        .arg(manifest.join("tests/drivers/no_kernels.c"))
        .arg("-ldl")
        .status()
        .expect("a C compiler (`cc`, or $CC) builds the no-kernels test driver");
    assert!(
        status.success(),
        "compiling tests/drivers/no_kernels.c failed"
    );
    std::env::set_var("KNPU_TEST_SIM_LIBRARY", &sim_copy);
    out
}

fn a_library_without_kernels_passes_with_its_kernel_families_skipped() {
    let target = Target::library(&no_kernels_library()).unwrap();
    assert_eq!(target.driver_name(), "no-kernels");
    let report = run_quietly(&target, &Expectations::none(), None);
    assert!(report.is_success(), "{}", report.table());
    let mut kernel_cases = 0;
    for c in report.cases() {
        if c.feature.name().starts_with("kernel-") {
            kernel_cases += 1;
            assert!(
                matches!(c.outcome, Outcome::Skipped(_)),
                "{} must be skipped, got {:?}",
                c.id,
                c.outcome
            );
        }
    }
    assert!(kernel_cases >= 4);
    for id in [
        "runtime/copies/copies_round_trip",
        "runtime/memory/allocator_statistics",
        "runtime/queues-semaphores/stream_order_and_host_callbacks",
        "abi/copies/fill_patterns",
    ] {
        assert_eq!(report.case(id).unwrap().outcome, Outcome::Pass, "{id}");
    }
    for id in [
        "runtime/faults/injected_kernel_fault_surfaces_at_synchronize",
        "abi/command-lists/malformed_lists_are_refused",
    ] {
        assert!(
            matches!(report.case(id).unwrap().outcome, Outcome::Skipped(_)),
            "{id} is skipped"
        );
    }
}

fn expectations_turn_failures_into_expected_ones_and_catch_stale_ones() {
    let api = double(|t| t.queue_submit = Some(short_d2d_submit));
    // SAFETY: as above.
    let target = unsafe { Target::from_table("short copies, declared", api) };
    let declared = Expectations::parse(
        "abi/copies/copies_round_trip fail the DMA engine drops the last byte (test double)\n\
         abi/copies/overlapping_copies_move fail same defect\n\
         abi/memory/memory_accounting fail declared, but the case passes\n\
         abi/queues-semaphores/timestamps skip the double has no clock worth testing\n",
    )
    .unwrap();
    let report = run_quietly(&target, &declared, Some("abi/"));
    let outcome = |id: &str| report.case(id).unwrap().outcome.clone();
    assert!(matches!(
        outcome("abi/copies/copies_round_trip"),
        Outcome::ExpectedFailure { .. }
    ));
    assert!(matches!(
        outcome("abi/memory/memory_accounting"),
        Outcome::UnexpectedPass(_)
    ));
    assert_eq!(
        outcome("abi/queues-semaphores/timestamps"),
        Outcome::Skipped("the double has no clock worth testing".into())
    );
    let failed: Vec<&str> = report.failures().iter().map(|c| c.id.as_str()).collect();
    assert!(
        failed.contains(&"abi/memory/memory_accounting"),
        "{failed:?}"
    );
    assert!(
        !failed.contains(&"abi/copies/copies_round_trip"),
        "{failed:?}"
    );
}
