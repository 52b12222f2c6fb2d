//! Faults found by attacking a running gateway, each kept fixed by a test: a response sent to a
//! listener (the one-packet loop of CVE-2024-2169's class) and idle admin connections that
//! would take every file descriptor.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// `msg` with QR set: a response, as a spoofed packet or another server's answer would be.
fn as_response(mut msg: Vec<u8>) -> Vec<u8> {
    msg[2] |= 0x80;
    msg
}

/// A message with QR=1 is never answered on Do53: answering it (even with FORMERR, itself a
/// response) lets one spoofed datagram whose source is a listener loop between two servers
/// forever. It is dropped and counted; queries around it are answered as usual.
#[tokio::test]
async fn a_response_sent_to_a_listener_is_dropped_not_answered() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"test\"\nlisten = [\"127.0.0.1:0\"]\n\
         listen_doh_plain = [\"127.0.0.1:0\"]\n",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let short = Duration::from_millis(400);

    // UDP: a well-formed response, a response that is malformed besides, and one too large
    // to be read whole (answered FORMERR when it is a query): none gets an answer.
    let response = as_response(query(1, "loop.test", A, Some(1232)));
    assert_eq!(try_udp_raw(addr, &response, short).await, None);
    let mut malformed = as_response(query(2, "loop.test", A, None));
    malformed[5] = 2; // QDCOUNT 2
    assert_eq!(try_udp_raw(addr, &malformed, short).await, None);
    let mut big = as_response(query(3, "big.test", A, None));
    big.extend(std::iter::repeat_n(0u8, 5000));
    assert_eq!(try_udp_raw(addr, &big, short).await, None);

    // TCP: no answer to the response, and the connection goes on serving the next query.
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    tcp_send(&mut conn, &as_response(query(4, "loop.test", A, None))).await;
    tcp_send(&mut conn, &query(5, "after.test", A, None)).await;
    let a = Answer::parse(&tcp_recv(&mut conn).await.expect("the query is answered"));
    assert_eq!(
        (a.id, a.addrs),
        (5, vec![IP_DEFAULT]),
        "only the query's answer"
    );

    // DoH answers a response with 400, as any other message it cannot take as a query.
    let doh = gw.addrs().doh_plain[0].1;
    let mut http = TcpStream::connect(doh).await.expect("connect doh");
    let body = as_response(query(6, "loop.test", A, None));
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/dns-message\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    http.write_all(head.as_bytes()).await.expect("write");
    http.write_all(&body).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), http.read_to_end(&mut raw))
        .await
        .expect("doh answers in time")
        .expect("read");
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    assert_eq!(stub.count(), 1, "nothing but the real query went upstream");
    assert_eq!(
        udp(addr, &query(7, "ok.test", A, None)).await.addrs,
        vec![IP_DEFAULT]
    );
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "dohgate_malformed_queries_total",
            &[("reason", "not_a_query")]
        ),
        4.0,
        "every response the handler saw is counted, whatever the transport"
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_inbound_dropped_total",
            &[("reason", "not_a_query")]
        ),
        1.0,
        "the one too large to reach the handler is counted by its listener"
    );
    gw.shutdown().await;
}

/// Reads from an admin connection until the server closes it; true if it did within `wait`.
async fn closed_within(conn: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, conn.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Idle admin connections cannot pile up: past `admin.max_connections` a new one is closed at
/// once, an idle one is closed after `admin.idle_timeout_ms`, and the other listeners never
/// notice.
#[tokio::test]
async fn idle_admin_connections_are_capped_and_timed_out() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\nidle_timeout_ms = 500\n{}",
        resolver(&stub)
    ))
    .await;
    let admin = gw.addrs().admin.expect("admin");
    let addr = gw.do53_addr().expect("do53");

    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(admin).await.expect("connect"));
    }
    // Half a request head, as a slow client would leave it.
    idle[0].write_all(b"GET /metr").await.expect("write");
    // Give the listener time to accept all four before the fifth arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(admin)
        .await
        .expect("the kernel accepts it");
    assert!(
        closed_within(&mut extra, Duration::from_millis(300)).await,
        "a connection past the cap is closed at once"
    );
    // Meanwhile Do53 is served as usual.
    assert_eq!(
        tcp(addr, &query(1, "busy.test", A, None)).await.addrs,
        vec![IP_DEFAULT]
    );
    for conn in &mut idle {
        assert!(
            closed_within(conn, Duration::from_secs(3)).await,
            "an idle admin connection is closed after the idle timeout"
        );
    }
    // With the idle ones gone, the admin listener answers again.
    let (status, body) = http_get(admin, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (_, m) = http_get(admin, "/metrics").await;
    assert!(
        metric(
            &m,
            "dohgate_admin_connections_refused_total",
            &[("reason", "connection_limit")]
        ) >= 1.0,
        "the refused connection is counted"
    );
    gw.shutdown().await;
}

