//! Test support: stub upstreams on 127.0.0.1 that record every query, a gateway started from
//! TOML on port 0, and small DNS clients and answer readers written independently of the
//! gateway's own wire code.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dohgate::RunningGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How a stub upstream answers.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// An A record with this address, TTL 300, question lower-cased (as some servers do).
    Answer(Ipv4Addr),
    /// Records the query and never answers.
    Silent,
    /// SERVFAIL.
    ServFail,
    /// A TXT answer of about this many bytes; over UDP it is truncated (TC, no records) when
    /// larger than the query's EDNS payload size or 1232 bytes, as Knot does.
    BigTxt(usize),
    /// Like `Answer`, but names whose first label starts with "slow" wait this long.
    SlowNames(Ipv4Addr, Duration),
    /// Like `Answer`, with this TTL.
    AnswerTtl(Ipv4Addr, u32),
    /// NXDOMAIN with an SOA for `example.test.` in the authority section: (SOA TTL, MINIMUM).
    NxDomainSoa(u32, u32),
    /// Like `Answer`, plus an A record owned by this name in this section (1 answer,
    /// 2 authority, 3 additional): the shape of a cache poisoning attempt.
    AnswerWithExtra(Ipv4Addr, u8, String),
    /// A CNAME chain: the query name to each of these names in turn, the last one with an A
    /// record (TTL 300 throughout), as a CDN-fronted name answers.
    Chain(Vec<String>, Ipv4Addr),
    /// A CNAME whose target is a compression pointer past the end of the message: an answer
    /// no one can read the redirection chain of.
    BrokenChain,
}

/// One query a stub received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Lower-case, with trailing dot.
    pub name: String,
    pub qtype: u16,
    pub tcp: bool,
    pub id: u16,
    /// The query exactly as received.
    pub raw: Vec<u8>,
}

/// A stub upstream serving UDP and TCP on one 127.0.0.1 port.
#[derive(Clone, Debug)]
pub struct Stub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    behavior: Arc<Mutex<Behavior>>,
    stop: CancellationToken,
}

impl Stub {
    pub async fn start(behavior: Behavior) -> Stub {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind stub udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let stub = Stub {
            addr: udp.local_addr().expect("addr"),
            seen: Arc::default(),
            behavior: Arc::new(Mutex::new(behavior)),
            stop: CancellationToken::new(),
        };
        let s = stub.clone();
        let udp = Arc::new(udp);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, peer) = tokio::select! {
                    _ = s.stop.cancelled() => return,
                    r = udp.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
                };
                let query = buf[..n].to_vec();
                let (s, udp) = (s.clone(), udp.clone());
                tokio::spawn(async move {
                    if let Some(answer) = s.answer(&query, false).await {
                        let _ = udp.send_to(&answer, peer).await;
                    }
                });
            }
        });
        let s = stub.clone();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = tokio::select! {
                    _ = s.stop.cancelled() => return,
                    r = tcp.accept() => match r { Ok(r) => r, Err(_) => continue },
                };
                let s = s.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = conn.read_u16().await else {
                            return;
                        };
                        let mut query = vec![0u8; len as usize];
                        if conn.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        if let Some(answer) = s.answer(&query, true).await {
                            let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&answer);
                            if conn.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        stub
    }

    pub fn set(&self, behavior: Behavior) {
        *self.behavior.lock().expect("lock") = behavior;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// Stops answering and frees the port.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn answer(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let (name, qtype, qend) = read_question(query)?;
        let id = u16::from_be_bytes([query[0], query[1]]);
        self.seen.lock().expect("lock").push(Seen {
            name: name.clone(),
            qtype,
            tcp,
            id,
            raw: query.to_vec(),
        });
        let behavior = self.behavior.lock().expect("lock").clone();
        match behavior {
            Behavior::Silent => None,
            Behavior::ServFail => Some(response(query, qend, 2, &[])),
            Behavior::Answer(ip) => Some(response(query, qend, 0, &[a_record(ip)])),
            Behavior::SlowNames(ip, delay) => {
                if name.starts_with("slow") {
                    tokio::time::sleep(delay).await;
                }
                Some(response(query, qend, 0, &[a_record(ip)]))
            }
            Behavior::AnswerTtl(ip, ttl) => {
                let mut r = a_record(ip);
                r[6..10].copy_from_slice(&ttl.to_be_bytes());
                Some(response(query, qend, 0, &[r]))
            }
            Behavior::NxDomainSoa(ttl, minimum) => {
                let mut out = response(query, qend, 3, &[]);
                let (opt, nscount_at) = (out.split_off(qend), 8);
                out[nscount_at..nscount_at + 2].copy_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&soa_record(ttl, minimum));
                out.extend_from_slice(&opt);
                Some(out)
            }
            Behavior::AnswerWithExtra(ip, section, owner) => {
                let mut out = response(query, qend, 0, &[a_record(ip)]);
                let opt = out.split_off(qend + a_record(ip).len());
                let at = 4 + 2 * section as usize;
                let count = u16::from_be_bytes([out[at], out[at + 1]]) + 1;
                out[at..at + 2].copy_from_slice(&count.to_be_bytes());
                out.extend_from_slice(&wire_name(&owner));
                out.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 66]);
                out.extend_from_slice(&opt);
                Some(out)
            }
            Behavior::Chain(names, ip) => {
                let mut records = Vec::new();
                let mut owner = vec![0xc0, 12];
                for n in &names {
                    let target = wire_name(n);
                    let mut r = owner.clone();
                    r.extend_from_slice(&[0, 5, 0, 1, 0, 0, 1, 44]);
                    r.extend_from_slice(&(target.len() as u16).to_be_bytes());
                    r.extend_from_slice(&target);
                    records.push(r);
                    owner = target;
                }
                let mut r = owner;
                r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
                r.extend_from_slice(&ip.octets());
                records.push(r);
                Some(response(query, qend, 0, &records))
            }
            Behavior::BrokenChain => {
                let r = vec![0xc0, 12, 0, 5, 0, 1, 0, 0, 1, 44, 0, 2, 0xff, 0xff];
                Some(response(query, qend, 0, &[r]))
            }
            Behavior::BigTxt(size) => {
                let full = response(query, qend, 0, &[txt_record(size)]);
                let limit = edns_size(query, qend).map_or(512, |s| s.clamp(512, 1232) as usize);
                if !tcp && full.len() > limit {
                    let mut tc = response(query, qend, 0, &[]);
                    tc[2] |= 0x02;
                    Some(tc)
                } else {
                    Some(full)
                }
            }
        }
    }
}

