//! docker/go-units formatting, as containerd's ctr prints sizes and ages.

use std::time::Duration;

/// `units.HumanSize`: decimal units, 4 significant digits (`104.9MB`).
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g4(value), UNITS[unit])
}

/// containerd's `progress.Bytes` (`ctr images ls` sizes): binary units with
/// one decimal, `units.CustomSize("%02.1f %s", size, 1024, …)` — `39.6 KiB`.
pub fn bytes_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    // Rust, like Go, rounds exact ties to even: 1.25 → "1.2".
    format!("{value:.1} {}", UNITS[unit])
}

/// Go's `%.4g` for values below 1000 (never in exponent form there).
fn go_g4(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let digits_before = (value.abs().log10().floor() as i32 + 1).max(1);
    let decimals = usize::try_from((4 - digits_before).max(0)).unwrap_or(0);
    let mut text = format!("{value:.decimals$}");
    // Rounding can carry into a new digit (999.95 -> 1000.0): recount.
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

/// `units.HumanDuration`: `Less than a second`, `About a minute`, `3 days`, …
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = ((d.as_secs_f64() / 3600.0) + 0.5) as u64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_size_matches_containerd() {
        assert_eq!(bytes_size(0), "0.0 B");
        assert_eq!(bytes_size(1023), "1023.0 B");
        assert_eq!(bytes_size(1234), "1.2 KiB");
        assert_eq!(bytes_size(1280), "1.2 KiB");
        assert_eq!(bytes_size(40_600), "39.6 KiB");
        assert_eq!(bytes_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(100), "100B");
        assert_eq!(human_size(1024), "1.024kB");
        assert_eq!(human_size(104_857_600), "104.9MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(999_950), "1000kB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(59)), "59 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }
}
