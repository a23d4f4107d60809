//! Go duration strings (`10s`, `1m30s`, `500ms`): what containerd's config
//! (`schedule_delay = "100ms"`) and ctr's flags (`--timeout 10s`) take.
//!
//! ```
//! use std::time::Duration;
//! use crated_core::duration;
//!
//! assert_eq!(duration::parse("1m30s").unwrap(), Duration::from_secs(90));
//! assert_eq!(duration::format(Duration::from_millis(100)), "100ms");
//! ```

use std::time::Duration;

use crate::{Error, Result};

/// Parses a Go duration; `0` alone is zero. Negative durations are refused.
pub fn parse(s: &str) -> Result<Duration> {
    let err = || {
        Error::invalid_argument(format!(
            "invalid duration {s:?}: use a number with a unit, like 10s, 500ms or 1m30s"
        ))
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if number_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..number_len].parse().map_err(|_| err())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Formats like Go's `time.Duration.String`: `0s`, `1.5µs`, `100ms`,
/// `2h3m4.5s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let with_fraction = |whole: u128, fraction: u128, digits: usize, unit: &str| {
        let mut out = whole.to_string();
        if fraction > 0 {
            let text = format!("{fraction:0digits$}");
            out.push('.');
            out.push_str(text.trim_end_matches('0'));
        }
        out.push_str(unit);
        out
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return with_fraction(nanos / 1_000, nanos % 1_000, 3, "µs");
    }
    if nanos < 1_000_000_000 {
        return with_fraction(nanos / 1_000_000, nanos % 1_000_000, 6, "ms");
    }
    let secs = nanos / 1_000_000_000;
    let seconds = with_fraction(secs % 60, nanos % 1_000_000_000, 9, "s");
    let (minutes, hours) = ((secs / 60) % 60, secs / 3600);
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["10", "s", "", "-1s", "1x", "1.2.3s"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::Kind::InvalidArgument, "{bad:?}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_nanos(12)), "12ns");
        assert_eq!(format(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format(Duration::from_millis(100)), "100ms");
        assert_eq!(format(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(7_384)), "2h3m4s");
        assert_eq!(format(Duration::from_secs(3_600)), "1h0m0s");
    }

    #[test]
    fn round_trips() {
        for d in [1u64, 999, 1_000_001, 61_000_000_000, 3_601_500_000_000] {
            let d = Duration::from_nanos(d);
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
