//! The accept step every connection listener shares (Do53 TCP, DoH, the admin listener),
//! written once so that none of them can drift.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a listener waits after a failed accept (out of file descriptors and the like)
/// before it tries again, instead of spinning.
const BACK_OFF: Duration = Duration::from_millis(50);

/// The next connection, or `None` once `shutdown` is cancelled: while accepting and while
/// backing off after a failed accept alike. `what` names the listener in the log.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = listener.accept() => r,
        };
        match result {
            Ok(accepted) => return Some(accepted),
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(BACK_OFF) => {}
                }
            }
        }
    }
}
