//! The DoH and DoH-FIPS listener (RFC 8484): HTTP/2 and HTTP/1.1 on one port, chosen by ALPN
//! over TLS, or by the connection preface in cleartext (behind a TLS-terminating proxy).
//!
//! A request is decoded (GET `?dns=` or POST body), handed to the [`Handler`] seam, and the
//! reply encoded as `application/dns-message` with a `Cache-Control` from its smallest TTL.
//! Every failure before the seam maps to one HTTP status through [`DohError::status`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use dohgate_core::handler::{DnsRequest, Endpoint, Handler, Reply, Transport};
use dohgate_core::{Protocol, wire};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::accept;
use crate::error::{DohError, TlsError};
use crate::metrics::{DohListenerMetrics, InboundMetrics};
use crate::per_client::{ClientSlot, PerClient};
use crate::ready::ready_now;
use crate::workers::Workers;

pub const DNS_MESSAGE: &str = "application/dns-message";

/// Base64 (with or without padding) of the largest DNS message: a longer `dns=` is a 413.
const MAX_BASE64_LEN: usize = wire::MAX_MESSAGE_LEN.div_ceil(3) * 4;

/// Decodes `dns=` leniently about padding: RFC 8484 says none, some clients add it.
const BASE64URL: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT;

/// Limits and settings of one DoH listener.
#[derive(Clone, Debug)]
pub struct DohOptions {
    /// The path queries are served on; every other path is a 404.
    pub path: String,
    /// Connections open at once (`limits.doh_connections`); past it new connections are
    /// closed at once and counted.
    pub max_connections: usize,
    /// Connections one client address may hold at once; 0: no cap.
    pub max_per_client: u32,
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// The largest request head (HTTP/1.1) or header list (HTTP/2), which bounds the query a
    /// GET can carry: 16 KiB holds the base64 of a 12 KB query, far above any real one.
    pub max_header_bytes: usize,
    pub tls_handshake_timeout: Duration,
    /// How long a request's head and body may take to arrive.
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// After shutdown, how long requests in flight may take before they are dropped.
    pub shutdown_grace: Duration,
}

impl Default for DohOptions {
    fn default() -> Self {
        DohOptions {
            path: dohgate_core::target::DEFAULT_DOH_PATH.to_string(),
            max_connections: dohgate_core::config::Limits::default().doh_connections,
            max_per_client: 0,
            max_concurrent_streams: 256,
            max_header_bytes: 16 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_millis(1500),
        }
    }
}

/// A DoH or DoH-FIPS listener, ready to serve an already bound socket.
#[derive(Debug)]
pub struct DohListener<H> {
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    protocol: Protocol,
    tls: Option<Arc<ServerConfig>>,
    options: DohOptions,
    metrics: InboundMetrics,
    workers: Option<Workers>,
}

impl<H: Handler> DohListener<H> {
    /// `tls: None` serves cleartext HTTP/2 (prior knowledge) and HTTP/1.1, for use behind a
    /// TLS-terminating proxy. A [`Protocol::DohFips`] listener needs a TLS configuration that
    /// reports FIPS mode.
    pub fn new(
        handler: Arc<H>,
        endpoint: Arc<Endpoint>,
        protocol: Protocol,
        tls: Option<Arc<ServerConfig>>,
        options: DohOptions,
        metrics: InboundMetrics,
    ) -> Result<Self, TlsError> {
        if protocol == Protocol::DohFips {
            match &tls {
                _ if !crate::tls::fips_available() => return Err(TlsError::FipsUnavailable),
                None => return Err(TlsError::FipsWithoutTls),
                Some(config) if !config.fips() => return Err(TlsError::NotFips),
                Some(_) => {}
            }
        }
        Ok(DohListener {
            handler,
            endpoint,
            protocol,
            tls,
            options,
            metrics,
            workers: None,
        })
    }

