//! Metrics of the gateway process itself: build facts, configuration reloads, endpoint
//! capacity status and the query log, plus the standard process collector (Linux).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub const BUILD_INFO: &str = "dohgate_build_info";
pub const CONFIG_RELOADS: &str = "dohgate_config_reloads_total";
pub const ENDPOINT_CAPACITY_STATUS: &str = "dohgate_endpoint_capacity_status";
pub const ENDPOINT_CAPACITY_QPS: &str = "dohgate_endpoint_capacity_qps";
pub const QUERY_LOG_DROPPED: &str = "dohgate_query_log_dropped_total";
pub const ADMIN_CONNECTIONS_REFUSED: &str = "dohgate_admin_connections_refused_total";

/// The git commit the binary was built from ("unknown" outside a checkout).
pub const GIT_SHA: &str = env!("DOHGATE_GIT_SHA");
/// The cargo features the binary was built with, comma-separated ("" for none).
pub const FEATURES: &str = env!("DOHGATE_FEATURES");

/// The FIPS 140-3 module the binary carries, as auditors look for it, e.g.
/// "AWS-LC FIPS 3 (AWS-LC 4.2.0)"; "" for a build without it.
pub fn fips_module() -> &'static str {
    #[cfg(feature = "fips")]
    {
        static MODULE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        MODULE.get_or_init(|| {
            let raw = aws_lc_fips_sys::AWSLC_VERSION_NUMBER_STRING;
            let library = std::str::from_utf8(raw)
                .unwrap_or("unknown")
                .trim_end_matches('\0');
            match aws_lc_fips_sys::fips_version() {
                0 => format!("AWS-LC FIPS (AWS-LC {library})"),
                n => format!("AWS-LC FIPS {n} (AWS-LC {library})"),
            }
        })
    }
    #[cfg(not(feature = "fips"))]
    {
        ""
    }
}

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    /// By result: success or failure.
    pub config_reloads: IntCounterVec,
    /// 0 ok, 1 above 50 %, 2 above 75 % of the endpoint's capacity.
    pub capacity_status: IntGaugeVec,
    pub capacity_qps: IntGaugeVec,
    /// By reason: queue_full (the writer is behind) or write_error.
    pub query_log_dropped: IntCounterVec,
    /// Admin connections closed unserved, by reason: connection_limit.
    pub admin_refused: IntCounterVec,
}

impl GatewayMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let build_info = IntGauge::with_opts(
            Opts::new(
                BUILD_INFO,
                "Always 1; the labels say which dohgate this is: version, git commit and cargo \
                 features",
            )
            .const_label("version", env!("CARGO_PKG_VERSION"))
            .const_label("git_sha", GIT_SHA)
            .const_label("features", FEATURES)
            .const_label("fips_module", fips_module()),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let config_reloads = IntCounterVec::new(
            Opts::new(
                CONFIG_RELOADS,
                "Configuration reloads by result (success, failure)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        // Both series exist from the start, so alerts on failures see a 0 rather than nothing.
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }

        let capacity_status = IntGaugeVec::new(
            Opts::new(
                ENDPOINT_CAPACITY_STATUS,
                "Query rate of each inbound endpoint against its capacity_qps over the last 10 s \
                 (as Route 53's ResolverEndpointCapacityStatus): 0 ok, 1 above 50 %, 2 above 75 %",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(capacity_status.clone()))?;
        let capacity_qps = IntGaugeVec::new(
            Opts::new(
                ENDPOINT_CAPACITY_QPS,
                "The configured capacity of each inbound endpoint in queries per second",
            ),
            &["endpoint"],
        )?;
        registry.register(Box::new(capacity_qps.clone()))?;

        let query_log_dropped = IntCounterVec::new(
            Opts::new(
                QUERY_LOG_DROPPED,
                "Query log records lost: queue_full (the writer fell behind; queries are never \
                 slowed for the log) or write_error",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(query_log_dropped.clone()))?;

        let admin_refused = IntCounterVec::new(
            Opts::new(
                ADMIN_CONNECTIONS_REFUSED,
                "Admin connections closed unserved: connection_limit (admin.max_connections open \
                 already)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(admin_refused.clone()))?;
        admin_refused.with_label_values(&["connection_limit"]);

        Ok(GatewayMetrics {
            config_reloads,
            capacity_status,
            capacity_qps,
            query_log_dropped,
            admin_refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_carries_version_sha_and_features() {
        let registry = Registry::new();
        GatewayMetrics::register(&registry).expect("registers");
        let families = registry.gather();
        let info = families
            .iter()
            .find(|f| f.name() == BUILD_INFO)
            .expect("build info");
        let m = &info.get_metric()[0];
        let label = |n: &str| {
            m.get_label()
                .iter()
                .find(|l| l.name() == n)
                .map(|l| l.value().to_string())
        };
        assert_eq!(label("version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert!(label("git_sha").is_some_and(|s| !s.is_empty()));
        assert_eq!(label("features").as_deref(), Some(FEATURES));
        assert_eq!(
            label("fips_module").is_some_and(|m| m.starts_with("AWS-LC FIPS")),
            cfg!(feature = "fips")
        );
        assert_eq!(m.get_gauge().get_value(), 1.0);
        #[cfg(target_os = "linux")]
        assert!(
            families
                .iter()
                .any(|f| f.name() == "process_resident_memory_bytes")
        );
    }
}
