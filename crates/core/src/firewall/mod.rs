//! A Route 53-style DNS Firewall engine, free of any transport: domain lists, rule groups
//! evaluated in priority order against a question, the answers a block sends, and the reader of
//! the CNAME/DNAME chain an upstream answer redirects through.
//!
//! Evaluation follows Route 53: an endpoint's rule groups are taken in association priority
//! order, each group's rules in rule priority order, and the first rule whose domain list (and
//! query type, if set) matches decides; ALLOW and ALERT are as final as BLOCK.

mod chain;
mod list;

use std::fmt;

pub use chain::{TYPE_DNAME, answer_chain, read_name};
pub use list::{DOMAIN_LIST_FILE_KEY, DomainList};

use crate::error::WireError;
use crate::wire;

/// What a matching rule does with the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Resolve the query normally and stop evaluating.
    Allow,
    /// Resolve the query normally, but log or count it as matched.
    Alert,
    /// Answer with the rule's [`BlockResponse`] instead of resolving.
    Block,
}

impl FirewallAction {
    /// A stable label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            FirewallAction::Allow => "allow",
            FirewallAction::Alert => "alert",
            FirewallAction::Block => "block",
        }
    }
}

impl fmt::Display for FirewallAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer a BLOCK rule sends (Route 53 `BlockResponse`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BlockResponse {
    /// NOERROR with no answer records: the name exists, without data of this type.
    NoData,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// A CNAME from the query name to another domain (Route 53 OVERRIDE).
    Override {
        /// The CNAME target in lower-case wire format (`BlockOverrideDomain`).
        domain: Box<[u8]>,
        /// The CNAME's TTL in seconds (`BlockOverrideTtl`).
        ttl: u32,
    },
}

impl BlockResponse {
    /// An OVERRIDE response to a presentation-format domain (Route 53 `BlockOverrideDomain`).
    pub fn override_to(domain: &str, ttl: u32) -> Result<Self, WireError> {
        let domain = wire::name_to_wire(domain)?.into_boxed_slice();
        Ok(BlockResponse::Override { domain, ttl })
    }
}

/// Whether the names a matched answer redirects to are checked too
/// (Route 53 `FirewallDomainRedirectionAction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Redirection {
    /// Check every name of the CNAME/DNAME chain against the rules (the Route 53 default).
    #[default]
    Inspect,
    /// A query name this rule allows trusts the whole chain behind it.
    Trust,
}

/// One firewall rule: a domain list, an action and when it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirewallRule {
    /// The rule's name, for logs.
    pub name: String,
    /// Lower first; unique within its group.
    pub priority: u32,
    /// Index into the [`Firewall`]'s domain lists.
    pub list: usize,
    /// What a match does.
    pub action: FirewallAction,
    /// What a block answers; ignored for ALLOW and ALERT.
    pub block_response: BlockResponse,
    /// Whether the names an answer redirects to are checked too.
    pub redirection: Redirection,
    /// The only query type the rule applies to; `None` for every type.
    pub qtype: Option<u16>,
}

impl FirewallRule {
    /// A rule for every query type, inspecting redirections, blocking (if it blocks) with NODATA.
    pub fn new(name: &str, priority: u32, list: usize, action: FirewallAction) -> Self {
        FirewallRule {
            name: name.to_string(),
            priority,
            list,
            action,
            block_response: BlockResponse::NoData,
            redirection: Redirection::Inspect,
            qtype: None,
        }
    }
}

/// A named set of rules, kept sorted by priority so evaluation can stop at the first match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleGroup {
    /// The group's name, for logs.
    pub name: String,
    rules: Vec<FirewallRule>,
}

impl RuleGroup {
    /// Sorts `rules` by priority; two rules with one priority are an error, as in Route 53.
    pub fn new(name: &str, mut rules: Vec<FirewallRule>) -> Result<Self, FirewallError> {
        rules.sort_by_key(|r| r.priority);
        if let Some(w) = rules.windows(2).find(|w| w[0].priority == w[1].priority) {
            return Err(FirewallError::DuplicateRulePriority {
                group: name.to_string(),
                priority: w[0].priority,
            });
        }
        Ok(RuleGroup {
            name: name.to_string(),
            rules,
        })
    }

