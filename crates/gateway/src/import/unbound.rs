//! unbound.conf: `forward-zone:` clauses become forward rules (`name: "."` the default
//! resolver); the `server:` cache options with a dohgate counterpart are carried; everything
//! else is reported.
//!
//! - `forward-addr: IP[@PORT][#TLSNAME]`: a Do53 target. With `forward-tls-upstream: yes` the
//!   zone's targets speak DNS over TLS, which dohgate does not yet: they are left out, and
//!   the zone with them.
//! - `forward-host:` names a host: left out (dohgate never resolves target names).
//! - `forward-no-cache: yes`: the rule gets `cache = false`.
//! - `forward-first: yes`: left out (unbound then falls back to recursion; dohgate answers
//!   SERVFAIL when every target fails).

use super::{Builder, ImportError, Source, Target, address};

/// A `forward-zone:` clause as read.
#[derive(Default)]
struct Zone {
    at: String,
    name: Option<String>,
    addrs: Vec<(String, String)>,
    hosts: Vec<(String, String)>,
    tls: Option<String>,
    no_cache: bool,
    extras: Vec<(String, String, &'static str)>,
}

pub fn import(src: &Source, b: &mut Builder) -> Result<(), ImportError> {
    let outbound = b.shared_outbound(&src.name);
    let mut clause = String::new();
    let mut zones: Vec<Zone> = Vec::new();
    let mut other_clause_reported = false;

    for (i, raw) in src.text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(src.error(
                Some(n),
                format!("{line:?} is not an unbound.conf line (clause: or key: value)"),
            ));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(src.error(
                Some(n),
                format!("{key:?} is not an unbound.conf option name"),
            ));
        }
        let value = unquote(value.trim());
        let at = src.at(n);
        if value.is_empty() && key != "name" {
            clause = key.to_string();
            other_clause_reported = false;
            if clause == "forward-zone" {
                zones.push(Zone {
                    at: at.clone(),
                    ..Zone::default()
                });
            }
            continue;
        }
        match clause.as_str() {
            "forward-zone" => {
                let Some(z) = zones.last_mut() else {
                    continue;
                };
                let entry = format!("{key}: {value}");
                match key {
                    "name" => z.name = Some(value.to_string()),
                    "forward-addr" => z.addrs.push((at, value.to_string())),
                    "forward-host" => z.hosts.push((at, value.to_string())),
                    "forward-tls-upstream" | "forward-ssl-upstream" if yes(value) => {
                        z.tls = Some(at)
                    }
                    "forward-no-cache" if yes(value) => z.no_cache = true,
                    "forward-first" if yes(value) => z.extras.push((
                        at,
                        entry,
                        "unbound falls back to its own recursion when the targets fail; dohgate answers SERVFAIL",
                    )),
                    "forward-tcp-upstream" if yes(value) => z.extras.push((
                        at,
                        entry,
                        "dohgate asks Do53 targets over UDP first (TCP when an answer is truncated)",
                    )),
                    "forward-tls-upstream" | "forward-ssl-upstream" | "forward-no-cache"
                    | "forward-first" | "forward-tcp-upstream" => {}
                    _ => z.extras.push((at, entry, "no dohgate counterpart")),
                }
            }
            "server" => server_option(b, &at, key, value),
            "" => {
                if key == "include" || key == "include-toplevel" {
                    b.leave_out(
                        &at,
                        line,
                        "not followed: pass that file to dohgate import as well",
                    );
                } else {
                    return Err(src.error(
                        Some(n),
                        format!("{key:?} outside a clause (server:, forward-zone:, ...)"),
                    ));
                }
            }
            other => {
                if !other_clause_reported {
                    other_clause_reported = true;
                    let reason = match other {
                        "stub-zone" => {
                            "a stub zone queries authoritative servers without recursion; dohgate forwards to resolvers (a forward-zone imports)"
                        }
                        "auth-zone" => "dohgate answers zones itself from [[zone]] files: add one",
                        "remote-control" => {
                            "dohgate is controlled by signals and its admin listener"
                        }
                        _ => "no dohgate counterpart",
                    };
                    b.leave_out(&at, &format!("{other}: clause ({key}: {value})"), reason);
                }
            }
        }
    }

    for z in zones {
        import_zone(b, &outbound, z);
    }
    Ok(())
}

