//! Associations and Profiles end to end: rules, local zones and firewall rule groups that apply
//! to some inbound endpoints only, directly or through a profile, and a cache that never
//! serves one route's answer to a query that routes elsewhere.

use std::net::{Ipv4Addr, SocketAddr};

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const IP_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const IP_OWN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 13);
const NXDOMAIN: u8 = 3;
const SOA: u16 = 6;

/// Two Do53 endpoints, "a" and "b" (the second with `extra` lines).
fn two_endpoints(extra_a: &str) -> String {
    format!(
        "[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:0\"]\n{extra_a}\n\
         [[inbound]]\nname = \"b\"\nlisten = [\"127.0.0.1:0\"]\n"
    )
}

fn addrs(gw: &dohgate::RunningGateway) -> (SocketAddr, SocketAddr) {
    (gw.addrs().do53[0].1, gw.addrs().do53[1].1)
}

fn scoped_rule(name: &str, domain: &str, target: SocketAddr, inbound: &str) -> String {
    format!(
        "{}{inbound}\n",
        forward_rule(name, domain, &[target]).trim_end()
    )
}

#[tokio::test]
async fn the_cache_never_serves_one_routes_answer_to_another() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let to_a = Stub::start(Behavior::Answer(IP_A)).await;
    let to_b = Stub::start(Behavior::Answer(IP_B)).await;
    let gw = gateway(&format!(
        "{}{}{OUTBOUND}{}{}",
        resolver(&default),
        two_endpoints(""),
        scoped_rule("corp-a", "corp.test", to_a.addr, "\ninbound = [\"a\"]"),
        scoped_rule("corp-b", "corp.test", to_b.addr, "\ninbound = [\"b\"]"),
    ))
    .await;
    let (a, b) = addrs(&gw);
    let q = query(1, "host.corp.test", A, None);
    for round in 0..2 {
        assert_eq!(
            udp(a, &q).await.addrs,
            vec![IP_A],
            "round {round}, endpoint a"
        );
        assert_eq!(
            udp(b, &q).await.addrs,
            vec![IP_B],
            "round {round}, endpoint b"
        );
    }
    assert_eq!(
        (to_a.count(), to_b.count()),
        (1, 1),
        "each route asked once; the second round came from the cache, each its own entry"
    );
    assert_eq!(default.count(), 0);
    gw.shutdown().await;
}

/// A zone file in a fresh directory: `infra.test` with A, a CNAME inside the zone, MX.
fn infra_zone(dir: &std::path::Path, origin: &str, host_ip: &str) -> String {
    let path = dir.join(format!("{origin}zone"));
    std::fs::write(
        &path,
        format!(
            "$ORIGIN {origin}\n$TTL 300\n\
             @     SOA ns.{origin} admin.{origin} 1 3600 600 86400 120\n\
             @     NS  ns.{origin}\n\
             ns    A   192.0.2.53\n\
             host  A   {host_ip}\n\
             alias CNAME host\n\
             @     MX  10 mail.{origin}\n"
        ),
    )
    .expect("write zone");
    path.display().to_string()
}

