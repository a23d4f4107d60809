//! Label validation and the label names containerd gives meaning to.

use std::collections::BTreeMap;
use std::fmt;

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

/// What an update with containerd's field paths does to an object's labels:
/// no paths or `labels` replace them all, `labels.<key>` sets or removes
/// one key; any other path is InvalidArgument.
///
/// ```
/// use std::collections::BTreeMap;
/// use crated_core::labels::LabelUpdate;
///
/// let current = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
/// let given = BTreeMap::from([("a".to_owned(), "9".to_owned())]);
/// let paths = ["labels.a".to_owned(), "labels.b".to_owned()];
/// let update = LabelUpdate::parse(&paths, "snapshot \"x\"").unwrap();
/// assert_eq!(update.apply(current, &given).unwrap(), BTreeMap::from([("a".to_owned(), "9".to_owned())]));
/// assert!(LabelUpdate::parse(&["parent".to_owned()], "snapshot \"x\"").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct LabelUpdate {
    /// Replace all labels with the given ones.
    replace_all: bool,
    /// Keys to set (from the given labels) or remove (absent or empty there).
    keys: Vec<String>,
}

impl LabelUpdate {
    /// Reads `fieldpaths`; `what` names the object in the error, e.g.
    /// `snapshot "k"`.
    pub fn parse(fieldpaths: &[String], what: impl fmt::Display) -> Result<Self> {
        let mut update = Self {
            replace_all: fieldpaths.is_empty(),
            keys: Vec::new(),
        };
        for path in fieldpaths {
            match path.strip_prefix("labels") {
                Some("") => update.replace_all = true,
                Some(rest) if rest.len() > 1 && rest.starts_with('.') => {
                    update.keys.push(rest[1..].to_owned());
                }
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "cannot update {path:?} field on {what}"
                    )))
                }
            }
        }
        Ok(update)
    }

    /// Applies the update to `current`; labels with empty values are
    /// dropped, as containerd's metadata store does, and the result is
    /// validated.
    pub fn apply(
        &self,
        current: BTreeMap<String, String>,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut labels = if self.replace_all {
            given.clone()
        } else {
            current
        };
        for key in &self.keys {
            match given.get(key) {
                Some(value) => labels.insert(key.clone(), value.clone()),
                None => labels.remove(key),
            };
        }
        labels.retain(|_, v| !v.is_empty());
        validate_all(&labels)?;
        Ok(labels)
    }
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