    /// The rules in evaluation (priority) order.
    pub fn rules(&self) -> &[FirewallRule] {
        &self.rules
    }
}

/// An error assembling a firewall or a policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    /// Rule priorities must be unique within a group.
    #[error("rule group {group:?} has two rules with priority {priority}")]
    DuplicateRulePriority { group: String, priority: u32 },
    /// A rule's list index is out of range.
    #[error("rule {rule:?} of group {group:?} names domain list {list}, which does not exist")]
    UnknownList {
        group: String,
        rule: String,
        list: usize,
    },
    /// Association priorities must be unique within a policy.
    #[error("two rule group associations have priority {priority}")]
    DuplicateAssociationPriority { priority: u32 },
    /// A group may be associated with a policy once.
    #[error("rule group {group} is associated twice")]
    DuplicateAssociation { group: usize },
    /// An association's group index is out of range.
    #[error("rule group {group} does not exist")]
    UnknownGroup { group: usize },
}

/// The rule that decided a query: small and `Copy`, so it can travel with the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Index of the rule group in the [`Firewall`].
    pub group: usize,
    /// Index of the rule in the group's [`RuleGroup::rules`] (priority order).
    pub rule: usize,
    /// The rule's action, so the caller need not look the rule up unless it blocks.
    pub action: FirewallAction,
    /// The rule's redirection setting, for checking the answer's CNAME/DNAME chain.
    pub redirection: Redirection,
}

/// Every domain list and rule group of a gateway; endpoints pick groups through a [`Policy`].
#[derive(Clone, Debug, Default)]
pub struct Firewall {
    lists: Vec<DomainList>,
    groups: Vec<RuleGroup>,
}

impl Firewall {
    /// Checks that every rule names an existing list.
    pub fn new(lists: Vec<DomainList>, groups: Vec<RuleGroup>) -> Result<Self, FirewallError> {
        for group in &groups {
            if let Some(rule) = group.rules.iter().find(|r| r.list >= lists.len()) {
                return Err(FirewallError::UnknownList {
                    group: group.name.clone(),
                    rule: rule.name.clone(),
                    list: rule.list,
                });
            }
        }
        Ok(Firewall { lists, groups })
    }

    /// The domain lists, indexed by [`FirewallRule::list`].
    pub fn lists(&self) -> &[DomainList] {
        &self.lists
    }

    /// The rule groups, indexed by [`Verdict::group`] and by a [`Policy`]'s associations.
    pub fn groups(&self) -> &[RuleGroup] {
        &self.groups
    }

    /// The rule a verdict names (for its block response, name and logs).
    pub fn rule(&self, verdict: &Verdict) -> Option<&FirewallRule> {
        self.groups.get(verdict.group)?.rules.get(verdict.rule)
    }

    /// The first rule of the policy's groups that matches a question: a wire-format name (any
    /// case, uncompressed, as in a query) and a query type. `None` means no rule matched.
    pub fn evaluate(&self, policy: &Policy, name: &[u8], qtype: u16) -> Option<Verdict> {
        let mut buf = [0u8; 255];
        let lower = wire::lowercase_name(name, &mut buf);
        for &(_, g) in policy.groups.iter() {
            let Some(group) = self.groups.get(g) else {
                continue;
            };
            for (r, rule) in group.rules.iter().enumerate() {
                if rule.qtype.is_some_and(|t| t != qtype) {
                    continue;
                }
                if self
                    .lists
                    .get(rule.list)
                    .is_some_and(|l| l.matches_lowercase(lower))
                {
                    return Some(Verdict {
                        group: g,
                        rule: r,
                        action: rule.action,
                        redirection: rule.redirection,
                    });
                }
            }
        }
        None
    }
}

/// The rule groups associated with one endpoint, sorted by association priority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    groups: Box<[(u32, usize)]>,
}

