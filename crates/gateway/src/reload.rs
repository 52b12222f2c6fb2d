//! Reloading the configuration while the gateway runs (SIGHUP): everything behind the handler
//! seam — rules, local zones, the firewall, rate limits, targets, timeouts, the cache and the
//! query log — is built anew from the new configuration and swapped in at once. Queries in
//! flight finish on the state they started with; listeners keep their sockets, so no packet is
//! lost. The DoH listeners' certificate files are read again, so a certificate replaced on disk
//! is presented from the next handshake on. A configuration that does not pass every check, or
//! that changes what the listeners themselves hold (addresses, allow-lists, certificate file
//! names, limits), is refused and the running state keeps serving.

use std::future::Future;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dohgate_core::config::Config;
use dohgate_core::handler::{DnsRequest, Handler, Reply};
use dohgate_outbound::{
    AnswerCache, OutboundMetrics, Pipeline, PolicyStage, Resolver, ResolverOptions,
};
use prometheus::IntCounterVec;

use crate::{LocalAddrs, designate, querylog};

/// The pipeline in force, behind the handler seam every listener holds.
#[derive(Debug)]
pub struct Current {
    pipeline: ArcSwap<Pipeline>,
}

impl Current {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Current {
            pipeline: ArcSwap::new(pipeline),
        }
    }

    /// The pipeline queries go to now.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.load_full()
    }

    /// The route stage in force (for readiness and the banner).
    pub fn resolver(&self) -> Arc<Resolver> {
        self.pipeline.load().resolver().clone()
    }
}

impl Handler for Current {
    fn handle(&self, request: DnsRequest) -> impl Future<Output = Reply> + Send {
        // A guard, not a counted clone: no shared reference count bounces between the worker
        // threads on every query. The query keeps the pipeline it started on.
        let pipeline = self.pipeline.load();
        async move { pipeline.handle(request).await }
    }
}

