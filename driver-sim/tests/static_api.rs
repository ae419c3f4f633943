//! Facts of the software NPU that the driver ABI leaves to each driver: its names, its
//! attributes, which dtypes its elementwise kernel takes, its timing model and the wording of
//! its fault messages. (What every driver must do is checked by the conformance kit,
//! `knpu-conformance`, which runs on this driver built in and as a plugin.)

mod common;

use common::{call, d2d, d2h_raw, fill, peer, KernelQueue, Sim};
use knpu_driver_abi::*;

fn sim() -> Sim {
    common::linked()
}

#[test]
fn names_attributes_and_kernel_dtypes() {
    let sim = sim();
    // SAFETY: static NUL-terminated strings.
    let name = unsafe { std::ffi::CStr::from_ptr(sim.table().driver_name) };
    assert_eq!(name.to_str().unwrap(), "sim");
    let d0 = sim.device(0);
    let mut buf = [0 as std::ffi::c_char; 64];
    assert_eq!(
        call!(sim, device_get_name(d0, buf.as_mut_ptr(), buf.len())),
        KNPU_STATUS_SUCCESS
    );
    // SAFETY: NUL-terminated by the driver.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    assert_eq!(name.to_str().unwrap(), "knpu-sim NPU 0");
    assert_eq!(sim.attribute(d0, KNPU_ATTR_ALLOCATION_ALIGNMENT), 256);
    assert_eq!(sim.attribute(d0, KNPU_ATTR_FAULT_INJECTION), 1);
    assert_eq!(sim.attribute(d0, KNPU_ATTR_PEER_COPY), 1);
    common::assert_kernel_dtypes(
        &sim,
        &[(
            KNPU_KERNEL_ELEMENTWISE,
            &[KNPU_DTYPE_F32, KNPU_DTYPE_F16, KNPU_DTYPE_BF16],
            &[KNPU_DTYPE_I8],
        )],
    );
}

#[test]
fn fault_messages_name_the_command_and_its_kind() {
    let k = KernelQueue::new();
    let (sim, d, q) = (&k.sim, k.dev, k.queue);
    let a = sim.alloc(d, 256);
    let mut host = vec![0u8; 256];
    let fault = |commands: &[KnpuCommand]| {
        let (status, msg) = sim.run_once(d, q, commands);
        assert_eq!(status, KNPU_STATUS_ILLEGAL_ADDRESS, "{msg}");
        msg
    };
    let msg = fault(&[d2h_raw(host.as_mut_ptr(), a + 192, 65)]);
    assert!(msg.contains("command 0 (copy device to host)"), "{msg}");
    let msg = fault(&[d2h_raw(host.as_mut_ptr(), a, 16), d2d(a + (1 << 30), a, 16)]);
    assert!(msg.contains("command 1 (copy device to device)"), "{msg}");
    // A peer copy's fault names the source device.
    let msg = fault(&[peer(a, d, a + (1 << 30), 16)]);
    assert!(msg.contains("knpu-sim NPU 0"), "{msg}");
    sim.free(d, a);
    sim.destroy_queue(q);
}

#[test]
fn profiling_models_fills_at_the_memory_bandwidth() {
    let k = KernelQueue::new();
    let (sim, d, q) = (&k.sim, k.dev, k.queue);
    let s = sim.semaphore(d, 0);
    let size = 3 << 20;
    let a = sim.alloc(d, size);
    let (status, records) = sim.run_profiled(d, q, s, &[fill(a, size, 0, 4)]);
    assert_eq!(status, KNPU_STATUS_SUCCESS);
    let fill = records
        .iter()
        .find(|r| r.type_ == KNPU_COMMAND_FILL && r.bytes == size)
        .expect("the fill was recorded");
    let bw = sim.attribute(d, KNPU_ATTR_MEMORY_BANDWIDTH_MBPS) as u64;
    assert_eq!(fill.modeled_ns, (size * 1000).div_ceil(bw));
    sim.free(d, a);
    sim.destroy_semaphore(s);
    sim.destroy_queue(q);
}
