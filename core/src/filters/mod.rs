//! containerd's filter language, used by every `List` call to select
//! records: `name==foo,labels."com.example/x"~=^y`.
//!
//! A filter is a comma-separated list of selectors, all of which must match.
//! A selector is a field path, optionally followed by an operator and a value:
//!
//! - `labels.foo` — the field is present;
//! - `name==foo` / `name!=foo` — equal / not equal (an absent field counts
//!   as empty for `!=`);
//! - `name~=^f` — the value matches a regular expression (an absent field is
//!   matched as empty).
//!
//! Field path components and values may be quoted with Go string syntax
//! (`labels."a.b/c"==" x, y"`); a `~=` pattern may also be quoted `/…/` or
//! `|…|`. A bare value runs to the next `,` or whitespace. Several filter
//! strings, as a request's `filters` field carries them, are OR-ed by
//! [`parse_all`]; a single string has no OR operator (`|` is a quote
//! character, as in containerd).
//!
//! Differences from containerd, all rejecting input it accepts but could not
//! usefully match: a bad regular expression fails the parse (containerd logs
//! and matches nothing), and escapes that decode to invalid UTF-8 are an
//! error (they could never equal a protobuf string). Patterns use the
//! `regex` crate's syntax, which is RE2's as in Go, bar rarities like `\Q…\E`.
//!
//! ```
//! use crated_core::filters::{self, adapt_fn};
//!
//! let filter = filters::parse(r#"name==redis,labels."com.example/tier"~=^back"#).unwrap();
//! let record = adapt_fn(|path| match path {
//!     ["name"] => Some("redis".to_owned()),
//!     ["labels", "com.example/tier"] => Some("backend".to_owned()),
//!     _ => None,
//! });
//! assert!(filter.matches(&record));
//! ```

mod parser;
mod quote;
mod scanner;

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::{Error, Result};

/// Maps field paths to an object's values, for matching.
///
/// Return `Some(value)` when the field is present, even if empty, and `None`
/// when it is absent. Paths follow protobuf field names: `["name"]`,
/// `["labels", "com.example/x"]`.
pub trait Adaptor {
    /// The value at `path`, if the object has that field.
    fn field(&self, path: &[&str]) -> Option<String>;
}

impl<A: Adaptor + ?Sized> Adaptor for &A {
    fn field(&self, path: &[&str]) -> Option<String> {
        (**self).field(path)
    }
}

/// An [`Adaptor`] made from a closure; see [`adapt_fn`].
#[derive(Debug, Clone, Copy)]
pub struct AdaptorFn<F>(F);

impl<F: Fn(&[&str]) -> Option<String>> Adaptor for AdaptorFn<F> {
    fn field(&self, path: &[&str]) -> Option<String> {
        (self.0)(path)
    }
}

/// Wraps a closure as an [`Adaptor`].
pub fn adapt_fn<F: Fn(&[&str]) -> Option<String>>(f: F) -> AdaptorFn<F> {
    AdaptorFn(f)
}

/// The value of map field `map` (labels, annotations) for the rest of a
/// field path: containerd joins it with dots, so `labels.a.b` reaches key
/// `a.b` as `labels."a.b"` does.
///
/// ```
/// use std::collections::BTreeMap;
/// use crated_core::filters::map_value;
///
/// let labels: BTreeMap<String, String> = [("a.b".to_owned(), "x".to_owned())].into();
/// assert_eq!(map_value(&labels, &["a", "b"]).as_deref(), Some("x"));
/// assert_eq!(map_value(&labels, &["a"]), None);
/// ```
pub fn map_value(map: &BTreeMap<String, String>, key: &[&str]) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    map.get(&key.join(".")).cloned()
}

/// A parsed filter: matches when any of its alternatives matches, and an
/// alternative matches when all its selectors do.
#[derive(Debug, Clone)]
pub struct Filter {
    alternatives: Vec<Vec<Selector>>,
}

impl Filter {
    /// The filter that matches everything (what an empty filter string means).
    pub fn always() -> Self {
        Self {
            alternatives: vec![Vec::new()],
        }
    }

    /// Whether the object behind `adaptor` passes the filter.
    pub fn matches(&self, adaptor: &(impl Adaptor + ?Sized)) -> bool {
        self.alternatives
            .iter()
            .any(|all| all.iter().all(|selector| selector.matches(adaptor)))
    }
}

impl Default for Filter {
    fn default() -> Self {
        Self::always()
    }
}

