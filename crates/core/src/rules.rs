//! Forwarding rules with Route 53 Resolver semantics.
//!
//! A rule covers its domain and every name below it; when several rules match a name, the one
//! with the most specific (longest) domain wins. Matching is case-insensitive and label-wise, so
//! `corp.test` covers `a.corp.test` but not `evilcorp.test`; `.` covers every name. A lookup costs
//! one hash probe per label of the query name, whatever the number of rules.
//!
//! Rules and local zones may apply to some inbound endpoints only, directly or through a
//! profile, so each endpoint routes by a [`RouteTable`] of its own: the domains it sees, each
//! to an index into the one shared list of rules, resolved once at start.

use std::collections::HashMap;
use std::fmt;

use crate::local::LOCALLY_SERVED_ZONES;
use crate::target::TargetSpec;
use crate::wire;

/// What a rule does with the names it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Send to the rule's targets (Route 53 `FORWARD`).
    Forward,
    /// Resolve with the default resolver, even below a broader forward rule (Route 53 `SYSTEM`).
    System,
    /// Answer locally as an RFC 6303 locally served zone (an auto-defined rule).
    Local,
    /// Answer from a configured local zone (Route 53's private hosted zone).
    Zone,
    /// Answer `resolver.arpa` (RFC 9462 discovery of designated resolvers) locally, always.
    Ddr,
}

impl RuleKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleKind::Forward => "forward",
            RuleKind::System => "system",
            RuleKind::Local => "local",
            RuleKind::Zone => "zone",
            RuleKind::Ddr => "ddr",
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One forwarding rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardingRule {
    /// The rule's name, used in metrics and logs.
    pub name: String,
    /// The domain in lower-case presentation format with a trailing dot (`corp.test.`, `.`).
    pub domain: String,
    pub kind: RuleKind,
    /// The outbound endpoint whose protocols the targets use (forward rules).
    pub outbound: Option<String>,
    /// Where a forward rule sends queries; tried from a random first one, then the others.
    pub targets: Vec<TargetSpec>,
    /// Whether answers to the names it covers may be cached (`cache = false` opts out).
    pub cache: bool,
    /// The inbound endpoints the rule applies to; `None`: every one (unless a profile lists
    /// it, which then decides).
    pub inbound: Option<Vec<String>>,
}

impl ForwardingRule {
    pub fn forward(name: &str, domain: &str, targets: Vec<TargetSpec>) -> Self {
        ForwardingRule {
            name: name.to_string(),
            domain: canonical_domain(domain),
            kind: RuleKind::Forward,
            outbound: None,
            targets,
            cache: true,
            inbound: None,
        }
    }

    pub fn system(name: &str, domain: &str) -> Self {
        ForwardingRule {
            name: name.to_string(),
            domain: canonical_domain(domain),
            kind: RuleKind::System,
            outbound: None,
            targets: Vec::new(),
            cache: true,
            inbound: None,
        }
    }
}

/// Lower-case with a trailing dot: the form rules are compared and shown in.
pub fn canonical_domain(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        ".".to_string()
    } else {
        format!("{d}.")
    }
}

/// An error building a rule set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    #[error("rule {rule:?}: domain {domain:?} is not a valid domain name")]
    BadDomain { rule: String, domain: String },
    #[error("rules {first:?} and {second:?} are both for domain {domain:?}")]
    Duplicate {
        first: String,
        second: String,
        domain: String,
    },
}

/// One inbound endpoint's routing: the domains it routes by, each to an index into the
/// gateway's list of rules.
#[derive(Clone, Default)]
pub struct RouteTable {
    /// Lower-case wire-format domain -> index into the rules.
    by_domain: HashMap<Box<[u8]>, usize>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("domains", &self.by_domain.len())
            .finish()
    }
}

impl RouteTable {
    /// Routes `domain` (lower-case wire format) to rule `index`; returns the index it replaces.
    pub fn insert(&mut self, domain: Box<[u8]>, index: usize) -> Option<usize> {
        self.by_domain.insert(domain, index)
    }

