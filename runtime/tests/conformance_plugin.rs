//! The conformance suite against the software NPU built as a shared library and loaded
//! through `KNPU_DRIVER_PATH`, exactly as a vendor driver is.

mod conformance;

use std::path::PathBuf;
use std::sync::Once;

/// The simulator's cdylib, built by cargo beside this test binary.
fn plugin_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    for dir in [deps, deps.parent().expect("profile dir")] {
        let p = dir.join("libknpu_driver_sim.so");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "libknpu_driver_sim.so not found beside {}; build it with `cargo build -p knpu-driver-sim`",
        exe.display()
    );
}

fn device() -> knpu::Device {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Set before the runtime's first use, which reads it once; every test comes here first.
        std::env::set_var("KNPU_DRIVER_PATH", plugin_path());
    });
    let errors = knpu::driver_load_errors();
    assert!(errors.is_empty(), "driver load errors: {errors:?}");
    knpu::devices()
        .into_iter()
        .find(|d| matches!(d.driver().source(), knpu::DriverSource::Library(_)))
        .expect("the plugin simulator's device")
}

conformance_suite!("plugin", device, xfail = []);

#[test]
fn plugin_device_loss_fails_pending_work() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "plugin_device_loss_child",
            "--nocapture",
            "--test-threads=1",
        ])
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
#[ignore = "runs as a child of plugin_device_loss_fails_pending_work"]
fn plugin_device_loss_child() {
    let d = device();
    conformance::device_loss_fails_pending_work(&d);
    // The built-in simulator is a separate driver instance and is untouched.
    let builtin = knpu::device(0).unwrap();
    assert_eq!(*builtin.driver().source(), knpu::DriverSource::BuiltIn);
    let s = knpu::Stream::new(&builtin).unwrap();
    assert_eq!(
        s.from_slice(&[4u8, 5]).unwrap().to_vec().unwrap(),
        vec![4, 5]
    );
}
