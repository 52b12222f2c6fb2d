//! Datagrams in batches: one `recvmmsg` reads every query waiting on the socket (up to a
//! batch) and one `sendmmsg` sends the answers at hand, where the system has those calls
//! (Linux, Android, FreeBSD, NetBSD); elsewhere one datagram per call.
//!
//! Under load most of a Do53 listener's time is spent in system calls, not in its own code: a
//! batch turns a few dozen of them into two.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, SockaddrStorage};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read, and answers sent, by one system call.
pub(super) const BATCH: usize = 32;

/// Bytes read of each datagram. A query has no reason to be larger (the largest EDNS options
/// are a few hundred bytes); one that is gets FORMERR, as what was read of it is not the query.
pub(super) const MAX_QUERY: usize = 4096;

/// One datagram read: its length, its sender, and whether it was longer than [`MAX_QUERY`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Datagram {
    len: usize,
    pub(super) from: Option<SocketAddr>,
    pub(super) cut: bool,
}

/// Buffers reused from one batch to the next. (The message headers are made per call: nix's
/// are not `Send`, and the receive loop is a task on its worker's runtime.)
pub(super) struct Batch {
    buffers: Box<[u8]>,
    received: [Datagram; BATCH],
}

impl Batch {
    pub(super) fn new() -> Self {
        Batch {
            // Pages are touched only as datagrams land in them.
            buffers: vec![0; BATCH * MAX_QUERY].into_boxed_slice(),
            received: [Datagram::default(); BATCH],
        }
    }

    /// Reads up to `max` (at most [`BATCH`]) datagrams waiting on `socket`, without blocking;
    /// returns how many, or `WouldBlock` if none is waiting. Use inside
    /// [`UdpSocket::try_io`], so that readiness is cleared when the queue is empty.
    pub(super) fn receive(&mut self, socket: &UdpSocket, max: usize) -> io::Result<usize> {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .chunks_mut(MAX_QUERY)
            .take(max.clamp(1, BATCH))
            .map(|b| [IoSliceMut::new(b)])
            .collect();
        let datagram = |msg: &nix::sys::socket::RecvMsg<'_, '_, SockaddrStorage>| Datagram {
            len: msg.bytes,
            from: msg.address.as_ref().and_then(socket_addr),
            cut: msg.flags.contains(MsgFlags::MSG_TRUNC),
        };
        #[cfg(mmsg)]
        {
            let mut headers = nix::sys::socket::MultiHeaders::preallocate(slices.len(), None);
            let results = nix::sys::socket::recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            let mut n = 0;
            for (slot, msg) in self.received.iter_mut().zip(results) {
                *slot = datagram(&msg);
                n += 1;
            }
            Ok(n)
        }
        #[cfg(not(mmsg))]
        {
            let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut slices[0],
                None,
                MsgFlags::MSG_DONTWAIT,
            )?;
            self.received[0] = datagram(&msg);
            Ok(1)
        }
    }

    /// The `i`th datagram of the last [`Batch::receive`], as read.
    pub(super) fn datagram(&self, i: usize) -> (&[u8], Datagram) {
        let d = self.received[i];
        (&self.buffers[i * MAX_QUERY..][..d.len.min(MAX_QUERY)], d)
    }
}

/// Sends each answer to its client, as many per system call as the socket takes; an answer
/// it does not take at once (full buffer, or an error of that one answer) is sent on its
/// own, waiting for room.
pub(super) async fn send(socket: &UdpSocket, answers: &[(Vec<u8>, SocketAddr)]) {
    let mut done = 0;
    while let Some(rest) = answers.get(done..).filter(|r| !r.is_empty()) {
        match socket.try_io(Interest::WRITABLE, || send_some(socket, rest)) {
            Ok(n) if n > 0 => done += n,
            _ => {
                let (answer, client) = &rest[0];
                super::send(socket, answer, *client).await;
                done += 1;
            }
        }
    }
}

/// Sends the first answers of `answers` without blocking; returns how many went out.
fn send_some(socket: &UdpSocket, answers: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    #[cfg(mmsg)]
    {
        let answers = &answers[..answers.len().min(BATCH)];
        let slices: Vec<[IoSlice<'_>; 1]> =
            answers.iter().map(|(a, _)| [IoSlice::new(a)]).collect();
        let to: Vec<Option<SockaddrStorage>> =
            answers.iter().map(|(_, c)| Some((*c).into())).collect();
        let mut headers = nix::sys::socket::MultiHeaders::preallocate(answers.len(), None);
        let sent = nix::sys::socket::sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter(),
            &to,
            [],
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(sent.count())
    }
    #[cfg(not(mmsg))]
    {
        let (answer, client) = &answers[0];
        let to: SockaddrStorage = (*client).into();
        nix::sys::socket::sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(answer)],
            &[],
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        )?;
        Ok(1)
    }
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
