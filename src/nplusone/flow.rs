//! Data flow from a parent's result rows into a child's parameters: bounded per-stream hashes of recent multi-row results, and the links that confirm a loop.
//!
//! A loop over a parent's rows binds, execution after execution, the value one parent column
//! holds in row after row. So a child is linked to a `(parameter, column)` pair when its value
//! first appears in that column, and the link holds while each next execution takes the value of
//! the next row. Independent lookups that merely follow a list query never keep such a link for
//! long, whatever their timing; loops interleaved with other statements, and loops over a column
//! that is no key (its values repeat), keep it.

use std::sync::Arc;

/// Values hashed per result; rows beyond it are forwarded but not remembered.
pub const MAX_VALUES: usize = 4096;
/// Rows hashed per result.
pub const MAX_ROWS: u32 = 1000;
/// Bytes of column values hashed per result, so a result of wide rows costs little CPU.
pub const MAX_BYTES: usize = 256 * 1024;
/// Longest value hashed; longer ones (bodies, descriptions, JSON) stand as [`NONE`].
pub const MAX_KEY_BYTES: usize = 64;
/// Columns of a row that are hashed (a wider row keeps its first ones).
pub const MAX_COLUMNS: usize = 64;
/// Parameters of a statement whose values are compared.
pub const MAX_PARAMS: usize = 8;
/// Recent multi-row results kept per stream (the latest of each statement).
const PARENTS: usize = 4;
/// `(parameter, column)` pairs one child follows at once.
const MAX_PAIRS: usize = 8;
pub use super::literals::literals;

/// Stand-in for NULL and for a value not hashed: it matches nothing.
pub const NONE: u32 = 0;
/// Rows a loop may pass over between two executions (it skipped parents with a NULL or
/// filtered some out in the application) and still be walking the column.
const SKIP: u32 = 3;
/// Bits of the filter that tells, without a scan, that a value is in no column of a result.
const FILTER_WORDS: usize = 32;

/// The hash of one value's bytes as sent on the wire (text or binary); never [`NONE`].
///
/// Every value of every multi-row result goes through it, so it is a plain multiply-xor over
/// 8-byte words (a few ns for a key), not a keyed hasher: a collision only lets a value seem to
/// come from a parent, and a loop needs `threshold` of them in row order.
pub fn value_hash(bytes: &[u8]) -> u32 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    ((h ^ (h >> 29)) as u32) | 1
}

/// The parameter values of one execution, hashed (a Bind's values or a simple Query's literals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Values {
    pub len: u8,
    pub hashes: [u32; MAX_PARAMS],
}

impl Values {
    pub fn push(&mut self, h: u32) {
        if (self.len as usize) < MAX_PARAMS {
            self.hashes[self.len as usize] = h;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[u32] {
        &self.hashes[..self.len as usize]
    }
}

/// One result's values, row after row, `columns` per row.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    pub columns: usize,
    pub rows: u32,
    pub values: Vec<u32>,
    bytes: usize,
    /// A row of another width arrived: the result is no table of values.
    ragged: bool,
    /// One bit per value hashed (a Bloom filter with one hash): most statements' values are in
    /// no recent result, and this says so without scanning the values.
    filter: [u64; FILTER_WORDS],
    /// Rows hashed at most (0: [`MAX_ROWS`]); see [`rows_to_hash`].
    pub limit: u32,
}

/// Rows of a result worth hashing with `threshold`: a loop is confirmed once its child walked
/// `threshold` rows and then goes on without the link, so rows far past that only cost CPU.
pub fn rows_to_hash(threshold: u32) -> u32 {
    threshold.saturating_mul(2).clamp(16, MAX_ROWS)
}

impl Rows {
    /// Adds one DataRow (its body: column count, then length-prefixed values); stops at the caps.
    pub fn add_row(&mut self, body: &[u8]) {
        let limit = if self.limit == 0 {
            MAX_ROWS
        } else {
            self.limit
        };
        if self.ragged || self.rows >= limit || self.bytes >= MAX_BYTES {
            return;
        }
        let Some((n, mut rest)) = body
            .split_first_chunk::<2>()
            .map(|(n, r)| (u16::from_be_bytes(*n) as usize, r))
        else {
            return;
        };
        let n = n.min(MAX_COLUMNS);
        if self.rows == 0 {
            self.columns = n;
        } else if n != self.columns {
            self.ragged = true;
            return;
        }
        if n == 0 || self.values.len() + n > MAX_VALUES {
            return;
        }
        if self.values.capacity() == 0 {
            self.values.reserve(n * 16);
        }
        let start = self.values.len();
        for _ in 0..n {
            let Some((len, r)) = rest.split_first_chunk::<4>() else {
                self.values.truncate(start);
                self.ragged = true;
                return;
            };
            let len = i32::from_be_bytes(*len);
            if len < 0 {
                self.values.push(NONE);
                rest = r;
                continue;
            }
            let len = len as usize;
            let Some(v) = r.get(..len) else {
                self.values.truncate(start);
                self.ragged = true;
                return;
            };
            if len > MAX_KEY_BYTES {
                // Text of that length is no key a loop binds: not worth its hashing.
                self.values.push(NONE);
                self.bytes += len;
                rest = &r[len..];
                continue;
            }
            let h = value_hash(v);
            self.values.push(h);
            let bit = (h >> 1) as usize % (FILTER_WORDS * 64);
            self.filter[bit / 64] |= 1 << (bit % 64);
            self.bytes += len;
            rest = &r[len..];
        }
        self.rows += 1;
    }

