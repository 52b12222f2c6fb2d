//! The listeners' worker threads: one single-threaded runtime per core.
//!
//! UDP receive loops and TCP and DoH connections run on these threads. Everything a query needs
//! happens on the thread that read it: the handler, the upstream exchange (Do53 targets keep a
//! socket pool per worker, picked with [`dohgate_core::worker::current`]), the task that reads
//! the upstream answer, and the answer going out. No query is handed to another thread, and no
//! other thread is woken for it, which on a multi-threaded runtime (work stealing, wake-ups
//! across threads) cost a DoH query about a third of its CPU.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dohgate_core::worker;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A set of worker threads. Cloning is cheap; the threads stop when the last clone is dropped
/// (tasks still on them are dropped with their runtimes).
#[derive(Clone, Debug)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Workers {
    /// Starts `threads` worker threads (at least one), marked as workers 1 to `threads`.
    pub fn start(threads: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(threads.max(1));
        for index in 1..=threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("dohgate-worker-{index}"))
                .spawn(move || {
                    worker::set_current(index);
                    runtime.block_on(stop.cancelled());
                })?;
        }
        Ok(Workers {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
                stop,
            }),
        })
    }

    /// Every worker's runtime, in order.
    pub fn handles(&self) -> &[Handle] {
        &self.inner.handles
    }

    /// The next worker in turn, for a new connection.
    pub fn next(&self) -> &Handle {
        let handles = &self.inner.handles;
        &handles[self.inner.next.fetch_add(1, Ordering::Relaxed) % handles.len()]
    }

    /// Hands an accepted connection to the next worker: takes it out of the calling runtime's
    /// reactor and returns the worker with a future that, run there, gives the connection back
    /// registered with the worker's reactor. A connection that cannot make the move (logged)
    /// is dropped: `None` here, or from the future.
    pub fn hand_over(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(
        &Handle,
        impl Future<Output = Option<TcpStream>> + Send + 'static,
    )> {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection cannot move to a worker");
                return None;
            }
        };
        let arrive = async move {
            TcpStream::from_std(stream)
                .inspect_err(
                    |e| tracing::debug!(%peer, error = %e, "connection lost moving to a worker"),
                )
                .ok()
        };
        Some((self.next(), arrive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_worker_is_a_thread_of_its_own_and_takes_turns() {
        let workers = Workers::start(3).expect("workers");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let index = workers
                .next()
                .spawn(async { worker::current() })
                .await
                .expect("task");
            seen.push(index);
        }
        assert_eq!(seen, [1, 2, 3, 1, 2, 3]);
    }
}
