//! Route 53 Resolver: the JSON the AWS CLI prints for `aws route53resolver list-*`, any of
//! them alone or together, each file recognised by its top-level key:
//!
//! | command | key | becomes |
//! | --- | --- | --- |
//! | `list-resolver-endpoints` | `ResolverEndpoints` | OUTBOUND: `[[outbound]]` with its protocols; INBOUND: left out (dohgate listens on its own addresses) |
//! | `list-resolver-rules` | `ResolverRules` | FORWARD and SYSTEM: `[[rule]]`s (a rule's outbound endpoint by `ResolverEndpointId`); RECURSIVE and auto-defined rules: left out |
//! | `list-firewall-domain-lists` | `FirewallDomainLists` | the names of `[[firewall.domain_list]]`s |
//! | `list-firewall-domains` | `Domains` | a list's domains: the file is `<list id>.json` (or `<list name>.json`), or the object carries `"FirewallDomainListId"` |
//! | `list-firewall-rule-groups` | `FirewallRuleGroups` | `[[firewall.rule_group]]`s |
//! | `list-firewall-rules` | `FirewallRules` | their rules |
//! | `list-firewall-rule-group-associations` | `FirewallRuleGroupAssociations` | `[[firewall.association]]`s, for every inbound endpoint (dohgate has no VPCs) |

use std::collections::HashMap;

use dohgate_core::{Protocol, wire};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{BlockOut, Builder, FwAction, FwRule, ImportError, Source, Target, address};

