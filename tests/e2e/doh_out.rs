//! Outbound DoH end to end: dohgate B forwarding over DoH to dohgate A's DoH listener, and to a
//! small DoH server written here that records every request and misbehaves on demand.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_CORP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const IP_DOH: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const NOERROR: u8 = 0;
const SERVFAIL: u8 = 2;
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

// ---------------------------------------------------------------------------------------------
// A DoH server for the tests.

/// How the test DoH server answers.
#[derive(Clone, Debug)]
enum Serve {
    /// A proper answer with this A record.
    Answer(Ipv4Addr),
    /// A proper answer body with this status.
    Status(u16),
    /// A proper answer body with this content type.
    ContentType(&'static str),
    /// Status 200, the right content type, and a body that is not a DNS message.
    Garbage,
    /// Status 200 and a body larger than any DNS message.
    Oversized,
    /// A well-formed answer to another question.
    OtherQuestion,
    /// Reads the request and never answers.
    Stall,
    /// Drops the connection the next request arrives on, then answers as `Answer`.
    DropConnectionOnce(Ipv4Addr),
}

/// One request the server received.
#[derive(Clone, Debug)]
struct SeenRequest {
    method: String,
    /// Path and query string.
    target: String,
    /// `:authority` (HTTP/2) or Host (HTTP/1.1).
    authority: String,
    version: Version,
    sni: Option<String>,
    accept: String,
    content_type: String,
    /// The DNS query the request carried.
    query: Vec<u8>,
}

#[derive(Clone, Debug)]
struct DohServer {
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    serve: Arc<Mutex<Serve>>,
    /// TLS handshakes completed.
    connections: Arc<AtomicUsize>,
    /// Cancelled to drop every open connection (as a server's idle timeout would).
    drop_all: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
    /// Cancelled once the listening socket is closed.
    stopped: CancellationToken,
}

impl DohServer {
    async fn start(cert_name: &str, alpn: &[&[u8]], serve: Serve) -> DohServer {
        Self::start_on(
            "127.0.0.1:0".parse().expect("addr"),
            server_tls(cert_name, alpn, None),
            serve,
        )
        .await
    }

    async fn start_on(addr: SocketAddr, tls: Arc<ServerConfig>, serve: Serve) -> DohServer {
        let listener = TcpListener::bind(addr).await.expect("bind DoH test server");
        let server = DohServer {
            addr: listener.local_addr().expect("addr"),
            tls,
            seen: Arc::default(),
            serve: Arc::new(Mutex::new(serve)),
            connections: Arc::default(),
            drop_all: Arc::default(),
            stop: CancellationToken::new(),
            stopped: CancellationToken::new(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(s.tls.clone());
            loop {
                let (tcp, _) = tokio::select! {
                    _ = s.stop.cancelled() => {
                        drop(listener);
                        s.stopped.cancel();
                        return;
                    }
                    r = listener.accept() => match r { Ok(r) => r, Err(_) => continue },
                };
                let (s, acceptor) = (s.clone(), acceptor.clone());
                tokio::spawn(async move { s.connection(acceptor, tcp).await });
            }
        });
        server
    }

