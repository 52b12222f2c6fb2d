//! The smaller sections (`[admin]`, `[timeouts]`, `[limits]`, `[runtime]`, `[cache]`,
//! `[query_log]`, `[resolver]`) and the endpoints (`[[inbound]]`, `[[outbound]]`), each
//! validated by a function of its own.
//!
//! Every number has an upper bound as well as a lower one: a value that passes here must
//! never make the server panic, hang or serve nothing (a timeout of `i64::MAX` milliseconds
//! would make a query or shutdown never end; a connection count past what a semaphore holds
//! would panic a listener).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{
    AdminFile, AdminLimits, CacheConfig, CacheFile, Ctx, InboundEndpoint, InboundFile, Limits,
    LimitsFile, MAX_CONNECTIONS, MAX_THREADS, OutboundEndpoint, OutboundFile, QueryLogConfig,
    QueryLogDest, QueryLogFile, RateLimitFile, ResolverConfig, ResolverFile, RuntimeFile,
    ServerFile, Timeouts, TimeoutsFile,
};
use crate::acl::{Refuse, parse_net};
use crate::error::ConfigError;
use crate::protocol::Protocol;
use crate::ratelimit::{LimitAction, RateLimitConfig};
use crate::wire;

/// The longest a query may be worked on, across its attempts: five minutes.
pub const MAX_QUERY_MS: u64 = 300_000;
/// The most targets a rule or the default resolver may have: failover orders this many.
pub const MAX_RULE_TARGETS: usize = 16;

/// The most queries one TCP connection may have in flight.
pub const MAX_TCP_QUERIES_IN_FLIGHT: u64 = 65_535;

/// `[server]`: the identity CHAOS queries may learn.
pub(super) fn server(
    cx: &Ctx<'_>,
    file: Option<ServerFile>,
) -> Result<Option<String>, ConfigError> {
    let Some(identity) = file.and_then(|f| f.identity) else {
        return Ok(None);
    };
    let text = identity.get_ref();
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(cx.err(
            "server.identity",
            identity.span(),
            "must be 1 to 255 printable ASCII characters without spaces",
        ));
    }
    Ok(Some(text.clone()))
}

/// `[admin]`: the listener's address and its bounds.
pub(super) fn admin(
    cx: &Ctx<'_>,
    file: Option<AdminFile>,
) -> Result<(Option<SocketAddr>, AdminLimits), ConfigError> {
    let f = file.unwrap_or_default();
    let listen = match &f.listen {
        Some(s) => Some(cx.addr("admin.listen", s)?),
        None => None,
    };
    let d = AdminLimits::default();
    let limits = AdminLimits {
        max_connections: cx
            .within("admin.max_connections", &f.max_connections, 1, 4096)?
            .map_or(d.max_connections, |n| n as usize),
        idle_timeout: cx.ms(
            "admin.idle_timeout_ms",
            &f.idle_timeout_ms,
            d.idle_timeout,
            100,
            3_600_000,
        )?,
    };
    Ok((listen, limits))
}

/// `[timeouts]`.
pub(super) fn timeouts(cx: &Ctx<'_>, file: Option<TimeoutsFile>) -> Result<Timeouts, ConfigError> {
    let t = file.unwrap_or_default();
    let d = Timeouts::default();
    let timeouts = Timeouts {
        attempt: cx.ms("timeouts.attempt_ms", &t.attempt_ms, d.attempt, 10, 60_000)?,
        query: cx.ms("timeouts.query_ms", &t.query_ms, d.query, 10, MAX_QUERY_MS)?,
        tcp_idle: cx.ms(
            "timeouts.tcp_idle_ms",
            &t.tcp_idle_ms,
            d.tcp_idle,
            100,
            3_600_000,
        )?,
        shutdown_grace: cx.ms(
            "timeouts.shutdown_grace_ms",
            &t.shutdown_grace_ms,
            d.shutdown_grace,
            0,
            600_000,
        )?,
    };
    if let Some(q) = &t.query_ms
        && timeouts.query < timeouts.attempt
    {
        return Err(cx.err(
            "timeouts.query_ms",
            q.span(),
            "must not be shorter than timeouts.attempt_ms",
        ));
    }
    Ok(timeouts)
}