const KEYS: [&str; 7] = [
    "ResolverRules",
    "ResolverEndpoints",
    "FirewallDomainLists",
    "Domains",
    "FirewallRuleGroups",
    "FirewallRules",
    "FirewallRuleGroupAssociations",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ResolverRule {
    id: Option<String>,
    name: Option<String>,
    domain_name: Option<String>,
    rule_type: Option<String>,
    status: Option<String>,
    target_ips: Vec<TargetAddress>,
    resolver_endpoint_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TargetAddress {
    ip: Option<String>,
    ipv6: Option<String>,
    /// An integer in the API, a string in CloudFormation: either is read.
    port: Option<Value>,
    protocol: Option<String>,
    server_name_indication: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ResolverEndpoint {
    id: Option<String>,
    name: Option<String>,
    direction: Option<String>,
    protocols: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DomainListInfo {
    id: Option<String>,
    name: Option<String>,
    managed_owner_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RuleGroupInfo {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct FirewallRuleJson {
    firewall_rule_group_id: Option<String>,
    firewall_domain_list_id: Option<String>,
    firewall_threat_protection_id: Option<String>,
    name: Option<String>,
    priority: Option<i64>,
    action: Option<String>,
    block_response: Option<String>,
    block_override_domain: Option<String>,
    block_override_dns_type: Option<String>,
    block_override_ttl: Option<i64>,
    firewall_domain_redirection_action: Option<String>,
    qtype: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AssociationJson {
    id: Option<String>,
    name: Option<String>,
    firewall_rule_group_id: Option<String>,
    priority: Option<i64>,
    vpc_id: Option<String>,
}

/// One entry of a file: where it is and how it is named in messages.
struct Item<T> {
    file: String,
    entry: String,
    value: T,
}

#[derive(Default)]
struct Inputs {
    rules: Vec<Item<ResolverRule>>,
    endpoints: Vec<Item<ResolverEndpoint>>,
    lists: Vec<Item<DomainListInfo>>,
    /// List id (or name) -> (file, domains), in file order.
    domains: Vec<(String, String, Vec<String>)>,
    groups: Vec<Item<RuleGroupInfo>>,
    fw_rules: Vec<Item<FirewallRuleJson>>,
    associations: Vec<Item<AssociationJson>>,
    saw_associations: bool,
}

/// `ResolverRules[2] "corp" (rslvr-rr-1)`.
fn entry_name(key: &str, i: usize, name: Option<&str>, id: Option<&str>) -> String {
    let mut s = format!("{key}[{i}]");
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        s.push_str(&format!(" {n:?}"));
    }
    if let Some(id) = id {
        s.push_str(&format!(" ({id})"));
    }
    s
}

fn items<T: DeserializeOwned>(
    src: &Source,
    obj: &Map<String, Value>,
    key: &str,
    name_id: impl Fn(&T) -> (Option<String>, Option<String>),
) -> Result<Vec<Item<T>>, ImportError> {
    let Some(v) = obj.get(key) else {
        return Ok(Vec::new());
    };
    let list: Vec<T> = serde_json::from_value(v.clone())
        .map_err(|e| src.error(None, format!("{key}: not what the AWS CLI prints: {e}")))?;
    Ok(list
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let (name, id) = name_id(&value);
            Item {
                file: src.name.clone(),
                entry: entry_name(key, i, name.as_deref(), id.as_deref()),
                value,
            }
        })
        .collect())
}

fn read(src: &Source, inputs: &mut Inputs, b: &mut Builder) -> Result<(), ImportError> {
    let value: Value = serde_json::from_str(&src.text).map_err(|e| {
        src.error(
            Some(e.line()).filter(|l| *l > 0),
            format!("not the JSON output of an AWS CLI route53resolver command: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(src.error(None, "not a JSON object, as the AWS CLI prints"));
    };
    if !KEYS.iter().any(|k| obj.contains_key(*k)) {
        return Err(src.error(
            None,
            format!(
                "not the output of an `aws route53resolver list-*` command this import reads: no top-level {}",
                KEYS.join(", ")
            ),
        ));
    }
    if obj.contains_key("NextToken") {
        b.note(format!(
            "{} has a NextToken: the entries of its further pages are not in it (let the AWS CLI paginate, without --max-items or --no-paginate)",
            src.name
        ));
    }
    inputs
        .rules
        .extend(items(src, &obj, "ResolverRules", |r: &ResolverRule| {
            (r.name.clone(), r.id.clone())
        })?);
    inputs.endpoints.extend(items(
        src,
        &obj,
        "ResolverEndpoints",
        |r: &ResolverEndpoint| (r.name.clone(), r.id.clone()),
    )?);
    inputs.lists.extend(items(
        src,
        &obj,
        "FirewallDomainLists",
        |r: &DomainListInfo| (r.name.clone(), r.id.clone()),
    )?);
    if let Some(d) = obj.get("Domains") {
        let domains: Vec<String> = serde_json::from_value(d.clone()).map_err(|e| {
            src.error(
                None,
                format!("Domains: not a list of domain names as list-firewall-domains prints: {e}"),
            )
        })?;
        let id = match obj.get("FirewallDomainListId") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => return Err(src.error(None, "FirewallDomainListId is not a string")),
            None => src
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| src.error(None, "Domains: name the file <domain-list-id>.json or add \"FirewallDomainListId\""))?,
        };
        inputs.domains.push((id, src.name.clone(), domains));
    }
    inputs.groups.extend(items(
        src,
        &obj,
        "FirewallRuleGroups",
        |r: &RuleGroupInfo| (r.name.clone(), r.id.clone()),
    )?);
    inputs.fw_rules.extend(items(
        src,
        &obj,
        "FirewallRules",
        |r: &FirewallRuleJson| (r.name.clone(), r.firewall_rule_group_id.clone()),
    )?);
    if obj.contains_key("FirewallRuleGroupAssociations") {
        inputs.saw_associations = true;
    }
    inputs.associations.extend(items(
        src,
        &obj,
        "FirewallRuleGroupAssociations",
        |r: &AssociationJson| (r.name.clone(), r.id.clone()),
    )?);
    Ok(())
}

pub fn import(sources: &[Source], b: &mut Builder) -> Result<(), ImportError> {
    let mut inputs = Inputs::default();
    for src in sources {
        read(src, &mut inputs, b)?;
    }
    let outbound = endpoints(b, &inputs.endpoints);
    resolver_rules(b, &inputs.rules, outbound);
    firewall(b, inputs);
    Ok(())
}

/// OUTBOUND endpoints become `[[outbound]]`s; returns their names by endpoint id.
fn endpoints(b: &mut Builder, endpoints: &[Item<ResolverEndpoint>]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for e in endpoints {
        let ep = &e.value;
        let mut protocols = Vec::new();
        for p in &ep.protocols {
            match p.parse::<Protocol>() {
                Ok(p) if !protocols.contains(&p) => protocols.push(p),
                Ok(_) => {}
                Err(err) => b.leave_out(&e.file, &format!("{}: protocol {p}", e.entry), err),
            }
        }
        match ep.direction.as_deref() {
            Some("OUTBOUND") => {
                let hint = ep
                    .name
                    .clone()
                    .or_else(|| ep.id.clone())
                    .unwrap_or_default();
                let name =
                    b.add_outbound(&hint, Some(protocols), &format!("{}: {}", e.file, e.entry));
                if let Some(id) = &ep.id {
                    names.insert(id.clone(), name);
                }
            }
            Some("INBOUND") => {
                let spoke: Vec<&str> = if protocols.is_empty() {
                    vec!["do53"]
                } else {
                    protocols.iter().map(|p| p.as_str()).collect()
                };
                b.leave_out(
                    &e.file,
                    &e.entry,
                    format!(
                        "dohgate listens on its own addresses: add [[inbound]] listen = [...] (it spoke {}: listen, listen_doh, listen_doh_fips)",
                        spoke.join(", ")
                    ),
                );
            }
            other => b.leave_out(
                &e.file,
                &e.entry,
                format!("Direction {other:?} is neither INBOUND nor OUTBOUND"),
            ),
        }
    }
    names
}

fn resolver_rules(
    b: &mut Builder,
    rules: &[Item<ResolverRule>],
    mut outbound: HashMap<String, String>,
) {
    for item in rules {
        let r = &item.value;
        let (file, entry) = (item.file.as_str(), item.entry.as_str());
        if let Some(s @ ("FAILED" | "DELETING")) = r.status.as_deref() {
            b.leave_out(file, entry, format!("its Status is {s}"));
            continue;
        }
        let hint = r.name.clone().or_else(|| r.id.clone()).unwrap_or_default();
        let Some(domain) = r.domain_name.as_deref() else {
            b.leave_out(file, entry, "it has no DomainName");
            continue;
        };
        let autodefined =
            r.id.as_deref()
                .is_some_and(|id| id.starts_with("rslvr-autodefined-"));
        match r.rule_type.as_deref() {
            Some("RECURSIVE") => {
                b.leave_out(
                    file,
                    entry,
                    "Route 53's own internet resolver: dohgate needs [resolver] targets for it (without them it uses the nameservers of /etc/resolv.conf)",
                );
            }
            Some("SYSTEM") if autodefined => b.leave_out(
                file,
                entry,
                "auto-defined by Route 53 for its VPC resolver: dohgate answers the locally served zones (RFC 6303) itself ([resolver] locally_served_zones)",
            ),
            Some("SYSTEM") => {
                b.add_system(file, entry, &hint, domain);
            }
            Some("FORWARD") => {
                let endpoint_id = r.resolver_endpoint_id.clone().unwrap_or_else(|| "route53".to_string());
                let ob = match outbound.get(&endpoint_id) {
                    Some(name) => name.clone(),
                    None => {
                        let name = b.add_outbound(&endpoint_id, None, &format!("{file}: {entry} (ResolverEndpointId)"));
                        b.note(format!(
                            "outbound endpoint {endpoint_id} is in no list-resolver-endpoints output: [[outbound]] {name:?} gets the protocols its rules' targets speak"
                        ));
                        outbound.insert(endpoint_id, name.clone());
                        name
                    }
                };
                let mut targets = Vec::new();
                for (j, t) in r.target_ips.iter().enumerate() {
                    match target(t) {
                        Ok(t) => targets.push(t),
                        Err(why) => b.leave_out(file, &format!("{entry}: TargetIps[{j}]"), why),
                    }
                }
                b.add_forward(file, entry, &hint, domain, &ob, targets, None);
            }
            other => b.leave_out(
                file,
                entry,
                format!("RuleType {other:?} is not FORWARD, SYSTEM or RECURSIVE"),
            ),
        }
    }
}

fn target(t: &TargetAddress) -> Result<Target, String> {
    let protocol = match t.protocol.as_deref() {
        None => Protocol::Do53,
        Some(p) => p.parse::<Protocol>().map_err(|e| e.to_string())?,
    };
    let default_port = if protocol == Protocol::Do53 { 53 } else { 443 };
    let port = match &t.port {
        None | Some(Value::Null) => default_port,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("Port {n} is not a port"))?,
        Some(Value::String(s)) => s
            .parse::<u16>()
            .map_err(|_| format!("Port {s:?} is not a port"))?,
        Some(other) => return Err(format!("Port {other} is not a port")),
    };
    let port = if port == 0 { default_port } else { port };
    let ip =
        t.ip.as_deref()
            .or(t.ipv6.as_deref())
            .ok_or("it has neither Ip nor Ipv6")?;
    let addr = address(ip, port)?;
    if ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("{ip:?} is not an IP address"));
    }
    let mut target = Target {
        addr,
        protocol,
        server_name: None,
        path: None,
    };
    if protocol != Protocol::Do53
        && let Some(sni) = t
            .server_name_indication
            .as_deref()
            .filter(|s| !s.is_empty())
    {
        if wire::name_to_wire(sni).is_err() || sni.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!("ServerNameIndication {sni:?} is not a host name"));
        }
        target.server_name = Some(sni.trim_end_matches('.').to_string());
    }
    Ok(target)
}

