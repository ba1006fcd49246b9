//! A per-thread memo in front of the shared analysis cache: a repeated text costs a byte scan and one map lookup, not the lexer, the shape hash and moka's bookkeeping.

use super::lexer::Strings;
use super::Analysis;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries kept per thread and per kind of key. When full a map starts over: the shared cache
/// still holds the analyses.
const CAPACITY: usize = 256;

/// What a memo entry is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum By {
    /// The shape hash (literals masked by the lexer), salted with the catalog.
    Shape,
    /// [`text_key`], salted with the catalog: found before any lexing.
    Text,
}

type Memo = HashMap<(u64, u64), Arc<Analysis>, ahash::RandomState>;

#[derive(Default)]
struct Memos {
    shapes: Memo,
    texts: Memo,
}

impl Memos {
    fn of(&mut self, by: By) -> &mut Memo {
        match by {
            By::Shape => &mut self.shapes,
            By::Text => &mut self.texts,
        }
    }
}

thread_local! {
    static FRONT: RefCell<Memos> = RefCell::new(Memos::default());
}

/// The analysis `router` filed under `key`, if this thread saw it. Keys carry the catalog salt,
/// so an analysis made under an older catalog is never found.
pub(super) fn get(by: By, router: u64, key: u64) -> Option<Arc<Analysis>> {
    FRONT.with(|m| m.borrow_mut().of(by).get(&(router, key)).cloned())
}

/// Remembers an analysis that may be shared by every text of its key (`reuse_by_shape`).
pub(super) fn put(by: By, router: u64, key: u64, analysis: &Arc<Analysis>) {
    FRONT.with(|m| {
        let mut m = m.borrow_mut();
        let memo = m.of(by);
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert((router, key), analysis.clone());
    });
}

/// Texts longer than this are keyed by their shape only (a bulk INSERT rarely repeats).
const MAX_TEXT_KEY: usize = 4096;

/// Byte classes for [`text_key`]: what a digit after the byte means.
const OTHER: u8 = 0;
const WORD: u8 = 1;
const DIGIT: u8 = 2;
const QUOTE: u8 = 3;

const CLASS: [u8; 256] = {
    let mut c = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        c[b] = if byte.is_ascii_digit() {
            DIGIT
        } else if byte == b'"' {
            QUOTE
        } else if super::shape::fuses(byte as char) {
            WORD
        } else {
            OTHER
        };
        b += 1;
    }
    c
};

/// A hash of the text with each run of digits that does not continue a word masked: such a run
/// is (part of) a numeric literal, or lies inside a string or a comment, so two texts equal but
/// for those runs lex to the same tokens but for literal values, and have one shape. Digits
/// after a letter, `_`, `$` or a non-ASCII byte belong to a name or a `$n` and are kept (so the
/// exponent of `3e7` is kept too: a miss, never a wrong hit). None for a text with a double
/// quote, where a quoted name may hold a free-standing run (`"t 1"`), and for a long text. The
/// pgbench-style text that differs per request only in its numbers is then found without
/// lexing it.
pub(super) fn text_key(sql: &[u8], strings: Strings) -> Option<u64> {
    if sql.len() > MAX_TEXT_KEY {
        return None;
    }
    let mut out = Masked::new(strings);
    // What a digit here continues: nothing (OTHER), a name (WORD) or a masked run (DIGIT).
    let mut state = OTHER;
    let mut words = sql.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        let w = u64::from_le_bytes(eight);
        if digits_or_quote(w) == 0 {
            // Most of a text: eight bytes that stay as they are.
            out.eight(w);
            state = CLASS[usize::from(chunk[7])];
        } else {
            for &b in chunk {
                state = out.byte(b, state)?;
            }
        }
    }
    for &b in words.remainder() {
        state = out.byte(b, state)?;
    }
    Some(out.finish())
}

/// The high bit of each byte of `w` that is an ASCII digit, or set somewhere if one is `"`.
#[inline]
fn digits_or_quote(w: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let ascii = !w & HIGH;
    let low = w & (ONES * 0x7f);
    let from_0 = low + ONES * (0x80 - u64::from(b'0'));
    let past_9 = low + ONES * (0x80 - u64::from(b'9') - 1);
    let digits = from_0 & !past_9 & ascii;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    digits | quote
}

/// The masked byte stream, hashed eight bytes at a time as it is produced.
struct Masked {
    hash: u64,
    /// Bytes produced but not hashed yet, the first in the low byte.
    pending: u64,
    pending_len: u32,
    len: u64,
}

impl Masked {
    fn new(strings: Strings) -> Self {
        Masked {
            hash: super::shape::fold((strings as u64) << 32),
            pending: 0,
            pending_len: 0,
            len: 0,
        }
    }

    fn eight(&mut self, w: u64) {
        self.len += 8;
        if self.pending_len == 0 {
            self.hash = super::shape::fold(self.hash ^ w);
        } else {
            let shift = 8 * self.pending_len;
            self.hash = super::shape::fold(self.hash ^ (self.pending | w << shift));
            self.pending = w >> (64 - shift);
        }
    }

