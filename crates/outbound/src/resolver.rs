//! The route stage of the [`Pipeline`](crate::pipeline::Pipeline): where an admitted query
//! goes and what comes back.
//!
//! the endpoint's rule match -> local answer (locally served zone or configured local zone) |
//! forward to the rule's targets | default resolver -> the client's own ID and question put
//! back.
//!
//! Forwarded queries go through the [`AnswerCache`] when one is set and the rule allows it: a
//! fresh entry answers without a target, a target's answer is offered to the cache, and when
//! every target fails an expired entry may answer instead of SERVFAIL (RFC 8767). Entries are
//! kept per route (the rule that sent the query), so endpoints that route one name to
//! different targets never see each other's answers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dohgate_core::config::ZoneConfig;
use dohgate_core::ddr::{self, Designation};
use dohgate_core::rules::{RuleKind, RuleSet};
use dohgate_core::wire::{self, Query, Rcode};
use dohgate_core::zone::LocalZone;
use dohgate_core::{TargetSpec, local};
use prometheus::IntCounter;

use crate::cache::{AnswerCache, PrefetchPermit};
use crate::error::AttemptError;
use crate::metrics::OutboundMetrics;
use crate::querylog::Route;
use crate::target::{Target, TargetSet};

/// Timeouts of the forwarding path.
#[derive(Clone, Copy, Debug)]
pub struct ResolverOptions {
    /// One attempt at one target.
    pub attempt: Duration,
    /// All attempts of one query together.
    pub budget: Duration,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        ResolverOptions {
            attempt: Duration::from_millis(1500),
            budget: Duration::from_millis(4000),
        }
    }
}

/// The forwarding rules, locally served zones, cache and targets: the route stage.
#[derive(Debug)]
pub struct Resolver {
    rules: RuleSet,
    /// Per rule: its targets (forward rules) or empty.
    rule_targets: Vec<TargetSet>,
    /// Per rule: its domain in wire format, for locally served zones.
    rule_zones: Vec<Box<[u8]>>,
    /// Per rule: the local zone that answers it (rules of kind [`RuleKind::Zone`]).
    local_zones: Vec<Option<Arc<LocalZone>>>,
    /// What CHAOS `id.server` answers; `None`: REFUSED.
    identity: Option<String>,
    /// Per inbound endpoint: what `_dns.resolver.arpa` designates, set once its listeners are
    /// bound (their ports are known only then).
    designations: Vec<OnceLock<Designation>>,
    rule_matches: Vec<IntCounter>,
    default: TargetSet,
    default_matches: IntCounter,
    options: ResolverOptions,
    cache: Option<Arc<AnswerCache>>,
}

/// The bailiwick of the default resolver's answers: the root.
const ROOT_ZONE: &[u8] = &[0];

impl Resolver {
    /// Builds the route stage, with one [`Target`] per distinct target spec.
    pub fn new(
        rules: RuleSet,
        default_targets: &[TargetSpec],
        options: ResolverOptions,
        metrics: &OutboundMetrics,
    ) -> Result<Self, AttemptError> {
        let mut pool: HashMap<TargetSpec, Arc<Target>> = HashMap::new();
        let mut target_set = |specs: &[TargetSpec]| -> Result<TargetSet, AttemptError> {
            let mut set = Vec::with_capacity(specs.len());
            for spec in specs {
                let t = match pool.get(spec) {
                    Some(t) => t.clone(),
                    None => {
                        let t = Arc::new(Target::new(spec.clone(), metrics)?);
                        pool.insert(spec.clone(), t.clone());
                        t
                    }
                };
                set.push(t);
            }
            Ok(TargetSet::new(set))
        };
        let default = target_set(default_targets)?;
        let mut rule_targets = Vec::with_capacity(rules.len());
        let mut rule_zones = Vec::with_capacity(rules.len());
        let mut rule_matches = Vec::with_capacity(rules.len());
        for rule in rules.rules() {
            rule_targets.push(if rule.kind == RuleKind::Forward {
                target_set(&rule.targets)?
            } else {
                TargetSet::default()
            });
            rule_zones.push(
                wire::name_to_wire(&rule.domain)
                    .unwrap_or_else(|_| vec![0])
                    .into_boxed_slice(),
            );
            rule_matches.push(
                metrics
                    .rule_matches
                    .with_label_values(&[rule.name.as_str(), rule.kind.as_str()]),
            );
        }
        let default_matches = metrics
            .rule_matches
            .with_label_values(&["default", "system"]);
        Ok(Resolver {
            local_zones: vec![None; rules.len()],
            designations: Vec::new(),
            identity: None,
            rules,
            rule_targets,
            rule_zones,
            rule_matches,
            default,
            default_matches,
            options,
            cache: None,
        })
    }

