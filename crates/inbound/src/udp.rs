//! The Do53 UDP listener.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use dohgate_core::handler::{DnsRequest, Endpoint, Handler, Transport};
use dohgate_core::wire::Rcode;
use dohgate_core::{Protocol, wire};
use prometheus::IntCounter;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::InboundMetrics;
use crate::ready::ready_now;
use crate::workers::Workers;

mod batch;
use batch::{BATCH, Batch};

/// Limits of one UDP listener.
#[derive(Clone, Copy, Debug)]
pub struct UdpOptions {
    /// Queries being answered at once, over all worker threads; past it a thread stops
    /// reading and the kernel's socket buffer absorbs the burst.
    pub max_in_flight: usize,
    /// Give each worker thread a socket of its own on the same address with `SO_REUSEPORT`
    /// (the kernel spreads clients over them by address and port) instead of a handle on one
    /// shared socket. The socket passed to [`serve`] must come from [`bind`] with it set.
    pub reuseport: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            max_in_flight: 4096,
            reuseport: false,
        }
    }
}

/// Serves Do53 over UDP on an already bound socket until `shutdown` is cancelled, then waits
/// for the queries in flight to be answered (the caller bounds that wait).
///
/// Every one of `workers` serves the socket, with a handle of its own on it: a query is read,
/// forwarded, and answered on one thread, with no hand-over between threads (and no wake-up of
/// another one) on the way. The threads share the socket's receive queue, so a few busy
/// clients are spread over all of them, which separate `SO_REUSEPORT` sockets (balanced by the
/// clients' addresses and ports) would not do.
///
/// Each thread reads the queries waiting on the socket in batches and sends the answers it
/// has at hand together (`recvmmsg` and `sendmmsg` where the system has them); queries that
/// wait on an upstream are answered from their own tasks as their answers come in.
///
/// The handler cuts answers larger than the client's EDNS payload size (512 bytes without EDNS)
/// and sets TC, so the client retries over TCP: the listener never parses a query itself.
pub async fn serve<H: Handler>(
    socket: UdpSocket,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    options: UdpOptions,
    workers: Workers,
    metrics: InboundMetrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let socket = socket.into_std()?;
    let local = socket.local_addr()?;
    let dropped = |reason: &str| {
        metrics
            .dropped
            .with_label_values(&[endpoint.name.as_str(), "do53", reason])
    };
    let dropped = Dropped {
        unanswerable: dropped("unanswerable"),
        responses: dropped("not_a_query"),
    };
    let threads = workers.handles().len();
    let per_thread = options.max_in_flight.div_ceil(threads).max(1);
    let mut loops = Vec::with_capacity(threads);
    for (i, worker) in workers.handles().iter().enumerate() {
        let socket = if options.reuseport && i > 0 {
            bind_std(local, true)?
        } else {
            socket.try_clone()?
        };
        let handler = handler.clone();
        let endpoint = endpoint.clone();
        let dropped = dropped.clone();
        let shutdown = shutdown.clone();
        loops.push(worker.spawn(async move {
            // Registered with the worker's own runtime.
            let socket = match UdpSocket::from_std(socket) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(error = %e, "udp listener worker cannot use its socket");
                    return;
                }
            };
            let in_flight = Arc::new(Semaphore::new(per_thread));
            receive_loop(
                socket,
                handler,
                endpoint,
                in_flight.clone(),
                dropped,
                shutdown,
            )
            .await;
            // Every permit back means every query in flight has been answered.
            let _ = in_flight.acquire_many(per_thread as u32).await;
        }));
    }
    for l in loops {
        if let Err(e) = l.await {
            tracing::error!(error = %e, "udp receive loop failed");
        }
    }
    Ok(())
}

/// Datagrams a receive loop drops unanswered, by reason.
#[derive(Clone, Debug)]
struct Dropped {
    /// Too short to carry an ID, or from no address.
    unanswerable: IntCounter,
    /// Too large to read, and a response (QR set) besides.
    responses: IntCounter,
}

