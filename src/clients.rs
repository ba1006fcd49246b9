//! The connected clients: the cancel keys the proxy issues them, who they are, and the server each is using.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Where a client's query is running right now.
#[derive(Clone, Debug)]
pub struct CancelTarget {
    /// Shared with the server's pool entry, so taking a connection copies no string.
    pub host: Arc<str>,
    pub port: u16,
    pub pid: i32,
    pub secret: i32,
}

/// The server a session is using, updated on every lease and release.
#[derive(Default, Debug)]
pub struct CancelSlot {
    target: Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
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
