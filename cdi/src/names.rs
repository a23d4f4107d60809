//! CDI names: a spec's kind `vendor/class` (the vendor a domain-like name),
//! a device's `name`, and the fully qualified `vendor/class=name` that
//! runtimes are asked for; and the `cdi.k8s.io/…` annotations older device
//! plugins request devices with.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The prefix of annotation keys whose values list CDI devices.
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// A fully qualified device name split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifiedName<'a> {
    /// `nvidia.com` of `nvidia.com/gpu=0`.
    pub vendor: &'a str,
    /// `gpu`.
    pub class: &'a str,
    /// `0`.
    pub name: &'a str,
}

/// Splits and checks `vendor/class=name`.
pub fn parse_qualified(device: &str) -> Result<QualifiedName<'_>> {
    let bad = |reason: &str| Error::InvalidName {
        name: device.to_owned(),
        reason: reason.to_owned(),
    };
    let (kind, name) = device
        .split_once('=')
        .ok_or_else(|| bad("not vendor/class=name: no \"=\""))?;
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| bad("not vendor/class=name: no \"/\" before \"=\""))?;
    validate_kind_part("vendor", vendor).map_err(|r| bad(&r))?;
    validate_kind_part("class", class).map_err(|r| bad(&r))?;
    validate_device_name(name).map_err(|r| bad(&r))?;
    Ok(QualifiedName {
        vendor,
        class,
        name,
    })
}

/// A spec's `kind` split into vendor and class, each checked.
pub fn parse_kind(kind: &str) -> std::result::Result<(&str, &str), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not vendor/class"))?;
    validate_kind_part("vendor", vendor)?;
    validate_kind_part("class", class)?;
    Ok((vendor, class))
}

/// A vendor or class: a letter first, a letter or digit last, letters,
/// digits, `_`, `-` and `.` between.
fn validate_kind_part(what: &str, part: &str) -> std::result::Result<(), String> {
    let bytes = part.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(format!("empty {what}"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{what} {part:?} must start with a letter"));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!("{what} {part:?} must end with a letter or digit"));
    }
    if let Some(c) = bytes
        .iter()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')))
    {
        return Err(format!(
            "{what} {part:?} holds {:?}, which is not allowed",
            char::from(*c)
        ));
    }
    Ok(())
}

/// A device's own name: a letter or digit first and last, letters,
/// digits, `_`, `-`, `.` and `:` between.
pub fn validate_device_name(name: &str) -> std::result::Result<(), String> {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("empty device name".to_owned());
    };
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "device name {name:?} must start and end with a letter or digit"
        ));
    }
    if let Some(c) = bytes
        .iter()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':')))
    {
        return Err(format!(
            "device name {name:?} holds {:?}, which is not allowed",
            char::from(*c)
        ));
    }
    Ok(())
}

/// The devices `cdi.k8s.io/<anything>` annotations ask for (each value a
/// comma-separated list of qualified names), in key order so the result
/// does not depend on the map's.
pub fn devices_from_annotations(annotations: &HashMap<String, String>) -> Result<Vec<String>> {
    let mut keys: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    let mut devices = Vec::new();
    for key in keys {
        for device in annotations[key].split(',') {
            parse_qualified(device).map_err(|e| match e {
                Error::InvalidName { name, reason } => Error::InvalidName {
                    name,
                    reason: format!("{reason} (in annotation {key:?})"),
                },
                other => other,
            })?;
            devices.push(device.to_owned());
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_and_are_checked() {
        let q = parse_qualified("nvidia.com/gpu=0").unwrap();
        assert_eq!((q.vendor, q.class, q.name), ("nvidia.com", "gpu", "0"));
        let q = parse_qualified("vendor.example/class_1=dev:a.b-c").unwrap();
        assert_eq!(q.name, "dev:a.b-c");
        for (bad, says) in [
            ("gpu0", "no \"=\""),
            ("gpu=0", "no \"/\""),
            ("/class=0", "empty vendor"),
            ("1vendor/class=0", "must start with a letter"),
            ("vendor/class-=0", "must end with a letter or digit"),
            ("vendor/cl@ss=0", "'@'"),
            ("vendor/class=", "empty device name"),
            ("vendor/class=-x", "must start and end"),
            ("vendor/class=a/b", "'/'"),
        ] {
            let err = parse_qualified(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn annotations_list_devices_in_key_order() {
        let notes: HashMap<String, String> = [
            ("cdi.k8s.io/b".to_owned(), "v.com/c=2".to_owned()),
            ("cdi.k8s.io/a".to_owned(), "v.com/c=0,v.com/c=1".to_owned()),
            ("other".to_owned(), "not a device".to_owned()),
        ]
        .into();
        assert_eq!(
            devices_from_annotations(&notes).unwrap(),
            ["v.com/c=0", "v.com/c=1", "v.com/c=2"]
        );
        let bad: HashMap<String, String> = [("cdi.k8s.io/x".to_owned(), "nope".to_owned())].into();
        let err = devices_from_annotations(&bad).unwrap_err().to_string();
        assert!(
            err.contains("cdi.k8s.io/x") && err.contains("nope"),
            "{err}"
        );
    }
}