fn firewall(b: &mut Builder, inputs: Inputs) {
    // Domain lists: their names from list-firewall-domain-lists, their domains from
    // list-firewall-domains files.
    let mut domains: Vec<(String, String, Vec<String>)> = Vec::new();
    for (id, file, list) in inputs.domains {
        match domains.iter_mut().find(|(i, _, _)| *i == id) {
            Some((_, _, d)) => d.extend(list),
            None => domains.push((id, file, list)),
        }
    }
    let mut list_names: HashMap<String, String> = HashMap::new();
    let mut list_problems: HashMap<String, String> = HashMap::new();
    for item in &inputs.lists {
        let l = &item.value;
        let Some(id) = l.id.clone() else {
            b.leave_out(&item.file, &item.entry, "it has no Id");
            continue;
        };
        let found = domains
            .iter()
            .position(|(key, _, _)| *key == id || Some(key) == l.name.as_ref());
        let Some(k) = found else {
            let why = if let Some(owner) = &l.managed_owner_name {
                format!(
                    "a list managed by {owner}: its domains are not exported, so a rule using it cannot be carried"
                )
            } else {
                format!(
                    "no list-firewall-domains output for it: save `aws route53resolver list-firewall-domains --firewall-domain-list-id {id}` as {id}.json and import it too"
                )
            };
            b.leave_out(&item.file, &item.entry, &why);
            list_problems.insert(id, why);
            continue;
        };
        let (_, dfile, list) = domains.remove(k);
        let hint = l.name.clone().unwrap_or_else(|| id.clone());
        let at = format!("{} and {dfile}", item.file);
        match b.add_domain_list(&at, &item.entry, &hint, list) {
            Some(name) => {
                list_names.insert(id, name);
            }
            None => {
                let why = "it has no domains (a rule using it never matches)".to_string();
                b.leave_out(&at, &item.entry, &why);
                list_problems.insert(id, why);
            }
        }
    }
    // list-firewall-domains outputs for lists no list-firewall-domain-lists output names.
    for (id, file, list) in domains {
        let entry = format!("Domains of {id}");
        match b.add_domain_list(&file, &entry, &id, list) {
            Some(name) => {
                list_names.insert(id, name);
            }
            None => {
                let why = "it has no domains (a rule using it never matches)".to_string();
                b.leave_out(&file, &entry, &why);
                list_problems.insert(id, why);
            }
        }
    }

    // Rule groups, then their rules.
    let mut group_names: HashMap<String, String> = HashMap::new();
    for item in &inputs.groups {
        let g = &item.value;
        let Some(id) = g.id.clone() else {
            b.leave_out(&item.file, &item.entry, "it has no Id");
            continue;
        };
        let hint = g.name.clone().unwrap_or_else(|| id.clone());
        let name = b.add_rule_group(&hint, &format!("{}: {}", item.file, item.entry));
        group_names.insert(id, name);
    }
    for item in &inputs.fw_rules {
        let r = &item.value;
        let (file, entry) = (item.file.as_str(), item.entry.as_str());
        let Some(gid) = r.firewall_rule_group_id.clone() else {
            b.leave_out(file, entry, "it has no FirewallRuleGroupId");
            continue;
        };
        let group = match group_names.get(&gid) {
            Some(g) => g.clone(),
            None => {
                let g = b.add_rule_group(&gid, &format!("{file}: FirewallRuleGroupId of {entry}"));
                group_names.insert(gid, g.clone());
                g
            }
        };
        match firewall_rule(r, &list_names, &list_problems, file, entry) {
            Ok(rule) => {
                b.add_firewall_rule(file, entry, &group, rule);
            }
            Err(why) => b.leave_out(file, entry, why),
        }
    }
    if !inputs.groups.is_empty() && inputs.fw_rules.is_empty() {
        b.note("no list-firewall-rules output: the rule groups are carried without rules");
    }

    // Associations, lowest priority first (the order Route 53 evaluates them in).
    let mut associations: Vec<&Item<AssociationJson>> = inputs.associations.iter().collect();
    associations.sort_by_key(|a| a.value.priority.unwrap_or(i64::MAX));
    for item in associations {
        let a = &item.value;
        let entry = match &a.vpc_id {
            Some(vpc) => format!("{} for {vpc}", item.entry),
            None => item.entry.clone(),
        };
        let Some(group) = a
            .firewall_rule_group_id
            .as_ref()
            .and_then(|g| group_names.get(g))
            .cloned()
        else {
            b.leave_out(
                &item.file,
                &entry,
                format!(
                    "rule group {:?} is in no list-firewall-rule-groups or list-firewall-rules output",
                    a.firewall_rule_group_id.as_deref().unwrap_or("")
                ),
            );
            continue;
        };
        let Some(priority) = a.priority.and_then(|p| u64::try_from(p).ok()) else {
            b.leave_out(&item.file, &entry, "it has no Priority");
            continue;
        };
        if b.add_association(&item.file, &entry, &group, priority) {
            b.note("firewall associations apply to every inbound endpoint: dohgate has no VPCs (limit one with inbound = [...])");
        }
    }
    if !group_names.is_empty() && !inputs.saw_associations {
        b.note("no list-firewall-rule-group-associations output: no inbound endpoint evaluates the rule groups until [[firewall.association]]s name them");
    }
}

