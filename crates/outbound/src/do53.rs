//! Do53 targets: DNS over UDP with a retry over TCP when the answer is truncated.
//!
//! UDP queries to a target go out over a small pool of connected sockets, each on its own
//! random ephemeral port, with a fresh random ID per attempt; one task per socket reads the
//! answers and hands each to the query waiting for its ID. A connected socket only delivers
//! datagrams from the target's address and port, and an answer is accepted only if its ID and
//! question match (RFC 5452). Sockets are replaced after a number of queries, so the source
//! ports keep changing. Reusing sockets instead of opening one per query removes a socket,
//! bind, connect, epoll registration and close from every query.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dohgate_core::wire::{self, Question};
use dohgate_core::worker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};

use crate::error::AttemptError;

/// Connected UDP sockets per target and thread: an off-path attacker has to hit the port a
/// query went out on and its 16-bit ID.
const POOL_SOCKETS: usize = 16;
/// Queries a socket carries before it is replaced by one on a new random port.
const QUERIES_PER_SOCKET: u32 = 4096;
/// How long a replaced socket keeps reading, for answers to queries still in flight on it.
const RETIRED_SOCKET_LINGER: Duration = Duration::from_secs(10);

/// A classic DNS target.
#[derive(Debug)]
pub struct Do53Target {
    addr: SocketAddr,
    /// One pool per listener worker thread (see [`dohgate_core::worker`]), so the task reading
    /// a socket's answers runs on the thread whose queries wait for them.
    pools: Box<[Pool]>,
}

/// The sockets one thread sends its queries over.
#[derive(Debug)]
struct Pool {
    slots: Vec<tokio::sync::Mutex<Option<Arc<PooledSocket>>>>,
    next: AtomicUsize,
}

/// One connected socket and the queries waiting for an answer on it.
#[derive(Debug)]
struct PooledSocket {
    socket: UdpSocket,
    waiting: Mutex<HashMap<u16, oneshot::Sender<io::Result<Vec<u8>>>>>,
    uses: AtomicU32,
    retired: tokio::sync::Notify,
}

/// Removes a query's entry from its socket's table when the query ends, however it ends
/// (answer, timeout, or the caller giving up).
struct Registration<'a> {
    socket: &'a PooledSocket,
    id: u16,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.socket.waiting.lock() {
            w.remove(&self.id);
        }
    }
}

/// How an exchange went, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Do53Trace {
    /// The UDP answer was truncated and the query was repeated over TCP.
    pub tcp_retry: bool,
}

