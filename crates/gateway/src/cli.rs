//! The command line. Flag names are a contract: scripts and docs rely on them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::import::ImportKind;
use dohgate_core::TargetSpec;
use dohgate_core::config::{self, Config, InboundEndpoint, OutboundEndpoint, TlsFiles};
use dohgate_core::rules::{ForwardingRule, RuleKind, canonical_domain};
use dohgate_core::{Protocol, ProtocolSet, wire};

/// The configuration `dohgate` runs with when given no `--config`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// What `--version` and the start-up banner say: the version and, when the binary carries the
/// FIPS 140-3 validated module, `(fips: <module and its version>)`, so an operator or auditor
/// can tell the two builds apart without a scrape of `dohgate_build_info`.
pub fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| match crate::metrics::fips_module() {
        "" => env!("CARGO_PKG_VERSION").to_string(),
        module => format!("{} (fips: {module})", env!("CARGO_PKG_VERSION")),
    })
}

/// How dohgate writes its own log (standard error; the query log is JSON either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "dohgate",
    version = version(),
    about = "A DNS gateway for hybrid networks: Do53, DoH and DoH-FIPS in, Route 53-style forwarding rules out",
    long_about = "A DNS gateway for hybrid networks: Do53, DoH and DoH-FIPS in, Route 53-style forwarding rules out.\n\n\
        With no arguments it runs an embedded default: Do53 on 127.0.0.1:5353 (UDP and TCP), DoH on \
        127.0.0.1:8443 with a self-signed certificate made at start, the admin listener on 127.0.0.1:9153, \
        and the nameservers of /etc/resolv.conf as the default resolver.\n\n\
        A TARGET is IP or IP:PORT for Do53 ([IPv6]:PORT for IPv6), or https://IP[:PORT][/PATH] for DoH.\n\
        Flags add to or override the configuration file. Log filtering follows RUST_LOG (e.g. RUST_LOG=debug)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (TOML); see docs/configuration.md. Default: the embedded default.
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Format of dohgate's own log on standard error: text (coloured only on a terminal) or
    /// json (one object per line, for log collectors).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Listen for Do53 (UDP and TCP) on ADDR, e.g. 127.0.0.1:53 or [::1]:53. Repeatable. Any
    /// --listen-* flag replaces the listeners of the first inbound endpoint.
    #[arg(long, value_name = "ADDR")]
    pub listen_do53: Vec<SocketAddr>,

    /// Listen for DoH (HTTP/2 and HTTP/1.1 over TLS) on ADDR. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub listen_doh: Vec<SocketAddr>,

    /// Listen for DoH-FIPS (TLS from the FIPS 140-3 validated module; needs a build with
    /// `--features fips`) on ADDR. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub listen_doh_fips: Vec<SocketAddr>,

    /// Allow only clients in CIDR (e.g. 10.0.0.0/8, or one address) on the endpoint the
    /// --listen-* flags define (else the first endpoint); others get REFUSED. Repeatable;
    /// replaces that endpoint's configured allow-list.
    #[arg(long, value_name = "CIDR")]
    pub allow_from: Vec<String>,

    /// Limit each client /24 (IPv4) or /56 (IPv6) to QPS queries per second (burst 2 x QPS)
    /// over UDP and DoH on the endpoint the --listen-* flags define (else the first); over it,
    /// REFUSED (HTTP 429 over DoH).
    #[arg(long, value_name = "QPS", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub rate_limit: Option<u32>,

    /// TLS certificate chain (PEM) for the DoH listeners given on the command line.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for the DoH listeners given on the command line.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Default resolver TARGET (for names no rule forwards and for system rules). Repeatable;
    /// replaces the configured ones.
    #[arg(long, value_name = "TARGET")]
    pub upstream: Vec<String>,

    /// Forward DOMAIN and the names below it to TARGET(s), e.g. corp.example=10.0.0.2,10.0.0.3.
    /// Repeatable; replaces a configured rule for the same domain.
    #[arg(long, value_name = "DOMAIN=TARGET[,TARGET...]")]
    pub forward: Vec<String>,

    /// Resolve DOMAIN with the default resolver even below a broader --forward. Repeatable.
    #[arg(long, value_name = "DOMAIN")]
    pub system: Vec<String>,

    /// CA certificates (PEM) to trust for DoH targets given on the command line.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Block DOMAIN with NXDOMAIN on every endpoint, before any configured firewall rule group:
    /// `x.example` blocks that name, `*.x.example` the names below it, `*` every name.
    /// Repeatable.
    #[arg(long, value_name = "DOMAIN")]
    pub block: Vec<String>,

    /// Admin listener address (/metrics, /healthz, /readyz).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,

    /// Turn the answer cache off (overrides [cache] enabled): every query goes to a target.
    #[arg(long)]
    pub no_cache: bool,

    /// Worker threads serving the Do53 and DoH listeners (overrides [runtime] threads).
    /// Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=config::MAX_THREADS))]
    pub threads: Option<u64>,

    /// Log every query as one JSON line (Route 53 Resolver query log fields) to FILE, or to
    /// standard output with `-`; see docs/query-logs.md. Overrides [query_log] path.
    #[arg(long, value_name = "FILE")]
    pub query_log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print a dohgate configuration made from another DNS forwarder's.
    ///
    /// Reads Route 53 Resolver's AWS CLI output, a Corefile, a dnsproxy upstream file,
    /// unbound.conf or dnsmasq.conf, and prints the configuration (which check-config accepts)
    /// on standard output; every entry that cannot be carried over is listed on standard
    /// error, one line each. Exits 2 when a file is not what KIND reads. See docs/import.md.
    Import {
        /// What the files are.
        #[arg(value_enum)]
        kind: ImportKind,
        /// The files to read (for route53, any mix of list-* outputs).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// An error in a command-line flag.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct FlagError {
    pub flag: &'static str,
    pub message: String,
}

