//! dnsproxy (and AdGuard Home) upstream files: one upstream or `[/domain1/domain2/]upstream`
//! per line, `#` comments.
//!
//! - a line without `[/.../]`: default resolver targets;
//! - `[/d/]UPSTREAM...`: a forward rule for `d` and the names below it (several lines for one
//!   domain: one rule with all their upstreams);
//! - `[/d/]#`: a system rule ("use the default upstreams");
//! - upstreams: `IP`, `IP:PORT`, `udp://` and `tcp://` (Do53), `https://IP[:PORT][/PATH]`
//!   (DoH). `tls://` (DoT), `quic://`, `h3://` and `sdns://` stamps are left out with the
//!   reason, as are host names (dohgate never resolves target names), `[//]` (names without a
//!   dot) and `[/*.d/]` (the names below `d` but not `d`).

use std::collections::HashMap;

use super::{Builder, ImportError, Source, Target, address, domain, is_host_name};

struct Route {
    domain: String,
    at: String,
    entry: String,
    targets: Vec<Target>,
    system: bool,
}

pub fn import(src: &Source, b: &mut Builder) -> Result<(), ImportError> {
    let outbound = b.shared_outbound(&src.name);
    let mut routes: Vec<Route> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();

    for (i, raw) in src.text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = src.at(n);
        let Some(rest) = line.strip_prefix("[/") else {
            let mut targets = Vec::new();
            for u in line.split_whitespace() {
                if let Some(t) = upstream(src, n, b, &at, u)? {
                    targets.push(t);
                }
            }
            b.add_default_targets(&at, line, targets);
            continue;
        };
        let Some((domains, upstreams)) = rest.split_once("/]") else {
            return Err(src.error(
                Some(n),
                format!("{line:?}: [/domain/] is not closed with /]"),
            ));
        };
        let upstreams: Vec<&str> = upstreams.split_whitespace().collect();
        if upstreams.is_empty() {
            return Err(src.error(Some(n), format!("{line:?}: no upstream after [/domain/]")));
        }
        let system = upstreams == ["#"];
        let mut targets = Vec::new();
        if !system {
            for u in &upstreams {
                if let Some(t) = upstream(src, n, b, &at, u)? {
                    targets.push(t);
                }
            }
        }
        for d in domains.split('/') {
            let entry = format!("[/{d}/]{}", upstreams.join(" "));
            if d.is_empty() {
                b.leave_out(
                    &at,
                    &entry,
                    "[//] (names without a dot) has no dohgate rule form: a rule covers a domain",
                );
                continue;
            }
            if d.starts_with("*.") {
                b.leave_out(
                    &at,
                    &entry,
                    "[/*.domain/] routes the names below the domain but not the domain itself; a dohgate rule covers both",
                );
                continue;
            }
            let name = match domain(d) {
                Ok(name) => name,
                Err(why) => {
                    b.leave_out(&at, &entry, why);
                    continue;
                }
            };
            match index.get(&name) {
                Some(&k) if routes[k].system != system => b.leave_out(
                    &at,
                    &entry,
                    format!("{} routes {name} differently already", routes[k].at),
                ),
                Some(&k) => routes[k].targets.extend(targets.iter().cloned()),
                None => {
                    index.insert(name.clone(), routes.len());
                    routes.push(Route {
                        domain: name,
                        at: at.clone(),
                        entry,
                        targets: targets.clone(),
                        system,
                    });
                }
            }
        }
    }

    for r in routes {
        if r.system {
            b.add_system(&r.at, &r.entry, &r.domain, &r.domain);
        } else {
            b.add_forward(
                &r.at, &r.entry, &r.domain, &r.domain, &outbound, r.targets, None,
            );
        }
    }
    Ok(())
}

