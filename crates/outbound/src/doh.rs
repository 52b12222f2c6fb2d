//! DoH targets (RFC 8484): queries sent over HTTPS to `https://IP:PORT/PATH`, as concurrent
//! HTTP/2 streams on one pooled connection, or over a few kept-alive HTTP/1.1 connections when
//! the target's ALPN offers only that.
//!
//! The pool is dohgate's own, on hyper's connection-level client, rather than hyper-util's
//! legacy `Client`: a target is one fixed address, so there is nothing to key a pool by, and
//! owning it lets a burst of queries after an idle period wait for one TLS handshake instead of
//! starting one each, lets a query that lost its connection be retried on a connection known to
//! be newer than the dead one, and keeps the connection gauge exact.
//!
//! Connections go stale in three ways, each handled: the target closes them (FIN, RST or
//! GOAWAY: the connection task ends and the pool drops it before the next query), they die
//! silently (HTTP/2 PINGs while idle notice within the keep-alive timeout), or they die while a
//! query is on them (that query is asked once more on a fresh connection before the attempt
//! counts as failed).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use dohgate_core::target::DohMethod;
use dohgate_core::wire::{self, Question};
use dohgate_core::{Protocol, TargetSpec};
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::do53::accept;
use crate::error::AttemptError;
use crate::metrics::OutboundMetrics;

/// The media type of DNS messages in HTTP (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";

/// ALPN protocols offered, preferred first (RFC 8484 §5.2: HTTP/2 is the minimum recommended).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Idle HTTP/2 connections send a PING this often, which keeps NAT and firewall state alive
/// and notices a connection that died without a FIN.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A connection whose PING is not answered within this is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/1.1 queries in flight to one target (each needs a connection of its own).
const MAX_H1_IN_FLIGHT: usize = 16;
/// Idle HTTP/1.1 connections kept per target.
const MAX_H1_IDLE: usize = 4;

const ALPN_UNKNOWN: u8 = 0;
const ALPN_H2: u8 = 1;
const ALPN_H1: u8 = 2;

/// Handles of one target's connection metrics.
#[derive(Clone, Debug)]
pub struct DohMetrics {
    pub connections: IntGauge,
    pub connection_failures: IntCounter,
    pub tls_failures: IntCounter,
    pub stale_retries: IntCounter,
}

impl DohMetrics {
    pub fn new(m: &OutboundMetrics, target: &str, protocol: &str) -> Self {
        let l = [target, protocol];
        DohMetrics {
            connections: m.target_connections.with_label_values(&l),
            connection_failures: m.target_connection_failures.with_label_values(&l),
            tls_failures: m.target_tls_failures.with_label_values(&l),
            stale_retries: m.target_stale_retries.with_label_values(&l),
        }
    }
}

/// A DNS-over-HTTPS target.
#[derive(Debug)]
pub struct DohTarget {
    label: String,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    /// Host / `:authority`: the server name (or IP) and the port unless it is 443.
    authority: String,
    path: String,
    method: DohMethod,
    tls: Arc<ClientConfig>,
    pool: Pool,
    metrics: DohMetrics,
}

#[derive(Debug)]
struct Pool {
    /// The HTTP/2 connection queries share.
    h2: Mutex<Option<H2Conn>>,
    /// Idle HTTP/1.1 connections, most recently used last.
    h1_idle: Mutex<Vec<H1Conn>>,
    h1_in_flight: Arc<Semaphore>,
    /// Held while connecting to a target that speaks (or may speak) HTTP/2, so a burst of
    /// queries opens one connection and shares it.
    connecting: tokio::sync::Mutex<()>,
    /// What the last handshake negotiated.
    alpn: AtomicU8,
    next_id: AtomicU64,
}

/// A pooled HTTP/2 connection; the connection is closed once the pool and every query using it
/// have let go.
#[derive(Clone, Debug)]
struct H2Conn {
    id: u64,
    send: http2::SendRequest<Full<Bytes>>,
    _close: Arc<DropGuard>,
}

/// An HTTP/1.1 connection, owned by one query at a time. Dropping it mid-exchange (a timeout)
/// closes it: its state is unknown.
#[derive(Debug)]
struct H1Conn {
    send: http1::SendRequest<Full<Bytes>>,
    _close: DropGuard,
}

#[derive(Debug)]
enum Conn {
    H2(H2Conn),
    H1(H1Conn),
}

