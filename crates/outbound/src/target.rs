//! Targets and the failover between the targets of one rule.
//!
//! As in Route 53 the first target of a query is picked at random; when it times out, fails or
//! answers SERVFAIL/REFUSED, the next one is tried, until the query's time budget is spent.
//! Targets that have just failed several times in a row are tried last, and are given another
//! chance after a pause, so a dead target does not cost every query an attempt timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dohgate_core::wire::{self, Question};
use dohgate_core::{Protocol, TargetSpec};
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::time::Instant;

use crate::do53::{Do53Target, Do53Trace, deadline_within};
use crate::doh::{DohMetrics, DohTarget};
use crate::error::AttemptError;
use crate::metrics::OutboundMetrics;

/// Failures in a row after which a target is tried after the healthy ones.
const UNHEALTHY_AFTER: u32 = 3;
/// How long an unhealthy target is passed over before it gets another first chance.
const RETRY_UNHEALTHY_AFTER: Duration = Duration::from_secs(5);

/// How one target is reached (not to be confused with the inbound
/// [`Transport`](dohgate_core::Transport) a query arrived over).
#[derive(Debug)]
pub enum TargetTransport {
    Do53(Do53Target),
    Doh(Box<DohTarget>),
}

/// The per-target metric handles, resolved once at start so the query path does no label
/// lookups.
#[derive(Debug)]
struct TargetMetrics {
    queries: IntCounter,
    ok: IntCounter,
    timeout: IntCounter,
    error: IntCounter,
    servfail: IntCounter,
    refused: IntCounter,
    duration: Histogram,
    healthy: IntGauge,
    tcp_retries: IntCounter,
}

/// One target, shared by every rule that names it.
#[derive(Debug)]
pub struct Target {
    spec: TargetSpec,
    label: String,
    transport: TargetTransport,
    failures_in_a_row: AtomicU32,
    /// Milliseconds since `epoch` of the last failure.
    last_failure_ms: AtomicU64,
    epoch: Instant,
    metrics: TargetMetrics,
}

impl Target {
    pub fn new(spec: TargetSpec, metrics: &OutboundMetrics) -> Result<Self, AttemptError> {
        let label = spec.label();
        let proto = spec.protocol.as_str();
        let transport = match spec.protocol {
            Protocol::Do53 => TargetTransport::Do53(Do53Target::new(spec.addr)),
            Protocol::DoH | Protocol::DohFips => TargetTransport::Doh(Box::new(DohTarget::new(
                &spec,
                DohMetrics::new(metrics, &label, proto),
            )?)),
        };
        let outcome = |o: &str| {
            metrics
                .target_outcomes
                .with_label_values(&[label.as_str(), proto, o])
        };
        let m = TargetMetrics {
            queries: metrics
                .target_queries
                .with_label_values(&[label.as_str(), proto]),
            ok: outcome("ok"),
            timeout: outcome("timeout"),
            error: outcome("error"),
            servfail: outcome("servfail"),
            refused: outcome("refused"),
            duration: metrics
                .target_duration
                .with_label_values(&[label.as_str(), proto]),
            healthy: metrics
                .target_healthy
                .with_label_values(&[label.as_str(), proto]),
            tcp_retries: metrics
                .target_tcp_retries
                .with_label_values(&[label.as_str()]),
        };
        m.healthy.set(1);
        Ok(Target {
            spec,
            label,
            transport,
            failures_in_a_row: AtomicU32::new(0),
            last_failure_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics: m,
        })
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Counts a failure in the streak (saturating: an atomic add would wrap to "healthy") and
    /// returns the streak's length.
    fn note_failure(&self) -> u32 {
        let before = self
            .failures_in_a_row
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        before.saturating_add(1)
    }

    /// True unless the target failed its last few attempts and its pause is not over.
    pub fn is_healthy(&self) -> bool {
        if self.failures_in_a_row.load(Ordering::Relaxed) < UNHEALTHY_AFTER {
            return true;
        }
        // Another worker may have stored a failure after this one read the clock: saturate,
        // a failure "in the future" is one that just happened.
        let since = (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.last_failure_ms.load(Ordering::Relaxed));
        since >= RETRY_UNHEALTHY_AFTER.as_millis() as u64
    }

    /// One attempt: send `query`, return the answer (with the query's ID) if it is one the
    /// client should get. SERVFAIL and REFUSED count as failures so the next target is tried.
    /// `client_udp_limit` is the client's UDP payload size when it asked over UDP.
    pub async fn attempt(
        &self,
        query: &[u8],
        q: &Question,
        client_udp_limit: Option<usize>,
        deadline: Instant,
    ) -> Result<Vec<u8>, AttemptError> {
        let started = Instant::now();
        self.metrics.queries.inc();
        let result = match &self.transport {
            TargetTransport::Do53(t) => {
                let mut trace = Do53Trace::default();
                let r = t
                    .exchange(query, q, client_udp_limit, deadline, &mut trace)
                    .await;
                if trace.tcp_retry {
                    self.metrics.tcp_retries.inc();
                }
                r
            }
            // Boxed: the DoH exchange (a hyper client request) is a 7 KB future, and held
            // inline it made every query's future that large, Do53 ones too; each listener
            // then copied and allocated it per query.
            TargetTransport::Doh(t) => Box::pin(t.exchange(query, q, deadline)).await,
        };
        let result = result.and_then(|answer| match wire::rcode(&answer) {
            2 => Err(AttemptError::Rcode("SERVFAIL")),
            5 => Err(AttemptError::Rcode("REFUSED")),
            _ => Ok(answer),
        });
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                self.metrics.ok.inc();
                if self.failures_in_a_row.swap(0, Ordering::Relaxed) != 0 {
                    self.metrics.healthy.set(1);
                }
            }
            Err(e) => {
                match e.outcome() {
                    "timeout" => self.metrics.timeout.inc(),
                    "servfail" => self.metrics.servfail.inc(),
                    "refused" => self.metrics.refused.inc(),
                    _ => self.metrics.error.inc(),
                }
                let n = self.note_failure();
                self.last_failure_ms
                    .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                if n >= UNHEALTHY_AFTER {
                    self.metrics.healthy.set(0);
                }
                tracing::debug!(target = %self.label, error = %e, "attempt failed");
            }
        }
        result
    }
}

