//! The policy stage of the [`Pipeline`](crate::pipeline::Pipeline): Route 53's DNS Firewall
//! applied to each endpoint's associated rule groups.
//!
//! Before routing, the question is evaluated: a BLOCK answers at once (nothing goes upstream),
//! ALLOW and ALERT let it through. After routing, the answer's CNAME/DNAME chain is evaluated
//! name by name with the same rule groups (Route 53's INSPECT_REDIRECTION_DOMAIN), unless the
//! rule that let the question through trusts redirections (TRUST_REDIRECTION_DOMAIN). Cached
//! answers pass the same check, since the cache sits inside the route stage.

use std::sync::Arc;

use dohgate_core::config::{FirewallConfig, InboundEndpoint};
use dohgate_core::firewall::{
    self, Firewall, FirewallAction, Policy, Redirection, Verdict, answer_chain,
};
use dohgate_core::wire::{self, Query, Rcode};
use prometheus::IntCounter;

use crate::metrics::OutboundMetrics;
use crate::querylog::Route;

/// The firewall as the pipeline runs it.
#[derive(Debug)]
pub struct PolicyStage {
    engine: Arc<Firewall>,
    /// By inbound endpoint id; an empty policy checks nothing.
    policies: Vec<Policy>,
    fail_open: bool,
    /// By rule group, then rule (priority order): the rule's matches.
    matches: Vec<Vec<IntCounter>>,
    unreadable_servfail: IntCounter,
    unreadable_passed: IntCounter,
}

impl PolicyStage {
    /// The stage for `endpoints` (in id order), or `None` when no endpoint has a rule group:
    /// then the pipeline skips it altogether.
    pub fn new(
        config: &FirewallConfig,
        endpoints: &[InboundEndpoint],
        metrics: &OutboundMetrics,
    ) -> Option<Self> {
        if config.is_empty() {
            return None;
        }
        let engine = config.engine.clone();
        let matches = engine
            .groups()
            .iter()
            .map(|g| {
                g.rules()
                    .iter()
                    .map(|r| {
                        metrics.firewall_matches.with_label_values(&[
                            g.name.as_str(),
                            r.name.as_str(),
                            r.action.as_str(),
                        ])
                    })
                    .collect()
            })
            .collect();
        let unreadable = |outcome: &str| metrics.firewall_unreadable.with_label_values(&[outcome]);
        Some(PolicyStage {
            policies: endpoints
                .iter()
                .map(|e| config.policy_for(&e.name, e.profile.as_deref()))
                .collect(),
            engine,
            fail_open: config.fail_open,
            matches,
            unreadable_servfail: unreadable("servfail"),
            unreadable_passed: unreadable("passed"),
        })
    }

    fn policy(&self, endpoint: usize) -> Option<&Policy> {
        self.policies.get(endpoint).filter(|p| !p.is_empty())
    }

    fn count(&self, v: &Verdict) {
        if let Some(c) = self.matches.get(v.group).and_then(|g| g.get(v.rule)) {
            c.inc();
        }
    }

    /// The block answer a verdict's rule sends to this query.
    fn block(&self, v: &Verdict, msg: &[u8], q: &Query) -> Vec<u8> {
        match self.engine.rule(v) {
            Some(rule) => firewall::block_answer(msg, q, &rule.block_response),
            // A verdict always names a rule of the engine it came from.
            None => wire::error_response(msg, Rcode::ServFail).unwrap_or_default(),
        }
    }

    /// Evaluates the question. `Err` carries the answer of a BLOCK rule; `Ok` lets the query
    /// be routed, with the rule that matched (if any) for [`PolicyStage::answer`].
    pub fn question(
        &self,
        endpoint: usize,
        msg: &[u8],
        q: &Query,
        trace: &mut Route,
    ) -> Result<Option<Verdict>, Vec<u8>> {
        let Some(policy) = self.policy(endpoint) else {
            return Ok(None);
        };
        let Some(v) = self
            .engine
            .evaluate(policy, q.question.name(msg), q.question.qtype)
        else {
            return Ok(None);
        };
        self.count(&v);
        trace.firewall = Some(v);
        match v.action {
            FirewallAction::Block => Err(self.block(&v, msg, q)),
            FirewallAction::Allow | FirewallAction::Alert => Ok(Some(v)),
        }
    }

    /// Checks the names `answer` redirects through, unless `verdict` (the question's) trusts
    /// them; returns the answer to send: `answer` itself, a block answer, or SERVFAIL for a
    /// chain that cannot be read while failing closed.
    pub fn answer(
        &self,
        endpoint: usize,
        msg: &[u8],
        q: &Query,
        verdict: Option<Verdict>,
        answer: Vec<u8>,
        trace: &mut Route,
    ) -> Vec<u8> {
        let Some(policy) = self.policy(endpoint) else {
            return answer;
        };
        if verdict.is_some_and(|v| v.redirection == Redirection::Trust) {
            return answer;
        }
        let chain = match answer_chain(&answer) {
            Ok(chain) => chain,
            Err(e) => {
                if self.fail_open {
                    self.unreadable_passed.inc();
                    return answer;
                }
                self.unreadable_servfail.inc();
                tracing::debug!(error = %e, "firewall cannot read the answer's redirection chain");
                return wire::error_response(msg, Rcode::ServFail).unwrap_or_default();
            }
        };
        for name in &chain {
            let Some(v) = self.engine.evaluate(policy, name, q.question.qtype) else {
                continue;
            };
            self.count(&v);
            match v.action {
                FirewallAction::Block => {
                    trace.firewall = Some(v);
                    return self.block(&v, msg, q);
                }
                FirewallAction::Alert => trace.firewall = Some(v),
                FirewallAction::Allow => {}
            }
            // A name that a trusting rule lets through vouches for the rest of the chain.
            if v.redirection == Redirection::Trust {
                break;
            }
        }
        answer
    }
}
