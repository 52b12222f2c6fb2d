//! `dohgate import KIND FILE...`: turns another DNS forwarder's configuration (Route 53
//! Resolver's CLI output, a Corefile, a dnsproxy upstream file, unbound.conf, dnsmasq.conf) into
//! a dohgate configuration, and lists everything it could not carry over and why.
//!
//! Each KIND has a parser of its own that feeds one [`Builder`]; the builder owns every check a
//! single entry can fail (a domain that is not a name, a second rule for one domain, a target
//! check-config would refuse), so a bad entry is left out and reported instead of spoiling the
//! whole output. The text it renders is parsed and checked as `dohgate check-config` would
//! before anyone sees it: the output is never a configuration dohgate rejects.

mod coredns;
mod dnsmasq;
mod dnsproxy;
mod route53;
mod unbound;

use std::collections::HashSet;
use std::fmt::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use dohgate_core::config;
use dohgate_core::firewall::{DomainList, parse_qtype};
use dohgate_core::rules::canonical_domain;
use dohgate_core::target::{DEFAULT_DOH_PATH, TargetSpec, parse_addr};
use dohgate_core::{Protocol, wire};

/// What `dohgate import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    /// AWS CLI JSON output of `aws route53resolver list-*` (rules, endpoints, DNS Firewall).
    Route53,
    /// A CoreDNS Corefile (`forward`, `cache`).
    Coredns,
    /// A dnsproxy / AdGuard Home upstream file (`[/domain/]upstream` lines).
    Dnsproxy,
    /// unbound.conf `forward-zone:` clauses.
    Unbound,
    /// dnsmasq.conf `server=` lines.
    Dnsmasq,
}

impl ImportKind {
    fn as_str(self) -> &'static str {
        match self {
            ImportKind::Route53 => "route53",
            ImportKind::Coredns => "coredns",
            ImportKind::Dnsproxy => "dnsproxy",
            ImportKind::Unbound => "unbound",
            ImportKind::Dnsmasq => "dnsmasq",
        }
    }
}

/// The largest input file read: far beyond any real configuration, and never a device or FIFO.
const MAX_INPUT: u64 = 256 << 20;

/// The name and address of the inbound endpoint every import gets: dohgate's embedded default
/// Do53 listener, on loopback. An import never invents addresses for the source's listeners,
/// but check-config (rightly) refuses a configuration that serves nothing.
pub const PLACEHOLDER_INBOUND: &str = "default";
pub const PLACEHOLDER_LISTEN: &str = "127.0.0.1:5353";

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The input is not what KIND reads (exit status 2). `at` is the file, and the line when
    /// there is one.
    #[error("{at}: {message}")]
    Input { at: String, message: String },
    /// The configuration built does not pass check-config: a fault of the importer, never of
    /// the input.
    #[error(
        "the imported configuration does not pass check-config (a fault in dohgate import, please report it): {0}"
    )]
    Invalid(String),
}

/// One input file.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    /// The path as given, for messages.
    pub name: String,
    pub text: String,
}

impl Source {
    fn read(path: &Path) -> Result<Source, ImportError> {
        let name = path.display().to_string();
        let text =
            config::read_small_file(path, MAX_INPUT).map_err(|message| ImportError::Input {
                at: name.clone(),
                message,
            })?;
        Ok(Source {
            path: path.to_path_buf(),
            name,
            text,
        })
    }

    /// A source from text, for tests.
    #[cfg(test)]
    fn from_text(name: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(name),
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    /// `FILE:LINE`.
    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.name)
    }

    /// The input is not what its KIND reads, at `line` if given.
    fn error(&self, line: Option<usize>, message: impl Into<String>) -> ImportError {
        ImportError::Input {
            at: line.map_or_else(|| self.name.clone(), |l| self.at(l)),
            message: message.into(),
        }
    }
}

/// What an import produced: the configuration, and on the side what it left out and notes.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    /// `FILE[:LINE]: ENTRY: why`, one per entry left out.
    pub left_out: Vec<String>,
    /// What the user should know about what was carried (no default resolver, placeholders).
    pub notes: Vec<String>,
}

/// Reads `files` as `kind` and builds the configuration.
pub fn run(kind: ImportKind, files: &[PathBuf]) -> Result<Imported, ImportError> {
    let sources = files
        .iter()
        .map(|f| Source::read(f))
        .collect::<Result<Vec<_>, _>>()?;
    import_sources(kind, &sources)
}

