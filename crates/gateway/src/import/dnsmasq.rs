//! dnsmasq.conf: `server=` lines become forward rules, system rules and the default resolver;
//! the cache options that have a dohgate counterpart are carried, every other option is
//! reported.
//!
//! - `server=/d1/d2/ADDR[#PORT]`: forward rules (several lines for one domain: one rule with
//!   every address, as dnsmasq uses all of them);
//! - `server=/d/#`: a system rule (dnsmasq: "use the standard servers");
//! - `server=ADDR[#PORT]`: the default resolver;
//! - `local=/d/`, `server=/d/` and `address=/d/...`: left out. dnsmasq answers those names
//!   from /etc/hosts and DHCP only and never forwards them; a system rule would send them
//!   upstream, which is what they exist to prevent.

use std::collections::HashMap;

use super::{Builder, ImportError, Source, Target, address, domain};

/// One domain's `server=` lines, gathered before the rule is made.
struct Route {
    domain: String,
    at: String,
    entry: String,
    targets: Vec<Target>,
    system: bool,
}

pub fn import(src: &Source, b: &mut Builder) -> Result<(), ImportError> {
    let outbound_name = b.shared_outbound(&src.name);
    let mut routes: Vec<Route> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut no_resolv = None;
    let mut defaults = 0;

    for (i, raw) in src.text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (line, None),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(src.error(
                Some(n),
                format!("{line:?} is not a dnsmasq option (option or option=value)"),
            ));
        }
        let at = src.at(n);
        let value = value.unwrap_or("");
        match key {
            "server" => {
                if let Some(rest) = value.strip_prefix('/') {
                    let Some((domains, addr)) = rest.rsplit_once('/') else {
                        return Err(src.error(Some(n), format!("{line:?}: /domain/ is not closed")));
                    };
                    for d in domains.split('/') {
                        domain_route(b, &mut routes, &mut index, &at, line, d, addr);
                    }
                } else if value.is_empty() {
                    b.leave_out(&at, line, "server= gives no address");
                } else {
                    match server_target(b, &at, line, value) {
                        Some(t) => {
                            defaults += 1;
                            b.add_default_targets(&at, line, vec![t]);
                        }
                        None => continue,
                    }
                }
            }
            "local" => b.leave_out(&at, line, LOCAL_ONLY),
            "address" => b.leave_out(
                &at,
                line,
                "dnsmasq answers these names itself; dohgate answers names itself only from [[zone]] files (or blocks them with [firewall])",
            ),
            "rev-server" => b.leave_out(
                &at,
                line,
                "write it as server=/<reverse zone>.in-addr.arpa/ADDR and import again",
            ),
            "no-resolv" => no_resolv = Some(at.clone()),
            "resolv-file" => b.leave_out(
                &at,
                line,
                "dohgate reads /etc/resolv.conf only, when [resolver] has no targets",
            ),
            "strict-order" | "all-servers" => b.leave_out(
                &at,
                line,
                "dohgate asks a random target first and fails over to the next",
            ),
            "cache-size" => match value.parse::<u64>() {
                Ok(0) => {
                    b.cache.enabled = Some(false);
                    b.cache.origins.push(at.clone());
                }
                _ => b.leave_out(&at, line, "dohgate's cache is sized in bytes: [cache] max_bytes"),
            },
            "max-cache-ttl" => match value.parse::<u32>() {
                Ok(v) if (1..=604_800).contains(&v) => {
                    b.cache.max_ttl = Some(v);
                    b.cache.origins.push(at.clone());
                }
                _ => b.leave_out(&at, line, "dohgate's max_ttl is 1 to 604800 seconds"),
            },
            "min-cache-ttl" => match value.parse::<u32>() {
                Ok(v) if v <= 3600 => {
                    b.cache.min_ttl = Some(v);
                    b.cache.origins.push(at.clone());
                }
                _ => b.leave_out(&at, line, "dnsmasq caps min-cache-ttl at 3600 seconds"),
            },
            // dohgate answers the private reverse zones itself (RFC 6303 locally served zones).
            "bogus-priv" => {}
            "domain-needed" => b.leave_out(
                &at,
                line,
                "dohgate forwards names without a dot like any other",
            ),
            "listen-address" | "interface" | "except-interface" | "bind-interfaces"
            | "bind-dynamic" | "port" | "no-dhcp-interface" => b.leave_out(
                &at,
                line,
                "dohgate listens on its own addresses: add [[inbound]] listen = [...]",
            ),
            "conf-file" | "conf-dir" | "servers-file" => b.leave_out(
                &at,
                line,
                "not followed: pass that file to dohgate import as well",
            ),
            k if k.starts_with("dhcp") => b.leave_out(&at, line, "dohgate serves DNS, not DHCP"),
            _ => b.leave_out(&at, line, "no dohgate counterpart"),
        }
    }

    if let Some(at) = no_resolv
        && defaults == 0
    {
        b.leave_out(
            &at,
            "no-resolv",
            "dnsmasq forwards only the domains its server= lines name; dohgate sends every other name to its default resolver",
        );
    }

    for r in routes {
        let hint = r.domain.clone();
        if r.system {
            b.add_system(&r.at, &r.entry, &hint, &r.domain);
        } else {
            b.add_forward(
                &r.at,
                &r.entry,
                &hint,
                &r.domain,
                &outbound_name,
                r.targets,
                None,
            );
        }
    }
    Ok(())
}

const LOCAL_ONLY: &str = "dnsmasq answers these names only from /etc/hosts and DHCP and never forwards them; dohgate has no such source (a system rule would send them upstream): add a [[zone]]";

