//! Configuration: the TOML file types (serde, `deny_unknown_fields`) and [`FileConfig::validate`],
//! which turns them into the runtime [`Config`] with errors that name the key and the line.
//!
//! docs/configuration.md documents every key; tests keep its examples valid and its key tables
//! equal to what the file types accept. Each section validates itself in a function of its
//! own: `sections` (the small ones and the endpoints), `routing` (rules, zones, profiles) and
//! `firewall`; [`FileConfig::validate`] calls them in order.

mod firewall;
mod routing;
mod sections;

pub use firewall::{
    Association, CLI_BLOCK_NAME, CLI_BLOCK_PRIORITY, DEFAULT_OVERRIDE_TTL, FirewallConfig,
    FirewallFile, MAX_PRIORITY,
};
pub use routing::{Profile, ProfileFile, ZoneConfig, ZoneFile};
pub use sections::{MAX_QUERY_MS, MAX_RULE_TARGETS, MAX_TCP_QUERIES_IN_FLIGHT};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::acl::Refuse;
use crate::error::ConfigError;
use crate::protocol::{Protocol, ProtocolSet};
use crate::ratelimit::RateLimitConfig;
use crate::rules::{ForwardingRule, RuleSet};
use crate::target::{DEFAULT_DOH_PATH, DohMethod, TargetSpec, parse_addr};
use crate::wire;

// ---------------------------------------------------------------------------------------------
// The file as written.