    /// The index of the most specific rule covering a wire-format name (any case).
    pub fn match_wire(&self, name: &[u8]) -> Option<usize> {
        if self.by_domain.is_empty() {
            return None;
        }
        let mut buf = [0u8; 255];
        let lower = wire::lowercase_name(name, &mut buf);
        let mut at = 0;
        loop {
            let suffix = lower.get(at..)?;
            if let Some(&i) = self.by_domain.get(suffix) {
                return Some(i);
            }
            let len = *suffix.first()? as usize;
            if len == 0 {
                return None;
            }
            at += 1 + len;
        }
    }

    /// The rule indices this table routes to, in no particular order.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_domain.values().copied()
    }
}

/// The forwarding rules of a gateway, indexed for lookup: one [`RouteTable`] for every inbound
/// endpoint, or one shared by all.
#[derive(Clone, Default)]
pub struct RuleSet {
    rules: Vec<ForwardingRule>,
    /// By inbound endpoint id; an id past the end uses the first (a set built by
    /// [`RuleSet::new`] has one table for everyone).
    tables: Vec<RouteTable>,
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("tables", &self.tables.len())
            .finish()
    }
}

impl RuleSet {
    /// Indexes `rules` for every endpoint alike; two rules for the same domain are an error.
    pub fn new(rules: Vec<ForwardingRule>) -> Result<Self, RuleSetError> {
        let mut table = RouteTable::default();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(prev) = table.insert(rule_domain(rule)?, i) {
                return Err(RuleSetError::Duplicate {
                    first: rules[prev].name.clone(),
                    second: rule.name.clone(),
                    domain: rule.domain.clone(),
                });
            }
        }
        Ok(RuleSet {
            rules,
            tables: vec![table],
        })
    }

    /// Like [`RuleSet::new`], plus the auto-defined rules that answer RFC 6303 locally served
    /// zones (and `localhost`, `invalid`) locally. A configured rule for the same domain
    /// replaces the auto-defined one, as in Route 53.
    pub fn with_locally_served_zones(mut rules: Vec<ForwardingRule>) -> Result<Self, RuleSetError> {
        let configured: std::collections::HashSet<String> =
            rules.iter().map(|r| r.domain.clone()).collect();
        rules.extend(locally_served_rules().filter(|r| !configured.contains(&r.domain)));
        RuleSet::new(rules)
    }

    /// A set whose endpoints route by tables of their own (by endpoint id), built by the
    /// configuration from rule, zone and profile associations.
    pub fn scoped(rules: Vec<ForwardingRule>, tables: Vec<RouteTable>) -> Self {
        RuleSet { rules, tables }
    }

    pub fn rules(&self) -> &[ForwardingRule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&ForwardingRule> {
        self.rules.get(index)
    }

    /// The table endpoint `endpoint` routes by.
    pub fn table(&self, endpoint: usize) -> Option<&RouteTable> {
        self.tables.get(endpoint).or_else(|| self.tables.first())
    }

    /// The most specific rule covering a wire-format name (any case) for endpoint `endpoint`,
    /// with its index.
    pub fn match_for(&self, endpoint: usize, name: &[u8]) -> Option<(usize, &ForwardingRule)> {
        let i = self.table(endpoint)?.match_wire(name)?;
        Some((i, self.rules.get(i)?))
    }

    /// The most specific rule covering a wire-format name (any case) for the first endpoint.
    pub fn match_wire(&self, name: &[u8]) -> Option<(usize, &ForwardingRule)> {
        self.match_for(0, name)
    }

    /// The most specific rule covering a presentation-format name, for the first endpoint.
    pub fn match_name(&self, name: &str) -> Option<&ForwardingRule> {
        let wire = wire::name_to_wire(name).ok()?;
        self.match_wire(&wire).map(|(_, r)| r)
    }
}

/// A rule's domain in lower-case wire format, the key of a [`RouteTable`].
pub fn rule_domain(rule: &ForwardingRule) -> Result<Box<[u8]>, RuleSetError> {
    wire::name_to_wire(&rule.domain)
        .map(Vec::into_boxed_slice)
        .map_err(|_| RuleSetError::BadDomain {
            rule: rule.name.clone(),
            domain: rule.domain.clone(),
        })
}

