//! Metrics of the inbound listeners, registered into the registry the gateway passes in.
//!
//! Labels are bounded: the endpoint name (from the configuration), the protocol, a fixed set of
//! reasons, and the HTTP status codes dohgate itself sends. Query metrics (counts, RCODEs,
//! latency) are counted behind the handler seam, once for every protocol.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub const INBOUND_CONNECTIONS: &str = "dohgate_inbound_connections";
pub const INBOUND_CONNECTIONS_ACCEPTED: &str = "dohgate_inbound_connections_accepted_total";
pub const INBOUND_DROPPED: &str = "dohgate_inbound_dropped_total";
pub const DOH_HTTP_RESPONSES: &str = "dohgate_doh_http_responses_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "dohgate_tls_handshake_failures_total";
pub const DOH_STREAMS_RESET: &str = "dohgate_doh_streams_reset_total";

/// The inbound listeners' metrics. Cloning is cheap and shares the counters.
#[derive(Clone, Debug)]
pub struct InboundMetrics {
    /// Connections open now (TCP and DoH), by endpoint and protocol.
    pub connections: IntGaugeVec,
    pub connections_accepted: IntCounterVec,
    /// Queries or connections dropped without an answer, by endpoint, protocol and reason.
    pub dropped: IntCounterVec,
    pub doh_http_responses: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub doh_streams_reset: IntCounterVec,
}

impl InboundMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let connections = IntGaugeVec::new(
            Opts::new(INBOUND_CONNECTIONS, "Inbound connections open now"),
            &["endpoint", "protocol"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        Ok(InboundMetrics {
            connections,
            connections_accepted: counter(
                INBOUND_CONNECTIONS_ACCEPTED,
                "Inbound connections accepted",
                &["endpoint", "protocol"],
            )?,
            dropped: counter(
                INBOUND_DROPPED,
                "Queries or connections dropped without an answer (reason: incomplete, unanswerable, \
                 not_a_query, connection_limit, client_limit, not_allowed)",
                &["endpoint", "protocol", "reason"],
            )?,
            doh_http_responses: counter(
                DOH_HTTP_RESPONSES,
                "HTTP responses of DoH listeners by status: 200 carries a DNS message (SERVFAIL and \
                 REFUSED included), others are HTTP-level errors",
                &["endpoint", "status"],
            )?,
            tls_handshake_failures: counter(
                TLS_HANDSHAKE_FAILURES,
                "TLS handshakes that failed or did not finish in time",
                &["endpoint", "protocol"],
            )?,
            doh_streams_reset: counter(
                DOH_STREAMS_RESET,
                "HTTP/2 DoH requests the client abandoned (RST_STREAM or a closed connection) before \
                 dohgate answered",
                &["endpoint"],
            )?,
        })
    }

    /// The handles one DoH listener uses, resolved once so its hot path does no label lookup.
    pub(crate) fn doh_listener(&self, endpoint: &str, protocol: &str) -> DohListenerMetrics {
        DohListenerMetrics {
            endpoint: endpoint.to_string(),
            http_responses: self.doh_http_responses.clone(),
            ok: self
                .doh_http_responses
                .with_label_values(&[endpoint, "200"]),
            tls_handshake_failures: self
                .tls_handshake_failures
                .with_label_values(&[endpoint, protocol]),
            open: self.connections.with_label_values(&[endpoint, protocol]),
            accepted: self
                .connections_accepted
                .with_label_values(&[endpoint, protocol]),
            connection_limit: self.dropped.with_label_values(&[
                endpoint,
                protocol,
                "connection_limit",
            ]),
            not_allowed: self
                .dropped
                .with_label_values(&[endpoint, protocol, "not_allowed"]),
            client_limit: self
                .dropped
                .with_label_values(&[endpoint, protocol, "client_limit"]),
            streams_reset: self.doh_streams_reset.with_label_values(&[endpoint]),
        }
    }
}

#[derive(Debug)]
pub(crate) struct DohListenerMetrics {
    endpoint: String,
    http_responses: IntCounterVec,
    ok: IntCounter,
    pub tls_handshake_failures: IntCounter,
    pub open: IntGauge,
    pub accepted: IntCounter,
    pub connection_limit: IntCounter,
    /// Connections from clients outside the endpoint's allow-list, closed before any TLS work.
    pub not_allowed: IntCounter,
    /// Connections past `limits.connections_per_client` for their client address.
    pub client_limit: IntCounter,
    pub streams_reset: IntCounter,
}

impl DohListenerMetrics {
    pub fn response(&self, status: http::StatusCode) {
        if status == http::StatusCode::OK {
            self.ok.inc();
        } else {
            self.http_responses
                .with_label_values(&[self.endpoint.as_str(), status.as_str()])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_per_registry() {
        let registry = Registry::new();
        let m = InboundMetrics::register(&registry).expect("first registration");
        assert!(InboundMetrics::register(&registry).is_err());
        let l = m.doh_listener("ep", "doh");
        l.response(http::StatusCode::OK);
        l.response(http::StatusCode::NOT_FOUND);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.iter().any(|n| n == DOH_HTTP_RESPONSES), "{names:?}");
        assert_eq!(
            m.doh_http_responses.with_label_values(&["ep", "404"]).get(),
            1
        );
    }
}
