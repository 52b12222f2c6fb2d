//! CoreDNS Corefiles: the `forward` and `cache` plugins of each server block.
//!
//! - `forward FROM TO...` in the block for zone `Z`: the routed domain is `Z` (`FROM` = `.`)
//!   or `FROM` (below `Z`). The root domain becomes the default resolver (`forward .
//!   /etc/resolv.conf` is what dohgate does without `[resolver] targets`); any other domain a
//!   forward rule. `except` names below a forward rule become system rules; `except` under the
//!   default resolver is left out (CoreDNS hands those names to its next plugin).
//! - `tls://` upstreams (DNS over TLS) and their `tls_servername` are left out: dohgate does
//!   not speak DoT yet.
//! - `cache`: a Corefile without it caches nothing (`[cache] enabled = false`); with it, the
//!   first `cache` sets the TTL cap (CoreDNS's default 3600 s), `prefetch` and `serve_stale`,
//!   and the forward rules of server blocks without `cache` get `cache = false`.
//! - `acl` and `bind` are left out with what to write: a client allow-list belongs to an
//!   `[[inbound]]` endpoint, and the Corefile's listen addresses are not carried.

use std::collections::HashSet;
use std::fmt::Write;

use super::{Builder, ImportError, Source, Target, address, domain, is_within};

/// One word of a Corefile, with its line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    text: String,
    line: usize,
    /// `{` or `}` standing alone (not inside a quoted word or a `{$ENV}` placeholder).
    brace: Option<char>,
}

/// A directive (`forward . 192.0.2.1`) and its own block of sub-directives, if any.
#[derive(Clone, Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    line: usize,
    block: Vec<Directive>,
}

#[derive(Clone, Debug)]
struct ServerBlock {
    keys: Vec<String>,
    line: usize,
    directives: Vec<Directive>,
}

fn tokenize(src: &Source) -> Result<Vec<Token>, ImportError> {
    let mut tokens = Vec::new();
    for (i, line) in src.text.lines().enumerate() {
        let n = i + 1;
        let mut chars = line.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&c) = chars.peek() else {
                break;
            };
            if c == '#' {
                break;
            }
            let mut word = String::new();
            if c == '"' {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => word.extend(chars.next()),
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => word.push(c),
                    }
                }
                if !closed {
                    return Err(src.error(Some(n), "a quoted word is not closed"));
                }
                tokens.push(Token {
                    text: word,
                    line: n,
                    brace: None,
                });
                continue;
            }
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
            let brace = match word.as_str() {
                "{" => Some('{'),
                "}" => Some('}'),
                _ => None,
            };
            tokens.push(Token {
                text: word,
                line: n,
                brace,
            });
        }
    }
    Ok(tokens)
}

fn parse(src: &Source) -> Result<Vec<ServerBlock>, ImportError> {
    let tokens = tokenize(src)?;
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].line;
        let mut keys = Vec::new();
        loop {
            let Some(t) = tokens.get(i) else {
                return Err(src.error(
                    Some(line),
                    format!(
                        "server block {:?} has no {{ ... }} (is this a Corefile?)",
                        keys.join(" ")
                    ),
                ));
            };
            i += 1;
            match t.brace {
                Some('{') => break,
                Some(_) => {
                    return Err(
                        src.error(Some(t.line), "a } closes no block (is this a Corefile?)")
                    );
                }
                None => {
                    for k in t.text.split(',').filter(|k| !k.is_empty()) {
                        keys.push(k.to_string());
                    }
                }
            }
        }
        if keys.is_empty() {
            return Err(src.error(
                Some(line),
                "a block opens without a server address (is this a Corefile?)",
            ));
        }
        let directives = parse_block(src, &tokens, &mut i, line)?;
        blocks.push(ServerBlock {
            keys,
            line,
            directives,
        });
    }
    Ok(blocks)
}