impl Policy {
    /// Sorts `(priority, group index)` associations; priorities and groups must be unique and
    /// every group must exist in `firewall`.
    pub fn new(firewall: &Firewall, mut groups: Vec<(u32, usize)>) -> Result<Self, FirewallError> {
        if let Some(&(_, group)) = groups.iter().find(|(_, g)| *g >= firewall.groups.len()) {
            return Err(FirewallError::UnknownGroup { group });
        }
        groups.sort_unstable();
        if let Some(w) = groups.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(FirewallError::DuplicateAssociationPriority { priority: w[0].0 });
        }
        let mut seen: Vec<usize> = groups.iter().map(|&(_, g)| g).collect();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(FirewallError::DuplicateAssociation { group: w[0] });
        }
        Ok(Policy {
            groups: groups.into_boxed_slice(),
        })
    }

    /// A policy evaluating `groups` in the order given (the caller sorted them, e.g. with its
    /// own tie-break); groups the firewall does not have are left out.
    pub fn ordered(firewall: &Firewall, mut groups: Vec<(u32, usize)>) -> Self {
        groups.retain(|&(_, g)| g < firewall.groups.len());
        Policy {
            groups: groups.into_boxed_slice(),
        }
    }

    /// The `(priority, group index)` associations in evaluation order.
    pub fn groups(&self) -> &[(u32, usize)] {
        &self.groups
    }

    /// True for a policy with no groups, under which every query is resolved unchecked.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Reads a rule's query type: a common mnemonic (any case) or `TYPEnnn` (RFC 3597).
pub fn parse_qtype(s: &str) -> Option<u16> {
    let upper = s.trim().to_ascii_uppercase();
    let code = match upper.as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "NAPTR" => 35,
        "DNAME" => 39,
        "DS" => 43,
        "RRSIG" => 46,
        "NSEC" => 47,
        "DNSKEY" => 48,
        "NSEC3" => 50,
        "TLSA" => 52,
        "SVCB" => 64,
        "HTTPS" => 65,
        "ANY" => 255,
        "CAA" => 257,
        other => {
            let digits = other.strip_prefix("TYPE")?;
            // `u16::from_str` would also take a sign and leading junk like "+1".
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return digits.parse().ok();
        }
    };
    Some(code)
}

