//! `dohgate import` end to end: each KIND's fixture (tests/import/) imported, its targets
//! pointed at stub upstreams on 127.0.0.1, and queries routed as the source configuration
//! says; and the binary's output and exit codes as users see them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use dohgate::RunningGateway;
use dohgate::import::{self, ImportKind};
use dohgate_core::TargetSpec;

use crate::support::*;

const NXDOMAIN: u8 = 3;
const AAAA: u16 = 28;
const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_CORP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const IP_OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/import")
        .join(path)
}

/// Imports `files` as `kind`, points every target at the stub its address is mapped to (a
/// target with no stub fails the test: nothing is ever sent past loopback), gives the default
/// resolver to `default` when the import names none, and starts the gateway on 127.0.0.1:0.
async fn start(
    kind: ImportKind,
    files: &[&str],
    stubs: &[(&str, &Stub)],
    default: &Stub,
) -> RunningGateway {
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    let out = import::run(kind, &paths).expect("the fixture imports");
    let mut config = dohgate_core::config::parse(&out.toml, None)
        .unwrap_or_else(|e| panic!("check-config refuses the import: {e}\n{}", out.toml));
    dohgate::check(&config).expect("check-config accepts the import");
    let stub_for = |ip: IpAddr| {
        stubs
            .iter()
            .find(|(a, _)| a.parse::<IpAddr>() == Ok(ip))
            .map(|(_, s)| s.addr)
    };
    let targets = config
        .resolver
        .targets
        .iter_mut()
        .chain(config.rules.iter_mut().flat_map(|r| r.targets.iter_mut()));
    for t in targets {
        let stub = stub_for(t.addr.ip()).unwrap_or_else(|| panic!("no stub for target {t}"));
        *t = TargetSpec::do53(stub);
    }
    if config.resolver.from_system {
        config.resolver.targets = vec![TargetSpec::do53(default.addr)];
        config.resolver.from_system = false;
    }
    // The imported endpoint listens on dohgate's default address: tests take a free port.
    config.inbound[0].do53 = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.admin = None;
    dohgate::start(config).await.expect("gateway starts")
}

/// Asks for `name` and returns which stub answered (by the address it answers with), or the
/// RCODE when none did.
async fn ask(gw: &RunningGateway, id: u16, name: &str, qtype: u16) -> Answer {
    let addr = gw.do53_addr().expect("a Do53 listener");
    udp(addr, &query(id, name, qtype, None)).await
}

async fn routes_to(gw: &RunningGateway, id: u16, name: &str, expected: Ipv4Addr) {
    let a = ask(gw, id, name, A).await;
    assert_eq!(a.rcode, 0, "{name}: {a:?}");
    assert_eq!(
        a.addrs,
        vec![expected],
        "{name} was answered by the wrong stub"
    );
}

#[tokio::test]
async fn dnsmasq_routes_as_its_server_lines_say() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let lab = Stub::start(Behavior::Answer(IP_OTHER)).await;
    let gw = start(
        ImportKind::Dnsmasq,
        &["dnsmasq/dnsmasq.conf"],
        &[
            ("192.0.2.53", &default),
            ("192.0.2.54", &default),
            ("198.51.100.53", &corp),
            ("198.51.100.54", &corp),
            ("203.0.113.53", &lab),
        ],
        &default,
    )
    .await;
    routes_to(&gw, 1, "a.corp.example", IP_CORP).await;
    routes_to(&gw, 2, "www.corp.example", IP_DEFAULT).await; // server=/www.corp.example/#
    routes_to(&gw, 3, "x.dev.example", IP_OTHER).await;
    routes_to(&gw, 4, "lab.example", IP_OTHER).await;
    routes_to(&gw, 5, "elsewhere.example", IP_DEFAULT).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn coredns_routes_as_its_server_blocks_say() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let lab = Stub::start(Behavior::Answer(IP_OTHER)).await;
    let gw = start(
        ImportKind::Coredns,
        &["coredns/Corefile"],
        &[
            ("192.0.2.53", &default),
            ("192.0.2.54", &default),
            ("198.51.100.53", &corp),
            ("2001:db8::53", &corp),
            ("203.0.113.53", &lab),
        ],
        &default,
    )
    .await;
    routes_to(&gw, 1, "a.corp.example", IP_CORP).await;
    routes_to(&gw, 2, "www.corp.example", IP_DEFAULT).await; // except
    routes_to(&gw, 3, "x.lab.example", IP_OTHER).await;
    // Its only upstream spoke DoT, left out: the default resolver answers instead.
    routes_to(&gw, 4, "secure.example", IP_DEFAULT).await;
    // The server block 10.1.0.0/16 forwards its reverse zone; the rest of 10.in-addr.arpa is
    // still answered locally (RFC 6303).
    let before = corp.count();
    let ptr = ask(&gw, 5, "5.4.1.10.in-addr.arpa", PTR).await;
    assert_eq!(ptr.rcode, 0, "{ptr:?}");
    assert_eq!(corp.count(), before + 1);
    let local = ask(&gw, 6, "5.4.2.10.in-addr.arpa", PTR).await;
    assert_eq!(local.rcode, NXDOMAIN, "{local:?}");
    assert_eq!(corp.count(), before + 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn dnsproxy_routes_as_its_upstream_file_says() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = start(
        ImportKind::Dnsproxy,
        &["dnsproxy/upstreams.txt"],
        &[
            ("192.0.2.53", &default),
            ("192.0.2.80", &default),
            ("192.0.2.54", &default),
            ("198.51.100.53", &corp),
            ("198.51.100.54", &corp),
        ],
        &default,
    )
    .await;
    routes_to(&gw, 1, "a.corp.example", IP_CORP).await;
    routes_to(&gw, 2, "www.corp.example", IP_DEFAULT).await; // [/www.corp.example/]#
    routes_to(&gw, 3, "x.lab.example", IP_CORP).await;
    routes_to(&gw, 4, "x.wild.example", IP_DEFAULT).await; // [/*.wild.example/] left out
    gw.shutdown().await;
}

