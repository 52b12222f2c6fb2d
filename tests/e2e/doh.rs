//! DoH end to end: a gateway with DoH listeners (TLS from certs/, and cleartext) on 127.0.0.1
//! port 0, in front of stub upstreams, queried with hand-written HTTP/1.1 requests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_CORP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// POSTs `query` over HTTP/1.1 and returns (status, content-type, body).
async fn post<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    query: &[u8],
) -> (u16, String, Vec<u8>) {
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\n\
         Accept: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        query.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(query).await.expect("write body");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, conn.read_to_end(&mut raw))
        .await
        .expect("answered in time");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type:"))
        .unwrap_or("")
        .trim()
        .to_string();
    (status, content_type, raw[split + 4..].to_vec())
}

#[tokio::test]
async fn doh_query_is_routed_by_a_forwarding_rule() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = gateway(&format!(
        "{}{OUTBOUND}{}[[inbound]]\nname = \"web\"\nlisten_doh_plain = [\"127.0.0.1:0\"]\n",
        resolver(&default),
        forward_rule("corp", "corp.test", &[corp.addr]),
    ))
    .await;
    let addr = gw.addrs().doh_plain[0].1;
    for (name, want) in [("host.corp.test", IP_CORP), ("example.com", IP_DEFAULT)] {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, content_type, body) = post(&mut conn, &query(0, name, A, None)).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(content_type, "application/dns-message");
        let answer = Answer::parse(&body);
        assert_eq!(
            answer.addrs,
            vec![want],
            "{name} answered by the wrong upstream"
        );
    }
    assert_eq!(corp.count(), 1);
    assert_eq!(default.count(), 1);
    let (_, metrics) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    let ok = metric(
        &metrics,
        "dohgate_doh_http_responses_total",
        &[("endpoint", "web"), ("status", "200")],
    );
    assert_eq!(ok, 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn doh_over_tls_with_certificate_files() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"tls\"\nlisten = [\"127.0.0.1:0\"]\nlisten_doh = [\"127.0.0.1:0\"]\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        resolver(&default),
        cert("localhost-ecdsa-chain.pem"),
        cert("localhost-ecdsa.key"),
    ))
    .await;
    assert!(gw.self_signed().is_none());
    let addr: SocketAddr = gw.addrs().doh[0].1;

    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_file_iter(cert("test-ca.pem")).expect("CA") {
        roots.add(ca.expect("CA parses")).expect("CA usable");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("the test CA's certificate is served");
    let (status, _, body) = post(&mut tls, &query(0x1234, "www.example.test", A, None)).await;
    assert_eq!(status, 200);
    let answer = Answer::parse(&body);
    assert_eq!(answer.id, 0x1234);
    assert_eq!(answer.addrs, vec![IP_DEFAULT]);
    gw.shutdown().await;
}

/// POSTs `query` over HTTP/1.1 on a connection that stays open; returns the status.
async fn post_keep_alive(conn: &mut TcpStream, query: &[u8]) -> u16 {
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\n\
         Content-Length: {}\r\n\r\n",
        query.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write head");
    conn.write_all(query).await.expect("write body");
    let mut raw = Vec::new();
    let mut buf = [0u8; 2048];
    let complete = |raw: &[u8]| {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        (raw.len() >= split + 4 + len).then_some(status)
    };
    loop {
        if let Some(status) = complete(&raw) {
            return status;
        }
        let n = tokio::time::timeout(CLIENT_TIMEOUT, conn.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "closed before the answer was complete");
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn doh_connections_limit_refuses_the_connection_past_it() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[limits]\ndoh_connections = 2\n[[inbound]]\nname = \"web\"\nlisten_doh_plain = [\"127.0.0.1:0\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        resolver(&default),
    ))
    .await;
    let addr = gw.addrs().doh_plain[0].1;
    // Two connections, each answered once, so both are held by the listener.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(
            post_keep_alive(&mut conn, &query(i, "held.test", A, None)).await,
            200
        );
        held.push(conn);
    }
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(CLIENT_TIMEOUT, third.read(&mut buf))
        .await
        .expect("closed without waiting")
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed unanswered");
    // The two held ones still work.
    for (i, conn) in held.iter_mut().enumerate() {
        assert_eq!(
            post_keep_alive(conn, &query(10 + i as u16, "again.test", A, None)).await,
            200
        );
    }
    let (_, metrics) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    let refused = metric(
        &metrics,
        "dohgate_inbound_dropped_total",
        &[
            ("endpoint", "web"),
            ("protocol", "doh"),
            ("reason", "connection_limit"),
        ],
    );
    assert_eq!(refused, 1.0);
    drop(held);
    gw.shutdown().await;
}

#[tokio::test]
async fn doh_without_certificate_files_gets_a_self_signed_one() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"self\"\nlisten_doh = [\"127.0.0.1:0\"]\n",
        resolver(&default),
    ))
    .await;
    let cert = gw.self_signed().expect("a certificate was made");
    assert_eq!(cert.sha256_fingerprint.len(), 95);
    gw.shutdown().await;
}

#[cfg(not(feature = "fips"))]
#[tokio::test]
async fn doh_fips_is_refused_at_start_without_the_fips_build() {
    let text = format!(
        "[resolver]\ntargets = [\"127.0.0.1:9\"]\n[[inbound]]\nname = \"gov\"\nlisten = [\"127.0.0.1:0\"]\n\
         listen_doh_fips = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert("localhost-ecdsa-chain.pem"),
        cert("localhost-ecdsa.key"),
    );
    let config = dohgate_core::config::parse(&text, None).expect("valid config");
    let err = dohgate::start(config)
        .await
        .expect_err("a DoH-FIPS listener needs the fips build");
    let text = format!("{err:#}");
    assert!(text.contains("gov"), "{text}");
    assert!(
        text.contains("cargo build --release --features fips"),
        "{text}"
    );
}

#[tokio::test]
async fn doh_connections_on_every_worker_are_answered_and_drained_at_shutdown() {
    let stub = Stub::start(Behavior::SlowNames(IP_DEFAULT, Duration::from_millis(500))).await;
    let gw = gateway(&format!(
        "{}[runtime]\nthreads = 3\n[[inbound]]\nname = \"web\"\nlisten_doh_plain = [\"127.0.0.1:0\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
        resolver(&stub),
    ))
    .await;
    let addr = gw.addrs().doh_plain[0].1;
    // Six connections, two on each worker thread (they take turns), each answered.
    let mut conns = Vec::new();
    for i in 0..6 {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let q = query(i, &format!("c{i}.test"), A, None);
        assert_eq!(post_keep_alive(&mut conn, &q).await, 200, "connection {i}");
        conns.push(conn);
    }
    let (_, metrics) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    let open = metric(
        &metrics,
        "dohgate_inbound_connections",
        &[("endpoint", "web"), ("protocol", "doh")],
    );
    assert_eq!(
        open, 6.0,
        "every connection is counted, whichever thread holds it"
    );
    // A query in flight when the gateway is told to stop is still answered; the idle
    // connections are closed.
    let mut busy = conns.remove(0);
    let in_flight =
        tokio::spawn(
            async move { post_keep_alive(&mut busy, &query(100, "slow.test", A, None)).await },
        );
    while stub.count() < 7 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.shutdown().await;
    assert_eq!(
        in_flight.await.expect("client"),
        200,
        "answered within the grace"
    );
    for conn in &mut conns {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(CLIENT_TIMEOUT, conn.read(&mut buf))
            .await
            .expect("closed at shutdown")
            .unwrap_or(0);
        assert_eq!(n, 0, "an idle connection is closed");
    }
}
