//! The [`Resolver`]: what every listener's queries go through.
//!
//! allow-list -> parse -> rule match -> local answer | forward to the rule's targets | default
//! resolver -> the client's own ID and question put back -> reply. Metrics are counted here,
//! once, for every protocol.
//!
//! Forwarded queries go through the [`AnswerCache`] when one is set and the rule allows it: a
//! fresh entry answers without a target, a target's answer is offered to the cache, and when
//! every target fails an expired entry may answer instead of SERVFAIL (RFC 8767).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dohgate_core::handler::{DnsRequest, Handler, Reply, Transport};
use dohgate_core::rules::{RuleKind, RuleSet};
use dohgate_core::wire::{self, Query, Rcode};
use dohgate_core::{Protocol, TargetSpec, WireError, local};
use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;

use crate::cache::{AnswerCache, PrefetchPermit};
use crate::error::AttemptError;
use crate::metrics::OutboundMetrics;
use crate::querylog::{QueryLog, Route};
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

/// Metric handles of one inbound endpoint, resolved at start.
#[derive(Debug)]
struct EndpointHandles {
    /// By protocol, then transport.
    queries: [[IntCounter; 4]; 3],
    /// By protocol, then RCODE 0..=5.
    responses: [[IntCounter; 6]; 3],
    duration: [Histogram; 3],
}

fn protocol_index(p: Protocol) -> usize {
    match p {
        Protocol::Do53 => 0,
        Protocol::DoH => 1,
        Protocol::DohFips => 2,
    }
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::H1 => 2,
        Transport::H2 => 3,
    }
}

impl EndpointHandles {
    fn new(m: &OutboundMetrics, endpoint: &str) -> Self {
        let q = |p: Protocol, t: Transport| {
            m.queries
                .with_label_values(&[endpoint, p.as_str(), t.as_str()])
        };
        let r = |p: Protocol, rc: u16| {
            m.responses
                .with_label_values(&[endpoint, p.as_str(), wire::rcode_name(rc)])
        };
        let per_protocol = |p: Protocol| {
            (
                [
                    q(p, Transport::Udp),
                    q(p, Transport::Tcp),
                    q(p, Transport::H1),
                    q(p, Transport::H2),
                ],
                [r(p, 0), r(p, 1), r(p, 2), r(p, 3), r(p, 4), r(p, 5)],
                m.query_duration.with_label_values(&[endpoint, p.as_str()]),
            )
        };
        let (q0, r0, d0) = per_protocol(Protocol::Do53);
        let (q1, r1, d1) = per_protocol(Protocol::DoH);
        let (q2, r2, d2) = per_protocol(Protocol::DohFips);
        EndpointHandles {
            queries: [q0, q1, q2],
            responses: [r0, r1, r2],
            duration: [d0, d1, d2],
        }
    }
}

/// The transport-blind query pipeline; implements the core [`Handler`] seam.
#[derive(Debug)]
pub struct Resolver {
    rules: RuleSet,
    /// Per rule: its targets (forward rules) or empty.
    rule_targets: Vec<TargetSet>,
    /// Per rule: its domain in wire format, for locally served zones.
    rule_zones: Vec<Box<[u8]>>,
    rule_matches: Vec<IntCounter>,
    default: TargetSet,
    default_matches: IntCounter,
    options: ResolverOptions,
    metrics: OutboundMetrics,
    endpoints: Vec<EndpointHandles>,
    /// Set once at start when the query log is on.
    query_log: OnceLock<QueryLog>,
    cache: Option<Arc<AnswerCache>>,
}

/// The bailiwick of the default resolver's answers: the root.
const ROOT_ZONE: &[u8] = &[0];

