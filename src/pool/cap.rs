//! A resizable cap on a pool's connections in use: deadpool's `resize` cannot lower how many it hands out.
//!
//! deadpool 0.13 shrinks by forgetting permits of idle objects only, so a pool shrunk while it
//! holds few connections still hands out as many as its old size. This cap is the one that
//! counts; deadpool is resized alongside it and stays the store of idle connections.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Cap {
    inner: Arc<Inner>,
    size: Mutex<usize>,
}

struct Inner {
    sem: Arc<Semaphore>,
    /// Permits still to be withdrawn after a shrink: held ones are forgotten as they come back.
    debt: AtomicUsize,
}

/// One connection's place under the cap, given back (or withdrawn, after a shrink) on drop.
pub struct CapPermit {
    permit: Option<OwnedSemaphorePermit>,
    inner: Arc<Inner>,
}

impl Cap {
    pub fn new(size: usize) -> Cap {
        Cap {
            inner: Arc::new(Inner {
                sem: Arc::new(Semaphore::new(size)),
                debt: AtomicUsize::new(0),
            }),
            size: Mutex::new(size),
        }
    }

    /// Waits for a place. Cancel safe (tokio's semaphore queue is).
    pub async fn acquire(&self) -> CapPermit {
        let permit = self.inner.sem.clone().acquire_owned().await.ok();
        // The semaphore is never closed, so `permit` is always Some.
        CapPermit {
            permit,
            inner: self.inner.clone(),
        }
    }

    /// A place if one is free now, without queueing behind waiters.
    pub fn try_acquire(&self) -> Option<CapPermit> {
        let permit = self.inner.sem.clone().try_acquire_owned().ok()?;
        Some(CapPermit {
            permit: Some(permit),
            inner: self.inner.clone(),
        })
    }

    pub fn size(&self) -> usize {
        *self.size.lock()
    }

    pub fn resize(&self, new: usize) {
        let mut size = self.size.lock();
        if new > *size {
            let mut grow = new - *size;
            // Cancel outstanding debt before adding permits.
            let _ = self
                .inner
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    let paid = d.min(grow);
                    Some(d - paid)
                })
                .map(|d| grow -= d.min(grow));
            self.inner.sem.add_permits(grow);
        } else if new < *size {
            let shrink = *size - new;
            let forgotten = self.inner.sem.forget_permits(shrink);
            self.inner
                .debt
                .fetch_add(shrink - forgotten, Ordering::AcqRel);
        }
        *size = new;
    }
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        let in_debt = self
            .inner
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if let Some(p) = self.permit.take() {
            if in_debt {
                p.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinking_while_held_withdraws_places_as_they_return() {
        let cap = Cap::new(3);
        let a = cap.acquire().await;
        let b = cap.acquire().await;
        cap.resize(1);
        // Two held, one free: the free one goes at once, one more when a holder returns.
        assert_eq!(cap.inner.sem.available_permits(), 0);
        drop(a);
        assert_eq!(cap.inner.sem.available_permits(), 0);
        drop(b);
        assert_eq!(cap.inner.sem.available_permits(), 1);
        cap.resize(4);
        assert_eq!(cap.inner.sem.available_permits(), 4);
    }

    #[tokio::test]
    async fn growing_pays_debt_first() {
        let cap = Cap::new(2);
        let a = cap.acquire().await;
        let b = cap.acquire().await;
        cap.resize(0);
        cap.resize(1);
        // One place withdrawn for good, one still owed by a holder.
        drop(a);
        drop(b);
        assert_eq!(cap.inner.sem.available_permits(), 1);
    }
}