    /// Room for the designations of `endpoints` inbound endpoints (see [`Resolver::designate`]).
    pub fn with_endpoints(mut self, endpoints: usize) -> Self {
        self.designations = (0..endpoints).map(|_| OnceLock::new()).collect();
        self
    }

    /// From now on `_dns.resolver.arpa` SVCB from endpoint `endpoint` designates `d`; only the
    /// first call for an endpoint has effect.
    pub fn designate(&self, endpoint: usize, d: Designation) {
        if let Some(slot) = self.designations.get(endpoint) {
            let _ = slot.set(d);
        }
    }

    /// What CHAOS-class `id.server` and `hostname.bind` TXT answer (RFC 4892); without it they
    /// are REFUSED like every other CHAOS query.
    pub fn with_identity(mut self, identity: Option<String>) -> Self {
        self.identity = identity;
        self
    }

    /// Answers the names of the zone rules from `zones`, matched by name.
    pub fn with_zones(mut self, zones: &[ZoneConfig]) -> Self {
        for (i, rule) in self.rules.rules().iter().enumerate() {
            if rule.kind == RuleKind::Zone {
                self.local_zones[i] = zones
                    .iter()
                    .find(|z| z.name == rule.name)
                    .map(|z| z.zone.clone());
            }
        }
        self
    }

    /// Answers forwarded queries from `cache` when it can, and stores what targets answer.
    pub fn with_cache(mut self, cache: Option<Arc<AnswerCache>>) -> Self {
        self.cache = cache;
        self
    }

    pub fn cache(&self) -> Option<&Arc<AnswerCache>> {
        self.cache.as_ref()
    }

    /// Where answers for rule `rule` (`None`: the default resolver) are cached: the bailiwick
    /// the cache checks them against and the route key (0 for the default resolver, else the
    /// rule's index plus one); `None` when they are not cached.
    fn cache_scope(&self, rule: Option<usize>) -> Option<(&[u8], u32)> {
        self.cache.as_ref()?;
        let Some(i) = rule else {
            return Some((ROOT_ZONE, 0));
        };
        let r = self.rules.get(i).filter(|r| r.cache)?;
        let route = u32::try_from(i).ok()?.checked_add(1)?;
        match r.kind {
            RuleKind::Forward => self.rule_zones.get(i).map(|z| (&z[..], route)),
            _ => Some((ROOT_ZONE, route)),
        }
    }

    /// The default resolver's targets.
    pub fn default_targets(&self) -> &TargetSet {
        &self.default
    }