/// Builds the state behind the handler seam from `config`: the route stage (rules, zones,
/// targets, a fresh cache), the firewall, the rate limits, the query log.
///
/// The cache starts empty: its entries are keyed by rule, and a reload may number the rules
/// differently, so an old entry could otherwise answer for another route.
pub(crate) fn build_pipeline(
    config: &Config,
    metrics: &OutboundMetrics,
    query_log_dropped: &IntCounterVec,
) -> anyhow::Result<Arc<Pipeline>> {
    let rules = config.rule_set()?;
    let endpoint_names: Vec<String> = config.inbound.iter().map(|e| e.name.clone()).collect();
    let cache = config
        .cache
        .enabled
        .then(|| Arc::new(AnswerCache::new(&config.cache, metrics)));
    let resolver = Arc::new(
        Resolver::new(
            rules,
            &config.resolver.targets,
            ResolverOptions {
                attempt: config.timeouts.attempt,
                budget: config.timeouts.query,
            },
            metrics,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_zones(&config.zones)
        .with_identity(config.identity.clone())
        .with_endpoints(config.inbound.len())
        .with_cache(cache),
    );
    let policy = PolicyStage::new(&config.firewall, &config.inbound, metrics);
    let limits: Vec<_> = config
        .inbound
        .iter()
        .map(|e| (e.name.clone(), e.rate_limit))
        .collect();
    let pipeline = Arc::new(
        Pipeline::new(policy, resolver.clone(), &endpoint_names, metrics.clone())
            .with_rate_limits(&limits),
    );
    if let Some(log) = querylog::start(
        &config.query_log,
        resolver.rules(),
        &config.firewall,
        query_log_dropped,
    )? {
        pipeline.set_query_log(log);
    }
    Ok(pipeline)
}

/// What a reload cannot change without a restart: what the listeners themselves hold.
fn needs_restart(old: &Config, new: &Config) -> Option<String> {
    if old.inbound.len() != new.inbound.len() {
        return Some("the inbound endpoints changed".to_string());
    }
    for (a, b) in old.inbound.iter().zip(&new.inbound) {
        let same = a.name == b.name
            && a.do53 == b.do53
            && a.doh == b.doh
            && a.doh_fips == b.doh_fips
            && a.doh_plain == b.doh_plain
            && a.allow == b.allow
            && a.refuse == b.refuse
            && a.tls == b.tls
            && a.doh_path == b.doh_path;
        if !same {
            return Some(format!(
                "inbound endpoint {:?} changed its listeners, allow-list, refuse, TLS files or DoH path",
                b.name
            ));
        }
    }
    if old.admin != new.admin || old.admin_limits != new.admin_limits {
        return Some("the admin listener changed".to_string());
    }
    if old.limits != new.limits || old.threads != new.threads || old.reuseport != new.reuseport {
        return Some("[limits] or [runtime] changed".to_string());
    }
    if old.timeouts.tcp_idle != new.timeouts.tcp_idle
        || old.timeouts.shutdown_grace != new.timeouts.shutdown_grace
    {
        return Some("timeouts.tcp_idle_ms or timeouts.shutdown_grace_ms changed".to_string());
    }
    None
}

/// Reloads a running gateway: see the module documentation.
#[derive(Clone, Debug)]
pub struct Reloader {
    pub(crate) current: Arc<Current>,
    /// The configuration in force, as loaded (before start-up adjustments such as the
    /// open-file limit's), to compare a new one with.
    pub(crate) applied: Arc<Mutex<Config>>,
    pub(crate) metrics: OutboundMetrics,
    pub(crate) query_log_dropped: IntCounterVec,
    pub(crate) reloads: IntCounterVec,
    pub(crate) addrs: LocalAddrs,
    /// The DoH listeners' certificates: their files are read again on every reload, so a
    /// certificate replaced on disk is presented from the next handshake on.
    pub(crate) certs: Vec<crate::doh::ReloadableCert>,
}

impl Reloader {
    /// Applies `new` if it passes every check and changes nothing the listeners hold;
    /// otherwise returns why, and the running state keeps serving. Counted in
    /// `dohgate_config_reloads_total{result}` either way.
    pub fn reload(&self, new: Config) -> anyhow::Result<()> {
        self.reload_loaded(Ok(new))
    }

    /// [`Reloader::reload`] of a configuration that may have failed to load (a file that no
    /// longer parses counts as a failed reload, with the same error text as `check-config`).
    pub fn reload_loaded(&self, new: anyhow::Result<Config>) -> anyhow::Result<()> {
        let result = new.and_then(|new| self.try_reload(new));
        let outcome = if result.is_ok() { "success" } else { "failure" };
        self.reloads.with_label_values(&[outcome]).inc();
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "configuration not reloaded: the running one keeps serving")
            }
        }
        result
    }

    fn try_reload(&self, new: Config) -> anyhow::Result<()> {
        crate::check(&new)?;
        let mut applied = self
            .applied
            .lock()
            .map_err(|_| anyhow::anyhow!("a previous reload failed midway"))?;
        if let Some(why) = needs_restart(&applied, &new) {
            anyhow::bail!("{why}: that needs a restart");
        }
        // Everything is read and built before anything is swapped: a failure leaves the
        // running state whole.
        let mut certs = Vec::with_capacity(self.certs.len());
        for c in &self.certs {
            let key =
                dohgate_inbound::tls::load_certified_key(&c.files.cert, &c.files.key, c.fips)?;
            certs.push((&c.store, key));
        }
        let mut running = new.clone();
        crate::system_resolver(&mut running);
        let pipeline = build_pipeline(&running, &self.metrics, &self.query_log_dropped)?;
        designate(&running, &self.addrs, pipeline.resolver());
        self.current.pipeline.store(pipeline);
        for (store, key) in certs {
            store.replace(key);
        }
        *applied = new;
        Ok(())
    }
}