/// Reads the question: (lower-case name with trailing dot, qtype, offset after the question).
pub fn read_question(msg: &[u8]) -> Option<(String, u16, usize)> {
    if msg.len() < 12 {
        return None;
    }
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        name.push('.');
        pos += len;
    }
    if name.is_empty() {
        name.push('.');
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    Some((name, qtype, pos + 4))
}

fn edns_size(query: &[u8], qend: usize) -> Option<u16> {
    // Queries in these tests carry at most the OPT record after the question.
    let arcount = u16::from_be_bytes([query[10], query[11]]);
    if arcount == 1
        && query.get(qend) == Some(&0)
        && query.get(qend + 1..qend + 3) == Some(&[0, 41])
    {
        return Some(u16::from_be_bytes([query[qend + 3], query[qend + 4]]));
    }
    None
}

/// A response to `query` with the question lower-cased, the given RCODE and answer records
/// (each already encoded with a pointer to the question name as its owner).
fn response(query: &[u8], qend: usize, rcode: u8, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut out = query[..qend].to_vec();
    out[2] = 0x80 | (query[2] & 0x01); // QR, RD copied
    out[3] = 0x80 | rcode; // RA
    out[4..12].copy_from_slice(&[0, 1, 0, answers.len() as u8, 0, 0, 0, 0]);
    for b in &mut out[12..qend - 4] {
        *b = b.to_ascii_lowercase();
    }
    for a in answers {
        out.extend_from_slice(a);
    }
    if edns_size(query, qend).is_some() {
        // The stub's own UDP payload size is 1232 (DNS flag day 2020), as BigTxt truncates at.
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        out[11] = 1;
    }
    out
}

fn a_record(ip: Ipv4Addr) -> Vec<u8> {
    let mut r = vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4];
    r.extend_from_slice(&ip.octets());
    r
}

/// A name in uncompressed wire format.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn soa_record(ttl: u32, minimum: u32) -> Vec<u8> {
    let mut rdata = wire_name("ns.example.test");
    rdata.extend(wire_name("admin.example.test"));
    for v in [1u32, 3600, 600, 86400, minimum] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    let mut r = wire_name("example.test");
    r.extend_from_slice(&[0, 6, 0, 1]);
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