/// One upstream: a target, `None` when it is reported as left out, or an error when the word
/// is no upstream at all (the file is not an upstream file).
fn upstream(
    src: &Source,
    n: usize,
    b: &mut Builder,
    at: &str,
    u: &str,
) -> Result<Option<Target>, ImportError> {
    let (scheme, rest) = match u.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::new(), u),
    };
    // An address, or a host name with an optional port: anything else is no upstream.
    let plain = |rest: &str| -> bool {
        if rest.parse::<std::net::IpAddr>().is_ok()
            || rest.parse::<std::net::SocketAddr>().is_ok()
            || rest.starts_with('[')
        {
            return true;
        }
        match rest.rsplit_once(':') {
            Some((host, port)) => {
                !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && is_host_name(host)
            }
            None => is_host_name(rest),
        }
    };
    match scheme.as_str() {
        "" | "udp" | "tcp" => {
            if !plain(rest) {
                return Err(src.error(
                    Some(n),
                    format!("{u:?} is not an upstream (IP, IP:PORT, https://..., tls://... or [/domain/]upstream)"),
                ));
            }
            match address(rest, 53) {
                Ok(a) => {
                    if scheme == "tcp" {
                        b.note(format!(
                            "{at}: {u} is carried as a Do53 target, which dohgate asks over UDP first and over TCP when an answer is truncated"
                        ));
                    }
                    Ok(Some(Target::do53(a)))
                }
                Err(why) => {
                    b.leave_out(at, u, why);
                    Ok(None)
                }
            }
        }
        "https" => {
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], Some(rest[i..].to_string())),
                None => (rest, None),
            };
            match address(hostport, 443) {
                Ok(a) => Ok(Some(Target::doh(a, path))),
                Err(why) => {
                    b.leave_out(at, u, why);
                    Ok(None)
                }
            }
        }
        "tls" => {
            b.leave_out(at, u, "DNS over TLS (DoT) is not supported by dohgate yet");
            Ok(None)
        }
        "quic" => {
            b.leave_out(at, u, "DNS over QUIC is not supported by dohgate");
            Ok(None)
        }
        "h3" => {
            b.leave_out(
                at,
                u,
                "DoH over HTTP/3 is not supported by dohgate (https:// over HTTP/2 is)",
            );
            Ok(None)
        }
        "sdns" => {
            b.leave_out(
                at,
                u,
                "DNS stamps are not read: write the upstream as IP[:PORT] or https://IP/PATH",
            );
            Ok(None)
        }
        _ => Err(src.error(
            Some(n),
            format!("{u:?}: unknown upstream scheme {scheme:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ImportKind, import_sources};
    use super::*;
    use dohgate_core::{Protocol, RuleKind};

    const FIXTURE: &str = include_str!("../../../../tests/import/dnsproxy/upstreams.txt");

    #[test]
    fn the_fixture_routes_as_dnsproxy_would() {
        let out = import_sources(
            ImportKind::Dnsproxy,
            &[Source::from_text("upstreams.txt", FIXTURE)],
        )
        .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        let t: Vec<String> = c.resolver.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            t,
            [
                "192.0.2.53:53",
                "https://192.0.2.80:443/dns-query",
                "192.0.2.54:5353"
            ]
        );
        assert_eq!(c.resolver.targets[1].protocol, Protocol::DoH);
        let rules = c.rule_set().expect("rules");
        let corp = rules.match_name("a.corp.example").expect("corp");
        let addrs: Vec<String> = corp.targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["198.51.100.53:53", "198.51.100.54:5353"]);
        assert_eq!(
            rules.match_name("www.corp.example").map(|r| r.kind),
            Some(RuleKind::System)
        );
        assert_eq!(
            rules
                .match_name("lab.example")
                .map(|r| r.targets[0].addr.port()),
            Some(5353)
        );
        assert!(rules.match_name("x.wild.example").is_none());

        let left = out.left_out.join("\n");
        for expected in [
            "tls://dns.example: DNS over TLS (DoT) is not supported",
            "quic://203.0.113.10",
            "sdns://",
            "[/*.wild.example/]203.0.113.9",
            "dns.host.example names a host",
            "[//]",
        ] {
            assert!(left.contains(expected), "{expected}\n{left}");
        }
    }

    #[test]
    fn what_is_not_an_upstream_file_is_refused() {
        for text in [
            "server=/corp.example/192.0.2.1\n",
            "forward-zone:\n",
            "{\"ResolverRules\": []}\n",
            "[/corp.example/192.0.2.1\n",
            "ftp://192.0.2.1\n",
        ] {
            let e = import_sources(ImportKind::Dnsproxy, &[Source::from_text("u.txt", text)])
                .expect_err("not an upstream file");
            assert!(e.to_string().starts_with("u.txt:1: "), "{e}");
        }
    }
}