fn flag_err(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        message: message.into(),
    }
}

/// The name of the outbound endpoint that rules given on the command line use.
pub const CLI_OUTBOUND: &str = "cli";

impl Cli {
    /// The configuration to run: the file (or the embedded default) with the flags applied.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => config::load(path)?,
            None => config::parse(EMBEDDED_DEFAULT, None)?,
        };
        self.apply(&mut config)?;
        Ok(config)
    }

    /// Applies the flags to `config`.
    pub fn apply(&self, config: &mut Config) -> Result<(), FlagError> {
        if !self.listen_do53.is_empty()
            || !self.listen_doh.is_empty()
            || !self.listen_doh_fips.is_empty()
        {
            if config.inbound.is_empty() {
                config.inbound.push(InboundEndpoint::new("default"));
            }
            let ep = &mut config.inbound[0];
            ep.do53 = self.listen_do53.clone();
            ep.doh = self.listen_doh.clone();
            ep.doh_fips = self.listen_doh_fips.clone();
            ep.doh_plain.clear();
            ep.derive_protocols();
        }
        if !self.allow_from.is_empty() {
            let mut nets = Vec::with_capacity(self.allow_from.len());
            for a in &self.allow_from {
                let net = dohgate_core::acl::parse_net(a).ok_or_else(|| {
                    flag_err(
                        "--allow-from",
                        format!("{a:?} is not a CIDR such as 10.0.0.0/8 or an address"),
                    )
                })?;
                nets.push(net);
            }
            cli_endpoint(config, "--allow-from")?.allow = nets;
        }
        if let Some(qps) = self.rate_limit {
            cli_endpoint(config, "--rate-limit")?.rate_limit =
                Some(dohgate_core::ratelimit::RateLimitConfig {
                    qps,
                    burst: qps.saturating_mul(2),
                    ..Default::default()
                });
        }
        if let Some(n) = self.threads {
            config.threads = Some(n as usize);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            cli_endpoint(config, "--tls-cert")?.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        if self.upstream.len() > config::MAX_RULE_TARGETS {
            return Err(flag_err(
                "--upstream",
                format!("at most {} targets", config::MAX_RULE_TARGETS),
            ));
        }
        if !self.upstream.is_empty() {
            let mut targets = Vec::new();
            for t in &self.upstream {
                targets.push(self.target("--upstream", t)?);
            }
            config.resolver.targets = targets;
            config.resolver.from_system = false;
        }
        for f in &self.forward {
            let (domain, targets) = f.split_once('=').ok_or_else(|| {
                flag_err(
                    "--forward",
                    format!("{f:?} is not DOMAIN=TARGET[,TARGET...]"),
                )
            })?;
            check_domain("--forward", domain)?;
            let targets = targets
                .split(',')
                .map(|t| self.target("--forward", t))
                .collect::<Result<Vec<_>, _>>()?;
            if targets.is_empty() || targets.len() > config::MAX_RULE_TARGETS {
                return Err(flag_err(
                    "--forward",
                    format!("give 1 to {} targets", config::MAX_RULE_TARGETS),
                ));
            }
            let mut rule = ForwardingRule::forward(&canonical_domain(domain), domain, targets);
            rule.outbound = Some(CLI_OUTBOUND.to_string());
            replace_rule(config, rule);
            if config.outbound(CLI_OUTBOUND).is_none() {
                config.outbound.push(OutboundEndpoint {
                    name: CLI_OUTBOUND.to_string(),
                    protocols: ProtocolSet::ALL,
                    ca_file: self.ca_file.clone(),
                    client_cert: None,
                });
            }
        }
        for d in &self.system {
            check_domain("--system", d)?;
            replace_rule(config, ForwardingRule::system(&canonical_domain(d), d));
        }
        config
            .firewall
            .block(&self.block)
            .map_err(|e| flag_err("--block", e))?;
        if let Some(admin) = self.admin {
            config.admin = Some(admin);
        }
        if self.no_cache {
            config.cache.enabled = false;
        }
        if let Some(path) = &self.query_log {
            if path.is_empty() {
                return Err(flag_err(
                    "--query-log",
                    "give a file, or - for standard output",
                ));
            }
            config.query_log.dest = Some(config::QueryLogDest::parse(path));
        }
        Ok(())
    }

    fn target(&self, flag: &'static str, s: &str) -> Result<TargetSpec, FlagError> {
        let mut t = TargetSpec::parse(s).map_err(|e| flag_err(flag, e))?;
        if t.protocol != Protocol::Do53 && t.ca_file.is_none() {
            t.ca_file = self.ca_file.clone();
        }
        Ok(t)
    }
}