/// Parses one filter string; the empty string matches everything.
///
/// Errors are InvalidArgument and give the byte position and the input:
/// `parse error at position 8 in "name==a,,": expected field or quoted`.
///
/// ```
/// use crated_core::{filters, Kind};
///
/// assert!(filters::parse(r#"labels."com.example/x"==y,name~=^b"#).is_ok());
/// let err = filters::parse("name==a,,").unwrap_err();
/// assert_eq!(err.kind(), Kind::InvalidArgument);
/// assert_eq!(
///     err.to_string(),
///     r#"parse error at position 8 in "name==a,,": expected field or quoted"#
/// );
/// ```
pub fn parse(input: &str) -> Result<Filter> {
    if input.is_empty() {
        return Ok(Filter::always());
    }
    let selectors = parser::parse(input).map_err(|e| {
        Error::invalid_argument(format!(
            "parse error at position {} in {input:?}: {}",
            e.pos, e.message
        ))
    })?;
    Ok(Filter {
        alternatives: vec![selectors],
    })
}

/// Parses several filter strings into one filter matching what any of them
/// matches, as containerd's `ParseAll`. No strings at all match everything.
///
/// ```
/// use crated_core::filters::{self, adapt_fn};
///
/// let filter = filters::parse_all(["name==a", "name==b"]).unwrap();
/// let named =
///     |name: &'static str| adapt_fn(move |path| (path == ["name"]).then(|| name.to_owned()));
/// assert!(filter.matches(&named("b")) && !filter.matches(&named("c")));
/// assert!(filters::parse_all(Vec::<String>::new()).unwrap().matches(&named("c")));
/// ```
pub fn parse_all<I>(inputs: I) -> Result<Filter>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut alternatives = Vec::new();
    for input in inputs {
        alternatives.extend(parse(input.as_ref())?.alternatives);
    }
    if alternatives.is_empty() {
        return Ok(Filter::always());
    }
    Ok(Filter { alternatives })
}

/// `fieldpath [operator value]`.
#[derive(Debug, Clone)]
struct Selector {
    fieldpath: Vec<String>,
    condition: Condition,
}

#[derive(Debug, Clone)]
enum Condition {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Selector {
    fn matches(&self, adaptor: &(impl Adaptor + ?Sized)) -> bool {
        let value = with_path(&self.fieldpath, |path| adaptor.field(path));
        // As in containerd, only presence and equality care whether the
        // field exists; the others treat a missing field as empty.
        match &self.condition {
            Condition::Present => value.is_some(),
            Condition::Equal(want) => value.as_deref() == Some(want.as_str()),
            Condition::NotEqual(want) => value.as_deref().unwrap_or_default() != want,
            Condition::Matches(re) => re.is_match(value.as_deref().unwrap_or_default()),
        }
    }
}

/// Calls `f` with the field path as `&[&str]`, without allocating for the
/// short paths every real filter has.
fn with_path<R>(fieldpath: &[String], f: impl FnOnce(&[&str]) -> R) -> R {
    const INLINE: usize = 8;
    if fieldpath.len() <= INLINE {
        let mut buf = [""; INLINE];
        for (slot, field) in buf.iter_mut().zip(fieldpath) {
            *slot = field;
        }
        f(&buf[..fieldpath.len()])
    } else {
        f(&fieldpath.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// Prints the selector so that [`parse`] reads it back unchanged.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fieldpath.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if !field.is_empty() && field.chars().all(scanner::is_field_char) {
                f.write_str(field)?;
            } else {
                f.write_str(&quote::quote(field))?;
            }
        }
        let (operator, value) = match &self.condition {
            Condition::Present => return Ok(()),
            Condition::Equal(v) => ("==", v.as_str()),
            Condition::NotEqual(v) => ("!=", v.as_str()),
            Condition::Matches(re) => ("~=", re.as_str()),
        };
        f.write_str(operator)?;
        if is_bare_value(value) {
            f.write_str(value)
        } else {
            f.write_str(&quote::quote(value))
        }
    }
}

/// Whether `value` reads back as itself without quotes.
fn is_bare_value(value: &str) -> bool {
    // A leading quote, separator or operator character would be read as one.
    !value.is_empty()
        && !value.starts_with(['"', '/', '|', '.', '=', '!', '~'])
        && value.chars().all(scanner::is_value_char)
}

#[cfg(test)]
mod tests;