    fn push(&mut self, b: u8) {
        self.len += 1;
        self.pending |= u64::from(b) << (8 * self.pending_len);
        self.pending_len += 1;
        if self.pending_len == 8 {
            self.hash = super::shape::fold(self.hash ^ self.pending);
            self.pending = 0;
            self.pending_len = 0;
        }
    }

    /// One byte of the text after `state`: the state after it, or None at a double quote.
    fn byte(&mut self, b: u8, state: u8) -> Option<u8> {
        let class = CLASS[usize::from(b)];
        match (class, state) {
            (DIGIT, WORD) => {
                self.push(b);
                Some(WORD)
            }
            (DIGIT, DIGIT) => Some(DIGIT),
            // The mask byte: a statement text is a C string and never holds a NUL.
            (DIGIT, _) => {
                self.push(0);
                Some(DIGIT)
            }
            (QUOTE, _) => None,
            _ => {
                self.push(b);
                Some(class)
            }
        }
    }

    /// The length goes in last: the zeros that pad the final word are also the mask byte.
    fn finish(self) -> u64 {
        let h = if self.pending_len == 0 {
            self.hash
        } else {
            super::shape::fold(self.hash ^ self.pending)
        };
        super::shape::fold(h ^ self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_kinds_and_keys_stay_apart_and_the_memo_stays_bounded() {
        let a = Arc::new(super::super::analyze_uncached(
            "SELECT 1",
            &super::super::FunctionCatalog::builtin(),
        ));
        put(By::Shape, 1, 7, &a);
        assert!(get(By::Shape, 1, 7).is_some());
        assert!(get(By::Text, 1, 7).is_none(), "another kind of key");
        assert!(get(By::Shape, 2, 7).is_none(), "another router's entry");
        assert!(
            get(By::Shape, 1, 8).is_none(),
            "another key (a new catalog salt)"
        );
        for k in 0..(CAPACITY as u64 * 2) {
            put(By::Text, 3, k, &a);
        }
        FRONT.with(|m| assert!(m.borrow_mut().of(By::Text).len() <= CAPACITY));
    }

    fn key(sql: &str) -> Option<u64> {
        text_key(sql.as_bytes(), Strings::Standard)
    }

    /// Texts one key stands for have one shape; texts that differ in a name, a parameter
    /// number or anything but free-standing digits get different keys.
    #[test]
    fn a_text_key_masks_only_numbers() {
        let same = [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 987654;",
            ),
            (
                "select * from t where x in (1, 2.5, 3e7) limit 10",
                "select * from t where x in (42, 0.25, 8e7) limit 3",
            ),
            (
                "select '2024-01-01'::date, 12abc",
                "select '1999-12-31'::date, 7abc",
            ),
            ("select 1 -- note 2", "select 3 -- note 44"),
            ("select x.1", "select x.22"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a} / {b}");
            assert!(key(a).is_some());
            assert_eq!(super::super::shape(a), super::super::shape(b), "{a} / {b}");
        }
        let apart = [
            ("select * from t1", "select * from t2"),
            ("select $1", "select $2"),
            ("select * from tbl_1", "select * from tbl_2"),
            ("select 1", "select -1"),
            ("select 1", "select 'a'"),
            ("select 1", "select 1 1"),
            ("select * from tåble1", "select * from tåble2"),
        ];
        for (a, b) in apart {
            assert_ne!(key(a), key(b), "{a} / {b}");
        }
        assert_eq!(key(r#"select * from "tenant 1""#), None);
        assert_ne!(
            text_key(b"select 'a\\'", Strings::Standard),
            text_key(b"select 'a\\'", Strings::Backslash)
        );
    }
    /// Generated texts: renumbering every free-standing digit run (to other lengths, so the
    /// eight-byte steps fall elsewhere) keeps the key and the shape; a text with a name's
    /// digit changed gets another key.
    #[test]
    fn renumbered_texts_keep_their_key_and_their_shape() {
        const PIECES: &[&str] = &[
            "select ", "from ", "t1 ", "where ", "x", "_y2", " = ", "(", ")", ", ", "'a ", "b' ",
            "-- c 3\n", "/* 4 */", ".", "+", "$1 ", "é9 ", "::int4 ", "e", " ", "\\", ";",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize % n
        };
        for _ in 0..2000 {
            let mut a = String::new();
            let mut b = String::new();
            for _ in 0..next(40) {
                if next(3) == 0 {
                    // A free-standing number: after a space, so it starts no name.
                    a.push(' ');
                    b.push(' ');
                    a.push_str(&"7".repeat(1 + next(12)));
                    b.push_str(&"3".repeat(1 + next(12)));
                    a.push(' ');
                    b.push(' ');
                } else {
                    let p = PIECES[next(PIECES.len())];
                    a.push_str(p);
                    b.push_str(p);
                }
            }
            assert_eq!(key(&a), key(&b), "{a:?} / {b:?}");
            assert_eq!(
                super::super::shape(&a),
                super::super::shape(&b),
                "{a:?} / {b:?}"
            );
            if let Some(at) = a.find("t1") {
                let mut c = a.clone();
                c.replace_range(at..at + 2, "t2");
                assert_ne!(key(&a), key(&c), "{a:?} / {c:?}");
            }
        }
    }
}