    /// Whether it can have driven a loop: two rows or more of something.
    pub fn is_parent(&self) -> bool {
        !self.ragged && self.rows >= 2 && self.columns > 0
    }

    /// Whether no row of a result has been read into it since it was last emptied.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && !self.ragged && self.values.is_empty()
    }

    /// Empties it for the next result, keeping its buffer.
    pub fn clear(&mut self) {
        if self.is_empty() {
            return;
        }
        self.values.clear();
        self.columns = 0;
        self.rows = 0;
        self.bytes = 0;
        self.ragged = false;
        self.filter = [0; FILTER_WORDS];
    }

    /// False when no column of the result holds `v`; true when one may.
    fn may_hold(&self, v: u32) -> bool {
        let bit = (v >> 1) as usize % (FILTER_WORDS * 64);
        self.filter[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn at(&self, row: u32, column: usize) -> u32 {
        self.values
            .get(row as usize * self.columns + column)
            .copied()
            .unwrap_or(NONE)
    }
}

/// A recent multi-row result and the statement that returned it.
struct Parent {
    fingerprint: u64,
    seq: u64,
    query: Arc<str>,
    rows: Rows,
}

/// The parents of one stream, most recent last.
#[derive(Default)]
pub struct Parents {
    list: Vec<Parent>,
}

impl Parents {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Keeps `rows` as the latest result of `fingerprint` (executed as `seq`).
    pub fn keep(&mut self, fingerprint: u64, seq: u64, query: &Arc<str>, rows: Rows) {
        if let Some(i) = self.list.iter().position(|p| p.fingerprint == fingerprint) {
            self.list.remove(i);
        } else if self.list.len() >= PARENTS {
            self.list.remove(0);
        }
        self.list.push(Parent {
            fingerprint,
            seq,
            query: query.clone(),
            rows,
        });
    }

    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// A new execution of `fingerprint` returned no multi-row result: its old one is stale.
    pub fn forget(&mut self, fingerprint: u64) {
        self.list.retain(|p| p.fingerprint != fingerprint);
    }

    /// Whether `fingerprint` has run again since its result `seq` (or lost it).
    pub fn ran_again(&self, fingerprint: u64, seq: u64) -> bool {
        !self
            .list
            .iter()
            .any(|p| p.fingerprint == fingerprint && p.seq == seq)
    }

    /// Bytes of hashes held, for the bound's test.
    #[cfg(test)]
    pub fn held_values(&self) -> usize {
        self.list.iter().map(|p| p.rows.values.len()).sum()
    }

    fn get(&self, seq: u64) -> Option<&Parent> {
        self.list.iter().find(|p| p.seq == seq)
    }
}

/// One way a child's parameter follows a parent's column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// 0-based parameter ($1 is 0).
    pub param: u8,
    /// 0-based column of the parent's result.
    pub column: u16,
    next_row: u32,
    /// Executions in a row that took the column's next value.
    pub matched: u32,
    /// The value the last of them took, and how often it differed from the one before: a
    /// parameter that never changes (a constant status matching a column of equal statuses) is
    /// no walk over the parent's rows.
    last: u32,
    pub changes: u32,
}

/// A child's link to the parent whose rows it is walking.
#[derive(Debug, Default)]
pub struct Link {
    pub parent_seq: u64,
    pub parent_fingerprint: u64,
    pub parent_query: Option<Arc<str>>,
    pairs: Vec<Pair>,
}

impl Link {
    /// Feeds one execution of the child (`fingerprint`) with its parameter values.
    pub fn step(&mut self, parents: &Parents, fingerprint: u64, values: &[u32]) {
        let alive = match parents.get(self.parent_seq) {
            Some(p) if !self.pairs.is_empty() && values.len() <= MAX_PARAMS => {
                self.pairs.retain_mut(|pair| {
                    let v = values.get(pair.param as usize).copied().unwrap_or(NONE);
                    let ahead = pair.next_row..(pair.next_row + SKIP + 1).min(p.rows.rows);
                    let found = (v != NONE)
                        .then(|| {
                            ahead
                                .into_iter()
                                .find(|&r| p.rows.at(r, pair.column as usize) == v)
                        })
                        .flatten();
                    let Some(row) = found else {
                        return false;
                    };
                    pair.next_row = row + 1;
                    pair.matched += 1;
                    pair.changes += u32::from(v != pair.last);
                    pair.last = v;
                    true
                });
                !self.pairs.is_empty()
            }
            _ => false,
        };
        if !alive {
            self.relink(parents, fingerprint, values);
        }
    }

