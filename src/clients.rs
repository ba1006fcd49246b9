//! The connected clients: how many are open, the cancel keys the proxy issues them, who they are, and the server each is using.

use crate::error::ClientError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// Where a client's query is running right now.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    /// Shared with the server's pool entry, so taking a connection copies no string.
    pub host: Arc<str>,
    pub port: u16,
    pub pid: i32,
    pub secret: i32,
}

/// The server a session is using, updated on every lease and release, and the session's task,
/// woken when the proxy stops.
#[derive(Default, Debug)]
pub struct CancelSlot {
    target: Mutex<Option<CancelTarget>>,
    task: Mutex<Option<Waker>>,
}

impl CancelSlot {
    /// The session waits with this waker: the proxy's stop wakes it. One uncontended lock, where
    /// listening on the shutdown channel took its lock twice per wait, several waits a request.
    pub fn park(&self, waker: &Waker) {
        let mut task = self.task.lock();
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }

    fn wake(&self) {
        if let Some(w) = self.task.lock().take() {
            w.wake();
        }
    }

    pub fn set(&self, t: Option<CancelTarget>) {
        *self.target.lock() = t;
    }

    pub fn get(&self) -> Option<CancelTarget> {
        self.target.lock().clone()
    }
}

/// Who a client is, for SHOW CLIENTS.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub peer: Option<std::net::SocketAddr>,
    pub connected_at: std::time::SystemTime,
}

/// One row of SHOW CLIENTS.
#[derive(Clone, Debug)]
pub struct ClientRow {
    pub pid: i32,
    pub info: Arc<ClientInfo>,
    /// The server the client holds a connection to right now, if any.
    pub server: Option<String>,
}

/// A session's cancel secret, its current server, and who it is.
type Entry = (i32, Arc<CancelSlot>, Arc<ClientInfo>);

#[derive(Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<i32, Entry>>,
    stopping: AtomicBool,
}

/// Removes a session's key when the session ends.
pub struct Registration {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: i32,
    pub slot: Arc<CancelSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.sessions.lock().remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Issues a fresh, unused (pid, secret) pair for a session.
    pub fn register(self: &Arc<Self>, info: ClientInfo) -> Registration {
        let slot = Arc::new(CancelSlot::default());
        let mut sessions = self.sessions.lock();
        let (pid, secret) = loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !sessions.contains_key(&pid) {
                break (pid, rand::random::<i32>());
            }
        };
        sessions.insert(pid, (secret, slot.clone(), Arc::new(info)));
        Registration {
            registry: self.clone(),
            pid,
            secret,
            slot,
        }
    }

    /// The server to cancel, if the key matches a session that is running something.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelTarget> {
        let sessions = self.sessions.lock();
        let (s, slot, _) = sessions.get(&pid)?;
        if *s != secret {
            return None;
        }
        slot.get()
    }

    pub fn list(&self) -> Vec<ClientRow> {
        let sessions = self.sessions.lock();
        let mut rows: Vec<ClientRow> = sessions
            .iter()
            .map(|(pid, (_, slot, info))| ClientRow {
                pid: *pid,
                info: info.clone(),
                server: slot.get().map(|t| format!("{}:{}", t.host, t.port)),
            })
            .collect();
        rows.sort_by_key(|r| r.info.connected_at);
        rows
    }

    /// The client address of a session, for the N+1 log line.
    pub fn peer(&self, pid: i32) -> Option<std::net::SocketAddr> {
        self.sessions
            .lock()
            .get(&pid)
            .and_then(|(_, _, info)| info.peer)
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The proxy is stopping: every session's wait ends, and later ones end at once.
    pub fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let slots: Vec<Arc<CancelSlot>> = self
            .sessions
            .lock()
            .values()
            .map(|(_, s, _)| s.clone())
            .collect();
        for slot in slots {
            slot.wake();
        }
    }

    /// Ready once the proxy is stopping; otherwise `slot`'s task is woken when it does.
    pub fn poll_stop(
        &self,
        slot: &CancelSlot,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.stopping.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(());
        }
        slot.park(cx.waker());
        // A stop between the check and the park found no waker to wake.
        if self.stopping.load(Ordering::SeqCst) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends a CancelRequest to the server; failures are only logged, as PostgreSQL does.
pub async fn send_cancel(t: CancelTarget) {
    let mut buf = bytes::BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(t.pid, t.secret, &mut buf);
    match tokio::net::TcpStream::connect((t.host.as_ref(), t.port)).await {
        Ok(mut s) => {
            if let Err(e) = s.write_all(&buf).await {
                tracing::debug!(error = %e, "cancel request not delivered");
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot connect to send cancel request"),
    }
}

/// Client connections open now, against the live `max_client_connections`; shutdown waits on it.
#[derive(Default)]
pub struct ClientSlots {
    open: AtomicUsize,
    closed: Notify,
    /// Open clients per address, kept only while `max_client_connections_per_ip` is set.
    per_ip: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

/// One client's slot, freed when its task ends.
pub struct Slot {
    slots: Arc<ClientSlots>,
    /// The address this slot was counted under, if it was.
    ip: Option<IpAddr>,
}

impl ClientSlots {
    /// A slot if fewer than `max` are taken in all and, with `per_ip`, fewer than that from `ip`.
    pub fn try_take(
        self: &Arc<Self>,
        max: usize,
        per_ip: Option<usize>,
        ip: IpAddr,
    ) -> Result<Slot, ClientError> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| ClientError::TooManyClients(max))?;
        let mut slot = Slot {
            slots: self.clone(),
            ip: None,
        };
        if let Some(limit) = per_ip {
            let mut map = self.per_ip.lock();
            let n = map.entry(ip).or_insert(0);
            if *n >= limit {
                if *n == 0 {
                    map.remove(&ip);
                }
                drop(map);
                // Dropping `slot` gives its place in the total back.
                return Err(ClientError::TooManyClientsFromHost(limit));
            }
            *n += 1;
            slot.ip = Some(ip);
        }
        Ok(slot)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until every client has left or `limit` passed; true if all left.
    pub async fn drained(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let closed = self.closed.notified();
                if self.open() == 0 {
                    return;
                }
                closed.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.slots.per_ip.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        if self.slots.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slots.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_only_their_session() {
        let reg = Arc::new(CancelRegistry::default());
        let info = || ClientInfo {
            user: "app".into(),
            database: "app".into(),
            application_name: String::new(),
            peer: None,
            connected_at: std::time::SystemTime::now(),
        };
        let a = reg.register(info());
        let b = reg.register(info());
        assert_eq!(reg.list().len(), 2);
        assert_ne!(a.pid, b.pid);
        assert!(
            reg.lookup(a.pid, a.secret).is_none(),
            "idle session has nothing to cancel"
        );
        a.slot.set(Some(CancelTarget {
            host: "h".into(),
            port: 1,
            pid: 42,
            secret: 7,
        }));
        assert_eq!(reg.lookup(a.pid, a.secret).map(|t| t.pid), Some(42));
        assert!(reg.lookup(a.pid, a.secret.wrapping_add(1)).is_none());
        assert!(reg.lookup(b.pid, b.secret).is_none());
        drop(a);
        assert_eq!(reg.len(), 1);
    }
}
