//! JSON as containerd's ctr prints it with Go's `encoding/json`: four-space
//! `MarshalIndent`, HTML-safe escapes, `time.Time` as RFC 3339 with
//! nanoseconds, gogo `types.Any` as `type_url` and base64 `value`.

use serde::Serialize as _;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// `json.MarshalIndent(v, "", "    ")`.
pub fn to_string_indent(value: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising a Value into memory cannot fail.
    let _ = value.serialize(&mut serializer);
    html_escape(&String::from_utf8_lossy(&out))
}

/// Go escapes `<`, `>`, `&`, U+2028 and U+2029 in strings. They cannot occur
/// outside strings in JSON, so the whole text can be rewritten.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A gogo `types.Any`: both fields `omitempty`.
pub fn any(any: &crated_core::descriptor::Any) -> Value {
    let mut out = Map::new();
    if !any.type_url.is_empty() {
        out.insert("type_url".into(), json!(any.type_url));
    }
    if !any.value.is_empty() {
        out.insert(
            "value".into(),
            json!(crated_core::base64::encode(&any.value)),
        );
    }
    Value::Object(out)
}

/// A time as Go's `time.Time` in UTC marshals:
/// `2006-01-02T15:04:05.999999999Z`, trailing zeros of the fraction dropped.
pub fn system_time(t: std::time::SystemTime) -> String {
    timestamp(&prost_types::Timestamp::from(t))
}

fn timestamp(ts: &prost_types::Timestamp) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(ts.seconds) else {
        return "0001-01-01T00:00:00Z".to_owned();
    };
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if ts.nanos > 0 {
        let fraction = format!("{:09}", ts.nanos);
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_go() {
        let ts = |seconds, nanos| std::time::UNIX_EPOCH + std::time::Duration::new(seconds, nanos);
        assert_eq!(system_time(ts(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            system_time(ts(1_700_000_000, 120_000_000)),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            system_time(ts(1_700_000_000, 1)),
            "2023-11-14T22:13:20.000000001Z"
        );
    }

    #[test]
    fn indent_and_escapes_match_go() {
        let v = json!({"a": [], "b": {}, "c": "<&>", "d": [1]});
        assert_eq!(
            to_string_indent(&v),
            "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": \"\\u003c\\u0026\\u003e\",\n    \"d\": [\n        1\n    ]\n}"
        );
    }
}
