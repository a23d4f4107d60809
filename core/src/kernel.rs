//! The running kernel's release, which decides what it can do (seccomp
//! rules, ID-mapped mounts, recursive read-only mounts).
//!
//! ```
//! use crated_core::kernel;
//!
//! assert_eq!(kernel::parse_release("5.15.0-91-generic\n"), Some((5, 15)));
//! // Linux 3.0 is older than anything crated runs on.
//! assert!(kernel::at_least(3, 0));
//! ```

use std::sync::OnceLock;

/// The running kernel's (major, minor), read once; `None` if unreadable.
pub fn release() -> Option<(u64, u64)> {
    static KERNEL: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| parse_release(&release))
    })
}

/// Whether the running kernel is `major.minor` or later; false when its
/// release cannot be read.
pub fn at_least(major: u64, minor: u64) -> bool {
    release().is_some_and(|kernel| kernel >= (major, minor))
}

/// (major, minor) of a kernel release string such as `5.15.0-91-generic`:
/// two dot-separated leading numbers, anything after the second ignored.
pub fn parse_release(release: &str) -> Option<(u64, u64)> {
    fn number(s: &str) -> Option<(u64, &str)> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        Some((s[..end].parse().ok()?, &s[end..]))
    }
    let (major, rest) = number(release.trim_start())?;
    let (minor, _) = number(rest.strip_prefix('.')?)?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_release("5.15.0-91-generic\n"), Some((5, 15)));
        assert_eq!(parse_release("3.8"), Some((3, 8)));
        assert_eq!(parse_release("3.12foobar"), Some((3, 12)));
        assert_eq!(parse_release("3.10.0-862.2.3.el7.x86_64"), Some((3, 10)));
        assert_eq!(parse_release("99.999.999-19-generic"), Some((99, 999)));
        assert_eq!(parse_release(""), None);
        assert_eq!(parse_release("5"), None);
        assert_eq!(parse_release("five.ten"), None);
    }
}