/// Builds the answer a BLOCK rule sends: the query's ID and question as sent, QR and RA set, RD
/// and CD copied, an OPT record if the query had one; NODATA and NXDOMAIN carry no records,
/// OVERRIDE one CNAME from the query name to the override domain with the override TTL.
///
/// `q` must be what [`wire::parse_query`] read from `query`. The answer is at most 12 + 259 +
/// 12 + 255 + 11 bytes, so it always fits a 512-byte UDP answer.
pub fn block_answer(query: &[u8], q: &wire::Query, response: &BlockResponse) -> Vec<u8> {
    // `get`, not indexing: a `q` from another message yields an answer without a question
    // rather than a panic.
    let question = query.get(wire::HEADER_LEN..q.question.end);
    let rcode = match response {
        BlockResponse::NxDomain => wire::Rcode::NxDomain,
        BlockResponse::NoData | BlockResponse::Override { .. } => wire::Rcode::NoError,
    };
    // The CNAME's owner is a pointer to the question name at offset 12.
    let cname = match (response, question) {
        (BlockResponse::Override { domain, ttl }, Some(_)) => Some((domain, *ttl)),
        _ => None,
    };
    let mut out = Vec::with_capacity(
        wire::HEADER_LEN
            + question.map_or(0, <[u8]>::len)
            + cname.map_or(0, |(d, _)| 12 + d.len())
            + 11,
    );
    out.extend_from_slice(&q.id.to_be_bytes());
    let flags = wire::FLAG_QR
        | (q.flags & 0x7800)
        | (q.flags & wire::FLAG_RD)
        | wire::FLAG_RA
        | (q.flags & wire::FLAG_CD)
        | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&u16::from(cname.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    if let Some(question) = question {
        out.extend_from_slice(question);
    }
    if let Some((domain, ttl)) = cname {
        out.extend_from_slice(&[0xc0, wire::HEADER_LEN as u8]);
        out.extend_from_slice(&wire::TYPE_CNAME.to_be_bytes());
        out.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        // A wire name is at most 255 bytes.
        out.extend_from_slice(&(domain.len() as u16).to_be_bytes());
        out.extend_from_slice(domain);
    }
    if let Some(edns) = q.edns {
        wire::push_opt(&mut out, 0, edns.dnssec_ok);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(domains: &[&str]) -> DomainList {
        let mut l = DomainList::new();
        for d in domains {
            l.add(d).expect("valid domain");
        }
        l
    }

    fn name(n: &str) -> Vec<u8> {
        wire::name_to_wire(n).expect("valid name")
    }

    fn rule(name: &str, priority: u32, list: usize, action: FirewallAction) -> FirewallRule {
        FirewallRule::new(name, priority, list, action)
    }

    use FirewallAction::{Alert, Allow, Block};

    /// Lists: 0 bad.example, 1 *.example, 2 *, 3 good.example.
    fn firewall(groups: Vec<RuleGroup>) -> Firewall {
        let lists = vec![
            list(&["bad.example"]),
            list(&["*.example"]),
            list(&["*"]),
            list(&["good.example"]),
        ];
        Firewall::new(lists, groups).expect("valid firewall")
    }

    fn decided_by(
        fw: &Firewall,
        p: &Policy,
        n: &str,
        qtype: u16,
    ) -> Option<(String, FirewallAction)> {
        let v = fw.evaluate(p, &name(n), qtype)?;
        let r = fw.rule(&v).expect("verdict names a rule");
        assert_eq!(r.action, v.action);
        Some((r.name.clone(), v.action))
    }

    #[test]
    fn rules_are_evaluated_in_priority_order_within_a_group() {
        let g = RuleGroup::new(
            "g",
            vec![
                rule("block-all", 300, 2, Block),
                rule("block-bad", 100, 0, Block),
                rule("alert-example", 200, 1, Alert),
            ],
        )
        .expect("distinct priorities");
        assert_eq!(
            g.rules().iter().map(|r| r.priority).collect::<Vec<_>>(),
            [100, 200, 300]
        );
        let fw = firewall(vec![g]);
        let p = Policy::new(&fw, vec![(1, 0)]).expect("valid");
        let d = |n| decided_by(&fw, &p, n, wire::TYPE_A);
        assert_eq!(d("BAD.example"), Some(("block-bad".into(), Block)));
        assert_eq!(d("x.example"), Some(("alert-example".into(), Alert)));
        assert_eq!(d("other.test"), Some(("block-all".into(), Block)));
    }

    #[test]
    fn groups_are_evaluated_in_association_priority_order() {
        let blocker =
            RuleGroup::new("blocker", vec![rule("block-example", 1, 1, Block)]).expect("valid");
        let allower =
            RuleGroup::new("allower", vec![rule("allow-good", 1, 3, Allow)]).expect("valid");
        let fw = firewall(vec![blocker, allower]);
        // Given out of order: the allow group (priority 100) comes before the blocker (200).
        let p = Policy::new(&fw, vec![(200, 0), (100, 1)]).expect("valid");
        assert_eq!(p.groups(), [(100, 1), (200, 0)]);
        let v = fw.evaluate(&p, &name("good.example"), 1).expect("matches");
        assert_eq!((v.group, v.rule, v.action), (1, 0, Allow));
        assert_eq!(
            decided_by(&fw, &p, "bad.example", 1),
            Some(("block-example".into(), Block))
        );
        let reversed = Policy::new(&fw, vec![(100, 0), (200, 1)]).expect("valid");
        assert_eq!(
            decided_by(&fw, &reversed, "good.example", 1),
            Some(("block-example".into(), Block))
        );
        assert_eq!(fw.evaluate(&p, &name("example"), 1), None);
        assert_eq!(
            fw.evaluate(&Policy::default(), &name("bad.example"), 1),
            None
        );
    }

    #[test]
    fn allow_and_alert_shadow_a_later_block() {
        for first in [Allow, Alert] {
            let g = RuleGroup::new(
                "g",
                vec![rule("first", 10, 0, first), rule("block", 20, 2, Block)],
            )
            .expect("valid");
            let fw = firewall(vec![g]);
            let p = Policy::new(&fw, vec![(1, 0)]).expect("valid");
            assert_eq!(
                decided_by(&fw, &p, "bad.example", 1),
                Some(("first".into(), first))
            );
            assert_eq!(
                decided_by(&fw, &p, "fine.test", 1),
                Some(("block".into(), Block))
            );
        }
    }

    #[test]
    fn qtype_rules_apply_to_their_type_only() {
        let mut aaaa = rule("block-aaaa", 10, 1, Block);
        aaaa.qtype = parse_qtype("aaaa");
        let mut trust = rule("alert-rest", 20, 1, Alert);
        trust.redirection = Redirection::Trust;
        let fw = firewall(vec![RuleGroup::new("g", vec![aaaa, trust]).expect("valid")]);
        let p = Policy::new(&fw, vec![(1, 0)]).expect("valid");
        let v = fw.evaluate(&p, &name("x.example"), 28).expect("matches");
        assert_eq!(
            (v.rule, v.action, v.redirection),
            (0, Block, Redirection::Inspect)
        );
        let v = fw.evaluate(&p, &name("x.example"), 1).expect("matches");
        assert_eq!(
            (v.rule, v.action, v.redirection),
            (1, Alert, Redirection::Trust)
        );
    }

    #[test]
    fn assembly_errors() {
        let dup = RuleGroup::new("g", vec![rule("a", 5, 0, Block), rule("b", 5, 1, Allow)]);
        assert_eq!(
            dup,
            Err(FirewallError::DuplicateRulePriority {
                group: "g".into(),
                priority: 5
            })
        );
        let bad_list = RuleGroup::new("g", vec![rule("a", 5, 9, Block)]).expect("valid group");
        assert!(matches!(
            Firewall::new(vec![DomainList::new()], vec![bad_list]),
            Err(FirewallError::UnknownList { list: 9, .. })
        ));
        let g = || RuleGroup::new("g", vec![]).expect("valid");
        let fw = firewall(vec![g(), g()]);
        assert_eq!(
            Policy::new(&fw, vec![(1, 0), (1, 1)]),
            Err(FirewallError::DuplicateAssociationPriority { priority: 1 })
        );
        assert_eq!(
            Policy::new(&fw, vec![(1, 0), (2, 0)]),
            Err(FirewallError::DuplicateAssociation { group: 0 })
        );
        assert_eq!(
            Policy::new(&fw, vec![(1, 2)]),
            Err(FirewallError::UnknownGroup { group: 2 })
        );
    }

    #[test]
    fn parses_qtypes() {
        assert_eq!(parse_qtype("A"), Some(1));
        assert_eq!(parse_qtype("aaaa"), Some(28));
        assert_eq!(parse_qtype("Https"), Some(65));
        assert_eq!(parse_qtype("CAA"), Some(257));
        assert_eq!(parse_qtype("ANY"), Some(255));
        assert_eq!(parse_qtype("TYPE65"), Some(65));
        assert_eq!(parse_qtype("type65534"), Some(65534));
        for bad in ["", "TYPE", "TYPE+1", "TYPE65536", "TYPE-1", "AX", "TYPE 1"] {
            assert_eq!(parse_qtype(bad), None, "{bad:?}");
        }
    }

    /// A query with EDNS (DO set), RD and CD, for the block answer tests.
    fn blocked_query() -> (Vec<u8>, wire::Query) {
        let mut query =
            wire::build_query(0xbeef, "Bad.Example", wire::TYPE_A, Some(4096)).expect("valid");
        query[3] |= 0x10; // CD
        let opt_ttl_at = query.len() - 6;
        query[opt_ttl_at + 2] = 0x80; // DO
        let q = wire::parse_query(&query).expect("valid query");
        (query, q)
    }

    /// ID beef; QR, RD, RA, CD and `rcode`; the given counts.
    fn header(rcode: u8, ancount: u8) -> Vec<u8> {
        vec![0xbe, 0xef, 0x81, 0x90 | rcode, 0, 1, 0, ancount, 0, 0, 0, 1]
    }

    const QUESTION: &[u8] = b"\x03Bad\x07Example\x00\x00\x01\x00\x01";
    /// Root owner, OPT, payload 1232, ext rcode 0, version 0, DO, no options.
    const OPT: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn nodata_answer_bytes() {
        let (query, q) = blocked_query();
        let a = block_answer(&query, &q, &BlockResponse::NoData);
        assert_eq!(a, [header(0, 0), QUESTION.to_vec(), OPT.to_vec()].concat());
    }

    #[test]
    fn nxdomain_answer_bytes() {
        let (query, q) = blocked_query();
        let a = block_answer(&query, &q, &BlockResponse::NxDomain);
        assert_eq!(a, [header(3, 0), QUESTION.to_vec(), OPT.to_vec()].concat());
        assert_eq!(wire::rcode(&a), 3);
        assert_eq!(wire::counts(&a), [1, 0, 0, 1]);
    }

    #[test]
    fn override_answer_bytes() {
        let (query, q) = blocked_query();
        let response = BlockResponse::override_to("Walled.Garden.test.", 300).expect("valid");
        let a = block_answer(&query, &q, &response);
        let cname = [
            &[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0x01, 0x2c, 0, 20][..],
            b"\x06walled\x06garden\x04test\x00",
        ]
        .concat();
        assert_eq!(
            a,
            [header(0, 1), QUESTION.to_vec(), cname, OPT.to_vec()].concat()
        );
        assert_eq!(wire::min_ttl(&a), Some(300));
        let chain = answer_chain(&a).expect("readable");
        assert_eq!(&*chain[0], b"\x06walled\x06garden\x04test\x00");
    }

    #[test]
    fn block_answer_without_edns_has_no_opt() {
        let query = wire::build_query(7, "x.example", wire::TYPE_A, None).expect("valid");
        let q = wire::parse_query(&query).expect("valid");
        let a = block_answer(&query, &q, &BlockResponse::NoData);
        assert_eq!(wire::counts(&a), [1, 0, 0, 0]);
        assert_eq!(wire::flags(&a), 0x8180);
        assert_eq!(&a[12..], &query[12..]);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let (query, _) = blocked_query();
        let mut answer = query.clone();
        answer.truncate(answer.len() - 11);
        answer[2] |= 0x80;
        answer[10..12].fill(0);
        answer.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
        answer.extend_from_slice(&[3, b'c', b'd', b'n', 0xc0, 16]);
        answer[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(answer_chain(&answer).map(|c| c.len()), Ok(1));

        let fw = firewall(vec![
            RuleGroup::new("g", vec![rule("a", 1, 1, Alert)]).expect("valid"),
        ]);
        let p = Policy::new(&fw, vec![(1, 0)]).expect("valid");
        let over = BlockResponse::override_to("walled.test", 60).expect("valid");
        let mut out = Vec::new();
        let mut seed = 0x2545_f491_u32;
        for len in 0..=answer.len() {
            let _ = answer_chain(&answer[..len]);
        }
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut m = answer.clone();
            let at = seed as usize % m.len();
            m[at] = (seed >> 8) as u8;
            let _ = answer_chain(&m);
            let _ = read_name(&m, (seed >> 16) as usize % (m.len() + 2), &mut out);
            let name = m.get(12..).unwrap_or_default();
            let _ = fw.evaluate(&p, name, 1);
            let _ = fw.lists()[0].matches(name);
            let mut qm = query.clone();
            let at = (seed >> 4) as usize % qm.len();
            qm[at] = (seed >> 12) as u8;
            if let Ok(q) = wire::parse_query(&qm) {
                let _ = block_answer(&qm, &q, &over);
                // A `q` read from another message must not panic either.
                let _ = block_answer(&qm[..qm.len() / 2], &q, &over);
            }
        }
    }
}
