//! The DoH listener over real sockets on 127.0.0.1: TLS with the test CA of certs/, HTTP/2 and
//! HTTP/1.1 clients from hyper, and a stub handler that answers from the query name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use dohgate_core::handler::{DnsRequest, Endpoint, Handler, Reply, Transport};
use dohgate_core::{Protocol, wire};
use dohgate_inbound::{DohListener, DohOptions, InboundMetrics, TlsError, tls};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn certs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../certs")
}

fn server_tls(kind: &str, fips: bool) -> Arc<ServerConfig> {
    let dir = certs_dir();
    tls::server_config(
        &dir.join(format!("localhost-{kind}-chain.pem")),
        &dir.join(format!("localhost-{kind}.key")),
        fips,
    )
    .expect("test certificate loads")
}

// ---------------------------------------------------------------------------------------------
// The stub handler.

/// Answers `<anything>` with A 192.0.2.1 TTL 300, `two.test` with two records (TTL 300 and 42),
/// `servfail.test` with SERVFAIL, and waits before answering `slow.test`. Unparseable queries
/// come back as malformed, as the gateway's handler does.
#[derive(Default)]
struct StubHandler {
    seen: Mutex<Vec<(Protocol, Transport)>>,
    active: AtomicUsize,
}

struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Handler for StubHandler {
    async fn handle(&self, request: DnsRequest) -> Reply {
        self.active.fetch_add(1, Ordering::SeqCst);
        let _active = Active(&self.active);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((request.protocol, request.transport));
        }
        let q = match wire::parse_query(&request.message) {
            Ok(q) => q,
            Err(error) => {
                return Reply::Malformed {
                    error,
                    answer: None,
                };
            }
        };
        let name = wire::name_to_string(q.question.name(&request.message));
        match name.as_str() {
            "servfail.test." => {
                return Reply::Answer(
                    wire::error_response(&request.message, wire::Rcode::ServFail)
                        .expect("has a header"),
                );
            }
            "slow.test." => tokio::time::sleep(Duration::from_millis(400)).await,
            _ => {}
        }
        let ttls: &[u32] = if name == "two.test." {
            &[300, 42]
        } else {
            &[300]
        };
        Reply::Answer(answer(&request.message, ttls))
    }
}

fn answer(query: &[u8], ttls: &[u32]) -> Vec<u8> {
    let mut out = wire::error_response(query, wire::Rcode::NoError).expect("has a header");
    let had_opt = wire::counts(&out)[3] == 1;
    if had_opt {
        out.truncate(out.len() - 11);
        out[10..12].copy_from_slice(&0u16.to_be_bytes());
    }
    for (i, ttl) in ttls.iter().enumerate() {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 4, 192, 0, 2, 1 + i as u8]);
    }
    out[6..8].copy_from_slice(&(ttls.len() as u16).to_be_bytes());
    if had_opt {
        wire::push_opt(&mut out, 0, false);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The server under test.

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    handler: Arc<StubHandler>,
    metrics: InboundMetrics,
}

impl Server {
    async fn start(
        tls: Option<Arc<ServerConfig>>,
        protocol: Protocol,
        options: DohOptions,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let handler = Arc::new(StubHandler::default());
        let metrics = InboundMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let shutdown = CancellationToken::new();
        let doh = DohListener::new(
            handler.clone(),
            Endpoint::new("ep", Default::default()),
            protocol,
            tls,
            options,
            metrics.clone(),
        )
        .expect("listener");
        let task = tokio::spawn(doh.serve(listener, shutdown.clone()));
        Server {
            addr,
            shutdown,
            task,
            handler,
            metrics,
        }
    }

    async fn tls() -> Self {
        Self::start(
            Some(server_tls("ecdsa", false)),
            Protocol::DoH,
            DohOptions::default(),
        )
        .await
    }