    /// Serves each connection on one of `workers` in turn, from the TLS handshake to its last
    /// request, instead of on the runtime `serve` runs on.
    pub fn with_workers(mut self, workers: Workers) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Serves until `shutdown` is cancelled. Then the socket is closed at once, idle
    /// connections are closed, requests in flight get [`DohOptions::shutdown_grace`] to finish,
    /// and whatever remains is dropped before `serve` returns.
    pub async fn serve(mut self, listener: TcpListener, shutdown: CancellationToken) {
        let workers = self.workers.take();
        let tracker = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let shared = Arc::new(Shared::new(self, &tracker, &shutdown, &hard_stop));
        let connections = Arc::new(Semaphore::new(shared.options.max_connections));
        let per_client = PerClient::new(shared.options.max_per_client);
        loop {
            let Some((stream, peer)) = accept(&listener, &shutdown, "doh").await else {
                break;
            };
            if !shared.endpoint.allow.allows(peer.ip()) {
                // Closed before any TLS work: a client the endpoint does not serve costs no
                // handshake.
                shared.metrics.not_allowed.inc();
                continue;
            }
            let Some(client_slot) = per_client.try_take(peer.ip()) else {
                shared.metrics.client_limit.inc();
                continue;
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                shared.metrics.connection_limit.inc();
                drop(stream);
                continue;
            };
            shared.metrics.accepted.inc();
            let shared = shared.clone();
            let Some(workers) = &workers else {
                tracker.spawn(shared.hold(stream, peer, (permit, client_slot)));
                continue;
            };
            let Some((worker, arrive)) = workers.hand_over(stream, peer) else {
                continue;
            };
            tracker.spawn_on(
                async move {
                    if let Some(stream) = arrive.await {
                        shared.hold(stream, peer, (permit, client_slot)).await;
                    }
                },
                worker,
            );
        }
        drop(listener);
        tracker.close();
        if timeout(shared.options.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                endpoint = %shared.endpoint.name,
                "doh shutdown grace over: dropping requests still in flight"
            );
            hard_stop.cancel();
            tracker.wait().await;
        }
    }
}

/// What every connection of a listener shares.
struct Shared<H> {
    handler: Arc<H>,
    endpoint: Arc<Endpoint>,
    protocol: Protocol,
    acceptor: Option<TlsAcceptor>,
    options: DohOptions,
    metrics: DohListenerMetrics,
    tracker: TaskTracker,
    /// The listener's shutdown: stop accepting, close idle connections, let requests finish.
    shutdown: CancellationToken,
    /// The end of the grace period: drop whatever is left.
    hard_stop: CancellationToken,
}

/// Which HTTP a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpKind {
    H1,
    H2,
    /// Whichever the connection preface shows (cleartext, or TLS without ALPN).
    Auto,
}

/// One connection as its requests see it: one reference count per request instead of one per
/// shared piece.
struct ConnState<H> {
    shared: Arc<Shared<H>>,
    peer: SocketAddr,
    activity: Activity,
}

/// The HTTP/1.1 settings of a DoH listener, on hyper's builder or the auto builder's HTTP/1.1
/// half (different types with the same methods).
macro_rules! http1_settings {
    ($b:expr, $o:expr) => {
        $b.timer(TokioTimer::new())
            .header_read_timeout($o.request_timeout)
            // hyper refuses a read buffer below 8 KiB.
            .max_buf_size($o.max_header_bytes.max(8192))
    };
}

/// The HTTP/2 settings of a DoH listener, likewise.
macro_rules! http2_settings {
    ($b:expr, $o:expr) => {
        $b.timer(TokioTimer::new())
            .max_concurrent_streams($o.max_concurrent_streams)
            .max_header_list_size(u32::try_from($o.max_header_bytes).unwrap_or(u32::MAX))
            // Rapid reset (CVE-2023-44487): a client that keeps resetting streams before they
            // are answered, or provoking resets, loses its connection.
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(256)
            .keep_alive_interval(None)
    };
}

impl<H: Handler> Shared<H> {
    fn new(
        l: DohListener<H>,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Self {
        Shared {
            metrics: l
                .metrics
                .doh_listener(&l.endpoint.name, l.protocol.as_str()),
            handler: l.handler,
            endpoint: l.endpoint,
            protocol: l.protocol,
            acceptor: l.tls.map(TlsAcceptor::from),
            options: l.options,
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        }
    }

    fn h1_builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        http1_settings!(b, self.options);
        b
    }

    fn h2_builder(&self, exec: TrackedExecutor) -> http2::Builder<TrackedExecutor> {
        let mut b = http2::Builder::new(exec);
        http2_settings!(b, self.options);
        b
    }

    /// The same settings as [`Self::h1_builder`] and [`Self::h2_builder`], for a connection
    /// whose preface chooses.
    fn auto_builder(&self, exec: TrackedExecutor) -> auto::Builder<TrackedExecutor> {
        let mut b = auto::Builder::new(exec);
        http1_settings!(b.http1(), self.options);
        http2_settings!(b.http2(), self.options);
        b
    }

    /// Serves one accepted connection, counted as open while it lasts; `places` are its
    /// places under the listener's and its client's connection limits.
    async fn hold(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        places: (OwnedSemaphorePermit, ClientSlot),
    ) {
        self.metrics.open.inc();
        self.connection(stream, peer).await;
        self.metrics.open.dec();
        drop(places);
    }

