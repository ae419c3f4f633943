//! The conformance suite against the software NPU linked into the runtime.

mod conformance;

fn device() -> knpu::Device {
    let d = knpu::devices()
        .into_iter()
        .find(|d| *d.driver().source() == knpu::DriverSource::BuiltIn)
        .expect("the built-in software NPU is always present");
    assert_eq!(d.driver().name(), "sim");
    d
}

conformance_suite!("builtin", device, xfail = []);

/// Device loss kills the device for the rest of the process, so it runs in a child process
/// with a device of its own (`KNPU_SIM_DEVICES=2`, losing device 1).
#[test]
fn device_loss_fails_pending_work() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "device_loss_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KNPU_SIM_DEVICES", "2")
        .output()
        .expect("run the device-loss child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "device-loss child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child must run the case:\n{text}"
    );
}

#[test]
#[ignore = "runs as a child of device_loss_fails_pending_work"]
fn device_loss_child() {
    let devs: Vec<_> = knpu::devices()
        .into_iter()
        .filter(|d| *d.driver().source() == knpu::DriverSource::BuiltIn)
        .collect();
    assert_eq!(devs.len(), 2, "KNPU_SIM_DEVICES=2 gives two devices");
    conformance::device_loss_fails_pending_work(&devs[1]);
    // The other device is untouched.
    let s = knpu::Stream::new(&devs[0]).unwrap();
    assert_eq!(
        s.from_slice(&[1u8, 2, 3]).unwrap().to_vec().unwrap(),
        vec![1, 2, 3]
    );
}