#[tokio::test]
async fn a_local_zone_answers_with_authority_and_its_soa() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let dir = temp_dir("zone");
    let file = infra_zone(&dir, "infra.test.", "10.9.0.1");
    let gw = gateway(&format!(
        "{}[[zone]]\nname = \"infra\"\ndomain = \"infra.test\"\nfile = \"{file}\"\n",
        resolver(&default)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let a = udp(addr, &query(1, "Host.Infra.Test", A, None)).await;
    assert_eq!((a.id, a.rcode, a.aa), (1, 0, true));
    assert_eq!(a.addrs, vec![Ipv4Addr::new(10, 9, 0, 1)]);
    let a = tcp(addr, &query(2, "alias.infra.test", A, None)).await;
    assert_eq!(a.cnames.len(), 1, "the CNAME, then its in-zone target's A");
    assert_eq!(a.addrs, vec![Ipv4Addr::new(10, 9, 0, 1)]);
    let a = udp(addr, &query(3, "host.infra.test", 28, None)).await;
    assert_eq!((a.rcode, a.counts[1]), (0, 0), "NODATA for AAAA");
    assert_eq!(a.authority_types, vec![SOA]);
    let a = udp(addr, &query(4, "nope.infra.test", A, None)).await;
    assert_eq!((a.rcode, a.aa), (NXDOMAIN, true));
    assert_eq!(a.authority_types, vec![SOA]);
    assert_eq!(default.count(), 0, "nothing of the zone went upstream");
    assert_eq!(
        udp(addr, &query(5, "www.elsewhere.test", A, None))
            .await
            .addrs,
        vec![IP_DEFAULT]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn profile_and_endpoint_precedence_for_rules_zones_and_rule_groups() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let profile_corp = Stub::start(Behavior::Answer(IP_A)).await;
    let own_corp = Stub::start(Behavior::Answer(IP_OWN)).await;
    let dir = temp_dir("profiles");
    let infra = infra_zone(&dir, "infra.test.", "10.1.0.1");
    let account1 = infra_zone(&dir, "account1.infra.test.", "10.2.0.1");
    let gw = gateway(&format!(
        r#"{resolver}{endpoints}{OUTBOUND}
{corp}
{own_corp}
[[zone]]
name = "infra"
domain = "infra.test"
file = "{infra}"

[[zone]]
name = "account1"
domain = "account1.infra.test"
file = "{account1}"
inbound = ["a"]

[[profile]]
name = "corp-standard"
rules = ["corp"]
zones = ["infra"]
firewall = [{{ rule_group = "block-x", priority = 100 }}]

[[firewall.domain_list]]
name = "x"
domains = ["x.test"]

[[firewall.rule_group]]
name = "block-x"

[[firewall.rule_group.rule]]
name = "block-x"
priority = 1
domain_list = "x"
action = "block"
block_response = "nxdomain"

[[firewall.rule_group]]
name = "allow-x"

[[firewall.rule_group.rule]]
name = "allow-x"
priority = 1
domain_list = "x"
action = "allow"

[[firewall.association]]
rule_group = "allow-x"
priority = 100
inbound = ["a"]
"#,
        resolver = resolver(&default),
        endpoints = two_endpoints("profile = \"corp-standard\"\n")
            + "[[inbound]]\nname = \"c\"\nlisten = [\"127.0.0.1:0\"]\nprofile = \"corp-standard\"\n",
        corp = forward_rule("corp", "corp.test", &[profile_corp.addr]),
        own_corp = scoped_rule("corp-own", "corp.test", own_corp.addr, "\ninbound = [\"a\"]"),
    ))
    .await;
    let (a, b) = addrs(&gw);
    let c = gw.addrs().do53[2].1;

    // Rules: a's own rule for corp.test wins over its profile's; c has only the profile's;
    // b has neither, so the default resolver answers.
    let q = query(1, "host.corp.test", A, None);
    assert_eq!(udp(a, &q).await.addrs, vec![IP_OWN]);
    assert_eq!(udp(c, &q).await.addrs, vec![IP_A]);
    assert_eq!(udp(b, &q).await.addrs, vec![IP_DEFAULT]);

    // Zones: the most specific wins across own and profile: a's own account1.infra.test
    // below the profile's infra.test.
    let host = |name: &str| query(2, name, A, None);
    assert_eq!(
        udp(a, &host("host.account1.infra.test")).await.addrs,
        vec![Ipv4Addr::new(10, 2, 0, 1)]
    );
    assert_eq!(
        udp(a, &host("host.infra.test")).await.addrs,
        vec![Ipv4Addr::new(10, 1, 0, 1)]
    );
    let in_profile_zone = udp(c, &host("host.account1.infra.test")).await;
    assert_eq!(
        (in_profile_zone.rcode, in_profile_zone.aa),
        (NXDOMAIN, true),
        "c has only the profile's zone, where account1 does not exist"
    );
    assert_eq!(
        udp(b, &host("host.infra.test")).await.addrs,
        vec![IP_DEFAULT],
        "b has no zone: the default resolver"
    );

    // Rule groups at one priority: the endpoint's own association first, so a's allow
    // decides before its profile's block; c gets the profile's block.
    let x = query(3, "x.test", A, None);
    assert_eq!(udp(a, &x).await.addrs, vec![IP_DEFAULT]);
    assert_eq!(udp(c, &x).await.rcode, NXDOMAIN);
    assert_eq!(udp(b, &x).await.addrs, vec![IP_DEFAULT]);
    gw.shutdown().await;
}

#[test]
fn conflicts_at_one_level_are_configuration_errors() {
    let base = two_endpoints("");
    let rule = |name: &str, inbound: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\ndomain = \"corp.test\"\ntype = \"system\"\n{inbound}\n"
        )
    };
    // Two rules for one domain on different endpoints: fine.
    dohgate_core::config::parse(
        &format!(
            "{base}{}{}",
            rule("r1", "inbound = [\"a\"]"),
            rule("r2", "inbound = [\"b\"]")
        ),
        None,
    )
    .expect("each endpoint has one");
    // Both on a: an error naming the second and the endpoint.
    let e = dohgate_core::config::parse(
        &format!(
            "{base}{}{}",
            rule("r1", ""),
            rule("r2", "inbound = [\"a\"]")
        ),
        None,
    )
    .expect_err("a gets both");
    assert_eq!(e.key, "rule[1].domain");
    assert!(e.message.contains("\"a\""), "{e}");
    // A profile naming what does not exist, or a rule with endpoints of its own.
    let e = dohgate_core::config::parse(
        &format!("{base}[[profile]]\nname = \"p\"\nrules = [\"missing\"]\n"),
        None,
    )
    .expect_err("unknown rule");
    assert_eq!(e.key, "profile[0].rules[0]");
    let e = dohgate_core::config::parse(
        &format!(
            "{base}{}[[profile]]\nname = \"p\"\nrules = [\"r1\"]\n",
            rule("r1", "inbound = [\"a\"]")
        ),
        None,
    )
    .expect_err("scoped twice");
    assert!(e.message.contains("profile"), "{e}");
    let e = dohgate_core::config::parse(&two_endpoints("profile = \"nope\""), None)
        .expect_err("unknown profile");
    assert_eq!(e.key, "inbound[0].profile");
}
