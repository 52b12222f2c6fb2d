//! Metrics of the outbound side, registered into the registry the gateway passes in.
//!
//! Labels are bounded by the configuration (endpoint, protocol, rule, target, rcode); the query
//! name and the client address never become labels.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets for DNS latencies: 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug)]
pub struct OutboundMetrics {
    pub queries: IntCounterVec,
    pub responses: IntCounterVec,
    pub query_duration: HistogramVec,
    pub malformed: IntCounterVec,
    pub refused_clients: IntCounterVec,
    pub rule_matches: IntCounterVec,
    pub target_queries: IntCounterVec,
    pub target_outcomes: IntCounterVec,
    pub target_duration: HistogramVec,
    pub target_healthy: IntGaugeVec,
    pub target_tcp_retries: IntCounterVec,
    pub target_connections: IntGaugeVec,
    pub target_connection_failures: IntCounterVec,
    pub target_tls_failures: IntCounterVec,
    pub target_stale_retries: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_stale_answers: IntCounter,
    pub cache_prefetches: IntCounter,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub cache_uncacheable: IntCounterVec,
    pub firewall_matches: IntCounterVec,
    pub firewall_unreadable: IntCounterVec,
    pub rate_limited: IntCounterVec,
}

impl OutboundMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<HistogramVec> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let target_healthy = IntGaugeVec::new(
            Opts::new(
                "dohgate_target_healthy",
                "1 if the target answered its last attempts, 0 if it is failing",
            ),
            &["target", "protocol"],
        )?;
        registry.register(Box::new(target_healthy.clone()))?;
        let target_connections = IntGaugeVec::new(
            Opts::new(
                "dohgate_target_connections",
                "Connections open to each DoH target",
            ),
            &["target", "protocol"],
        )?;
        registry.register(Box::new(target_connections.clone()))?;
        let single = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(OutboundMetrics {
            queries: counter(
                "dohgate_queries_total",
                "Queries received, by inbound endpoint, protocol and transport",
                &["endpoint", "protocol", "transport"],
            )?,
            responses: counter(
                "dohgate_responses_total",
                "Responses sent, by inbound endpoint, protocol and RCODE",
                &["endpoint", "protocol", "rcode"],
            )?,
            query_duration: histogram(
                "dohgate_query_duration_seconds",
                "Time from receiving a query to having its answer, by inbound endpoint and protocol",
                &["endpoint", "protocol"],
            )?,
            malformed: counter(
                "dohgate_malformed_queries_total",
                "Queries rejected as malformed (FORMERR, NOTIMP, or no answer possible), by reason",
                &["endpoint", "reason"],
            )?,
            refused_clients: counter(
                "dohgate_refused_clients_total",
                "Queries refused because the client is not in the endpoint's allow-list",
                &["endpoint"],
            )?,
            rule_matches: counter(
                "dohgate_rule_matches_total",
                "Queries matched by each forwarding rule (rule \"default\": no rule matched)",
                &["rule", "type"],
            )?,
            target_queries: counter(
                "dohgate_target_queries_total",
                "Attempts sent to each target",
                &["target", "protocol"],
            )?,
            target_outcomes: counter(
                "dohgate_target_outcomes_total",
                "Attempts by outcome: ok, timeout, error, servfail, refused",
                &["target", "protocol", "outcome"],
            )?,
            target_duration: histogram(
                "dohgate_target_attempt_duration_seconds",
                "Duration of each attempt at a target",
                &["target", "protocol"],
            )?,
            target_healthy,
            target_tcp_retries: counter(
                "dohgate_target_tcp_retries_total",
                "UDP answers that came back truncated and were asked again over TCP",
                &["target"],
            )?,
            target_connections,
            target_connection_failures: counter(
                "dohgate_target_connection_failures_total",
                "Connections to a DoH target that could not be set up (TCP, TLS or HTTP handshake)",
                &["target", "protocol"],
            )?,
            target_tls_failures: counter(
                "dohgate_target_tls_failures_total",
                "TLS handshakes with a DoH target that failed, certificate errors included",
                &["target", "protocol"],
            )?,
            target_stale_retries: counter(
                "dohgate_target_stale_retries_total",
                "Queries asked again on a fresh connection because their connection to a DoH target died",
                &["target", "protocol"],
            )?,
            cache_hits: single(
                "dohgate_cache_hits_total",
                "Queries answered from the cache with a fresh entry",
            )?,
            cache_misses: single(
                "dohgate_cache_misses_total",
                "Cacheable queries the cache had no fresh entry for",
            )?,
            cache_stale_answers: single(
                "dohgate_cache_stale_answers_total",
                "Queries answered from an expired entry because every target failed (RFC 8767)",
            )?,
            cache_prefetches: single(
                "dohgate_cache_prefetches_total",
                "Popular entries refreshed in the background shortly before they expired",
            )?,
            cache_entries: gauge(
                "dohgate_cache_entries",
                "Entries in the cache, fresh and expired (set when an answer is stored)",
            )?,
            cache_bytes: gauge(
                "dohgate_cache_bytes",
                "Bytes the cache holds, counted against cache.max_bytes (set when an answer is stored)",
            )?,
            cache_uncacheable: counter(
                "dohgate_cache_uncacheable_total",
                "Answers not cached, by reason: rcode, truncated, zero_ttl, no_soa, question, chain, bailiwick, private, malformed",
                &["reason"],
            )?,
            firewall_matches: counter(
                "dohgate_firewall_matches_total",
                "Firewall rules that decided a query or a name in its answer's redirection chain, \
                 by rule group, rule and action (allow, alert, block)",
                &["rule_group", "rule", "action"],
            )?,
            rate_limited: counter(
                "dohgate_rate_limited_total",
                "Queries over their client prefix's rate limit, by inbound endpoint and action \
                 (refused, truncate, drop; DoH answers 429 whatever the action)",
                &["endpoint", "action"],
            )?,
            firewall_unreadable: counter(
                "dohgate_firewall_unreadable_answers_total",
                "Answers whose redirection chain the firewall could not read, by outcome: servfail \
                 (firewall.fail_open = false) or passed (true)",
                &["outcome"],
            )?,
        })
    }
}