    async fn connection(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = &self.acceptor else {
            return self.http(HttpKind::Auto, TokioIo::new(stream), peer).await;
        };
        // Boxed, so the handshake's state is freed once it is done instead of staying part of
        // the connection's task for as long as the connection lives.
        let handshake = Box::pin(timeout(
            self.options.tls_handshake_timeout,
            acceptor.accept(stream),
        ));
        let tls = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    self.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, error = %e, "doh tls handshake failed");
                    return;
                }
                Err(_) => {
                    self.metrics.tls_handshake_failures.inc();
                    tracing::debug!(%peer, "doh tls handshake timed out");
                    return;
                }
            },
        };
        let kind = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => HttpKind::H2,
            Some(b"http/1.1") => HttpKind::H1,
            _ => HttpKind::Auto,
        };
        // Boxed: the stream is moved into the HTTP connection, but an async fn keeps room for
        // its arguments for as long as it runs, so passed by value it would be held twice.
        self.http(kind, TokioIo::new(Box::new(tls)), peer).await
    }

    /// Runs HTTP on one connection until the client closes it, it idles out, or shutdown.
    ///
    /// The connection itself is boxed as soon as it is made: an idle connection then holds
    /// exactly one copy of its TLS and HTTP state, not the union of every state its task went
    /// through.
    async fn http<IO>(self: &Arc<Self>, kind: HttpKind, io: IO, peer: SocketAddr)
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        // Hyper's per-stream tasks watch a token of their own connection, so they do not all
        // contend for the listener's.
        let stop = self.hard_stop.child_token();
        let exec = TrackedExecutor {
            tracker: self.tracker.clone(),
            stop: stop.clone(),
        };
        let state = Arc::new(ConnState {
            shared: self.clone(),
            peer,
            activity: Activity::new(),
        });
        let service = {
            let state = state.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let _busy = state.activity.start();
                    Ok::<_, Infallible>(state.shared.respond(req, state.peer).await)
                }
            })
        };
        match kind {
            HttpKind::H2 => {
                let conn = Box::pin(self.h2_builder(exec).serve_connection(io, service));
                self.drive(conn, &state.activity, &stop, |c| c.graceful_shutdown())
                    .await
            }
            HttpKind::H1 => {
                let conn = Box::pin(self.h1_builder().serve_connection(io, service));
                self.drive(conn, &state.activity, &stop, |c| c.graceful_shutdown())
                    .await
            }
            HttpKind::Auto => {
                // The connection borrows its builder; boxed, the builder stays out of the
                // connection's task (whose size every connection pays, whatever its kind).
                let builder = Box::new(self.auto_builder(exec));
                let conn = Box::pin(builder.serve_connection(io, service));
                self.drive(conn, &state.activity, &stop, |c| c.graceful_shutdown())
                    .await
            }
        }
    }

    /// Polls a connection to its end; closes it gracefully once idle for
    /// [`DohOptions::idle_timeout`] or at shutdown, and drops it at the hard stop.
    async fn drive<C, E>(
        &self,
        mut conn: Pin<Box<C>>,
        activity: &Activity,
        stop: &CancellationToken,
        graceful_shutdown: impl Fn(Pin<&mut C>),
    ) where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let idle_timeout = self.options.idle_timeout;
        let mut idle_check =
            tokio::time::interval((idle_timeout / 4).max(Duration::from_millis(10)));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Once draining, a client that never lets the connection close is cut off at this.
        let drain_deadline = sleep(Duration::MAX);
        tokio::pin!(drain_deadline);
        let mut draining = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "doh connection ended with an error");
                    }
                    break;
                }
                _ = stop.cancelled() => break,
                _ = &mut drain_deadline, if draining => break,
                _ = self.shutdown.cancelled(), if !draining => {
                    graceful_shutdown(conn.as_mut());
                    draining = true;
                    drain_deadline.as_mut().reset(Instant::now() + self.options.shutdown_grace);
                }
                _ = idle_check.tick(), if !draining => {
                    if activity.idle_for() >= idle_timeout {
                        graceful_shutdown(conn.as_mut());
                        draining = true;
                        drain_deadline.as_mut().reset(Instant::now() + self.options.request_timeout);
                    }
                }
            }
        }
    }

    async fn respond(&self, req: Request<Incoming>, client: SocketAddr) -> Response<Full<Bytes>> {
        let transport = if req.version() == Version::HTTP_2 {
            Transport::H2
        } else {
            Transport::H1
        };
        // Dropped unanswered only when hyper gives up on the request: the client reset the
        // stream or closed the connection.
        let mut abandoned = AbandonGuard {
            armed: transport == Transport::H2,
            counter: &self.metrics.streams_reset,
            shutdown: &self.shutdown,
        };
        let response = match self.answer(req, client, transport).await {
            Ok(answer) => dns_response(answer),
            Err(e) => error_response(e),
        };
        abandoned.armed = false;
        self.metrics.response(response.status());
        response
    }

    async fn answer(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        transport: Transport,
    ) -> Result<Vec<u8>, DohError> {
        let (head, body) = req.into_parts();
        let mut body = Some(body);
        let result = self.decode(&head, &mut body).await;
        if let Some(body) = body
            && !body.is_end_stream()
        {
            // Refused before its body was read: read a DNS-sized body anyway, since some
            // HTTP/2 clients (curl) take the reset that cuts off an unread body as a failure
            // and never show the error answer.
            let _ = read_body(body, self.options.request_timeout).await;
        }
        let message = result?;
        if message.len() < wire::HEADER_LEN {
            // Without a header there is no ID to answer with.
            return Err(DohError::Malformed(dohgate_core::WireError::Truncated));
        }
        // Boxed: the handler's future (the whole forwarding path) is large, and hyper moves
        // the request's future more than once before it runs.
        let reply = Box::pin(self.handler.handle(DnsRequest {
            message,
            client,
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            transport,
        }))
        .await;
        match reply {
            Reply::Answer(answer) => Ok(answer),
            Reply::Malformed { error, .. } => Err(DohError::Malformed(error)),
            Reply::Limited { .. } => Err(DohError::RateLimited),
            Reply::Drop => Err(DohError::NoAnswer),
        }
    }
}