/// The endpoint the endpoint flags apply to: the one the `--listen-*` flags define, else the
/// first configured one.
fn cli_endpoint<'c>(
    config: &'c mut Config,
    flag: &'static str,
) -> Result<&'c mut InboundEndpoint, FlagError> {
    config
        .inbound
        .first_mut()
        .ok_or_else(|| flag_err(flag, "there is no inbound endpoint to use it"))
}

fn check_domain(flag: &'static str, domain: &str) -> Result<(), FlagError> {
    wire::name_to_wire(domain)
        .map(|_| ())
        .map_err(|_| flag_err(flag, format!("{domain:?} is not a domain name")))
}

fn replace_rule(config: &mut Config, rule: ForwardingRule) {
    config.rules.retain(|r| r.domain != rule.domain);
    config.rules.push(rule);
}

/// The effective configuration in a form people read (for `check-config`).
pub fn describe(config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "admin: {}",
        config.admin.map_or("off".to_string(), |a| a.to_string())
    );
    let resolver = if config.resolver.from_system {
        "nameservers of /etc/resolv.conf".to_string()
    } else {
        config
            .resolver
            .targets
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "default resolver: {resolver}");
    let _ = writeln!(
        out,
        "locally served zones (RFC 6303): {}",
        if config.resolver.locally_served_zones {
            "answered locally"
        } else {
            "off"
        }
    );
    let t = &config.timeouts;
    let _ = writeln!(
        out,
        "timeouts: attempt {:?}, query {:?}, tcp idle {:?}, shutdown grace {:?}",
        t.attempt, t.query, t.tcp_idle, t.shutdown_grace
    );
    let c = &config.cache;
    let _ = if c.enabled {
        writeln!(
            out,
            "cache: {} bytes, TTLs {}..{} s, serve-stale {:?} (TTL {} s), prefetch {}",
            c.max_bytes,
            c.min_ttl,
            c.max_ttl,
            c.serve_stale,
            c.stale_ttl,
            if c.prefetch { "on" } else { "off" }
        )
    } else {
        writeln!(out, "cache: off")
    };
    let q = &config.query_log;
    let _ = match &q.dest {
        None => writeln!(out, "query log: off"),
        Some(config::QueryLogDest::Stdout) => writeln!(out, "query log: standard output"),
        Some(config::QueryLogDest::File(p)) => writeln!(
            out,
            "query log: {} (rotated at {} bytes, {} kept)",
            p.display(),
            q.max_bytes,
            q.keep
        ),
    };
    let rule_set = config.rule_set().ok();
    for (id, ep) in config.inbound.iter().enumerate() {
        let _ = writeln!(out, "inbound {:?} ({}):", ep.name, ep.protocols);
        let list = |a: &[SocketAddr]| {
            a.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !ep.do53.is_empty() {
            let _ = writeln!(out, "  do53 (udp+tcp): {}", list(&ep.do53));
        }
        if !ep.doh.is_empty() {
            let _ = writeln!(out, "  doh: {} path {}", list(&ep.doh), ep.doh_path);
        }
        if !ep.doh_fips.is_empty() {
            let _ = writeln!(
                out,
                "  doh-fips: {} path {}",
                list(&ep.doh_fips),
                ep.doh_path
            );
        }
        if !ep.doh_plain.is_empty() {
            let _ = writeln!(
                out,
                "  doh cleartext (h2c+http/1.1): {}",
                list(&ep.doh_plain)
            );
        }
        let allow = if ep.allow.is_empty() {
            "everyone".to_string()
        } else {
            let others = match ep.refuse {
                dohgate_core::acl::Refuse::Refused => "others REFUSED",
                dohgate_core::acl::Refuse::Drop => "others dropped",
            };
            let nets: Vec<String> = ep.allow.iter().map(|n| n.to_string()).collect();
            format!("{} ({others})", nets.join(", "))
        };
        let _ = writeln!(out, "  allow: {allow}");
        let _ = writeln!(out, "  capacity: {} queries/s", ep.capacity_qps());
        if let Some(rules) = &rule_set {
            describe_routes(&mut out, config, rules, id, ep);
        }
        describe_firewall(&mut out, config, ep);
    }
    for ob in &config.outbound {
        let _ = writeln!(out, "outbound {:?} ({})", ob.name, ob.protocols);
    }
    for r in &config.rules {
        match r.kind {
            RuleKind::Forward => {
                let targets = r
                    .targets
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    out,
                    "rule {:?}: forward {} via {} to {targets}",
                    r.name,
                    r.domain,
                    r.outbound.as_deref().unwrap_or("-")
                );
            }
            _ => {
                let _ = writeln!(out, "rule {:?}: {} {}", r.name, r.kind, r.domain);
            }
        }
    }
    out
}