async fn receive_loop<H: Handler>(
    socket: Arc<UdpSocket>,
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    in_flight: Arc<Semaphore>,
    dropped: Dropped,
    shutdown: CancellationToken,
) {
    let Dropped {
        unanswerable,
        responses,
    } = dropped;
    let mut batch = Batch::new();
    let mut ready: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        // A permit for every datagram the next read may take: as many as are free, at least
        // one (waited for), at most a batch.
        let want = in_flight.available_permits().clamp(1, BATCH);
        let mut permits = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = in_flight.clone().acquire_many_owned(want as u32) => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let readable = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.readable() => r,
        };
        if let Err(e) = readable {
            tracing::debug!(error = %e, "udp socket not readable");
            continue;
        }
        let received = match socket.try_io(Interest::READABLE, || batch.receive(&socket, want)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            // ICMP errors from earlier sends surface here on some systems; they say nothing
            // about the next datagram.
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        for i in 0..received {
            let (query, datagram) = batch.datagram(i);
            let Some(client) = datagram.from else {
                unanswerable.inc();
                continue;
            };
            if query.len() < wire::HEADER_LEN {
                // Too short to carry an ID and flags: there is nothing to answer (RFC 1035).
                unanswerable.inc();
                continue;
            }
            if datagram.cut {
                // Larger than any query has reason to be: what was read is not the query. A
                // response is never answered, even with FORMERR (see the resolver).
                if wire::flags(query) & wire::FLAG_QR != 0 {
                    responses.inc();
                } else if let Some(formerr) = wire::error_response(query, Rcode::FormErr) {
                    ready.push((formerr, client));
                }
                continue;
            }
            // There is a permit for every datagram read.
            let permit = permits.split(1);
            let request = DnsRequest {
                message: query.to_vec(),
                client,
                endpoint: endpoint.clone(),
                protocol: Protocol::Do53,
                transport: Transport::Udp,
            };
            let handler = handler.clone();
            // Answers the handler has at hand are sent from this loop, all together; only
            // queries that wait on an upstream get a task of their own.
            match ready_now(Box::pin(async move { handler.handle(request).await })) {
                Ok(reply) => {
                    if let Some(answer) = reply.into_message() {
                        ready.push((answer, client));
                    }
                    drop(permit);
                }
                Err(answering) => {
                    let socket = socket.clone();
                    tokio::spawn(async move {
                        if let Some(answer) = answering.await.into_message() {
                            send(&socket, &answer, client).await;
                        }
                        drop(permit);
                    });
                }
            }
        }
        drop(permits);
        batch::send(&socket, &ready).await;
        ready.clear();
    }
}

/// Binds a Do53 UDP listener socket on `addr`, with `SO_REUSEPORT` if `reuseport` (see
/// [`UdpOptions::reuseport`]) and a receive buffer grown to 4 MiB. The socket
/// [`serve`] is given should come from here.
pub fn bind(addr: SocketAddr, reuseport: bool) -> io::Result<UdpSocket> {
    UdpSocket::from_std(bind_std(addr, reuseport)?)
}

fn bind_std(addr: SocketAddr, reuseport: bool) -> io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    // IPv6-only, so that `[::]:53` and `0.0.0.0:53` can both be listened on.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let socket = socket.into();
    grow_receive_buffer(&socket);
    Ok(socket)
}

/// The receive buffer asked for on each listener socket: a burst of queries waits in it while
/// the threads are busy, instead of being dropped by the kernel. Linux's default (about
/// 208 KiB, some 270 small datagrams) overflows under a burst from a few busy forwarders.
const RECEIVE_BUFFER: usize = 4 << 20;

/// Asks for [`RECEIVE_BUFFER`]; the kernel caps it at `net.core.rmem_max`, which operators
/// may need to raise.
fn grow_receive_buffer(socket: &std::net::UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "cannot set the udp listener's receive buffer");
    }
    if let Ok(got) = sock.recv_buffer_size()
        && got < RECEIVE_BUFFER
    {
        // Linux reports twice what it grants; below the ask means rmem_max capped it.
        tracing::info!(
            bytes = got,
            "udp listener receive buffer capped by net.core.rmem_max"
        );
    }
}

/// Sends one answer, waiting for room in the socket's buffer.
async fn send(socket: &UdpSocket, answer: &[u8], client: SocketAddr) {
    if let Err(e) = socket.send_to(answer, client).await {
        tracing::debug!(%client, error = %e, "udp send failed");
    }
}