#[tokio::test]
async fn unbound_routes_as_its_forward_zones_say() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let gw = start(
        ImportKind::Unbound,
        &["unbound/unbound.conf"],
        &[
            ("192.0.2.53", &default),
            ("192.0.2.54", &default),
            ("198.51.100.53", &corp),
            ("2001:db8::53", &corp),
        ],
        &default,
    )
    .await;
    routes_to(&gw, 1, "a.corp.example", IP_CORP).await;
    // forward-no-cache: yes: the second query reaches the stub again.
    routes_to(&gw, 2, "a.corp.example", IP_CORP).await;
    assert_eq!(corp.count(), 2);
    routes_to(&gw, 3, "secure.example", IP_DEFAULT).await; // DoT zone left out
    routes_to(&gw, 4, "elsewhere.example", IP_DEFAULT).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn route53_rules_and_firewall_route_and_block_as_aws_would() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let partner = Stub::start(Behavior::Answer(IP_OTHER)).await;
    let files = [
        "route53/resolver-endpoints.json",
        "route53/resolver-rules.json",
        "route53/firewall-domain-lists.json",
        "route53/rslvr-fdl-9e956e9ffexample.json",
        "route53/domains-malware.json",
        "route53/domains-gambling.json",
        "route53/firewall-rule-groups.json",
        "route53/firewall-rules.json",
        "route53/firewall-rule-group-associations.json",
    ];
    let gw = start(
        ImportKind::Route53,
        &files,
        &[
            ("198.51.100.53", &corp),
            ("2001:db8::53", &corp),
            ("203.0.113.10", &partner),
        ],
        &default,
    )
    .await;
    routes_to(&gw, 1, "a.corp.example", IP_CORP).await;
    routes_to(&gw, 2, "www.corp.example", IP_DEFAULT).await; // SYSTEM
    routes_to(&gw, 3, "api.partner.example", IP_OTHER).await;
    routes_to(&gw, 4, "alexa.example", IP_DEFAULT).await; // ALLOW

    let seen = default.count() + corp.count() + partner.count();
    let blocked = ask(&gw, 5, "c2.malware.example", A).await;
    assert_eq!(blocked.rcode, NXDOMAIN, "{blocked:?}");
    let exfil = ask(&gw, 6, "exfil.attacker.example", A).await;
    assert_eq!(exfil.rcode, NXDOMAIN, "{exfil:?}");
    let garden = ask(&gw, 7, "www.casino.example", A).await;
    assert_eq!(
        garden.cnames,
        vec![("walled-garden.corp.example.".to_string(), 300)],
        "{garden:?}"
    );
    assert_eq!(
        default.count() + corp.count() + partner.count(),
        seen,
        "a blocked name never leaves the gateway"
    );
    // The OVERRIDE rule has Qtype A: other types pass.
    let aaaa = ask(&gw, 8, "www.casino.example", AAAA).await;
    assert_eq!(aaaa.rcode, 0, "{aaaa:?}");
    assert!(aaaa.cnames.is_empty(), "{aaaa:?}");
    gw.shutdown().await;
}