/// `[limits]`. Each connection is a file descriptor: no process may hold more than the
/// kernel's default `fs.nr_open`.
pub(super) fn limits(cx: &Ctx<'_>, file: Option<LimitsFile>) -> Result<Limits, ConfigError> {
    let l = file.unwrap_or_default();
    let d = Limits::default();
    let count = |key: &str, v: &Option<Spanned<u64>>, default: usize, max: u64| {
        cx.within(key, v, 1, max)
            .map(|v| v.map_or(default, |n| n as usize))
    };
    Ok(Limits {
        tcp_connections: count(
            "limits.tcp_connections",
            &l.tcp_connections,
            d.tcp_connections,
            MAX_CONNECTIONS,
        )?,
        tcp_queries_in_flight: count(
            "limits.tcp_queries_in_flight",
            &l.tcp_queries_in_flight,
            d.tcp_queries_in_flight,
            MAX_TCP_QUERIES_IN_FLIGHT,
        )?,
        doh_connections: count(
            "limits.doh_connections",
            &l.doh_connections,
            d.doh_connections,
            MAX_CONNECTIONS,
        )?,
        connections_per_client: cx
            .within(
                "limits.connections_per_client",
                &l.connections_per_client,
                0,
                MAX_CONNECTIONS,
            )?
            .map_or(d.connections_per_client, |n| n as u32),
    })
}

/// `[runtime]`: worker threads (`None`: one per core) and `SO_REUSEPORT`.
pub(super) fn runtime(
    cx: &Ctx<'_>,
    file: Option<RuntimeFile>,
) -> Result<(Option<usize>, bool), ConfigError> {
    let r = file.unwrap_or_default();
    let threads = cx
        .within("runtime.threads", &r.threads, 1, MAX_THREADS)?
        .map(|t| t as usize);
    Ok((threads, r.reuseport.unwrap_or(false)))
}

/// `[cache]`.
pub(super) fn cache(cx: &Ctx<'_>, file: Option<CacheFile>) -> Result<CacheConfig, ConfigError> {
    let cf = file.unwrap_or_default();
    let dc = CacheConfig::default();
    let within = |key: &str, v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64| {
        cx.within(key, v, min, max).map(|v| v.unwrap_or(default))
    };
    let day = u64::from(dc.max_ttl);
    let cache = CacheConfig {
        enabled: cf.enabled.unwrap_or(dc.enabled),
        // Below 64 KiB a single large answer would not fit.
        max_bytes: within(
            "cache.max_bytes",
            &cf.max_bytes,
            dc.max_bytes,
            65_536,
            1 << 40,
        )?,
        serve_stale: Duration::from_millis(within(
            "cache.serve_stale_ms",
            &cf.serve_stale_ms,
            dc.serve_stale.as_millis() as u64,
            0,
            30 * day * 1000,
        )?),
        stale_answer_client_timeout: cx.ms(
            "cache.stale_answer_client_timeout_ms",
            &cf.stale_answer_client_timeout_ms,
            dc.stale_answer_client_timeout,
            0,
            MAX_QUERY_MS,
        )?,
        stale_ttl: within("cache.stale_ttl", &cf.stale_ttl, 30, 1, day)? as u32,
        min_ttl: within("cache.min_ttl", &cf.min_ttl, 0, 0, day)? as u32,
        max_ttl: within("cache.max_ttl", &cf.max_ttl, day, 1, 7 * day)? as u32,
        prefetch: cf.prefetch.unwrap_or(dc.prefetch),
    };
    if let Some(m) = &cf.min_ttl
        && cache.min_ttl > cache.max_ttl
    {
        return Err(cx.err("cache.min_ttl", m.span(), "must not exceed cache.max_ttl"));
    }
    Ok(cache)
}

/// `[query_log]`.
pub(super) fn query_log(
    cx: &Ctx<'_>,
    file: Option<QueryLogFile>,
) -> Result<QueryLogConfig, ConfigError> {
    let ql = file.unwrap_or_default();
    let dq = QueryLogConfig::default();
    let within = |key: &str, v: &Option<Spanned<u64>>, default: u64, min: u64, max: u64| {
        cx.within(key, v, min, max).map(|v| v.unwrap_or(default))
    };
    Ok(QueryLogConfig {
        dest: match &ql.path {
            Some(p) if p.get_ref().is_empty() => {
                return Err(cx.err("query_log.path", p.span(), "must not be empty"));
            }
            Some(p) if p.get_ref() == "-" => Some(QueryLogDest::Stdout),
            Some(p) => Some(QueryLogDest::File(cx.path(p.get_ref()))),
            None => None,
        },
        max_bytes: within(
            "query_log.max_bytes",
            &ql.max_bytes,
            dq.max_bytes,
            4096,
            u64::MAX,
        )?,
        keep: within("query_log.keep", &ql.keep, dq.keep as u64, 0, 1000)? as usize,
        queue: within("query_log.queue", &ql.queue, dq.queue as u64, 1, 1 << 20)? as usize,
    })
}