/// The rules and zones an endpoint routes by (the locally served zones counted, not listed),
/// each marked with the profile it comes from.
fn describe_routes(
    out: &mut String,
    config: &Config,
    rules: &dohgate_core::RuleSet,
    id: usize,
    endpoint: &InboundEndpoint,
) {
    use std::fmt::Write;
    let Some(table) = rules.table(id) else {
        return;
    };
    let profile = endpoint
        .profile
        .as_ref()
        .and_then(|name| config.profiles.iter().find(|p| &p.name == name));
    let mut routes: Vec<&dohgate_core::ForwardingRule> =
        table.indices().filter_map(|i| rules.get(i)).collect();
    let local = routes.iter().filter(|r| r.kind == RuleKind::Local).count();
    routes.retain(|r| r.kind != RuleKind::Local);
    routes.sort_by(|a, b| a.domain.cmp(&b.domain));
    for r in routes {
        let from = profile
            .filter(|p| match r.kind {
                RuleKind::Zone => p.zones.contains(&r.name),
                _ => p.rules.contains(&r.name),
            })
            .map(|p| format!(" (profile {:?})", p.name))
            .unwrap_or_default();
        let _ = writeln!(out, "  route {} -> {} {:?}{from}", r.domain, r.kind, r.name);
    }
    if local > 0 {
        let _ = writeln!(out, "  {local} locally served zones (RFC 6303)");
    }
}

