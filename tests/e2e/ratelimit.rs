//! Rate limits per client prefix: a token bucket per /24 (IPv4) or /56 (IPv6), per endpoint,
//! with the action the endpoint chose over UDP and HTTP 429 over DoH.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn limited(action: &str) -> String {
    format!(
        "[[inbound]]\nname = \"edge\"\nlisten = [\"127.0.0.1:0\"]\nlisten_doh_plain = [\"127.0.0.1:0\"]\n\
         rate_limit = {{ qps = 1, burst = 5, action = \"{action}\" }}\n"
    )
}

/// Sends `n` queries from `sock` one after another; returns each answer's raw bytes, `None`
/// where none came within 300 ms.
async fn burst(sock: &UdpSocket, server: SocketAddr, n: u16) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    for id in 0..n {
        sock.send_to(&query(id, "rl.test", A, None), server)
            .await
            .expect("send");
        let got = tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await;
        out.push(
            got.ok()
                .and_then(Result::ok)
                .map(|(len, _)| buf[..len].to_vec()),
        );
    }
    out
}

#[tokio::test]
async fn a_prefix_over_its_rate_is_refused_while_another_is_served() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!("{}{}", resolver(&stub), limited("refused"))).await;
    let addr = gw.do53_addr().expect("do53");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let rcodes: Vec<u8> = burst(&sock, addr, 10)
        .await
        .into_iter()
        .map(|a| Answer::parse(&a.expect("an answer")).rcode)
        .collect();
    assert_eq!(&rcodes[..5], &[0; 5], "the burst is served");
    assert!(
        rcodes[5..].iter().filter(|&&r| r == 5).count() >= 4,
        "past the burst, REFUSED (one token may come back meanwhile): {rcodes:?}"
    );
    // Another /24 of the loopback range has a bucket of its own.
    let other = UdpSocket::bind("127.0.1.1:0")
        .await
        .expect("bind 127.0.1.1");
    assert_eq!(
        udp_from(&other, addr, &query(99, "rl.test", A, None))
            .await
            .rcode,
        0
    );
    // Do53 over TCP cannot be spoofed and is not limited.
    assert_eq!(tcp(addr, &query(100, "rl.test", A, None)).await.rcode, 0);
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert!(
        metric(
            &m,
            "dohgate_rate_limited_total",
            &[("endpoint", "edge"), ("action", "refused")]
        ) >= 4.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn truncate_sends_udp_clients_to_tcp_and_drop_sends_nothing() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!("{}{}", resolver(&stub), limited("truncate"))).await;
    let addr = gw.do53_addr().expect("do53");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let answers = burst(&sock, addr, 8).await;
    let last = Answer::parse(answers[7].as_deref().expect("an answer"));
    assert!(
        last.tc && last.counts[1] == 0,
        "TC set, no records: {last:?}"
    );
    assert_eq!(
        tcp(addr, &query(50, "rl.test", A, None)).await.addrs,
        vec![IP_DEFAULT],
        "the retry over TCP is answered"
    );
    gw.shutdown().await;

    let gw = gateway(&format!("{}{}", resolver(&stub), limited("drop"))).await;
    let addr = gw.do53_addr().expect("do53");
    let answers = burst(&sock, addr, 8).await;
    assert!(answers[..5].iter().all(Option::is_some));
    assert!(answers[7].is_none(), "over the limit: nothing");
    gw.shutdown().await;
}

#[tokio::test]
async fn doh_over_the_limit_gets_429_with_retry_after() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!("{}{}", resolver(&stub), limited("drop"))).await;
    let doh = gw.addrs().doh_plain[0].1;
    let body = query(1, "rl.test", A, None);
    let mut statuses = Vec::new();
    let mut last = String::new();
    for _ in 0..8 {
        let mut conn = TcpStream::connect(doh).await.expect("connect");
        let head = format!(
            "POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.expect("write");
        conn.write_all(&body).await.expect("write");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut raw))
            .await
            .expect("answered in time")
            .expect("read");
        last = String::from_utf8_lossy(&raw).to_string();
        statuses.push(last.split_whitespace().nth(1).unwrap_or("").to_string());
    }
    assert!(statuses[..5].iter().all(|s| s == "200"), "{statuses:?}");
    assert_eq!(statuses[7], "429", "{statuses:?}");
    assert!(
        last.to_ascii_lowercase().contains("retry-after: 1"),
        "{last}"
    );
    gw.shutdown().await;
}