    fn status_count(&self, status: u16) -> u64 {
        self.metrics
            .doh_http_responses
            .with_label_values(&["ep", &status.to_string()])
            .get()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("the listener stops within 2 s")
            .expect("the listener task does not panic");
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

type Body = BoxBody<Bytes, Infallible>;

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

fn client_tls(alpn: &[&[u8]]) -> rustls::ClientConfig {
    client_tls_with(rustls::crypto::aws_lc_rs::default_provider(), alpn)
}

fn test_roots() -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(certs_dir().join("test-ca.pem"))
        .expect("test CA")
    {
        roots.add(cert.expect("CA parses")).expect("CA is usable");
    }
    roots
}

fn client_tls_with(
    provider: rustls::crypto::CryptoProvider,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let roots = test_roots();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

enum Client {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

#[derive(Debug)]
struct HttpReply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    async fn tls(addr: SocketAddr, version: Version) -> Self {
        let alpn: &[u8] = if version == Version::HTTP_2 {
            b"h2"
        } else {
            b"http/1.1"
        };
        let stream = tls_connect(addr, client_tls(&[alpn]))
            .await
            .expect("tls connect");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        Self::over(TokioIo::new(stream), version).await
    }

    async fn plain(addr: SocketAddr, version: Version) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Self::over(TokioIo::new(stream), version).await
    }

    async fn over<IO>(io: IO, version: Version) -> Self
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        if version == Version::HTTP_2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Client::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            Client::H1(send)
        }
    }

    /// Sends `req` (its URI a path and query) and reads the whole answer.
    async fn send(&mut self, req: Request<Body>) -> Result<HttpReply, hyper::Error> {
        let response = match self {
            Client::H1(send) => {
                let mut req = req;
                req.headers_mut().insert(
                    http::header::HOST,
                    http::HeaderValue::from_static("localhost"),
                );
                send.ready().await?;
                send.send_request(req).await?
            }
            Client::H2(send) => {
                let (mut parts, body) = req.into_parts();
                let pq = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                parts.uri = format!("https://localhost{pq}").parse().expect("uri");
                send.clone()
                    .send_request(Request::from_parts(parts, body))
                    .await?
            }
        };
        let (parts, body) = response.into_parts();
        Ok(HttpReply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        })
    }
}

fn get(path_and_query: &str) -> Request<Body> {
    Request::get(path_and_query)
        .body(full(Bytes::new()))
        .expect("request")
}

fn get_dns(message: &[u8]) -> Request<Body> {
    get(&format!("/dns-query?dns={}", B64.encode(message)))
}

fn post(content_type: Option<&str>, body: impl Into<Bytes>) -> Request<Body> {
    let mut builder = Request::post("/dns-query");
    if let Some(ct) = content_type {
        builder = builder.header(CONTENT_TYPE, ct);
    }
    builder.body(full(body)).expect("request")
}

fn query(id: u16, name: &str) -> Vec<u8> {
    wire::build_query(id, name, wire::TYPE_A, Some(1232)).expect("query")
}

/// Checks a 200 answer to `query` carrying 192.0.2.1.
fn assert_answers(reply: &HttpReply, query: &[u8]) {
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.headers[CONTENT_TYPE], "application/dns-message");
    let answer = &reply.body[..];
    assert_eq!(wire::id(answer), wire::id(query));
    assert_eq!(wire::rcode(answer), 0);
    assert_eq!(wire::counts(answer)[1], 1);
    assert!(answer.windows(4).any(|w| w == [192, 0, 2, 1]));
    let q = wire::parse_query(query).expect("query parses");
    assert!(wire::same_question(query, &q.question, answer));
}

// ---------------------------------------------------------------------------------------------
// RFC 8484 over HTTP/2 and HTTP/1.1.

