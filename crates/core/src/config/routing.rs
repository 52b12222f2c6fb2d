//! Forwarding rules, local zones and profiles: what each inbound endpoint routes by.
//!
//! Route 53 associates rules and private hosted zones with particular VPCs, directly or
//! through a profile; here an endpoint stands for the VPC. For one endpoint:
//! - a rule or zone applies when it names the endpoint in `inbound` (or names none), unless a
//!   profile lists it: then it applies through that profile's endpoints only;
//! - across the endpoint's own and its profile's, the most specific domain wins; for the same
//!   domain, the endpoint's own rule or zone wins over its profile's;
//! - two of the endpoint's own (or two of one profile's) for one domain are an error;
//! - the auto-defined locally served zones come last: any configured rule or zone for the
//!   same domain replaces them;
//! - `resolver.arpa` (RFC 9462) is always answered locally, whatever is configured.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Config, Ctx, FirewallConfig, InboundEndpoint, InboundFile, OutboundEndpoint, RuleFile,
};
use crate::error::ConfigError;
use crate::protocol::Protocol;
use crate::rules::{
    ForwardingRule, RouteTable, RuleKind, RuleSet, canonical_domain, ddr_rule,
    locally_served_rules, rule_domain,
};
use crate::wire;
use crate::zone::LocalZone;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneFile {
    pub name: Spanned<String>,
    /// The zone's apex, e.g. `infra.example`.
    pub domain: Spanned<String>,
    /// The zone in RFC 1035 master format; relative to the configuration file.
    pub file: Spanned<String>,
    /// The inbound endpoints it applies to; absent: every one.
    pub inbound: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub rules: Vec<Spanned<String>>,
    #[serde(default)]
    pub zones: Vec<Spanned<String>>,
    #[serde(default)]
    pub firewall: Vec<Spanned<ProfileAssociationFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileAssociationFile {
    pub rule_group: String,
    pub priority: u64,
}

/// The largest zone file dohgate reads.
pub const MAX_ZONE_FILE: u64 = 256 << 20;

/// A validated local zone.
#[derive(Clone, Debug)]
pub struct ZoneConfig {
    pub name: String,
    /// The apex in lower-case presentation format with a trailing dot.
    pub domain: String,
    pub file: PathBuf,
    /// The inbound endpoints it applies to; `None`: every one (unless a profile lists it).
    pub inbound: Option<Vec<String>>,
    pub zone: Arc<LocalZone>,
}

/// A validated profile: rules and zones by name (its rule groups are in the firewall's
/// associations, marked with the profile's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub rules: Vec<String>,
    pub zones: Vec<String>,
}

/// `inbound = [...]` of a rule, zone or association: every name must be an inbound endpoint.
pub(super) fn endpoint_list(
    cx: &Ctx<'_>,
    key: &dyn Fn(&str) -> String,
    list: &Option<Vec<Spanned<String>>>,
    inbound: &[String],
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = list else {
        return Ok(None);
    };
    let mut names = Vec::with_capacity(list.len());
    for (j, e) in list.iter().enumerate() {
        if !inbound.contains(e.get_ref()) {
            return Err(cx.err(
                key(&format!("inbound[{j}]")),
                e.span(),
                format!("no inbound endpoint is named {:?}", e.get_ref()),
            ));
        }
        names.push(e.get_ref().clone());
    }
    Ok(Some(names))
}

/// True if an `inbound` list (absent: every endpoint) includes `endpoint`.
pub(super) fn applies(inbound: &Option<Vec<String>>, endpoint: &str) -> bool {
    inbound
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == endpoint))
}

