//! Helpers shared by the record kinds: label maps under field paths, and
//! byte payloads (`Any` values) in JSON records.

use std::collections::BTreeMap;

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
    value: Hex,
}

impl From<&Any> for StoredAny {
    fn from(any: &Any) -> Self {
        Self {
            type_url: any.type_url.clone(),
            value: Hex(any.value.clone()),
        }
    }
}

impl StoredAny {
    pub(crate) fn into_any(self) -> Any {
        Any {
            type_url: self.type_url,
            value: self.value.0,
        }
    }
}

/// Bytes written as a string of hex digits (lowercase; either case read):
/// runtime options, extensions, and the specs of records written before
/// schema 3. Decoded straight from the record's text (no copy of the string
/// first) through a table.
#[derive(Clone)]
struct Hex(Vec<u8>);

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of each byte as a hex digit; `INVALID` where it is none.
static VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        table[DIGITS[i].to_ascii_uppercase() as usize] = i as u8;
        i += 1;
    }
    table
};

const INVALID: u8 = 0xff;

fn decode_hex(digits: &[u8]) -> Option<Vec<u8>> {
    if digits.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() / 2);
    for pair in digits.chunks_exact(2) {
        let (hi, lo) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        if hi == INVALID || lo == INVALID {
            return None;
        }
        out.push(hi << 4 | lo);
    }
    Some(out)
}

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = self
            .0
            .iter()
            .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
            .map(char::from)
            .collect();
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Digits;
        impl serde::de::Visitor<'_> for Digits {
            type Value = Hex;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string of an even number of hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Hex, E> {
                decode_hex(v.as_bytes())
                    .map(Hex)
                    .ok_or_else(|| E::custom("stored value is not an even number of hex digits"))
            }
        }
        deserializer.deserialize_str(Digits)
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
        let text = serde_json::to_string(&StoredAny::from(&any)).unwrap();
        assert!(text.contains("00010203"), "{text}");
        let stored: StoredAny = serde_json::from_str(&text).unwrap();
        assert_eq!(stored.into_any(), any);
    }

    #[test]
    fn hex_reads_either_case_and_refuses_the_rest() {
        let read = |value: &str| {
            serde_json::from_str::<StoredAny>(&format!(r#"{{"type_url":"t","value":"{value}"}}"#))
                .map(StoredAny::into_any)
        };
        assert_eq!(read("0aFf").unwrap().value, [0x0a, 0xff]);
        assert_eq!(read("").unwrap().value, Vec::<u8>::new());
        for bad in ["abc", "0g", "zz", "éé"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(error.contains("hex digits"), "{bad}: {error}");
        }
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