fn import_sources(kind: ImportKind, sources: &[Source]) -> Result<Imported, ImportError> {
    let mut b = Builder::new(kind, sources);
    match kind {
        ImportKind::Route53 => route53::import(sources, &mut b)?,
        ImportKind::Coredns => {
            for s in sources {
                coredns::import(s, &mut b)?;
            }
        }
        ImportKind::Dnsproxy => {
            for s in sources {
                dnsproxy::import(s, &mut b)?;
            }
        }
        ImportKind::Unbound => {
            for s in sources {
                unbound::import(s, &mut b)?;
            }
        }
        ImportKind::Dnsmasq => {
            for s in sources {
                dnsmasq::import(s, &mut b)?;
            }
        }
    }
    b.finish()
}

// ---------------------------------------------------------------------------------------------
// Targets and names, as every parser needs them.

/// A forwarding target: always an address (dohgate never resolves target names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// DoH: the TLS and HTTP name.
    pub server_name: Option<String>,
    /// DoH: the URL path when not `/dns-query`.
    pub path: Option<String>,
}

impl Target {
    pub fn do53(addr: SocketAddr) -> Target {
        Target {
            addr,
            protocol: Protocol::Do53,
            server_name: None,
            path: None,
        }
    }

    pub fn doh(addr: SocketAddr, path: Option<String>) -> Target {
        Target {
            addr,
            protocol: Protocol::DoH,
            server_name: None,
            path: path.filter(|p| p != DEFAULT_DOH_PATH),
        }
    }

    fn spec(&self) -> TargetSpec {
        let mut spec = TargetSpec::do53(self.addr);
        spec.protocol = self.protocol;
        spec.server_name = self.server_name.clone();
        if let Some(p) = &self.path {
            spec.path = p.clone();
        }
        spec
    }

    /// What check-config would say about it on this machine: a DoH target needs trust
    /// anchors, a DoH-FIPS one a build with the FIPS module.
    fn check(&self) -> Result<(), String> {
        if self.addr.port() == 0 {
            return Err("port 0 is no port to send queries to".to_string());
        }
        dohgate_outbound::doh::check_tls(&self.spec())
    }

    fn render(&self) -> String {
        if self.protocol == Protocol::Do53 {
            return quote(&self.addr.to_string());
        }
        let mut t = format!(
            "{{ address = {}, protocol = {}",
            quote(&self.addr.to_string()),
            quote(self.protocol.as_str())
        );
        if let Some(n) = &self.server_name {
            let _ = write!(t, ", server_name = {}", quote(n));
        }
        if let Some(p) = &self.path {
            let _ = write!(t, ", path = {}", quote(p));
        }
        t.push_str(" }");
        t
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.spec())
    }
}

/// An upstream written as an address (`IP`, `IP:PORT`, `[IPv6]:PORT`, a bare IPv6 address),
/// or why it is none: a host name gets its own reason, since that is the common case.
pub fn address(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    let addr = parse_addr(s, default_port).map_err(|_| {
        let host = s.rsplit_once(':').map_or(s, |(h, p)| {
            if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                s
            }
        });
        if is_host_name(host) {
            format!(
                "{s} names a host: dohgate never resolves target names (targets are addresses), give its address"
            )
        } else {
            format!("{s:?} is not an IP address")
        }
    })?;
    if addr.port() == 0 {
        return Err(format!("{s}: port 0 is no port to send queries to"));
    }
    Ok(addr)
}

/// True for something that reads as a DNS host name (and not an address).
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.parse::<IpAddr>().is_err()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && wire::name_to_wire(s).is_ok()
}

/// A domain as the configuration writes it: lower case, no trailing dot, `.` for the root;
/// or why it is no domain name.
pub fn domain(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an empty domain".to_string());
    }
    if t.contains('*') {
        return Err(format!(
            "{t:?}: a wildcard domain; a dohgate rule covers its domain and every name below it"
        ));
    }
    if wire::name_to_wire(t).is_err() {
        return Err(format!("{t:?} is not a domain name"));
    }
    let c = canonical_domain(t);
    Ok(if c == "." {
        c
    } else {
        c.trim_end_matches('.').to_string()
    })
}

/// True if `name` is `parent` or below it (both as [`domain`] returns them).
pub fn is_within(name: &str, parent: &str) -> bool {
    parent == "." || name == parent || name.ends_with(&format!(".{parent}"))
}

