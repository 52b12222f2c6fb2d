//! The query pipeline: the [`Handler`] every listener hands its queries to. A query meets its
//! stages in this order, and each one is a function below:
//!
//! 1. **admit** ([`Pipeline::admit`]): the endpoint's allow-list and rate limit, then the query is parsed
//!    once (the parsed [`Query`], offsets into the bytes, travels on: no later stage and no
//!    listener parses it again), then the EDNS version check;
//! 2. **policy** ([`PolicyStage`]): the DNS Firewall, on the question before routing (a block
//!    answers at once) and on the answer's redirection chain after it;
//! 3. **route** ([`Resolver::route`]): forwarding rules, locally served zones, the cache,
//!    targets; then a UDP answer is cut to the client's payload size;
//! 4. **observe** ([`Pipeline::observe`]): metrics and the query log, around all of it, so a
//!    query refused or rejected at any stage is counted and logged like an answered one.

use std::sync::{Arc, OnceLock};

use dohgate_core::acl::Refuse;
use dohgate_core::handler::{DnsRequest, Handler, Reply, Transport};
use dohgate_core::ratelimit::{LimitAction, RateLimitConfig, RateLimiter};
use dohgate_core::wire::{self, Query, Rcode};
use dohgate_core::{Protocol, WireError};
use prometheus::{Histogram, IntCounter};
use tokio::time::Instant;

use crate::metrics::OutboundMetrics;
use crate::policy::PolicyStage;
use crate::querylog::{QueryLog, Route};
use crate::resolver::Resolver;

/// The stages of the query path around the [`Resolver`]; implements the core [`Handler`].
#[derive(Debug)]
pub struct Pipeline {
    /// By inbound endpoint id: its rate limiter, if it has one.
    limits: Vec<Option<Limit>>,
    /// `None` when no endpoint has a firewall rule group.
    policy: Option<PolicyStage>,
    resolver: Arc<Resolver>,
    metrics: OutboundMetrics,
    /// Per inbound endpoint, by id.
    endpoints: Vec<EndpointHandles>,
    /// Set once at start when the query log is on.
    query_log: OnceLock<QueryLog>,
}

impl Pipeline {
    /// `endpoints` are the inbound endpoint names in id order.
    pub fn new(
        policy: Option<PolicyStage>,
        resolver: Arc<Resolver>,
        endpoints: &[String],
        metrics: OutboundMetrics,
    ) -> Self {
        let endpoints = endpoints
            .iter()
            .map(|e| EndpointHandles::new(&metrics, e))
            .collect();
        Pipeline {
            limits: Vec::new(),
            policy,
            resolver,
            metrics,
            endpoints,
            query_log: OnceLock::new(),
        }
    }

    /// Rate limits per client prefix, by inbound endpoint (in id order, `None` for none).
    pub fn with_rate_limits(mut self, limits: &[(String, Option<RateLimitConfig>)]) -> Self {
        self.limits = limits
            .iter()
            .map(|(endpoint, config)| {
                config.map(|c| Limit {
                    over: self
                        .metrics
                        .rate_limited
                        .with_label_values(&[endpoint.as_str(), c.action.as_str()]),
                    limiter: RateLimiter::new(c),
                })
            })
            .collect();
        self
    }

    /// The route stage.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// Sends a record of every query to `log` from now on; only the first call has effect.
    pub fn set_query_log(&self, log: QueryLog) {
        let _ = self.query_log.set(log);
    }

    /// Admits a query or says how to turn it away: REFUSED (or nothing, with
    /// `refuse = "drop"`) for a client outside the endpoint's allow-list, FORMERR or NOTIMP for a malformed one (nothing for a response,
    /// which must never be answered), BADVERS for an EDNS version dohgate does not speak.
    pub fn admit(&self, req: &DnsRequest) -> Result<Query, Reply> {
        let msg = &req.message;
        if !req.endpoint.allow.allows(req.client.ip()) {
            self.metrics
                .refused_clients
                .with_label_values(&[req.endpoint.name.as_str()])
                .inc();
            return Err(match req.endpoint.allow.refuse() {
                Refuse::Refused => {
                    Reply::Answer(wire::error_response(msg, Rcode::Refused).unwrap_or_default())
                }
                Refuse::Drop => Reply::Drop,
            });
        }
        if let Some(reply) = self.over_limit(req) {
            return Err(reply);
        }
        let q = wire::parse_query(msg).map_err(|error| {
            self.metrics
                .malformed
                .with_label_values(&[req.endpoint.name.as_str(), error.label()])
                .inc();
            // A response is never answered, not even with FORMERR (itself a response): one
            // spoofed datagram would otherwise loop between two servers for ever.
            let answer = match error {
                WireError::NotAQuery => None,
                _ => wire::error_response(msg, error.rcode()),
            };
            Reply::Malformed { error, answer }
        })?;
        if q.edns.is_some_and(|e| e.version > 0) {
            return Err(Reply::Answer(
                wire::badvers_response(msg).unwrap_or_default(),
            ));
        }
        Ok(q)
    }