/// The configuration file as parsed, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: Option<ServerFile>,
    pub admin: Option<AdminFile>,
    pub resolver: Option<ResolverFile>,
    pub timeouts: Option<TimeoutsFile>,
    pub limits: Option<LimitsFile>,
    pub runtime: Option<RuntimeFile>,
    pub query_log: Option<QueryLogFile>,
    pub cache: Option<CacheFile>,
    #[serde(default)]
    pub inbound: Vec<Spanned<InboundFile>>,
    #[serde(default)]
    pub outbound: Vec<Spanned<OutboundFile>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleFile>>,
    #[serde(default, rename = "zone")]
    pub zones: Vec<Spanned<ZoneFile>>,
    #[serde(default, rename = "profile")]
    pub profiles: Vec<Spanned<ProfileFile>>,
    pub firewall: Option<FirewallFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// What CHAOS-class `id.server` and `hostname.bind` TXT answer (RFC 4892); absent: REFUSED.
    pub identity: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`); absent: no admin.
    pub listen: Option<Spanned<String>>,
    /// Admin connections open at once; past it new ones are closed at once.
    pub max_connections: Option<Spanned<u64>>,
    /// An admin connection that sends no complete request head for this long is closed.
    pub idle_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverFile {
    /// The default resolver; absent: the nameservers of /etc/resolv.conf.
    pub targets: Option<Vec<Spanned<TargetFile>>>,
    /// Answer RFC 6303 locally served zones locally (Route 53's auto-defined rules).
    pub locally_served_zones: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    pub attempt_ms: Option<Spanned<u64>>,
    pub query_ms: Option<Spanned<u64>>,
    pub tcp_idle_ms: Option<Spanned<u64>>,
    pub shutdown_grace_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub tcp_connections: Option<Spanned<u64>>,
    pub tcp_queries_in_flight: Option<Spanned<u64>>,
    pub doh_connections: Option<Spanned<u64>>,
    pub connections_per_client: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    /// Worker threads; absent: one per core.
    pub threads: Option<Spanned<u64>>,
    /// A `SO_REUSEPORT` socket per thread on each Do53 UDP listener; absent: false.
    pub reuseport: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLogFile {
    /// A file, or `-` for standard output; absent: no query log (unless `--query-log`).
    pub path: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub keep: Option<Spanned<u64>>,
    pub queue: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundFile {
    pub name: Spanned<String>,
    pub protocols: Option<Spanned<Vec<String>>>,
    /// Do53 addresses (UDP and TCP on each).
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    #[serde(default)]
    pub listen_doh: Vec<Spanned<String>>,
    #[serde(default)]
    pub listen_doh_fips: Vec<Spanned<String>>,
    /// Cleartext DoH (h2c and HTTP/1.1) for a TLS-terminating proxy in front; off by default.
    #[serde(default)]
    pub listen_doh_plain: Vec<Spanned<String>>,
    /// Client networks allowed to query; empty or absent: everyone.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// What clients outside `allow` get: `refused` (default) or `drop`.
    pub refuse: Option<Spanned<String>>,
    /// Queries per second per client prefix, over UDP and DoH.
    pub rate_limit: Option<Spanned<RateLimitFile>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub doh_path: Option<Spanned<String>>,
    /// Queries per second the endpoint is rated for (capacity status metric).
    pub capacity_qps: Option<Spanned<u64>>,
    /// The profile whose rules, zones and rule groups the endpoint uses besides its own.
    pub profile: Option<Spanned<String>>,
    /// The name the DoH listeners' certificate is valid for: `_dns.resolver.arpa` (RFC 9462)
    /// designates them under it; absent: no designation.
    pub ddr_name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    pub qps: u64,
    pub burst: Option<u64>,
    pub action: Option<String>,
    pub ipv4_prefix: Option<u64>,
    pub ipv6_prefix: Option<u64>,
    pub table_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundFile {
    pub name: Spanned<String>,
    pub protocols: Option<Spanned<Vec<String>>>,
    /// CA certificates (PEM) trusted for this endpoint's DoH targets instead of the system roots.
    pub ca_file: Option<Spanned<String>>,
    /// Client certificate and key (PEM) for DoH targets that require mutual TLS.
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    pub enabled: Option<bool>,
    pub max_bytes: Option<Spanned<u64>>,
    pub serve_stale_ms: Option<Spanned<u64>>,
    pub stale_answer_client_timeout_ms: Option<Spanned<u64>>,
    pub stale_ttl: Option<Spanned<u64>>,
    pub min_ttl: Option<Spanned<u64>>,
    pub max_ttl: Option<Spanned<u64>>,
    pub prefetch: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub name: Spanned<String>,
    pub domain: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub outbound: Option<Spanned<String>>,
    #[serde(default)]
    pub targets: Vec<Spanned<TargetFile>>,
    /// `false`: answers for this rule's names are never cached.
    pub cache: Option<bool>,
    /// The inbound endpoints the rule applies to; absent: every one.
    pub inbound: Option<Vec<Spanned<String>>>,
}

/// A target as written: a string (`"10.0.0.2:53"`, `"https://10.0.0.3/dns-query"`) or a table.
#[derive(Debug)]
pub enum TargetFile {
    Short(String),
    Full(TargetTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTable {
    pub address: String,
    pub protocol: Option<String>,
    pub server_name: Option<String>,
    pub path: Option<String>,
    pub ca_file: Option<String>,
    pub method: Option<String>,
}

impl<'de> Deserialize<'de> for TargetFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TargetFile;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a target string such as \"10.0.0.2:53\" or a table with `address`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TargetFile, E> {
                Ok(TargetFile::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TargetFile, A::Error> {
                TargetTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TargetFile::Full)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// A validated configuration, ready to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The gateway's name for CHAOS `id.server` / `hostname.bind` (RFC 4892).
    pub identity: Option<String>,
    pub admin: Option<SocketAddr>,
    pub admin_limits: AdminLimits,
    pub resolver: ResolverConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// Worker threads serving the Do53 and DoH listeners (and the shared runtime's threads);
    /// `None`: one per core.
    pub threads: Option<usize>,
    /// Each worker thread has its own `SO_REUSEPORT` socket on each Do53 UDP listener.
    pub reuseport: bool,
    pub query_log: QueryLogConfig,
    pub cache: CacheConfig,
    pub inbound: Vec<InboundEndpoint>,
    pub outbound: Vec<OutboundEndpoint>,
    /// The configured rules (the auto-defined ones are added by [`Config::rule_set`]).
    pub rules: Vec<ForwardingRule>,
    /// Local zones (Route 53's private hosted zones), answered by dohgate itself.
    pub zones: Vec<ZoneConfig>,
    pub profiles: Vec<Profile>,
    pub firewall: FirewallConfig,
}

/// Bounds of the admin listener, so that idle or slow admin clients cannot take the file
/// descriptors the DNS listeners need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// How long a connection may wait for (or take to send) its next request head.
    pub idle_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            // Prometheus, a probe or two and an operator's curl, with room to spare.
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ResolverConfig {
    pub targets: Vec<TargetSpec>,
    /// True when `targets` came from /etc/resolv.conf.
    pub from_system: bool,
    pub locally_served_zones: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long one attempt at one target may take before the next target is tried.
    pub attempt: Duration,
    /// The whole budget of a query across all its attempts.
    pub query: Duration,
    /// How long an inbound TCP connection may stay idle.
    pub tcp_idle: Duration,
    /// How long shutdown waits for queries in flight.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: Duration::from_millis(1500),
            query: Duration::from_millis(4000),
            tcp_idle: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The most connections a listener may be configured for: Linux's default `fs.nr_open`, the
/// most file descriptors one process can have.
pub const MAX_CONNECTIONS: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent TCP connections per Do53 listener.
    pub tcp_connections: usize,
    /// Queries one TCP connection may have in flight at once (RFC 7766 pipelining).
    pub tcp_queries_in_flight: usize,
    /// Concurrent connections per DoH, DoH-FIPS or cleartext DoH listener.
    pub doh_connections: usize,
    /// Concurrent TCP or DoH connections one client address may hold on one listener; 0: no cap.
    pub connections_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tcp_connections: 1024,
            tcp_queries_in_flight: 64,
            // Room for 10,000 idle DoH clients (stub resolvers keep their connection open)
            // with headroom, while still bounding memory: an idle connection costs well under
            // 20 KiB, so a full listener stays within a few hundred MiB.
            doh_connections: 16_384,
            // A NAT or a forwarder may carry many clients, but not a whole listener's worth.
            connections_per_client: 512,
        }
    }
}

/// Where query logs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryLogDest {
    Stdout,
    File(PathBuf),
}

impl QueryLogDest {
    /// `-` is standard output; anything else a file.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            QueryLogDest::Stdout
        } else {
            QueryLogDest::File(PathBuf::from(s))
        }
    }
}

/// The query log (off unless `dest` is set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLogConfig {
    pub dest: Option<QueryLogDest>,
    /// A file reaching this size is rotated (`FILE` -> `FILE.1` -> ... -> `FILE.<keep>`).
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: usize,
    /// Records waiting to be written; beyond this they are dropped and counted, so a slow disk
    /// never slows queries.
    pub queue: usize,
}

impl Default for QueryLogConfig {
    fn default() -> Self {
        QueryLogConfig {
            dest: None,
            max_bytes: 100 * 1024 * 1024,
            keep: 5,
            queue: 8192,
        }
    }
}

/// The answer cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Keys, answers and per-entry overhead together stay under this.
    pub max_bytes: u64,
    /// How long past its expiry an entry may still answer when every target fails (RFC 8767);
    /// zero: never.
    pub serve_stale: Duration,
    /// RFC 8767's client response timer: a query that has a stale entry and no answer from a
    /// target within this long is answered from the entry, while the refresh goes on in the
    /// background. Zero: a stale entry answers only once every target has failed.
    pub stale_answer_client_timeout: Duration,
    /// The TTL of stale answers.
    pub stale_ttl: u32,
    /// Bounds for how long an answer is kept, whatever its records' TTLs say.
    pub min_ttl: u32,
    pub max_ttl: u32,
    /// Refresh popular entries shortly before they expire.
    pub prefetch: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            serve_stale: Duration::from_secs(86_400),
            stale_answer_client_timeout: Duration::from_millis(1800),
            stale_ttl: 30,
            min_ttl: 0,
            max_ttl: 86_400,
            prefetch: true,
        }
    }
}

/// Route 53's rating of one endpoint address: 10,000 queries per second.
pub const CAPACITY_QPS_PER_ADDRESS: u64 = 10_000;

/// The most worker threads `runtime.threads` may ask for.
pub const MAX_THREADS: u64 = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct InboundEndpoint {
    pub name: String,
    pub protocols: ProtocolSet,
    pub do53: Vec<SocketAddr>,
    pub doh: Vec<SocketAddr>,
    pub doh_fips: Vec<SocketAddr>,
    /// Cleartext DoH addresses (protocol DoH), for use behind a TLS-terminating proxy.
    pub doh_plain: Vec<SocketAddr>,
    pub allow: Vec<IpNet>,
    /// What clients outside `allow` get.
    pub refuse: Refuse,
    /// Per-client-prefix rate limit over UDP and DoH; `None`: none.
    pub rate_limit: Option<RateLimitConfig>,
    pub tls: Option<TlsFiles>,
    pub doh_path: String,
    /// The configured capacity; `None`: [`CAPACITY_QPS_PER_ADDRESS`] per listen address.
    pub capacity_qps: Option<u64>,
    /// The name of the endpoint's profile.
    pub profile: Option<String>,
    /// The name `_dns.resolver.arpa` designates the endpoint's DoH listeners under (RFC 9462);
    /// `None`: it answers NODATA.
    pub ddr_name: Option<String>,
}

impl InboundEndpoint {
    pub fn new(name: &str) -> Self {
        InboundEndpoint {
            name: name.to_string(),
            protocols: ProtocolSet::EMPTY,
            do53: Vec::new(),
            doh: Vec::new(),
            doh_fips: Vec::new(),
            doh_plain: Vec::new(),
            allow: Vec::new(),
            refuse: Refuse::Refused,
            rate_limit: None,
            tls: None,
            doh_path: DEFAULT_DOH_PATH.to_string(),
            capacity_qps: None,
            profile: None,
            ddr_name: None,
        }
    }

    /// Queries per second the endpoint is rated for: the configured value, or Route 53's
    /// 10,000 per listen address.
    pub fn capacity_qps(&self) -> u64 {
        self.capacity_qps.unwrap_or_else(|| {
            let addrs =
                self.do53.len() + self.doh.len() + self.doh_fips.len() + self.doh_plain.len();
            CAPACITY_QPS_PER_ADDRESS * addrs.max(1) as u64
        })
    }

    /// Recomputes `protocols` from the listen addresses.
    pub fn derive_protocols(&mut self) {
        let mut set = ProtocolSet::EMPTY;
        if !self.do53.is_empty() {
            set.insert(Protocol::Do53);
        }
        if !self.doh.is_empty() || !self.doh_plain.is_empty() {
            set.insert(Protocol::DoH);
        }
        if !self.doh_fips.is_empty() {
            set.insert(Protocol::DohFips);
        }
        self.protocols = set;
    }
}

#[derive(Clone, Debug)]
pub struct OutboundEndpoint {
    pub name: String,
    pub protocols: ProtocolSet,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<TlsFiles>,
}

impl Config {
    /// The rules to run with, and each inbound endpoint's table of them (by endpoint id): the
    /// configured rules and local zones that apply to it, directly or through its profile, plus
    /// the locally served zones if enabled. See [`routing`] for the precedence.
    pub fn rule_set(&self) -> Result<RuleSet, ConfigError> {
        routing::rule_set(self)
    }

    /// The outbound endpoint named `name`.
    pub fn outbound(&self, name: &str) -> Option<&OutboundEndpoint> {
        self.outbound.iter().find(|o| o.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and validation.

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().map(Path::to_path_buf);
    parse(&text, base.as_deref()).map_err(|mut e| {
        // An error in a file the configuration names (a domain list) keeps that file's name.
        e.file.get_or_insert_with(|| path.to_path_buf());
        e
    })
}

/// The largest certificate, key or CA file (PEM) dohgate reads.
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// Reads a file the configuration names, refusing what is not a regular file (a FIFO or a
/// device such as /dev/zero would hang or exhaust memory) or is larger than `limit` bytes.
pub fn read_small_file(path: &Path, limit: u64) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_string());
    }
    if meta.len() > limit {
        return Err(format!("is larger than {limit} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Parses and validates configuration text. Relative file paths in it are taken relative to
/// `base` (the directory of the file) when given.
pub fn parse(text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::new("", e.message().trim_end().to_string()).at_line(line)
    })?;
    file.validate(text, base)
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len()))
        .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
}

struct Ctx<'a> {
    text: &'a str,
    base: Option<&'a Path>,
}

impl Ctx<'_> {
    fn err(
        &self,
        key: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(key, message).at_line(Some(line_of(self.text, span.start)))
    }

    fn addr(&self, key: &str, s: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        s.get_ref().parse::<SocketAddr>().map_err(|_| {
            self.err(
                key,
                s.span(),
                format!(
                    "{:?} is not an address with a port (e.g. \"127.0.0.1:53\" or \"[::1]:53\")",
                    s.get_ref()
                ),
            )
        })
    }

    fn addrs(&self, key: &str, list: &[Spanned<String>]) -> Result<Vec<SocketAddr>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, s)| self.addr(&format!("{key}[{i}]"), s))
            .collect()
    }

    fn path(&self, s: &str) -> PathBuf {
        let p = PathBuf::from(s);
        match self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        }
    }

    /// A section's `name`: not empty, and not taken by an earlier one of its kind (`what`,
    /// e.g. "zone"); records it in `seen` with the section's `index`.
    fn unique_name(
        &self,
        key: &str,
        name: &Spanned<String>,
        seen: &mut HashMap<String, usize>,
        index: usize,
        what: &str,
    ) -> Result<(), ConfigError> {
        if name.get_ref().is_empty() {
            return Err(self.err(key, name.span(), "must not be empty"));
        }
        if seen.insert(name.get_ref().clone(), index).is_some() {
            return Err(self.err(
                key,
                name.span(),
                format!("another {what} is named {:?}", name.get_ref()),
            ));
        }
        Ok(())
    }

    /// An optional integer that must lie in `min..=max`; `None` when absent.
    fn within(
        &self,
        key: &str,
        v: &Option<Spanned<u64>>,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) if !(min..=max).contains(s.get_ref()) => {
                Err(self.err(key, s.span(), format!("must be between {min} and {max}")))
            }
            Some(s) => Ok(Some(*s.get_ref())),
        }
    }

    /// A certificate and key file pair: both or neither.
    fn cert_and_key(
        &self,
        key: &dyn Fn(&str) -> String,
        cert_key: &str,
        cert: &Option<Spanned<String>>,
        key_key: &str,
        private_key: &Option<Spanned<String>>,
    ) -> Result<Option<TlsFiles>, ConfigError> {
        match (cert, private_key) {
            (Some(c), Some(k)) => Ok(Some(TlsFiles {
                cert: self.path(c.get_ref()),
                key: self.path(k.get_ref()),
            })),
            (None, None) => Ok(None),
            (Some(c), None) => Err(self.err(
                key(key_key),
                c.span(),
                format!("{cert_key} is set but {key_key} is not"),
            )),
            (None, Some(k)) => Err(self.err(
                key(cert_key),
                k.span(),
                format!("{key_key} is set but {cert_key} is not"),
            )),
        }
    }

    fn protocols(&self, key: &str, p: &Spanned<Vec<String>>) -> Result<ProtocolSet, ConfigError> {
        let mut set = ProtocolSet::EMPTY;
        for name in p.get_ref() {
            let proto = name
                .parse::<Protocol>()
                .map_err(|e| self.err(key, p.span(), e.to_string()))?;
            set.insert(proto);
        }
        Ok(set)
    }

    /// An optional duration in milliseconds that must lie in `min..=max`.
    fn ms(
        &self,
        key: &str,
        v: &Option<Spanned<u64>>,
        default: Duration,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        Ok(self
            .within(key, v, min, max)?
            .map_or(default, Duration::from_millis))
    }

    fn target(&self, key: &str, t: &Spanned<TargetFile>) -> Result<TargetSpec, ConfigError> {
        let err = |m: String| self.err(key, t.span(), m);
        match t.get_ref() {
            TargetFile::Short(s) => TargetSpec::parse(s).map_err(err),
            TargetFile::Full(tt) => {
                let protocol = match &tt.protocol {
                    Some(p) => p.parse::<Protocol>().map_err(|e| err(e.to_string()))?,
                    None if tt.address.starts_with("https://") => Protocol::DoH,
                    None => Protocol::Do53,
                };
                let mut spec = if tt.address.starts_with("https://") {
                    TargetSpec::parse(&tt.address).map_err(err)?
                } else {
                    let port = if protocol == Protocol::Do53 { 53 } else { 443 };
                    TargetSpec::do53(
                        parse_addr(&tt.address, port).map_err(|e| err(format!("address: {e}")))?,
                    )
                };
                spec.protocol = protocol;
                if let Some(path) = &tt.path {
                    if !path.starts_with('/') {
                        return Err(err(format!("path {path:?} must start with '/'")));
                    }
                    spec.path = path.clone();
                }
                if let Some(name) = &tt.server_name {
                    if wire::name_to_wire(name).is_err() || name.parse::<std::net::IpAddr>().is_ok()
                    {
                        return Err(err(format!("server_name {name:?} is not a host name")));
                    }
                    spec.server_name = Some(name.trim_end_matches('.').to_string());
                }
                spec.ca_file = tt.ca_file.as_deref().map(|p| self.path(p));
                spec.method = match tt.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("POST") => DohMethod::Post,
                    Some("GET") => DohMethod::Get,
                    Some(m) => return Err(err(format!("method {m:?} is not GET or POST"))),
                };
                if protocol == Protocol::Do53
                    && (tt.server_name.is_some()
                        || tt.path.is_some()
                        || tt.ca_file.is_some()
                        || tt.method.is_some())
                {
                    return Err(err(
                        "server_name, path, ca_file and method apply to DoH targets only"
                            .to_string(),
                    ));
                }
                Ok(spec)
            }
        }
    }
}

impl FileConfig {
    /// Checks everything and produces the runtime configuration. `text` is the source the file
    /// was parsed from, for line numbers.
    pub fn validate(self, text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let cx = Ctx { text, base };

        let identity = sections::server(&cx, self.server)?;
        let (admin, admin_limits) = sections::admin(&cx, self.admin)?;
        let timeouts = sections::timeouts(&cx, self.timeouts)?;
        let limits = sections::limits(&cx, self.limits)?;
        let (threads, reuseport) = sections::runtime(&cx, self.runtime)?;
        let cache = sections::cache(&cx, self.cache)?;
        let query_log = sections::query_log(&cx, self.query_log)?;
        let resolver = sections::resolver(&cx, self.resolver)?;
        let mut inbound = sections::inbound(&cx, &self.inbound)?;
        let outbound = sections::outbound(&cx, &self.outbound)?;

        let inbound_names: Vec<String> = inbound.iter().map(|e| e.name.clone()).collect();
        let rules = routing::rules(&cx, &self.rules, &outbound, &inbound_names)?;
        let zones = routing::zones(&cx, &self.zones, &inbound_names)?;
        let mut firewall = match self.firewall {
            Some(f) => f.validate(&cx, &inbound_names)?,
            None => FirewallConfig::default(),
        };
        let profiles = routing::profiles(&cx, &self.profiles, &rules, &zones, &mut firewall)?;
        routing::assign_profiles(&cx, &self.inbound, &mut inbound, &profiles)?;
        routing::check_scopes(
            &cx,
            &self.rules,
            &self.zones,
            &inbound,
            &rules,
            &zones,
            &profiles,
        )?;

        Ok(Config {
            identity,
            admin,
            admin_limits,
            resolver,
            timeouts,
            limits,
            threads,
            reuseport,
            query_log,
            cache,
            inbound,
            outbound,
            rules,
            zones,
            profiles,
            firewall,
        })
    }
}

/// The nameservers of a resolv.conf file as Do53 targets (scoped IPv6 addresses are skipped:
/// a target is an address dohgate can reach by itself).
pub fn resolv_conf_targets(text: &str) -> Vec<TargetSpec> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|addr| addr.parse::<std::net::IpAddr>().ok())
        .map(|ip| TargetSpec::do53(SocketAddr::new(ip, 53)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[admin]
listen = "127.0.0.1:9153"

[resolver]
targets = ["127.0.0.1:5300"]

[timeouts]
attempt_ms = 800

[[inbound]]
name = "onprem"
listen = ["127.0.0.1:5353", "[::1]:5353"]
allow = ["10.0.0.0/8", "127.0.0.1"]

[[outbound]]
name = "to-dc"
protocols = ["do53", "doh"]

[[rule]]
name = "corp"
domain = "corp.test"
type = "forward"
outbound = "to-dc"
targets = ["127.0.0.1:5301", { address = "127.0.0.1:9443", protocol = "doh", server_name = "dns.corp.test" }]

[[rule]]
name = "public"
domain = "www.corp.test"
type = "system"
"#;

    #[test]
    fn parses_a_full_config() {
        let c = parse(FULL, None).expect("valid");
        assert_eq!(c.admin, Some("127.0.0.1:9153".parse().expect("addr")));
        assert_eq!(c.timeouts.attempt, Duration::from_millis(800));
        assert_eq!(c.inbound[0].do53.len(), 2);
        assert!(c.inbound[0].protocols.contains(Protocol::Do53));
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].targets[1].protocol, Protocol::DoH);
        assert_eq!(
            c.rules[0].targets[1].server_name.as_deref(),
            Some("dns.corp.test")
        );
        assert_eq!(
            c.rule_set()
                .expect("rules")
                .match_name("a.corp.test")
                .map(|r| r.name.as_str()),
            Some("corp")
        );
    }

    fn error_of(text: &str) -> ConfigError {
        parse(text, None).expect_err("must be rejected")
    }

    #[test]
    fn the_default_resolver_has_at_most_16_targets() {
        let list = |n: usize| {
            let t: Vec<String> = (1..=n).map(|i| format!("\"127.0.0.{i}\"")).collect();
            format!("[resolver]\ntargets = [{}]\n", t.join(", "))
        };
        assert!(parse(&list(16), None).is_ok());
        let e = error_of(&list(17));
        assert_eq!(e.key, "resolver.targets");
        assert!(e.message.contains("at most 16"), "{e}");
    }

    #[test]
    fn numbers_that_would_break_the_server_are_refused() {
        // Each of these once passed check-config and then panicked a listener or made queries
        // and shutdown never end.
        for (text, key) in [
            (
                "[limits]\ntcp_queries_in_flight = 9223372036854775807\n",
                "limits.tcp_queries_in_flight",
            ),
            (
                "[limits]\ntcp_connections = 18446744073709551615\n",
                "limits.tcp_connections",
            ),
            (
                "[timeouts]\nattempt_ms = 9223372036854775000\n",
                "timeouts.attempt_ms",
            ),
            (
                "[timeouts]\nquery_ms = 9223372036854775000\n",
                "timeouts.query_ms",
            ),
            (
                "[timeouts]\nshutdown_grace_ms = 9223372036854775000\n",
                "timeouts.shutdown_grace_ms",
            ),
            (
                "[timeouts]\ntcp_idle_ms = 99999999999\n",
                "timeouts.tcp_idle_ms",
            ),
        ] {
            let e = error_of(text);
            assert_eq!(e.key, key, "{e}");
            assert_eq!(e.line, Some(2), "{e}");
            assert!(e.message.contains("between"), "{e}");
        }
        let c = parse(
            "[limits]\ntcp_queries_in_flight = 65535\ntcp_connections = 1048576\n\
             [timeouts]\nquery_ms = 300000\nshutdown_grace_ms = 600000\n",
            None,
        )
        .expect("the largest values still pass");
        assert_eq!(c.limits.tcp_queries_in_flight, 65_535);
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let e = error_of("[admin]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_cidr_names_key_and_line() {
        let e = error_of(
            "[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:53\"]\nallow = [\"10.0.0.0/33\"]\n",
        );
        assert_eq!(e.key, "inbound[0].allow[0]");
        assert_eq!(e.line, Some(4));
    }

    #[test]
    fn rule_with_unknown_outbound_is_rejected() {
        let e = error_of(
            "[[rule]]\nname = \"r\"\ndomain = \"x.test\"\ntype = \"forward\"\noutbound = \"nope\"\ntargets = [\"127.0.0.1\"]\n",
        );
        assert_eq!(e.key, "rule[0].outbound");
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("nope"));
    }

    #[test]
    fn target_protocol_must_be_allowed_by_outbound() {
        let e = error_of(
            "[[outbound]]\nname = \"o\"\n[[rule]]\nname = \"r\"\ndomain = \"x.test\"\ntype = \"forward\"\noutbound = \"o\"\ntargets = [\"https://127.0.0.1/dns-query\"]\n",
        );
        assert_eq!(e.key, "rule[0].targets[0]");
        assert!(e.message.contains("doh"), "{e}");
    }

    #[test]
    fn protocols_must_match_listen_lists() {
        let e = error_of(
            "[[inbound]]\nname = \"a\"\nprotocols = [\"do53\", \"doh\"]\nlisten = [\"127.0.0.1:53\"]\n",
        );
        assert!(e.message.contains("listen_doh"), "{e}");
        let e = error_of("[[inbound]]\nname = \"a\"\nlisten = [\"localhost:53\"]\n");
        assert_eq!(e.key, "inbound[0].listen[0]");
    }

    #[test]
    fn cleartext_doh_is_protocol_doh() {
        let c = parse("[[inbound]]\nname = \"p\"\nprotocols = [\"doh\"]\nlisten_doh_plain = [\"127.0.0.1:8080\"]\n", None).expect("valid");
        assert_eq!(
            c.inbound[0].doh_plain,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]
        );
        assert!(c.inbound[0].protocols.contains(Protocol::DoH));
        assert!(c.inbound[0].doh.is_empty());
    }

    #[test]
    fn cache_section_and_rule_opt_out() {
        let c = parse("", None).expect("valid");
        assert_eq!(c.cache, CacheConfig::default());
        assert!(c.cache.enabled);
        let c = parse(
            "[cache]\nenabled = false\nmax_bytes = 1048576\nserve_stale_ms = 0\nmin_ttl = 5\nmax_ttl = 60\nprefetch = false\n[[rule]]\nname = \"r\"\ndomain = \"x.test\"\ntype = \"system\"\ncache = false\n",
            None,
        )
        .expect("valid");
        assert!(!c.cache.enabled && !c.cache.prefetch);
        assert_eq!(c.cache.max_bytes, 1 << 20);
        assert!(c.cache.serve_stale.is_zero());
        assert_eq!((c.cache.min_ttl, c.cache.max_ttl), (5, 60));
        assert!(!c.rules[0].cache);
        let e = error_of("[cache]\nmin_ttl = 100\nmax_ttl = 60\n");
        assert_eq!((e.key.as_str(), e.line), ("cache.min_ttl", Some(2)));
        let e = error_of("[cache]\nmax_bytes = 10\n");
        assert_eq!(e.key, "cache.max_bytes");
    }

    #[test]
    fn runtime_threads_are_checked() {
        assert_eq!(parse("", None).expect("valid").threads, None);
        let c = parse("[runtime]\nthreads = 3\nreuseport = true\n", None).expect("valid");
        assert_eq!((c.threads, c.reuseport), (Some(3), true));
        let e = error_of("# workers\n[runtime]\nthreads = 0\n");
        assert_eq!((e.key.as_str(), e.line), ("runtime.threads", Some(3)));
        let e = error_of("[runtime]\nthreads = 5000\n");
        assert_eq!(e.key, "runtime.threads");
    }

    #[test]
    fn certificate_without_key_is_rejected() {
        let e = error_of(
            "[[inbound]]\nname = \"a\"\nlisten_doh = [\"127.0.0.1:443\"]\ntls_cert = \"c.pem\"\n",
        );
        assert_eq!(e.key, "inbound[0].tls_key");
        assert_eq!(e.line, Some(4));
        let e = error_of("[[outbound]]\nname = \"o\"\nclient_key = \"k.pem\"\n");
        assert_eq!(e.key, "outbound[0].client_cert");
        assert!(e.message.contains("client_key is set"), "{e}");
    }

    #[test]
    fn reads_resolv_conf() {
        let t = resolv_conf_targets(
            "# c\nsearch x\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nnameserver ::1\n",
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].addr, "[::1]:53".parse().expect("addr"));
    }

    #[test]
    fn capacity_and_query_log() {
        let c = parse(
            "[query_log]\npath = \"q.log\"\nkeep = 2\n[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:53\", \"[::1]:53\"]\n[[inbound]]\nname = \"b\"\nlisten = [\"127.0.0.2:53\"]\ncapacity_qps = 500\n",
            Some(Path::new("/var/log/dohgate")),
        )
        .expect("valid");
        assert_eq!(c.inbound[0].capacity_qps(), 20_000);
        assert_eq!(c.inbound[1].capacity_qps(), 500);
        assert_eq!(
            c.query_log.dest,
            Some(QueryLogDest::File(PathBuf::from("/var/log/dohgate/q.log")))
        );
        assert_eq!((c.query_log.keep, c.query_log.queue), (2, 8192));
        let e = error_of("[query_log]\npath = \"-\"\nqueue = 0\n");
        assert_eq!(e.key, "query_log.queue");
        assert!(parse("", None).expect("valid").query_log.dest.is_none());
    }

    #[test]
    fn doh_connections_limit() {
        assert_eq!(
            parse("", None).expect("valid").limits.doh_connections,
            16_384
        );
        let c = parse("[limits]\ndoh_connections = 20000\n", None).expect("valid");
        assert_eq!(c.limits.doh_connections, 20_000);
        for bad in ["0", "1048577"] {
            let e = error_of(&format!(
                "[limits]\ntcp_connections = 10\ndoh_connections = {bad}\n"
            ));
            assert_eq!(
                (e.key.as_str(), e.line),
                ("limits.doh_connections", Some(3))
            );
            assert!(e.message.contains("between 1 and 1048576"), "{e}");
        }
        // A value of the wrong type fails in serde, which names the line.
        let e = error_of("[limits]\ndoh_connections = \"many\"\n");
        assert_eq!(e.line, Some(2));
    }
}
