//! The `[firewall]` section: domain lists, rule groups and their associations with inbound
//! endpoints, in Route 53 DNS Firewall's vocabulary, validated into a [`FirewallConfig`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;
use crate::error::ConfigError;
use crate::firewall::{
    BlockResponse, DomainList, Firewall, FirewallAction, FirewallRule, Policy, Redirection,
    RuleGroup, parse_qtype,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallFile {
    /// When the firewall cannot read an answer's redirection chain: false -> SERVFAIL.
    pub fail_open: Option<bool>,
    #[serde(default)]
    pub domain_list: Vec<Spanned<DomainListFile>>,
    #[serde(default)]
    pub rule_group: Vec<Spanned<RuleGroupFile>>,
    #[serde(default)]
    pub association: Vec<Spanned<AssociationFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainListFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub domains: Vec<Spanned<String>>,
    /// One domain per line, `#` comments; relative to the configuration file.
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroupFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub rule: Vec<Spanned<FirewallRuleFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRuleFile {
    pub name: Spanned<String>,
    pub priority: Spanned<u64>,
    pub domain_list: Spanned<String>,
    pub action: Spanned<String>,
    pub block_response: Option<Spanned<String>>,
    #[serde(rename = "override")]
    pub override_to: Option<Spanned<OverrideFile>>,
    pub redirection: Option<Spanned<String>>,
    pub qtype: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideFile {
    pub domain: Option<String>,
    pub ttl: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationFile {
    pub rule_group: Spanned<String>,
    pub priority: Spanned<u64>,
    /// The inbound endpoints it applies to; absent: every one.
    pub inbound: Option<Vec<Spanned<String>>>,
}

/// The highest rule or association priority (Route 53 takes any positive integer; this bound
/// keeps every value exact in logs and metrics).
pub const MAX_PRIORITY: u64 = 1_000_000_000;

/// The association priority of the rule group `--block` adds: 0, before every configured one
/// (whose priorities start at 1).
pub const CLI_BLOCK_PRIORITY: u32 = 0;

/// The name of the domain list, rule group and rule that `--block` adds.
pub const CLI_BLOCK_NAME: &str = "cli-block";

/// The TTL of an OVERRIDE answer when `override.ttl` is not given.
pub const DEFAULT_OVERRIDE_TTL: u32 = 60;

/// A rule group associated with inbound endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    /// Index into [`Firewall::groups`].
    pub group: usize,
    pub priority: u32,
    /// The inbound endpoints it applies to; `None`: every one.
    pub inbound: Option<Vec<String>>,
    /// Set for a profile's rule group: it applies to the endpoints using that profile (and
    /// `inbound` is `None`).
    pub profile: Option<String>,
}

/// The validated firewall: the engine (shared, as its lists may be large) and which endpoint
/// evaluates which rule groups.
#[derive(Clone, Debug, Default)]
pub struct FirewallConfig {
    /// When an answer's redirection chain cannot be read: `true` passes it, `false` (the
    /// default) answers SERVFAIL.
    pub fail_open: bool,
    pub engine: Arc<Firewall>,
    /// Domain list names, by index in the engine.
    pub list_names: Vec<String>,
    pub associations: Vec<Association>,
}

impl FirewallConfig {
    /// True when no rule group is associated with any endpoint: nothing is checked.
    pub fn is_empty(&self) -> bool {
        self.associations.is_empty()
    }

    /// The rule groups an endpoint (using `profile`, if any) evaluates: its own associations
    /// and its profile's, in priority order; at one priority its own first (Route 53
    /// Profiles' precedence). A group reached both ways is evaluated once, at its first place.
    pub fn policy_for(&self, endpoint: &str, profile: Option<&str>) -> Policy {
        let mut groups: Vec<(u32, bool, usize)> = self
            .associations
            .iter()
            .filter(|a| match &a.profile {
                Some(p) => profile == Some(p.as_str()),
                None => super::routing::applies(&a.inbound, endpoint),
            })
            .map(|a| (a.priority, a.profile.is_some(), a.group))
            .collect();
        groups.sort_unstable();
        let mut seen = HashSet::new();
        let ordered = groups
            .into_iter()
            .filter(|&(_, _, g)| seen.insert(g))
            .map(|(priority, _, g)| (priority, g))
            .collect();
        Policy::ordered(&self.engine, ordered)
    }

    /// Blocks `domains` (Route 53 list syntax) with NXDOMAIN on every endpoint, through a rule
    /// group of its own evaluated before every configured one (`--block`).
    pub fn block(&mut self, domains: &[String]) -> Result<(), String> {
        if domains.is_empty() {
            return Ok(());
        }
        let mut list = DomainList::new();
        for d in domains {
            list.add(d)
                .map_err(|_| format!("{d:?} is not a domain name (x.example, *.x.example or *)"))?;
        }
        let engine = Arc::make_mut(&mut self.engine);
        let mut lists = engine.lists().to_vec();
        let mut groups = engine.groups().to_vec();
        let mut rule = FirewallRule::new(CLI_BLOCK_NAME, 0, lists.len(), FirewallAction::Block);
        rule.block_response = BlockResponse::NxDomain;
        lists.push(list);
        self.list_names.push(CLI_BLOCK_NAME.to_string());
        let group = RuleGroup::new(CLI_BLOCK_NAME, vec![rule]).map_err(|e| e.to_string())?;
        groups.push(group);
        self.associations.push(Association {
            group: groups.len() - 1,
            priority: CLI_BLOCK_PRIORITY,
            inbound: None,
            profile: None,
        });
        *engine = Firewall::new(lists, groups).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn lowercase_choice<'a>(
    cx: &Ctx<'_>,
    key: &str,
    v: &Spanned<String>,
    choices: &[&'a str],
) -> Result<&'a str, ConfigError> {
    let lower = v.get_ref().to_ascii_lowercase();
    choices
        .iter()
        .find(|c| **c == lower)
        .copied()
        .ok_or_else(|| {
            cx.err(
                key,
                v.span(),
                format!("{:?} is not one of {}", v.get_ref(), choices.join(", ")),
            )
        })
}

impl FirewallFile {
    /// Checks the section: names unique, every reference resolved, list files read, rule
    /// priorities unique within a group and association priorities unique per endpoint.
    /// `inbound` are the inbound endpoint names.
    pub(super) fn validate(
        self,
        cx: &Ctx<'_>,
        inbound: &[String],
    ) -> Result<FirewallConfig, ConfigError> {
        let mut lists = Vec::with_capacity(self.domain_list.len());
        let mut list_names = Vec::with_capacity(self.domain_list.len());
        let mut list_index = HashMap::new();
        for (i, l) in self.domain_list.iter().enumerate() {
            let key = |k: &str| format!("firewall.domain_list[{i}].{k}");
            let f = l.get_ref();
            let name = f.name.get_ref();
            cx.unique_name(&key("name"), &f.name, &mut list_index, i, "domain list")?;
            let mut list = DomainList::new();
            for (j, d) in f.domains.iter().enumerate() {
                list.add(d.get_ref()).map_err(|_| {
                    cx.err(
                        key(&format!("domains[{j}]")),
                        d.span(),
                        format!(
                            "{:?} is not a domain name (x.example, *.x.example or *)",
                            d.get_ref()
                        ),
                    )
                })?;
            }
            if let Some(file) = &f.file {
                let path = cx.path(file.get_ref());
                let text = super::read_small_file(&path, 1 << 30).map_err(|message| {
                    cx.err(
                        key("file"),
                        file.span(),
                        format!("{}: {message}", path.display()),
                    )
                })?;
                list.add_file_text(&text, &path)?;
            }
            if f.domains.is_empty() && f.file.is_none() {
                return Err(cx.err(
                    key("domains"),
                    l.span(),
                    "a domain list needs domains, a file, or both",
                ));
            }
            lists.push(list);
            list_names.push(name.clone());
        }

        let mut groups = Vec::with_capacity(self.rule_group.len());
        let mut group_index = HashMap::new();
        for (i, g) in self.rule_group.iter().enumerate() {
            let gkey = |k: &str| format!("firewall.rule_group[{i}].{k}");
            let f = g.get_ref();
            let name = f.name.get_ref();
            cx.unique_name(&gkey("name"), &f.name, &mut group_index, i, "rule group")?;
            let mut rules = Vec::with_capacity(f.rule.len());
            let mut priorities = HashSet::new();
            let mut names = HashMap::new();
            for (j, r) in f.rule.iter().enumerate() {
                let key = |k: &str| gkey(&format!("rule[{j}].{k}"));
                rules.push(rule(
                    cx,
                    (j, r),
                    &key,
                    &list_index,
                    &mut priorities,
                    &mut names,
                )?);
            }
            groups.push(
                RuleGroup::new(name, rules)
                    .map_err(|e| cx.err(gkey("rule"), g.span(), e.to_string()))?,
            );
        }

        let mut associations: Vec<Association> = Vec::with_capacity(self.association.len());
        for (i, a) in self.association.iter().enumerate() {
            let key = |k: &str| format!("firewall.association[{i}].{k}");
            let f = a.get_ref();
            let Some(&group) = group_index.get(f.rule_group.get_ref()) else {
                return Err(cx.err(
                    key("rule_group"),
                    f.rule_group.span(),
                    format!("no rule group is named {:?}", f.rule_group.get_ref()),
                ));
            };
            let priority = cx
                .within(&key("priority"), &Some(f.priority.clone()), 1, MAX_PRIORITY)?
                .unwrap_or(1) as u32;
            let inbound_names = super::routing::endpoint_list(cx, &key, &f.inbound, inbound)?;
            // Route 53 evaluates an endpoint's groups by priority: two at one priority, or one
            // group twice, would leave the order undefined.
            for (k, other) in associations.iter().enumerate() {
                let shared = inbound.iter().any(|ep| {
                    let applies =
                        |names: &Option<Vec<String>>| names.as_ref().is_none_or(|n| n.contains(ep));
                    applies(&inbound_names) && applies(&other.inbound)
                });
                if !shared {
                    continue;
                }
                if other.priority == priority {
                    return Err(cx.err(
                        key("priority"),
                        f.priority.span(),
                        format!(
                            "firewall.association[{k}] has priority {priority} too, for an endpoint both apply to"
                        ),
                    ));
                }
                if other.group == group {
                    return Err(cx.err(
                        key("rule_group"),
                        f.rule_group.span(),
                        format!(
                            "rule group {:?} is associated with an endpoint already (firewall.association[{k}])",
                            f.rule_group.get_ref()
                        ),
                    ));
                }
            }
            associations.push(Association {
                group,
                priority,
                inbound: inbound_names,
                profile: None,
            });
        }

        let engine = Firewall::new(lists, groups)
            .map_err(|e| ConfigError::new("firewall", e.to_string()))?;
        Ok(FirewallConfig {
            fail_open: self.fail_open.unwrap_or(false),
            engine: Arc::new(engine),
            list_names,
            associations,
        })
    }
}

/// One `[[firewall.rule_group.rule]]`.
fn rule(
    cx: &Ctx<'_>,
    (i, r): (usize, &Spanned<FirewallRuleFile>),
    key: &dyn Fn(&str) -> String,
    lists: &HashMap<String, usize>,
    priorities: &mut HashSet<u64>,
    names: &mut HashMap<String, usize>,
) -> Result<FirewallRule, ConfigError> {
    let f = r.get_ref();
    let name = f.name.get_ref();
    cx.unique_name(&key("name"), &f.name, names, i, "rule of this group")?;
    let priority = cx
        .within(&key("priority"), &Some(f.priority.clone()), 0, MAX_PRIORITY)?
        .unwrap_or(0);
    if !priorities.insert(priority) {
        return Err(cx.err(
            key("priority"),
            f.priority.span(),
            format!("another rule of this group has priority {priority}: the first match decides, so priorities must be unique"),
        ));
    }
    let Some(&list) = lists.get(f.domain_list.get_ref()) else {
        return Err(cx.err(
            key("domain_list"),
            f.domain_list.span(),
            format!("no domain list is named {:?}", f.domain_list.get_ref()),
        ));
    };
    let action =
        match lowercase_choice(cx, &key("action"), &f.action, &["allow", "alert", "block"])? {
            "allow" => FirewallAction::Allow,
            "alert" => FirewallAction::Alert,
            _ => FirewallAction::Block,
        };
    let mut rule = FirewallRule::new(name, priority as u32, list, action);
    if let Some(q) = &f.qtype {
        rule.qtype = Some(parse_qtype(q.get_ref()).ok_or_else(|| {
            cx.err(
                key("qtype"),
                q.span(),
                format!(
                    "{:?} is not a query type (A, AAAA, MX, ... or TYPEnnn)",
                    q.get_ref()
                ),
            )
        })?);
    }
    if let Some(red) = &f.redirection {
        rule.redirection =
            match lowercase_choice(cx, &key("redirection"), red, &["inspect", "trust"])? {
                "trust" => Redirection::Trust,
                _ => Redirection::Inspect,
            };
    }
    let response = match &f.block_response {
        Some(b) => {
            if action != FirewallAction::Block {
                return Err(cx.err(
                    key("block_response"),
                    b.span(),
                    "applies to action = \"block\" only",
                ));
            }
            lowercase_choice(
                cx,
                &key("block_response"),
                b,
                &["nodata", "nxdomain", "override"],
            )?
        }
        None => "nodata",
    };
    rule.block_response = match (response, &f.override_to) {
        ("override", Some(o)) => {
            let Some(domain) = &o.get_ref().domain else {
                return Err(cx.err(
                    key("override.domain"),
                    o.span(),
                    "block_response = \"override\" needs override.domain",
                ));
            };
            let ttl = o.get_ref().ttl.unwrap_or(u64::from(DEFAULT_OVERRIDE_TTL));
            if ttl > 604_800 {
                return Err(cx.err(
                    key("override.ttl"),
                    o.span(),
                    "must be between 0 and 604800",
                ));
            }
            BlockResponse::override_to(domain, ttl as u32).map_err(|_| {
                cx.err(
                    key("override.domain"),
                    o.span(),
                    format!("{domain:?} is not a domain name"),
                )
            })?
        }
        ("override", None) => {
            return Err(cx.err(
                key("override"),
                r.span(),
                "block_response = \"override\" needs override = { domain = \"...\", ttl = N }",
            ));
        }
        (_, Some(o)) => {
            return Err(cx.err(
                key("override"),
                o.span(),
                "applies to block_response = \"override\" only",
            ));
        }
        ("nxdomain", None) => BlockResponse::NxDomain,
        _ => BlockResponse::NoData,
    };
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use crate::config::{load, parse};
    use crate::error::ConfigError;

    const BASE: &str = "[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:53\"]\n\
                        [[inbound]]\nname = \"b\"\nlisten = [\"127.0.0.1:54\"]\n\
                        [[firewall.domain_list]]\nname = \"l\"\ndomains = [\"x.example\"]\n";

    fn rejected(extra: &str) -> ConfigError {
        parse(&format!("{BASE}{extra}"), None).expect_err("must be rejected")
    }

    fn group(rules: &str) -> String {
        format!("[[firewall.rule_group]]\nname = \"g\"\n{rules}")
    }

    fn rule(priority: u32, extra: &str) -> String {
        format!(
            "[[firewall.rule_group.rule]]\nname = \"r{priority}\"\npriority = {priority}\n\
             domain_list = \"l\"\naction = \"block\"\n{extra}\n"
        )
    }

    #[test]
    fn bad_references_and_values_name_their_key_and_line() {
        let e = rejected(&group(
            "[[firewall.rule_group.rule]]\nname = \"r\"\npriority = 1\ndomain_list = \"nope\"\naction = \"block\"\n",
        ));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].domain_list");
        assert_eq!(e.line, Some(15), "{e}");
        assert!(e.message.contains("nope"), "{e}");

        let e = rejected(&group(&format!("{}{}", rule(5, ""), rule(5, ""))));
        assert_eq!(e.key, "firewall.rule_group[0].rule[1].name");
        let e = rejected(&group(&format!(
            "{}[[firewall.rule_group.rule]]\nname = \"other\"\npriority = 5\ndomain_list = \"l\"\naction = \"allow\"\n",
            rule(5, "")
        )));
        assert_eq!(e.key, "firewall.rule_group[0].rule[1].priority");
        assert!(e.message.contains("unique"), "{e}");

        let e = rejected(&group(&rule(1, "block_response = \"override\"")));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].override");
        let e = rejected(&group(&rule(
            1,
            "block_response = \"override\"\noverride = { ttl = 5 }",
        )));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].override.domain");
        let e = rejected(&group(&rule(1, "override = { domain = \"w.example\" }")));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].override");
        let e = rejected(&group(&rule(1, "qtype = \"AAAAA\"")));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].qtype");
        let e = rejected(&group(
            "[[firewall.rule_group.rule]]\nname = \"r\"\npriority = 1\ndomain_list = \"l\"\naction = \"deny\"\n",
        ));
        assert_eq!(e.key, "firewall.rule_group[0].rule[0].action");

        let e = rejected("[[firewall.association]]\nrule_group = \"missing\"\npriority = 1\n");
        assert_eq!(e.key, "firewall.association[0].rule_group");
        let e = rejected(&format!(
            "{}[[firewall.association]]\nrule_group = \"g\"\npriority = 1\ninbound = [\"c\"]\n",
            group("")
        ));
        assert_eq!(e.key, "firewall.association[0].inbound[0]");
        let e = rejected(&format!(
            "{}[[firewall.association]]\nrule_group = \"g\"\npriority = 0\n",
            group("")
        ));
        assert!(e.message.contains("between 1 and"), "{e}");
        let e = rejected("[[firewall.domain_list]]\nname = \"m\"\ndomains = [\"a..b\"]\n");
        assert_eq!(e.key, "firewall.domain_list[1].domains[0]");
        let e = rejected("[[firewall.domain_list]]\nname = \"l\"\ndomains = [\"y.example\"]\n");
        assert!(e.message.contains("another domain list"), "{e}");
    }

    #[test]
    fn association_priorities_are_unique_per_endpoint_only() {
        let two_groups =
            "[[firewall.rule_group]]\nname = \"g\"\n[[firewall.rule_group]]\nname = \"h\"\n";
        let assoc = |group: &str, eps: &str| {
            format!("[[firewall.association]]\nrule_group = \"{group}\"\npriority = 7\n{eps}\n")
        };
        let ok = parse(
            &format!(
                "{BASE}{two_groups}{}{}",
                assoc("g", "inbound = [\"a\"]"),
                assoc("h", "inbound = [\"b\"]")
            ),
            None,
        )
        .expect("one priority on two different endpoints is fine");
        assert_eq!(ok.firewall.policy_for("a", None).groups(), &[(7, 0)]);
        assert_eq!(ok.firewall.policy_for("b", None).groups(), &[(7, 1)]);
        let e = parse(
            &format!(
                "{BASE}{two_groups}{}{}",
                assoc("g", ""),
                assoc("h", "inbound = [\"b\"]")
            ),
            None,
        )
        .expect_err("both apply to b");
        assert_eq!(e.key, "firewall.association[1].priority");
    }

    #[test]
    fn list_files_are_read_and_their_bad_lines_named() {
        let dir = std::env::temp_dir().join(format!("dohgate-fw-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("good.txt"),
            "# trusted\nalexa.example\n*.cdn.example # CDN\n",
        )
        .expect("write");
        std::fs::write(dir.join("bad.txt"), "ok.example\n\nnot a name\n").expect("write");
        let config = |file: &str| {
            format!(
                "[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:53\"]\n\
                 [[firewall.domain_list]]\nname = \"f\"\nfile = \"{file}\"\n"
            )
        };
        std::fs::write(dir.join("good.toml"), config("good.txt")).expect("write");
        let c = load(&dir.join("good.toml")).expect("a relative file is read");
        assert!(c.firewall.engine.lists()[0].matches_name("a.cdn.example"));
        assert!(c.firewall.engine.lists()[0].matches_name("alexa.example"));

        std::fs::write(dir.join("bad.toml"), config("bad.txt")).expect("write");
        let e = load(&dir.join("bad.toml")).expect_err("bad line");
        assert_eq!(
            e.file.as_deref(),
            Some(dir.join("bad.txt").as_path()),
            "{e}"
        );
        assert_eq!(e.line, Some(3), "{e}");

        std::fs::write(dir.join("dev.toml"), config("/dev/zero")).expect("write");
        let e = load(&dir.join("dev.toml")).expect_err("not a regular file");
        assert!(e.message.contains("regular file"), "{e}");
        assert_eq!(e.key, "firewall.domain_list[0].file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
