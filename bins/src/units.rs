//! Human units for what the user's commands print: sizes in binary units (KiB, MiB, GiB, as
//! memory and files are counted), rates in decimal ones (kB/s, MB/s, as links are rated and as
//! SciStream 1.2's `--rate` counts: 20000 kB/s is 20 MB/s). `--json` prints the raw numbers.

/// A byte count: `512 B`, `1.5 KiB`, `3.0 GiB` (one decimal from KiB up).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Rounded to one decimal, 1023.96 KiB would print as 1024.0 KiB: move up first.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A rate in bytes per second: `0 B/s`, `850 B/s`, `12.3 kB/s`, `1.2 GB/s`.
pub fn bytes_per_sec(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB/s", "MB/s", "GB/s", "TB/s", "PB/s", "EB/s"];
    if n < 1000 {
        return format!("{n} B/s");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A session's rate parameter (SciStream 1.2's unit, kB/s; 0 unlimited): `10.0 MB/s`,
/// `unlimited`.
pub fn session_rate(kb_per_sec: u32) -> String {
    if kb_per_sec == 0 { "unlimited".into() } else { bytes_per_sec(u64::from(kb_per_sec) * 1000) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
        assert_eq!(bytes((1 << 20) - 1), "1.0 MiB", "rounds up into the next unit, never 1024.0 KiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn rates_are_decimal() {
        assert_eq!(bytes_per_sec(0), "0 B/s");
        assert_eq!(bytes_per_sec(999), "999 B/s");
        assert_eq!(bytes_per_sec(12_345), "12.3 kB/s");
        assert_eq!(bytes_per_sec(999_999), "1.0 MB/s");
        assert_eq!(bytes_per_sec(1_240_000_000), "1.2 GB/s");
    }

    #[test]
    fn a_session_rate_of_zero_is_unlimited() {
        assert_eq!(session_rate(0), "unlimited");
        assert_eq!(session_rate(10_000), "10.0 MB/s");
        assert_eq!(session_rate(20_000), "20.0 MB/s");
        assert_eq!(session_rate(500), "500.0 kB/s");
    }
}