/// One domain of a `server=/.../ADDR` line.
fn domain_route(
    b: &mut Builder,
    routes: &mut Vec<Route>,
    index: &mut HashMap<String, usize>,
    at: &str,
    line: &str,
    d: &str,
    addr: &str,
) {
    if d.is_empty() {
        b.leave_out(
            at,
            line,
            "// (names without a dot) has no dohgate rule form: a rule covers a domain",
        );
        return;
    }
    let name = match domain(d) {
        Ok(name) => name,
        Err(why) => {
            b.leave_out(at, &format!("{line}: {d}"), why);
            return;
        }
    };
    let entry = format!("server=/{d}/{addr}");
    if addr.is_empty() {
        b.leave_out(at, &entry, LOCAL_ONLY);
        return;
    }
    let system = addr == "#";
    let target = if system {
        None
    } else {
        match server_target(b, at, &entry, addr) {
            Some(t) => Some(t),
            None => return,
        }
    };
    match index.get(&name) {
        Some(&i) => {
            let r = &mut routes[i];
            if r.system != system {
                b.leave_out(
                    at,
                    &entry,
                    format!(
                        "{} sends {name} {} already",
                        r.at,
                        if r.system {
                            "to the standard servers"
                        } else {
                            "to its own servers"
                        }
                    ),
                );
            } else if let Some(t) = target {
                r.targets.push(t);
            }
        }
        None => {
            index.insert(name.clone(), routes.len());
            routes.push(Route {
                domain: name,
                at: at.to_string(),
                entry,
                targets: target.into_iter().collect(),
                system,
            });
        }
    }
}

/// `ADDR[#PORT][@SOURCE]` (dnsmasq writes the port after `#`).
fn server_target(b: &mut Builder, at: &str, entry: &str, value: &str) -> Option<Target> {
    let (addr, source) = match value.split_once('@') {
        Some((a, s)) => (a, Some(s)),
        None => (value, None),
    };
    let (ip, port) = match addr.split_once('#') {
        Some((ip, port)) => match port.parse::<u16>() {
            Ok(p) => (ip, p),
            Err(_) => {
                b.leave_out(at, entry, format!("{port:?} is not a port"));
                return None;
            }
        },
        None => (addr, 53),
    };
    let sa = match address(ip, port) {
        Ok(sa) if ip.parse::<std::net::IpAddr>().is_ok() => sa,
        Ok(_) => {
            b.leave_out(
                at,
                entry,
                format!("{ip:?} is not an IP address (dnsmasq writes the port after #)"),
            );
            return None;
        }
        Err(why) => {
            b.leave_out(at, entry, why);
            return None;
        }
    };
    if let Some(s) = source {
        b.leave_out(
            at,
            &format!("{entry}: @{s}"),
            "dohgate chooses the source address and interface of its queries itself (the target is carried)",
        );
    }
    Some(Target::do53(sa))
}

#[cfg(test)]
mod tests {
    use super::super::{ImportKind, import_sources};
    use super::*;

    const FIXTURE: &str = include_str!("../../../../tests/import/dnsmasq/dnsmasq.conf");

    #[test]
    fn the_fixture_routes_as_dnsmasq_would() {
        let out = import_sources(
            ImportKind::Dnsmasq,
            &[Source::from_text("dnsmasq.conf", FIXTURE)],
        )
        .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        let t: Vec<String> = c.resolver.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(t, ["192.0.2.53:53", "192.0.2.54:5353"]);
        let rules = c.rule_set().expect("rules");
        let corp = rules.match_name("a.corp.example").expect("corp");
        assert_eq!(corp.targets.len(), 2);
        assert_eq!(corp.targets[1].addr.port(), 5353);
        assert_eq!(
            rules.match_name("www.corp.example").map(|r| r.kind),
            Some(dohgate_core::RuleKind::System)
        );
        for lab in ["x.lab.example", "dev.example"] {
            let r = rules.match_name(lab).expect("lab");
            assert_eq!(r.targets[0].addr, "203.0.113.53:53".parse().expect("addr"));
        }
        assert_eq!(c.cache.max_ttl, 3600);

        let left = out.left_out.join("\n");
        for expected in [
            "dnsmasq.conf:12: local=/lan/: dnsmasq answers these names only from /etc/hosts",
            "address=/ads.example/",
            "server=/dns.example/resolver.example: resolver.example names a host",
            "listen-address=127.0.0.1: dohgate listens on its own addresses",
            "@eth0: dohgate chooses the source address",
            "domain-needed",
            "dhcp-range",
        ] {
            assert!(left.contains(expected), "{expected}\n{left}");
        }
        assert!(!left.contains("bogus-priv"), "{left}");
        assert!(
            !out.notes.iter().any(|n| n.contains("no default resolver")),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn what_is_not_dnsmasq_is_refused() {
        for (text, line) in [
            ("server=1.2.3.4\nforward-zone:\n", 2),
            (". {\n  forward . 192.0.2.1\n}\n", 1),
            ("{\"ResolverRules\": []}\n", 1),
            ("server=/corp.example\n", 1),
        ] {
            let e = import_sources(ImportKind::Dnsmasq, &[Source::from_text("x.conf", text)])
                .expect_err("not dnsmasq");
            assert!(
                e.to_string().starts_with(&format!("x.conf:{line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn no_resolv_without_servers_is_reported() {
        let out = import_sources(
            ImportKind::Dnsmasq,
            &[Source::from_text(
                "d.conf",
                "no-resolv\nserver=/corp.example/192.0.2.1\n",
            )],
        )
        .expect("imports");
        assert!(
            out.left_out
                .iter()
                .any(|l| l.starts_with("d.conf:1: no-resolv"))
        );
        assert!(out.notes.iter().any(|n| n.contains("no default resolver")));
    }
}
