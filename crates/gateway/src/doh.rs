//! Wiring of an inbound endpoint's DoH, DoH-FIPS and cleartext DoH listeners: their TLS
//! configurations (from the endpoint's files, or a self-signed certificate made at start) and
//! their sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dohgate_core::Protocol;
use dohgate_core::config::{Config, InboundEndpoint};
use dohgate_core::handler::{Endpoint, Handler};
use dohgate_inbound::tls::{self, SelfSigned, ServerConfig};
use dohgate_inbound::{DohListener, DohOptions, InboundMetrics, Workers};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::LocalAddrs;

/// The certificate generated at start for DoH endpoints without `tls_cert`/`tls_key`.
#[derive(Clone, Debug)]
pub struct SelfSignedCert {
    /// SHA-256 of the certificate, `AA:BB:...`.
    pub sha256_fingerprint: String,
    /// Base64 SHA-256 of its public key, for `kdig +tls-pin=`.
    pub spki_pin: String,
    /// Where its PEM was written, for clients that trust it by file (`kdig +tls-ca=`).
    pub pem_file: Option<PathBuf>,
}

/// The TLS configurations of one inbound endpoint's DoH listeners.
#[derive(Default)]
pub(crate) struct EndpointTls {
    doh: Option<Arc<ServerConfig>>,
    doh_fips: Option<Arc<ServerConfig>>,
}

/// Builds the TLS configuration of every DoH listener that has certificate files, for
/// `check-config`: files that are missing, not regular files, too large, unreadable as PEM, or
/// a key that does not match its certificate fail here as they would at start.
pub(crate) fn check_tls(config: &Config) -> anyhow::Result<()> {
    for ep in &config.inbound {
        let Some(files) = &ep.tls else {
            continue;
        };
        for (fips, addrs) in [(false, &ep.doh), (true, &ep.doh_fips)] {
            if !addrs.is_empty() {
                tls::server_config(&files.cert, &files.key, fips)
                    .with_context(|| format!("inbound endpoint {:?}", ep.name))?;
            }
        }
    }
    Ok(())
}

/// Builds every endpoint's TLS before any socket is bound, so a bad certificate or a DoH-FIPS
/// listener in a build without FIPS fails the start with nothing left running.
/// A DoH listener's certificate files and the store it presents them from, for a reload to
/// read the files again and swap what new handshakes get.
#[derive(Clone, Debug)]
pub(crate) struct ReloadableCert {
    pub(crate) files: dohgate_core::config::TlsFiles,
    pub(crate) fips: bool,
    pub(crate) store: Arc<tls::CertStore>,
}

/// The TLS configurations of every endpoint, the self-signed certificate if one was made, and
/// the certificates a reload may replace.
pub(crate) type PreparedTls = (
    Vec<EndpointTls>,
    Option<SelfSignedCert>,
    Vec<ReloadableCert>,
);