/// A name for a configuration section from the source's name for it: letters, digits, `.`,
/// `_` and `-` kept, anything else a `-`; `fallback` when nothing is left; `-2`, `-3`... when
/// `taken` has it already.
fn unique_name<'a>(taken: impl Iterator<Item = &'a str>, hint: &str, fallback: &str) -> String {
    let mut base = String::new();
    for c in hint.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            base.push(c);
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let mut base = base.trim_matches(['-', '.']).to_string();
    if base.is_empty() {
        base = fallback.to_string();
    }
    let taken: HashSet<&str> = taken.collect();
    if !taken.contains(base.as_str()) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken.contains(n.as_str()))
        .unwrap_or(base)
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A comment line (no line breaks can sneak in from the source).
fn comment(out: &mut String, text: &str) {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(out, "# {text}");
}

fn string_list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", q.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The configuration being built.

/// A forwarding rule's kind.
#[derive(Clone, Debug)]
pub enum RuleKind {
    Forward {
        outbound: String,
        targets: Vec<Target>,
    },
    System,
}

#[derive(Clone, Debug)]
struct Rule {
    name: String,
    domain: String,
    kind: RuleKind,
    cache: Option<bool>,
    origin: String,
}

#[derive(Clone, Debug)]
struct Outbound {
    name: String,
    /// `None`: the protocols its rules' targets speak.
    protocols: Option<Vec<Protocol>>,
    origin: String,
}

/// `[cache]` settings the source gave; `None` keeps dohgate's default.
#[derive(Clone, Debug, Default)]
pub struct CacheOut {
    pub enabled: Option<bool>,
    pub min_ttl: Option<u32>,
    pub max_ttl: Option<u32>,
    pub serve_stale_ms: Option<u64>,
    pub prefetch: Option<bool>,
    /// Where each setting came from, for the comment above `[cache]`.
    pub origins: Vec<String>,
}

impl CacheOut {
    fn is_empty(&self) -> bool {
        self.enabled.is_none()
            && self.min_ttl.is_none()
            && self.max_ttl.is_none()
            && self.serve_stale_ms.is_none()
            && self.prefetch.is_none()
    }
}

/// A firewall rule's action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FwAction {
    Allow,
    Alert,
    Block(BlockOut),
}

/// What a blocking firewall rule answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOut {
    NoData,
    NxDomain,
    Override { domain: String, ttl: u64 },
}

/// A firewall rule as a parser hands it over.
#[derive(Clone, Debug)]
pub struct FwRule {
    pub name_hint: String,
    pub priority: u64,
    /// The configuration name of the domain list.
    pub domain_list: String,
    pub action: FwAction,
    pub trust_redirection: bool,
    pub qtype: Option<String>,
    pub origin: String,
}

#[derive(Clone, Debug)]
struct FwRuleOut {
    name: String,
    rule: FwRule,
}

#[derive(Clone, Debug)]
struct DomainListOut {
    name: String,
    domains: Vec<String>,
    origin: String,
}

#[derive(Clone, Debug)]
struct RuleGroupOut {
    name: String,
    rules: Vec<FwRuleOut>,
    origin: String,
}

#[derive(Clone, Debug)]
struct AssociationOut {
    group: String,
    priority: u64,
    origin: String,
}

/// The configuration an import builds, and what it left out.
#[derive(Debug)]
pub struct Builder {
    kind: ImportKind,
    sources: Vec<String>,
    resolver: Vec<Target>,
    resolver_origins: Vec<String>,
    /// Set when the source itself says "the nameservers of /etc/resolv.conf" (what dohgate
    /// does without `[resolver] targets`).
    resolver_from_system: Option<String>,
    outbound: Vec<Outbound>,
    rules: Vec<Rule>,
    pub cache: CacheOut,
    lists: Vec<DomainListOut>,
    groups: Vec<RuleGroupOut>,
    associations: Vec<AssociationOut>,
    left_out: Vec<String>,
    notes: Vec<String>,
}

