//! Quoted strings of the filter language: Go string-literal syntax, with `/`
//! and `|` as extra delimiters so that regular expressions can be quoted
//! without escaping their `"`s.

use std::fmt::Write as _;

/// Decodes a quoted token, delimiters included, as containerd's
/// `strconv.Unquote` variant does.
///
/// `\x` and octal escapes produce raw bytes, as in Go; the result must still
/// be UTF-8, because field values in crated are Rust strings (and in
/// containerd, protobuf strings).
pub(super) fn unquote(quoted: &str) -> Result<String, &'static str> {
    let mut chars = quoted.chars();
    let (Some(quote), Some(last)) = (chars.next(), chars.next_back()) else {
        return Err("quoted string too short");
    };
    if quote != last || !matches!(quote, '"' | '/' | '|') {
        return Err("mismatched quotes");
    }
    let mut out = Vec::with_capacity(quoted.len());
    let mut rest = chars.as_str();
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\n' => return Err("newline in quoted string"),
            c if c == quote => return Err("unescaped quote in quoted string"),
            '\\' => rest = unescape(rest, quote, &mut out)?,
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    String::from_utf8(out).map_err(|_| "escapes do not form valid utf-8")
}

/// Decodes the escape after a backslash into `out`; returns the input after it.
fn unescape<'a>(rest: &'a str, quote: char, out: &mut Vec<u8>) -> Result<&'a str, &'static str> {
    let mut chars = rest.chars();
    let c = chars.next().ok_or("backslash at end of quoted string")?;
    let rest = chars.as_str();
    let simple = match c {
        'a' => Some(b'\x07'),
        'b' => Some(b'\x08'),
        'f' => Some(b'\x0c'),
        'n' => Some(b'\n'),
        'r' => Some(b'\r'),
        't' => Some(b'\t'),
        'v' => Some(b'\x0b'),
        '\\' => Some(b'\\'),
        c if c == quote => Some(c as u8),
        _ => None,
    };
    if let Some(byte) = simple {
        out.push(byte);
        return Ok(rest);
    }
    let (radix, len) = match c {
        '0'..='7' => (8, 2),
        'x' => (16, 2),
        'u' => (16, 4),
        'U' => (16, 8),
        _ => return Err("invalid escape sequence"),
    };
    let digits = rest.get(..len).ok_or("truncated numeric escape")?;
    let rest = &rest[len..];
    // The escape character itself is the first octal digit.
    let digits = if radix == 8 {
        format!("{c}{digits}")
    } else {
        digits.to_owned()
    };
    // Checked first because `from_str_radix` would also take a sign.
    if !digits.chars().all(|d| d.is_digit(radix)) {
        return Err("invalid numeric escape");
    }
    let value = u32::from_str_radix(&digits, radix).map_err(|_| "invalid numeric escape")?;
    match c {
        '0'..='7' | 'x' => {
            // A byte, possibly half of a UTF-8 sequence.
            out.push(u8::try_from(value).map_err(|_| "octal escape value > 255")?);
        }
        _ => {
            if value > 0x10_FFFF {
                return Err("unicode escape beyond U+10FFFF");
            }
            // Go encodes surrogate halves as U+FFFD rather than failing.
            let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    Ok(rest)
}

/// Quotes `s` with `"` so that [`unquote`] gives it back, escaping only what
/// the scanner would otherwise stop at or misread.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_go_escapes() {
        assert_eq!(unquote(r#""plain""#).unwrap(), "plain");
        assert_eq!(unquote(r#""a\n\t\\\"b""#).unwrap(), "a\n\t\\\"b");
        assert_eq!(unquote(r#""\a\b\f\r\v""#).unwrap(), "\x07\x08\x0c\r\x0b");
        assert_eq!(unquote(r#""\x41\101\u00e9\U0001F600""#).unwrap(), "AAé😀");
        assert_eq!(unquote(r#""\xc3\xa9""#).unwrap(), "é");
        assert_eq!(unquote(r#""\ud800""#).unwrap(), "\u{fffd}");
        assert_eq!(unquote(r"/foo\/bar/").unwrap(), "foo/bar");
        assert_eq!(unquote(r"|a\|b|").unwrap(), "a|b");
        assert_eq!(unquote(r#"/[abc]{0,1}"\//"#).unwrap(), r#"[abc]{0,1}"/"#);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            r#""\777""#,
            r#""\U00110000""#,
            r#""\'""#,
            r#""\/""#,
            r#"/\"/"#,
            r#""\xff""#,
            "\"a\nb\"",
            r#""a"b""#,
            "\"",
            r#""\x4""#,
        ] {
            assert!(unquote(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn quote_round_trips(s in any::<String>()) {
            prop_assert_eq!(unquote(&quote(&s)).unwrap(), s);
        }
    }
}