impl Do53Target {
    pub fn new(addr: SocketAddr) -> Self {
        Do53Target {
            addr,
            pools: (0..worker::slots())
                .map(|_| Pool {
                    slots: (0..POOL_SOCKETS)
                        .map(|_| tokio::sync::Mutex::new(None))
                        .collect(),
                    next: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `query` (whose question is `q`) and returns the answer, with the query's own ID.
    ///
    /// A truncated UDP answer is asked again over TCP, unless the client is on UDP itself
    /// (`client_udp_limit`) and the full answer could not reach it anyway: then the truncated
    /// answer is passed on and the client retries over TCP, as from any server.
    pub async fn exchange(
        &self,
        query: &[u8],
        q: &Question,
        client_udp_limit: Option<usize>,
        deadline: Instant,
        trace: &mut Do53Trace,
    ) -> Result<Vec<u8>, AttemptError> {
        let mut wire_query = query.to_vec();
        let answer = match timeout_at(deadline, self.udp(&mut wire_query, q)).await {
            Ok(r) => r?,
            Err(_) => return Err(AttemptError::Timeout),
        };
        let mut answer = if wire::is_truncated(&answer)
            && !client_udp_limit.is_some_and(|limit| too_large_for_client(&answer, limit))
        {
            trace.tcp_retry = true;
            // A new ID for the new exchange, as for any other attempt.
            let id: u16 = rand::random();
            wire::set_id(&mut wire_query, id);
            match timeout_at(deadline, self.tcp(&wire_query, q, id)).await {
                Ok(r) => r?,
                Err(_) => return Err(AttemptError::Timeout),
            }
        } else {
            answer
        };
        if let Some(orig) = wire::id(query) {
            wire::set_id(&mut answer, orig);
        }
        Ok(answer)
    }

    /// A socket of the calling thread's pool, opening (or replacing a worn-out) one as
    /// needed; a new socket's reader task is spawned on the calling thread's runtime.
    async fn socket(&self) -> io::Result<Arc<PooledSocket>> {
        let pool = &self.pools[worker::current() % self.pools.len()];
        let i = pool.next.fetch_add(1, Ordering::Relaxed) % pool.slots.len();
        let mut slot = pool.slots[i].lock().await;
        if let Some(s) = slot.as_ref() {
            if s.uses.fetch_add(1, Ordering::Relaxed) < QUERIES_PER_SOCKET {
                return Ok(s.clone());
            }
            s.retired.notify_one();
        }
        let local: SocketAddr = if self.addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(self.addr).await?;
        let fresh = Arc::new(PooledSocket {
            socket,
            waiting: Mutex::new(HashMap::new()),
            uses: AtomicU32::new(1),
            retired: tokio::sync::Notify::new(),
        });
        tokio::spawn(read_answers(fresh.clone()));
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    async fn udp(&self, query: &mut [u8], q: &Question) -> Result<Vec<u8>, AttemptError> {
        let socket = self.socket().await?;
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut waiting = socket
                .waiting
                .lock()
                .map_err(|_| AttemptError::BadAnswer("socket table poisoned".into()))?;
            let mut id: u16 = rand::random();
            while waiting.contains_key(&id) {
                id = rand::random();
            }
            waiting.insert(id, tx);
            id
        };
        let _registration = Registration {
            socket: &socket,
            id,
        };
        wire::set_id(query, id);
        socket.socket.send(query).await?;
        loop {
            let answer = rx
                .await
                .map_err(|_| AttemptError::Io(io::Error::other("upstream socket closed")))??;
            if accept(query, q, &answer, id).is_ok() {
                return Ok(answer);
            }
            // Right ID, wrong question: a stray or a spoofing attempt. Keep waiting for the
            // real answer until the deadline.
            let (tx, next) = oneshot::channel();
            if let Ok(mut w) = socket.waiting.lock() {
                w.insert(id, tx);
            }
            rx = next;
        }
    }

    async fn tcp(&self, query: &[u8], q: &Question, id: u16) -> Result<Vec<u8>, AttemptError> {
        let mut stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(query.len())
            .map_err(|_| AttemptError::BadAnswer("query too large".into()))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await? as usize;
        let mut answer = vec![0u8; len];
        stream.read_exact(&mut answer).await?;
        // On a connection of our own, a wrong answer is no stray: the attempt failed.
        accept(query, q, &answer, id)?;
        Ok(answer)
    }
}

/// True when a truncated `answer` shows the full one is larger than `client_limit`: the query
/// went out with the client's own EDNS payload size, so if the target accepts at least that
/// much (its OPT says how much), it truncated at the client's limit.
fn too_large_for_client(answer: &[u8], client_limit: usize) -> bool {
    let target_limit = wire::response_udp_size(answer).map_or(wire::CLASSIC_UDP_SIZE, |s| {
        usize::from(s).max(wire::CLASSIC_UDP_SIZE)
    });
    client_limit <= target_limit
}

/// Checks that `answer` answers `query`: a response, with our ID and the same question.
pub fn accept(query: &[u8], q: &Question, answer: &[u8], id: u16) -> Result<(), AttemptError> {
    if wire::id(answer) != Some(id) {
        return Err(AttemptError::Mismatch("ID"));
    }
    if wire::flags(answer) & wire::FLAG_QR == 0 {
        return Err(AttemptError::Mismatch("not a response"));
    }
    if !wire::same_question(query, q, answer) {
        return Err(AttemptError::Mismatch("question"));
    }
    Ok(())
}

/// Reads the answers arriving on one pooled socket and hands each to the query waiting for its
/// ID; datagrams nobody waits for are dropped. Ends a while after the socket is retired.
async fn read_answers(socket: Arc<PooledSocket>) {
    // Room for the largest datagram, left uninitialised: the kernel writes only what arrives,
    // so a socket costs the pages its answers touch (about one), not 64 KiB of zeroes. With
    // sockets rotating and lingering after retirement, that is a few hundred sockets at a
    // hundred thousand queries a second.
    let mut buf: Vec<u8> = Vec::with_capacity(wire::MAX_MESSAGE_LEN);
    let mut linger_until: Option<Instant> = None;
    loop {
        let received = match linger_until {
            None => tokio::select! {
                r = recv(&socket.socket, &mut buf) => r,
                _ = socket.retired.notified() => {
                    linger_until = Some(Instant::now() + RETIRED_SOCKET_LINGER);
                    continue;
                }
            },
            Some(until) => match timeout_at(until, recv(&socket.socket, &mut buf)).await {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let n = match received {
            Ok(n) => n,
            // An ICMP port unreachable (the target is down) cannot be tied to one query, but
            // every query on this socket went to that target: fail them all now rather than
            // let each wait out its timeout. The socket itself stays usable.
            Err(e) => {
                let failed: Vec<_> = socket
                    .waiting
                    .lock()
                    .map(|mut w| w.drain().collect())
                    .unwrap_or_default();
                for (_, tx) in failed {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                }
                continue;
            }
        };
        let Some(id) = wire::id(&buf[..n]) else {
            continue;
        };
        let waiter = socket.waiting.lock().ok().and_then(|mut w| w.remove(&id));
        if let Some(tx) = waiter {
            let _ = tx.send(Ok(buf[..n].to_vec()));
        }
    }
}

/// Receives one datagram into `buf`'s spare capacity; `buf` holds just it afterwards.
async fn recv(socket: &UdpSocket, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    socket.recv_buf(buf).await
}

/// A deadline `d` from now, never past `limit`.
pub fn deadline_within(d: Duration, limit: Instant) -> Instant {
    (Instant::now() + d).min(limit)
}