impl Resolver {
    /// Builds the pipeline. `endpoints` are the inbound endpoint names in id order.
    pub fn new(
        rules: RuleSet,
        default_targets: &[TargetSpec],
        endpoints: &[String],
        options: ResolverOptions,
        metrics: OutboundMetrics,
    ) -> Result<Self, AttemptError> {
        let mut pool: HashMap<TargetSpec, Arc<Target>> = HashMap::new();
        let mut target_set = |specs: &[TargetSpec]| -> Result<TargetSet, AttemptError> {
            let mut set = Vec::with_capacity(specs.len());
            for spec in specs {
                let t = match pool.get(spec) {
                    Some(t) => t.clone(),
                    None => {
                        let t = Arc::new(Target::new(spec.clone(), &metrics)?);
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
        let endpoints = endpoints
            .iter()
            .map(|e| EndpointHandles::new(&metrics, e))
            .collect();
        Ok(Resolver {
            rules,
            rule_targets,
            rule_zones,
            rule_matches,
            default,
            default_matches,
            options,
            metrics,
            endpoints,
            query_log: OnceLock::new(),
            cache: None,
        })
    }

    /// Answers forwarded queries from `cache` when it can, and stores what targets answer.
    pub fn with_cache(mut self, cache: Option<Arc<AnswerCache>>) -> Self {
        self.cache = cache;
        self
    }

    pub fn cache(&self) -> Option<&Arc<AnswerCache>> {
        self.cache.as_ref()
    }

    /// The bailiwick the cache checks answers against for rule `rule` (`None`: the default
    /// resolver), or `None` when its answers are not cached.
    fn cache_zone(&self, rule: Option<usize>) -> Option<&[u8]> {
        self.cache.as_ref()?;
        let Some(i) = rule else {
            return Some(ROOT_ZONE);
        };
        let r = self.rules.get(i).filter(|r| r.cache)?;
        match r.kind {
            RuleKind::Forward => self.rule_zones.get(i).map(|z| &z[..]),
            _ => Some(ROOT_ZONE),
        }
    }

    /// Sends a record of every query to `log` from now on; only the first call has effect.
    pub fn set_query_log(&self, log: QueryLog) {
        let _ = self.query_log.set(log);
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

    /// Resolves one query; see the module documentation for the steps.
    pub async fn resolve(&self, req: &DnsRequest) -> Reply {
        self.resolve_routed(req, &mut Route::default()).await
    }

    /// [`Resolver::resolve`], noting in `route` the rule and target the query went to.
    pub async fn resolve_routed(&self, req: &DnsRequest, route: &mut Route) -> Reply {
        let msg = &req.message;
        if !req.endpoint.allow.allows(req.client.ip()) {
            self.metrics
                .refused_clients
                .with_label_values(&[req.endpoint.name.as_str()])
                .inc();
            return Reply::message(wire::error_response(msg, Rcode::Refused).unwrap_or_default());
        }
        let q = match wire::parse_query(msg) {
            Ok(q) => q,
            Err(e) => {
                self.metrics
                    .malformed
                    .with_label_values(&[req.endpoint.name.as_str(), e.label()])
                    .inc();
                // A response is never answered, not even with FORMERR (itself a response):
                // one spoofed datagram would otherwise loop between two servers for ever.
                let message = match e {
                    WireError::NotAQuery => None,
                    _ => wire::error_response(msg, e.rcode()),
                };
                return Reply {
                    message,
                    malformed: Some(e),
                };
            }
        };
        if q.edns.is_some_and(|e| e.version > 0) {
            return Reply::message(wire::badvers_response(msg).unwrap_or_default());
        }
        let client_udp = (req.transport == Transport::Udp).then(|| q.udp_limit());
        let answer = match self.rules.match_wire(q.question.name(msg)) {
            Some((i, rule)) => {
                self.rule_matches[i].inc();
                route.rule = Some(i);
                match rule.kind {
                    RuleKind::Local => local::answer(msg, &q, &self.rule_zones[i]),
                    RuleKind::Forward => {
                        let zone = self.cache_zone(Some(i));
                        self.forward(&self.rule_targets[i], msg, &q, client_udp, zone, route)
                            .await
                    }
                    RuleKind::System => {
                        let zone = self.cache_zone(Some(i));
                        self.forward(&self.default, msg, &q, client_udp, zone, route)
                            .await
                    }
                }
            }
            None => {
                self.default_matches.inc();
                let zone = self.cache_zone(None);
                self.forward(&self.default, msg, &q, client_udp, zone, route)
                    .await
            }
        };
        Reply::message(answer)
    }

    async fn forward(
        &self,
        targets: &TargetSet,
        msg: &[u8],
        q: &Query,
        client_udp: Option<usize>,
        cache_zone: Option<&[u8]>,
        route: &mut Route,
    ) -> Vec<u8> {
        let cache = cache_zone.and_then(|z| self.cache.as_ref().map(|c| (c, z)));
        if let Some((c, zone)) = cache
            && let Some(hit) = c.lookup(msg, q, std::time::Instant::now())
        {
            if let Some(permit) = hit.prefetch {
                self.prefetch(targets, msg, q, zone, permit);
            }
            return hit.answer;
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
            Some(mut answer) => {
                if let Some((c, zone)) = cache {
                    let _ = c.insert(msg, q, &answer, zone, std::time::Instant::now());
                }
                // The client gets its own ID and its question exactly as sent (0x20 case
                // included): the target may have changed the case.
                wire::set_id(&mut answer, q.id);
                let qbytes = q.question.bytes(msg);
                if let Some(dst) = answer.get_mut(wire::HEADER_LEN..q.question.end) {
                    dst.copy_from_slice(qbytes);
                }
                answer
            }
            None => {
                // RFC 8767: an expired answer beats SERVFAIL when every target is down.
                if let Some((c, _)) = cache
                    && let Some(stale) = c.stale(msg, q, std::time::Instant::now())
                {
                    return stale;
                }
                wire::error_response(msg, Rcode::ServFail).unwrap_or_default()
            }
        }
    }

    /// Asks `targets` again in the background and stores the answer, so a popular entry is
    /// renewed before it expires; `permit` bounds how many run at once.
    fn prefetch(
        &self,
        targets: &TargetSet,
        msg: &[u8],
        q: &Query,
        zone: &[u8],
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
                let _ = cache.insert(&msg, &q, &answer, &zone, std::time::Instant::now());
            }
            drop(permit);
        });
    }

    fn count(&self, req: &DnsRequest, reply: &Reply, started: Instant) {
        let p = protocol_index(req.protocol);
        let rcode = reply.message.as_deref().map(wire::rcode);
        match self.endpoints.get(req.endpoint.id) {
            Some(h) if self.endpoints.len() > req.endpoint.id => {
                h.queries[p][transport_index(req.transport)].inc();
                if let Some(rc) = rcode {
                    match h.responses[p].get(rc as usize) {
                        Some(c) => c.inc(),
                        None => self.responses_by_label(req, rc),
                    }
                }
                h.duration[p].observe(started.elapsed().as_secs_f64());
            }
            _ => {
                let ep = req.endpoint.name.as_str();
                self.metrics
                    .queries
                    .with_label_values(&[ep, req.protocol.as_str(), req.transport.as_str()])
                    .inc();
                if let Some(rc) = rcode {
                    self.responses_by_label(req, rc);
                }
                self.metrics
                    .query_duration
                    .with_label_values(&[ep, req.protocol.as_str()])
                    .observe(started.elapsed().as_secs_f64());
            }
        }
    }

    fn responses_by_label(&self, req: &DnsRequest, rcode: u16) {
        self.metrics
            .responses
            .with_label_values(&[
                req.endpoint.name.as_str(),
                req.protocol.as_str(),
                wire::rcode_name(rcode),
            ])
            .inc();
    }
}

impl Handler for Resolver {
    async fn handle(&self, request: DnsRequest) -> Reply {
        let started = Instant::now();
        let mut route = Route::default();
        let reply = self.resolve_routed(&request, &mut route).await;
        self.count(&request, &reply, started);
        if let Some(log) = self.query_log.get() {
            log.record(request, &reply, route, started);
        }
        reply
    }
}
