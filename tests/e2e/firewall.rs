//! DNS Firewall end to end: rule groups associated with inbound endpoints, in front of a stub
//! upstream that answers with a CDN-style CNAME chain (`alexa.example` ->
//! `pitangui.amazon.example` -> `d1wg1w6p5q8555.cloudfront.example`).

use std::net::Ipv4Addr;

use crate::support::*;

const IP_CDN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const AAAA: u16 = 28;
const NXDOMAIN: u8 = 3;

fn chain() -> Behavior {
    Behavior::Chain(
        vec![
            "pitangui.amazon.example".to_string(),
            "d1wg1w6p5q8555.cloudfront.example".to_string(),
        ],
        IP_CDN,
    )
}

/// An allow-list-only policy: `alexa.example` is trusted (with the given redirection), every
/// other name is blocked with NXDOMAIN.
fn allow_list_only(redirection: &str) -> String {
    format!(
        r#"
[[firewall.domain_list]]
name = "trusted"
domains = ["alexa.example"]

[[firewall.domain_list]]
name = "everything"
domains = ["*"]

[[firewall.rule_group]]
name = "egress"

[[firewall.rule_group.rule]]
name = "allow-trusted"
priority = 10
domain_list = "trusted"
action = "allow"
redirection = "{redirection}"

[[firewall.rule_group.rule]]
name = "deny-rest"
priority = 20
domain_list = "everything"
action = "block"
block_response = "nxdomain"

[[firewall.association]]
rule_group = "egress"
priority = 100
"#
    )
}

/// The question section of an answer as it stands on the wire.
fn question_bytes(raw: &[u8]) -> &[u8] {
    let (_, _, end) = read_question(raw).expect("a question");
    &raw[12..end]
}