/// A keep-alive admin client (Prometheus keeps its scrape connection open) is served request
/// after request within the idle timeout.
#[tokio::test]
async fn admin_keep_alive_serves_several_requests() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let admin = gw.addrs().admin.expect("admin");
    let mut conn = TcpStream::connect(admin).await.expect("connect");
    for _ in 0..3 {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .await
            .expect("write");
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("ok\n"), "{text}");
    }
    gw.shutdown().await;
}

/// `query` in the CHAOS class.
fn chaos(id: u16, name: &str) -> Vec<u8> {
    let mut q = query(id, name, TXT, None);
    let class_at = q.len() - 2;
    q[class_at..].copy_from_slice(&3u16.to_be_bytes());
    q
}

/// CHAOS-class queries used to be forwarded, so any client could read the upstream's
/// `version.bind`. They never leave now: `id.server` tells the configured identity, the rest
/// is REFUSED.
#[tokio::test]
async fn chaos_queries_are_answered_here_and_never_forwarded() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[server]\nidentity = \"gw-dublin-1\"\n{}",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    for name in ["version.bind", "version.server", "authors.bind"] {
        assert_eq!(udp(addr, &chaos(1, name)).await.rcode, 5, "{name}: REFUSED");
    }
    let a = tcp(addr, &chaos(2, "id.server")).await;
    assert_eq!((a.id, a.rcode, a.counts), (2, 0, [1, 1, 0, 0]));
    assert!(a.raw.ends_with(b"\x0bgw-dublin-1"), "{:?}", a.raw);
    assert_eq!(udp(addr, &chaos(3, "hostname.bind")).await.rcode, 0);
    assert_eq!(stub.count(), 0, "no CHAOS query reached the upstream");
    gw.shutdown().await;

    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    assert_eq!(
        udp(addr, &chaos(4, "id.server")).await.rcode,
        5,
        "no identity configured: REFUSED"
    );
    assert_eq!(stub.count(), 0);
    gw.shutdown().await;
}

/// One client address cannot take a listener's connections: past
/// `limits.connections_per_client` its new connections are closed at once and counted, while
/// another address is served.
#[tokio::test]
async fn one_client_cannot_hold_every_connection() {
    use tokio::net::TcpSocket;
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[limits]\nconnections_per_client = 3\n{}[[inbound]]\nname = \"test\"\n\
         listen = [\"127.0.0.1:0\"]\nlisten_doh_plain = [\"127.0.0.1:0\"]\n",
        resolver(&stub)
    ))
    .await;
    let do53 = gw.do53_addr().expect("do53");
    let doh = gw.addrs().doh_plain[0].1;
    for addr in [do53, doh] {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut fourth = TcpStream::connect(addr)
            .await
            .expect("the kernel accepts it");
        assert!(
            closed_within(&mut fourth, Duration::from_secs(2)).await,
            "{addr}: a fourth connection from 127.0.0.1 is closed"
        );
        // Another address of the loopback range is its own client.
        let other = TcpSocket::new_v4().expect("socket");
        other
            .bind("127.0.1.1:0".parse().expect("addr"))
            .expect("bind 127.0.1.1");
        let mut other = other.connect(addr).await.expect("connect");
        if addr == do53 {
            tcp_send(&mut other, &query(7, "other.test", A, None)).await;
            let a = Answer::parse(&tcp_recv(&mut other).await.expect("served"));
            assert_eq!(a.addrs, vec![IP_DEFAULT], "127.0.1.1 is served meanwhile");
        }
        drop(other);
        drop(held);
    }
    // With the three gone, 127.0.0.1 is served again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tcp(do53, &query(1, "again.test", A, None)).await.addrs,
        vec![IP_DEFAULT]
    );
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "dohgate_inbound_dropped_total",
            &[("reason", "client_limit")]
        ),
        2.0,
        "one refused connection per listener"
    );
    gw.shutdown().await;
}