    async fn connection(&self, acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream) {
        // A client that refuses our certificate, or has none when one is required, ends here.
        let Ok(tls) = acceptor.accept(tcp).await else {
            return;
        };
        self.connections.fetch_add(1, Ordering::SeqCst);
        let sni = tls.get_ref().1.server_name().map(str::to_string);
        let kill = CancellationToken::new();
        let all = self.drop_all.lock().expect("lock").clone();
        let svc = {
            let (s, kill) = (self.clone(), kill.clone());
            service_fn(move |req| {
                let (s, sni, kill) = (s.clone(), sni.clone(), kill.clone());
                async move { s.handle(req, sni, kill).await }
            })
        };
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(tls), svc);
        // Leaving the select drops the connection without a goodbye, as a crash would.
        tokio::select! {
            _ = conn => {}
            _ = kill.cancelled() => {}
            _ = all.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        sni: Option<String>,
        kill: CancellationToken,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let method = req.method().to_string();
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| header("host"));
        let (version, accept, content_type) =
            (req.version(), header("accept"), header("content-type"));
        let query = if method == "GET" {
            let b64 = target.split_once("dns=").map_or("", |(_, q)| q);
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap_or_default()
        } else {
            req.into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default()
        };
        self.seen.lock().expect("lock").push(SeenRequest {
            method,
            target,
            authority,
            version,
            sni,
            accept,
            content_type,
            query: query.clone(),
        });
        let serve = self.serve.lock().expect("lock").clone();
        let ok = |body: Vec<u8>, status: u16, ct: &str| {
            Ok(Response::builder()
                .status(status)
                .header("content-type", ct)
                .body(Full::new(Bytes::from(body)))
                .expect("response"))
        };
        const DNS: &str = "application/dns-message";
        match serve {
            Serve::Answer(ip) => ok(dns_answer(&query, ip), 200, DNS),
            Serve::Status(code) => ok(dns_answer(&query, IP_DOH), code, DNS),
            Serve::ContentType(ct) => ok(dns_answer(&query, IP_DOH), 200, ct),
            Serve::Garbage => ok(b"<html>this is not DNS</html>".to_vec(), 200, DNS),
            Serve::Oversized => {
                let mut body = dns_answer(&query, IP_DOH);
                body.resize(70_000, 0);
                ok(body, 200, DNS)
            }
            Serve::OtherQuestion => ok(
                dns_answer(&crate::support::query(0, "other.example", A, None), IP_DOH),
                200,
                DNS,
            ),
            Serve::Stall => std::future::pending().await,
            Serve::DropConnectionOnce(ip) => {
                *self.serve.lock().expect("lock") = Serve::Answer(ip);
                kill.cancel();
                std::future::pending().await
            }
        }
    }

    fn set(&self, serve: Serve) {
        *self.serve.lock().expect("lock") = serve;
    }

    fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("lock").clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Drops every open connection and keeps listening.
    fn drop_connections(&self) {
        let mut all = self.drop_all.lock().expect("lock");
        all.cancel();
        *all = CancellationToken::new();
    }

    /// Stops listening and drops every connection, then listens again on the same port, with
    /// new records: a restarted server.
    async fn restart(self, serve: Serve) -> DohServer {
        self.stop.cancel();
        self.stopped.cancelled().await;
        DohServer::start_on(self.addr, self.tls.clone(), serve).await
    }
}