fn txt_record(size: usize) -> Vec<u8> {
    let mut rdata = Vec::new();
    let mut left = size;
    while left > 0 {
        let chunk = left.min(255);
        rdata.push(chunk as u8);
        rdata.extend(std::iter::repeat_n(b't', chunk));
        left -= chunk;
    }
    let mut r = vec![0xc0, 12, 0, 16, 0, 1, 0, 0, 1, 44];
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(&rdata);
    r
}

/// Builds a query with RD set; `edns` adds an OPT record with that payload size.
pub fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(size) = edns {
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

pub const A: u16 = 1;
pub const TXT: u16 = 16;
pub const PTR: u16 = 12;

/// What a test reads from an answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub raw: Vec<u8>,
    pub id: u16,
    pub rcode: u8,
    pub tc: bool,
    pub aa: bool,
    pub counts: [u16; 4],
    /// A records in the answer section.
    pub addrs: Vec<Ipv4Addr>,
    /// CNAME targets in the answer section, lower-case with a trailing dot, with their TTLs.
    pub cnames: Vec<(String, u32)>,
    /// Types of the authority records.
    pub authority_types: Vec<u16>,
}

impl Answer {
    pub fn parse(raw: &[u8]) -> Answer {
        assert!(raw.len() >= 12, "answer shorter than a header: {raw:?}");
        let c = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]);
        let counts = [c(4), c(6), c(8), c(10)];
        let mut addrs = Vec::new();
        let mut cnames = Vec::new();
        let mut authority_types = Vec::new();
        let mut pos = read_question(raw).map_or(12, |(_, _, end)| end);
        for (section, &count) in counts.iter().enumerate().skip(1) {
            for _ in 0..count {
                pos = skip_name(raw, pos);
                let rtype = c(pos);
                let rdlen = c(pos + 8) as usize;
                let rdata = &raw[pos + 10..pos + 10 + rdlen];
                if section == 1 && rtype == 1 && rdlen == 4 {
                    addrs.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
                }
                if section == 1 && rtype == 5 {
                    let ttl = u32::from_be_bytes([
                        raw[pos + 4],
                        raw[pos + 5],
                        raw[pos + 6],
                        raw[pos + 7],
                    ]);
                    cnames.push((read_name(raw, pos + 10), ttl));
                }
                if section == 2 {
                    authority_types.push(rtype);
                }
                pos += 10 + rdlen;
            }
        }
        assert_eq!(pos, raw.len(), "answer has bytes after its records");
        Answer {
            raw: raw.to_vec(),
            id: c(0),
            rcode: raw[3] & 0x0f,
            tc: raw[2] & 0x02 != 0,
            aa: raw[2] & 0x04 != 0,
            counts,
            addrs,
            cnames,
            authority_types,
        }
    }
}

/// Reads a possibly compressed name at `pos`: lower-case with a trailing dot.
fn read_name(msg: &[u8], mut pos: usize) -> String {
    let mut name = String::new();
    for _ in 0..128 {
        let len = msg[pos] as usize;
        if len == 0 {
            break;
        }
        if len & 0xc0 == 0xc0 {
            pos = ((len & 0x3f) << 8) | msg[pos + 1] as usize;
            continue;
        }
        name.push_str(&String::from_utf8_lossy(&msg[pos + 1..pos + 1 + len]).to_ascii_lowercase());
        name.push('.');
        pos += 1 + len;
    }
    if name.is_empty() {
        name.push('.');
    }
    name
}