/// The directives up to the `}` that closes the block opened at `opened`.
fn parse_block(
    src: &Source,
    tokens: &[Token],
    i: &mut usize,
    opened: usize,
) -> Result<Vec<Directive>, ImportError> {
    let mut directives = Vec::new();
    loop {
        let Some(t) = tokens.get(*i) else {
            return Err(src.error(Some(opened), "this block is not closed with }"));
        };
        match t.brace {
            Some('}') => {
                *i += 1;
                return Ok(directives);
            }
            Some(_) => return Err(src.error(Some(t.line), "a { opens a block without a directive")),
            None => {}
        }
        let line = t.line;
        let name = t.text.clone();
        *i += 1;
        let mut args = Vec::new();
        while let Some(t) = tokens
            .get(*i)
            .filter(|t| t.line == line && t.brace.is_none())
        {
            args.push(t.text.clone());
            *i += 1;
        }
        let mut block = Vec::new();
        if tokens
            .get(*i)
            .is_some_and(|t| t.line == line && t.brace == Some('{'))
        {
            *i += 1;
            block = parse_block(src, tokens, i, line)?;
        }
        directives.push(Directive {
            name,
            args,
            line,
            block,
        });
    }
}

/// A server block key: `[SCHEME://]ZONE[:PORT]`, the zone possibly an IPv4 CIDR.
struct Key {
    scheme: String,
    zone: Result<String, String>,
    port: Option<u16>,
}

fn parse_key(key: &str) -> Key {
    let (scheme, rest) = match key.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("dns".to_string(), key),
    };
    let (zone, port) = match rest.rsplit_once(':') {
        Some((z, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (z, p.parse::<u16>().ok())
        }
        _ => (rest, None),
    };
    let zone = if zone.is_empty() {
        Ok(".".to_string())
    } else if zone.contains('/') {
        reverse_zone(zone)
    } else {
        domain(zone)
    };
    Key { scheme, zone, port }
}

/// `10.0.0.0/8` -> `10.in-addr.arpa` (octet-aligned IPv4 prefixes only).
fn reverse_zone(cidr: &str) -> Result<String, String> {
    let bad = || format!("{cidr:?} is neither a zone nor an IPv4 network");
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: usize = len.parse().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
    if !len.is_multiple_of(8) {
        return Err(format!(
            "{cidr}: only networks on octet boundaries (/8, /16, /24) map to one reverse zone"
        ));
    }
    let mut labels: Vec<String> = ip.octets()[..len / 8]
        .iter()
        .rev()
        .map(|o| o.to_string())
        .collect();
    labels.push("in-addr.arpa".to_string());
    Ok(labels.join("."))
}

/// A Go duration such as `1h`, `30m`, `90s`, `1h30m`, `500ms`, in milliseconds.
fn go_duration_ms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The settings of one `cache` directive, as far as dohgate has them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CacheSettings {
    max_ttl: u32,
    min_ttl: Option<u32>,
    prefetch: bool,
    serve_stale_ms: Option<u64>,
}

