//! Label validation and the label names containerd gives meaning to.

use crate::{Error, Result};

/// Largest key + value size, in bytes, containerd accepts for one label.
pub const MAX_SIZE: usize = 4096;

/// Checks that one label's key and value together fit in [`MAX_SIZE`] bytes,
/// and that the key is not empty.
///
/// ```
/// use crated_core::labels::validate;
///
/// assert!(validate("mylabel", "bar").is_ok());
/// assert!(validate("k", &"v".repeat(5000)).is_err());
/// ```
pub fn validate(key: &str, value: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument("label key must not be empty"));
    }
    if key.len() + value.len() > MAX_SIZE {
        // Like containerd, name only the start of the key: the whole key may
        // be the oversized part.
        let shown: String = key.chars().take(10).collect();
        return Err(Error::invalid_argument(format!(
            "label key and value greater than maximum size ({MAX_SIZE} bytes), key: {shown}"
        )));
    }
    Ok(())
}

/// Validates every label of a map-like collection.
pub fn validate_all<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    labels.into_iter().try_for_each(|(k, v)| validate(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_inclusive() {
        assert!(validate("k", &"v".repeat(MAX_SIZE - 1)).is_ok());
        let err = validate("key-that-is-long", &"v".repeat(MAX_SIZE)).unwrap_err();
        assert_eq!(err.kind(), crate::Kind::InvalidArgument);
        assert!(err.to_string().ends_with("key: key-that-i"), "{err}");
    }

    #[test]
    fn empty_key_rejected() {
        assert!(validate("", "x").is_err());
    }
}