/// Why one exchange on one connection failed.
#[derive(Debug)]
enum Failure {
    /// The connection died before the answer was complete: worth one more try elsewhere.
    Lost { conn: Option<u64>, error: String },
    /// The target answered, and the answer is unusable; or connecting failed.
    Attempt(AttemptError),
}

impl From<AttemptError> for Failure {
    fn from(e: AttemptError) -> Self {
        Failure::Attempt(e)
    }
}

impl DohTarget {
    /// Builds the target's TLS configuration and an empty pool. Fails when a certificate file
    /// cannot be read, or for a DoH-FIPS target in a build without the FIPS module.
    pub fn new(spec: &TargetSpec, metrics: DohMetrics) -> Result<Self, AttemptError> {
        let label = spec.label();
        let setup = |m: String| AttemptError::Tls(format!("target {label}: {m}"));
        let config = client_config(spec).map_err(setup)?;
        let server_name = match &spec.server_name {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|e| setup(format!("server_name {name:?}: {e}")))?,
            None => ServerName::IpAddress(spec.addr.ip().into()),
        };
        let host = match (&spec.server_name, spec.addr) {
            (Some(name), _) => name.clone(),
            (None, SocketAddr::V4(a)) => a.ip().to_string(),
            (None, SocketAddr::V6(a)) => format!("[{}]", a.ip()),
        };
        let authority = if spec.addr.port() == 443 {
            host
        } else {
            format!("{host}:{}", spec.addr.port())
        };
        let uri = format!("https://{authority}{}", spec.path);
        uri.parse::<Uri>()
            .map_err(|e| setup(format!("{uri:?} is not a valid URL: {e}")))?;
        Ok(DohTarget {
            label,
            addr: spec.addr,
            server_name,
            authority,
            path: spec.path.clone(),
            method: spec.method,
            tls: config,
            pool: Pool {
                h2: Mutex::new(None),
                h1_idle: Mutex::new(Vec::new()),
                h1_in_flight: Arc::new(Semaphore::new(MAX_H1_IN_FLIGHT)),
                connecting: tokio::sync::Mutex::new(()),
                alpn: AtomicU8::new(ALPN_UNKNOWN),
                next_id: AtomicU64::new(0),
            },
            metrics,
        })
    }

    /// Sends `query` (whose question is `q`) and returns the answer, with the query's own ID.
    pub async fn exchange(
        &self,
        query: &[u8],
        q: &Question,
        deadline: Instant,
    ) -> Result<Vec<u8>, AttemptError> {
        // ID 0 on the wire makes identical queries identical HTTP requests, which caches
        // between dohgate and the target can serve (RFC 8484 §4.1).
        let mut wire_query = query.to_vec();
        wire::set_id(&mut wire_query, 0);
        let wire_query = Bytes::from(wire_query);
        let mut answer = match timeout_at(deadline, self.exchange_retrying(&wire_query, q)).await {
            Ok(r) => r?,
            Err(_) => return Err(AttemptError::Timeout),
        };
        if let Some(orig) = wire::id(query) {
            wire::set_id(&mut answer, orig);
        }
        Ok(answer)
    }

    async fn exchange_retrying(
        &self,
        query: &Bytes,
        q: &Question,
    ) -> Result<Vec<u8>, AttemptError> {
        let mut retried = false;
        loop {
            let (conn, _permit) = self.checkout(retried).await?;
            match self.exchange_on(conn, query, q).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Attempt(e)) => return Err(e),
                Err(Failure::Lost { conn, error }) => {
                    self.forget(conn);
                    if retried {
                        return Err(AttemptError::Io(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("connection lost on the retry too: {error}"),
                        )));
                    }
                    // A pooled connection can die under a query through no fault of the
                    // target's (it was restarted, or closed an idle connection just as the
                    // query went out): one more try on a fresh connection tells that apart
                    // from a target that is really failing.
                    tracing::debug!(target = %self.label, %error, "connection lost under a query; asking again on a fresh connection");
                    self.metrics.stale_retries.inc();
                    retried = true;
                }
            }
        }
    }

    /// A connection for one exchange: the shared HTTP/2 one, an idle HTTP/1.1 one (unless
    /// `fresh`), or a new one. HTTP/1.1 exchanges also hold a permit that bounds them.
    async fn checkout(
        &self,
        fresh: bool,
    ) -> Result<(Conn, Option<OwnedSemaphorePermit>), AttemptError> {
        if let Some(c) = self.pooled_h2() {
            return Ok((Conn::H2(c), None));
        }
        if self.pool.alpn.load(Ordering::Relaxed) == ALPN_H1 {
            let permit = self.h1_permit().await?;
            if !fresh && let Some(c) = self.idle_h1() {
                return Ok((Conn::H1(c), Some(permit)));
            }
            let conn = self.connect().await?;
            return Ok((self.adopt(conn), Some(permit)));
        }
        let _connecting = self.pool.connecting.lock().await;
        if let Some(c) = self.pooled_h2() {
            return Ok((Conn::H2(c), None));
        }
        let conn = self.connect().await?;
        let permit = match conn {
            Conn::H1(_) => Some(self.h1_permit().await?),
            Conn::H2(_) => None,
        };
        Ok((self.adopt(conn), permit))
    }

    async fn h1_permit(&self) -> Result<OwnedSemaphorePermit, AttemptError> {
        self.pool
            .h1_in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AttemptError::Io(io::Error::other("connection pool closed")))
    }

    fn pooled_h2(&self) -> Option<H2Conn> {
        let mut slot = lock(&self.pool.h2);
        match slot.as_ref() {
            Some(c) if !c.send.is_closed() => Some(c.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    fn idle_h1(&self) -> Option<H1Conn> {
        let mut idle = lock(&self.pool.h1_idle);
        while let Some(c) = idle.pop() {
            if !c.send.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Records what a new connection negotiated; an HTTP/2 one becomes the shared one.
    fn adopt(&self, conn: Conn) -> Conn {
        match &conn {
            Conn::H2(c) => {
                self.pool.alpn.store(ALPN_H2, Ordering::Relaxed);
                *lock(&self.pool.h2) = Some(c.clone());
            }
            Conn::H1(_) => self.pool.alpn.store(ALPN_H1, Ordering::Relaxed),
        }
        conn
    }

    /// Drops a connection that died from the pool, so no other query picks it.
    fn forget(&self, conn: Option<u64>) {
        match conn {
            Some(id) => {
                let mut slot = lock(&self.pool.h2);
                if slot.as_ref().is_some_and(|c| c.id == id) {
                    *slot = None;
                }
            }
            // Idle HTTP/1.1 connections are as old as the one that died, and most likely died
            // with it (a restarted target).
            None => lock(&self.pool.h1_idle).clear(),
        }
    }

    /// A new connection: TCP, TLS with certificate verification, then the HTTP handshake of
    /// the protocol ALPN chose.
    async fn connect(&self) -> Result<Conn, AttemptError> {
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| {
            self.metrics.connection_failures.inc();
            tracing::debug!(target = %self.label, error = %e, "cannot connect");
            AttemptError::Io(e)
        })?;
        // Queries are small writes that wait for an answer: Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| {
                self.metrics.connection_failures.inc();
                match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                    Some(tls_error) => {
                        self.metrics.tls_failures.inc();
                        tracing::warn!(target = %self.label, server_name = ?self.server_name, error = %tls_error, "TLS handshake with DoH target failed");
                        AttemptError::Tls(tls_error.to_string())
                    }
                    None => {
                        tracing::debug!(target = %self.label, error = %e, "connection lost during the TLS handshake");
                        AttemptError::Io(e)
                    }
                }
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(tls);
        let close = CancellationToken::new();
        let handshake_failed = |e: hyper::Error| {
            self.metrics.connection_failures.inc();
            tracing::debug!(target = %self.label, error = %e, "HTTP handshake failed");
            AttemptError::Io(io::Error::other(format!("HTTP handshake: {e}")))
        };
        if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            self.drive(conn, close.clone());
            let id = self.pool.next_id.fetch_add(1, Ordering::Relaxed);
            Ok(Conn::H2(H2Conn {
                id,
                send,
                _close: Arc::new(close.drop_guard()),
            }))
        } else {
            let (send, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(handshake_failed)?;
            self.drive(conn, close.clone());
            Ok(Conn::H1(H1Conn {
                send,
                _close: close.drop_guard(),
            }))
        }
    }

    /// Runs a connection's I/O until it ends or its last user lets go of it.
    fn drive<F>(&self, conn: F, close: CancellationToken)
    where
        F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        let open = OpenConnection::new(self.metrics.connections.clone());
        let label = self.label.clone();
        tokio::spawn(async move {
            let _open = open;
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(target = %label, error = %e, "connection to DoH target ended");
                    }
                }
                _ = close.cancelled() => {}
            }
        });
    }

    /// One HTTP exchange on `conn`, and the checks on its answer.
    async fn exchange_on(
        &self,
        conn: Conn,
        query: &Bytes,
        q: &Question,
    ) -> Result<Vec<u8>, Failure> {
        let (response, h2_id, h1) = match conn {
            Conn::H2(c) => {
                let mut send = c.send.clone();
                let r = send.send_request(self.request(query, true)).await;
                (r, Some(c.id), None)
            }
            Conn::H1(mut c) => {
                let r = match c.send.ready().await {
                    Ok(()) => c.send.send_request(self.request(query, false)).await,
                    Err(e) => Err(e),
                };
                (r, None, Some(c))
            }
        };
        let lost = |e: &dyn std::fmt::Display| Failure::Lost {
            conn: h2_id,
            error: e.to_string(),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_parse() || e.is_user() => {
                return Err(self.bad(AttemptError::BadAnswer(format!("HTTP: {e}"))));
            }
            Err(e) => return Err(lost(&e)),
        };
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.bad(AttemptError::HttpStatus(status.as_u16())));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let media_type = content_type
            .as_deref()
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|m| m.eq_ignore_ascii_case(DNS_MESSAGE)) {
            return Err(self.bad(AttemptError::BadAnswer(format!(
                "content-type {} is not {DNS_MESSAGE}",
                content_type.as_deref().unwrap_or("(none)")
            ))));
        }
        let body = response.into_body();
        if body.size_hint().lower() > wire::MAX_MESSAGE_LEN as u64 {
            return Err(self.bad(oversized()));
        }
        let body = match Limited::new(body, wire::MAX_MESSAGE_LEN).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(self.bad(oversized())),
            Err(e) => return Err(lost(&e)),
        };
        // The answer was read to its end, so the HTTP/1.1 connection is ready for the next one.
        if let Some(c) = h1 {
            let mut idle = lock(&self.pool.h1_idle);
            if idle.len() < MAX_H1_IDLE {
                idle.push(c);
            }
        }
        if !well_formed(&body) {
            return Err(self.bad(AttemptError::BadAnswer(
                "body is not a DNS message".to_string(),
            )));
        }
        if let Err(e) = accept(query, q, &body, 0) {
            return Err(self.bad(e));
        }
        Ok(body.to_vec())
    }

    /// Logs why a target's answer is refused: these point at a misconfigured or broken target.
    fn bad(&self, e: AttemptError) -> Failure {
        tracing::warn!(target = %self.label, error = %e, "unusable answer from DoH target");
        Failure::Attempt(e)
    }

    fn request(&self, query: &Bytes, h2: bool) -> Request<Full<Bytes>> {
        let path = match self.method {
            DohMethod::Post => self.path.clone(),
            DohMethod::Get => {
                let sep = if self.path.contains('?') { '&' } else { '?' };
                format!("{}{sep}dns={}", self.path, URL_SAFE_NO_PAD.encode(query))
            }
        };
        let mut b = Request::builder().header(ACCEPT, DNS_MESSAGE);
        // HTTP/2 carries the authority in the URI (`:authority`); HTTP/1.1 in Host.
        b = if h2 {
            b.version(Version::HTTP_2)
                .uri(format!("https://{}{path}", self.authority))
        } else {
            b.uri(path).header(HOST, &self.authority)
        };
        let body = match self.method {
            DohMethod::Post => {
                b = b.method(Method::POST).header(CONTENT_TYPE, DNS_MESSAGE);
                query.clone()
            }
            DohMethod::Get => {
                b = b.method(Method::GET);
                Bytes::new()
            }
        };
        // The URI was checked in `new` and base64url adds only URL-safe characters.
        b.body(Full::new(body)).unwrap_or_default()
    }
}

