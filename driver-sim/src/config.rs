//! The software NPU's configuration: device count, memory size, core count and the timing
//! profile, read once from `KNPU_SIM_*` environment variables when the driver starts.
//!
//! Parsing is kept apart from the environment ([`Config::from_lookup`]) so it can be tested
//! without touching process-global state. An unparsable value never aborts the driver: it
//! falls back to the default and the reason is printed once on stderr.

/// The modeled peak rates and bandwidths of one device (the "NPU profile").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingProfile {
    /// Modeled peak f32 rate, MFLOP/s.
    pub peak_f32_mflops: u64,
    /// Modeled peak f16/bf16 rate, MFLOP/s.
    pub peak_f16_mflops: u64,
    /// Modeled peak int8 rate, MOP/s.
    pub peak_int8_mops: u64,
    /// Modeled device memory bandwidth, MB/s (10^6 bytes per second).
    pub memory_bandwidth_mbps: u64,
    /// Modeled host<->device (DMA) bandwidth, MB/s.
    pub dma_bandwidth_mbps: u64,
}

impl Default for TimingProfile {
    fn default() -> Self {
        TimingProfile {
            peak_f32_mflops: 100_000,
            peak_f16_mflops: 200_000,
            peak_int8_mops: 400_000,
            memory_bandwidth_mbps: 100_000,
            dma_bandwidth_mbps: 16_000,
        }
    }
}

/// Most devices one driver instance exposes.
pub const MAX_DEVICES: u32 = 64;

/// The driver's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of devices (`KNPU_SIM_DEVICES`, default 1, at most [`MAX_DEVICES`]).
    pub devices: u32,
    /// Bytes of memory per device (`KNPU_SIM_MEMORY`, suffixes K/M/G/T, default 4G).
    pub memory_bytes: u64,
    /// Compute pool threads shared by all devices (`KNPU_SIM_CORES`, default: host cores).
    pub cores: usize,
    /// Fail the N-th allocation on every device (`KNPU_SIM_FAIL_ALLOC`, testing).
    pub fail_alloc: Option<u64>,
    /// The timing model (`KNPU_SIM_PEAK_F32_MFLOPS`, `KNPU_SIM_PEAK_F16_MFLOPS`,
    /// `KNPU_SIM_PEAK_INT8_MOPS`, `KNPU_SIM_MEMORY_BANDWIDTH_MBPS`,
    /// `KNPU_SIM_DMA_BANDWIDTH_MBPS`).
    pub timing: TimingProfile,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            devices: 1,
            memory_bytes: 4 << 30,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            fail_alloc: None,
            timing: TimingProfile::default(),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment, printing any rejected value.
    pub fn from_env() -> Config {
        let (config, warnings) = Config::from_lookup(|name| std::env::var(name).ok());
        for w in warnings {
            eprintln!("knpu-sim: {w}");
        }
        config
    }

    /// Builds a configuration from a variable lookup; returns it with a warning for every
    /// value that was rejected (and replaced by its default).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        let mut take = |name: &str, parse: &dyn Fn(&str) -> Result<u64, String>| -> Option<u64> {
            let raw = lookup(name)?;
            match parse(&raw) {
                Ok(v) => Some(v),
                Err(e) => {
                    warnings.push(format!("ignoring {name}={raw:?}: {e}"));
                    None
                }
            }
        };
        if let Some(v) = take("KNPU_SIM_DEVICES", &|s| parse_devices(s).map(u64::from)) {
            c.devices = v as u32;
        }
        if let Some(v) = take("KNPU_SIM_MEMORY", &parse_size) {
            c.memory_bytes = v;
        }
        if let Some(v) = take("KNPU_SIM_CORES", &|s| parse_positive(s, 1024)) {
            c.cores = v as usize;
        }
        c.fail_alloc = take("KNPU_SIM_FAIL_ALLOC", &|s| parse_positive(s, u64::MAX));
        let t = &mut c.timing;
        let rates: [(&str, &mut u64); 5] = [
            ("KNPU_SIM_PEAK_F32_MFLOPS", &mut t.peak_f32_mflops),
            ("KNPU_SIM_PEAK_F16_MFLOPS", &mut t.peak_f16_mflops),
            ("KNPU_SIM_PEAK_INT8_MOPS", &mut t.peak_int8_mops),
            (
                "KNPU_SIM_MEMORY_BANDWIDTH_MBPS",
                &mut t.memory_bandwidth_mbps,
            ),
            ("KNPU_SIM_DMA_BANDWIDTH_MBPS", &mut t.dma_bandwidth_mbps),
        ];
        for (name, field) in rates {
            if let Some(v) = take(name, &|s| parse_positive(s, i64::MAX as u64)) {
                *field = v;
            }
        }
        (c, warnings)
    }
}

/// Parses a device count: an integer from 0 to [`MAX_DEVICES`].
pub fn parse_devices(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a device count"))?;
    if n > MAX_DEVICES {
        return Err(format!(
            "{n} devices is more than the maximum of {MAX_DEVICES}"
        ));
    }
    Ok(n)
}

/// Parses a byte size: an integer with an optional binary suffix K, M, G or T (also KB,
/// KiB, ...), case-insensitive. The size must be at least 1 byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        other => return Err(format!("unknown size suffix {other:?} in {s:?}")),
    };
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} overflows 64 bits"))?;
    if bytes == 0 {
        return Err("a size of 0 bytes".to_string());
    }
    Ok(bytes)
}

/// Parses an integer in `1..=max`.
fn parse_positive(s: &str, max: u64) -> Result<u64, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a positive integer"))?;
    if n == 0 || n > max {
        return Err(format!("{n} is outside 1..={max}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size(" 64KiB "), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn devices() {
        assert_eq!(parse_devices("3"), Ok(3));
        assert_eq!(parse_devices("0"), Ok(0));
        assert!(parse_devices("65").is_err());
        assert!(parse_devices("-1").is_err());
        assert!(parse_devices("two").is_err());
    }

    #[test]
    fn lookup_applies_values_and_reports_rejects() {
        let (c, w) = Config::from_lookup(|name| match name {
            "KNPU_SIM_DEVICES" => Some("2".into()),
            "KNPU_SIM_MEMORY" => Some("1M".into()),
            "KNPU_SIM_CORES" => Some("zero".into()),
            "KNPU_SIM_DMA_BANDWIDTH_MBPS" => Some("8000".into()),
            _ => None,
        });
        assert_eq!(c.devices, 2);
        assert_eq!(c.memory_bytes, 1 << 20);
        assert_eq!(c.cores, Config::default().cores);
        assert_eq!(c.timing.dma_bandwidth_mbps, 8000);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("KNPU_SIM_CORES"), "{w:?}");
    }
}