impl<H: Handler> Shared<H> {
    /// The query a request carries; `body` is taken only when it is read.
    async fn decode(
        &self,
        head: &http::request::Parts,
        body: &mut Option<Incoming>,
    ) -> Result<Vec<u8>, DohError> {
        // RFC 9112 §3.2: a server must answer 400 to an HTTP/1.1 request without Host.
        if head.version == Version::HTTP_11 && !head.headers.contains_key(http::header::HOST) {
            return Err(DohError::MissingHost);
        }
        if head.uri.path() != self.options.path {
            return Err(DohError::NotFound);
        }
        match head.method {
            Method::GET => dns_param(head.uri.query()),
            Method::POST => {
                if !is_dns_message(head.headers.get(CONTENT_TYPE)) {
                    return Err(DohError::UnsupportedMediaType);
                }
                match body.take() {
                    Some(body) => read_body(body, self.options.request_timeout).await,
                    None => Err(DohError::BodyAborted),
                }
            }
            _ => Err(DohError::MethodNotAllowed),
        }
    }
}

/// Counts a request as abandoned if its future is dropped before it answered.
struct AbandonGuard<'a> {
    armed: bool,
    counter: &'a prometheus::IntCounter,
    shutdown: &'a CancellationToken,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        // At shutdown dohgate itself drops what is left: not the client's doing.
        if self.armed && !self.shutdown.is_cancelled() {
            self.counter.inc();
        }
    }
}

/// Requests in flight on one connection and when the last one ended, for the idle timeout.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

struct Busy<'a>(&'a Activity);

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn start(&self) -> Busy<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        match self.last.lock() {
            Ok(last) => last.elapsed(),
            Err(_) => Duration::ZERO,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs hyper's per-stream futures: at once when they complete on their first poll, otherwise
/// as tasks on the listener's tracker, so shutdown waits for them and the end of the grace
/// period drops them.
#[derive(Clone)]
struct TrackedExecutor {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for TrackedExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        // A request whose answer is at hand (a cache hit, a local zone, an error) is answered
        // here, inside the connection's task: no task is spawned and no thread woken for it.
        // The others are boxed already when they get their task, so spawning moves a pointer.
        let Err(fut) = ready_now(Box::pin(fut)) else {
            return;
        };
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = fut => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// The DNS message of a GET: the one non-empty `dns` parameter, base64url-decoded.
fn dns_param(query: Option<&str>) -> Result<Vec<u8>, DohError> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "dns" {
            if found.is_some() {
                return Err(DohError::RepeatedDnsParam);
            }
            found = Some(value);
        }
    }
    let value = found.ok_or(DohError::MissingDnsParam)?;
    // Padding is the only character base64url leaves that a client may percent-encode.
    let value = value.trim_end_matches("%3D").trim_end_matches("%3d");
    let value = value.trim_end_matches('=');
    if value.is_empty() {
        return Err(DohError::EmptyDnsParam);
    }
    if value.len() > MAX_BASE64_LEN {
        return Err(DohError::TooLarge);
    }
    let message = BASE64URL.decode(value).map_err(|_| DohError::BadBase64)?;
    if message.len() > wire::MAX_MESSAGE_LEN {
        return Err(DohError::TooLarge);
    }
    Ok(message)
}