pub fn import(src: &Source, b: &mut Builder) -> Result<(), ImportError> {
    let blocks = parse(src)?;
    let outbound = b.shared_outbound(&src.name);
    let any_cache = blocks
        .iter()
        .any(|blk| blk.directives.iter().any(|d| d.name == "cache"));
    if !any_cache {
        b.cache.enabled = Some(false);
        b.cache.origins.push(format!(
            "{} (no server block has the cache plugin)",
            src.name
        ));
    }
    let mut first_cache: Option<(String, CacheSettings)> = None;
    let mut default_at: Option<String> = None;
    let mut routed: HashSet<String> = HashSet::new();

    for blk in &blocks {
        let at = src.at(blk.line);
        if blk.keys[0].starts_with('(') {
            b.leave_out(
                &at,
                &format!("snippet {}", blk.keys[0]),
                "snippets are not expanded: copy its directives into the server blocks that import it",
            );
            continue;
        }
        let mut zones = Vec::new();
        for k in &blk.keys {
            let key = parse_key(k);
            match key.zone {
                Ok(z) => zones.push(z),
                Err(why) => b.leave_out(&at, &format!("server block {k}"), why),
            }
            if key.scheme != "dns" || key.port.is_some_and(|p| p != 53) {
                b.leave_out(
                    &at,
                    &format!("server block {k}: its listener"),
                    "dohgate listens on its own addresses: add [[inbound]] listen = [...] (listen_doh for DoH)",
                );
            }
        }
        let has_cache = blk.directives.iter().any(|d| d.name == "cache");
        for d in &blk.directives {
            let dat = src.at(d.line);
            let entry = directive_text(d);
            match d.name.as_str() {
                "forward" => {
                    for zone in &zones {
                        forward(
                            b,
                            &dat,
                            &entry,
                            zone,
                            d,
                            &outbound,
                            (any_cache && !has_cache).then_some(false),
                            &mut default_at,
                            &mut routed,
                        );
                    }
                }
                "cache" => cache(b, &dat, &entry, d, &mut first_cache),
                "acl" => acl(b, &dat, &entry, d),
                "bind" => {
                    let port = blk
                        .keys
                        .first()
                        .and_then(|k| parse_key(k).port)
                        .unwrap_or(53);
                    let listen: Vec<String> = d
                        .args
                        .iter()
                        .map(|a| match a.parse::<std::net::IpAddr>() {
                            Ok(std::net::IpAddr::V6(ip)) => format!("\"[{ip}]:{port}\""),
                            _ => format!("\"{a}:{port}\""),
                        })
                        .collect();
                    b.leave_out(
                        &dat,
                        &entry,
                        format!(
                            "dohgate listens on its own addresses: add [[inbound]] listen = [{}]",
                            listen.join(", ")
                        ),
                    );
                }
                // dohgate answers localhost and the other locally served zones itself.
                "local" => {}
                other => b.leave_out(&dat, &entry, plugin_reason(other)),
            }
        }
        if any_cache
            && !has_cache
            && zones.iter().any(|z| z == ".")
            && blk.directives.iter().any(|d| d.name == "forward")
        {
            b.leave_out(
                &at,
                &format!("server block {}: no cache plugin", blk.keys.join(" ")),
                "the default resolver's answers are cached whenever [cache] is on; dohgate turns caching off per rule only",
            );
        }
    }
    if let Some((at, c)) = first_cache {
        b.cache.max_ttl = Some(c.max_ttl);
        b.cache.min_ttl = c.min_ttl;
        if c.prefetch {
            b.cache.prefetch = Some(true);
        }
        b.cache.serve_stale_ms = c.serve_stale_ms;
        b.cache.origins.push(at);
    }
    Ok(())
}

