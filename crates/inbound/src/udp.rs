//! The Do53 UDP listener.

use std::net::SocketAddr;
use std::sync::Arc;

use dohgate_core::handler::{DnsRequest, Endpoint, Handler, Transport};
use dohgate_core::{Protocol, wire};
use prometheus::IntCounter;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::InboundMetrics;
use crate::ready::ready_now;

/// Limits of one UDP listener.
#[derive(Clone, Copy, Debug)]
pub struct UdpOptions {
    /// Queries being answered at once; past it the listener stops reading and the kernel's
    /// socket buffer absorbs the burst.
    pub max_in_flight: usize,
    /// Tasks reading the socket at once; one per worker thread by default.
    pub receive_loops: usize,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            max_in_flight: 4096,
            receive_loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Serves Do53 over UDP on an already bound socket until `shutdown` is cancelled, then waits
/// for the queries in flight to be answered (the caller bounds that wait).
///
/// Answers larger than the client's EDNS payload size (512 bytes without EDNS) are truncated
/// with TC set so the client retries over TCP.
pub async fn serve<H: Handler>(
    socket: UdpSocket,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    options: UdpOptions,
    metrics: InboundMetrics,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
    let unanswerable =
        metrics
            .dropped
            .with_label_values(&[endpoint.name.as_str(), "do53", "unanswerable"]);
    // One receive loop per worker thread on the same socket, so reading datagrams is spread
    // over the cores instead of funnelled through one task.
    let loops = options.receive_loops.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..loops {
        tasks.spawn(receive_loop(
            socket.clone(),
            handler.clone(),
            endpoint.clone(),
            in_flight.clone(),
            unanswerable.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    // Every permit back means every query in flight has been answered.
    let _ = in_flight.acquire_many(options.max_in_flight as u32).await;
}

async fn receive_loop<H: Handler>(
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    in_flight: Arc<Semaphore>,
    unanswerable: IntCounter,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (n, client) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors from earlier sends surface here on some systems; they say
                // nothing about the next datagram.
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
        };
        if n < wire::HEADER_LEN {
            // Too short to carry an ID and flags: there is nothing to answer (RFC 1035).
            unanswerable.inc();
            continue;
        }
        let request = DnsRequest {
            message: buf[..n].to_vec(),
            client,
            endpoint: endpoint.clone(),
            protocol: Protocol::Do53,
            transport: Transport::Udp,
        };
        let limit = udp_limit(&request.message);
        let handler = handler.clone();
        // Answers the handler has at hand are sent from this loop; only queries that wait on
        // an upstream get a task of their own.
        match ready_now(Box::pin(async move { handler.handle(request).await })) {
            Ok(reply) => {
                if let Some(answer) = reply.message {
                    send(&socket, wire::truncate_for_udp(answer, limit), client).await;
                }
                drop(permit);
            }
            Err(answering) => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let reply = answering.await;
                    if let Some(answer) = reply.message {
                        send(&socket, wire::truncate_for_udp(answer, limit), client).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// The largest UDP answer the client accepts: its EDNS payload size, at least 512.
fn udp_limit(query: &[u8]) -> usize {
    wire::parse_query(query).map_or(wire::CLASSIC_UDP_SIZE, |q| q.udp_limit())
}

async fn send(socket: &UdpSocket, answer: Vec<u8>, client: SocketAddr) {
    if let Err(e) = socket.send_to(&answer, client).await {
        tracing::debug!(%client, error = %e, "udp send failed");
    }
}