/// A TLS server configuration from `certs/<name>-chain.pem` and `certs/<name>.key`; with
/// `client_ca`, clients must present a certificate from that CA.
fn server_tls(name: &str, alpn: &[&[u8]], client_ca: Option<&str>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_file_iter(cert(&format!("{name}-chain.pem")))
        .expect("chain")
        .collect::<Result<Vec<_>, _>>()
        .expect("chain parses");
    let key = PrivateKeyDer::from_pem_file(cert(&format!("{name}.key"))).expect("key");
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("client CA") {
                roots
                    .add(c.expect("client CA parses"))
                    .expect("client CA usable");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).expect("server cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An answer to `query` (ID and question copied) with one A record.
fn dns_answer(query: &[u8], ip: Ipv4Addr) -> Vec<u8> {
    let Some((_, _, qend)) = read_question(query) else {
        return b"not a query".to_vec();
    };
    let mut out = query[..qend].to_vec();
    out[2] = 0x80 | (query[2] & 0x01);
    out[3] = 0x80;
    out[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
    out.extend_from_slice(&ip.octets());
    out
}

// ---------------------------------------------------------------------------------------------
// Gateway B's configuration.

/// A DoH target table for `addr` with extra keys such as `server_name = "..."`.
fn doh_target(addr: SocketAddr, extra: &str) -> String {
    format!("{{ address = \"{addr}\", protocol = \"doh\"{extra} }}")
}

/// An outbound endpoint trusting the test CA and forward rules `(name, domain, targets)`.
fn doh_rules(rules: &[(&str, &str, Vec<String>)]) -> String {
    let mut out = format!(
        "[[outbound]]\nname = \"out\"\nprotocols = [\"do53\", \"doh\", \"doh-fips\"]\nca_file = \"{}\"\n",
        cert("test-ca.pem")
    );
    for (name, domain, targets) in rules {
        out.push_str(&format!(
            "[[rule]]\nname = \"{name}\"\ndomain = \"{domain}\"\ntype = \"forward\"\noutbound = \"out\"\ntargets = [{}]\n",
            targets.join(", ")
        ));
    }
    out
}

async fn metrics(gw: &dohgate::RunningGateway) -> String {
    let admin = gw.addrs().admin.expect("admin listener");
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Asks gateway B over UDP; returns the parsed answer after checking the client's ID came back.
async fn ask(gw: &dohgate::RunningGateway, id: u16, name: &str) -> Answer {
    let answer = udp(gw.do53_addr().expect("do53"), &query(id, name, A, None)).await;
    assert_eq!(answer.id, id, "{name}: the client's ID is restored");
    answer
}

/// Gateway A: DoH (and Do53) inbound with the localhost test certificate, answering every
/// name from `upstream`. `doh` picks the DoH port (0 for any).
async fn gateway_a(upstream: &Stub, doh: u16) -> dohgate::RunningGateway {
    gateway(&format!(
        "{}[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:0\"]\nlisten_doh = [\"127.0.0.1:{doh}\"]\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        resolver(upstream),
        cert("localhost-ecdsa-chain.pem"),
        cert("localhost-ecdsa.key"),
    ))
    .await
}

// ---------------------------------------------------------------------------------------------
// dohgate B <- dohgate A.

#[tokio::test]
async fn dohgate_forwards_corp_names_over_doh_to_dohgate() {
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let a = gateway_a(&corp, 0).await;
    let a_doh = a.addrs().doh[0].1;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(a_doh, "")])])
    ))
    .await;

    // A burst before any connection exists: every query waits for the same one.
    let mut burst = Vec::new();
    for i in 0..24u16 {
        let addr = b.do53_addr().expect("do53");
        burst.push(tokio::spawn(async move {
            udp(addr, &query(0x100 + i, &format!("h{i}.corp.test"), A, None)).await
        }));
    }
    for (i, h) in burst.into_iter().enumerate() {
        let answer = h.await.expect("query task");
        assert_eq!(answer.rcode, NOERROR, "query {i}");
        assert_eq!(answer.addrs, vec![IP_CORP], "query {i}");
        assert_eq!(answer.id, 0x100 + i as u16);
    }
    let answer = ask(&b, 0xbeef, "www.example.com").await;
    assert_eq!(answer.addrs, vec![IP_DEFAULT]);
    let answer = ask(&b, 0xcafe, "Host.Corp.Test").await;
    assert_eq!(answer.addrs, vec![IP_CORP]);
    assert_eq!(
        read_question(&answer.raw).map(|q| q.0),
        Some("host.corp.test.".to_string())
    );
    assert!(
        answer.raw[12..].starts_with(b"\x04Host\x04Corp\x04Test\x00"),
        "the client's question comes back exactly as asked"
    );
    assert_eq!(corp.count(), 25);
    assert!(
        default
            .seen()
            .iter()
            .all(|s| !s.name.ends_with("corp.test."))
    );

    let m = metrics(&b).await;
    let doh = [("protocol", "doh")];
    assert_eq!(metric(&m, "dohgate_target_connections", &doh), 1.0, "{m}");
    assert_eq!(
        metric(&m, "dohgate_target_connection_failures_total", &doh),
        0.0
    );
    assert_eq!(metric(&m, "dohgate_target_tls_failures_total", &doh), 0.0);
    assert_eq!(
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("protocol", "doh"), ("outcome", "ok")]
        ),
        25.0
    );
    let m = metrics(&a).await;
    assert_eq!(
        metric(
            &m,
            "dohgate_queries_total",
            &[("protocol", "doh"), ("transport", "h2")]
        ),
        25.0,
        "A saw every corp query over DoH on HTTP/2"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_restarted_dohgate_costs_no_query() {
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let a = gateway_a(&corp, 0).await;
    let a_doh = a.addrs().doh[0].1;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(a_doh, "")])])
    ))
    .await;
    assert_eq!(ask(&b, 1, "one.corp.test").await.addrs, vec![IP_CORP]);

    a.shutdown().await;
    let a = gateway_a(&corp, a_doh.port()).await;
    for i in 0..5 {
        let answer = ask(&b, 2 + i, &format!("after{i}.corp.test")).await;
        assert_eq!(answer.rcode, NOERROR, "query {i} after the restart");
        assert_eq!(answer.addrs, vec![IP_CORP]);
    }
    let m = metrics(&b).await;
    assert_eq!(
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("protocol", "doh"), ("outcome", "ok")]
        ),
        6.0
    );
    b.shutdown().await;
    a.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Against the recording test server.

