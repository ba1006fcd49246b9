//! The cheap lexer run on every statement: tokens of a statement text, with whitespace and comments skipped and the routing hint noticed.
//!
//! It follows PostgreSQL's scanner (scan.l) closely enough that two texts get the same tokens only
//! when they differ in literal values, whitespace or comments. It assumes
//! `standard_conforming_strings = on` (the default since 9.1), as pg_query does.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// Keyword or unquoted identifier; case-insensitive.
    Word,
    /// `"quoted"` or `U&"quoted"` identifier; case-sensitive.
    QuotedIdent,
    /// Numeric, string, bit-string or dollar-quoted constant.
    Literal,
    /// `$n` parameter reference.
    Param,
    /// Operator made of `+-*/<>=~!@#%^&|`?`.
    Operator,
    /// Any other single byte, `;` included.
    Punct,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// Whitespace or a comment came between this token and the previous one.
    pub space_before: bool,
}

/// Splits a text into tokens, skipping whitespace and comments and noticing the routing hint.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// A comment seen so far contained `pgsplit:primary`.
    pub hint: bool,
    /// A literal, quoted identifier or comment ran to the end of the text: the server will
    /// reject it, so it must not share a shape with the terminated text.
    pub unterminated: bool,
}

const HINT: &[u8] = b"pgsplit:primary";

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Self {
        Self {
            src: sql.as_bytes(),
            pos: 0,
            hint: false,
            unterminated: false,
        }
    }

    fn at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments; returns whether anything was skipped.
    #[inline]
    fn skip_blank(&mut self) -> bool {
        let start = self.pos;
        loop {
            while self.pos < self.src.len() && is(self.src[self.pos], SPACE) {
                self.pos += 1;
            }
            match self.at(self.pos) {
                // PostgreSQL ends a `--` comment at a carriage return as well.
                b'-' if self.at(self.pos + 1) == b'-' => {
                    let body = self.pos + 2;
                    self.pos = self.src[body..]
                        .iter()
                        .position(|&b| b == b'\n' || b == b'\r')
                        .map_or(self.src.len(), |n| body + n);
                    self.note_comment(body, self.pos);
                }
                b'/' if self.at(self.pos + 1) == b'*' => {
                    let body = self.pos + 2;
                    self.skip_block_comment();
                    self.note_comment(body, self.pos);
                }
                _ => return self.pos != start,
            }
        }
    }

    /// Block comments nest in PostgreSQL, unlike in C.
    fn skip_block_comment(&mut self) {
        let mut depth = 0usize;
        while self.pos < self.src.len() {
            match (self.src[self.pos], self.at(self.pos + 1)) {
                (b'/', b'*') => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return;
                    }
                }
                _ => self.pos += 1,
            }
        }
        self.unterminated = true;
    }

    fn note_comment(&mut self, start: usize, end: usize) {
        if !self.hint {
            let body = &self.src[start..end.min(self.src.len())];
            self.hint = body
                .windows(HINT.len())
                .any(|w| w.eq_ignore_ascii_case(HINT));
        }
    }

    /// Ends a quoted run opened just before `self.pos`, where a doubled quote is an escaped one.
    fn skip_quoted(&mut self, quote: u8) {
        while let Some(n) = self.src[self.pos..].iter().position(|&b| b == quote) {
            self.pos += n + 1;
            if self.at(self.pos) != quote {
                return;
            }
            self.pos += 1;
        }
        self.pos = self.src.len();
        self.unterminated = true;
    }

    /// `E'...'`: backslash escapes as well as doubled quotes.
    fn skip_escape_string(&mut self) {
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\\' => self.pos += 2,
                b'\'' if self.at(self.pos + 1) == b'\'' => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.src.len();
        self.unterminated = true;
    }

    /// At a `$` that is not a parameter: a dollar-quoted string if a valid `$tag$` opens here.
    fn try_dollar_quote(&mut self) -> bool {
        let open = self.pos;
        let mut i = open + 1;
        if i < self.src.len() && is_ident_start(self.src[i]) {
            i += 1;
            while i < self.src.len() && is_tag_char(self.src[i]) {
                i += 1;
            }
        }
        if self.at(i) != b'$' {
            return false;
        }
        let delim = &self.src[open..=i];
        let body = i + 1;
        match self.src[body..]
            .windows(delim.len())
            .position(|w| w == delim)
        {
            Some(n) => self.pos = body + n + delim.len(),
            None => {
                self.pos = self.src.len();
                self.unterminated = true;
            }
        }
        true
    }

    fn skip_number(&mut self) {
        let s = self.src;
        let mut i = self.pos;
        if s[i] == b'0' && matches!(self.at(i + 1), b'x' | b'X' | b'o' | b'O' | b'b' | b'B') {
            i += 2;
            while i < s.len() && (s[i].is_ascii_hexdigit() || s[i] == b'_') {
                i += 1;
            }
            self.pos = i;
            return;
        }
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
            i += 1;
        }
        // `1..10` is two numbers around `..` in PL/pgSQL; keep the dots out of the number.
        if self.at(i) == b'.' && self.at(i + 1) != b'.' {
            i += 1;
            while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
                i += 1;
            }
        }
        if matches!(self.at(i), b'e' | b'E') {
            let digits = if matches!(self.at(i + 1), b'+' | b'-') {
                i + 2
            } else {
                i + 1
            };
            if self.at(digits).is_ascii_digit() {
                i = digits;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        self.pos = i;
    }

    fn skip_operator(&mut self) {
        let s = self.src;
        let start = self.pos;
        let mut i = start;
        while i < s.len() && is_op_char(s[i]) {
            // A comment start ends the operator even without whitespace.
            if i > start
                && ((s[i] == b'-' && self.at(i + 1) == b'-')
                    || (s[i] == b'/' && self.at(i + 1) == b'*'))
            {
                break;
            }
            i += 1;
        }
        // scan.l: a multi-char operator cannot end in + or - unless it contains one of ~!@#%^&|`?,
        // so `=-1` is `=` then `-1`.
        if i - start > 1 && !s[start..i].iter().any(|b| b"~!@#%^&|`?".contains(b)) {
            while i - start > 1 && matches!(s[i - 1], b'+' | b'-') {
                i -= 1;
            }
        }
        self.pos = i;
    }

    #[inline]
    fn skip_word(&mut self) {
        let s = self.src;
        let mut i = self.pos + 1;
        while i < s.len() && is(s[i], IDENT) {
            i += 1;
        }
        self.pos = i;
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        let space_before = self.skip_blank();
        let start = self.pos;
        let b = *self.src.get(start)?;
        // Most tokens are plain words and punctuation: take them before the rarer cases below.
        let class = CLASS[b as usize];
        if class & (IDENT_START | PREFIX) == IDENT_START {
            self.skip_word();
            return Some(Token {
                kind: TokenKind::Word,
                start,
                end: self.pos,
                space_before,
            });
        }
        if class & SIMPLE != 0 {
            self.pos += 1;
            return Some(Token {
                kind: TokenKind::Punct,
                start,
                end: self.pos,
                space_before,
            });
        }
        let next = self.at(start + 1);
        let kind = match b {
            b'\'' => {
                self.pos += 1;
                self.skip_quoted(b'\'');
                TokenKind::Literal
            }
            b'"' => {
                self.pos += 1;
                self.skip_quoted(b'"');
                TokenKind::QuotedIdent
            }
            b'e' | b'E' if next == b'\'' => {
                self.pos += 2;
                self.skip_escape_string();
                TokenKind::Literal
            }
            // Bit, hex and national-character strings quote like plain strings.
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if next == b'\'' => {
                self.pos += 2;
                self.skip_quoted(b'\'');
                TokenKind::Literal
            }
            b'u' | b'U' if next == b'&' && matches!(self.at(start + 2), b'\'' | b'"') => {
                let quote = self.at(start + 2);
                self.pos += 3;
                self.skip_quoted(quote);
                if quote == b'\'' {
                    TokenKind::Literal
                } else {
                    TokenKind::QuotedIdent
                }
            }
            b'$' if next.is_ascii_digit() => {
                self.pos += 1;
                while self.at(self.pos).is_ascii_digit() {
                    self.pos += 1;
                }
                TokenKind::Param
            }
            b'$' if self.try_dollar_quote() => TokenKind::Literal,
            b'0'..=b'9' => {
                self.skip_number();
                TokenKind::Literal
            }
            b'.' if next.is_ascii_digit() => {
                self.skip_number();
                TokenKind::Literal
            }
            _ if is_ident_start(b) => {
                self.skip_word();
                TokenKind::Word
            }
            _ if is_op_char(b) => {
                self.skip_operator();
                TokenKind::Operator
            }
            _ => {
                self.pos += 1;
                TokenKind::Punct
            }
        };
        Some(Token {
            kind,
            start,
            end: self.pos.min(self.src.len()),
            space_before,
        })
    }
}

/// Byte classes, looked up once per byte instead of a chain of comparisons.
const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const IDENT: u8 = 4;
const OP: u8 = 8;
const TAG: u8 = 16;
/// Letters that may open a prefixed literal (`E'`, `B'`, `X'`, `N'`, `U&'`).
const PREFIX: u8 = 32;
/// Punctuation that is always a one-byte token.
const SIMPLE: u8 = 64;

static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            class |= SPACE;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            class |= IDENT_START | IDENT | TAG;
        }
        if c.is_ascii_digit() {
            class |= IDENT | TAG;
        }
        if c == b'$' {
            class |= IDENT;
        }
        if matches!(
            c,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
        ) {
            class |= OP;
        }
        if matches!(
            c,
            b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N' | b'u' | b'U'
        ) {
            class |= PREFIX;
        }
        table[b] = class;
        b += 1;
    }
    table
}

#[inline]
fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

fn is_ident_start(b: u8) -> bool {
    is(b, IDENT_START)
}

fn is_tag_char(b: u8) -> bool {
    is(b, TAG)
}

fn is_op_char(b: u8) -> bool {
    is(b, OP)
}