fn dohgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dohgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dohgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn import_prints_what_check_config_accepts_and_lists_what_it_left_out() {
    let dir = temp_dir("import-cli");
    for (kind, files) in [
        ("dnsmasq", vec!["dnsmasq/dnsmasq.conf"]),
        ("coredns", vec!["coredns/Corefile"]),
        ("dnsproxy", vec!["dnsproxy/upstreams.txt"]),
        ("unbound", vec!["unbound/unbound.conf"]),
        (
            "route53",
            vec![
                "route53/resolver-rules.json",
                "route53/firewall-domain-lists.json",
                "route53/domains-malware.json",
            ],
        ),
    ] {
        let paths: Vec<String> = files
            .iter()
            .map(|f| fixture(f).display().to_string())
            .collect();
        let mut args = vec!["import", kind];
        args.extend(paths.iter().map(String::as_str));
        let (code, out, err) = dohgate(&args);
        assert_eq!(code, 0, "{kind}: {err}");
        assert!(
            err.lines().any(|l| l.starts_with("left out: ")),
            "{kind}: {err}"
        );
        let file = dir.join(format!("{kind}.toml"));
        std::fs::write(&file, &out).expect("write");
        let (code, checked, err) = dohgate(&["check-config", &file.display().to_string()]);
        assert_eq!(code, 0, "{kind}: {err}\n{out}");
        assert!(checked.contains("configuration is valid"), "{checked}");
    }

    let conf = fixture("dnsmasq/dnsmasq.conf").display().to_string();
    let (_, _, err) = dohgate(&["import", "dnsmasq", &conf]);
    assert!(
        err.contains(&format!("left out: {conf}:12: local=/lan/: ")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_input_of_another_kind_exits_2_naming_the_file() {
    let conf = fixture("dnsmasq/dnsmasq.conf").display().to_string();
    let rules = fixture("route53/resolver-rules.json").display().to_string();
    let corefile = fixture("coredns/Corefile").display().to_string();
    for (kind, file) in [
        ("route53", &conf),
        ("coredns", &rules),
        ("dnsmasq", &corefile),
        ("unbound", &conf),
        ("dnsproxy", &conf),
    ] {
        let (code, out, err) = dohgate(&["import", kind, file]);
        assert_eq!(code, 2, "{kind} {file}: {err}");
        assert!(out.is_empty(), "nothing on standard output: {out}");
        assert!(err.starts_with(&format!("dohgate: {file}")), "{err}");
    }
    let (code, _, err) = dohgate(&["import", "dnsmasq", "/nonexistent/dnsmasq.conf"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/dnsmasq.conf: cannot read"),
        "{err}"
    );
    let (code, _, _) = dohgate(&["import", "bind9", &conf]);
    assert_eq!(code, 2, "clap refuses an unknown KIND");
}

/// The fenced blocks of a Markdown file: (info string, text).
fn fenced_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// docs/import.md shows inputs (blocks tagged `import:KIND:FILE`), then what `dohgate import`
/// prints for them (a toml block, then a `text stderr` block): both must be exactly that.
#[test]
fn the_examples_in_docs_import_md_are_what_import_prints() {
    let md = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/import.md"),
    )
    .expect("docs/import.md");
    let dir = temp_dir("import-docs");
    let mut kind = String::new();
    let mut files: Vec<String> = Vec::new();
    let mut stdout: Option<String> = None;
    let mut checked = 0;
    for (info, text) in fenced_blocks(&md) {
        if let Some(spec) = info
            .split_whitespace()
            .nth(1)
            .and_then(|tag| tag.strip_prefix("import:"))
        {
            let (k, file) = spec.split_once(':').expect("import:KIND:FILE");
            kind = k.to_string();
            std::fs::write(dir.join(file), &text).expect("write");
            files.push(file.to_string());
            continue;
        }
        if files.is_empty() {
            continue;
        }
        if info == "toml" {
            stdout = Some(text);
        } else if info == "text stderr" {
            let mut args = vec!["import", kind.as_str()];
            args.extend(files.iter().map(String::as_str));
            let out = Command::new(env!("CARGO_BIN_EXE_dohgate"))
                .args(&args)
                .current_dir(&dir)
                .output()
                .expect("run dohgate");
            assert_eq!(out.status.code(), Some(0), "{args:?}");
            let expected = stdout.take().expect("a toml block before the stderr block");
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{args:?}");
            assert_eq!(String::from_utf8_lossy(&out.stderr), text, "{args:?}");
            files.clear();
            checked += 1;
        }
    }
    assert!(
        checked >= 6,
        "one example per KIND at least, found {checked}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