#[tokio::test]
async fn get_and_post_over_h2_and_h1() {
    let server = Server::tls().await;
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut client = Client::tls(server.addr, version).await;
        // RFC 8484 §4.1: GET uses ID 0 so answers cache well.
        let q = query(0, "www.example.test");
        let reply = client.send(get_dns(&q)).await.expect("GET");
        assert_eq!(reply.version, version);
        assert_answers(&reply, &q);
        assert_eq!(reply.headers[CACHE_CONTROL], "max-age=300");

        let q = query(0x4242, "post.example.test");
        let reply = client
            .send(post(Some("application/dns-message"), q.clone()))
            .await
            .expect("POST");
        assert_answers(&reply, &q);
    }
    let seen = server.handler.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            (Protocol::DoH, Transport::H2),
            (Protocol::DoH, Transport::H2),
            (Protocol::DoH, Transport::H1),
            (Protocol::DoH, Transport::H1),
        ]
    );
    assert_eq!(server.status_count(200), 4);
    server.stop().await;
}

#[tokio::test]
async fn rsa_certificate_and_tls12() {
    let server = Server::start(
        Some(server_tls("rsa", false)),
        Protocol::DoH,
        DohOptions::default(),
    )
    .await;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls 1.2")
    .with_root_certificates(test_roots())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = tls_connect(server.addr, config)
        .await
        .expect("TLS 1.2 with RSA");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut client = Client::over(TokioIo::new(stream), Version::HTTP_2).await;
    let q = query(0, "rsa.test");
    assert_answers(&client.send(get_dns(&q)).await.expect("GET"), &q);
    server.stop().await;
}

#[tokio::test]
async fn tls_sessions_resume() {
    let server = Server::tls().await;
    let config = client_tls(&[b"h2"]);
    let first = tls_connect(server.addr, config.clone())
        .await
        .expect("first");
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // TLS 1.3 tickets arrive after the handshake: let the client read them.
    let mut client = Client::over(TokioIo::new(first), Version::HTTP_2).await;
    let q = query(0, "resume.test");
    assert_answers(&client.send(get_dns(&q)).await.expect("GET"), &q);
    let second = tls_connect(server.addr, config).await.expect("second");
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    server.stop().await;
}

#[tokio::test]
async fn cleartext_h2c_and_h1_behind_a_proxy() {
    let server = Server::start(None, Protocol::DoH, DohOptions::default()).await;
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut client = Client::plain(server.addr, version).await;
        let q = query(7, "plain.test");
        let reply = client
            .send(post(Some("application/dns-message"), q.clone()))
            .await
            .expect("POST");
        assert_eq!(reply.version, version);
        assert_answers(&reply, &q);
    }
    server.stop().await;
}

