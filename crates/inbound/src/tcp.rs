//! The Do53 TCP listener (RFC 7766): 2-byte length framing, several queries in flight per
//! connection answered as they complete, an idle timeout, and a cap on connections.

use std::sync::Arc;
use std::time::Duration;

use dohgate_core::acl::Refuse;
use dohgate_core::handler::{DnsRequest, Endpoint, Handler, Transport};
use dohgate_core::{Protocol, wire};
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::accept::accept;
use crate::metrics::InboundMetrics;
use crate::per_client::PerClient;
use crate::ready::ready_now;
use crate::workers::Workers;

/// The backlog of a listening socket: connections the kernel completes before dohgate
/// accepts them.
const BACKLOG: i32 = 1024;

/// Binds a TCP listening socket for any of dohgate's listeners (Do53, DoH, admin). An IPv6
/// socket is IPv6-only, so `[::]:53` and `0.0.0.0:53` can both be listened on, as a dual-stack
/// configuration lists them; `SO_REUSEADDR` lets a restart bind again at once.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Limits of one TCP listener.
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// How long a connection may wait for its next query (RFC 7766 §6.2.3).
    pub idle_timeout: Duration,
    /// How long the rest of a message may take once its length has arrived.
    pub read_timeout: Duration,
    /// How long writing one answer may take before the client is given up on.
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Queries of one connection in flight at once.
    pub max_in_flight: usize,
    /// Connections one client address may hold at once; 0: no cap.
    pub max_per_client: u32,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            idle_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_in_flight: 64,
            max_per_client: 0,
        }
    }
}

#[derive(Clone, Debug)]
struct Counters {
    not_allowed: IntCounter,
    client_limit: IntCounter,
    incomplete: IntCounter,
    unanswerable: IntCounter,
    limit: IntCounter,
}

/// Serves Do53 over TCP on an already bound listener until `shutdown` is cancelled; then each
/// connection stops reading, answers what it has in flight and closes, and `serve` returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    options: TcpOptions,
    workers: Workers,
    metrics: InboundMetrics,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(options.max_connections));
    let per_client = PerClient::new(options.max_per_client);
    let ep = endpoint.name.as_str();
    let open = metrics.connections.with_label_values(&[ep, "do53"]);
    let accepted = metrics
        .connections_accepted
        .with_label_values(&[ep, "do53"]);
    let counters = Counters {
        client_limit: metrics
            .dropped
            .with_label_values(&[ep, "do53", "client_limit"]),
        not_allowed: metrics
            .dropped
            .with_label_values(&[ep, "do53", "not_allowed"]),
        incomplete: metrics
            .dropped
            .with_label_values(&[ep, "do53", "incomplete"]),
        unanswerable: metrics
            .dropped
            .with_label_values(&[ep, "do53", "unanswerable"]),
        limit: metrics
            .dropped
            .with_label_values(&[ep, "do53", "connection_limit"]),
    };
    loop {
        let Some((stream, peer)) = accept(&listener, &shutdown, "do53 tcp").await else {
            break;
        };
        if endpoint.allow.refuse() == Refuse::Drop && !endpoint.allow.allows(peer.ip()) {
            // With `refuse = "drop"` a client outside the allow-list gets nothing: closed.
            counters.not_allowed.inc();
            continue;
        }
        let Some(client_slot) = per_client.try_take(peer.ip()) else {
            counters.client_limit.inc();
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            counters.limit.inc();
            drop(stream);
            continue;
        };
        accepted.inc();
        // Served on a worker thread, with the queries it carries and their upstream exchanges.
        let Some((worker, arrive)) = workers.hand_over(stream, peer) else {
            continue;
        };
        open.inc();
        let open = open.clone();
        let handler = handler.clone();
        let endpoint = endpoint.clone();
        let counters = counters.clone();
        let shutdown = shutdown.clone();
        worker.spawn(async move {
            if let Some(stream) = arrive.await {
                let _ = stream.set_nodelay(true);
                connection(stream, peer, handler, endpoint, options, counters, shutdown).await;
            }
            open.dec();
            drop(permit);
            drop(client_slot);
        });
    }
    drop(listener);
    let _ = connections
        .acquire_many(options.max_connections as u32)
        .await;
}

async fn connection<H: Handler>(
    stream: TcpStream,
    client: std::net::SocketAddr,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    options: TcpOptions,
    counters: Counters,
    shutdown: CancellationToken,
) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(options.max_in_flight);
    let writer = tokio::spawn(write_answers(wr, rx, options.write_timeout));
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
    while !tx.is_closed() {
        let len = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = timeout(options.idle_timeout, rd.read_u16()) => match r {
                Ok(Ok(len)) => len as usize,
                // EOF, reset or idle: the client is done.
                _ => break,
            },
        };
        let mut message = vec![0u8; len];
        match timeout(options.read_timeout, rd.read_exact(&mut message)).await {
            Ok(Ok(_)) => {}
            _ => {
                // The length promised more than arrived: nothing sensible can follow.
                counters.incomplete.inc();
                break;
            }
        }
        if len < wire::HEADER_LEN {
            counters.unanswerable.inc();
            break;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let request = DnsRequest {
            message,
            client,
            endpoint: endpoint.clone(),
            protocol: Protocol::Do53,
            transport: Transport::Tcp,
        };
        let handler = handler.clone();
        // As on UDP: an answer the handler has at hand goes straight to the writer; only
        // queries that wait on an upstream get a task of their own.
        // A reply without a message (a response sent as a query) is dropped: nothing is sent
        // and the connection goes on.
        match ready_now(Box::pin(async move { handler.handle(request).await })) {
            Ok(reply) => {
                if let Some(answer) = reply.into_message() {
                    let _ = tx.send(answer).await;
                }
                drop(permit);
            }
            Err(answering) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(answer) = answering.await.into_message() {
                        let _ = tx.send(answer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    // The writer ends once every query in flight has sent its answer.
    drop(tx);
    let _ = writer.await;
}

async fn write_answers(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
) {
    let mut framed = Vec::with_capacity(514);
    while let Some(answer) = rx.recv().await {
        let Ok(len) = u16::try_from(answer.len()) else {
            break;
        };
        framed.clear();
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        match timeout(write_timeout, wr.write_all(&framed)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `listen = ["0.0.0.0:53", "[::]:53"]` used to fail with "address in use": an IPv6
    /// wildcard socket took the IPv4 port too.
    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        let Ok(v6) = bind("[::]:0".parse().expect("addr")) else {
            eprintln!("skipped: no IPv6 on this machine");
            return;
        };
        let port = v6.local_addr().expect("addr").port();
        let v4 = bind(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
        assert!(v4.is_ok(), "{v4:?}");
        let udp6 = crate::udp::bind("[::]:0".parse().expect("addr"), false).expect("udp v6");
        let uport = udp6.local_addr().expect("addr").port();
        let udp4 = crate::udp::bind(std::net::SocketAddr::from(([0, 0, 0, 0], uport)), false);
        assert!(udp4.is_ok(), "{udp4:?}");
    }
}
