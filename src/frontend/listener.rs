//! Accepting clients: one task each, a cap on how many, and a startup deadline.

use super::startup::{handshake, Outcome};
use crate::error::ClientError;
use crate::Shared;
use bytes::BytesMut;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Accepts clients until `shutdown` turns true; each runs in its own task.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_client_connections));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => break,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    client(shared, socket, peer, shutdown).await;
                    drop(permit);
                });
            }
            Err(_) => {
                let max = shared.config.max_client_connections;
                tokio::spawn(async move {
                    let mut s = super::stream::ClientStream::Plain(socket);
                    let mut out = BytesMut::new();
                    ClientError::TooManyClients(max).write(&mut out);
                    let _ = s.write_all_buf(&mut out).await;
                });
            }
        }
    }
}

async fn client(
    shared: Arc<Shared>,
    socket: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let deadline = shared.config.startup_timeout;
    // Boxed so the handshake's large state is freed when it ends instead of staying in every
    // idle client's task.
    let handshake = Box::pin(handshake(&shared, socket, Some(peer), shutdown));
    let outcome = match tokio::time::timeout(deadline, handshake).await {
        Ok(o) => o,
        Err(_) => {
            tracing::debug!(%peer, "client did not finish startup in time");
            return;
        }
    };
    match outcome {
        Ok(Outcome::Session(session)) => session.run().await,
        Ok(Outcome::Admin(mut stream, rbuf)) => {
            crate::admin::console::run(&shared, &mut stream, rbuf).await
        }
        Ok(Outcome::Done) => {}
        Err((stream, e)) => {
            tracing::info!(%peer, error = %e, "client refused");
            if let Some(mut s) = stream {
                let mut out = BytesMut::new();
                e.write(&mut out);
                let _ = s.write_all_buf(&mut out).await;
            }
        }
    }
}