fn oversized() -> AttemptError {
    AttemptError::BadAnswer(format!(
        "body larger than a DNS message ({} bytes)",
        wire::MAX_MESSAGE_LEN
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The pool's state stays consistent at every point a holder could panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts an open connection in the gauge for as long as it lives.
#[derive(Debug)]
struct OpenConnection(IntGauge);

impl OpenConnection {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// True if `msg` has a header, a question and exactly the records its counts announce.
fn well_formed(msg: &[u8]) -> bool {
    let Ok(q) = wire::question(msg) else {
        return false;
    };
    let c = wire::counts(msg);
    let mut pos = q.end;
    for _ in 1..c[0] {
        match wire::skip_name(msg, pos).ok() {
            Some(p) if p + 4 <= msg.len() => pos = p + 4,
            _ => return false,
        }
    }
    let records = c[1] as usize + c[2] as usize + c[3] as usize;
    for _ in 0..records {
        let Some(fixed) = wire::skip_name(msg, pos).ok() else {
            return false;
        };
        let Some(rdlen) = msg.get(fixed + 8..fixed + 10) else {
            return false;
        };
        pos = fixed + 10 + u16::from_be_bytes([rdlen[0], rdlen[1]]) as usize;
        if pos > msg.len() {
            return false;
        }
    }
    pos == msg.len()
}

/// Builds the TLS client configuration `spec` will use (CA file, client certificate), for
/// `check-config`: the errors a start would meet, without starting.
pub fn check_tls(spec: &TargetSpec) -> Result<(), String> {
    if spec.protocol == Protocol::Do53 {
        return Ok(());
    }
    client_config(spec).map(|_| ())
}

/// The TLS client configuration of a target: its trust anchors, an optional client
/// certificate, and the crypto provider of its protocol (one code path for DoH and DoH-FIPS).
fn client_config(spec: &TargetSpec) -> Result<Arc<ClientConfig>, String> {
    let provider = provider(spec.protocol)?;
    let roots = match &spec.ca_file {
        Some(path) => file_roots(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots);
    let mut config = match &spec.client_cert {
        Some(files) => {
            let chain = read_certs(&files.cert, "client_cert")?;
            let key = PrivateKeyDer::from_pem_slice(read_pem(&files.key, "client_key")?.as_bytes())
                .map_err(|e| format!("client_key {}: {e}", files.key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_cert {}: {e}", files.cert.display()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    if spec.protocol == Protocol::DohFips && !config.fips() {
        return Err("the TLS configuration is not in FIPS mode".to_string());
    }
    Ok(Arc::new(config))
}

fn provider(protocol: Protocol) -> Result<Arc<CryptoProvider>, String> {
    match protocol {
        Protocol::DohFips => fips_provider(),
        _ => Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider())),
    }
}

#[cfg(feature = "fips")]
fn fips_provider() -> Result<Arc<CryptoProvider>, String> {
    let p = rustls::crypto::default_fips_provider();
    if !p.fips() {
        return Err("the FIPS crypto provider does not report FIPS mode".to_string());
    }
    Ok(Arc::new(p))
}

#[cfg(not(feature = "fips"))]
fn fips_provider() -> Result<Arc<CryptoProvider>, String> {
    Err("DoH-FIPS targets need dohgate built with the FIPS module: \
         cargo build --release --features fips (needs cmake and Go)"
        .to_string())
}

/// A PEM file's text, read only from a regular file of at most
/// [`MAX_PEM_FILE`](dohgate_core::config::MAX_PEM_FILE) bytes.
fn read_pem(path: &Path, key: &str) -> Result<String, String> {
    dohgate_core::config::read_small_file(path, dohgate_core::config::MAX_PEM_FILE)
        .map_err(|e| format!("{key} {}: {e}", path.display()))
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, key)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn file_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "ca_file")? {
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The operating system's trust store (with SSL_CERT_FILE / SSL_CERT_DIR honoured), so a
/// corporate CA installed on the host is trusted like any public one.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no usable system CA certificates ({why}): set ca_file (--ca-file) for this target"
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_needs_every_announced_record() {
        // example.com A, one A record with a compressed owner.
        let mut msg = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1]);
        assert!(well_formed(&msg));
        assert!(!well_formed(&msg[..msg.len() - 1]));
        let mut extra = msg.clone();
        extra.push(0);
        assert!(!well_formed(&extra));
        let mut more = msg.clone();
        more[7] = 2;
        assert!(!well_formed(&more));
        assert!(!well_formed(b"<html>not dns</html>"));
        assert!(!well_formed(&[]));
    }

    #[test]
    fn fips_targets_need_the_fips_build() {
        let mut spec = TargetSpec::parse("https://127.0.0.1:8443/dns-query").expect("spec");
        spec.protocol = Protocol::DohFips;
        spec.ca_file = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs/test-ca.pem").into());
        let r = client_config(&spec);
        if cfg!(feature = "fips") {
            assert!(r.is_ok_and(|c| c.fips()));
        } else {
            let e = r.expect_err("no FIPS module in this build");
            assert!(e.contains("--features fips"), "{e}");
        }
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let mut spec = TargetSpec::parse("https://127.0.0.1/dns-query").expect("spec");
        spec.ca_file = Some("/nonexistent/ca.pem".into());
        let e = client_config(&spec).expect_err("missing file");
        assert!(e.contains("ca_file /nonexistent/ca.pem"), "{e}");
    }
}