/// `[resolver]`: the default resolver (absent targets: `/etc/resolv.conf`'s, read at start).
pub(super) fn resolver(
    cx: &Ctx<'_>,
    file: Option<ResolverFile>,
) -> Result<ResolverConfig, ConfigError> {
    let r = file.unwrap_or_default();
    let locally_served_zones = r.locally_served_zones.unwrap_or(true);
    if let Some(list) = &r.targets
        && let Some(extra) = list.get(MAX_RULE_TARGETS)
    {
        // Failover orders at most this many targets: more would never be tried.
        return Err(cx.err(
            "resolver.targets",
            extra.span(),
            format!("at most {MAX_RULE_TARGETS} targets"),
        ));
    }
    Ok(match &r.targets {
        Some(list) => ResolverConfig {
            targets: list
                .iter()
                .enumerate()
                .map(|(i, t)| cx.target(&format!("resolver.targets[{i}]"), t))
                .collect::<Result<_, _>>()?,
            from_system: false,
            locally_served_zones,
        },
        None => ResolverConfig {
            targets: Vec::new(),
            from_system: true,
            locally_served_zones,
        },
    })
}

/// The `[[inbound]]` sections.
pub(super) fn inbound(
    cx: &Ctx<'_>,
    files: &[Spanned<InboundFile>],
) -> Result<Vec<InboundEndpoint>, ConfigError> {
    let mut names = HashMap::new();
    let mut inbound = Vec::with_capacity(files.len());
    for (i, ep) in files.iter().enumerate() {
        let key = |k: &str| format!("inbound[{i}].{k}");
        let f = ep.get_ref();
        cx.unique_name(&key("name"), &f.name, &mut names, i, "inbound endpoint")?;
        let mut e = InboundEndpoint::new(f.name.get_ref());
        e.do53 = cx.addrs(&key("listen"), &f.listen)?;
        e.doh = cx.addrs(&key("listen_doh"), &f.listen_doh)?;
        e.doh_fips = cx.addrs(&key("listen_doh_fips"), &f.listen_doh_fips)?;
        e.doh_plain = cx.addrs(&key("listen_doh_plain"), &f.listen_doh_plain)?;
        e.derive_protocols();
        if let Some(p) = &f.protocols {
            let declared = cx.protocols(&key("protocols"), p)?;
            if declared.is_empty() {
                return Err(cx.err(
                    key("protocols"),
                    p.span(),
                    "must name at least one protocol",
                ));
            }
            for proto in Protocol::ALL {
                let listen_key = match proto {
                    Protocol::Do53 => "listen",
                    Protocol::DoH => "listen_doh",
                    Protocol::DohFips => "listen_doh_fips",
                };
                if declared.contains(proto) && !e.protocols.contains(proto) {
                    return Err(cx.err(
                        key("protocols"),
                        p.span(),
                        format!("includes {proto} but {} is empty", key(listen_key)),
                    ));
                }
                if !declared.contains(proto) && e.protocols.contains(proto) {
                    return Err(cx.err(
                        key(listen_key),
                        p.span(),
                        format!("is set but protocols does not include {proto}"),
                    ));
                }
            }
        }
        if e.protocols.is_empty() {
            return Err(cx.err(
                key("listen"),
                ep.span(),
                "the endpoint listens nowhere: set listen, listen_doh, listen_doh_plain or listen_doh_fips",
            ));
        }
        for (j, a) in f.allow.iter().enumerate() {
            let net = parse_net(a.get_ref()).ok_or_else(|| {
                cx.err(
                    key(&format!("allow[{j}]")),
                    a.span(),
                    format!("{:?} is not a CIDR such as \"10.0.0.0/8\"", a.get_ref()),
                )
            })?;
            e.allow.push(net);
        }
        if let Some(r) = &f.refuse {
            e.refuse = match r.get_ref().to_ascii_lowercase().as_str() {
                "refused" => Refuse::Refused,
                "drop" => Refuse::Drop,
                other => {
                    return Err(cx.err(
                        key("refuse"),
                        r.span(),
                        format!("{other:?} is not \"refused\" or \"drop\""),
                    ));
                }
            };
        }
        if let Some(r) = &f.rate_limit {
            e.rate_limit = Some(rate_limit(cx, &key("rate_limit"), r)?);
        }
        e.tls = cx.cert_and_key(&key, "tls_cert", &f.tls_cert, "tls_key", &f.tls_key)?;
        if let Some(p) = &f.doh_path {
            if !p.get_ref().starts_with('/') {
                return Err(cx.err(key("doh_path"), p.span(), "must start with '/'"));
            }
            e.doh_path = p.get_ref().clone();
        }
        if let Some(n) = &f.ddr_name {
            let name = n.get_ref();
            if wire::name_to_wire(name).is_err() || name.parse::<std::net::IpAddr>().is_ok() {
                return Err(cx.err(
                    key("ddr_name"),
                    n.span(),
                    format!("{name:?} is not a host name"),
                ));
            }
            if e.doh.is_empty() && e.doh_fips.is_empty() {
                return Err(cx.err(
                    key("ddr_name"),
                    n.span(),
                    "designates the endpoint's DoH listeners, and it has none (listen_doh, listen_doh_fips)",
                ));
            }
            if e.tls.is_none() {
                return Err(cx.err(
                    key("ddr_name"),
                    n.span(),
                    "needs tls_cert and tls_key: clients that follow a designation verify the certificate, which a self-signed one fails",
                ));
            }
            e.ddr_name = Some(name.trim_end_matches('.').to_string());
        }
        if let Some(c) = &f.capacity_qps {
            if *c.get_ref() == 0 {
                return Err(cx.err(key("capacity_qps"), c.span(), "must be at least 1"));
            }
            e.capacity_qps = Some(*c.get_ref());
        }
        inbound.push(e);
    }
    Ok(inbound)
}

