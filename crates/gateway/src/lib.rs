//! The `dohgate` gateway: wires a validated configuration into running listeners, the
//! forwarding pipeline and the admin listener, and shuts them all down as one tree.
//!
//! [`start`] binds every socket before it returns, so callers (the binary, tests) read the real
//! addresses back from [`RunningGateway`] even when the configuration asked for port 0.

pub mod admin;
pub mod capacity;
pub mod cli;
pub mod doh;
pub mod fdlimit;
pub mod import;
pub mod metrics;
pub mod querylog;
pub mod reload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use dohgate_core::acl::AllowList;
use dohgate_core::config::{self, Config};
use dohgate_core::ddr::Designation;
use dohgate_core::handler::Endpoint;
use dohgate_core::worker;
use dohgate_inbound::{InboundMetrics, Workers, tcp, udp};
use dohgate_outbound::{OutboundMetrics, Resolver};
use prometheus::Registry;
pub use reload::{Current, Reloader};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The addresses a running gateway listens on.
#[derive(Clone, Debug, Default)]
pub struct LocalAddrs {
    /// Do53 addresses (UDP and TCP share each one), by inbound endpoint name.
    pub do53: Vec<(String, SocketAddr)>,
    pub doh: Vec<(String, SocketAddr)>,
    pub doh_fips: Vec<(String, SocketAddr)>,
    pub doh_plain: Vec<(String, SocketAddr)>,
    pub admin: Option<SocketAddr>,
}

/// State the admin listener reports on.
#[derive(Debug)]
pub struct Health {
    /// Every listener is bound.
    pub listening: AtomicBool,
    /// The configuration in force was read and validated.
    pub config_loaded: AtomicBool,
    /// The pipeline in force (its default resolver's health).
    pub current: Arc<Current>,
}

/// A gateway whose listeners are bound and serving.
#[derive(Debug)]
pub struct RunningGateway {
    addrs: LocalAddrs,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    registry: Registry,
    reloader: Reloader,
    self_signed: Option<doh::SelfSignedCert>,
}

impl RunningGateway {
    pub fn addrs(&self) -> &LocalAddrs {
        &self.addrs
    }

    /// The first Do53 address (for tests and the start-up banner).
    pub fn do53_addr(&self) -> Option<SocketAddr> {
        self.addrs.do53.first().map(|(_, a)| *a)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The route stage in force.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.reloader.current.resolver()
    }

    /// What reloads this gateway's configuration while it runs (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The certificate generated at start for DoH endpoints without certificate files.
    pub fn self_signed(&self) -> Option<&doh::SelfSignedCert> {
        self.self_signed.as_ref()
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets queries in flight finish within the grace period, and returns
    /// once every listener has let go of its socket.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the gateway has stopped (after its token is cancelled).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?self.grace, "queries still in flight at the end of the grace period were dropped");
        }
    }
}

/// Checks what `start` would meet beyond the configuration file itself, without binding
/// anything: the rules' route tables, the DoH listeners' certificates and keys, and the
/// DoH targets' CA and client certificate files (`dohgate check-config`).
pub fn check(config: &Config) -> anyhow::Result<()> {
    serves_something(config)?;
    config.rule_set()?;
    doh::check_tls(config)?;
    let targets = config
        .rules
        .iter()
        .flat_map(|r| &r.targets)
        .chain(&config.resolver.targets);
    for spec in targets {
        dohgate_outbound::doh::check_tls(spec)
            .map_err(|e| anyhow::anyhow!("target {spec}: {e}"))?;
    }
    Ok(())
}

/// A default resolver taken from `/etc/resolv.conf` (no `[resolver] targets`): its nameservers,
/// read when the gateway starts or reloads.
fn system_resolver(config: &mut Config) {
    if config.resolver.from_system {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        config.resolver.targets = config::resolv_conf_targets(&text);
        config.resolver.targets.truncate(config::MAX_RULE_TARGETS);
        if config.resolver.targets.is_empty() {
            tracing::warn!(
                "/etc/resolv.conf names no usable nameserver: names no rule covers will get SERVFAIL"
            );
        }
    }
}

/// A configuration without an inbound endpoint would start a gateway that serves nothing
/// while looking healthy: an error instead.
fn serves_something(config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.inbound.is_empty(),
        "no [[inbound]] endpoint and no --listen-* flag: dohgate would serve nothing"
    );
    Ok(())
}