fn import_zone(b: &mut Builder, outbound: &str, z: Zone) {
    let Some(name) = z.name.clone() else {
        b.leave_out(&z.at, "forward-zone:", "it has no name:");
        return;
    };
    let entry = format!("forward-zone: {name}");
    for (at, entry, why) in &z.extras {
        b.leave_out(at, entry, why);
    }
    for (at, host) in &z.hosts {
        b.leave_out(
            at,
            &format!("forward-host: {host}"),
            "names a host: dohgate never resolves target names (targets are addresses)",
        );
    }
    let mut targets = Vec::new();
    for (at, a) in &z.addrs {
        let item = format!("forward-addr: {a}");
        if let Some(tls_at) = &z.tls {
            b.leave_out(
                at,
                &item,
                format!("DNS over TLS (forward-tls-upstream at {tls_at}) is not supported by dohgate yet"),
            );
            continue;
        }
        let (addr, _tls_name) = a.split_once('#').unwrap_or((a, ""));
        let (ip, port) = match addr.split_once('@') {
            Some((ip, port)) => match port.parse::<u16>() {
                Ok(p) => (ip, p),
                Err(_) => {
                    b.leave_out(at, &item, format!("{port:?} is not a port"));
                    continue;
                }
            },
            None => (addr, 53),
        };
        match address(ip, port) {
            Ok(sa) if ip.parse::<std::net::IpAddr>().is_ok() => targets.push(Target::do53(sa)),
            Ok(_) => b.leave_out(at, &item, "unbound writes the port after @"),
            Err(why) => b.leave_out(at, &item, why),
        }
    }
    let is_root = super::domain(&name).is_ok_and(|d| d == ".");
    if is_root {
        if z.no_cache {
            b.leave_out(
                &z.at,
                "forward-no-cache: yes (zone \".\")",
                "dohgate turns caching off per rule, or entirely with [cache] enabled = false",
            );
        }
        if targets.is_empty() {
            b.leave_out(&z.at, &entry, "none of its targets can be carried");
        } else {
            b.add_default_targets(&z.at, &entry, targets);
        }
        return;
    }
    let cache = z.no_cache.then_some(false);
    b.add_forward(&z.at, &entry, &name, &name, outbound, targets, cache);
}

/// The `server:` options with a dohgate counterpart; the others are reported.
fn server_option(b: &mut Builder, at: &str, key: &str, value: &str) {
    let entry = format!("server: {key}: {value}");
    let number = value.parse::<u64>().ok();
    match (key, number) {
        ("cache-max-ttl", Some(v)) if (1..=604_800).contains(&v) => {
            b.cache.max_ttl = Some(v as u32);
            b.cache.origins.push(at.to_string());
        }
        ("cache-min-ttl", Some(v)) if v <= 86_400 => {
            b.cache.min_ttl = Some(v as u32);
            b.cache.origins.push(at.to_string());
        }
        ("prefetch", _) => {
            b.cache.prefetch = Some(yes(value));
            b.cache.origins.push(at.to_string());
        }
        ("serve-expired", _) if !yes(value) => {
            b.cache.serve_stale_ms = Some(0);
            b.cache.origins.push(at.to_string());
        }
        ("serve-expired-ttl", Some(v)) if v <= 30 * 86_400 => {
            b.cache.serve_stale_ms = Some(v * 1000);
            b.cache.origins.push(at.to_string());
        }
        ("interface" | "port" | "ip-address" | "interface-automatic", _) => b.leave_out(
            at,
            &entry,
            "dohgate listens on its own addresses: add [[inbound]] listen = [...]",
        ),
        ("access-control", _) => b.leave_out(
            at,
            &entry,
            "a client allow-list is allow = [...] of an [[inbound]] endpoint",
        ),
        ("local-zone" | "local-data" | "local-data-ptr", _) => b.leave_out(
            at,
            &entry,
            "dohgate answers names itself only from [[zone]] files: add one",
        ),
        ("serve-expired", _) => {}
        _ => b.leave_out(at, &entry, "no dohgate counterpart"),
    }
}

fn yes(v: &str) -> bool {
    v.eq_ignore_ascii_case("yes")
}

/// The line without its comment: `#` at its start or after white space (in
/// `forward-addr: 192.0.2.1#dns.example` it is part of the value).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut quoted = false;
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'#' if !quoted && (i == 0 || bytes[i - 1].is_ascii_whitespace()) => {
                return &line[..i];
            }
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::super::{ImportKind, import_sources};
    use super::*;

    const FIXTURE: &str = include_str!("../../../../tests/import/unbound/unbound.conf");

    #[test]
    fn the_fixture_routes_as_unbound_would() {
        let out = import_sources(
            ImportKind::Unbound,
            &[Source::from_text("unbound.conf", FIXTURE)],
        )
        .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        let t: Vec<String> = c.resolver.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(t, ["192.0.2.53:53", "192.0.2.54:5353"]);
        let rules = c.rule_set().expect("rules");
        let corp = rules.match_name("a.corp.example").expect("corp");
        let addrs: Vec<String> = corp.targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["198.51.100.53:53", "[2001:db8::53]:53"]);
        assert!(!corp.cache, "forward-no-cache");
        assert!(rules.match_name("secure.example").is_none());
        assert!(rules.match_name("lab.example").is_none());
        assert_eq!((c.cache.max_ttl, c.cache.prefetch), (3600, true));

        let left = out.left_out.join("\n");
        for expected in [
            "forward-addr: 203.0.113.53@853#dns.secure.example: DNS over TLS",
            "forward-zone: secure.example: none of its targets can be carried",
            "forward-host: ns.lab.example: names a host",
            "forward-first: yes: unbound falls back",
            "server: interface: 127.0.0.1: dohgate listens on its own addresses",
            "server: access-control: 10.0.0.0/8 allow",
            "stub-zone: clause",
            "server: verbosity: 1: no dohgate counterpart",
        ] {
            assert!(left.contains(expected), "{expected}\n{left}");
        }
    }

    #[test]
    fn what_is_not_unbound_conf_is_refused() {
        for text in [
            "server=/corp.example/192.0.2.1\n",
            "[/corp.example/]192.0.2.1\n",
            ". {\n",
            "name: \"corp.example\"\n",
        ] {
            let e = import_sources(ImportKind::Unbound, &[Source::from_text("u.conf", text)])
                .expect_err("not unbound.conf");
            assert!(e.to_string().starts_with("u.conf:1: "), "{e}");
        }
    }
}