/// An endpoint's `rate_limit = { qps = N, ... }`.
fn rate_limit(
    cx: &Ctx<'_>,
    key: &str,
    r: &Spanned<RateLimitFile>,
) -> Result<RateLimitConfig, ConfigError> {
    let f = r.get_ref();
    let d = RateLimitConfig::default();
    let bad = |what: String| cx.err(key, r.span(), what);
    let within = |name: &str, v: u64, min: u64, max: u64| {
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(bad(format!("{name} must be between {min} and {max}")))
        }
    };
    let qps = within("qps", f.qps, 1, 10_000_000)? as u32;
    let burst = within(
        "burst",
        f.burst.unwrap_or(u64::from(qps) * 2),
        1,
        20_000_000,
    )? as u32;
    let action = match f.action.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("refused") => LimitAction::Refused,
        Some("truncate") => LimitAction::Truncate,
        Some("drop") => LimitAction::Drop,
        Some(other) => {
            return Err(bad(format!(
                "action {other:?} is not \"refused\", \"truncate\" or \"drop\""
            )));
        }
    };
    Ok(RateLimitConfig {
        qps,
        burst,
        action,
        ipv4_prefix: within("ipv4_prefix", f.ipv4_prefix.unwrap_or(24), 8, 32)? as u8,
        ipv6_prefix: within("ipv6_prefix", f.ipv6_prefix.unwrap_or(56), 16, 128)? as u8,
        table_size: within(
            "table_size",
            f.table_size.unwrap_or(d.table_size as u64),
            1024,
            1 << 24,
        )? as usize,
    })
}

/// The `[[outbound]]` sections.
pub(super) fn outbound(
    cx: &Ctx<'_>,
    files: &[Spanned<OutboundFile>],
) -> Result<Vec<OutboundEndpoint>, ConfigError> {
    let mut names = HashMap::new();
    let mut outbound = Vec::with_capacity(files.len());
    for (i, ep) in files.iter().enumerate() {
        let key = |k: &str| format!("outbound[{i}].{k}");
        let f = ep.get_ref();
        cx.unique_name(&key("name"), &f.name, &mut names, i, "outbound endpoint")?;
        let protocols = match &f.protocols {
            Some(p) => cx.protocols(&key("protocols"), p)?,
            None => [Protocol::Do53].into_iter().collect(),
        };
        let client_cert = cx.cert_and_key(
            &key,
            "client_cert",
            &f.client_cert,
            "client_key",
            &f.client_key,
        )?;
        outbound.push(OutboundEndpoint {
            name: f.name.get_ref().clone(),
            protocols: if protocols.is_empty() {
                [Protocol::Do53].into_iter().collect()
            } else {
                protocols
            },
            ca_file: f.ca_file.as_ref().map(|p| cx.path(p.get_ref())),
            client_cert,
        });
    }
    Ok(outbound)
}
