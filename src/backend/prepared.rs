//! The statements prepared on one server connection under the proxy's own names, bounded LRU.

use std::collections::HashMap;

/// Statement keys prepared on a server, with a use counter for least-recently-used eviction.
///
/// A key hashes the statement text, parameter types and the session settings it was
/// prepared under, so clients share a server statement only when it means the same thing.
pub struct ServerPrepared {
    entries: HashMap<u64, u64>,
    clock: u64,
    capacity: usize,
}

impl ServerPrepared {
    pub fn new(capacity: usize) -> Self {
        ServerPrepared {
            entries: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    /// Marks `key` used; true when the server already has it.
    pub fn touch(&mut self, key: u64) -> bool {
        self.clock += 1;
        match self.entries.get_mut(&key) {
            Some(t) => {
                *t = self.clock;
                true
            }
            None => false,
        }
    }

    /// Records `key` as prepared; returns a key to close on the server when over capacity.
    pub fn insert(&mut self, key: u64) -> Option<u64> {
        self.clock += 1;
        self.entries.insert(key, self.clock);
        if self.entries.len() <= self.capacity {
            return None;
        }
        let victim = self
            .entries
            .iter()
            .filter(|(k, _)| **k != key)
            .min_by_key(|(_, t)| **t)
            .map(|(k, _)| *k)?;
        self.entries.remove(&victim);
        Some(victim)
    }

    pub fn remove(&mut self, key: u64) {
        self.entries.remove(&key);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The name a statement key has on every server.
pub fn server_name(key: u64) -> [u8; 25] {
    let mut name = *b"_pgsplit_0000000000000000";
    let hex = b"0123456789abcdef";
    let mut k = key;
    for i in (9..25).rev() {
        name[i] = hex[(k & 0xf) as usize];
        k >>= 4;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_oldest() {
        let mut p = ServerPrepared::new(2);
        assert!(!p.touch(1));
        assert_eq!(p.insert(1), None);
        assert_eq!(p.insert(2), None);
        assert!(p.touch(1));
        assert_eq!(p.insert(3), Some(2));
        assert!(p.touch(1));
        assert!(!p.touch(2));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn names_are_distinct() {
        assert_ne!(server_name(1), server_name(2));
        assert!(server_name(u64::MAX).iter().all(u8::is_ascii));
    }
}
