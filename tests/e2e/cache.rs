//! The answer cache end to end: what reaches the stub upstream and what the client gets back,
//! over real sockets. Flooding the cache with unique names is a unit test of the cache itself
//! (crates/outbound/src/cache.rs): 100k queries over loopback would only measure the machine.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Parser;
use dohgate::cli::Cli;

use crate::support::*;

const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// TTLs of the answer and authority records, in order (OPT excluded).
fn ttls(raw: &[u8]) -> Vec<u32> {
    let c = |i: usize| u16::from_be_bytes([raw[i], raw[i + 1]]) as usize;
    let mut pos = read_question(raw).map_or(12, |(_, _, end)| end);
    let mut out = Vec::new();
    for _ in 0..c(6) + c(8) {
        loop {
            let len = raw[pos] as usize;
            if len == 0 {
                pos += 1;
                break;
            }
            if len & 0xc0 == 0xc0 {
                pos += 2;
                break;
            }
            pos += 1 + len;
        }
        out.push(u32::from_be_bytes([
            raw[pos + 4],
            raw[pos + 5],
            raw[pos + 6],
            raw[pos + 7],
        ]));
        pos += 10 + c(pos + 8);
    }
    out
}

/// A query with EDNS and the DO bit set.
fn query_do(id: u16, name: &str) -> Vec<u8> {
    let mut q = query(id, name, A, Some(1232));
    let len = q.len();
    q[len - 4] |= 0x80;
    q
}

async fn scrape(gw: &dohgate::RunningGateway) -> String {
    let admin = gw.addrs().admin.expect("admin listener");
    let (status, text) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    text
}

