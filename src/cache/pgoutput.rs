//! Just enough of the pgoutput logical replication format to learn which relations each committed transaction changed.

use std::collections::HashMap;

/// One decoded pgoutput message, reduced to what invalidation needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Begin,
    /// The transaction's commit LSN.
    Commit {
        lsn: u64,
    },
    /// The relation an OID stands for in the messages that follow.
    Relation {
        oid: u32,
        namespace: String,
        name: String,
    },
    /// Rows of these relations changed (Insert, Update, Delete) or were truncated.
    Changed(Vec<u32>),
    /// Origin, Type, logical messages and anything newer: nothing to invalidate.
    Other,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput message '{tag}' is truncated")]
pub struct Truncated {
    tag: char,
}

struct Cursor<'a> {
    b: &'a [u8],
    tag: char,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.b.len() < n {
            return Err(Truncated { tag: self.tag });
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Truncated> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Truncated> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn cstr(&mut self) -> Result<String, Truncated> {
        let end = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or(Truncated { tag: self.tag })?;
        let s = String::from_utf8_lossy(&self.b[..end]).into_owned();
        self.b = &self.b[end + 1..];
        Ok(s)
    }
}

/// Decodes one message (protocol version 1, as `pg_logical_slot_get_binary_changes` returns it).
pub fn decode(data: &[u8]) -> Result<Message, Truncated> {
    let Some((&t, rest)) = data.split_first() else {
        return Err(Truncated { tag: '?' });
    };
    let mut c = Cursor {
        b: rest,
        tag: char::from(t),
    };
    Ok(match t {
        b'B' => Message::Begin,
        b'C' => {
            c.take(1)?;
            Message::Commit { lsn: c.u64()? }
        }
        b'R' => Message::Relation {
            oid: c.u32()?,
            namespace: c.cstr()?,
            name: c.cstr()?,
        },
        b'I' | b'U' | b'D' => Message::Changed(vec![c.u32()?]),
        b'T' => {
            let n = c.u32()? as usize;
            c.take(1)?;
            let mut oids = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                oids.push(c.u32()?);
            }
            Message::Changed(oids)
        }
        _ => Message::Other,
    })
}

/// Follows a stream of messages, yielding each committed transaction's relation names.
#[derive(Default)]
pub struct Decoder {
    relations: HashMap<u32, String>,
    pending: Vec<u32>,
}

impl Decoder {
    /// Feeds one message; returns the changed relations (unqualified names) and the commit
    /// LSN when it ends a transaction that changed any.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Vec<String>, u64)>, Truncated> {
        match decode(data)? {
            Message::Begin => self.pending.clear(),
            Message::Relation { oid, name, .. } => {
                self.relations.insert(oid, name.to_ascii_lowercase());
            }
            Message::Changed(oids) => self.pending.extend(oids),
            Message::Commit { lsn } => {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                let mut names: Vec<String> = self
                    .pending
                    .drain(..)
                    .map(|oid| {
                        self.relations
                            .get(&oid)
                            .cloned()
                            // pgoutput always sends Relation first; an OID it did not name
                            // still invalidates by number rather than not at all.
                            .unwrap_or_else(|| format!("<oid {oid}>"))
                    })
                    .collect();
                names.sort_unstable();
                names.dedup();
                return Ok(Some((names, lsn)));
            }
            Message::Other => {}
        }
        Ok(None)
    }

    /// Whether a relation OID has no name yet (then everything must be invalidated).
    pub fn knows(&self, oid: u32) -> bool {
        self.relations.contains_key(&oid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(oid: u32, ns: &str, name: &str) -> Vec<u8> {
        let mut v = vec![b'R'];
        v.extend_from_slice(&oid.to_be_bytes());
        v.extend_from_slice(ns.as_bytes());
        v.push(0);
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        v.extend_from_slice(&[b'd', 0, 0]);
        v
    }

    fn change(tag: u8, oid: u32) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&oid.to_be_bytes());
        v.extend_from_slice(b"N\0\0");
        v
    }

    fn commit(lsn: u64) -> Vec<u8> {
        let mut v = vec![b'C', 0];
        v.extend_from_slice(&lsn.to_be_bytes());
        v.extend_from_slice(&(lsn + 8).to_be_bytes());
        v.extend_from_slice(&0u64.to_be_bytes());
        v
    }

    #[test]
    fn a_transaction_yields_its_relations_at_commit() {
        let mut d = Decoder::default();
        let mut begin = vec![b'B'];
        begin.extend_from_slice(&[0; 20]);
        assert_eq!(d.feed(&begin).unwrap(), None);
        assert_eq!(d.feed(&relation(16384, "public", "Leads")).unwrap(), None);
        assert_eq!(d.feed(&change(b'I', 16384)).unwrap(), None);
        assert_eq!(d.feed(&change(b'U', 16384)).unwrap(), None);
        assert_eq!(d.feed(&relation(16390, "crm", "notes")).unwrap(), None);
        assert_eq!(d.feed(&change(b'D', 16390)).unwrap(), None);
        let (names, lsn) = d.feed(&commit(0x1_0000_0040)).unwrap().unwrap();
        assert_eq!(names, vec!["leads".to_string(), "notes".to_string()]);
        assert_eq!(lsn, 0x1_0000_0040);
        // Relation messages are remembered across transactions.
        d.feed(&begin).unwrap();
        d.feed(&change(b'I', 16390)).unwrap();
        assert_eq!(d.feed(&commit(9)).unwrap().unwrap().0, vec!["notes"]);
        assert!(d.knows(16384));
    }

    #[test]
    fn truncate_lists_every_relation() {
        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(0);
        t.extend_from_slice(&7u32.to_be_bytes());
        t.extend_from_slice(&8u32.to_be_bytes());
        assert_eq!(decode(&t).unwrap(), Message::Changed(vec![7, 8]));
        t.truncate(t.len() - 2);
        assert!(decode(&t).is_err());
    }

    #[test]
    fn empty_transactions_yield_nothing_and_junk_is_an_error() {
        let mut d = Decoder::default();
        assert_eq!(d.feed(&commit(1)).unwrap(), None);
        assert!(decode(&[]).is_err());
        assert!(decode(b"R\0\0").is_err());
        assert_eq!(decode(b"Yxyz").unwrap(), Message::Other);
    }
}
