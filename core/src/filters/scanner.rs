//! Tokens of the filter language, with containerd's context rule: after an
//! operator the scanner reads a *value*, which may hold almost any character,
//! instead of a field name.
//!
//! Whitespace between tokens is skipped, but the parser also peeks at the raw
//! next character (see [`Scanner::peek_char`]) exactly where containerd does,
//! so that the same inputs are rejected for stray spaces.

use std::sync::LazyLock;

use regex::Regex;

/// One token of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    /// End of input.
    Eof,
    /// A bare field name: `[A-Za-z0-9_]+`.
    Field(&'a str),
    /// A quoted string, delimiters included: `"…"`, `/…/` or `|…|`.
    Quoted(&'a str),
    /// A bare value, read only right after an operator.
    Value(&'a str),
    /// `,` between selectors or `.` between fields.
    Separator(char),
    /// A run of `=`, `!` and `~`; the parser decides which runs are valid.
    Operator(&'a str),
    /// Input the scanner cannot tokenize, and why.
    Illegal(&'static str),
    /// A character that starts no token here.
    Unexpected(char),
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Spanned<'a> {
    pub pos: usize,
    pub token: Token<'a>,
}

pub(super) struct Scanner<'a> {
    input: &'a str,
    offset: usize,
    /// Whether the next non-quoted token is a value (we just read an operator).
    in_value: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(input: &'a str) -> Self {
        Self {
            input,
            offset: 0,
            in_value: false,
        }
    }

    /// Byte offset of the next unread character.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The next character, whitespace included; `None` at the end.
    pub fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub fn scan(&mut self) -> Spanned<'a> {
        let skipped = self.rest().len() - self.rest().trim_start_matches(is_space).len();
        self.offset += skipped;
        let pos = self.offset;
        let spanned = |token| Spanned { pos, token };
        let Some(c) = self.peek_char() else {
            return spanned(Token::Eof);
        };
        self.offset += c.len_utf8();
        let token = match c {
            '\0' => Token::Illegal("unexpected null"),
            '"' | '/' | '|' => match self.scan_quoted(c) {
                Ok(()) => Token::Quoted(&self.input[pos..self.offset]),
                Err(why) => Token::Illegal(why),
            },
            ',' | '.' => {
                self.in_value = false;
                Token::Separator(c)
            }
            '=' | '!' | '~' => {
                self.take_while(|c| matches!(c, '=' | '!' | '~'));
                self.in_value = true;
                Token::Operator(&self.input[pos..self.offset])
            }
            // The first character of a value is taken whatever it is; only
            // the ones after it must be value characters.
            _ if self.in_value => {
                self.take_while(is_value_char);
                self.in_value = false;
                Token::Value(&self.input[pos..self.offset])
            }
            _ if is_field_char(c) => {
                self.take_while(is_field_char);
                Token::Field(&self.input[pos..self.offset])
            }
            _ => Token::Unexpected(c),
        };
        spanned(token)
    }

    fn rest(&self) -> &'a str {
        &self.input[self.offset..]
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) {
        let rest = self.rest();
        self.offset += rest.find(|c| !keep(c)).unwrap_or(rest.len());
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.offset += c.len_utf8();
        Some(c)
    }

    /// Reads to the closing `quote`, checking escapes the way Go string
    /// literals have them. Decoding is left to [`super::quote::unquote`].
    fn scan_quoted(&mut self, quote: char) -> Result<(), &'static str> {
        loop {
            match self.next_char() {
                None | Some('\n') => return Err("quoted literal not terminated"),
                Some('\0') => return Err("unexpected null"),
                Some(c) if c == quote => return Ok(()),
                Some('\\') => self.scan_escape(quote)?,
                Some(_) => {}
            }
        }
    }

    fn scan_escape(&mut self, quote: char) -> Result<(), &'static str> {
        let (radix, digits) = match self.next_char() {
            Some('\0') => return Err("unexpected null"),
            Some(c) if c == quote || "abfnrtv\\".contains(c) => return Ok(()),
            // The first octal digit is the escape character itself.
            Some('0'..='7') => (8, 2),
            Some('x') => (16, 2),
            Some('u') => (16, 4),
            Some('U') => (16, 8),
            _ => return Err("illegal escape sequence"),
        };
        for _ in 0..digits {
            match self.peek_char() {
                Some('\0') => return Err("unexpected null"),
                Some(c) if c.is_digit(radix) => self.offset += 1,
                _ => return Err("illegal numeric escape sequence"),
            }
        }
        Ok(())
    }
}

/// Go's `unicode.IsSpace`, which is the Unicode White_Space property.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

