//! The data threads: one current_thread runtime each, serving whole clients handed to it by the acceptor.
//!
//! A client's socket, its session and the server connections it leases (the worker's share of
//! each pool, pool/worker.rs) are all registered with one thread's reactor, so a transaction
//! is served by one thread from the client's query to the server's reply: no task migrates,
//! no reply wakes another thread. Health checks, catalog reloads, stats and the WAL follower
//! run on the control runtime instead, off these threads.

use crate::Shared;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Every data thread, and a hint for balancing new clients over them.
pub struct Workers {
    threads: Vec<Worker>,
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    /// Clients handed to this worker and not yet gone.
    clients: Arc<AtomicUsize>,
}

/// Counts a client on its worker for as long as the client's task lives.
struct OnWorker(Arc<AtomicUsize>);

impl Drop for OnWorker {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` threads. Each runs until shutdown is sent (or the proxy's handle dropped)
    /// and its clients are gone, or the live `shutdown_timeout_ms` has passed.
    pub fn start(
        count: usize,
        shared: &Arc<Shared>,
        shutdown: &watch::Receiver<bool>,
    ) -> io::Result<Workers> {
        let mut threads = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (shared, mut shutdown) = (shared.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("pgsplit-worker-{index}"))
                .spawn(move || {
                    crate::pool::worker::enter(index);
                    runtime.block_on(async move {
                        // A dropped handle ends the sessions as a shutdown does (session.rs), and
                        // so this thread, its runtime and what they hold.
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        // Sessions end themselves at the deadline; this only bounds the wait.
                        let grace = shared.live.load().limits.shutdown_timeout;
                        shared.clients.drained(grace + Duration::from_secs(2)).await;
                    });
                })?;
            threads.push(Worker {
                handle,
                clients: Arc::default(),
            });
        }
        Ok(Workers {
            threads,
            next: AtomicUsize::new(0),
        })
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.threads.len()
    }

    /// Runs `serve` for an accepted client on the worker with the fewest clients (ties taken in
    /// turn). The socket is registered with that worker's reactor there, not here.
    pub fn spawn<F, Fut>(&self, socket: std::net::TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let worker = self.pick();
        worker.clients.fetch_add(1, Ordering::Relaxed);
        let on = OnWorker(worker.clients.clone());
        worker.handle.spawn(async move {
            let _on = on;
            match TcpStream::from_std(socket) {
                Ok(s) => serve(s).await,
                Err(e) => tracing::warn!(error = %e, "cannot register a client's socket"),
            }
        });
    }

    fn pick(&self) -> &Worker {
        let n = self.threads.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = &self.threads[start];
        for i in 1..n {
            let w = &self.threads[(start + i) % n];
            if w.clients.load(Ordering::Relaxed) < best.clients.load(Ordering::Relaxed) {
                best = w;
            }
        }
        best
    }

    /// Clients on each worker now, in worker order.
    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|w| w.clients.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EnvOverrides};

    fn shared(workers: usize) -> Arc<Shared> {
        let text = format!(
            "workers = {workers}\n[[users]]\nname = \"app\"\npassword = \"app\"\n[[databases]]\nname = \"app\"\n"
        );
        let config = Config::from_toml(&text, &EnvOverrides::default()).unwrap();
        Arc::new(Shared::new(Arc::new(config)).unwrap())
    }

    /// Serves one connection on `workers` and reports which worker ran it, on which thread.
    async fn served_on(workers: &Workers) -> (usize, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.spawn(socket, move |s| async move {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = tx.send((crate::pool::worker::current(), name));
            // Held open, so the next client sees this worker as the busier one.
            std::future::pending::<()>().await;
            drop(s);
        });
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn clients_run_on_the_least_busy_worker_thread_and_never_on_the_acceptor() {
        let (tx, rx) = watch::channel(false);
        let shared = shared(2);
        let workers = Workers::start(shared.config.worker_count(), &shared, &rx).unwrap();
        assert_eq!(workers.count(), 2);
        let first = served_on(&workers).await;
        let second = served_on(&workers).await;
        assert_ne!(first.0, second.0, "two clients went to one worker of two");
        for (index, thread) in [&first, &second] {
            assert_eq!(thread, &format!("pgsplit-worker-{index}"));
        }
        assert_eq!(workers.loads(), [1, 1]);
        drop(tx);
    }

    #[test]
    fn zero_workers_means_one_per_core_but_one() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(shared(0).config.worker_count(), (cores - 1).max(1));
        assert_eq!(shared(3).config.worker_count(), 3);
    }
}