#[tokio::test]
async fn a_repeated_query_is_answered_without_the_upstream() {
    let stub = Stub::start(Behavior::Answer(IP)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    for id in 1..=3 {
        let a = udp(addr, &query(id, "www.example.test", A, None)).await;
        assert_eq!((a.id, a.rcode, a.addrs.clone()), (id, 0, vec![IP]));
    }
    // TCP and UDP clients share the entries.
    let a = tcp(addr, &query(4, "www.example.test", A, None)).await;
    assert_eq!(a.addrs, vec![IP]);
    assert_eq!(stub.count(), 1, "only the first query reaches the upstream");

    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "dohgate_cache_hits_total", &[]), 3.0);
    assert_eq!(metric(&text, "dohgate_cache_misses_total", &[]), 1.0);
    assert_eq!(metric(&text, "dohgate_cache_entries", &[]), 1.0);
    let bytes = metric(&text, "dohgate_cache_bytes", &[]);
    assert!(
        bytes > 0.0 && bytes < 1024.0,
        "one small entry: {bytes} bytes"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn ttls_count_down_on_hits() {
    let stub = Stub::start(Behavior::AnswerTtl(IP, 300)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let first = udp(addr, &query(1, "ttl.example.test", A, None)).await;
    assert_eq!(ttls(&first.raw), [300]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = udp(addr, &query(2, "ttl.example.test", A, None)).await;
    let ttl = ttls(&second.raw)[0];
    assert!((1..=299).contains(&ttl), "TTL {ttl} did not count down");
    assert_eq!(stub.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn negative_answers_are_cached_for_the_soa_minimum() {
    let stub = Stub::start(Behavior::NxDomainSoa(3600, 2)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(1, "nope.example.test", A, None);
    let first = udp(addr, &q).await;
    assert_eq!(first.rcode, 3);
    assert_eq!(first.authority_types, [6]);
    assert_eq!(
        ttls(&first.raw),
        [3600],
        "the client gets what the upstream said"
    );
    let second = udp(addr, &q).await;
    assert_eq!(second.rcode, 3);
    assert!(ttls(&second.raw)[0] <= 2, "an SOA TTL of min(TTL, MINIMUM)");
    assert_eq!(stub.count(), 1, "the NXDOMAIN came from the cache");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(udp(addr, &q).await.rcode, 3);
    assert_eq!(stub.count(), 2, "held for MINIMUM (2 s), not the SOA TTL");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_do_bit_separates_entries() {
    let stub = Stub::start(Behavior::Answer(IP)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let plain = query(1, "dnssec.example.test", A, Some(1232));
    let with_do = query_do(2, "dnssec.example.test");
    for _ in 0..2 {
        assert_eq!(udp(addr, &plain).await.rcode, 0);
        assert_eq!(udp(addr, &with_do).await.rcode, 0);
    }
    let seen = stub.seen();
    assert_eq!(seen.len(), 2, "one upstream query per DO setting");
    let do_bit = |raw: &[u8]| raw[raw.len() - 4] & 0x80 != 0;
    assert!(!do_bit(&seen[0].raw));
    assert!(do_bit(&seen[1].raw));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hit_keeps_the_clients_case_and_edns() {
    let stub = Stub::start(Behavior::Answer(IP)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let first = udp(addr, &query(1, "www.example.test", A, Some(1232))).await;
    assert_eq!(first.counts[3], 1);
    let mixed = query(2, "WwW.eXaMpLe.TeSt", A, None);
    let hit = udp(addr, &mixed).await;
    assert_eq!(stub.count(), 1);
    let qend = read_question(&mixed).expect("question").2;
    assert_eq!(&hit.raw[12..qend], &mixed[12..qend], "0x20 case kept");
    assert_eq!(hit.counts[3], 0, "no OPT record for a client without EDNS");
    assert_eq!(hit.addrs, vec![IP]);
    gw.shutdown().await;
}

#[tokio::test]
async fn answers_with_records_out_of_bailiwick_are_not_cached() {
    let stub = Stub::start(Behavior::Answer(IP)).await;
    let gw = gateway(&format!(
        "{}{OUTBOUND}{}",
        resolver(&stub),
        forward_rule("corp", "corp.test", &[stub.addr])
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let cases = [
        // (section, owner, cached)
        (2, "evil.test", false),
        (3, "ns.evil.test", false),
        (1, "bank.corp.test", false),
        (2, "corp.test", true),
        (3, "ns.corp.test", true),
    ];
    for (i, (section, owner, cached)) in cases.into_iter().enumerate() {
        stub.set(Behavior::AnswerWithExtra(IP, section, owner.to_string()));
        let name = format!("host{i}.corp.test");
        let before = stub.count();
        for id in 0..2 {
            let a = udp(addr, &query(id, &name, A, None)).await;
            assert_eq!(a.rcode, 0);
        }
        let asked = stub.count() - before;
        assert_eq!(
            asked,
            if cached { 1 } else { 2 },
            "{owner} in section {section}: cached must be {cached}"
        );
    }
    let text = scrape(&gw).await;
    let reason = |r: &str| metric(&text, "dohgate_cache_uncacheable_total", &[("reason", r)]);
    assert_eq!(reason("bailiwick"), 4.0);
    assert_eq!(reason("chain"), 2.0);
    gw.shutdown().await;
}

const SHORT_TIMEOUTS: &str = "[timeouts]\nattempt_ms = 200\nquery_ms = 300\n";

#[tokio::test]
async fn serves_stale_when_the_upstream_goes_silent_until_the_limit() {
    let stub = Stub::start(Behavior::AnswerTtl(IP, 1)).await;
    let gw = gateway(&format!(
        "{}{SHORT_TIMEOUTS}[cache]\nserve_stale_ms = 2000\n",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(1, "stale.example.test", A, None);
    assert_eq!(ttls(&udp(addr, &q).await.raw), [1]);
    stub.set(Behavior::Silent);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let stale = udp(addr, &q).await;
    assert_eq!(stale.rcode, 0, "a stale answer, not SERVFAIL");
    assert_eq!(stale.addrs, vec![IP]);
    assert_eq!(ttls(&stale.raw), [30], "stale answers carry stale_ttl");
    // The upstream was asked first: one answered query, then two tries (a 200 ms attempt and
    // a second round in what is left of the 300 ms budget) before the stale answer.
    assert_eq!(stub.count(), 3, "the upstream was asked first");
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "dohgate_cache_stale_answers_total", &[]), 1.0);

    // Expired at 1 s, stale until 3 s.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(udp(addr, &q).await.rcode, 2, "SERVFAIL past serve_stale_ms");
    gw.shutdown().await;
}

#[tokio::test]
async fn serve_stale_can_be_turned_off() {
    let stub = Stub::start(Behavior::AnswerTtl(IP, 1)).await;
    let gw = gateway(&format!(
        "{}{SHORT_TIMEOUTS}[cache]\nserve_stale_ms = 0\n",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(1, "stale.example.test", A, None);
    assert_eq!(udp(addr, &q).await.rcode, 0);
    stub.set(Behavior::Silent);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(udp(addr, &q).await.rcode, 2);
    gw.shutdown().await;
}

/// Asks for the same name three times and returns how many queries reached the stub.
async fn upstream_queries(gw: &dohgate::RunningGateway, stub: &Stub, name: &str) -> usize {
    let addr = gw.do53_addr().expect("do53");
    let before = stub.count();
    for id in 0..3 {
        assert_eq!(udp(addr, &query(id, name, A, None)).await.addrs, vec![IP]);
    }
    stub.count() - before
}

#[tokio::test]
async fn the_cache_can_be_bypassed() {
    let stub = Stub::start(Behavior::Answer(IP)).await;

    let gw = gateway(&format!("{}[cache]\nenabled = false\n", resolver(&stub))).await;
    assert_eq!(upstream_queries(&gw, &stub, "a.example.test").await, 3);
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "dohgate_cache_misses_total", &[]), 0.0);
    gw.shutdown().await;

    // Per rule: `cache = false` on corp.test only.
    let mut rules = forward_rule("corp", "corp.test", &[stub.addr]);
    rules.push_str("cache = false\n");
    let gw = gateway(&format!("{}{OUTBOUND}{rules}", resolver(&stub))).await;
    assert_eq!(upstream_queries(&gw, &stub, "a.corp.test").await, 3);
    assert_eq!(upstream_queries(&gw, &stub, "a.example.test").await, 1);
    gw.shutdown().await;

    // --no-cache, applied as the binary applies its flags.
    let text = format!(
        "{}[[inbound]]\nname = \"test\"\nlisten = [\"127.0.0.1:0\"]\n",
        resolver(&stub)
    );
    let mut config = dohgate_core::config::parse(&text, None).expect("config");
    Cli::parse_from(["dohgate", "--no-cache"])
        .apply(&mut config)
        .expect("flags");
    let gw = dohgate::start(config).await.expect("gateway starts");
    assert_eq!(upstream_queries(&gw, &stub, "b.example.test").await, 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_popular_entry_is_refreshed_before_it_expires() {
    let stub = Stub::start(Behavior::AnswerTtl(IP, 10)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(1, "popular.example.test", A, None);
    for _ in 0..4 {
        assert_eq!(udp(addr, &q).await.rcode, 0);
    }
    assert_eq!(stub.count(), 1);
    // 9 s into a 10 s TTL: under 10 % left, and asked for three times since it was stored.
    tokio::time::sleep(Duration::from_millis(9100)).await;
    assert_eq!(
        ttls(&udp(addr, &q).await.raw),
        [1],
        "answered at once, from the cache"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while stub.count() < 2 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stub.count(), 2, "refreshed in the background");
    // The refreshed entry answers with a full TTL; nothing more goes upstream.
    let mut fresh = 0;
    for _ in 0..50 {
        fresh = ttls(&udp(addr, &q).await.raw)[0];
        if fresh >= 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fresh >= 9,
        "TTL {fresh}: the refreshed answer was not stored"
    );
    assert_eq!(stub.count(), 2);
    let text = scrape(&gw).await;
    assert_eq!(metric(&text, "dohgate_cache_prefetches_total", &[]), 1.0);
    gw.shutdown().await;
}

/// Static stability when the link is cut (RFC 8767's client response timer): with a
/// blackholed upstream (it receives and never answers), a name with an expired entry is
/// answered from it once the timer expires, not after the whole two-attempt budget; and while
/// every target is known to be down, at once, without asking the upstream at all.
#[tokio::test]
async fn a_blackholed_upstream_costs_a_stale_name_only_the_client_timer() {
    let stub = Stub::start(Behavior::AnswerTtl(IP, 1)).await;
    // The default attempt (1.5 s) and query budget (4 s): a blackholed target used to cost
    // every stale answer about 3 s.
    let gw = gateway(&format!(
        "{}[cache]\nserve_stale_ms = 60000\nstale_answer_client_timeout_ms = 300\n",
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let names = [
        "s1.example.test",
        "s2.example.test",
        "s3.example.test",
        "s4.example.test",
    ];
    for (id, name) in names.iter().enumerate() {
        assert_eq!(
            udp(addr, &query(id as u16, name, A, None)).await.addrs,
            vec![IP]
        );
    }
    stub.set(Behavior::Silent);
    tokio::time::sleep(Duration::from_millis(1200)).await;

    for (id, name) in names.iter().enumerate() {
        let raw = try_udp_raw(
            addr,
            &query(10 + id as u16, name, A, None),
            Duration::from_millis(1200),
        )
        .await
        .unwrap_or_else(|| panic!("{name}: no answer within 1.2 s, the client timer is 0.3 s"));
        let a = Answer::parse(&raw);
        assert_eq!((a.rcode, a.addrs.clone()), (0, vec![IP]), "{name}: stale");
        assert_eq!(ttls(&raw), [30]);
    }

    // The exchanges went on in the background and failed: the target is known to be down.
    let admin = gw.addrs().admin.expect("admin");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = http_get(admin, "/metrics").await;
        if metric(&m, "dohgate_target_healthy", &[]) == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the silent target never became unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Now a stale name is answered at once, and nothing is asked of the dead upstream for it.
    let late = "s1.example.test";
    let before = stub
        .seen()
        .iter()
        .filter(|s| s.name == format!("{late}."))
        .count();
    let a = udp(addr, &query(20, late, A, None)).await;
    assert_eq!((a.rcode, a.addrs), (0, vec![IP]));
    let after = stub
        .seen()
        .iter()
        .filter(|s| s.name == format!("{late}."))
        .count();
    assert_eq!(
        after, before,
        "answered from the entry without a query upstream"
    );
    gw.shutdown().await;
}
