//! Statement shapes: a hash of the token stream with literal values masked (the analysis cache key), and a literal-free normal form.

use super::lexer::{Lexer, Strings, TokenKind};

/// What the cheap lexer learned about a statement text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Hash of the token stream with literals masked: equal for texts that differ only in literal
    /// values, whitespace and comments. Stable across processes (fixed keys).
    pub hash: u64,
    /// A `pgsplit:primary` hint was found inside a comment.
    pub primary_hint: bool,
    /// The first keyword of the text (after any opening parentheses).
    pub first_keyword: Keyword,
    /// Statements in the text: runs of tokens separated by `;`.
    pub statements: u32,
    /// Literal tokens masked in the hash.
    pub literals: u32,
}

/// The leading keyword of a text, for callers that need a cheap look before the full analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    Select,
    With,
    Values,
    Table,
    Show,
    Explain,
    Insert,
    Update,
    Delete,
    Merge,
    Copy,
    Set,
    Reset,
    Begin,
    Start,
    Commit,
    End,
    Rollback,
    Abort,
    Savepoint,
    Release,
    Prepare,
    Execute,
    Deallocate,
    Discard,
    Listen,
    Unlisten,
    Notify,
    Declare,
    Fetch,
    Close,
    /// A word that is none of the above.
    Other,
    /// No word at all (empty text, only comments, or punctuation first).
    None,
}

impl Keyword {
    fn from_word(word: &[u8]) -> Self {
        const WORDS: &[(&[u8], Keyword)] = &[
            (b"select", Keyword::Select),
            (b"with", Keyword::With),
            (b"values", Keyword::Values),
            (b"table", Keyword::Table),
            (b"show", Keyword::Show),
            (b"explain", Keyword::Explain),
            (b"insert", Keyword::Insert),
            (b"update", Keyword::Update),
            (b"delete", Keyword::Delete),
            (b"merge", Keyword::Merge),
            (b"copy", Keyword::Copy),
            (b"set", Keyword::Set),
            (b"reset", Keyword::Reset),
            (b"begin", Keyword::Begin),
            (b"start", Keyword::Start),
            (b"commit", Keyword::Commit),
            (b"end", Keyword::End),
            (b"rollback", Keyword::Rollback),
            (b"abort", Keyword::Abort),
            (b"savepoint", Keyword::Savepoint),
            (b"release", Keyword::Release),
            (b"prepare", Keyword::Prepare),
            (b"execute", Keyword::Execute),
            (b"deallocate", Keyword::Deallocate),
            (b"discard", Keyword::Discard),
            (b"listen", Keyword::Listen),
            (b"unlisten", Keyword::Unlisten),
            (b"notify", Keyword::Notify),
            (b"declare", Keyword::Declare),
            (b"fetch", Keyword::Fetch),
            (b"close", Keyword::Close),
        ];
        WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map_or(Keyword::Other, |&(_, k)| k)
    }
}

/// Hashes the token sequence one 64-bit word per short token. A token of 1 to 7 bytes is one
/// word: its bytes (lowercased for words) with its kind and length in the top byte. A longer one
/// is a header word (kind, length 0 in the top byte, real length below) and then its bytes eight
/// at a time. Literals and punctuation carry no bytes beyond the top one. Distinct token
/// sequences thus feed distinct word sequences.
///
/// The mixing step is the folded multiply of wyhash and ahash; keys are fixed so shapes (and the
/// fingerprints of unparsable text derived from them) are stable across processes.
struct TokenHasher(u64);

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const ONES: u64 = u64::MAX / 255;

/// Token kinds, in the top five bits of a token's first word.
const WORD: u64 = 1;
const QUOTED: u64 = 2;
const LITERAL: u64 = 3;
const PARAM: u64 = 4;
const OPERATOR: u64 = 5;
const OTHER: u64 = 6;
/// Marks the place of text the scanner rejects (a word of its own, with no bytes).
const JUNK: u64 = 7 << 59;

impl TokenHasher {
    #[inline(always)]
    fn mix(&mut self, word: u64) {
        self.0 = fold(self.0 ^ word);
    }

    #[inline(always)]
    fn token(&mut self, kind: u64, src: &[u8], start: usize, end: usize, fold_case: bool) {
        let len = end - start;
        let lower = |w: u64| if fold_case { ascii_lowercase(w) } else { w };
        if len < 8 {
            self.mix(lower(load(src, start, len)) | kind << 59 | (len as u64) << 56);
            return;
        }
        self.mix(kind << 59 | len as u64 & 0x00ff_ffff_ffff_ffff);
        let mut at = start;
        while at < end {
            let n = (end - at).min(8);
            self.mix(lower(load(src, at, n)));
            at += n;
        }
    }
}