#[tokio::test]
async fn post_and_get_requests_follow_rfc_8484() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[
            ("post", "post.test", vec![doh_target(server.addr, "")]),
            (
                "get",
                "get.test",
                vec![doh_target(server.addr, ", method = \"GET\", path = \"/q\"")]
            ),
        ])
    ))
    .await;
    let answer = ask(&b, 0xbeef, "a.post.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    let answer = ask(&b, 0xf00d, "b.get.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));

    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let authority = format!("127.0.0.1:{}", server.addr.port());
    for r in &seen {
        assert_eq!(r.version, Version::HTTP_2, "HTTP/2 is preferred");
        assert_eq!(r.authority, authority);
        assert_eq!(r.sni, None, "no SNI for an IP address");
        assert_eq!(r.accept, "application/dns-message");
        assert_eq!(&r.query[..2], &[0, 0], "ID 0 on the wire");
    }
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/dns-query");
    assert_eq!(seen[0].content_type, "application/dns-message");
    assert_eq!(
        read_question(&seen[0].query).map(|q| q.0).as_deref(),
        Some("a.post.test.")
    );
    assert_eq!(seen[1].method, "GET");
    assert!(seen[1].target.starts_with("/q?dns="), "{}", seen[1].target);
    assert!(!seen[1].target.ends_with('='), "base64url without padding");
    assert_eq!(
        read_question(&seen[1].query).map(|q| q.0).as_deref(),
        Some("b.get.test.")
    );
    b.shutdown().await;
}

#[tokio::test]
async fn server_name_sets_sni_certificate_name_and_authority() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("dns-corp", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[
            (
                "named",
                "named.test",
                vec![doh_target(server.addr, ", server_name = \"dns.corp.test\"")]
            ),
            ("by-ip", "by-ip.test", vec![doh_target(server.addr, "")]),
        ])
    ))
    .await;
    let answer = ask(&b, 7, "x.named.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sni.as_deref(), Some("dns.corp.test"));
    assert_eq!(
        seen[0].authority,
        format!("dns.corp.test:{}", server.addr.port())
    );

    // The same server asked by its IP address: its certificate does not name it.
    let answer = ask(&b, 8, "x.by-ip.test").await;
    assert_eq!(answer.rcode, SERVFAIL);
    assert_eq!(
        server.seen().len(),
        1,
        "no request went to an unverified server"
    );
    let m = metrics(&b).await;
    assert!(
        metric(
            &m,
            "dohgate_target_tls_failures_total",
            &[("protocol", "doh")]
        ) >= 1.0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let fallback = Stub::start(Behavior::Answer(IP_CORP)).await;
    let server = DohServer::start("wrong-name", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[
            ("only", "only.test", vec![doh_target(server.addr, "")]),
            (
                "mixed",
                "mixed.test",
                vec![
                    doh_target(server.addr, ""),
                    format!("\"{}\"", fallback.addr)
                ]
            ),
        ])
    ))
    .await;
    let answer = ask(&b, 1, "x.only.test").await;
    assert_eq!(
        answer.rcode, SERVFAIL,
        "never an answer from an unverified server"
    );
    for i in 0..4 {
        let answer = ask(&b, 10 + i, &format!("x{i}.mixed.test")).await;
        assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_CORP]));
    }
    assert!(server.seen().is_empty());
    let m = metrics(&b).await;
    let doh = [("protocol", "doh")];
    let tls_failures = metric(&m, "dohgate_target_tls_failures_total", &doh);
    assert!(tls_failures >= 1.0, "{m}");
    assert_eq!(
        metric(&m, "dohgate_target_connection_failures_total", &doh),
        tls_failures
    );
    assert_eq!(metric(&m, "dohgate_target_connections", &doh), 0.0);
    b.shutdown().await;
}

