//! Do53 targets: DNS over UDP with a retry over TCP when the answer is truncated.
//!
//! Each UDP attempt uses a fresh socket on a random source port (the kernel's ephemeral port
//! choice) connected to the target, and a fresh random ID, so an off-path attacker has to guess
//! both (RFC 5452). A connected socket only delivers datagrams from the target's address and
//! port; an answer is accepted only if its ID and question also match.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dohgate_core::wire::{self, Question};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::error::AttemptError;

/// A classic DNS target.
#[derive(Debug)]
pub struct Do53Target {
    addr: SocketAddr,
}

/// How an exchange went, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Do53Trace {
    /// The UDP answer was truncated and the query was repeated over TCP.
    pub tcp_retry: bool,
}

impl Do53Target {
    pub fn new(addr: SocketAddr) -> Self {
        Do53Target { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `query` (whose question is `q`) and returns the answer, with the query's own ID.
    pub async fn exchange(
        &self,
        query: &[u8],
        q: &Question,
        deadline: Instant,
        trace: &mut Do53Trace,
    ) -> Result<Vec<u8>, AttemptError> {
        let id: u16 = rand::random();
        let mut wire_query = query.to_vec();
        wire::set_id(&mut wire_query, id);
        let answer = match timeout_at(deadline, self.udp(&wire_query, q, id)).await {
            Ok(r) => r?,
            Err(_) => return Err(AttemptError::Timeout),
        };
        let mut answer = if wire::is_truncated(&answer) {
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

    async fn udp(&self, query: &[u8], q: &Question, id: u16) -> Result<Vec<u8>, AttemptError> {
        let local: SocketAddr = if self.addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await?;
        sock.connect(self.addr).await?;
        sock.send(query).await?;
        let mut buf = vec![0u8; wire::MAX_MESSAGE_LEN];
        loop {
            let n = sock.recv(&mut buf).await?;
            let answer = &buf[..n];
            // Anything else arriving on this port is a stray or a spoofing attempt: keep
            // waiting for the real answer until the deadline.
            if accept(query, q, answer, id).is_ok() {
                buf.truncate(n);
                return Ok(buf);
            }
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

/// A deadline `d` from now, never past `limit`.
pub fn deadline_within(d: Duration, limit: Instant) -> Instant {
    (Instant::now() + d).min(limit)
}