/// True for `application/dns-message`, with any parameters, in any case.
fn is_dns_message(value: Option<&HeaderValue>) -> bool {
    let Some(Ok(value)) = value.map(HeaderValue::to_str) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case(DNS_MESSAGE)
}

async fn read_body(mut body: Incoming, limit: Duration) -> Result<Vec<u8>, DohError> {
    if body.size_hint().lower() > wire::MAX_MESSAGE_LEN as u64 {
        return Err(DohError::TooLarge);
    }
    let read = async {
        let mut message = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| DohError::BodyAborted)?;
            if let Ok(data) = frame.into_data() {
                if message.len() + data.len() > wire::MAX_MESSAGE_LEN {
                    return Err(DohError::TooLarge);
                }
                message.extend_from_slice(&data);
            }
        }
        Ok(message)
    };
    timeout(limit, read)
        .await
        .map_err(|_| DohError::BodyTimeout)?
}

/// A 200 carrying the answer. It may be cached for its smallest TTL (RFC 8484 §5.1); an
/// answer without one, or a failure such as SERVFAIL, not at all.
fn dns_response(answer: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = match wire::rcode(&answer) {
        0 | 3 => wire::min_ttl(&answer).unwrap_or(0),
        _ => 0,
    };
    let mut response = Response::new(Full::new(Bytes::from(answer)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    headers.insert(CACHE_CONTROL, max_age_value(max_age));
    response
}

fn max_age_value(seconds: u32) -> HeaderValue {
    HeaderValue::try_from(format!("max-age={seconds}"))
        .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
}

fn error_response(e: DohError) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
    *response.status_mut() = e.status();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if e == DohError::MethodNotAllowed {
        headers.insert(ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if e == DohError::RateLimited {
        // A token comes back within a second at any configured rate.
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_param_rules() {
        let q = BASE64URL.encode([0u8; 12]);
        assert_eq!(dns_param(Some(&format!("dns={q}"))), Ok(vec![0; 12]));
        let odd = BASE64URL.encode([0u8; 13]);
        assert_eq!(
            dns_param(Some(&format!("x=1&dns={odd}=="))),
            Ok(vec![0; 13])
        );
        assert_eq!(
            dns_param(Some(&format!("dns={odd}%3D%3D"))),
            Ok(vec![0; 13])
        );
        assert_eq!(dns_param(None), Err(DohError::MissingDnsParam));
        assert_eq!(dns_param(Some("dns=")), Err(DohError::EmptyDnsParam));
        assert_eq!(dns_param(Some("dns")), Err(DohError::EmptyDnsParam));
        assert_eq!(
            dns_param(Some(&format!("dns={q}&dns={q}"))),
            Err(DohError::RepeatedDnsParam)
        );
        assert_eq!(dns_param(Some("dns=a+b/")), Err(DohError::BadBase64));
        let big = BASE64URL.encode(vec![0u8; wire::MAX_MESSAGE_LEN + 1]);
        assert_eq!(
            dns_param(Some(&format!("dns={big}"))),
            Err(DohError::TooLarge)
        );
        let max = BASE64URL.encode(vec![0u8; wire::MAX_MESSAGE_LEN]);
        assert_eq!(
            dns_param(Some(&format!("dns={max}"))).map(|m| m.len()),
            Ok(65535)
        );
    }

    #[test]
    fn content_type_match() {
        let ok = |s: &'static str| is_dns_message(Some(&HeaderValue::from_static(s)));
        assert!(ok("application/dns-message"));
        assert!(ok("Application/DNS-Message; charset=binary"));
        assert!(!ok("application/dns-message2"));
        assert!(!ok("text/plain"));
        assert!(!is_dns_message(None));
    }

    #[test]
    fn cache_control_follows_rcode_and_ttl() {
        let q = wire::build_query(0, "a.test", wire::TYPE_A, None).expect("query");
        let servfail = wire::error_response(&q, wire::Rcode::ServFail).expect("answer");
        let r = dns_response(servfail);
        assert_eq!(r.headers()[CACHE_CONTROL], "max-age=0");
        assert_eq!(r.headers()[CONTENT_TYPE], DNS_MESSAGE);
    }
}
