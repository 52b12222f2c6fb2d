//! Do53 end to end: a gateway on 127.0.0.1 port 0 in front of stub upstreams that record what
//! they receive.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_CORP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const IP_DEV: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

#[tokio::test]
async fn rules_route_by_most_specific_domain() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let dev = Stub::start(Behavior::Answer(IP_DEV)).await;
    let gw = gateway(&format!(
        "{}{OUTBOUND}{}{}[[rule]]\nname = \"public\"\ndomain = \"www.corp.test\"\ntype = \"system\"\n",
        resolver(&default),
        forward_rule("corp", "corp.test", &[corp.addr]),
        forward_rule("dev", "dev.corp.test", &[dev.addr]),
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");

    let cases = [
        ("host.corp.test", IP_CORP),
        ("CORP.TEST", IP_CORP),
        ("x.dev.corp.test", IP_DEV),
        ("www.corp.test", IP_DEFAULT),
        ("a.www.corp.test", IP_DEFAULT),
        ("evilcorp.test", IP_DEFAULT),
        ("example.com", IP_DEFAULT),
    ];
    for (i, (name, want)) in cases.iter().enumerate() {
        let a = udp(addr, &query(i as u16, name, A, None)).await;
        assert_eq!(a.rcode, 0, "{name}");
        assert_eq!(
            a.addrs,
            vec![*want],
            "{name} answered by the wrong upstream"
        );
    }
    let names = |s: &Stub| s.seen().into_iter().map(|q| q.name).collect::<Vec<_>>();
    assert_eq!(names(&corp), ["host.corp.test.", "corp.test."]);
    assert_eq!(names(&dev), ["x.dev.corp.test."]);
    assert_eq!(
        names(&default),
        [
            "www.corp.test.",
            "a.www.corp.test.",
            "evilcorp.test.",
            "example.com."
        ]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn catch_all_rule_takes_every_name() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let all = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = gateway(&format!(
        "{}{OUTBOUND}{}",
        resolver(&default),
        forward_rule("all", ".", &[all.addr])
    ))
    .await;
    let a = udp(
        gw.do53_addr().expect("do53"),
        &query(1, "anything.example", A, None),
    )
    .await;
    assert_eq!(a.addrs, vec![IP_CORP]);
    assert_eq!(default.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn failover_when_a_target_is_silent_or_fails() {
    let silent = Stub::start(Behavior::Silent).await;
    let servfail = Stub::start(Behavior::ServFail).await;
    let good = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = gateway(&format!(
        "[timeouts]\nattempt_ms = 200\nquery_ms = 2000\n{}{OUTBOUND}{}",
        resolver(&good),
        forward_rule(
            "corp",
            "corp.test",
            &[silent.addr, servfail.addr, good.addr]
        ),
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    for i in 0..12u16 {
        let a = udp(addr, &query(i, &format!("h{i}.corp.test"), A, None)).await;
        assert_eq!(a.rcode, 0, "query {i}");
        assert_eq!(a.addrs, vec![IP_CORP], "query {i}");
    }
    assert_eq!(
        good.count(),
        12,
        "every query was answered by the good target"
    );
    assert!(
        silent.count() + servfail.count() > 0,
        "the first target is picked at random"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn servfail_when_every_target_fails() {
    let silent = Stub::start(Behavior::Silent).await;
    let servfail = Stub::start(Behavior::ServFail).await;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[timeouts]\nattempt_ms = 150\nquery_ms = 1000\n{}{OUTBOUND}{}",
        resolver(&default),
        forward_rule("corp", "corp.test", &[silent.addr, servfail.addr]),
    ))
    .await;
    let q = query(0x4242, "down.corp.test", A, Some(1232));
    let a = udp(gw.do53_addr().expect("do53"), &q).await;
    assert_eq!(a.rcode, 2, "SERVFAIL");
    assert_eq!(a.id, 0x4242);
    assert_eq!(a.counts[0], 1, "the question is kept");
    // Two rounds over the targets fit in the budget: a lost datagram gets one more try.
    assert_eq!(silent.count(), 2);
    assert_eq!(servfail.count(), 2);
    assert_eq!(
        default.count(),
        0,
        "a failing rule never falls back to the default resolver"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn truncated_upstream_answer_is_retried_over_tcp() {
    let big = Stub::start(Behavior::BigTxt(1500)).await;
    let gw = gateway(&resolver(&big)).await;
    let a = udp(
        gw.do53_addr().expect("do53"),
        &query(7, "big.test", TXT, Some(4096)),
    )
    .await;
    assert!(
        !a.tc,
        "the client offered 4096 bytes and gets the whole answer"
    );
    assert_eq!(a.counts[1], 1);
    assert!(a.raw.len() > 1500);
    let seen = big.seen();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].tcp && seen[1].tcp, "UDP first, then TCP: {seen:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn truncated_answer_the_udp_client_could_not_take_is_passed_on() {
    let big = Stub::start(Behavior::BigTxt(1500)).await;
    let gw = gateway(&resolver(&big)).await;
    let addr = gw.do53_addr().expect("do53");
    // The client takes 1232 bytes, as much as the target sends over UDP: the 1.5 KB answer
    // cannot reach it over UDP, so the target's truncated answer is passed on at once and
    // the client retries over TCP, as it would with the target itself.
    let a = udp(addr, &query(8, "big.test", TXT, Some(1232))).await;
    assert!(a.tc, "TC set");
    assert_eq!(a.id, 8);
    assert_eq!(a.counts[1], 0);
    let seen = big.seen();
    assert_eq!(seen.len(), 1, "no TCP retry to the target: {seen:?}");
    assert!(!seen[0].tcp);
    // The client's retry over TCP gets the whole answer.
    let a = tcp(addr, &query(9, "big.test", TXT, Some(1232))).await;
    assert!(!a.tc);
    assert_eq!(a.counts[1], 1);
    assert!(big.seen()[1..].iter().any(|s| s.tcp), "{:?}", big.seen());
    gw.shutdown().await;
}

#[tokio::test]
async fn udp_answers_fit_the_clients_buffer() {
    let big = Stub::start(Behavior::BigTxt(1000)).await;
    let gw = gateway(&resolver(&big)).await;
    let addr = gw.do53_addr().expect("do53");
    // No EDNS: 512 bytes at most.
    let a = udp(addr, &query(1, "big.test", TXT, None)).await;
    assert!(a.tc, "TC set");
    assert!(a.raw.len() <= 512);
    assert_eq!(a.counts, [1, 0, 0, 0]);
    // EDNS 1232 fits the 1000-byte answer.
    let a = udp(addr, &query(2, "big.test", TXT, Some(1232))).await;
    assert!(!a.tc);
    assert_eq!(a.counts[1], 1);
    // Over TCP the client gets everything.
    let a = tcp(addr, &query(3, "big.test", TXT, None)).await;
    assert!(!a.tc);
    assert_eq!(a.counts[1], 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn tcp_pipelined_queries_are_answered_as_they_complete() {
    let stub = Stub::start(Behavior::SlowNames(IP_CORP, Duration::from_millis(400))).await;
    let gw = gateway(&resolver(&stub)).await;
    let mut conn = TcpStream::connect(gw.do53_addr().expect("do53"))
        .await
        .expect("connect");
    tcp_send(&mut conn, &query(1, "slow.test", A, None)).await;
    tcp_send(&mut conn, &query(2, "fast.test", A, None)).await;
    tcp_send(&mut conn, &query(3, "fast2.test", A, None)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = Answer::parse(&tcp_recv(&mut conn).await.expect("answer"));
        assert_eq!(a.addrs, vec![IP_CORP]);
        ids.push(a.id);
    }
    assert_eq!(ids.last(), Some(&1), "the slow answer comes last: {ids:?}");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3]);
    gw.shutdown().await;
}

#[tokio::test]
async fn id_question_case_and_edns_come_back_as_sent() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(0xabcd, "WwW.ExAmPlE.CoM", A, Some(1400));
    for answer in [udp(addr, &q).await, tcp(addr, &q).await] {
        assert_eq!(answer.id, 0xabcd);
        let qlen = q.len() - 11 - 12;
        assert_eq!(
            &answer.raw[12..12 + qlen],
            &q[12..12 + qlen],
            "question bytes, 0x20 case included"
        );
        assert_eq!(answer.counts[3], 1, "the OPT record comes back");
    }
    let seen = stub.seen();
    assert_eq!(
        &seen[0].raw[12..],
        &q[12..],
        "the upstream gets the question and EDNS as sent"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn locally_served_zones_never_leak_upstream() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let a = udp(addr, &query(1, "1.0.0.10.in-addr.arpa", PTR, None)).await;
    assert_eq!(a.rcode, 3, "NXDOMAIN");
    assert_eq!(a.authority_types, vec![6], "with the zone's SOA");
    let a = udp(addr, &query(2, "4.3.168.192.in-addr.arpa", PTR, None)).await;
    assert_eq!(a.rcode, 3);
    let a = udp(addr, &query(3, "localhost", A, None)).await;
    assert_eq!(a.addrs, vec![Ipv4Addr::LOCALHOST]);
    assert_eq!(stub.count(), 0, "nothing reached the upstream");
    gw.shutdown().await;

    // Switched off, or overridden by a rule, the names go upstream.
    let gw = gateway(&format!(
        "{}locally_served_zones = false\n",
        resolver(&stub)
    ))
    .await;
    let a = udp(
        gw.do53_addr().expect("do53"),
        &query(4, "1.0.0.10.in-addr.arpa", PTR, None),
    )
    .await;
    assert_eq!(a.rcode, 0);
    assert_eq!(stub.count(), 1);
    gw.shutdown().await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = gateway(&format!(
        "{}{OUTBOUND}{}",
        resolver(&stub),
        forward_rule("ptr", "10.in-addr.arpa", &[corp.addr])
    ))
    .await;
    let a = udp(
        gw.do53_addr().expect("do53"),
        &query(5, "1.0.0.10.in-addr.arpa", PTR, None),
    )
    .await;
    assert_eq!(a.rcode, 0);
    assert_eq!(corp.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_refused() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"locked\"\nlisten = [\"127.0.0.1:0\"]\nallow = [\"10.0.0.0/8\"]\n",
        resolver(&stub)
    ))
    .await;
    let a = udp(
        gw.do53_addr().expect("do53"),
        &query(9, "example.com", A, None),
    )
    .await;
    assert_eq!(a.rcode, 5, "REFUSED");
    assert_eq!(stub.count(), 0);
    let (_, metrics) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "dohgate_refused_clients_total",
            &[("endpoint", "locked")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn malformed_queries_get_formerr_and_do_not_disturb_others() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[timeouts]\ntcp_idle_ms = 300\n{}",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let short = Duration::from_millis(300);

    // Too short to carry an ID: nothing to answer.
    assert!(try_udp_raw(addr, b"\x12\x34\x01", short).await.is_none());
    // QDCOUNT 2, QDCOUNT 0, a pointer in the question, trailing garbage: FORMERR.
    let mut two = query(1, "a.test", A, None);
    two[5] = 2;
    let mut zero = query(2, "a.test", A, None);
    zero[5] = 0;
    let mut pointer = query(3, "a.test", A, None);
    pointer[12] = 0xc0;
    let mut trailing = query(4, "a.test", A, None);
    trailing.extend_from_slice(b"junk");
    for (q, id) in [(&two, 1), (&zero, 2), (&pointer, 3), (&trailing, 4)] {
        let a = udp(addr, q).await;
        assert_eq!((a.id, a.rcode), (id, 1), "FORMERR for query {id}");
    }
    // An opcode other than QUERY: NOTIMP.
    let mut notify = query(5, "a.test", A, None);
    notify[2] |= 4 << 3;
    assert_eq!(udp(addr, &notify).await.rcode, 4);
    // An EDNS version dohgate does not speak: BADVERS (extended RCODE 16).
    let mut v1 = query(6, "a.test", A, Some(1232));
    let len = v1.len();
    v1[len - 5] = 1;
    let a = udp(addr, &v1).await;
    assert_eq!(a.rcode, 0);
    assert_eq!(a.raw[a.raw.len() - 6], 1, "extended RCODE bits of BADVERS");

    // TCP: a length prefix promising more than follows, then silence: the connection closes.
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(&[0, 100]).await.expect("write");
    conn.write_all(&[0; 20]).await.expect("write");
    assert!(tcp_recv(&mut conn).await.is_none(), "closed, not answered");
    // A zero-length message: closed.
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(&[0, 0]).await.expect("write");
    assert!(tcp_recv(&mut conn).await.is_none());

    // Through all of it, good queries are answered on both transports.
    assert_eq!(
        udp(addr, &query(7, "ok.test", A, None)).await.addrs,
        vec![IP_DEFAULT]
    );
    assert_eq!(
        // Another name: the same one would be answered from the cache.
        tcp(addr, &query(8, "ok2.test", A, None)).await.addrs,
        vec![IP_DEFAULT]
    );
    assert_eq!(stub.count(), 2, "no malformed query was forwarded");

    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "dohgate_malformed_queries_total",
            &[("reason", "question_count")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_malformed_queries_total",
            &[("reason", "bad_name")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_malformed_queries_total",
            &[("reason", "trailing_bytes")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_malformed_queries_total",
            &[("reason", "opcode")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_inbound_dropped_total",
            &[("reason", "unanswerable")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_inbound_dropped_total",
            &[("reason", "incomplete")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_prompt_and_frees_the_ports() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "[timeouts]\ntcp_idle_ms = 60000\n{}",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let admin = gw.addrs().admin.expect("admin");
    assert_eq!(udp(addr, &query(1, "a.test", A, None)).await.rcode, 0);
    // An idle client connection must not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    tcp_send(&mut idle, &query(2, "a.test", A, None)).await;
    assert!(tcp_recv(&mut idle).await.is_some());

    tokio::time::timeout(Duration::from_secs(2), gw.shutdown())
        .await
        .expect("the gateway stops within 2 s");
    UdpSocket::bind(addr)
        .await
        .expect("UDP port can be bound again");
    TcpListener::bind(addr)
        .await
        .expect("TCP port can be bound again");
    TcpListener::bind(admin)
        .await
        .expect("admin port can be bound again");
}

#[tokio::test]
async fn admin_reports_health_readiness_and_metrics() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let admin = gw.addrs().admin.expect("admin");
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    assert_eq!(http_get(admin, "/readyz").await.0, 200);
    let addr = gw.do53_addr().expect("do53");
    udp(addr, &query(1, "a.test", A, None)).await;
    tcp(addr, &query(2, "a.test", A, None)).await;
    let (status, m) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let q = |t| {
        metric(
            &m,
            "dohgate_queries_total",
            &[("endpoint", "test"), ("protocol", "do53"), ("transport", t)],
        )
    };
    assert_eq!((q("udp"), q("tcp")), (1.0, 1.0));
    assert_eq!(
        metric(&m, "dohgate_responses_total", &[("rcode", "NOERROR")]),
        2.0
    );
    gw.shutdown().await;

    // A default resolver that never answers makes the gateway unready once it is seen failing.
    let silent = Stub::start(Behavior::Silent).await;
    let gw = gateway(&format!(
        "[timeouts]\nattempt_ms = 50\nquery_ms = 100\n{}",
        resolver(&silent)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    for i in 0..3 {
        assert_eq!(udp(addr, &query(i, "a.test", A, None)).await.rcode, 2);
    }
    let (status, body) = http_get(gw.addrs().admin.expect("admin"), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_target_with_a_closed_port_fails_over_at_once() {
    let good = Stub::start(Behavior::Answer(IP_CORP)).await;
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.local_addr().expect("addr")
    };
    // An attempt timeout longer than the client's patience: only the ICMP port-unreachable
    // can make the failover quick enough.
    let gw = gateway(&format!(
        "[timeouts]\nattempt_ms = 8000\nquery_ms = 9000\n{}{OUTBOUND}{}",
        resolver(&good),
        forward_rule("corp", "corp.test", &[closed, good.addr]),
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    for i in 0..8u16 {
        let a = udp(addr, &query(i, &format!("h{i}.corp.test"), A, None)).await;
        assert_eq!(a.addrs, vec![IP_CORP], "query {i}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn every_udp_thread_answers_its_share() {
    udp_burst_is_answered_in_full("", false).await;
}

#[tokio::test]
async fn every_reuseport_socket_answers_its_share() {
    udp_burst_is_answered_in_full("reuseport = true\n", false).await;
}

#[tokio::test]
async fn a_burst_of_cached_answers_reaches_every_client() {
    udp_burst_is_answered_in_full("", true).await;
}

/// 30 clients with 10 queries each, all at once. Without the cache, whichever thread reads a
/// query forwards it and answers it; with it (names warmed up first), the answers read
/// together go out together, each to its own client. Either way every client gets its
/// answers, with its IDs. The burst also has to fit the listener's receive buffer, which the
/// kernel's default does not always hold.
async fn udp_burst_is_answered_in_full(runtime: &str, cached: bool) {
    const NAMES: u16 = 3;
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let cache = if cached {
        ""
    } else {
        "[cache]\nenabled = false\n"
    };
    let gw = gateway(&format!(
        "{}[runtime]\nthreads = 3\n{runtime}{cache}",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let name = move |id: u16| {
        if cached {
            format!("n{}.test", id % NAMES)
        } else {
            format!("n{id}.test")
        }
    };
    if cached {
        for id in 0..NAMES {
            assert_eq!(
                udp(addr, &query(id, &name(id), A, None)).await.addrs,
                vec![IP_DEFAULT]
            );
        }
    }
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..30u16 {
        let stub = stub.clone();
        clients.spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            for i in 0..10u16 {
                let id = c * 100 + i;
                sock.send_to(&query(id, &name(id), A, None), addr)
                    .await
                    .expect("send");
            }
            let mut ids = Vec::new();
            let mut buf = [0u8; 512];
            for _ in 0..10 {
                let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "client {c}: {} answers; the target saw {} queries",
                            ids.len(),
                            stub.count()
                        )
                    })
                    .expect("recv");
                let a = Answer::parse(&buf[..n]);
                assert_eq!(a.addrs, vec![IP_DEFAULT]);
                ids.push(a.id);
            }
            ids.sort_unstable();
            assert_eq!(ids, (0..10).map(|i| c * 100 + i).collect::<Vec<_>>());
        });
    }
    while let Some(r) = clients.join_next().await {
        r.expect("client");
    }
    if cached {
        assert_eq!(
            stub.count(),
            usize::from(NAMES),
            "the burst was answered from the cache"
        );
    } else {
        // A datagram lost on loopback is asked again, so the target may see a few more.
        assert!(stub.count() >= 300, "every query went upstream");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn udp_over_ipv6_is_answered_upstream_and_from_the_cache() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}\n[[inbound]]\nname = \"v6\"\nlisten = [\"[::1]:0\"]\n",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    assert!(addr.is_ipv6(), "{addr}");
    let sock = UdpSocket::bind("[::1]:0").await.expect("bind");
    for id in [1, 2] {
        let a = udp_from(&sock, addr, &query(id, "v6.test", A, None)).await;
        assert_eq!((a.id, a.addrs), (id, vec![IP_DEFAULT]));
    }
    assert_eq!(stub.count(), 1, "the second answer came from the cache");
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_udp_query_gets_formerr() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    // 5,000 bytes of EDNS padding: no query has a reason to be that large over UDP.
    let mut big = query(9, "big.test", A, Some(1232));
    let rdlen_at = big.len() - 2;
    big[rdlen_at..].copy_from_slice(&(4u16 + 5000).to_be_bytes());
    big.extend_from_slice(&12u16.to_be_bytes());
    big.extend_from_slice(&5000u16.to_be_bytes());
    big.extend(std::iter::repeat_n(0u8, 5000));
    let a = udp(addr, &big).await;
    assert_eq!((a.id, a.rcode), (9, 1), "FORMERR with the query's ID");
    assert_eq!(stub.count(), 0, "nothing of it was forwarded");
    // The same name in an ordinary query is answered.
    assert_eq!(
        udp(addr, &query(10, "big.test", A, Some(1232))).await.addrs,
        vec![IP_DEFAULT]
    );
    gw.shutdown().await;
}

/// A start that fails part-way (a later endpoint's address is taken) stops what it had
/// already started: the first endpoint's port is free again, not held by an orphan listener.
#[tokio::test]
async fn a_start_that_fails_part_way_stops_what_it_started() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    // A port nothing listens on, for the first endpoint, and one this test holds.
    let free = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let text = format!(
        "{}[[inbound]]\nname = \"first\"\nlisten = [\"{free}\"]\n\
         [[inbound]]\nname = \"second\"\nlisten = [\"{}\"]\n",
        resolver(&stub),
        taken.local_addr().expect("addr")
    );
    let config = dohgate_core::config::parse(&text, None).expect("valid");
    let e = dohgate::start(config)
        .await
        .expect_err("the second endpoint's address is taken");
    assert!(format!("{e:#}").contains("cannot listen"), "{e:#}");
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let udp = UdpSocket::bind(free).await;
        let tcp = TcpListener::bind(free).await;
        if udp.is_ok() && tcp.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the first endpoint still holds {free} after a failed start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(taken);
}

/// With `refuse = "drop"` a client outside the allow-list gets nothing at all: its datagrams
/// are dropped and its TCP and DoH connections closed at once (before any TLS work), each
/// counted; clients inside the list are served as usual.
#[tokio::test]
async fn refuse_drop_gives_clients_outside_the_list_nothing() {
    use tokio::io::AsyncReadExt;
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"locked\"\nlisten = [\"127.0.0.1:0\"]\n\
         listen_doh_plain = [\"127.0.0.1:0\"]\nallow = [\"10.0.0.0/8\"]\nrefuse = \"drop\"\n\
         [[inbound]]\nname = \"open\"\nlisten = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.0/8\"]\n",
        resolver(&stub)
    ))
    .await;
    let locked = gw.addrs().do53[0].1;
    let open = gw.addrs().do53[1].1;
    let q = query(9, "example.com", A, None);
    assert_eq!(
        try_udp_raw(locked, &q, Duration::from_millis(400)).await,
        None,
        "no REFUSED, nothing"
    );
    for addr in [locked, gw.addrs().doh_plain[0].1] {
        let mut conn = TcpStream::connect(addr).await.expect("the kernel accepts");
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
            .await
            .expect("closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{addr}: closed unanswered");
    }
    assert_eq!(udp(open, &q).await.addrs, vec![IP_DEFAULT]);
    assert_eq!(
        stub.count(),
        1,
        "only the allowed client's query went upstream"
    );
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "dohgate_refused_clients_total",
            &[("endpoint", "locked")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_inbound_dropped_total",
            &[("endpoint", "locked"), ("reason", "not_allowed")]
        ),
        2.0,
        "the TCP and the DoH connection"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn allow_from_on_the_command_line_sets_the_allow_list() {
    use clap::Parser as _;
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let cli = dohgate::cli::Cli::parse_from([
        "dohgate".to_string(),
        "--listen-do53".to_string(),
        "127.0.0.1:0".to_string(),
        "--upstream".to_string(),
        stub.addr.to_string(),
        "--allow-from".to_string(),
        "10.0.0.0/8".to_string(),
        "--admin".to_string(),
        "127.0.0.1:0".to_string(),
    ]);
    let gw = dohgate::start(cli.load_config().expect("valid flags"))
        .await
        .expect("starts");
    let a = udp(gw.do53_addr().expect("do53"), &query(1, "x.test", A, None)).await;
    assert_eq!(a.rcode, 5, "127.0.0.1 is not in 10.0.0.0/8: REFUSED");
    assert_eq!(stub.count(), 0);
    gw.shutdown().await;
}
