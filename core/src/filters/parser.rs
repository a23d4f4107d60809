//! Recursive-descent parser for one filter string:
//!
//! ```text
//! filter    := selector ( "," selector )*
//! selector  := fieldpath [ operator value ]
//! fieldpath := field ( "." field )*
//! field     := [A-Za-z0-9_]+ | quoted
//! operator  := "==" | "!=" | "~="
//! value     := quoted | bare value (up to "," or whitespace)
//! quoted    := "…" (Go string syntax), and for "~=" values also /…/ or |…|
//! ```
//!
//! Where containerd peeks at the raw next character rather than the next
//! token, so do we, so that stray whitespace is rejected in the same places.

use regex::Regex;

use super::quote::unquote;
use super::scanner::{Scanner, Spanned, Token};
use super::{Condition, Selector};

/// A syntax error: what was wrong, and the byte offset where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParseError {
    pub pos: usize,
    pub message: String,
}

type Result<T> = std::result::Result<T, ParseError>;

fn error<T>(pos: usize, message: impl Into<String>) -> Result<T> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

/// Parses a non-empty filter into its selectors, all of which must match.
pub(super) fn parse(input: &str) -> Result<Vec<Selector>> {
    let mut parser = Parser {
        scanner: Scanner::new(input),
    };
    let mut selectors = vec![parser.selector()?];
    loop {
        match parser.scanner.peek_char() {
            None => return Ok(selectors),
            Some(',') => {
                parser.scanner.scan();
                selectors.push(parser.selector()?);
            }
            Some(c) => return error(parser.scanner.offset(), format!("unexpected input: {c:?}")),
        }
    }
}

struct Parser<'a> {
    scanner: Scanner<'a>,
}

impl<'a> Parser<'a> {
    fn selector(&mut self) -> Result<Selector> {
        let fieldpath = self.fieldpath()?;
        if matches!(self.scanner.peek_char(), None | Some(',')) {
            return Ok(Selector {
                fieldpath,
                condition: Condition::Present,
            });
        }
        let (pos, operator) = self.operator()?;
        let condition = match operator {
            "==" => Condition::Equal(self.value(false)?),
            "!=" => Condition::NotEqual(self.value(false)?),
            "~=" => {
                let Spanned { pos, token } = self.scanner.scan();
                let pattern = self.value_token(pos, token, true)?;
                let regex = compile(&pattern).or_else(|why| error(pos, why))?;
                Condition::Matches(regex)
            }
            other => return error(pos, format!("unsupported operator {other:?}")),
        };
        Ok(Selector {
            fieldpath,
            condition,
        })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>> {
        let mut fields = vec![self.field()?];
        while self.scanner.peek_char() == Some('.') {
            self.scanner.scan();
            fields.push(self.field()?);
        }
        Ok(fields)
    }

    fn field(&mut self) -> Result<String> {
        let Spanned { pos, token } = self.scanner.scan();
        match token {
            Token::Field(name) => Ok(name.to_owned()),
            Token::Quoted(quoted) => unquote_at(pos, quoted, false),
            Token::Illegal(why) => error(pos, why),
            _ => error(pos, "expected field or quoted"),
        }
    }

    fn operator(&mut self) -> Result<(usize, &'a str)> {
        let Spanned { pos, token } = self.scanner.scan();
        match token {
            Token::Operator(op) => Ok((pos, op)),
            Token::Illegal(why) => error(pos, why),
            _ => error(pos, r#"expected an operator ("=="|"!="|"~=")"#),
        }
    }

    fn value(&mut self, regex_quotes: bool) -> Result<String> {
        let Spanned { pos, token } = self.scanner.scan();
        self.value_token(pos, token, regex_quotes)
    }

    fn value_token(&self, pos: usize, token: Token<'_>, regex_quotes: bool) -> Result<String> {
        match token {
            Token::Value(value) | Token::Field(value) => Ok(value.to_owned()),
            Token::Quoted(quoted) => unquote_at(pos, quoted, regex_quotes),
            Token::Illegal(why) => error(pos, why),
            _ => error(pos, "expected value or quoted"),
        }
    }
}

/// Decodes a quoted field or value; `/…/` and `|…|` only where regular
/// expressions go.
fn unquote_at(pos: usize, quoted: &str, regex_quotes: bool) -> Result<String> {
    if !regex_quotes && !quoted.starts_with('"') {
        return error(pos, "invalid quote encountered");
    }
    unquote(quoted).or_else(|why| error(pos, format!("unquoting failed: {why}")))
}

/// Compiles a `~=` pattern. containerd compiles lazily and lets a bad pattern
/// match nothing; failing the parse tells the caller instead.
pub(super) fn compile(pattern: &str) -> std::result::Result<Regex, String> {
    Regex::new(pattern).map_err(|e| {
        // The syntax error's text is a multi-line diagram; its last line says
        // what is wrong.
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let why = why.trim().trim_start_matches("error: ");
        format!("invalid regular expression {pattern:?}: {why}")
    })
}