impl Builder {
    fn new(kind: ImportKind, sources: &[Source]) -> Builder {
        Builder {
            kind,
            sources: sources.iter().map(|s| s.name.clone()).collect(),
            resolver: Vec::new(),
            resolver_origins: Vec::new(),
            resolver_from_system: None,
            outbound: Vec::new(),
            rules: Vec::new(),
            cache: CacheOut::default(),
            lists: Vec::new(),
            groups: Vec::new(),
            associations: Vec::new(),
            left_out: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Reports `entry` (at `at`, `FILE` or `FILE:LINE`) as not carried over, and why.
    pub fn leave_out(&mut self, at: &str, entry: &str, reason: impl fmt::Display) {
        self.left_out.push(format!("{at}: {entry}: {reason}"));
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Keeps the targets check-config accepts on this machine and reports the others; at most
    /// `limit` are kept.
    fn usable_targets(
        &mut self,
        at: &str,
        entry: &str,
        targets: Vec<Target>,
        allowed: Option<&[Protocol]>,
        limit: usize,
    ) -> Vec<Target> {
        let mut kept: Vec<Target> = Vec::new();
        for t in targets {
            let why = if let Err(e) = t.check() {
                Some(e)
            } else if let Some(p) = allowed.filter(|p| !p.contains(&t.protocol)) {
                let names: Vec<&str> = p.iter().map(|p| p.as_str()).collect();
                Some(format!(
                    "its outbound endpoint speaks {} only, not {}",
                    names.join(", "),
                    t.protocol
                ))
            } else if kept.contains(&t) {
                Some("listed twice".to_string())
            } else if kept.len() == limit {
                Some(format!("dohgate takes at most {limit} targets"))
            } else {
                None
            };
            match why {
                Some(why) => self.leave_out(at, &format!("{entry}: target {t}"), why),
                None => kept.push(t),
            }
        }
        kept
    }

    /// Adds default resolver targets (`[resolver] targets`).
    pub fn add_default_targets(&mut self, at: &str, entry: &str, targets: Vec<Target>) {
        let room = config::MAX_RULE_TARGETS - self.resolver.len();
        let existing = self.resolver.clone();
        let fresh: Vec<Target> = targets
            .into_iter()
            .filter(|t| !existing.contains(t))
            .collect();
        let kept = self.usable_targets(at, entry, fresh, None, room);
        if !kept.is_empty() {
            self.resolver.extend(kept);
            self.resolver_origins.push(at.to_string());
        }
    }

    /// The source says the default resolver is /etc/resolv.conf's nameservers.
    pub fn default_from_resolv_conf(&mut self, at: &str) {
        self.resolver_from_system
            .get_or_insert_with(|| at.to_string());
    }

    /// An outbound endpoint; `protocols` `None` means the protocols of its rules' targets.
    /// Returns its configuration name.
    pub fn add_outbound(
        &mut self,
        hint: &str,
        protocols: Option<Vec<Protocol>>,
        origin: &str,
    ) -> String {
        let name = unique_name(
            self.outbound.iter().map(|o| o.name.as_str()),
            hint,
            "outbound",
        );
        self.outbound.push(Outbound {
            name: name.clone(),
            protocols,
            origin: origin.to_string(),
        });
        name
    }

    /// The one outbound endpoint, named after the KIND, that the forward rules of a source
    /// without outbound endpoints of its own go through; its protocols are those its rules'
    /// targets speak.
    pub fn shared_outbound(&mut self, origin: &str) -> String {
        let name = self.kind.as_str();
        if !self.outbound.iter().any(|o| o.name == name) {
            self.outbound.push(Outbound {
                name: name.to_string(),
                protocols: None,
                origin: origin.to_string(),
            });
        }
        name.to_string()
    }

    /// The rule already routing `domain`, if any.
    fn rule_for(&self, domain: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.domain == domain)
    }

    /// A forward rule; false (and the rule reported) when it cannot be carried. `domain` is
    /// as written in the source.
    #[allow(clippy::too_many_arguments)]
    pub fn add_forward(
        &mut self,
        at: &str,
        entry: &str,
        name_hint: &str,
        domain_text: &str,
        outbound: &str,
        targets: Vec<Target>,
        cache: Option<bool>,
    ) -> bool {
        let d = match self.check_rule_domain(domain_text) {
            Ok(d) => d,
            Err(why) => {
                self.leave_out(at, entry, why);
                return false;
            }
        };
        let allowed = self
            .outbound
            .iter()
            .find(|o| o.name == outbound)
            .and_then(|o| o.protocols.clone());
        let kept = self.usable_targets(
            at,
            entry,
            targets,
            allowed.as_deref(),
            config::MAX_RULE_TARGETS,
        );
        if kept.is_empty() {
            self.leave_out(
                at,
                entry,
                format!("none of its targets can be carried, so the names of {d} go to the default resolver"),
            );
            return false;
        }
        self.push_rule(
            name_hint,
            d,
            RuleKind::Forward {
                outbound: outbound.to_string(),
                targets: kept,
            },
            cache,
            format!("{at}: {entry}"),
        );
        true
    }

    /// A system rule (the default resolver answers, even below a forward rule).
    pub fn add_system(
        &mut self,
        at: &str,
        entry: &str,
        name_hint: &str,
        domain_text: &str,
    ) -> bool {
        match self.check_rule_domain(domain_text) {
            Ok(d) => {
                self.push_rule(
                    name_hint,
                    d,
                    RuleKind::System,
                    None,
                    format!("{at}: {entry}"),
                );
                true
            }
            Err(why) => {
                self.leave_out(at, entry, why);
                false
            }
        }
    }

    fn check_rule_domain(&self, text: &str) -> Result<String, String> {
        let d = domain(text)?;
        if let Some(r) = self.rule_for(&d) {
            return Err(format!(
                "rule {:?} ({}) routes {d} already: dohgate routes one domain one way",
                r.name, r.origin
            ));
        }
        Ok(d)
    }

    fn push_rule(
        &mut self,
        hint: &str,
        domain: String,
        kind: RuleKind,
        cache: Option<bool>,
        origin: String,
    ) {
        let fallback = if domain == "." {
            "root"
        } else {
            domain.as_str()
        };
        let name = unique_name(self.rules.iter().map(|r| r.name.as_str()), hint, fallback);
        self.rules.push(Rule {
            name,
            domain,
            kind,
            cache,
            origin,
        });
    }

    /// A firewall domain list from `domains`, each checked (bad ones reported). Returns its
    /// configuration name, or `None` when no domain is left.
    pub fn add_domain_list(
        &mut self,
        at: &str,
        entry: &str,
        hint: &str,
        domains: impl IntoIterator<Item = String>,
    ) -> Option<String> {
        let mut kept = Vec::new();
        let mut seen = HashSet::new();
        for d in domains {
            let t = d.trim().to_ascii_lowercase();
            let t = if t.len() > 1 {
                t.trim_end_matches('.').to_string()
            } else {
                t
            };
            if DomainList::new().add(&t).is_err() {
                self.leave_out(
                    at,
                    &format!("{entry}: domain {d:?}"),
                    "not a domain name (x.example, *.x.example or *)",
                );
                continue;
            }
            if seen.insert(t.clone()) {
                kept.push(t);
            }
        }
        if kept.is_empty() {
            return None;
        }
        let name = unique_name(self.lists.iter().map(|l| l.name.as_str()), hint, "list");
        self.lists.push(DomainListOut {
            name: name.clone(),
            domains: kept,
            origin: at.to_string(),
        });
        Some(name)
    }

    /// A firewall rule group; returns its configuration name.
    pub fn add_rule_group(&mut self, hint: &str, origin: &str) -> String {
        let name = unique_name(
            self.groups.iter().map(|g| g.name.as_str()),
            hint,
            "rule-group",
        );
        self.groups.push(RuleGroupOut {
            name: name.clone(),
            rules: Vec::new(),
            origin: origin.to_string(),
        });
        name
    }

    /// A rule of the group named `group`; false (and reported) when it cannot be carried.
    pub fn add_firewall_rule(&mut self, at: &str, entry: &str, group: &str, rule: FwRule) -> bool {
        let why = self.firewall_rule_problem(group, &rule);
        if let Some(why) = why {
            self.leave_out(at, entry, why);
            return false;
        }
        let Some(g) = self.groups.iter_mut().find(|g| g.name == group) else {
            return false;
        };
        let name = unique_name(
            g.rules.iter().map(|r| r.name.as_str()),
            &rule.name_hint,
            &format!("rule-{}", rule.priority),
        );
        g.rules.push(FwRuleOut { name, rule });
        true
    }

    fn firewall_rule_problem(&self, group: &str, rule: &FwRule) -> Option<String> {
        let g = self.groups.iter().find(|g| g.name == group)?;
        if rule.priority > config::MAX_PRIORITY {
            return Some(format!(
                "priority {} is above dohgate's highest, {}",
                rule.priority,
                config::MAX_PRIORITY
            ));
        }
        if let Some(other) = g.rules.iter().find(|r| r.rule.priority == rule.priority) {
            return Some(format!(
                "rule {:?} of the group has priority {} too: the first match decides, so priorities must be unique",
                other.name, rule.priority
            ));
        }
        if !self.lists.iter().any(|l| l.name == rule.domain_list) {
            return Some(format!("no domain list {:?}", rule.domain_list));
        }
        if let Some(q) = &rule.qtype
            && parse_qtype(q).is_none()
        {
            return Some(format!(
                "{q:?} is not a query type dohgate knows (A, AAAA, MX, ... or TYPEnnn)"
            ));
        }
        if let FwAction::Block(BlockOut::Override { domain, ttl }) = &rule.action {
            if wire::name_to_wire(domain).is_err() {
                return Some(format!("override domain {domain:?} is not a domain name"));
            }
            if *ttl > 604_800 {
                return Some(format!("override TTL {ttl} is above 604800"));
            }
        }
        None
    }

    /// Associates a rule group with every inbound endpoint; false (and reported) when another
    /// association has the group or the priority already.
    pub fn add_association(&mut self, at: &str, entry: &str, group: &str, priority: u64) -> bool {
        let why = self.association_problem(group, priority);
        if let Some(why) = why {
            self.leave_out(at, entry, why);
            return false;
        }
        self.associations.push(AssociationOut {
            group: group.to_string(),
            priority,
            origin: format!("{at}: {entry}"),
        });
        true
    }

    fn association_problem(&self, group: &str, priority: u64) -> Option<String> {
        if !(1..=config::MAX_PRIORITY).contains(&priority) {
            return Some(format!(
                "priority {priority} is not between 1 and {}",
                config::MAX_PRIORITY
            ));
        }
        if let Some(a) = self.associations.iter().find(|a| a.group == group) {
            return Some(format!(
                "rule group {group:?} is associated already ({}, priority {}): dohgate has no VPCs, every inbound endpoint evaluates the group once",
                a.origin, a.priority
            ));
        }
        self.associations
            .iter()
            .find(|a| a.priority == priority)
            .map(|a| {
                format!(
                    "rule group {:?} is associated at priority {priority} already ({}): dohgate has no VPCs, and one endpoint's groups need distinct priorities",
                    a.group, a.origin
                )
            })
    }

    /// Renders and checks the configuration.
    fn finish(mut self) -> Result<Imported, ImportError> {
        // An endpoint made for rules none of which could be carried.
        let rules = &self.rules;
        self.outbound.retain(|o| {
            o.protocols.is_some()
                || rules.iter().any(
                    |r| matches!(&r.kind, RuleKind::Forward { outbound, .. } if *outbound == o.name),
                )
        });
        if self.resolver.is_empty() && self.resolver_from_system.is_none() {
            self.note(
                "the input names no default resolver: names no rule covers, and system rules, go to the nameservers of /etc/resolv.conf (set [resolver] targets to choose)",
            );
        }
        self.note(format!(
            "[[inbound]] {PLACEHOLDER_INBOUND:?} listens on {PLACEHOLDER_LISTEN} only (dohgate's embedded default): set listen to the addresses your clients use"
        ));
        let toml = self.render();
        let checked = config::parse(&toml, None)
            .map_err(|e| ImportError::Invalid(e.to_string()))
            .and_then(|c| crate::check(&c).map_err(|e| ImportError::Invalid(format!("{e:#}"))));
        if let Err(e) = checked {
            return Err(match e {
                ImportError::Invalid(m) => ImportError::Invalid(format!("{m}\n{toml}")),
                other => other,
            });
        }
        Ok(Imported {
            toml,
            left_out: self.left_out,
            notes: self.notes,
        })
    }

    /// The protocols of outbound endpoint `o`: its own, or those its rules' targets speak.
    fn outbound_protocols(&self, o: &Outbound) -> Vec<Protocol> {
        if let Some(p) = &o.protocols {
            return if p.is_empty() {
                vec![Protocol::Do53]
            } else {
                p.clone()
            };
        }
        let mut p: Vec<Protocol> = Protocol::ALL
            .into_iter()
            .filter(|proto| {
                self.rules.iter().any(|r| match &r.kind {
                    RuleKind::Forward { outbound, targets } => {
                        outbound == &o.name && targets.iter().any(|t| t.protocol == *proto)
                    }
                    RuleKind::System => false,
                })
            })
            .collect();
        if p.is_empty() {
            p.push(Protocol::Do53);
        }
        p
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# dohgate configuration made by `dohgate import {}` from:",
            self.kind.as_str()
        );
        for s in &self.sources {
            comment(&mut out, &format!("  {s}"));
        }
        out.push_str(
            "# Check it with `dohgate check-config FILE`. What could not be carried over was listed\n\
             # on standard error, one line per entry.\n",
        );

        out.push('\n');
        if !self.resolver.is_empty() {
            comment(
                &mut out,
                &format!("from {}", self.resolver_origins.join(", ")),
            );
            out.push_str("[resolver]\n");
            render_targets(&mut out, &self.resolver);
        } else if let Some(at) = &self.resolver_from_system {
            comment(
                &mut out,
                &format!(
                    "{at}: the nameservers of /etc/resolv.conf, which dohgate uses when [resolver] has no targets"
                ),
            );
        } else {
            out.push_str(
                "# The input names no default resolver: without [resolver] targets dohgate uses the\n\
                 # nameservers of /etc/resolv.conf for the names no rule covers and for system rules.\n\
                 # [resolver]\n\
                 # targets = [\"192.0.2.53\"]\n",
            );
        }

        if !self.cache.is_empty() {
            out.push('\n');
            if !self.cache.origins.is_empty() {
                comment(&mut out, &format!("from {}", self.cache.origins.join(", ")));
            }
            out.push_str("[cache]\n");
            let c = &self.cache;
            if let Some(v) = c.enabled {
                let _ = writeln!(out, "enabled = {v}");
            }
            if let Some(v) = c.min_ttl {
                let _ = writeln!(out, "min_ttl = {v}");
            }
            if let Some(v) = c.max_ttl {
                let _ = writeln!(out, "max_ttl = {v}");
            }
            if let Some(v) = c.serve_stale_ms {
                let _ = writeln!(out, "serve_stale_ms = {v}");
            }
            if let Some(v) = c.prefetch {
                let _ = writeln!(out, "prefetch = {v}");
            }
        }

        out.push('\n');
        out.push_str(
            "# dohgate listens on its own addresses, not the input's: this is its embedded default\n\
             # (loopback only). Set listen (and allow) to what your clients use.\n",
        );
        let _ = writeln!(
            out,
            "[[inbound]]\nname = {}\nlisten = [{}]",
            quote(PLACEHOLDER_INBOUND),
            quote(PLACEHOLDER_LISTEN)
        );

        for o in &self.outbound {
            out.push('\n');
            comment(&mut out, &format!("from {}", o.origin));
            let protocols: Vec<String> = self
                .outbound_protocols(o)
                .iter()
                .map(|p| p.as_str().to_string())
                .collect();
            let _ = writeln!(
                out,
                "[[outbound]]\nname = {}\nprotocols = {}",
                quote(&o.name),
                string_list(&protocols)
            );
        }

        for r in &self.rules {
            out.push('\n');
            comment(&mut out, &format!("from {}", r.origin));
            let _ = writeln!(
                out,
                "[[rule]]\nname = {}\ndomain = {}",
                quote(&r.name),
                quote(&r.domain)
            );
            match &r.kind {
                RuleKind::Forward { outbound, targets } => {
                    let _ = writeln!(out, "type = \"forward\"\noutbound = {}", quote(outbound));
                    render_targets(&mut out, targets);
                }
                RuleKind::System => out.push_str("type = \"system\"\n"),
            }
            if let Some(c) = r.cache {
                let _ = writeln!(out, "cache = {c}");
            }
        }

        self.render_firewall(&mut out);
        out
    }

    fn render_firewall(&self, out: &mut String) {
        for l in &self.lists {
            out.push('\n');
            comment(out, &format!("from {}", l.origin));
            let _ = writeln!(out, "[[firewall.domain_list]]\nname = {}", quote(&l.name));
            out.push_str("domains = [\n");
            for d in &l.domains {
                let _ = writeln!(out, "    {},", quote(d));
            }
            out.push_str("]\n");
        }
        for g in &self.groups {
            out.push('\n');
            comment(out, &format!("from {}", g.origin));
            let _ = writeln!(out, "[[firewall.rule_group]]\nname = {}", quote(&g.name));
            let mut rules: Vec<&FwRuleOut> = g.rules.iter().collect();
            rules.sort_by_key(|r| r.rule.priority);
            for r in rules {
                let f = &r.rule;
                out.push('\n');
                comment(out, &format!("from {}", f.origin));
                let _ = writeln!(
                    out,
                    "[[firewall.rule_group.rule]]\nname = {}\npriority = {}\ndomain_list = {}",
                    quote(&r.name),
                    f.priority,
                    quote(&f.domain_list)
                );
                match &f.action {
                    FwAction::Allow => out.push_str("action = \"allow\"\n"),
                    FwAction::Alert => out.push_str("action = \"alert\"\n"),
                    FwAction::Block(b) => {
                        out.push_str("action = \"block\"\n");
                        match b {
                            BlockOut::NoData => out.push_str("block_response = \"nodata\"\n"),
                            BlockOut::NxDomain => out.push_str("block_response = \"nxdomain\"\n"),
                            BlockOut::Override { domain, ttl } => {
                                let _ = writeln!(
                                    out,
                                    "block_response = \"override\"\noverride = {{ domain = {}, ttl = {ttl} }}",
                                    quote(domain)
                                );
                            }
                        }
                    }
                }
                if f.trust_redirection {
                    out.push_str("redirection = \"trust\"\n");
                }
                if let Some(q) = &f.qtype {
                    let _ = writeln!(out, "qtype = {}", quote(&q.to_ascii_uppercase()));
                }
            }
        }
        for a in &self.associations {
            out.push('\n');
            comment(out, &format!("from {}", a.origin));
            let _ = writeln!(
                out,
                "[[firewall.association]]\nrule_group = {}\npriority = {}",
                quote(&a.group),
                a.priority
            );
        }
    }
}

fn render_targets(out: &mut String, targets: &[Target]) {
    out.push_str("targets = [\n");
    for t in targets {
        let _ = writeln!(out, "    {},", t.render());
    }
    out.push_str("]\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_made_unique() {
        let taken = ["corp", "corp-2"];
        assert_eq!(unique_name(taken.into_iter(), "corp", "x"), "corp-3");
        assert_eq!(
            unique_name(std::iter::empty(), "Forward to DC (prod)", "x"),
            "Forward-to-DC-prod"
        );
        assert_eq!(
            unique_name(std::iter::empty(), "  ", "fallback"),
            "fallback"
        );
    }

    #[test]
    fn domains_are_canonical() {
        assert_eq!(domain("Corp.Example.").as_deref(), Ok("corp.example"));
        assert_eq!(domain(".").as_deref(), Ok("."));
        assert!(domain("*.corp.example").is_err());
        assert!(domain("a..b").is_err());
        assert!(is_within("a.corp.example", "corp.example"));
        assert!(!is_within("evilcorp.example", "corp.example"));
    }

    #[test]
    fn addresses_and_host_names() {
        assert_eq!(
            address("192.0.2.1", 53),
            Ok("192.0.2.1:53".parse().expect("addr"))
        );
        assert_eq!(
            address("2001:db8::1", 53),
            Ok("[2001:db8::1]:53".parse().expect("addr"))
        );
        let e = address("dns.example:53", 53).expect_err("a name");
        assert!(e.contains("never resolves"), "{e}");
        let e = address("{$UPSTREAM}", 53).expect_err("junk");
        assert!(e.contains("not an IP address"), "{e}");
        assert!(address("192.0.2.1:0", 53).is_err());
    }

    #[test]
    fn quoting_survives_anything() {
        let text = format!("[[outbound]]\nname = {}\n", quote("a \"b\" \\ c\n\u{7}"));
        let c = config::parse(&text, None).expect("valid");
        assert_eq!(c.outbound[0].name, "a \"b\" \\ c\n\u{7}");
    }

    #[test]
    fn bad_entries_are_left_out_not_fatal() {
        let mut b = Builder::new(ImportKind::Dnsmasq, &[]);
        let ob = b.add_outbound("out", None, "f");
        let t = Target::do53("192.0.2.1:53".parse().expect("addr"));
        assert!(b.add_forward(
            "f:1",
            "a",
            "corp",
            "corp.example",
            &ob,
            vec![t.clone()],
            None
        ));
        assert!(!b.add_forward(
            "f:2",
            "b",
            "corp",
            "CORP.example.",
            &ob,
            vec![t.clone()],
            None
        ));
        assert!(!b.add_system("f:3", "c", "bad", "a..b"));
        assert!(!b.add_forward("f:4", "d", "empty", "lab.example", &ob, vec![], None));
        let out = b.finish().expect("valid");
        assert_eq!(out.left_out.len(), 3, "{:?}", out.left_out);
        assert!(
            out.left_out[0].starts_with("f:2: b: rule \"corp\""),
            "{:?}",
            out.left_out
        );
        assert!(out.toml.contains("domain = \"corp.example\""));
    }
}