#[tokio::test]
async fn custom_path() {
    let options = DohOptions {
        path: "/resolve".to_string(),
        ..DohOptions::default()
    };
    let server = Server::start(Some(server_tls("ecdsa", false)), Protocol::DoH, options).await;
    let mut client = Client::tls(server.addr, Version::HTTP_2).await;
    let q = query(0, "path.test");
    let reply = client
        .send(get(&format!("/resolve?dns={}", B64.encode(&q))))
        .await
        .expect("GET");
    assert_answers(&reply, &q);
    let reply = client.send(get_dns(&q)).await.expect("GET");
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Caching.

#[tokio::test]
async fn cache_control_is_the_smallest_ttl_and_failures_are_not_cached() {
    let server = Server::tls().await;
    let mut client = Client::tls(server.addr, Version::HTTP_2).await;
    let reply = client
        .send(get_dns(&query(0, "two.test")))
        .await
        .expect("GET");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[CACHE_CONTROL], "max-age=42");

    let q = query(0, "servfail.test");
    let reply = client.send(get_dns(&q)).await.expect("GET");
    // RFC 8484 §4.2.1: a DNS failure is still a 200 carrying the DNS message.
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(wire::rcode(&reply.body), 2);
    assert_eq!(reply.headers[CACHE_CONTROL], "max-age=0");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP errors.

async fn assert_error(client: &mut Client, req: Request<Body>, status: StatusCode, reason: &str) {
    let reply = client.send(req).await.expect("an HTTP answer");
    assert_eq!(reply.status, status, "{:?}", reply.body);
    let text = std::str::from_utf8(&reply.body).expect("text reason");
    assert!(text.contains(reason), "{text:?} should say {reason:?}");
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    assert!(
        reply.headers[CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn every_error_has_its_status_and_a_one_line_reason() {
    let server = Server::tls().await;
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut c = Client::tls(server.addr, version).await;
        let q = query(0, "err.test");
        assert_error(
            &mut c,
            get(&format!("/other?dns={}", B64.encode(&q))),
            StatusCode::NOT_FOUND,
            "path",
        )
        .await;
        let put = Request::builder()
            .method(Method::PUT)
            .uri("/dns-query")
            .header(CONTENT_TYPE, "application/dns-message")
            .body(full(q.clone()))
            .expect("request");
        assert_error(&mut c, put, StatusCode::METHOD_NOT_ALLOWED, "GET or POST").await;
        assert_error(
            &mut c,
            post(Some("text/plain"), q.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        )
        .await;
        assert_error(
            &mut c,
            post(None, q.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type",
        )
        .await;
        assert_error(
            &mut c,
            get("/dns-query?dns=not*base64"),
            StatusCode::BAD_REQUEST,
            "base64",
        )
        .await;
        assert_error(
            &mut c,
            get("/dns-query"),
            StatusCode::BAD_REQUEST,
            "missing",
        )
        .await;
        assert_error(
            &mut c,
            get("/dns-query?dns="),
            StatusCode::BAD_REQUEST,
            "empty",
        )
        .await;
        let twice = format!("/dns-query?dns={0}&dns={0}", B64.encode(&q));
        assert_error(&mut c, get(&twice), StatusCode::BAD_REQUEST, "repeated").await;
        // Parses as base64 but not as a query: two questions.
        let mut two = q.clone();
        two[5] = 2;
        assert_error(&mut c, get_dns(&two), StatusCode::BAD_REQUEST, "malformed").await;
        assert_error(
            &mut c,
            post(Some("application/dns-message"), vec![0u8; 5]),
            StatusCode::BAD_REQUEST,
            "malformed",
        )
        .await;
        let big = vec![0u8; wire::MAX_MESSAGE_LEN + 1];
        // A GET cannot carry that much: URIs stop at 64 KiB, headers at DohOptions::max_header_bytes.
        assert_error(
            &mut c,
            post(Some("application/dns-message"), big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "65535",
        )
        .await;
    }
    for (status, count) in [(404, 2), (405, 2), (415, 4), (400, 12), (413, 2)] {
        assert_eq!(
            server.status_count(status),
            count,
            "responses with status {status}"
        );
    }
    assert_eq!(server.status_count(200), 0);
    server.stop().await;
}

#[tokio::test]
async fn query_id_zero_and_a_full_size_get_are_served() {
    let server = Server::tls().await;
    let mut client = Client::tls(server.addr, Version::HTTP_2).await;
    // The largest legal name in a GET: far below the header limit, answered normally.
    let long = vec!["a".repeat(63); 3].join(".") + ".test";
    let q = query(0, &long);
    assert_answers(&client.send(get_dns(&q)).await.expect("GET"), &q);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency, bad clients and limits.

#[tokio::test]
async fn a_hundred_concurrent_streams_on_one_connection() {
    let server = Server::tls().await;
    let Client::H2(send) = Client::tls(server.addr, Version::HTTP_2).await else {
        unreachable!("asked for HTTP/2");
    };
    let mut tasks = Vec::new();
    for i in 0..100u16 {
        let mut client = Client::H2(send.clone());
        tasks.push(tokio::spawn(async move {
            let q = query(i, &format!("n{i}.concurrent.test"));
            let reply = if i % 2 == 0 {
                client.send(get_dns(&q)).await
            } else {
                client
                    .send(post(Some("application/dns-message"), q.clone()))
                    .await
            };
            assert_answers(&reply.expect("answered"), &q);
        }));
    }
    for t in tasks {
        t.await.expect("stream task");
    }
    assert_eq!(server.status_count(200), 100);
    server.stop().await;
}

/// A body that never arrives.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(40)
    }
}

fn short_timeouts() -> DohOptions {
    DohOptions {
        tls_handshake_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..DohOptions::default()
    }
}

#[tokio::test]
async fn a_body_that_never_comes_times_out_without_blocking_others() {
    let server = Server::start(
        Some(server_tls("ecdsa", false)),
        Protocol::DoH,
        short_timeouts(),
    )
    .await;
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut stalled = Client::tls(server.addr, version).await;
        let mut other = Client::tls(server.addr, version).await;
        let req = Request::post("/dns-query")
            .header(CONTENT_TYPE, "application/dns-message")
            .body(BoxBody::new(Stalled))
            .expect("request");
        let waiting = tokio::spawn(async move { stalled.send(req).await.map(|r| r.status) });
        let q = query(1, "other.test");
        assert_answers(
            &other.send(get_dns(&q)).await.expect("other client served"),
            &q,
        );
        assert_eq!(
            waiting.await.expect("task").expect("answered"),
            StatusCode::REQUEST_TIMEOUT
        );
    }
    assert_eq!(server.status_count(408), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_client_resetting_every_stream_leaks_nothing() {
    let server = Server::tls().await;
    let Client::H2(send) = Client::tls(server.addr, Version::HTTP_2).await else {
        unreachable!("asked for HTTP/2");
    };
    // Open streams on slow queries and cancel them: hyper resets each stream it gives up on.
    for i in 0..20u16 {
        let mut send = send.clone();
        let req = get_dns(&query(i, "slow.test"));
        let (mut parts, body) = req.into_parts();
        parts.uri = format!("https://localhost{}", parts.uri)
            .parse()
            .expect("uri");
        let pending = send.send_request(Request::from_parts(parts, body));
        let _ = tokio::time::timeout(Duration::from_millis(20), pending).await;
    }
    let mut other = Client::tls(server.addr, Version::HTTP_2).await;
    let q = query(9, "after-resets.test");
    assert_answers(
        &other
            .send(get_dns(&q))
            .await
            .expect("others are still served"),
        &q,
    );
    // Every abandoned query's handler future is dropped rather than left running.
    let mut waited = 0;
    while server.handler.active.load(Ordering::SeqCst) > 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(server.handler.active.load(Ordering::SeqCst), 0);
    let resets = server
        .metrics
        .doh_streams_reset
        .with_label_values(&["ep"])
        .get();
    assert!(resets > 0, "resets are counted");
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_cut_off_and_counted() {
    let server = Server::start(
        Some(server_tls("ecdsa", false)),
        Protocol::DoH,
        short_timeouts(),
    )
    .await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let failures = server
        .metrics
        .tls_handshake_failures
        .with_label_values(&["ep", "doh"])
        .get();
    assert_eq!(failures, 1);
    // Garbage instead of a ClientHello fails too.
    let mut junk = TcpStream::connect(server.addr).await.expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let _ = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf)).await;
    let failures = server
        .metrics
        .tls_handshake_failures
        .with_label_values(&["ep", "doh"])
        .get();
    assert_eq!(failures, 2);
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = Server::start(None, Protocol::DoH, short_timeouts()).await;
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection is closed");
    server.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let server = Server::tls().await;
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut client = Client::tls(server.addr, version).await;
        let req = Request::get("/dns-query?dns=AAAA")
            .header("x-padding", "p".repeat(200 * 1024))
            .body(full(Bytes::new()))
            .expect("request");
        match client.send(req).await {
            Ok(reply) => assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            // HTTP/2 may instead refuse the stream or the connection: no answer either way.
            Err(_) => assert_eq!(version, Version::HTTP_2),
        }
    }
    let mut client = Client::tls(server.addr, Version::HTTP_2).await;
    let q = query(3, "after-headers.test");
    assert_answers(&client.send(get_dns(&q)).await.expect("still serving"), &q);
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed() {
    let options = DohOptions {
        max_connections: 1,
        ..DohOptions::default()
    };
    let server = Server::start(None, Protocol::DoH, options).await;
    let mut first = Client::plain(server.addr, Version::HTTP_2).await;
    let q = query(1, "first.test");
    assert_answers(&first.send(get_dns(&q)).await.expect("first"), &q);
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let dropped = server
        .metrics
        .dropped
        .with_label_values(&["ep", "doh", "connection_limit"])
        .get();
    assert_eq!(dropped, 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[tokio::test]
async fn stops_within_two_seconds_and_the_port_can_be_bound_again() {
    let server = Server::tls().await;
    let addr = server.addr;
    // An open, idle connection must not hold shutdown up.
    let mut client = Client::tls(addr, Version::HTTP_2).await;
    let q = query(0, "before.test");
    assert_answers(&client.send(get_dns(&q)).await.expect("GET"), &q);
    server.stop().await;
    TcpListener::bind(addr)
        .await
        .expect("the port is free again");
}

#[tokio::test]
async fn requests_in_flight_finish_during_the_grace_period() {
    let server = Server::tls().await;
    let mut client = Client::tls(server.addr, Version::HTTP_2).await;
    let q = query(5, "slow.test");
    let in_flight = tokio::spawn({
        let q = q.clone();
        async move { client.send(get_dns(&q)).await }
    });
    while server.handler.active.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = server.addr;
    server.stop().await;
    assert_answers(&in_flight.await.expect("task").expect("answered"), &q);
    TcpListener::bind(addr)
        .await
        .expect("the port is free again");
}

// ---------------------------------------------------------------------------------------------
// DoH-FIPS.

#[cfg(not(feature = "fips"))]
#[tokio::test]
async fn without_the_fips_feature_doh_fips_is_refused_with_how_to_build() {
    assert!(!dohgate_inbound::fips_available());
    let dir = certs_dir();
    let err = tls::server_config(
        &dir.join("localhost-ecdsa-chain.pem"),
        &dir.join("localhost-ecdsa.key"),
        true,
    )
    .expect_err("no FIPS in this build");
    assert!(matches!(err, TlsError::FipsUnavailable));
    assert!(
        err.to_string()
            .contains("cargo build --release --features fips"),
        "{err}"
    );
    let refused = DohListener::new(
        Arc::new(StubHandler::default()),
        Endpoint::new("ep", Default::default()),
        Protocol::DohFips,
        Some(server_tls("ecdsa", false)),
        DohOptions::default(),
        InboundMetrics::register(&prometheus::Registry::new()).expect("metrics"),
    );
    assert!(matches!(refused, Err(TlsError::FipsUnavailable)));
}

#[cfg(feature = "fips")]
mod fips {
    use super::*;
    use rustls::crypto::aws_lc_rs::{cipher_suite, kx_group};

    fn provider_with(
        suites: Vec<rustls::SupportedCipherSuite>,
        groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    ) -> rustls::crypto::CryptoProvider {
        rustls::crypto::CryptoProvider {
            cipher_suites: suites,
            kx_groups: groups,
            ..rustls::crypto::aws_lc_rs::default_provider()
        }
    }

    async fn fips_server() -> Server {
        let config = server_tls("ecdsa", true);
        assert!(config.fips(), "the server reports FIPS mode");
        Server::start(Some(config), Protocol::DohFips, DohOptions::default()).await
    }

    #[tokio::test]
    async fn approved_algorithms_are_served() {
        assert!(dohgate_inbound::fips_available());
        let server = fips_server().await;
        for (suite, group) in [
            (cipher_suite::TLS13_AES_128_GCM_SHA256, kx_group::SECP256R1),
            (cipher_suite::TLS13_AES_256_GCM_SHA384, kx_group::SECP384R1),
            (
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                kx_group::SECP256R1,
            ),
        ] {
            let config = client_tls_with(provider_with(vec![suite], vec![group]), &[b"h2"]);
            let stream = tls_connect(server.addr, config)
                .await
                .expect("AES-GCM with P-256/P-384");
            assert!(
                stream
                    .get_ref()
                    .1
                    .negotiated_cipher_suite()
                    .is_some_and(|s| s.fips())
            );
            let mut client = Client::over(TokioIo::new(stream), Version::HTTP_2).await;
            let q = query(0, "fips.test");
            assert_answers(&client.send(get_dns(&q)).await.expect("GET"), &q);
        }
        let seen = server.handler.seen.lock().expect("lock").clone();
        assert!(seen.iter().all(|(p, _)| *p == Protocol::DohFips));
        server.stop().await;
    }

    #[tokio::test]
    async fn chacha20_and_x25519_are_refused() {
        let server = fips_server().await;
        let chacha = provider_with(
            vec![cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
            vec![kx_group::SECP256R1],
        );
        assert!(
            tls_connect(server.addr, client_tls_with(chacha, &[b"h2"]))
                .await
                .is_err()
        );
        let x25519 = provider_with(
            vec![cipher_suite::TLS13_AES_128_GCM_SHA256],
            vec![kx_group::X25519],
        );
        assert!(
            tls_connect(server.addr, client_tls_with(x25519, &[b"h2"]))
                .await
                .is_err()
        );
        let failures = server
            .metrics
            .tls_handshake_failures
            .with_label_values(&["ep", "doh-fips"])
            .get();
        assert_eq!(failures, 2);
        server.stop().await;
    }

    #[test]
    fn the_listener_refuses_a_configuration_that_is_not_fips() {
        let mut config = (*server_tls("ecdsa", true)).clone();
        config.require_ems = false;
        let refused = DohListener::new(
            Arc::new(StubHandler::default()),
            Endpoint::new("ep", Default::default()),
            Protocol::DohFips,
            Some(Arc::new(config)),
            DohOptions::default(),
            InboundMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        );
        assert!(matches!(refused, Err(TlsError::NotFips)));
        let cleartext = DohListener::new(
            Arc::new(StubHandler::default()),
            Endpoint::new("ep", Default::default()),
            Protocol::DohFips,
            None,
            DohOptions::default(),
            InboundMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        );
        assert!(matches!(cleartext, Err(TlsError::FipsWithoutTls)));
    }
}

/// Sends `request` as raw bytes on a new cleartext connection; returns the status line.
async fn raw_status(addr: SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn http11_without_host_is_a_bad_request() {
    let server = Server::start(None, Protocol::DoH, DohOptions::default()).await;
    let q = wire::build_query(0, "a.test", wire::TYPE_A, None).expect("query");
    let dns = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&q);
    let no_host = format!(
        "GET /dns-query?dns={dns} HTTP/1.1\r\nAccept: application/dns-message\r\nConnection: close\r\n\r\n"
    );
    assert!(
        raw_status(server.addr, &no_host)
            .await
            .starts_with("HTTP/1.1 400"),
        "RFC 9112 §3.2"
    );
    let with_host =
        format!("GET /dns-query?dns={dns} HTTP/1.1\r\nHost: dns.test\r\nConnection: close\r\n\r\n");
    assert!(
        raw_status(server.addr, &with_host)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let http10 = format!("GET /dns-query?dns={dns} HTTP/1.0\r\n\r\n");
    assert!(
        raw_status(server.addr, &http10).await.ends_with("200 OK"),
        "HTTP/1.0 has no Host requirement"
    );
    server.stop().await;
}