/// Binds every listener of `config` and starts serving.
pub async fn start(mut config: Config) -> anyhow::Result<RunningGateway> {
    serves_something(&config)?;
    // As loaded, for a reload to compare with.
    let loaded = config.clone();
    system_resolver(&mut config);
    let registry = Registry::new();
    let inbound_metrics = InboundMetrics::register(&registry)?;
    let outbound_metrics = OutboundMetrics::register(&registry)?;
    let gateway_metrics = metrics::GatewayMetrics::register(&registry)?;
    let capacity = capacity::Watcher::new(&config.inbound, &outbound_metrics, &gateway_metrics);
    let pipeline = reload::build_pipeline(
        &config,
        &outbound_metrics,
        &gateway_metrics.query_log_dropped,
    )?;
    let outbound_metrics_for_reload = outbound_metrics.clone();
    let current = Arc::new(Current::new(pipeline));

    fdlimit::raise(&mut config);
    let (mut doh_tls, self_signed, certs) = doh::prepare_tls(&config)?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // If a later listener cannot be bound, the ones already serving must not go on.
    let mut started = StopOnFailure(Some(shutdown.clone()));
    let workers = Workers::start(config.threads.unwrap_or_else(worker::default_threads))
        .context("cannot start the worker threads")?;
    let doh_spawner = doh::Spawner {
        handler: &current,
        metrics: &inbound_metrics,
        shutdown: &shutdown,
        tracker: &tracker,
        workers: &workers,
        grace: config.timeouts.shutdown_grace,
        max_connections: config.limits.doh_connections,
        max_per_client: config.limits.connections_per_client,
    };
    let mut addrs = LocalAddrs::default();
    let tcp_options = tcp::TcpOptions {
        idle_timeout: config.timeouts.tcp_idle,
        read_timeout: config.timeouts.tcp_idle.min(Duration::from_secs(5)),
        max_connections: config.limits.tcp_connections,
        max_in_flight: config.limits.tcp_queries_in_flight,
        max_per_client: config.limits.connections_per_client,
        ..tcp::TcpOptions::default()
    };

    let udp_options = udp::UdpOptions {
        reuseport: config.reuseport,
        ..udp::UdpOptions::default()
    };

    for (id, ep) in config.inbound.iter().enumerate() {
        let allow = AllowList::new(ep.allow.clone()).with_refuse(ep.refuse);
        let endpoint = Endpoint::with_id(id, ep.name.clone(), allow);
        for &addr in &ep.do53 {
            let (udp_socket, tcp_listener) = bind_do53(addr, udp_options.reuseport).await?;
            let local = udp_socket.local_addr()?;
            addrs.do53.push((ep.name.clone(), local));
            let udp = udp::serve(
                udp_socket,
                current.clone(),
                endpoint.clone(),
                udp_options,
                workers.clone(),
                inbound_metrics.clone(),
                shutdown.clone(),
            );
            tracker.spawn(async move {
                if let Err(e) = udp.await {
                    tracing::error!(%local, error = %e, "the do53 udp listener could not start");
                }
            });
            tracker.spawn(tcp::serve(
                tcp_listener,
                current.clone(),
                endpoint.clone(),
                tcp_options,
                workers.clone(),
                inbound_metrics.clone(),
                shutdown.clone(),
            ));
        }
        let tls = std::mem::take(&mut doh_tls[id]);
        doh_spawner.endpoint(ep, &endpoint, tls, &mut addrs).await?;
    }

    designate(&config, &addrs, &current.resolver());
    tracker.spawn(capacity.run(shutdown.clone()));
    let health = Arc::new(Health {
        listening: AtomicBool::new(false),
        config_loaded: AtomicBool::new(true),
        current: current.clone(),
    });
    if let Some(admin_addr) = config.admin {
        let listener = tcp::bind(admin_addr)
            .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?;
        addrs.admin = Some(listener.local_addr()?);
        tracker.spawn(admin::serve(
            listener,
            registry.clone(),
            health.clone(),
            config.admin_limits,
            gateway_metrics
                .admin_refused
                .with_label_values(&["connection_limit"]),
            shutdown.clone(),
        ));
    }
    health.listening.store(true, Ordering::Release);
    started.0 = None;

    Ok(RunningGateway {
        addrs: addrs.clone(),
        shutdown,
        tracker,
        grace: config.timeouts.shutdown_grace,
        reloader: Reloader {
            current,
            applied: Arc::new(std::sync::Mutex::new(loaded)),
            metrics: outbound_metrics_for_reload,
            query_log_dropped: gateway_metrics.query_log_dropped.clone(),
            reloads: gateway_metrics.config_reloads.clone(),
            addrs,
            certs,
        },
        registry,
        self_signed,
    })
}

/// Cancels the gateway's shutdown token when dropped while still holding it: `start` keeps one
/// until every listener is up, so an error part-way stops the listeners it had started
/// (and frees their ports) instead of leaving them serving with no one to stop them.
struct StopOnFailure(Option<CancellationToken>);

impl Drop for StopOnFailure {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

/// Tells the resolver what `_dns.resolver.arpa` designates for each endpoint with a
/// `ddr_name`: its DoH and DoH-FIPS listeners at the addresses they were bound to.
fn designate(config: &Config, addrs: &LocalAddrs, resolver: &Resolver) {
    for (id, ep) in config.inbound.iter().enumerate() {
        let Some(name) = &ep.ddr_name else {
            continue;
        };
        let listeners: Vec<SocketAddr> = addrs
            .doh
            .iter()
            .chain(&addrs.doh_fips)
            .filter(|(e, _)| *e == ep.name)
            .map(|(_, a)| *a)
            .collect();
        match Designation::new(name, &listeners, &ep.doh_path) {
            Ok(d) => resolver.designate(id, d),
            Err(e) => tracing::warn!(endpoint = %ep.name, error = %e, "no DDR designation"),
        }
    }
}

/// Binds UDP and TCP on the same address. For port 0 the kernel picks the UDP port and TCP
/// takes the same one, trying again with another port if that one is taken for TCP.
async fn bind_do53(addr: SocketAddr, reuseport: bool) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = udp::bind(addr, reuseport)
            .with_context(|| format!("cannot listen on {addr} (do53 udp)"))?;
        let bound = udp.local_addr()?;
        match tcp::bind(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_err = Some(e),
        }
    }
    let e = last_err.map_or_else(|| "unknown error".to_string(), |e| e.to_string());
    Err(anyhow::anyhow!("cannot listen on {addr} (do53 tcp): {e}"))
}