    /// The reply for a query over its client prefix's rate, or `None` to go on. Do53 over TCP
    /// is not limited: its client completed a handshake from its address, so it cannot be
    /// spoofed, and it is where `truncate` sends honest clients; connection caps bound it.
    fn over_limit(&self, req: &DnsRequest) -> Option<Reply> {
        if req.transport == Transport::Tcp {
            return None;
        }
        let limit = self.limits.get(req.endpoint.id)?.as_ref()?;
        if limit
            .limiter
            .allow(req.client.ip(), std::time::Instant::now())
        {
            return None;
        }
        limit.over.inc();
        let msg = &req.message;
        let answer = match limit.limiter.config().action {
            LimitAction::Refused => wire::error_response(msg, Rcode::Refused),
            LimitAction::Truncate => wire::error_response(msg, Rcode::NoError).map(|mut a| {
                a[2] |= (wire::FLAG_TC >> 8) as u8;
                a
            }),
            LimitAction::Drop => None,
        };
        Some(Reply::Limited { answer })
    }

    /// Admits, checks against the firewall, routes, checks the answer, and cuts it to a UDP
    /// client's size; notes in `route` where the query went and what decided it.
    async fn answer(&self, req: &DnsRequest, route: &mut Route) -> Reply {
        let q = match self.admit(req) {
            Ok(q) => q,
            Err(reply) => return reply,
        };
        let msg = &req.message[..];
        let endpoint = req.endpoint.id;
        let verdict = match &self.policy {
            Some(p) => p.question(endpoint, msg, &q, route),
            None => Ok(None),
        };
        let client_udp = (req.transport == Transport::Udp).then(|| q.udp_limit());
        let answer = match verdict {
            // Blocked: nothing goes upstream.
            Err(block) => block,
            Ok(verdict) => {
                let answer = self
                    .resolver
                    .route(endpoint, msg, &q, client_udp, route)
                    .await;
                match &self.policy {
                    Some(p) => p.answer(endpoint, msg, &q, verdict, answer, route),
                    None => answer,
                }
            }
        };
        Reply::Answer(match client_udp {
            Some(limit) => wire::truncate_for_udp(answer, limit),
            None => answer,
        })
    }

    /// Counts the query and its outcome, and queues its query log record.
    pub fn observe(&self, req: DnsRequest, reply: &Reply, route: Route, started: Instant) {
        let rcode = reply.message().map(wire::rcode);
        match self.endpoints.get(req.endpoint.id) {
            Some(h) => {
                let p = protocol_index(req.protocol);
                h.queries[p][transport_index(req.transport)].inc();
                if let Some(rc) = rcode {
                    match h.responses[p].get(rc as usize) {
                        Some(c) => c.inc(),
                        None => self.responses_by_label(&req, rc),
                    }
                }
                h.duration[p].observe(started.elapsed().as_secs_f64());
            }
            None => {
                let ep = req.endpoint.name.as_str();
                self.metrics
                    .queries
                    .with_label_values(&[ep, req.protocol.as_str(), req.transport.as_str()])
                    .inc();
                if let Some(rc) = rcode {
                    self.responses_by_label(&req, rc);
                }
                self.metrics
                    .query_duration
                    .with_label_values(&[ep, req.protocol.as_str()])
                    .observe(started.elapsed().as_secs_f64());
            }
        }
        if let Some(log) = self.query_log.get() {
            log.record(req, reply, route, started);
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

impl Handler for Pipeline {
    async fn handle(&self, request: DnsRequest) -> Reply {
        let started = Instant::now();
        let mut route = Route::default();
        let reply = self.answer(&request, &mut route).await;
        self.observe(request, &reply, route, started);
        reply
    }
}

/// One endpoint's rate limiter and the counter of what it limits.
#[derive(Debug)]
struct Limit {
    limiter: RateLimiter,
    over: IntCounter,
}

/// Metric handles of one inbound endpoint, resolved at start so the hot path does no label
/// lookup.
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
