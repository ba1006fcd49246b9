//! The cheap lexer run on every statement: tokens of a statement text, with whitespace and comments skipped and the routing hint noticed.
//!
//! It follows PostgreSQL's scanner (scan.l) closely enough that two texts get the same tokens only
//! when they differ in literal values, whitespace or comments: a `--` comment ends at CR as well as
//! LF, block comments nest, string constants continue across a newline (`'a'\n'b'` is one
//! constant), and text the scanner rejects (junk after a number or parameter, an unterminated
//! quote) is flagged so it never shares a shape with valid text. `fuzz/fuzz_targets/lexer_diff.rs`
//! checks this against pg_query's own scanner. With [`Strings::Backslash`]
//! (`standard_conforming_strings = off`), plain `'...'` strings take backslash escapes like `E'...'`.

mod scan;
use scan::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
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
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
    /// Whitespace or a comment came between this token and the previous one.
    pub space_before: bool,
}

/// How plain `'...'` strings treat a backslash: the session's `standard_conforming_strings`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strings {
    /// `on` (the default since PostgreSQL 9.1): a backslash is an ordinary character.
    #[default]
    Standard,
    /// `off`: a backslash escapes the next character, as in `E'...'`.
    Backslash,
}

/// How a string constant's quotes and backslashes are read.
#[derive(Clone, Copy)]
enum Quoting {
    /// `'...'` (standard_conforming_strings on), `U&'...'`: `''` is a quote.
    Doubled,
    /// `E'...'`, or `'...'` with standard_conforming_strings off: `\'` and `''` are quotes.
    Escapes,
    /// `B'...'`, `X'...'`: the first quote ends it.
    Bits,
}

/// Splits a text into tokens, skipping whitespace and comments and noticing the routing hint.
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    strings: Strings,
    /// A comment seen so far contained `pgsplit:primary`.
    pub hint: bool,
    /// The server's scanner rejects this text: a literal, quoted identifier or comment ran to
    /// the end, or a number or parameter runs into an identifier (`1abc`, `$1a`), or a quoted
    /// identifier is empty. It must not share a shape with the valid text it resembles.
    pub unterminated: bool,
    /// How many such rejections were seen so far: the shape marks the token after which each
    /// appeared, so `1x ... $1a` and `1 x ... $1a` (one rejection fewer) differ.
    pub rejections: u32,
}