    /// The most recent parent one of whose columns holds one of the values; the pairs start at
    /// the first row holding it.
    fn relink(&mut self, parents: &Parents, fingerprint: u64, values: &[u32]) {
        self.pairs.clear();
        self.parent_seq = 0;
        self.parent_query = None;
        for p in parents.list.iter().rev() {
            if p.fingerprint == fingerprint {
                continue;
            }
            for (param, &v) in values.iter().enumerate() {
                if v == NONE || !p.rows.may_hold(v) {
                    continue;
                }
                // One pass over the values in row order: the first row of each column
                // holding `v` starts a pair.
                let columns = p.rows.columns;
                for (i, &h) in p.rows.values.iter().enumerate() {
                    if h != v || self.pairs.len() >= MAX_PAIRS {
                        continue;
                    }
                    let column = (i % columns) as u16;
                    let param = param as u8;
                    if self
                        .pairs
                        .iter()
                        .any(|q| q.param == param && q.column == column)
                    {
                        continue;
                    }
                    self.pairs.push(Pair {
                        param,
                        column,
                        next_row: (i / columns) as u32 + 1,
                        matched: 1,
                        last: v,
                        changes: 0,
                    });
                }
            }
            if !self.pairs.is_empty() {
                self.parent_seq = p.seq;
                self.parent_fingerprint = p.fingerprint;
                self.parent_query = Some(p.query.clone());
                return;
            }
        }
    }

    /// The pair followed longest, if it has been followed at least `n` times in a row over
    /// more than one value.
    pub fn confirmed(&self, n: u32) -> Option<Pair> {
        self.pairs
            .iter()
            .copied()
            .filter(|p| p.matched >= n && p.changes > 0)
            .max_by_key(|p| (p.matched, std::cmp::Reverse((p.param, p.column))))
    }

