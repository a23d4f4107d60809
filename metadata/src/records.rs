//! Helpers shared by the record kinds: label maps under field paths, and
//! byte payloads (`Any` values) in JSON records.

use std::collections::BTreeMap;

use crate::Error;
use crated_core::descriptor::Any;
use serde::{Deserialize, Serialize};

/// Applies one `<map>.<key>` field path: the entry takes `source`'s value,
/// or is removed when `source` has none or an empty one.
pub(crate) fn set_entry(
    map: &mut BTreeMap<String, String>,
    source: &BTreeMap<String, String>,
    key: &str,
) {
    match source.get(key).filter(|v| !v.is_empty()) {
        Some(v) => map.insert(key.to_owned(), v.clone()),
        None => map.remove(key),
    };
}

/// `map` without its empty values (an empty value means "no label").
pub(crate) fn non_empty(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An `Any` as stored: the value in hex, so records stay JSON text.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct StoredAny {
    type_url: String,
    value: String,
}

impl From<&Any> for StoredAny {
    fn from(any: &Any) -> Self {
        let mut value = String::with_capacity(any.value.len() * 2);
        for b in &any.value {
            value.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            value.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        Self {
            type_url: any.type_url.clone(),
            value,
        }
    }
}

impl StoredAny {
    pub(crate) fn to_any(&self) -> Result<Any, Error> {
        let not_hex = || Error::NotHex {
            type_url: self.type_url.clone(),
        };
        let digits = self.value.as_bytes();
        if digits.len() % 2 != 0 {
            return Err(not_hex());
        }
        let mut value = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => value.push(u8::try_from(h * 16 + l).unwrap_or(0)),
                _ => return Err(not_hex()),
            }
        }
        Ok(Any {
            type_url: self.type_url.clone(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_round_trips() {
        let any = Any {
            type_url: "t".into(),
            value: (0..=255).collect(),
        };
        assert_eq!(StoredAny::from(&any).to_any().unwrap(), any);
    }

    #[test]
    fn entries_set_and_clear() {
        let mut map: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let source: BTreeMap<String, String> = [
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), String::new()),
        ]
        .into();
        set_entry(&mut map, &source, "a");
        set_entry(&mut map, &source, "b");
        assert_eq!(map, [("b".to_string(), "2".to_string())].into());
    }
}