const HINT: &[u8] = b"pgsplit:primary";

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Self {
        Self::with_strings(sql, Strings::Standard)
    }

    pub fn with_strings(sql: &'a str, strings: Strings) -> Self {
        Self {
            src: sql.as_bytes(),
            pos: 0,
            strings,
            hint: false,
            unterminated: false,
            rejections: 0,
        }
    }

    fn plain_quoting(&self) -> Quoting {
        match self.strings {
            Strings::Standard => Quoting::Doubled,
            Strings::Backslash => Quoting::Escapes,
        }
    }

    /// The server's scanner fails on the text here.
    fn reject(&mut self) {
        self.unterminated = true;
        self.rejections += 1;
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
                    // scan.l: a comment is `--` and then anything but CR or LF.
                    self.pos = comment_end(self.src, body);
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
        self.reject();
    }

    fn note_comment(&mut self, start: usize, end: usize) {
        if !self.hint {
            let body = &self.src[start..end.min(self.src.len())];
            self.hint = body
                .windows(HINT.len())
                .any(|w| w.eq_ignore_ascii_case(HINT));
        }
    }

    /// Ends a quoted run opened just before `self.pos`, where a doubled quote is an escaped one;
    /// false if it ran to the end.
    fn skip_quoted(&mut self, quote: u8) -> bool {
        while let Some(n) = self.src[self.pos..].iter().position(|&b| b == quote) {
            self.pos += n + 1;
            if self.at(self.pos) != quote {
                return true;
            }
            self.pos += 1;
        }
        self.pos = self.src.len();
        self.reject();
        false
    }

    /// A string constant opened just before `self.pos`, quoted as `quoting` says. A quote after
    /// whitespace holding a newline continues the same constant (scan.l's `quotecontinue`),
    /// with the same quoting.
    fn skip_string(&mut self, quoting: Quoting) {
        loop {
            let closed = match quoting {
                Quoting::Escapes => self.skip_escaped(),
                Quoting::Doubled => self.skip_quoted(b'\''),
                Quoting::Bits => self.skip_bits(),
            };
            if !closed {
                return;
            }
            match quote_continues(self.src, self.pos) {
                Some(next) => self.pos = next,
                None => return,
            }
        }
    }

    /// scan.l's `xbinside`/`xhinside`: a bit or hex string ends at its first quote (`B'1''0'`
    /// is `B'1'` and then `'0'`).
    fn skip_bits(&mut self) -> bool {
        match self.src[self.pos..].iter().position(|&b| b == b'\'') {
            Some(n) => {
                self.pos += n + 1;
                true
            }
            None => {
                self.pos = self.src.len();
                self.reject();
                false
            }
        }
    }

    fn skip_escaped(&mut self) -> bool {
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\\' => self.pos += 2,
                b'\'' if self.at(self.pos + 1) == b'\'' => self.pos += 2,
                b'\'' => {
                    self.pos += 1;
                    return true;
                }
                _ => self.pos += 1,
            }
        }
        self.pos = self.src.len();
        self.reject();
        false
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
                self.reject();
            }
        }
        true
    }

    /// A number as scan.l reads it: `decinteger` is digits with single underscores between,
    /// `0x`/`0o`/`0b` integers, `1.`, `.5`, `1.5e-3`. Anything glued to its end that could start
    /// an identifier is the scanner's "trailing junk" error, as is an exponent with no digits.
    fn skip_number(&mut self) {
        let s = self.src;
        let start = self.pos;
        let mut i = start;
        if s[i] == b'0' {
            let radix = match self.at(i + 1) {
                b'x' | b'X' => Some(16),
                b'o' | b'O' => Some(8),
                b'b' | b'B' => Some(2),
                _ => None,
            };
            if let Some(radix) = radix {
                let digits = digits_run(s, i + 2, radix, true);
                if digits > i + 2 {
                    self.pos = digits;
                    self.junk_after_number(i);
                    return;
                }
            }
        }
        if s[i] != b'.' {
            i = digits_run(s, i, 10, false);
        }
        // `1..10` is a number and `..`; keep the dots out of the number.
        if self.at(i) == b'.' && self.at(i + 1) != b'.' {
            i = digits_run(s, i + 1, 10, false);
        }
        if matches!(self.at(i), b'e' | b'E') {
            let sign = usize::from(matches!(self.at(i + 1), b'+' | b'-'));
            if self.at(i + 1 + sign).is_ascii_digit() {
                i = digits_run(s, i + 1 + sign, 10, false);
            } else if sign == 1 {
                // `1e+` is "trailing junk" (realfail), not `1e` and `+`.
                self.reject();
            }
        }
        self.pos = i;
        self.junk_after_number(start);
    }

    /// scan.l's `integer_junk` (and numeric_, real_, param_junk): a number and then an
    /// identifier, when that is a longer match than the number. The identifier may also start
    /// inside the number, at a `_`, the `x` of `0x1` or the `e` of `1e5`, and run on past its
    /// end: `1_0$`, `0x1$`, `0b12` and `1e5$` are errors, `10$` and `1e-5$` are not.
    fn junk_after_number(&mut self, start: usize) {
        let end = self.pos;
        let next = self.at(end);
        if is(next, IDENT_START) {
            self.reject();
            return;
        }
        if !is(next, IDENT) {
            return;
        }
        let mut run = end;
        while run > start && is(self.src[run - 1], IDENT) {
            run -= 1;
        }
        if self.src[run..end].iter().any(|&b| is(b, IDENT_START)) {
            self.reject();
        }
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

    /// `""` (and `U&""`) is "zero-length delimited identifier", an error: `end` is where the
    /// closing quote ends when the identifier is empty; `closed`: the quote was closed at all.
    fn empty_identifier(&mut self, closed: bool, end: usize) {
        if closed && self.pos == end {
            self.reject();
        }
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
                self.skip_string(self.plain_quoting());
                TokenKind::Literal
            }
            b'"' => {
                self.pos += 1;
                let closed = self.skip_quoted(b'"');
                self.empty_identifier(closed, start + 2);
                TokenKind::QuotedIdent
            }
            b'e' | b'E' if next == b'\'' => {
                self.pos += 2;
                self.skip_string(Quoting::Escapes);
                TokenKind::Literal
            }
            // Bit and hex strings take neither backslash escapes nor doubled quotes; `N'...'`
            // is NCHAR and then a plain string, which takes backslash escapes when
            // standard_conforming_strings is off.
            b'b' | b'B' | b'x' | b'X' if next == b'\'' => {
                self.pos += 2;
                self.skip_string(Quoting::Bits);
                TokenKind::Literal
            }
            b'n' | b'N' if next == b'\'' => {
                self.pos += 2;
                self.skip_string(self.plain_quoting());
                TokenKind::Literal
            }
            b'u' | b'U' if next == b'&' && matches!(self.at(start + 2), b'\'' | b'"') => {
                let quote = self.at(start + 2);
                self.pos += 3;
                if quote == b'\'' {
                    self.skip_string(Quoting::Doubled);
                    TokenKind::Literal
                } else {
                    let closed = self.skip_quoted(quote);
                    self.empty_identifier(closed, start + 4);
                    TokenKind::QuotedIdent
                }
            }
            b'$' if next.is_ascii_digit() => {
                self.pos += 1;
                while self.at(self.pos).is_ascii_digit() {
                    self.pos += 1;
                }
                // `$1a` is the scanner's "trailing junk after parameter".
                self.junk_after_number(start + 1);
                TokenKind::Param
            }
            // `::`, `..` and `:=` are one token each in scan.l (typecast, dot_dot, colon_equals).
            b':' if matches!(next, b':' | b'=') => {
                self.pos += 2;
                TokenKind::Punct
            }
            b'.' if next == b'.' => {
                self.pos += 2;
                TokenKind::Punct
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