fn firewall_rule(
    r: &FirewallRuleJson,
    lists: &HashMap<String, String>,
    problems: &HashMap<String, String>,
    file: &str,
    entry: &str,
) -> Result<FwRule, String> {
    let Some(list_id) = &r.firewall_domain_list_id else {
        return Err(if r.firewall_threat_protection_id.is_some() {
            "DNS Firewall Advanced threat protection (DGA, DNS tunnelling) has no dohgate counterpart".to_string()
        } else {
            "it has no FirewallDomainListId".to_string()
        });
    };
    let Some(list) = lists.get(list_id) else {
        return Err(match problems.get(list_id) {
            Some(why) => format!("its domain list {list_id} is left out: {why}"),
            None => format!(
                "no list-firewall-domains output for its domain list {list_id}: save it as {list_id}.json and import it too"
            ),
        });
    };
    let priority = r
        .priority
        .and_then(|p| u64::try_from(p).ok())
        .ok_or("it has no Priority")?;
    let action = match r.action.as_deref() {
        Some("ALLOW") => FwAction::Allow,
        Some("ALERT") => FwAction::Alert,
        Some("BLOCK") => FwAction::Block(match r.block_response.as_deref() {
            None | Some("NODATA") => BlockOut::NoData,
            Some("NXDOMAIN") => BlockOut::NxDomain,
            Some("OVERRIDE") => {
                if let Some(t) = r
                    .block_override_dns_type
                    .as_deref()
                    .filter(|t| *t != "CNAME")
                {
                    return Err(format!("BlockOverrideDnsType {t} is not CNAME"));
                }
                let domain = r
                    .block_override_domain
                    .as_deref()
                    .ok_or("OVERRIDE without a BlockOverrideDomain")?;
                let ttl = r.block_override_ttl.unwrap_or(60);
                BlockOut::Override {
                    domain: domain.trim_end_matches('.').to_string(),
                    ttl: u64::try_from(ttl)
                        .map_err(|_| format!("BlockOverrideTtl {ttl} is negative"))?,
                }
            }
            Some(other) => {
                return Err(format!(
                    "BlockResponse {other:?} is not NODATA, NXDOMAIN or OVERRIDE"
                ));
            }
        }),
        other => return Err(format!("Action {other:?} is not ALLOW, ALERT or BLOCK")),
    };
    let trust_redirection = match r.firewall_domain_redirection_action.as_deref() {
        None | Some("INSPECT_REDIRECTION_DOMAIN") => false,
        Some("TRUST_REDIRECTION_DOMAIN") => true,
        Some(other) => {
            return Err(format!(
                "FirewallDomainRedirectionAction {other:?} is not INSPECT_REDIRECTION_DOMAIN or TRUST_REDIRECTION_DOMAIN"
            ));
        }
    };
    Ok(FwRule {
        name_hint: r.name.clone().unwrap_or_default(),
        priority,
        domain_list: list.clone(),
        action,
        trust_redirection,
        qtype: r.qtype.clone().filter(|q| !q.is_empty()),
        origin: format!("{file}: {entry}"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{ImportKind, import_sources};
    use super::*;
    use dohgate_core::RuleKind;

    macro_rules! fixture {
        ($name:literal) => {
            Source::from_text(
                concat!("tests/import/route53/", $name),
                include_str!(concat!("../../../../tests/import/route53/", $name)),
            )
        };
    }

    fn all() -> Vec<Source> {
        vec![
            fixture!("resolver-endpoints.json"),
            fixture!("resolver-rules.json"),
            fixture!("firewall-domain-lists.json"),
            fixture!("rslvr-fdl-9e956e9ffexample.json"),
            fixture!("domains-malware.json"),
            fixture!("domains-gambling.json"),
            fixture!("firewall-rule-groups.json"),
            fixture!("firewall-rules.json"),
            fixture!("firewall-rule-group-associations.json"),
        ]
    }

    #[test]
    fn the_fixtures_carry_rules_endpoints_and_the_firewall() {
        let out = import_sources(ImportKind::Route53, &all()).expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        assert!(c.resolver.from_system, "RECURSIVE is not a target list");
        let ob: Vec<(&str, String)> = c
            .outbound
            .iter()
            .map(|o| (o.name.as_str(), o.protocols.to_string()))
            .collect();
        assert_eq!(ob.len(), 2, "{ob:?}");
        assert_eq!(ob[0].0, "to-datacentre");
        let rules = c.rule_set().expect("rules");
        let corp = rules.match_name("a.corp.example").expect("corp");
        assert_eq!(corp.outbound.as_deref(), Some("to-datacentre"));
        let addrs: Vec<String> = corp.targets.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["198.51.100.53:53", "[2001:db8::53]:53"]);
        assert_eq!(
            rules.match_name("www.corp.example").map(|r| r.kind),
            Some(RuleKind::System)
        );
        let partner = rules.match_name("api.partner.example").expect("partner");
        assert_eq!(partner.targets[0].protocol, Protocol::DoH);
        assert_eq!(
            partner.targets[0].server_name.as_deref(),
            Some("dns.partner.example")
        );
        assert_eq!(partner.targets[0].addr.port(), 443);

        let policy = c.firewall.policy_for("default", None);
        assert_eq!(policy.groups().len(), 1, "one association of two survives");
        let text = crate::cli::describe(&c);
        for expected in [
            "\"block-malware\": block \"malware-domains\" -> nxdomain",
            "override walled-garden.corp.example. ttl 300",
            "trusts redirections",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }

        let left = out.left_out.join("\n");
        for expected in [
            "ResolverEndpoints[0] \"inbound-from-datacentre\" (rslvr-in-8cd3c0ad6bexample): dohgate listens on its own addresses: add [[inbound]] listen = [...] (it spoke do53, doh",
            "(rslvr-autodefined-rr-internet-resolver): Route 53's own internet resolver: dohgate needs [resolver] targets",
            "(rslvr-autodefined-rr-10-in-addr-arpa): auto-defined",
            "target https+fips://203.0.113.11:443/dns-query",
            "\"corp-dr\" (rslvr-rr-91e8d7c6b5example): rule \"corp\"",
            "AWSManagedDomainsMalwareDomainList",
            "threat protection",
            "for vpc-0b2c3d4e5f6a7b8c9: rule group \"egress-policy\" is associated already",
        ] {
            assert!(left.contains(expected), "{expected}\n{left}");
        }
        assert!(
            out.notes.iter().any(|n| n.contains("no default resolver")),
            "{:?}",
            out.notes
        );
    }

    #[test]
    fn rules_alone_make_their_outbound_endpoints() {
        let out = import_sources(ImportKind::Route53, &[fixture!("resolver-rules.json")])
            .expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        assert_eq!(c.outbound[0].name, "rslvr-out-fdc049932dexample");
        assert!(c.outbound[0].protocols.contains(Protocol::Do53));
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("no list-resolver-endpoints"))
        );
    }

    #[test]
    fn what_is_not_aws_cli_output_is_refused() {
        for (name, text) in [
            ("dnsmasq.conf", "server=/corp.example/192.0.2.1\n"),
            ("other.json", "{\"Items\": []}"),
            ("list.json", "[]"),
            ("bad.json", "{\"ResolverRules\": [{\"TargetIps\": 3}]}"),
        ] {
            let e = import_sources(ImportKind::Route53, &[Source::from_text(name, text)])
                .expect_err("not Route 53");
            assert!(e.to_string().starts_with(name), "{e}");
        }
    }

    #[test]
    fn domains_find_their_list_by_wrapper_or_file_name() {
        let lists = Source::from_text(
            "lists.json",
            r#"{"FirewallDomainLists": [{"Id": "rslvr-fdl-1", "Name": "one"}, {"Id": "rslvr-fdl-2", "Name": "two"}]}"#,
        );
        let by_name = Source::from_text("rslvr-fdl-1.json", r#"{"Domains": ["a.example."]}"#);
        let wrapped = Source::from_text(
            "whatever.json",
            r#"{"FirewallDomainListId": "rslvr-fdl-2", "Domains": ["*.b.example", "bad..name"]}"#,
        );
        let out = import_sources(ImportKind::Route53, &[lists, by_name, wrapped]).expect("imports");
        let c = dohgate_core::config::parse(&out.toml, None).expect("valid");
        assert_eq!(c.firewall.list_names, ["one", "two"]);
        assert!(c.firewall.engine.lists()[1].matches_name("x.b.example"));
        assert!(
            out.left_out.iter().any(|l| l.contains("bad..name")),
            "{:?}",
            out.left_out
        );
    }
}
