//! Lists every device with its driver, memory and capabilities.
//!
//! Run: `cargo run -p knpu --example 01-devices`

fn main() -> knpu::Result<()> {
    for dev in knpu::devices() {
        let (free, total) = dev.memory_info()?;
        let (major, minor) = dev.driver().abi_version();
        println!(
            "device {}: {} — driver `{}` {} (ABI {major}.{minor}), {} MiB free of {} MiB, {} cores",
            dev.ordinal(),
            dev.name(),
            dev.driver().name(),
            dev.driver().version(),
            free >> 20,
            total >> 20,
            dev.attribute(knpu::Attribute::ComputeCores)?,
        );
    }
    for e in knpu::driver_load_errors() {
        eprintln!("warning: {e}");
    }
    Ok(())
}