#[tokio::test]
async fn unusable_answers_fail_the_attempt_and_move_to_the_next_target() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let fallback = Stub::start(Behavior::Answer(IP_CORP)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[
            ("only", "only.test", vec![doh_target(server.addr, "")]),
            (
                "mixed",
                "mixed.test",
                vec![
                    doh_target(server.addr, ""),
                    format!("\"{}\"", fallback.addr)
                ]
            ),
        ])
    ))
    .await;
    let mut id = 0;
    for bad in [
        Serve::Status(500),
        Serve::Status(404),
        Serve::ContentType("text/plain"),
        Serve::ContentType("application/json"),
        Serve::Garbage,
        Serve::Oversized,
        Serve::OtherQuestion,
    ] {
        server.set(bad.clone());
        id += 1;
        let answer = ask(&b, id, &format!("q{id}.only.test")).await;
        assert_eq!(
            answer.rcode, SERVFAIL,
            "{bad:?}: SERVFAIL, never a wrong answer"
        );
        assert!(answer.addrs.is_empty(), "{bad:?}");
        for _ in 0..3 {
            id += 1;
            let answer = ask(&b, id, &format!("q{id}.mixed.test")).await;
            assert_eq!(
                (answer.rcode, &answer.addrs),
                (NOERROR, &vec![IP_CORP]),
                "{bad:?}"
            );
        }
    }
    // The connection survives answers it refused: they were HTTP exchanges, not its failure.
    server.set(Serve::Answer(IP_DOH));
    id += 1;
    assert_eq!(ask(&b, id, "ok.only.test").await.addrs, vec![IP_DOH]);
    let m = metrics(&b).await;
    assert_eq!(
        metric(&m, "dohgate_target_connection_failures_total", &[]),
        0.0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_dies_under_a_query_is_retried_once_on_a_fresh_one() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(server.addr, "")])])
    ))
    .await;
    assert_eq!(ask(&b, 1, "one.corp.test").await.addrs, vec![IP_DOH]);
    server.set(Serve::DropConnectionOnce(IP_DOH));
    let answer = ask(&b, 2, "two.corp.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    assert_eq!(server.seen().len(), 3);
    assert_eq!(server.connections(), 2);
    let m = metrics(&b).await;
    let doh = [("protocol", "doh")];
    assert_eq!(metric(&m, "dohgate_target_stale_retries_total", &doh), 1.0);
    assert_eq!(
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("protocol", "doh"), ("outcome", "ok")]
        ),
        2.0,
        "the retry is part of the attempt, not a failure"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn a_burst_after_the_target_dropped_idle_connections_does_not_fail() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(server.addr, "")])])
    ))
    .await;
    assert_eq!(ask(&b, 1, "warm.corp.test").await.addrs, vec![IP_DOH]);
    for round in 0..3u16 {
        // What a long idle period ends in: the target (or a middlebox) dropped the connection.
        server.drop_connections();
        let mut burst = Vec::new();
        for i in 0..20u16 {
            let addr = b.do53_addr().expect("do53");
            let id = round * 100 + i;
            burst.push(tokio::spawn(async move {
                (
                    id,
                    udp(addr, &query(id, &format!("b{id}.corp.test"), A, None)).await,
                )
            }));
        }
        for h in burst {
            let (id, answer) = h.await.expect("query task");
            assert_eq!(answer.id, id);
            assert_eq!(
                (answer.rcode, answer.addrs),
                (NOERROR, vec![IP_DOH]),
                "query {id}"
            );
        }
        assert_eq!(
            server.connections(),
            2 + round as usize,
            "the whole burst waited for one new connection"
        );
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_restarted_target_costs_no_query() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(server.addr, "")])])
    ))
    .await;
    assert_eq!(ask(&b, 1, "one.corp.test").await.addrs, vec![IP_DOH]);
    let mut server = server;
    for round in 0..3u16 {
        server = server.restart(Serve::Answer(IP_CORP)).await;
        let answer = ask(&b, 10 + round, &format!("r{round}.corp.test")).await;
        assert_eq!(
            (answer.rcode, answer.addrs),
            (NOERROR, vec![IP_CORP]),
            "round {round}"
        );
        assert_eq!(server.seen().len(), 1, "round {round}");
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_stalled_target_times_out_and_the_do53_target_answers() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let fallback = Stub::start(Behavior::Answer(IP_CORP)).await;
    let server = DohServer::start("localhost-ecdsa", H2_AND_H1, Serve::Stall).await;
    let b = gateway(&format!(
        "{}[timeouts]\nattempt_ms = 300\nquery_ms = 3000\n{}",
        resolver(&default),
        doh_rules(&[(
            "corp",
            "corp.test",
            vec![
                doh_target(server.addr, ""),
                format!("\"{}\"", fallback.addr)
            ]
        )])
    ))
    .await;
    // The first target is picked at random: ask until the stalled one has been tried.
    let mut asked = 0;
    while server.seen().is_empty() && asked < 30 {
        asked += 1;
        let answer = ask(&b, asked, &format!("s{asked}.corp.test")).await;
        assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_CORP]));
    }
    assert!(!server.seen().is_empty(), "the DoH target was never tried");
    let m = metrics(&b).await;
    assert!(
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("protocol", "doh"), ("outcome", "timeout")]
        ) >= 1.0
    );
    b.shutdown().await;
}