/// The targets of one rule (or of the default resolver), in failover order.
#[derive(Clone, Debug, Default)]
pub struct TargetSet {
    targets: Vec<Arc<Target>>,
}

/// The most targets one set may have (Route 53 allows 6; dohgate 16): the configuration
/// refuses more, for failover orders at most this many.
pub const MAX_TARGETS: usize = dohgate_core::config::MAX_RULE_TARGETS;

/// The result of forwarding a query.
#[derive(Debug)]
pub struct Forwarded {
    /// The answer, or `None` when every attempt failed.
    pub answer: Option<Vec<u8>>,
    /// The target that gave the answer (or the last one tried).
    pub target: Option<Arc<Target>>,
}

impl TargetSet {
    pub fn new(targets: Vec<Arc<Target>>) -> Self {
        TargetSet { targets }
    }

    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// True if at least one target is healthy.
    pub fn any_healthy(&self) -> bool {
        self.targets.iter().any(|t| t.is_healthy())
    }

    /// Forwards `query` to the targets in turn: a random healthy one first, then the other
    /// healthy ones, then the unhealthy ones, each attempt bounded by `attempt` and all of them
    /// by `budget`. `client_udp_limit` is the client's UDP payload size when it asked over
    /// UDP (see [`Do53Target::exchange`]).
    pub async fn forward(
        &self,
        query: &[u8],
        q: &Question,
        client_udp_limit: Option<usize>,
        attempt: Duration,
        budget: Duration,
    ) -> Forwarded {
        let n = self.targets.len();
        let mut last = None;
        if n == 0 {
            return Forwarded {
                answer: None,
                target: None,
            };
        }
        let until = Instant::now() + budget;
        let start = if n == 1 { 0 } else { rand::random_range(0..n) };
        // Health is read once, so a target that fails during this query keeps its place.
        // Rules have at most 16 targets (config and CLI check it): the order fits on the stack.
        let n = n.min(MAX_TARGETS);
        let mut healthy = [false; MAX_TARGETS];
        for (h, t) in healthy.iter_mut().zip(&self.targets) {
            *h = t.is_healthy();
        }
        let mut order = [0usize; MAX_TARGETS];
        let mut len = 0;
        for pass_healthy in [true, false] {
            for k in 0..n {
                let i = (start + k) % n;
                if healthy[i] == pass_healthy {
                    order[len] = i;
                    len += 1;
                }
            }
        }
        // A second round while the budget lasts: a lost datagram (an upstream's full socket
        // buffer, a dropped packet) should not turn into SERVFAIL when one more try would do.
        for _round in 0..2 {
            for &i in &order[..len] {
                if Instant::now() >= until {
                    return Forwarded {
                        answer: None,
                        target: last,
                    };
                }
                let t = &self.targets[i];
                let deadline = deadline_within(attempt, until);
                last = Some(t.clone());
                if let Ok(answer) = t.attempt(query, q, client_udp_limit, deadline).await {
                    return Forwarded {
                        answer: Some(answer),
                        target: last,
                    };
                }
            }
        }
        Forwarded {
            answer: None,
            target: last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        let registry = prometheus::Registry::new();
        let metrics = OutboundMetrics::register(&registry).expect("metrics");
        Target::new(TargetSpec::parse("127.0.0.1:9").expect("spec"), &metrics).expect("target")
    }

    #[test]
    fn a_failure_stored_after_the_clock_was_read_does_not_underflow() {
        let t = target();
        for _ in 0..UNHEALTHY_AFTER {
            t.note_failure();
        }
        // What a worker that read the clock just before another stored its failure sees.
        let future = t.epoch.elapsed().as_millis() as u64 + 60_000;
        t.last_failure_ms.store(future, Ordering::Relaxed);
        assert!(
            !t.is_healthy(),
            "a failure that just happened keeps it unhealthy"
        );
    }

    #[test]
    fn the_failure_streak_saturates_instead_of_wrapping_to_healthy() {
        let t = target();
        t.failures_in_a_row.store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(t.note_failure(), u32::MAX);
        assert_eq!(t.note_failure(), u32::MAX);
        t.last_failure_ms
            .store(t.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        assert!(!t.is_healthy());
    }
}