pub(crate) fn prepare_tls(config: &Config) -> anyhow::Result<PreparedTls> {
    let needs_self_signed = config
        .inbound
        .iter()
        .any(|e| e.tls.is_none() && !(e.doh.is_empty() && e.doh_fips.is_empty()));
    let generated = if needs_self_signed {
        Some(generate(config)?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(config.inbound.len());
    let mut reloadable = Vec::new();
    for ep in &config.inbound {
        let mut t = EndpointTls::default();
        for (fips, addrs) in [(false, &ep.doh), (true, &ep.doh_fips)] {
            if addrs.is_empty() {
                continue;
            }
            let what = if fips { "doh-fips" } else { "doh" };
            let built = match (&ep.tls, &generated) {
                (Some(files), _) => tls::server_config_reloadable(&files.cert, &files.key, fips)
                    .map(|(config, store)| {
                        reloadable.push(ReloadableCert {
                            files: files.clone(),
                            fips,
                            store,
                        });
                        config
                    }),
                (None, Some(cert)) => cert.server_config(fips),
                (None, None) => anyhow::bail!("inbound endpoint {:?}: no certificate", ep.name),
            };
            let built =
                built.with_context(|| format!("inbound endpoint {:?} ({what})", ep.name))?;
            if fips {
                t.doh_fips = Some(built);
            } else {
                t.doh = Some(built);
            }
        }
        out.push(t);
    }
    let info = generated.map(|cert| {
        let pem_file = write_pem(&cert, config);
        SelfSignedCert {
            sha256_fingerprint: cert.sha256_fingerprint.clone(),
            spki_pin: cert.spki_sha256_base64.clone(),
            pem_file,
        }
    });
    Ok((out, info, reloadable))
}

/// A certificate for localhost and every address a TLS listener without certificate files
/// binds to.
fn generate(config: &Config) -> anyhow::Result<SelfSigned> {
    let mut names = vec!["localhost".to_string()];
    let mut ips: Vec<IpAddr> = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    for ep in config.inbound.iter().filter(|e| e.tls.is_none()) {
        for a in ep.doh.iter().chain(&ep.doh_fips) {
            if !a.ip().is_unspecified() && !ips.contains(&a.ip()) {
                ips.push(a.ip());
            }
        }
    }
    names.extend(ips.iter().map(IpAddr::to_string));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    tracing::warn!(
        "a DoH endpoint has no tls_cert/tls_key: serving a self-signed certificate made at start \
         (clients must be told to trust it)"
    );
    SelfSigned::generate(&names).context("self-signed certificate")
}

/// Writes the certificate where `kdig +tls-ca=` can read it: the temporary directory, one file
/// per first DoH port, so restarts replace it rather than pile up.
fn write_pem(cert: &SelfSigned, config: &Config) -> Option<PathBuf> {
    let port = config
        .inbound
        .iter()
        .filter(|e| e.tls.is_none())
        .flat_map(|e| e.doh.iter().chain(&e.doh_fips))
        .map(SocketAddr::port)
        .next()
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("dohgate-self-signed-{port}.pem"));
    match std::fs::write(&path, &cert.cert_pem) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the self-signed certificate");
            None
        }
    }
}

/// The shared pieces every DoH listener of a gateway is started with.
pub(crate) struct Spawner<'a, H> {
    pub handler: &'a Arc<H>,
    pub metrics: &'a InboundMetrics,
    pub shutdown: &'a CancellationToken,
    pub tracker: &'a TaskTracker,
    /// The threads DoH connections are served on.
    pub workers: &'a Workers,
    pub grace: Duration,
    /// `limits.doh_connections`: connections each listener may hold at once.
    pub max_connections: usize,
    /// `limits.connections_per_client`: connections one client address may hold per listener.
    pub max_per_client: u32,
}

impl<H: Handler> Spawner<'_, H> {
    /// Binds and starts the DoH, DoH-FIPS and cleartext DoH listeners of one endpoint.
    pub async fn endpoint(
        &self,
        ep: &InboundEndpoint,
        endpoint: &Arc<Endpoint>,
        tls: EndpointTls,
        addrs: &mut LocalAddrs,
    ) -> anyhow::Result<()> {
        let options = DohOptions {
            path: ep.doh_path.clone(),
            shutdown_grace: self.grace,
            max_connections: self.max_connections,
            max_per_client: self.max_per_client,
            ..DohOptions::default()
        };
        let kinds = [
            (Protocol::DoH, tls.doh, &ep.doh, "doh"),
            (Protocol::DohFips, tls.doh_fips, &ep.doh_fips, "doh-fips"),
            (Protocol::DoH, None, &ep.doh_plain, "doh cleartext"),
        ];
        for (protocol, tls, list, what) in kinds {
            for &addr in list {
                let listener = dohgate_inbound::tcp::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} ({what})"))?;
                let local = listener.local_addr()?;
                let doh = DohListener::new(
                    self.handler.clone(),
                    endpoint.clone(),
                    protocol,
                    tls.clone(),
                    options.clone(),
                    self.metrics.clone(),
                )
                .with_context(|| format!("inbound endpoint {:?} ({what})", ep.name))?
                .with_workers(self.workers.clone());
                let entry = (ep.name.clone(), local);
                match (protocol, tls.is_some()) {
                    (Protocol::DohFips, _) => addrs.doh_fips.push(entry),
                    (_, true) => addrs.doh.push(entry),
                    (_, false) => addrs.doh_plain.push(entry),
                }
                self.tracker
                    .spawn(doh.serve(listener, self.shutdown.clone()));
            }
        }
        Ok(())
    }
}
