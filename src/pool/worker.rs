//! Which data worker the current thread is: each worker keeps its own server connections.
//!
//! A tokio socket is driven by the reactor of the runtime that registered it. A server
//! connection opened on one worker's thread and handed to a client on another would wake the
//! first thread for every reply and move the transaction between threads; so each worker
//! leases only from its own share of each pool, and the share is picked by the thread asking.

use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as worker `index` for the rest of its life (set once, at its start).
pub fn enter(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// This thread's worker; 0 on threads that are not workers (the control runtime, tests).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// Worker `index`'s part of `total` among `workers` (`pool.min_idle`, kept per worker): an even
/// split whose parts sum to `total`.
pub fn split(total: usize, index: usize, workers: usize) -> usize {
    let workers = workers.max(1);
    total / workers + usize::from(index < total % workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_even_and_sum_to_the_total() {
        for (total, workers) in [(50, 1), (50, 2), (100, 3), (7, 4), (2, 16), (0, 2)] {
            let parts: Vec<usize> = (0..workers).map(|i| split(total, i, workers)).collect();
            assert_eq!(parts.iter().sum::<usize>(), total, "{total} over {workers}");
            let (lo, hi) = (parts.iter().min(), parts.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{parts:?}");
        }
    }

    #[test]
    fn the_index_is_per_thread() {
        enter(3);
        assert_eq!(current(), 3);
        let other = std::thread::spawn(current).join();
        assert_eq!(other.ok(), Some(0));
    }
}