fn directive_text(d: &Directive) -> String {
    let mut s = d.name.clone();
    for a in &d.args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn forward(
    b: &mut Builder,
    at: &str,
    entry: &str,
    zone: &str,
    d: &Directive,
    outbound: &str,
    cache: Option<bool>,
    default_at: &mut Option<String>,
    routed: &mut HashSet<String>,
) {
    let Some((from, to)) = d.args.split_first() else {
        b.leave_out(at, entry, "forward needs FROM and TO");
        return;
    };
    let routed_domain = match domain(from) {
        Ok(f) if f == "." => zone.to_string(),
        Ok(f) if is_within(&f, zone) => f,
        Ok(f) => {
            b.leave_out(
                at,
                entry,
                format!("{f} is outside the server block's zone {zone}: it never matches"),
            );
            return;
        }
        Err(why) => {
            b.leave_out(at, entry, why);
            return;
        }
    };
    let entry = if zone == "." {
        entry.to_string()
    } else {
        format!("{entry} (server block {zone})")
    };
    if !routed.insert(routed_domain.clone()) {
        b.leave_out(
            at,
            &entry,
            format!("another server block routes {routed_domain} already: dohgate routes one domain one way"),
        );
        return;
    }
    let is_default = routed_domain == ".";

    let mut targets = Vec::new();
    let mut resolv_conf = false;
    let mut has_tls = false;
    for u in to {
        let item = format!("{entry}: upstream {u}");
        if u.starts_with('/') {
            if is_default && u == "/etc/resolv.conf" {
                resolv_conf = true;
            } else {
                b.leave_out(
                    at,
                    &item,
                    "dohgate reads nameservers from /etc/resolv.conf only, for the default resolver when [resolver] has no targets",
                );
            }
            continue;
        }
        let (scheme, rest) = match u.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("dns".to_string(), u.as_str()),
        };
        match scheme.as_str() {
            "dns" => match address(rest, 53) {
                Ok(a) => targets.push(Target::do53(a)),
                Err(why) => b.leave_out(at, &item, why),
            },
            "tls" => {
                has_tls = true;
                b.leave_out(
                    at,
                    &item,
                    "DNS over TLS (DoT) is not supported by dohgate yet",
                );
            }
            other => b.leave_out(
                at,
                &item,
                format!("the {other}:// upstream scheme is not one dohgate speaks"),
            ),
        }
    }

    let mut excepts = Vec::new();
    for o in &d.block {
        let oat = format!("{}:{}", at.rsplit_once(':').map_or(at, |(f, _)| f), o.line);
        let oentry = format!("{entry}: {}", directive_text(o));
        match o.name.as_str() {
            "except" => excepts.extend(o.args.iter().map(|a| (oat.clone(), a.clone()))),
            "policy" if o.args.first().is_some_and(|p| p == "random") => {}
            "policy" => b.leave_out(&oat, &oentry, "dohgate asks a random target first, then the next"),
            "prefer_udp" => {}
            "force_tcp" => b.leave_out(
                &oat,
                &oentry,
                "dohgate asks Do53 targets over UDP first (TCP when an answer is truncated)",
            ),
            "tls" | "tls_servername" => b.leave_out(
                &oat,
                &oentry,
                if has_tls {
                    "applies to tls:// upstreams (DNS over TLS), which dohgate does not support yet"
                } else {
                    "applies to tls:// upstreams only"
                },
            ),
            _ => b.leave_out(
                &oat,
                &oentry,
                "no dohgate counterpart (dohgate tries targets that failed three times in a row after the others, for 5 s)",
            ),
        }
    }

    if is_default {
        if let Some(first) = default_at.as_ref() {
            b.leave_out(
                at,
                &entry,
                format!("{first} gives the default resolver already"),
            );
            return;
        }
        *default_at = Some(at.to_string());
        if resolv_conf {
            b.default_from_resolv_conf(&format!("{at}: forward . /etc/resolv.conf"));
        }
        if !targets.is_empty() {
            b.add_default_targets(at, &entry, targets);
        }
        for (eat, e) in excepts {
            b.leave_out(
                &eat,
                &format!("{entry}: except {e}"),
                "CoreDNS hands these names to its next plugin; dohgate resolves them with the default resolver",
            );
        }
        return;
    }
    if resolv_conf {
        b.leave_out(
            at,
            &format!("{entry}: upstream /etc/resolv.conf"),
            "dohgate reads /etc/resolv.conf only for the default resolver",
        );
    }
    if !b.add_forward(
        at,
        &entry,
        &routed_domain,
        &routed_domain,
        outbound,
        targets,
        cache,
    ) {
        for (eat, e) in excepts {
            b.leave_out(
                &eat,
                &format!("{entry}: except {e}"),
                "its forward is left out",
            );
        }
        return;
    }
    for (eat, e) in excepts {
        let ex_entry = format!("{entry}: except {e}");
        match domain(&e) {
            Ok(x) if x != routed_domain && is_within(&x, &routed_domain) => {
                b.add_system(&eat, &ex_entry, &x, &x);
            }
            Ok(x) => b.leave_out(
                &eat,
                &ex_entry,
                format!("{x} is not below {routed_domain}: nothing to except"),
            ),
            Err(why) => b.leave_out(&eat, &ex_entry, why),
        }
    }
}