/// One round of the folded multiply.
#[inline(always)]
pub(super) fn fold(x: u64) -> u64 {
    let m = u128::from(x) * u128::from(K1);
    ((m as u64) ^ ((m >> 64) as u64)).wrapping_add(K0)
}

/// `len` (1..=8) bytes of `src` from `at`, little-endian, zero above.
#[inline]
fn load(src: &[u8], at: usize, len: usize) -> u64 {
    match src.get(at..at + 8) {
        Some(eight) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            let word = u64::from_le_bytes(word);
            if len >= 8 {
                word
            } else {
                word & ((1u64 << (len * 8)) - 1)
            }
        }
        None => {
            let mut word = [0u8; 8];
            let tail = src.get(at..at + len).unwrap_or(&[]);
            word[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(word)
        }
    }
}

/// ASCII `A-Z` to `a-z` in all eight bytes at once; other bytes unchanged (as in std's
/// `make_ascii_lowercase`).
#[inline]
fn ascii_lowercase(word: u64) -> u64 {
    let heptets = word & (ONES * 0x7f);
    let at_least_a = heptets + ONES * (0x80 - u64::from(b'A'));
    let beyond_z = heptets + ONES * (0x7f - u64::from(b'Z'));
    let ascii = !word & (ONES * 0x80);
    let upper = ascii & (at_least_a ^ beyond_z);
    word | (upper >> 2)
}

/// A quoted literal ('now', E'today', $$tomorrow$$) whose value reads as the current time.
fn time_literal(token: &[u8]) -> bool {
    if token.len() > 16 {
        return false;
    }
    let t = std::str::from_utf8(token).unwrap_or("");
    let t = t.strip_prefix(['E', 'e']).unwrap_or(t);
    let inner = t
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| t.strip_prefix("$$").and_then(|t| t.strip_suffix("$$")));
    inner.is_some_and(super::facts::is_time_literal)
}

/// Computes the shape of a statement text: the hot-path key of the analysis cache.
pub fn shape(sql: &str) -> Shape {
    shape_with(sql, Strings::Standard)
}

/// The shape of a text as a session with these string rules reads it. A text without a
/// backslash reads the same either way and gets the same shape.
pub fn shape_with(sql: &str, strings: Strings) -> Shape {
    let strings = effective(sql, strings);
    let src = sql.as_bytes();
    let mut lexer = Lexer::with_strings(sql, strings);
    let mut h = TokenHasher(K0);
    let mut first_keyword = Keyword::None;
    let mut leading = true;
    let mut statements = 0u32;
    let mut in_statement = false;
    let mut literals = 0u32;
    let mut rejections = 0u32;
    while let Some(tok) = lexer.next() {
        // Where the scanner would fail is part of the shape, not only whether it fails anywhere.
        if lexer.rejections != rejections {
            rejections = lexer.rejections;
            h.mix(JUNK);
        }
        let first = src[tok.start];
        match tok.kind {
            TokenKind::Word => h.token(WORD, src, tok.start, tok.end, true),
            TokenKind::QuotedIdent => h.token(QUOTED, src, tok.start, tok.end, false),
            TokenKind::Literal => {
                literals += 1;
                // 'now' and friends are not constants: such a text must not share its
                // analysis (cacheable) with the same text holding another literal.
                let time = time_literal(&src[tok.start..tok.end]);
                h.mix(LITERAL << 59 | 1 << 56 | u64::from(time));
            }
            TokenKind::Param => h.token(PARAM, src, tok.start + 1, tok.end, false),
            TokenKind::Operator => h.token(OPERATOR, src, tok.start, tok.end, false),
            TokenKind::Punct => h.mix(OTHER << 59 | 1 << 56 | u64::from(first)),
        }
        if leading {
            match tok.kind {
                TokenKind::Word => {
                    first_keyword = Keyword::from_word(&src[tok.start..tok.end]);
                    leading = false;
                }
                TokenKind::Punct if first == b'(' => {}
                _ => leading = false,
            }
        }
        if tok.kind == TokenKind::Punct && first == b';' {
            in_statement = false;
        } else if !in_statement {
            in_statement = true;
            statements += 1;
        }
    }
    // A comment left open at the end is rejected after the last token.
    if lexer.rejections != rejections {
        h.mix(JUNK);
    }
    let mut hash = fold(h.0 ^ u64::from(statements));
    // Flags go in after the tokens, whose words never have a zero top byte.
    if lexer.hint {
        hash = fold(hash ^ 0x6869_6e74);
    }
    if lexer.unterminated {
        hash = fold(hash ^ 0x6f70_656e);
    }
    if strings == Strings::Backslash {
        hash = fold(hash ^ 0x5c5c_5c5c);
    }
    Shape {
        hash,
        primary_hint: lexer.hint,
        first_keyword,
        statements,
        literals,
    }
}