/// The rule groups an endpoint evaluates, in order, with their rules.
fn describe_firewall(out: &mut String, config: &Config, endpoint: &InboundEndpoint) {
    use std::fmt::Write;
    let fw = &config.firewall;
    let policy = fw.policy_for(&endpoint.name, endpoint.profile.as_deref());
    if policy.is_empty() {
        let _ = writeln!(out, "  firewall: off");
        return;
    }
    let _ = writeln!(
        out,
        "  firewall (fail {}):",
        if fw.fail_open { "open" } else { "closed" }
    );
    for &(priority, g) in policy.groups() {
        let Some(group) = fw.engine.groups().get(g) else {
            continue;
        };
        let _ = writeln!(
            out,
            "    rule group {:?} (priority {priority}):",
            group.name
        );
        for r in group.rules() {
            let list = fw.list_names.get(r.list).map_or("?", String::as_str);
            let mut line = format!("      {} {:?}: {} {:?}", r.priority, r.name, r.action, list);
            if let Some(t) = r.qtype {
                let _ = write!(line, " qtype {t}");
            }
            if r.action == dohgate_core::firewall::FirewallAction::Block {
                let _ = match &r.block_response {
                    dohgate_core::firewall::BlockResponse::NoData => write!(line, " -> nodata"),
                    dohgate_core::firewall::BlockResponse::NxDomain => write!(line, " -> nxdomain"),
                    dohgate_core::firewall::BlockResponse::Override { domain, ttl } => write!(
                        line,
                        " -> override {} ttl {ttl}",
                        wire::name_to_string(domain)
                    ),
                };
            } else if r.redirection == dohgate_core::firewall::Redirection::Trust {
                line.push_str(", trusts redirections");
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("dohgate").chain(args.iter().copied()))
    }

    #[test]
    fn embedded_default_is_what_the_readme_says() {
        let c = cli(&[]).load_config().expect("embedded default is valid");
        assert_eq!(
            c.inbound[0].do53,
            vec!["127.0.0.1:5353".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            c.inbound[0].doh,
            vec!["127.0.0.1:8443".parse::<SocketAddr>().expect("addr")]
        );
        assert!(c.inbound[0].tls.is_none());
        assert_eq!(c.admin, Some("127.0.0.1:9153".parse().expect("addr")));
        assert!(c.resolver.from_system);
        assert!(c.resolver.locally_served_zones);
    }

    #[test]
    fn flags_override_the_file() {
        let c = cli(&[
            "--listen-do53",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:5300",
            "--forward",
            "corp.test=127.0.0.1:5301,[::1]:5302",
            "--system",
            "www.corp.test",
            "--admin",
            "127.0.0.1:0",
        ])
        .load_config()
        .expect("valid");
        assert_eq!(c.inbound[0].do53.len(), 1);
        assert!(c.inbound[0].doh.is_empty());
        assert_eq!(c.resolver.targets[0].addr.port(), 5300);
        assert!(!c.resolver.from_system);
        let rules = c.rule_set().expect("rules");
        assert_eq!(
            rules.match_name("a.corp.test").map(|r| r.targets.len()),
            Some(2)
        );
        assert_eq!(
            rules.match_name("www.corp.test").map(|r| r.kind),
            Some(RuleKind::System)
        );
    }

    #[test]
    fn query_log_flag_sets_the_destination() {
        let c = cli(&["--query-log", "-"]).load_config().expect("valid");
        assert_eq!(c.query_log.dest, Some(config::QueryLogDest::Stdout));
        let c = cli(&["--query-log", "/var/log/dohgate/queries.log"])
            .load_config()
            .expect("valid");
        assert_eq!(
            c.query_log.dest,
            Some(config::QueryLogDest::File(PathBuf::from(
                "/var/log/dohgate/queries.log"
            )))
        );
        let off = cli(&[]).load_config().expect("valid");
        assert!(off.query_log.dest.is_none());
        assert!(describe(&c).contains("query log: /var/log/dohgate/queries.log"));
    }

    #[test]
    fn no_cache_flag_turns_the_cache_off() {
        let on = cli(&[]).load_config().expect("valid");
        assert!(on.cache.enabled, "the cache is on by default");
        let off = cli(&["--no-cache"]).load_config().expect("valid");
        assert!(!off.cache.enabled);
        assert!(describe(&off).contains("cache: off"));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let e = cli(&["--forward", "corp.test"])
            .load_config()
            .expect_err("bad");
        assert!(e.to_string().starts_with("--forward"), "{e}");
        let e = cli(&["--upstream", "dns.example"])
            .load_config()
            .expect_err("bad");
        assert!(e.to_string().starts_with("--upstream"), "{e}");
        let e = cli(&["--block", "a..b"]).load_config().expect_err("bad");
        assert!(e.to_string().starts_with("--block"), "{e}");
        let e = cli(&["--allow-from", "10.0.0.0/33"])
            .load_config()
            .expect_err("bad");
        assert!(e.to_string().starts_with("--allow-from"), "{e}");
    }

    #[test]
    fn block_flag_adds_a_rule_group_every_endpoint_evaluates_first() {
        let plain = cli(&[]).load_config().expect("valid");
        assert!(describe(&plain).contains("firewall: off"));
        let c = cli(&["--block", "*.ads.example", "--block", "tracker.example"])
            .load_config()
            .expect("valid");
        let policy = c.firewall.policy_for(&c.inbound[0].name, None);
        assert_eq!(policy.groups().len(), 1);
        let text = describe(&c);
        assert!(
            text.contains("rule group \"cli-block\" (priority 0)"),
            "{text}"
        );
        assert!(text.contains("block \"cli-block\" -> nxdomain"), "{text}");
        let list = &c.firewall.engine.lists()[0];
        assert!(list.matches_name("x.ads.example") && list.matches_name("tracker.example"));
    }
}