fn skip_name(msg: &[u8], mut pos: usize) -> usize {
    loop {
        let len = msg[pos] as usize;
        if len == 0 {
            return pos + 1;
        }
        if len & 0xc0 == 0xc0 {
            return pos + 2;
        }
        pos += 1 + len;
    }
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends a query over UDP and returns the raw answer; panics if none arrives in time.
pub async fn udp_raw(server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    try_udp_raw(server, msg, CLIENT_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no UDP answer from {server} within {CLIENT_TIMEOUT:?}"))
}

pub async fn try_udp_raw(server: SocketAddr, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    sock.send_to(msg, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp(server: SocketAddr, msg: &[u8]) -> Answer {
    Answer::parse(&udp_raw(server, msg).await)
}

/// Sends `msg` from `sock` (so the test chooses the source address and port) and returns the
/// answer.
pub async fn udp_from(sock: &UdpSocket, server: SocketAddr, msg: &[u8]) -> Answer {
    sock.send_to(msg, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(CLIENT_TIMEOUT, sock.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    Answer::parse(&buf[..n])
}

/// Sends one query on a new TCP connection and reads one answer.
pub async fn tcp(server: SocketAddr, msg: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(server).await.expect("connect");
    tcp_send(&mut conn, msg).await;
    Answer::parse(&tcp_recv(&mut conn).await.expect("an answer over TCP"))
}

pub async fn tcp_send(conn: &mut TcpStream, msg: &[u8]) {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    conn.write_all(&framed).await.expect("write");
}

/// Reads one framed answer; `None` if the server closed the connection.
pub async fn tcp_recv(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let read = async {
        let len = conn.read_u16().await.ok()?;
        let mut buf = vec![0u8; len as usize];
        conn.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(CLIENT_TIMEOUT, read)
        .await
        .expect("server neither answered nor closed in time")
}

/// Starts a gateway from TOML. Unless the text has its own, it gets one inbound endpoint
/// "test" with Do53 on 127.0.0.1:0 and the admin listener on 127.0.0.1:0.
pub async fn gateway(toml: &str) -> RunningGateway {
    let mut text = String::from(toml);
    if !toml.contains("[[inbound]]") {
        text.push_str("\n[[inbound]]\nname = \"test\"\nlisten = [\"127.0.0.1:0\"]\n");
    }
    if !toml.contains("[admin]") {
        text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
    let config = dohgate_core::config::parse(&text, None)
        .unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
    assert!(
        !config.resolver.from_system,
        "tests must name their default resolver: never the one in /etc/resolv.conf"
    );
    dohgate::start(config).await.expect("gateway starts")
}

/// `[resolver]` naming one stub as the default resolver.
pub fn resolver(stub: &Stub) -> String {
    format!("[resolver]\ntargets = [\"{}\"]\n", stub.addr)
}

/// An `[[outbound]]` allowing every protocol and a forward rule to `targets`.
pub fn forward_rule(name: &str, domain: &str, targets: &[SocketAddr]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[rule]]\nname = \"{name}\"\ndomain = \"{domain}\"\ntype = \"forward\"\noutbound = \"out\"\ntargets = [{}]\n",
        list.join(", ")
    )
}

pub const OUTBOUND: &str =
    "[[outbound]]\nname = \"out\"\nprotocols = [\"do53\", \"doh\", \"doh-fips\"]\n";

/// Fetches a path from the admin listener over plain HTTP/1.1: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).await.expect("connect admin");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(CLIENT_TIMEOUT, conn.read_to_end(&mut buf))
        .await
        .expect("admin answers in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample in Prometheus text format, e.g.
/// `metric(&text, "dohgate_queries_total", &[("endpoint", "test")])`; labels not named are
/// summed over.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dohgate-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Reads the lines of `path` once it has at least `n`, waiting at most 10 s.
pub async fn lines_of(path: &Path, n: usize) -> Vec<String> {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || tokio::time::Instant::now() >= until {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One query over cleartext DoH (HTTP/1.1 POST, RFC 8484) to a `listen_doh_plain` address.
pub async fn doh_plain(server: SocketAddr, msg: &[u8]) -> Answer {
    let mut conn = TcpStream::connect(server).await.expect("connect");
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/dns-message\r\n\
         Accept: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        msg.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(msg).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(CLIENT_TIMEOUT, conn.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Answer::parse(&buf[split + 4..])
}

/// The endpoint "test": Do53 and cleartext DoH on 127.0.0.1 port 0.
pub const DO53_AND_DOH: &str = "[[inbound]]\nname = \"test\"\nlisten = [\"127.0.0.1:0\"]\nlisten_doh_plain = [\"127.0.0.1:0\"]\n";

/// The first cleartext DoH address of a gateway.
pub fn doh_addr(gw: &RunningGateway) -> SocketAddr {
    gw.addrs().doh_plain.first().expect("cleartext DoH").1
}

/// The path of a test certificate or key in `certs/`.
pub fn cert(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../certs")
        .join(name)
        .display()
        .to_string()
}