/// The built-in rule for `resolver.arpa`, which no endpoint ever forwards (RFC 9462).
pub fn ddr_rule() -> ForwardingRule {
    ForwardingRule {
        name: "ddr".to_string(),
        domain: canonical_domain(crate::ddr::RESOLVER_ARPA),
        kind: RuleKind::Ddr,
        outbound: None,
        targets: Vec::new(),
        cache: false,
        inbound: None,
    }
}

/// The auto-defined rules of the RFC 6303 locally served zones, `localhost` and `invalid`.
pub fn locally_served_rules() -> impl Iterator<Item = ForwardingRule> {
    LOCALLY_SERVED_ZONES.iter().map(|zone| ForwardingRule {
        name: "auto-local".to_string(),
        domain: canonical_domain(zone),
        kind: RuleKind::Local,
        outbound: None,
        targets: Vec::new(),
        cache: true,
        inbound: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(addr: &str) -> Vec<TargetSpec> {
        vec![TargetSpec::parse(addr).expect("target")]
    }

    fn set() -> RuleSet {
        RuleSet::new(vec![
            ForwardingRule::forward("all", ".", t("192.0.2.1")),
            ForwardingRule::forward("corp", "Corp.Test.", t("192.0.2.2")),
            ForwardingRule::system("corp-public", "www.corp.test"),
            ForwardingRule::forward("dev", "dev.corp.test", t("192.0.2.3")),
        ])
        .expect("valid rules")
    }

    #[test]
    fn most_specific_wins_case_insensitively() {
        let s = set();
        let name = |n: &str| s.match_name(n).map(|r| r.name.as_str());
        assert_eq!(name("corp.test"), Some("corp"));
        assert_eq!(name("A.CORP.test."), Some("corp"));
        assert_eq!(name("x.dev.corp.test"), Some("dev"));
        assert_eq!(name("www.corp.test"), Some("corp-public"));
        assert_eq!(name("a.www.corp.test"), Some("corp-public"));
        assert_eq!(name("example.com"), Some("all"));
    }

    #[test]
    fn matching_is_label_wise() {
        let s = set();
        assert_eq!(
            s.match_name("evilcorp.test").map(|r| r.name.as_str()),
            Some("all")
        );
        let no_root = RuleSet::new(vec![ForwardingRule::forward(
            "corp",
            "corp.test",
            t("192.0.2.2"),
        )])
        .expect("ok");
        assert!(no_root.match_name("evilcorp.test").is_none());
        assert!(no_root.match_name("test").is_none());
    }

    #[test]
    fn duplicates_are_rejected() {
        let err = RuleSet::new(vec![
            ForwardingRule::system("a", "corp.test"),
            ForwardingRule::system("b", "CORP.test."),
        ]);
        assert!(matches!(err, Err(RuleSetError::Duplicate { .. })));
    }

    #[test]
    fn locally_served_zones_are_added_unless_configured() {
        let s = RuleSet::with_locally_served_zones(vec![ForwardingRule::forward(
            "ptr-10",
            "10.in-addr.arpa",
            t("192.0.2.9"),
        )])
        .expect("ok");
        assert_eq!(
            s.match_name("1.0.0.10.in-addr.arpa").map(|r| r.kind),
            Some(RuleKind::Forward)
        );
        assert_eq!(
            s.match_name("1.1.168.192.in-addr.arpa").map(|r| r.kind),
            Some(RuleKind::Local)
        );
        assert_eq!(
            s.match_name("localhost").map(|r| r.kind),
            Some(RuleKind::Local)
        );
        assert!(s.match_name("example.com").is_none());
    }

    #[test]
    fn hundred_thousand_rules_index_and_match() {
        let rules: Vec<_> = (0..100_000)
            .map(|i| ForwardingRule::system(&format!("r{i}"), &format!("zone{i}.corp.test")))
            .collect();
        let s = RuleSet::new(rules).expect("ok");
        assert_eq!(
            s.match_name("host.zone99999.corp.test")
                .map(|r| r.name.as_str()),
            Some("r99999")
        );
        assert!(s.match_name("zone100000.corp.test").is_none());
    }
}
