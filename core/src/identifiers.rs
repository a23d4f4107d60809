//! Identifier validation with containerd's rules.
//!
//! Identifiers name namespaces, containers, snapshots keys' owners, leases and
//! so on. They must be usable as path components and in mount options, hence
//! the narrow alphabet: `[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*`, at most 76
//! characters. The grammar is simple enough that a hand-written check beats a
//! regex and cannot be fooled by anchoring mistakes.

use crate::{Error, Result};

/// Longest identifier containerd accepts.
pub const MAX_LENGTH: usize = 76;

/// Checks `s` against containerd's identifier grammar.
///
/// ```
/// use crated_core::identifiers::validate;
///
/// assert!(validate("foo.bar-1_x").is_ok());
/// for bad in ["", "Foo/../x", "-a", "a..b", "a-", &"a".repeat(77)] {
///     assert!(validate(bad).is_err(), "{bad:?} must be rejected");
/// }
/// ```
pub fn validate(s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid_argument("identifier must not be empty"));
    }
    if s.len() > MAX_LENGTH {
        return Err(Error::invalid_argument(format!(
            "identifier {s:?} greater than maximum length ({MAX_LENGTH} characters)"
        )));
    }
    if !matches_grammar(s) {
        return Err(Error::invalid_argument(format!(
            "identifier {s:?} must match [A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*"
        )));
    }
    Ok(())
}

fn matches_grammar(s: &str) -> bool {
    // Alternating runs: alphanumerics, then exactly one separator, then
    // alphanumerics again. A separator may not start, end, or repeat.
    let mut prev_alnum = false;
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            prev_alnum = true;
        } else if matches!(b, b'.' | b'_' | b'-') && prev_alnum {
            prev_alnum = false;
        } else {
            return false;
        }
    }
    prev_alnum
}

/// A part for names that must not meet another's — ingest refs, scratch
/// directories, temporary files: nanoseconds, this process's id and a
/// counter (containerd's `uniquePart` has nanoseconds and randomness).
///
/// ```
/// let (a, b) = (crated_core::identifiers::unique_part(), crated_core::identifiers::unique_part());
/// assert_ne!(a, b);
/// ```
pub fn unique_part() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!(
        "{nanos}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_containerd_examples() {
        for ok in [
            "default",
            "k8s.io",
            "moby",
            "a",
            "A9",
            "foo_bar-baz.qux",
            &"x".repeat(76),
        ] {
            assert!(validate(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn rejects_with_clear_messages() {
        let e = validate("").unwrap_err();
        assert_eq!(e.kind(), crate::Kind::InvalidArgument);
        assert!(e.to_string().contains("must not be empty"));
        let e = validate(&"a".repeat(80)).unwrap_err();
        assert!(e
            .to_string()
            .contains("greater than maximum length (76 characters)"));
        let e = validate("Foo/../x").unwrap_err();
        assert!(e.to_string().contains("\"Foo/../x\" must match"));
        for bad in ["a/b", "a b", ".a", "a.", "a.-b", "ä", "a\0"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_containerd_regex(s in "[A-Za-z0-9._/-]{0,80}") {
            let re = regex::Regex::new(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$").unwrap();
            let expected = !s.is_empty() && s.len() <= MAX_LENGTH && re.is_match(&s);
            prop_assert_eq!(validate(&s).is_ok(), expected);
        }
    }
}
