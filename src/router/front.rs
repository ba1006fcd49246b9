//! A per-thread memo in front of the shared analysis cache: a repeated shape costs one map lookup, not moka's bookkeeping (its clock read, hashing and read log).

use super::Analysis;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Shapes kept per thread. When full the memo starts over: the shared cache still holds them.
const CAPACITY: usize = 256;

type Memo = HashMap<(u64, u64), Arc<Analysis>, ahash::RandomState>;

thread_local! {
    static FRONT: RefCell<Memo> = RefCell::new(Memo::default());
}

/// The analysis `router` filed under `key`, if this thread saw it. Keys carry the catalog salt,
/// so an analysis made under an older catalog is never found.
pub(super) fn get(router: u64, key: u64) -> Option<Arc<Analysis>> {
    FRONT.with(|m| m.borrow().get(&(router, key)).cloned())
}

/// Remembers an analysis the shared cache holds under `key`.
pub(super) fn put(router: u64, key: u64, analysis: &Arc<Analysis>) {
    FRONT.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert((router, key), analysis.clone());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_and_keys_stay_apart_and_the_memo_stays_bounded() {
        let a = Arc::new(super::super::analyze_uncached(
            "SELECT 1",
            &super::super::FunctionCatalog::builtin(),
        ));
        put(1, 7, &a);
        assert!(get(1, 7).is_some());
        assert!(get(2, 7).is_none(), "another router's entry");
        assert!(get(1, 8).is_none(), "another key (a new catalog salt)");
        for k in 0..(CAPACITY as u64 * 2) {
            put(3, k, &a);
        }
        FRONT.with(|m| assert!(m.borrow().len() <= CAPACITY));
    }
}
