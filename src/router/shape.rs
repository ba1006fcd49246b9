//! Statement shapes: a hash of the token stream with literal values masked (the analysis cache key), and a literal-free normal form.

use super::lexer::{Lexer, TokenKind};

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

/// A 64-bit running hash built on the folded multiply used by wyhash and ahash: fast, and with
/// fixed keys so shapes (and the fingerprints of unparsable text derived from them) are stable.
struct Mixer(u64);

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;

impl Mixer {
    #[inline]
    fn mix(&mut self, word: u64) {
        let x = u128::from(self.0 ^ word) * u128::from(K1);
        self.0 = ((x as u64) ^ ((x >> 64) as u64)).wrapping_add(K0);
    }

    #[inline]
    fn bytes(&mut self, tag: u64, bytes: &[u8], fold_case: bool) {
        self.mix(tag | (bytes.len() as u64) << 8);
        for chunk in bytes.chunks(8) {
            let mut word = 0u64;
            for (i, &b) in chunk.iter().enumerate() {
                let b = if fold_case { b.to_ascii_lowercase() } else { b };
                word |= u64::from(b) << (i * 8);
            }
            self.mix(word);
        }
    }
}

const TAG_WORD: u64 = 1;
const TAG_QUOTED: u64 = 2;
const TAG_LITERAL: u64 = 3;
const TAG_PARAM: u64 = 4;
const TAG_OPERATOR: u64 = 5;
const TAG_PUNCT: u64 = 6;
const TAG_HINT: u64 = 7;
const TAG_UNTERMINATED: u64 = 8;

/// Computes the shape of a statement text: the hot-path key of the analysis cache.
pub fn shape(sql: &str) -> Shape {
    let src = sql.as_bytes();
    let mut lexer = Lexer::new(sql);
    let mut h = Mixer(K0);
    let mut first_keyword = Keyword::None;
    let mut leading = true;
    let mut statements = 0u32;
    let mut in_statement = false;
    let mut literals = 0u32;
    for tok in lexer.by_ref() {
        let text = &src[tok.start..tok.end];
        match tok.kind {
            TokenKind::Word => h.bytes(TAG_WORD, text, true),
            TokenKind::QuotedIdent => h.bytes(TAG_QUOTED, text, false),
            TokenKind::Literal => {
                literals += 1;
                h.mix(TAG_LITERAL);
            }
            TokenKind::Param => h.bytes(TAG_PARAM, text, false),
            TokenKind::Operator => h.bytes(TAG_OPERATOR, text, false),
            TokenKind::Punct => h.mix(TAG_PUNCT | u64::from(text[0]) << 8),
        }
        if leading {
            match tok.kind {
                TokenKind::Word => {
                    first_keyword = Keyword::from_word(text);
                    leading = false;
                }
                TokenKind::Punct if text[0] == b'(' => {}
                _ => leading = false,
            }
        }
        if tok.kind == TokenKind::Punct && text[0] == b';' {
            in_statement = false;
        } else if !in_statement {
            in_statement = true;
            statements += 1;
        }
    }
    if lexer.hint {
        h.mix(TAG_HINT);
    }
    if lexer.unterminated {
        h.mix(TAG_UNTERMINATED);
    }
    h.mix(u64::from(statements));
    Shape {
        hash: h.0,
        primary_hint: lexer.hint,
        first_keyword,
        statements,
        literals,
    }
}

/// Rewrites a text with every literal replaced by `$n` (numbered after the highest `$n` already
/// present), comments dropped and whitespace runs collapsed to one space.
pub fn normalize(sql: &str) -> String {
    let max_param = Lexer::new(sql)
        .filter(|t| t.kind == TokenKind::Param)
        .filter_map(|t| sql.get(t.start + 1..t.end)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let mut next = max_param + 1;
    let mut out = String::with_capacity(sql.len());
    for tok in Lexer::new(sql) {
        if tok.space_before && !out.is_empty() {
            out.push(' ');
        }
        if tok.kind == TokenKind::Literal {
            out.push('$');
            out.push_str(&next.to_string());
            next += 1;
        } else {
            // Token bounds always fall on ASCII bytes, so this slice cannot fail; stay total anyway.
            out.push_str(sql.get(tok.start..tok.end).unwrap_or(""));
        }
    }
    out
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