    /// True when the default resolver has at least one healthy target (for `/readyz`).
    pub fn default_ready(&self) -> bool {
        self.default.any_healthy()
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Routes one admitted query (`q` is `msg` parsed) from inbound endpoint `endpoint` by
    /// that endpoint's route table and returns the answer; notes in `route` the rule and
    /// target it went to. `client_udp` is the client's UDP payload size when the query came
    /// over UDP.
    pub async fn route(
        &self,
        endpoint: usize,
        msg: &[u8],
        q: &Query,
        client_udp: Option<usize>,
        route: &mut Route,
    ) -> Vec<u8> {
        if q.question.qclass == local::CLASS_CH {
            // Never forwarded: it would tell any client the upstream's software and version.
            return local::chaos(msg, q, self.identity.as_deref());
        }
        match self.rules.match_for(endpoint, q.question.name(msg)) {
            Some((i, rule)) => {
                self.rule_matches[i].inc();
                route.rule = Some(i);
                match rule.kind {
                    RuleKind::Local => local::answer(msg, q, &self.rule_zones[i]),
                    RuleKind::Ddr => ddr::answer(
                        msg,
                        q,
                        self.designations.get(endpoint).and_then(OnceLock::get),
                    ),
                    RuleKind::Zone => match &self.local_zones[i] {
                        Some(zone) => zone.answer(msg, q),
                        None => wire::error_response(msg, Rcode::ServFail).unwrap_or_default(),
                    },
                    RuleKind::Forward => {
                        let scope = self.cache_scope(Some(i));
                        self.forward(&self.rule_targets[i], msg, q, client_udp, scope, route)
                            .await
                    }
                    RuleKind::System => {
                        let scope = self.cache_scope(Some(i));
                        self.forward(&self.default, msg, q, client_udp, scope, route)
                            .await
                    }
                }
            }
            None => {
                self.default_matches.inc();
                let scope = self.cache_scope(None);
                self.forward(&self.default, msg, q, client_udp, scope, route)
                    .await
            }
        }
    }

    async fn forward(
        &self,
        targets: &TargetSet,
        msg: &[u8],
        q: &Query,
        client_udp: Option<usize>,
        cache_scope: Option<(&[u8], u32)>,
        route: &mut Route,
    ) -> Vec<u8> {
        let cache = cache_scope.and_then(|s| self.cache.as_ref().map(|c| (c, s)));
        if let Some((c, (zone, key))) = cache
            && let Some(hit) = c.lookup(msg, q, key, std::time::Instant::now())
        {
            if let Some(permit) = hit.prefetch {
                self.prefetch(targets, msg, q, (zone, key), permit);
            }
            return hit.answer;
        }
        // RFC 8767: with an expired entry to fall back on, a client is not kept waiting on
        // targets that do not answer.
        if let Some((c, (zone, key))) = cache
            && c.has_stale(msg, q, key, std::time::Instant::now())
        {
            return self
                .forward_or_stale(targets, msg, q, client_udp, (c, zone, key), route)
                .await;
        }
        let forwarded = targets
            .forward(
                msg,
                &q.question,
                client_udp,
                self.options.attempt,
                self.options.budget,
            )
            .await;
        route.target = forwarded.target;
        match forwarded.answer {
            Some(answer) => {
                if let Some((c, (zone, key))) = cache {
                    let _ = c.insert(msg, q, &answer, zone, key, std::time::Instant::now());
                }
                for_client(answer, msg, q)
            }
            None => wire::error_response(msg, Rcode::ServFail).unwrap_or_default(),
        }
    }

    /// Forwards a query that has an expired entry to fall back on (RFC 8767):
    /// - while every target is known to be down, the entry answers at once (the targets are
    ///   asked again once their pause is over);
    /// - otherwise the exchange runs as a task of its own, and if no answer has come when the
    ///   client response timer (`cache.stale_answer_client_timeout_ms`) expires, the entry
    ///   answers while the exchange goes on and refreshes the cache when it succeeds.
    async fn forward_or_stale(
        &self,
        targets: &TargetSet,
        msg: &[u8],
        q: &Query,
        client_udp: Option<usize>,
        (cache, zone, key): (&Arc<AnswerCache>, &[u8], u32),
        route: &mut Route,
    ) -> Vec<u8> {
        let stale = || cache.stale(msg, q, key, std::time::Instant::now());
        let servfail = || wire::error_response(msg, Rcode::ServFail).unwrap_or_default();
        if !targets.any_healthy()
            && let Some(answer) = stale()
        {
            route.target = targets.targets().first().cloned();
            return answer;
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let exchange = {
            let (targets, msg, q, options) = (targets.clone(), msg.to_vec(), *q, self.options);
            let (cache, zone) = (cache.clone(), zone.to_vec());
            async move {
                let forwarded = targets
                    .forward(
                        &msg,
                        &q.question,
                        client_udp,
                        options.attempt,
                        options.budget,
                    )
                    .await;
                if let Some(answer) = &forwarded.answer {
                    let _ = cache.insert(&msg, &q, answer, &zone, key, std::time::Instant::now());
                }
                let _ = tx.send(forwarded);
            }
        };
        tokio::spawn(exchange);
        let timer = cache.config().stale_answer_client_timeout;
        let forwarded = if timer.is_zero() {
            rx.await
        } else {
            tokio::select! {
                r = &mut rx => r,
                _ = tokio::time::sleep(timer) => match stale() {
                    Some(answer) => return answer,
                    // Evicted meanwhile: wait for the exchange after all.
                    None => rx.await,
                },
            }
        };
        let Ok(forwarded) = forwarded else {
            return servfail();
        };
        route.target = forwarded.target;
        match forwarded.answer {
            Some(answer) => for_client(answer, msg, q),
            // Every target failed: RFC 8767's fallback.
            None => stale().unwrap_or_else(servfail),
        }
    }

    /// Asks `targets` again in the background and stores the answer, so a popular entry is
    /// renewed before it expires; `permit` bounds how many run at once.
    fn prefetch(
        &self,
        targets: &TargetSet,
        msg: &[u8],
        q: &Query,
        (zone, key): (&[u8], u32),
        permit: PrefetchPermit,
    ) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        let (targets, msg, zone, q, options) = (
            targets.clone(),
            msg.to_vec(),
            zone.to_vec(),
            *q,
            self.options,
        );
        tokio::spawn(async move {
            let forwarded = targets
                .forward(&msg, &q.question, None, options.attempt, options.budget)
                .await;
            if let Some(answer) = forwarded.answer {
                let _ = cache.insert(&msg, &q, &answer, &zone, key, std::time::Instant::now());
            }
            drop(permit);
        });
    }
}

/// A target's answer as the client gets it: its own ID and its question exactly as sent (0x20
/// case included), since the target may have changed the case.
fn for_client(mut answer: Vec<u8>, msg: &[u8], q: &Query) -> Vec<u8> {
    wire::set_id(&mut answer, q.id);
    if let Some(dst) = answer.get_mut(wire::HEADER_LEN..q.question.end) {
        dst.copy_from_slice(q.question.bytes(msg));
    }
    answer
}