pub(super) fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// containerd's `isValueRune`: not a comma, and a letter, mark, number,
/// punctuation or symbol (Go's "graphic" characters minus spaces).
pub(super) fn is_value_char(c: char) -> bool {
    static GRAPHIC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S}]$")
            .expect("a constant character class known to compile")
    });
    match c {
        ',' => false,
        '!'..='~' => true,
        c if c.is_ascii() => false,
        c => GRAPHIC.is_match(c.encode_utf8(&mut [0; 4])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::*;

    fn tokens(input: &str) -> Vec<(usize, Token<'_>)> {
        let mut scanner = Scanner::new(input);
        let mut out = Vec::new();
        loop {
            let Spanned { pos, token } = scanner.scan();
            out.push((pos, token));
            if token == Eof || matches!(token, Illegal(_)) {
                return out;
            }
        }
    }

    #[test]
    fn scans_selectors() {
        assert_eq!(
            tokens("name==value,labels.foo=value,other.bar~=match"),
            [
                (0, Field("name")),
                (4, Operator("==")),
                (6, Value("value")),
                (11, Separator(',')),
                (12, Field("labels")),
                (18, Separator('.')),
                (19, Field("foo")),
                (22, Operator("=")),
                (23, Value("value")),
                (28, Separator(',')),
                (29, Field("other")),
                (34, Separator('.')),
                (35, Field("bar")),
                (38, Operator("~=")),
                (40, Value("match")),
                (45, Eof),
            ]
        );
    }

    #[test]
    fn scans_values_and_quotes() {
        assert_eq!(
            tokens(r"name~=[abc]\+,foo=test"),
            [
                (0, Field("name")),
                (4, Operator("~=")),
                (6, Value(r"[abc]\+")),
                (13, Separator(',')),
                (14, Field("foo")),
                (17, Operator("=")),
                (18, Value("test")),
                (22, Eof)
            ]
        );
        assert_eq!(tokens("name~=/[abc]{0,2}/")[2], (6, Quoted("/[abc]{0,2}/")));
        assert_eq!(
            tokens("name~=牛,labels.moo=true")[2..4],
            [(6, Value("牛")), (9, Separator(','))]
        );
        assert_eq!(
            tokens("name~=|牛|,x")[2..4],
            [(6, Quoted("|牛|")), (11, Separator(','))]
        );
        assert_eq!(
            tokens(r#"name~="asdf\n\tfooo""#)[2..],
            [(6, Quoted(r#""asdf\n\tfooo""#)), (20, Eof)]
        );
        assert_eq!(
            tokens("input~=/foo\\/bar/,id")[2],
            (7, Quoted("/foo\\/bar/"))
        );
        assert_eq!(tokens("input~=|foo/bar|,id")[2], (7, Quoted("|foo/bar|")));
        assert_eq!(
            tokens("compound.labels==punctuated_value.foo-bar")[3..],
            [
                (15, Operator("==")),
                (17, Value("punctuated_value.foo-bar")),
                (41, Eof)
            ]
        );
        assert_eq!(
            tokens(r#""leading quote".postquote"#)[..2],
            [(0, Quoted(r#""leading quote""#)), (15, Separator('.'))]
        );
    }

    #[test]
    fn chomps_spaces_between_tokens() {
        assert_eq!(
            tokens("foo = bar    "),
            [
                (0, Field("foo")),
                (4, Operator("=")),
                (6, Value("bar")),
                (13, Eof)
            ]
        );
        assert_eq!(
            tokens("doublevalue=value value"),
            [
                (0, Field("doublevalue")),
                (11, Operator("=")),
                (12, Value("value")),
                (18, Field("value")),
                (23, Eof)
            ]
        );
        assert_eq!(
            tokens("interrupted="),
            [(0, Field("interrupted")), (11, Operator("=")), (12, Eof)]
        );
        assert_eq!(tokens("input==,id")[2], (7, Separator(',')));
    }

    #[test]
    fn reports_illegal_input() {
        assert_eq!(tokens("foo\0bar")[1], (3, Illegal("unexpected null")));
        assert_eq!(
            tokens("labels.containerd.io/key==value")[5],
            (20, Illegal("quoted literal not terminated"))
        );
        assert_eq!(
            tokens("labels.\"containerd.io\nkey\"==value")[2],
            (7, Illegal("quoted literal not terminated"))
        );
        assert_eq!(
            tokens(r#"labels."\g""#)[2],
            (7, Illegal("illegal escape sequence"))
        );
        assert_eq!(
            tokens(r#"labels."\xaz""#)[2],
            (7, Illegal("illegal numeric escape sequence"))
        );
        assert_eq!(
            tokens(r#"labels."\18""#)[2],
            (7, Illegal("illegal numeric escape sequence"))
        );
        assert_eq!(
            tokens(r#"labels."a\"#)[2],
            (7, Illegal("illegal escape sequence"))
        );
        assert_eq!(
            tokens(r#"labels."\x0"#)[2],
            (7, Illegal("illegal numeric escape sequence"))
        );
        assert_eq!(tokens("a?b")[1], (1, Unexpected('?')));
    }

    #[test]
    fn classifies_value_characters_like_go() {
        for c in [
            'a', 'Z', '0', '-', '.', '=', '"', '|', '牛', 'é', '€', '½', '\u{301}',
        ] {
            assert!(is_value_char(c), "{c:?}");
        }
        for c in [
            ',', ' ', '\t', '\n', '\0', '\u{7f}', '\u{85}', '\u{a0}', '\u{200b}', '\u{200d}',
            '\u{2028}', '\u{e000}',
        ] {
            assert!(!is_value_char(c), "{c:?}");
        }
    }
}