    pub fn clear(&mut self) {
        self.pairs.clear();
        self.parent_seq = 0;
        self.parent_query = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    fn result(rows: &[[&str; 2]]) -> Rows {
        let mut r = Rows::default();
        for x in rows {
            r.add_row(&row(&[Some(x[0].as_bytes()), Some(x[1].as_bytes())]));
        }
        r
    }

    fn vals(v: &[&str]) -> Vec<u32> {
        v.iter().map(|s| value_hash(s.as_bytes())).collect()
    }

    #[test]
    fn rows_are_hashed_within_their_caps() {
        let mut r = Rows::default();
        r.add_row(&row(&[Some(b"1"), None]));
        r.add_row(&row(&[Some(b"2"), Some(b"x")]));
        assert!(r.is_parent());
        assert_eq!(
            r.values,
            vec![value_hash(b"1"), NONE, value_hash(b"2"), value_hash(b"x")]
        );
        // A truncated row is no value at all.
        r.add_row(&[0, 2, 0, 0, 0, 9, b'a']);
        assert!(!r.is_parent());
        let mut r = Rows::default();
        for i in 0..5000u32 {
            r.add_row(&row(&[Some(i.to_string().as_bytes())]));
        }
        assert_eq!(r.rows, MAX_ROWS);
        let mut r = Rows {
            limit: rows_to_hash(10),
            ..Rows::default()
        };
        for i in 0..100u32 {
            r.add_row(&row(&[Some(i.to_string().as_bytes())]));
        }
        assert_eq!((r.rows, r.values.len()), (20, 20), "twice the threshold");
        assert_eq!(rows_to_hash(1), 16);
        let wide = vec![b'w'; MAX_BYTES];
        let mut r = Rows::default();
        r.add_row(&row(&[Some(&wide)]));
        r.add_row(&row(&[Some(b"after")]));
        assert_eq!(r.rows, 1, "nothing hashed past the byte cap");
    }

    #[test]
    fn a_walk_over_a_column_is_confirmed_and_independent_values_are_not() {
        let mut parents = Parents::default();
        let rows = result(&[["1", "a"], ["2", "b"], ["3", "a"], ["4", "c"]]);
        parents.keep(1, 10, &Arc::from("SELECT id, city FROM p"), rows);
        let mut link = Link::default();
        // The non-key column: a, b, a, c (values repeat).
        for v in ["a", "b", "a", "c"] {
            link.step(&parents, 2, &vals(&["x", v]));
        }
        let p = link.confirmed(4).expect("walked four rows");
        assert_eq!((p.param, p.column, p.matched), (1, 1, 4));
        assert_eq!(link.parent_fingerprint, 1);
        // Values that occur in the parent, but not row after row.
        let mut link = Link::default();
        for v in ["3", "1", "4", "2"] {
            link.step(&parents, 2, &vals(&[v]));
        }
        assert!(link.confirmed(2).is_none());
        // A statement is never its own parent.
        let mut link = Link::default();
        link.step(&parents, 1, &vals(&["1"]));
        assert!(link.confirmed(1).is_none());
    }

    #[test]
    fn a_constant_parameter_is_no_walk_and_a_loop_may_skip_a_few_rows() {
        let mut parents = Parents::default();
        // Every row holds 'active': a lookup that always binds 'active' matches row after row.
        let rows: Vec<[&str; 2]> = (1..=20)
            .map(|i| {
                [
                    ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"][i % 10],
                    "active",
                ]
            })
            .collect();
        parents.keep(
            1,
            10,
            &Arc::from("SELECT id, status FROM leads"),
            result(&rows),
        );
        let mut link = Link::default();
        for id in [
            "17", "4", "99", "23", "5", "61", "8", "12", "40", "77", "3", "1",
        ] {
            link.step(&parents, 2, &vals(&["active", id]));
        }
        assert!(link.confirmed(10).is_none(), "{link:?}");
        // A loop that leaves out the rows it has no use for (up to SKIP in a row) still walks.
        let rows = result(&[
            ["1", "a"],
            ["2", "b"],
            ["3", "c"],
            ["4", "d"],
            ["5", "e"],
            ["6", "f"],
            ["7", "g"],
        ]);
        parents.keep(3, 11, &Arc::from("SELECT id, code FROM p"), rows);
        let mut link = Link::default();
        for v in ["1", "2", "5", "6", "7"] {
            link.step(&parents, 4, &vals(&[v]));
        }
        let p = link.confirmed(5).expect("walked with a gap of two rows");
        assert_eq!((p.param, p.column, p.matched, p.changes), (0, 0, 5, 4));
        // A gap wider than SKIP breaks the walk: the values start a new one.
        let mut parents = Parents::default();
        let many: Vec<[&str; 2]> = (0..10)
            .map(|i| [["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][i], "x"])
            .collect();
        parents.keep(5, 12, &Arc::from("SELECT k, x FROM q"), result(&many));
        let mut link = Link::default();
        for v in ["a", "b", "g", "h"] {
            link.step(&parents, 6, &vals(&[v]));
        }
        assert_eq!(link.confirmed(1).map(|p| p.matched), Some(2));
    }

    #[test]
    fn the_filter_never_hides_a_value_that_is_there() {
        let mut r = Rows::default();
        for i in 0..500u32 {
            r.add_row(&row(&[Some(i.to_string().as_bytes()), Some(b"k")]));
        }
        assert!(r.values.iter().all(|&v| r.may_hold(v)));
        let absent = (10_000..12_000u32)
            .filter(|i| r.may_hold(value_hash(i.to_string().as_bytes())))
            .count();
        assert!(
            absent < 800,
            "{absent} of 2000 absent values pass the filter"
        );
        r.clear();
        assert!(!r.may_hold(value_hash(b"k")) && r.rows == 0 && r.values.is_empty());
    }
}