fn cache(
    b: &mut Builder,
    at: &str,
    entry: &str,
    d: &Directive,
    first: &mut Option<(String, CacheSettings)>,
) {
    let mut settings = CacheSettings {
        max_ttl: 3600,
        min_ttl: None,
        prefetch: false,
        serve_stale_ms: None,
    };
    let file = at.rsplit_once(':').map_or(at, |(f, _)| f);
    let mut args = d.args.iter();
    let mut zones = Vec::new();
    if let Some(a) = args.next() {
        match a.parse::<u32>() {
            Ok(ttl) if (1..=604_800).contains(&ttl) => settings.max_ttl = ttl,
            Ok(_) => b.leave_out(at, entry, "dohgate's max_ttl is 1 to 604800 seconds"),
            Err(_) => zones.push(a.clone()),
        }
    }
    zones.extend(args.cloned());
    if !zones.is_empty() {
        b.leave_out(
            at,
            &format!("{entry}: zones {}", zones.join(" ")),
            "dohgate's cache covers every name; turn it off per rule with cache = false",
        );
    }
    for o in &d.block {
        let oat = format!("{file}:{}", o.line);
        let oentry = format!("{entry}: {}", directive_text(o));
        match o.name.as_str() {
            "success" => {
                let ttl = o.args.get(1).and_then(|t| t.parse::<u32>().ok());
                let min = o.args.get(2).and_then(|t| t.parse::<u32>().ok());
                if let Some(t) = ttl.filter(|t| (1..=604_800).contains(t)) {
                    settings.max_ttl = t;
                }
                if let Some(m) = min.filter(|m| *m <= 86_400) {
                    settings.min_ttl = Some(m);
                }
                b.leave_out(
                    &oat,
                    &oentry,
                    "its capacity: dohgate's cache is sized in bytes ([cache] max_bytes); the TTLs are carried",
                );
            }
            "denial" => b.leave_out(
                &oat,
                &oentry,
                "dohgate keeps negative answers for their SOA's TTL (RFC 2308), within min_ttl and max_ttl",
            ),
            "prefetch" => {
                settings.prefetch = true;
                if !o.args.is_empty() {
                    b.leave_out(
                        &oat,
                        &oentry,
                        "its thresholds: dohgate prefetches entries asked 3 times once under 10 % of their TTL",
                    );
                }
            }
            "serve_stale" => {
                let ms = match o.args.first() {
                    None => Some(3_600_000),
                    Some(d) => go_duration_ms(d),
                };
                match ms.filter(|ms| *ms <= 30 * 86_400_000) {
                    Some(ms) => settings.serve_stale_ms = Some(ms),
                    None => b.leave_out(&oat, &oentry, "not a duration of at most 30 days"),
                }
                if o.args.len() > 1 {
                    b.leave_out(
                        &oat,
                        &format!("{oentry}: refresh mode"),
                        "dohgate serves stale answers only when every target fails",
                    );
                }
            }
            _ => b.leave_out(&oat, &oentry, "no dohgate counterpart"),
        }
    }
    match first {
        None => *first = Some((at.to_string(), settings)),
        Some((first_at, s)) if *s != settings => b.leave_out(
            at,
            entry,
            format!("dohgate has one cache: the settings of {first_at} are used"),
        ),
        Some(_) => {}
    }
}

fn acl(b: &mut Builder, at: &str, entry: &str, d: &Directive) {
    let mut allow = Vec::new();
    let mut other = false;
    for o in &d.block {
        let nets: Vec<&String> = o.args.iter().skip_while(|a| *a != "net").skip(1).collect();
        match o.name.as_str() {
            "allow" if nets.is_empty() => allow.push("\"0.0.0.0/0\", \"::/0\"".to_string()),
            "allow" => allow.extend(nets.iter().map(|n| format!("\"{n}\""))),
            _ => other = true,
        }
    }
    let mut why = "a client allow-list is allow = [...] of an [[inbound]] endpoint, whose listen addresses the Corefile does not give: add [[inbound]] listen = [...]".to_string();
    if !allow.is_empty() {
        let _ = write!(why, ", allow = [{}]", allow.join(", "));
    }
    if other {
        why.push_str("; block, filter and drop have no counterpart (dohgate refuses every client an allow-list leaves out)");
    }
    b.leave_out(at, entry, why);
}