#[tokio::test]
async fn an_http1_only_target_gets_kept_alive_connections() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start("localhost-ecdsa", &[b"http/1.1"], Serve::Answer(IP_DOH)).await;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[("corp", "corp.test", vec![doh_target(server.addr, "")])])
    ))
    .await;
    for i in 0..5 {
        let answer = ask(&b, i, &format!("h1-{i}.corp.test")).await;
        assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    }
    assert_eq!(
        server.connections(),
        1,
        "one kept-alive connection for queries in turn"
    );
    let seen = server.seen();
    assert!(seen.iter().all(|r| r.version == Version::HTTP_11));
    assert!(
        seen.iter()
            .all(|r| r.authority == format!("127.0.0.1:{}", server.addr.port())),
        "Host header: {seen:#?}"
    );
    let mut burst = Vec::new();
    for i in 0..10u16 {
        let addr = b.do53_addr().expect("do53");
        burst.push(tokio::spawn(async move {
            udp(addr, &query(i, &format!("p{i}.corp.test"), A, None)).await
        }));
    }
    for h in burst {
        let answer = h.await.expect("query task");
        assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    }
    b.shutdown().await;
}

#[tokio::test]
async fn a_target_that_requires_a_client_certificate_gets_one() {
    let dir = std::env::temp_dir().join(format!("dohgate-mtls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A client CA and a client certificate made for this test only.
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dohgate test client CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let mut client_params =
        rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("client params");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client cert");
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let ca_pem = write("client-ca.pem", ca.pem());
    let cert_pem = write("client.pem", client.pem());
    let key_pem = write("client.key", client_key.serialize_pem());

    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let server = DohServer::start_on(
        "127.0.0.1:0".parse().expect("addr"),
        server_tls("localhost-ecdsa", H2_AND_H1, Some(&ca_pem)),
        Serve::Answer(IP_DOH),
    )
    .await;
    let b = gateway(&format!(
        "{}{}[[outbound]]\nname = \"mtls\"\nprotocols = [\"doh\"]\nca_file = \"{}\"\n\
         client_cert = \"{cert_pem}\"\nclient_key = \"{key_pem}\"\n\
         [[rule]]\nname = \"mtls\"\ndomain = \"mtls.test\"\ntype = \"forward\"\noutbound = \"mtls\"\n\
         targets = [{}]\n",
        resolver(&default),
        doh_rules(&[("anon", "anon.test", vec![doh_target(server.addr, "")])]),
        cert("test-ca.pem"),
        doh_target(server.addr, ""),
    ))
    .await;
    let answer = ask(&b, 1, "x.mtls.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_DOH]));
    let answer = ask(&b, 2, "x.anon.test").await;
    assert_eq!(
        answer.rcode, SERVFAIL,
        "without a client certificate the target refuses"
    );
    assert_eq!(server.seen().len(), 1);
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "fips"))]
#[tokio::test]
async fn a_doh_fips_target_is_refused_at_start_without_the_fips_build() {
    let text = format!(
        "[resolver]\ntargets = [\"127.0.0.1:9\"]\n{}\n[[inbound]]\nname = \"t\"\nlisten = [\"127.0.0.1:0\"]\n",
        doh_rules(&[(
            "gov",
            "gov.test",
            vec!["{ address = \"127.0.0.1:8443\", protocol = \"doh-fips\" }".to_string()]
        )])
    );
    let config = dohgate_core::config::parse(&text, None).expect("valid config");
    let err = dohgate::start(config)
        .await
        .expect_err("a DoH-FIPS target needs the fips build");
    let text = format!("{err:#}");
    assert!(text.contains("https+fips://127.0.0.1:8443"), "{text}");
    assert!(text.contains("--features fips"), "{text}");
}

#[cfg(feature = "fips")]
#[tokio::test]
async fn a_doh_fips_target_talks_to_a_doh_fips_listener() {
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let a = gateway(&format!(
        "{}[[inbound]]\nname = \"gov\"\nlisten = [\"127.0.0.1:0\"]\nlisten_doh_fips = [\"127.0.0.1:0\"]\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        resolver(&corp),
        cert("localhost-ecdsa-chain.pem"),
        cert("localhost-ecdsa.key"),
    ))
    .await;
    let a_fips = a.addrs().doh_fips[0].1;
    let b = gateway(&format!(
        "{}{}",
        resolver(&default),
        doh_rules(&[(
            "gov",
            "gov.test",
            vec![format!(
                "{{ address = \"{a_fips}\", protocol = \"doh-fips\" }}"
            )]
        )])
    ))
    .await;
    let answer = ask(&b, 0x0f1f, "www.gov.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_CORP]));
    let m = metrics(&b).await;
    assert_eq!(
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("protocol", "doh-fips"), ("outcome", "ok")]
        ),
        1.0
    );
    let m = metrics(&a).await;
    assert_eq!(
        metric(&m, "dohgate_queries_total", &[("protocol", "doh-fips")]),
        1.0
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn the_command_line_forwards_over_doh_with_a_ca_file() {
    use clap::Parser as _;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let a = gateway_a(&corp, 0).await;
    let a_doh = a.addrs().doh[0].1;
    let cli = dohgate::cli::Cli::parse_from([
        "dohgate".to_string(),
        "--listen-do53".to_string(),
        "127.0.0.1:0".to_string(),
        "--upstream".to_string(),
        default.addr.to_string(),
        "--forward".to_string(),
        format!("corp.test=https://{a_doh}/dns-query"),
        "--ca-file".to_string(),
        cert("test-ca.pem"),
        "--admin".to_string(),
        "127.0.0.1:0".to_string(),
    ]);
    let config = cli.load_config().expect("flags are valid");
    let b = dohgate::start(config).await.expect("gateway starts");
    let answer = ask(&b, 0x4242, "www.corp.test").await;
    assert_eq!((answer.rcode, answer.addrs), (NOERROR, vec![IP_CORP]));
    let answer = ask(&b, 0x4243, "www.example.com").await;
    assert_eq!(answer.addrs, vec![IP_DEFAULT]);
    assert_eq!(corp.count(), 1);
    b.shutdown().await;
    a.shutdown().await;
}