/// Backslashes only matter to plain strings when there is one.
pub(super) fn effective(sql: &str, strings: Strings) -> Strings {
    if strings == Strings::Backslash && sql.as_bytes().contains(&b'\\') {
        Strings::Backslash
    } else {
        Strings::Standard
    }
}

/// The same text as PostgreSQL's parser reads it with `standard_conforming_strings = on`, for
/// analysis by pg_query, which always assumes `on`: a string that takes backslash escapes
/// under `off` becomes an `E'...'` string, and `N'...'` becomes `NCHAR E'...'`. The client's
/// text is sent unchanged; only the analysis reads this one.
pub(super) fn escape_form(sql: &str) -> String {
    let src = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    for tok in Lexer::with_strings(sql, Strings::Backslash) {
        if tok.kind != TokenKind::Literal {
            continue;
        }
        let (prefix, quote) = match src[tok.start] {
            b'\'' => (" E", tok.start),
            b'n' | b'N' => (" NCHAR E", tok.start + 1),
            _ => continue,
        };
        out.push_str(&sql[copied..tok.start]);
        out.push_str(prefix);
        copied = quote;
    }
    out.push_str(&sql[copied..]);
    out
}

/// Rewrites a text with every literal replaced by `$n` (numbered after the highest `$n` already
/// present), comments dropped and whitespace runs collapsed to one space.
pub fn normalize(sql: &str) -> String {
    let max_param = Lexer::new(sql)
        .filter(|t| t.kind == TokenKind::Param)
        .filter_map(|t| sql.get(t.start + 1..t.end)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    // Saturating: a client may write `$18446744073709551615` (found by fuzzing; the server
    // rejects it, but normalizing it must not overflow).
    let mut next = max_param.saturating_add(1);
    let mut out = String::with_capacity(sql.len());
    let mut after_placeholder = false;
    for tok in Lexer::new(sql) {
        let text = sql.get(tok.start..tok.end).unwrap_or("");
        let literal = tok.kind == TokenKind::Literal;
        // A placeholder must not fuse with a neighbour the source kept apart only by quoting:
        // `x'a'` must not become `x$1`, nor `'a'1` become `$11`, nor `$'a'` open a `$$` quote.
        let glued = if literal {
            out.ends_with(fuses)
        } else {
            after_placeholder && text.starts_with(fuses)
        };
        if (tok.space_before || glued) && !out.is_empty() {
            out.push(' ');
        }
        if literal {
            out.push('$');
            out.push_str(&next.to_string());
            next = next.saturating_add(1);
        } else {
            out.push_str(text);
        }
        after_placeholder = literal;
    }
    out
}

/// Characters that continue a word or a `$n` in PostgreSQL's scanner (a byte of 0x80 and
/// above, read as a char, is one: it is part of a non-ASCII name).
pub(super) const fn fuses(c: char) -> bool {
    c == '$' || c == '_' || c.is_ascii_alphanumeric() || !c.is_ascii()
}

/// Whether a text still holds a literal value.
#[cfg(test)]
pub(crate) fn has_literal(sql: &str) -> bool {
    Lexer::new(sql).any(|t| t.kind == TokenKind::Literal)
}

/// The first keyword of every statement in a text, for texts the parser could not take apart.
pub(crate) fn leading_keywords(sql: &str) -> Vec<Keyword> {
    let src = sql.as_bytes();
    let mut keywords = Vec::new();
    let mut at_start = true;
    for tok in Lexer::new(sql) {
        let first = src[tok.start];
        match tok.kind {
            TokenKind::Punct if first == b';' => at_start = true,
            TokenKind::Punct if first == b'(' => {}
            TokenKind::Word if at_start => {
                keywords.push(Keyword::from_word(&src[tok.start..tok.end]));
                at_start = false;
            }
            _ => at_start = false,
        }
    }
    keywords
}