/// The `[[rule]]` sections.
pub(super) fn rules(
    cx: &Ctx<'_>,
    files: &[Spanned<RuleFile>],
    outbound: &[OutboundEndpoint],
    inbound: &[String],
) -> Result<Vec<ForwardingRule>, ConfigError> {
    let mut rules = Vec::with_capacity(files.len());
    let mut rule_names = HashMap::new();
    for (i, rs) in files.iter().enumerate() {
        let key = |k: &str| format!("rule[{i}].{k}");
        let f = rs.get_ref();
        cx.unique_name(&key("name"), &f.name, &mut rule_names, i, "rule")?;
        if wire::name_to_wire(f.domain.get_ref()).is_err() {
            return Err(cx.err(
                key("domain"),
                f.domain.span(),
                format!("{:?} is not a domain name", f.domain.get_ref()),
            ));
        }
        let kind = match f.kind.get_ref().to_ascii_lowercase().as_str() {
            "forward" => RuleKind::Forward,
            "system" => RuleKind::System,
            other => {
                return Err(cx.err(
                    key("type"),
                    f.kind.span(),
                    format!("{other:?} is not forward or system"),
                ));
            }
        };
        let mut rule = ForwardingRule {
            name: f.name.get_ref().clone(),
            domain: canonical_domain(f.domain.get_ref()),
            kind,
            outbound: None,
            targets: Vec::new(),
            cache: f.cache.unwrap_or(true),
            inbound: endpoint_list(cx, &key, &f.inbound, inbound)?,
        };
        if kind == RuleKind::Forward {
            let Some(ob_name) = &f.outbound else {
                return Err(cx.err(
                    key("outbound"),
                    rs.span(),
                    "a forward rule needs an outbound endpoint",
                ));
            };
            let Some(ob) = outbound.iter().find(|o| &o.name == ob_name.get_ref()) else {
                return Err(cx.err(
                    key("outbound"),
                    ob_name.span(),
                    format!("no outbound endpoint is named {:?}", ob_name.get_ref()),
                ));
            };
            if f.targets.is_empty() {
                return Err(cx.err(
                    key("targets"),
                    rs.span(),
                    "a forward rule needs at least one target",
                ));
            }
            if let Some(extra) = f.targets.get(super::MAX_RULE_TARGETS) {
                return Err(cx.err(
                    key("targets"),
                    extra.span(),
                    format!("at most {} targets per rule", super::MAX_RULE_TARGETS),
                ));
            }
            for (j, t) in f.targets.iter().enumerate() {
                let tkey = key(&format!("targets[{j}]"));
                let mut spec = cx.target(&tkey, t)?;
                if !ob.protocols.contains(spec.protocol) {
                    return Err(cx.err(
                        tkey,
                        t.span(),
                        format!(
                            "protocol {} is not one of outbound endpoint {:?}'s protocols ({})",
                            spec.protocol, ob.name, ob.protocols
                        ),
                    ));
                }
                if spec.ca_file.is_none() {
                    spec.ca_file = ob.ca_file.clone();
                }
                if spec.protocol != Protocol::Do53 {
                    spec.client_cert = ob.client_cert.clone();
                }
                rule.targets.push(spec);
            }
            rule.outbound = Some(ob.name.clone());
        } else if !f.targets.is_empty() {
            return Err(cx.err(
                key("targets"),
                f.targets[0].span(),
                "a system rule has no targets (it uses the default resolver)",
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The `[[zone]]` sections: each zone file read and parsed.
pub(super) fn zones(
    cx: &Ctx<'_>,
    files: &[Spanned<ZoneFile>],
    inbound: &[String],
) -> Result<Vec<ZoneConfig>, ConfigError> {
    let mut zones = Vec::with_capacity(files.len());
    let mut names = HashMap::new();
    for (i, z) in files.iter().enumerate() {
        let key = |k: &str| format!("zone[{i}].{k}");
        let f = z.get_ref();
        cx.unique_name(&key("name"), &f.name, &mut names, i, "zone")?;
        if wire::name_to_wire(f.domain.get_ref()).is_err() {
            return Err(cx.err(
                key("domain"),
                f.domain.span(),
                format!("{:?} is not a domain name", f.domain.get_ref()),
            ));
        }
        let domain = canonical_domain(f.domain.get_ref());
        let path = cx.path(f.file.get_ref());
        let text = super::read_small_file(&path, MAX_ZONE_FILE).map_err(|message| {
            cx.err(
                key("file"),
                f.file.span(),
                format!("{}: {message}", path.display()),
            )
        })?;
        let zone = LocalZone::parse(&domain, &text, &path)?;
        zones.push(ZoneConfig {
            name: f.name.get_ref().clone(),
            domain,
            file: path,
            inbound: endpoint_list(cx, &key, &f.inbound, inbound)?,
            zone: Arc::new(zone),
        });
    }
    Ok(zones)
}

/// The `[[profile]]` sections. A profile's rule groups become associations of `firewall`
/// marked with the profile's name.
pub(super) fn profiles(
    cx: &Ctx<'_>,
    files: &[Spanned<ProfileFile>],
    rules: &[ForwardingRule],
    zones: &[ZoneConfig],
    firewall: &mut FirewallConfig,
) -> Result<Vec<Profile>, ConfigError> {
    let mut profiles = Vec::with_capacity(files.len());
    let mut names = HashMap::new();
    let groups: HashMap<&str, usize> = firewall
        .engine
        .groups()
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.as_str(), i))
        .collect();
    let mut associations = Vec::new();
    for (i, p) in files.iter().enumerate() {
        let key = |k: &str| format!("profile[{i}].{k}");
        let f = p.get_ref();
        let name = f.name.get_ref();
        cx.unique_name(&key("name"), &f.name, &mut names, i, "profile")?;
        let mut profile = Profile {
            name: name.clone(),
            rules: Vec::new(),
            zones: Vec::new(),
        };
        for (j, r) in f.rules.iter().enumerate() {
            let Some(rule) = rules.iter().find(|x| &x.name == r.get_ref()) else {
                return Err(cx.err(
                    key(&format!("rules[{j}]")),
                    r.span(),
                    format!("no rule is named {:?}", r.get_ref()),
                ));
            };
            if rule.inbound.is_some() {
                return Err(cx.err(
                    key(&format!("rules[{j}]")),
                    r.span(),
                    format!(
                        "rule {:?} names inbound endpoints of its own; a rule a profile lists applies through the profile's endpoints only",
                        r.get_ref()
                    ),
                ));
            }
            profile.rules.push(r.get_ref().clone());
        }
        for (j, z) in f.zones.iter().enumerate() {
            let Some(zone) = zones.iter().find(|x| &x.name == z.get_ref()) else {
                return Err(cx.err(
                    key(&format!("zones[{j}]")),
                    z.span(),
                    format!("no zone is named {:?}", z.get_ref()),
                ));
            };
            if zone.inbound.is_some() {
                return Err(cx.err(
                    key(&format!("zones[{j}]")),
                    z.span(),
                    format!(
                        "zone {:?} names inbound endpoints of its own; a zone a profile lists applies through the profile's endpoints only",
                        z.get_ref()
                    ),
                ));
            }
            profile.zones.push(z.get_ref().clone());
        }
        let mut priorities = HashSet::new();
        let mut listed = HashSet::new();
        for (j, a) in f.firewall.iter().enumerate() {
            let akey = key(&format!("firewall[{j}]"));
            let af = a.get_ref();
            let Some(&group) = groups.get(af.rule_group.as_str()) else {
                return Err(cx.err(
                    akey,
                    a.span(),
                    format!("no rule group is named {:?}", af.rule_group),
                ));
            };
            if !(1..=super::MAX_PRIORITY).contains(&af.priority) {
                return Err(cx.err(
                    akey,
                    a.span(),
                    format!("priority must be between 1 and {}", super::MAX_PRIORITY),
                ));
            }
            if !priorities.insert(af.priority) || !listed.insert(group) {
                return Err(cx.err(
                    akey,
                    a.span(),
                    "each rule group once, each priority once, within a profile",
                ));
            }
            if firewall
                .associations
                .iter()
                .any(|x| x.group == group && x.profile.is_none())
            {
                return Err(cx.err(
                    akey,
                    a.span(),
                    format!(
                        "rule group {:?} has a [[firewall.association]] too; a rule group a profile lists applies through the profile's endpoints only",
                        af.rule_group
                    ),
                ));
            }
            associations.push(super::Association {
                group,
                priority: af.priority as u32,
                inbound: None,
                profile: Some(name.clone()),
            });
        }
        profiles.push(profile);
    }
    firewall.associations.extend(associations);
    Ok(profiles)
}

/// `profile = "..."` of each inbound endpoint.
pub(super) fn assign_profiles(
    cx: &Ctx<'_>,
    files: &[Spanned<InboundFile>],
    inbound: &mut [InboundEndpoint],
    profiles: &[Profile],
) -> Result<(), ConfigError> {
    for (i, (f, ep)) in files.iter().zip(inbound.iter_mut()).enumerate() {
        let Some(p) = &f.get_ref().profile else {
            continue;
        };
        if !profiles.iter().any(|x| &x.name == p.get_ref()) {
            return Err(cx.err(
                format!("inbound[{i}].profile"),
                p.span(),
                format!("no profile is named {:?}", p.get_ref()),
            ));
        }
        ep.profile = Some(p.get_ref().clone());
    }
    Ok(())
}

/// No endpoint gets two rules or zones for one domain at the same level: two of its own, or
/// two of one profile's.
pub(super) fn check_scopes(
    cx: &Ctx<'_>,
    rule_files: &[Spanned<RuleFile>],
    zone_files: &[Spanned<ZoneFile>],
    inbound: &[InboundEndpoint],
    rules: &[ForwardingRule],
    zones: &[ZoneConfig],
    profiles: &[Profile],
) -> Result<(), ConfigError> {
    let listed_rules: HashSet<&str> = profiles
        .iter()
        .flat_map(|p| p.rules.iter().map(String::as_str))
        .collect();
    let listed_zones: HashSet<&str> = profiles
        .iter()
        .flat_map(|p| p.zones.iter().map(String::as_str))
        .collect();
    // (domain, what, key, span) of everything that is some endpoint's own.
    let own = rules
        .iter()
        .zip(rule_files)
        .enumerate()
        .filter(|(_, (r, _))| !listed_rules.contains(r.name.as_str()))
        .map(|(i, (r, f))| {
            (
                &r.domain,
                format!("rule {:?}", r.name),
                &r.inbound,
                format!("rule[{i}].domain"),
                f.get_ref().domain.span(),
            )
        })
        .chain(
            zones
                .iter()
                .zip(zone_files)
                .enumerate()
                .filter(|(_, (z, _))| !listed_zones.contains(z.name.as_str()))
                .map(|(i, (z, f))| {
                    (
                        &z.domain,
                        format!("zone {:?}", z.name),
                        &z.inbound,
                        format!("zone[{i}].domain"),
                        f.get_ref().domain.span(),
                    )
                }),
        )
        .collect::<Vec<_>>();
    let mut endpoints: Vec<&str> = inbound.iter().map(|e| e.name.as_str()).collect();
    if endpoints.is_empty() {
        // Without endpoints the rules still have to make sense for any later one.
        endpoints.push("");
    }
    for ep in endpoints {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (domain, what, scope, key, span) in &own {
            if !applies(scope, ep) {
                continue;
            }
            if let Some(first) = seen.insert(domain.as_str(), what.as_str()) {
                let whom = if ep.is_empty() {
                    "every endpoint".to_string()
                } else {
                    format!("endpoint {ep:?}")
                };
                return Err(cx.err(
                    key.clone(),
                    span.clone(),
                    format!("{first} is for {domain:?} too, and both apply to {whom}"),
                ));
            }
        }
    }
    for (i, p) in profiles.iter().enumerate() {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        let entries = p
            .rules
            .iter()
            .filter_map(|n| rules.iter().find(|r| &r.name == n).map(|r| (&r.domain, n)))
            .chain(
                p.zones
                    .iter()
                    .filter_map(|n| zones.iter().find(|z| &z.name == n).map(|z| (&z.domain, n))),
            );
        for (domain, name) in entries {
            if let Some(first) = seen.insert(domain.as_str(), name.as_str()) {
                return Err(ConfigError::new(
                    format!("profile[{i}]"),
                    format!("{first:?} and {name:?} are both for {domain:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// The configuration's rules as one list (configured rules, then local zones, then the
/// locally served zones) with one [`RouteTable`] per inbound endpoint.
pub(super) fn rule_set(config: &Config) -> Result<RuleSet, ConfigError> {
    let mut all = config.rules.clone();
    for z in &config.zones {
        all.push(ForwardingRule {
            name: z.name.clone(),
            domain: z.domain.clone(),
            kind: RuleKind::Zone,
            outbound: None,
            targets: Vec::new(),
            cache: false,
            inbound: z.inbound.clone(),
        });
    }
    let configured = all.len();
    if config.resolver.locally_served_zones {
        all.extend(locally_served_rules());
    }
    // Last, so that it wins over any rule or zone for the same domain: resolver.arpa is never
    // forwarded, or clients would discover the upstream's encrypted resolver and leave.
    let ddr = all.len();
    all.push(ddr_rule());
    let mut domains = Vec::with_capacity(all.len());
    for r in &all {
        domains.push(rule_domain(r).map_err(|e| ConfigError::new("rule", e.to_string()))?);
    }
    let listed_rules: HashSet<&str> = config
        .profiles
        .iter()
        .flat_map(|p| p.rules.iter().map(String::as_str))
        .collect();
    let listed_zones: HashSet<&str> = config
        .profiles
        .iter()
        .flat_map(|p| p.zones.iter().map(String::as_str))
        .collect();
    let index_of = |name: &str, zone: bool| {
        all[..configured]
            .iter()
            .position(|r| r.name == name && (r.kind == RuleKind::Zone) == zone)
    };
    let table = |endpoint: Option<&InboundEndpoint>| {
        let mut t = RouteTable::default();
        for (i, domain) in domains.iter().enumerate().take(ddr).skip(configured) {
            t.insert(domain.clone(), i);
        }
        if let Some(p) = endpoint
            .and_then(|e| e.profile.as_ref())
            .and_then(|name| config.profiles.iter().find(|p| &p.name == name))
        {
            let picked = p
                .rules
                .iter()
                .filter_map(|n| index_of(n, false))
                .chain(p.zones.iter().filter_map(|n| index_of(n, true)));
            for i in picked {
                t.insert(domains[i].clone(), i);
            }
        }
        for (i, r) in all[..configured].iter().enumerate() {
            // Listed by a profile: it applies through that profile only.
            let listed = match r.kind {
                RuleKind::Zone => &listed_zones,
                _ => &listed_rules,
            };
            if listed.contains(r.name.as_str()) {
                continue;
            }
            if endpoint.is_none_or(|e| applies(&r.inbound, &e.name)) {
                t.insert(domains[i].clone(), i);
            }
        }
        t.insert(domains[ddr].clone(), ddr);
        t
    };
    let tables = if config.inbound.is_empty() {
        vec![table(None)]
    } else {
        config.inbound.iter().map(|e| table(Some(e))).collect()
    };
    Ok(RuleSet::scoped(all, tables))
}
