//! `knpu devices`: one block per device, like an smi tool.

use knpu::{Attribute, DriverSource};

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Prints every device; returns an error when no device is present.
pub fn run() -> Result<(), String> {
    let devices = knpu::devices();
    for e in knpu::driver_load_errors() {
        eprintln!("warning: {e}");
    }
    println!(
        "knpu {} — {} device(s)",
        env!("CARGO_PKG_VERSION"),
        devices.len()
    );
    println!(
        "{:<4} {:<24} {:<26} {:>24} {:>6}",
        "#", "name", "driver (ABI)", "memory used / total", "cores"
    );
    for d in &devices {
        let drv = d.driver();
        let (maj, min) = drv.abi_version();
        let source = match drv.source() {
            DriverSource::BuiltIn => "built-in".to_string(),
            DriverSource::Library(p) => p.clone(),
        };
        let (free, total) = d.memory_info().map_err(|e| e.to_string())?;
        let cores = d
            .attribute(Attribute::ComputeCores)
            .map_err(|e| e.to_string())?;
        println!(
            "{:<4} {:<24} {:<26} {:>24} {:>6}",
            d.ordinal(),
            d.name(),
            format!("{} {} ({maj}.{min})", drv.name(), drv.version()),
            format!("{} / {}", gib(total - free), gib(total)),
            cores
        );
        println!("     source: {source}");
    }
    if devices.is_empty() {
        return Err("no devices".into());
    }
    Ok(())
}
