//! Giving back an empty container's capacity while a session is idle, so an idle client holds none.

use bytes::BytesMut;
use std::collections::VecDeque;

/// A per-request container an idle session empties of its allocation; the next request
/// allocates again, a few small allocations against a round trip to the server.
pub trait Shed: Default {
    /// Empty, yet holding an allocation.
    fn holds_spare(&self) -> bool;

    fn shed(&mut self) {
        if self.holds_spare() {
            *self = Self::default();
        }
    }
}

impl<T> Shed for Vec<T> {
    fn holds_spare(&self) -> bool {
        self.is_empty() && self.capacity() > 0
    }
}

impl<T> Shed for VecDeque<T> {
    fn holds_spare(&self) -> bool {
        self.is_empty() && self.capacity() > 0
    }
}

/// A split-off write shares, and keeps alive, the whole allocation it came from.
impl Shed for BytesMut {
    fn holds_spare(&self) -> bool {
        self.is_empty() && self.capacity() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::Shed;

    #[test]
    fn only_an_empty_container_gives_its_allocation_back() {
        let mut v: Vec<u8> = Vec::with_capacity(64);
        v.push(1);
        v.shed();
        assert!(
            v.capacity() >= 64,
            "a container in use keeps its allocation"
        );
        v.clear();
        v.shed();
        assert_eq!(v.capacity(), 0);
        let mut b = bytes::BytesMut::with_capacity(128);
        b.shed();
        assert_eq!(b.capacity(), 0);
    }
}