#[tokio::test]
async fn inspect_blocks_at_the_first_untrusted_name_in_the_chain_cached_or_not() {
    let stub = Stub::start(chain()).await;
    let gw = gateway(&format!(
        "{}{DO53_AND_DOH}{}",
        resolver(&stub),
        allow_list_only("inspect")
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(0x5151, "Alexa.Example", A, Some(1232));
    for (attempt, a) in [
        udp(addr, &q).await,
        udp(addr, &q).await,
        doh_plain(doh_addr(&gw), &q).await,
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(a.rcode, NXDOMAIN, "attempt {attempt}: deny-rest's NXDOMAIN");
        assert_eq!(a.id, 0x5151);
        assert_eq!(
            question_bytes(&a.raw),
            question_bytes(&q),
            "question as sent"
        );
        assert_eq!(a.counts[1], 0, "no answer record leaks: {:?}", a.addrs);
    }
    assert_eq!(
        stub.count(),
        1,
        "the second and third answers came from the cache, and were checked again"
    );
    // A name that no allow rule covers never reaches the upstream at all.
    let a = udp(addr, &query(2, "exfil.attacker.example", A, None)).await;
    assert_eq!(a.rcode, NXDOMAIN);
    assert_eq!(stub.count(), 1);

    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    let matches = |rule: &str, action: &str| {
        metric(
            &m,
            "dohgate_firewall_matches_total",
            &[("rule_group", "egress"), ("rule", rule), ("action", action)],
        )
    };
    assert_eq!(matches("allow-trusted", "allow"), 3.0);
    assert_eq!(
        matches("deny-rest", "block"),
        4.0,
        "3 chains and 1 question"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn trust_passes_the_whole_chain_of_an_allowed_name() {
    let stub = Stub::start(chain()).await;
    let gw = gateway(&format!(
        "{}{DO53_AND_DOH}{}",
        resolver(&stub),
        allow_list_only("trust")
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let q = query(7, "alexa.example", A, None);
    for a in [
        udp(addr, &q).await,
        tcp(addr, &q).await,
        doh_plain(doh_addr(&gw), &q).await,
    ] {
        assert_eq!((a.id, a.rcode), (7, 0));
        assert_eq!(a.addrs, vec![IP_CDN], "resolved through the chain");
        let names: Vec<&str> = a.cnames.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "pitangui.amazon.example.",
                "d1wg1w6p5q8555.cloudfront.example."
            ]
        );
    }
    assert_eq!(stub.count(), 1, "answered from the cache after the first");
    // The chain's own names, asked directly, are still blocked: trust is for the chain an
    // allowed name leads to.
    let a = udp(addr, &query(8, "pitangui.amazon.example", A, None)).await;
    assert_eq!(a.rcode, NXDOMAIN);
    gw.shutdown().await;
}

/// One rule group blocking `blocked.example` with `response`, for checking block answers.
fn block_with(response: &str) -> String {
    format!(
        r#"
[[firewall.domain_list]]
name = "bad"
domains = ["blocked.example", "*.blocked.example"]

[[firewall.rule_group]]
name = "g"

[[firewall.rule_group.rule]]
name = "block-bad"
priority = 1
domain_list = "bad"
action = "block"
{response}

[[firewall.association]]
rule_group = "g"
priority = 1
"#
    )
}

#[tokio::test]
async fn each_block_response_is_right_on_the_wire() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    for (response, rcode) in [
        ("block_response = \"nodata\"", 0),
        ("block_response = \"nxdomain\"", NXDOMAIN),
        ("", 0),
    ] {
        let gw = gateway(&format!("{}{}", resolver(&stub), block_with(response))).await;
        let addr = gw.do53_addr().expect("do53");
        let q = query(0xabcd, "www.Blocked.example", A, Some(4096));
        let a = udp(addr, &q).await;
        assert_eq!((a.id, a.rcode), (0xabcd, rcode), "{response:?}");
        assert_eq!(
            a.counts,
            [1, 0, 0, 1],
            "question and OPT only: {response:?}"
        );
        assert_eq!(question_bytes(&a.raw), question_bytes(&q));
        assert_eq!(a.raw[2] & 0x81, 0x81, "QR and RD set");
        gw.shutdown().await;
    }
    let gw = gateway(&format!(
        "{}{}",
        resolver(&stub),
        block_with(
            "block_response = \"override\"\noverride = { domain = \"walled.corp.example\", ttl = 42 }"
        )
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let a = tcp(addr, &query(3, "blocked.example", A, None)).await;
    assert_eq!((a.id, a.rcode), (3, 0));
    assert_eq!(a.cnames, vec![("walled.corp.example.".to_string(), 42)]);
    assert_eq!(a.counts, [1, 1, 0, 0]);
    assert_eq!(stub.count(), 0, "nothing blocked went upstream");
    // Names the list does not cover are resolved as usual.
    assert_eq!(
        udp(addr, &query(4, "notblocked.example", A, None))
            .await
            .addrs,
        vec![IP_DEFAULT]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn qtype_rules_and_priority_order_within_and_across_groups() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        r#"{}
[[firewall.domain_list]]
name = "v6only"
domains = ["v4.example"]

[[firewall.domain_list]]
name = "shop"
domains = ["*.shop.example"]

[[firewall.domain_list]]
name = "vip"
domains = ["vip.shop.example"]

[[firewall.rule_group]]
name = "first"

[[firewall.rule_group.rule]]
name = "no-aaaa"
priority = 5
domain_list = "v6only"
action = "block"
qtype = "AAAA"

# Lower priority value first: the allow for vip shadows the block of the rest of the shop,
# whatever order the rules are written in.
[[firewall.rule_group.rule]]
name = "block-shop"
priority = 20
domain_list = "shop"
action = "block"
block_response = "nxdomain"

[[firewall.rule_group.rule]]
name = "vip-allowed"
priority = 10
domain_list = "vip"
action = "allow"

[[firewall.rule_group]]
name = "second"

[[firewall.rule_group.rule]]
name = "alert-vip"
priority = 1
domain_list = "vip"
action = "alert"

[[firewall.association]]
rule_group = "second"
priority = 200

[[firewall.association]]
rule_group = "first"
priority = 100
"#,
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    assert_eq!(
        udp(addr, &query(1, "v4.example", A, None)).await.addrs,
        vec![IP_DEFAULT],
        "an AAAA-only rule lets A through"
    );
    let a = udp(addr, &query(2, "v4.example", AAAA, None)).await;
    assert_eq!((a.rcode, a.counts[1]), (0, 0), "AAAA gets NODATA");
    assert_eq!(
        udp(addr, &query(3, "www.shop.example", A, None))
            .await
            .rcode,
        NXDOMAIN
    );
    assert_eq!(
        udp(addr, &query(4, "vip.shop.example", A, None))
            .await
            .addrs,
        vec![IP_DEFAULT],
        "priority 10's allow comes before priority 20's block"
    );
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    let count = |rule: &str| metric(&m, "dohgate_firewall_matches_total", &[("rule", rule)]);
    assert_eq!(count("vip-allowed"), 1.0);
    assert_eq!(
        count("alert-vip"),
        0.0,
        "group \"first\" (priority 100) decided before group \"second\" (200) was asked"
    );
    assert_eq!(count("no-aaaa"), 1.0);
    assert_eq!(count("block-shop"), 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn alert_passes_and_counts() {
    let stub = Stub::start(chain()).await;
    let gw = gateway(&format!(
        r#"{}
[[firewall.domain_list]]
name = "watch"
domains = ["*.cloudfront.example"]

[[firewall.rule_group]]
name = "watching"

[[firewall.rule_group.rule]]
name = "watch-cdn"
priority = 1
domain_list = "watch"
action = "alert"

[[firewall.association]]
rule_group = "watching"
priority = 1
"#,
        resolver(&stub)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let a = udp(addr, &query(1, "alexa.example", A, None)).await;
    assert_eq!(a.addrs, vec![IP_CDN], "alert lets the answer through");
    let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "dohgate_firewall_matches_total",
            &[("rule", "watch-cdn"), ("action", "alert")]
        ),
        1.0,
        "the chain's cloudfront name matched"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_chain_fails_closed_by_default_and_open_when_asked() {
    let stub = Stub::start(Behavior::BrokenChain).await;
    let rules = r#"
[[firewall.domain_list]]
name = "bad"
domains = ["bad.example"]

[[firewall.rule_group]]
name = "g"

[[firewall.rule_group.rule]]
name = "block-bad"
priority = 1
domain_list = "bad"
action = "block"

[[firewall.association]]
rule_group = "g"
priority = 1
"#;
    for (fail_open, rcode, outcome) in [("false", 2, "servfail"), ("true", 0, "passed")] {
        let gw = gateway(&format!(
            "{}[firewall]\nfail_open = {fail_open}\n{rules}",
            resolver(&stub)
        ))
        .await;
        let addr = gw.do53_addr().expect("do53");
        let raw = udp_raw(addr, &query(9, "broken.example", A, None)).await;
        assert_eq!(raw[3] & 0x0f, rcode, "fail_open = {fail_open}");
        let (_, m) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
        assert_eq!(
            metric(
                &m,
                "dohgate_firewall_unreadable_answers_total",
                &[("outcome", outcome)]
            ),
            1.0
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn associations_apply_to_the_endpoints_they_name() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        r#"{}
[[inbound]]
name = "guests"
listen = ["127.0.0.1:0"]

[[inbound]]
name = "datacentre"
listen = ["127.0.0.1:0"]

[[firewall.domain_list]]
name = "social"
domains = ["*.social.example"]

[[firewall.rule_group]]
name = "guest-policy"

[[firewall.rule_group.rule]]
name = "no-social"
priority = 1
domain_list = "social"
action = "block"
block_response = "nxdomain"

[[firewall.association]]
rule_group = "guest-policy"
priority = 1
inbound = ["guests"]
"#,
        resolver(&stub)
    ))
    .await;
    let guests = gw.addrs().do53[0].1;
    let datacentre = gw.addrs().do53[1].1;
    let q = query(1, "www.social.example", A, None);
    assert_eq!(udp(guests, &q).await.rcode, NXDOMAIN);
    assert_eq!(udp(datacentre, &q).await.addrs, vec![IP_DEFAULT]);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_query_log_names_the_rule_group_action_and_list() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let dir = temp_dir("firewall-log");
    let log = dir.join("queries.log");
    let gw = gateway(&format!(
        "[query_log]\npath = \"{}\"\n{}{}",
        log.display(),
        resolver(&stub),
        block_with("block_response = \"nxdomain\"")
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    assert_eq!(
        udp(addr, &query(1, "a.blocked.example", A, None))
            .await
            .rcode,
        NXDOMAIN
    );
    assert_eq!(udp(addr, &query(2, "fine.example", A, None)).await.rcode, 0);
    let lines = lines_of(&log, 2).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(v[0]["firewall_rule_group_id"], "g");
    assert_eq!(v[0]["firewall_rule_action"], "BLOCK");
    assert_eq!(v[0]["firewall_domain_list_id"], "bad");
    assert_eq!(v[0]["rcode"], "NXDOMAIN");
    assert!(
        v[1].get("firewall_rule_action").is_none(),
        "no rule matched: no firewall fields: {}",
        v[1]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn block_from_the_command_line() {
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let text = format!(
        "{}[[inbound]]\nname = \"test\"\nlisten = [\"127.0.0.1:0\"]\n",
        resolver(&stub)
    );
    let mut config = dohgate_core::config::parse(&text, None).expect("config");
    config
        .firewall
        .block(&["*.ads.example".to_string()])
        .expect("a valid domain");
    let gw = dohgate::start(config).await.expect("starts");
    let addr = gw.do53_addr().expect("do53");
    assert_eq!(
        udp(addr, &query(1, "x.ads.example", A, None)).await.rcode,
        NXDOMAIN
    );
    assert_eq!(
        udp(addr, &query(2, "ads.example", A, None)).await.addrs,
        vec![IP_DEFAULT],
        "*.x covers the names below x, not x itself"
    );
    assert_eq!(stub.count(), 1);
    gw.shutdown().await;
}