fn plugin_reason(name: &str) -> &'static str {
    match name {
        "log" => "log every query with [query_log] path",
        "errors" => "dohgate logs errors on standard error (RUST_LOG)",
        "health" | "ready" | "prometheus" => {
            "dohgate's admin listener serves /healthz, /readyz and /metrics: set [admin] listen"
        }
        "hosts" | "file" | "auto" | "secondary" | "template" | "whoami" | "kubernetes"
        | "k8s_external" | "etcd" | "route53" | "clouddns" | "azure" => {
            "dohgate answers names itself only from [[zone]] files: add one"
        }
        "chaos" => "dohgate answers CHAOS id.server and hostname.bind from [server] identity",
        "tls" => "the DoH certificate is tls_cert and tls_key of an [[inbound]] endpoint",
        "import" => "snippets are not expanded: copy the snippet's directives here",
        _ => "the CoreDNS plugin has no dohgate counterpart",
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ImportKind, import_sources};
    use super::*;
    use dohgate_core::RuleKind;

    const FIXTURE: &str = include_str!("../../../../tests/import/coredns/Corefile");

    #[test]
    fn the_fixture_routes_as_coredns_would() {
        let out = import_sources(
            ImportKind::Coredns,
            &[Source::from_text("Corefile", FIXTURE)],
        )
        .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        let t: Vec<String> = c.resolver.targets.iter().map(|t| t.to_string()).collect();
        assert_eq!(t, ["192.0.2.53:53", "192.0.2.54:53"]);
        let rules = c.rule_set().expect("rules");
        let corp = rules.match_name("a.corp.example").expect("corp");
        let addrs: Vec<String> = corp.targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["198.51.100.53:53", "[2001:db8::53]:5353"]);
        assert!(corp.cache);
        assert_eq!(
            rules.match_name("www.corp.example").map(|r| r.kind),
            Some(RuleKind::System)
        );
        let lab = rules.match_name("x.lab.example").expect("lab");
        assert!(!lab.cache, "its server block has no cache");
        assert!(rules.match_name("secure.example").is_none(), "DoT only");
        assert!(rules.match_name("1.10.in-addr.arpa").is_some(), "CIDR key");
        assert_eq!(c.cache.max_ttl, 600);
        assert!(c.cache.prefetch);
        assert_eq!(c.cache.serve_stale.as_secs(), 3600);

        let left = out.left_out.join("\n");
        for expected in [
            "upstream tls://203.0.113.153: DNS over TLS (DoT) is not supported",
            "tls_servername dns.secure.example: applies to tls:// upstreams",
            "acl: a client allow-list is allow = [...]",
            "allow = [\"192.168.0.0/16\", \"10.0.0.0/8\"]",
            "bind 192.0.2.10: dohgate listens on its own addresses: add [[inbound]] listen = [\"192.0.2.10:53\"]",
            "max_fails 3: no dohgate counterpart",
            "log: log every query with [query_log] path",
            "server block example.org:5353: its listener",
        ] {
            assert!(left.contains(expected), "{expected}\n{left}");
        }
        assert!(!left.contains("policy random"), "{left}");
    }

    #[test]
    fn no_cache_plugin_means_no_cache() {
        let out = import_sources(
            ImportKind::Coredns,
            &[Source::from_text(
                "C",
                ". {\n  forward . /etc/resolv.conf\n}\n",
            )],
        )
        .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        assert!(!c.cache.enabled);
        assert!(c.resolver.from_system);
        assert!(out.left_out.is_empty(), "{:?}", out.left_out);
        assert!(!out.notes.iter().any(|n| n.contains("no default resolver")));
    }

    #[test]
    fn what_is_not_a_corefile_is_refused() {
        for (text, line) in [
            ("server=/corp.example/192.0.2.1\n", 1),
            ("{\"ResolverRules\": []}\n", 1),
            (". {\n  forward . 192.0.2.1\n", 1),
            ("forward-zone:\n  name: \".\"\n", 1),
        ] {
            let e = import_sources(ImportKind::Coredns, &[Source::from_text("Corefile", text)])
                .expect_err("not a Corefile");
            assert!(
                e.to_string().starts_with(&format!("Corefile:{line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn durations_and_reverse_zones() {
        assert_eq!(go_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(go_duration_ms("500ms"), Some(500));
        assert_eq!(go_duration_ms("1d"), None);
        assert_eq!(
            reverse_zone("10.1.0.0/16").as_deref(),
            Ok("1.10.in-addr.arpa")
        );
        assert!(reverse_zone("10.0.0.0/12").is_err());
    }
}
