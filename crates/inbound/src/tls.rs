//! TLS server configurations for DoH and DoH-FIPS listeners.
//!
//! Both modes go through [`server_config_from_der`] with a crypto provider chosen by
//! [`provider`], so DoH-FIPS differs from DoH only in the provider (the FIPS 140-3 validated
//! AWS-LC module) and in the check that the result reports FIPS mode.

use std::path::Path;

use dohgate_core::config;
use std::sync::Arc;

use arc_swap::ArcSwap;
pub use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::TlsError;

/// ALPN protocols of DoH listeners, preferred first (RFC 8484 §5.2 recommends HTTP/2).
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS sessions remembered for stateful resumption.
const SESSION_CACHE_SIZE: usize = 4096;

/// True if this build can serve DoH-FIPS (it was built with the `fips` feature).
pub const fn fips_available() -> bool {
    cfg!(feature = "fips")
}

/// The crypto provider of a listener. With `fips`, only FIPS-approved algorithms remain:
/// AES-GCM suites and the approved groups (P-256, P-384, X25519MLKEM768).
pub fn provider(fips: bool) -> Result<Arc<CryptoProvider>, TlsError> {
    if !fips {
        return Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    }
    fips_provider()
}

#[cfg(feature = "fips")]
fn fips_provider() -> Result<Arc<CryptoProvider>, TlsError> {
    use rustls::CipherSuite;
    let mut p = rustls::crypto::default_fips_provider();
    // The FIPS provider already leaves out ChaCha20 and X25519; filtering again keeps that
    // promise even if a later rustls widens its FIPS defaults.
    p.cipher_suites.retain(|s| {
        s.fips()
            && matches!(
                s.suite(),
                CipherSuite::TLS13_AES_128_GCM_SHA256
                    | CipherSuite::TLS13_AES_256_GCM_SHA384
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                    | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                    | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            )
    });
    p.kx_groups.retain(|g| g.fips());
    if !p.fips() {
        return Err(TlsError::NotFips);
    }
    Ok(Arc::new(p))
}

#[cfg(not(feature = "fips"))]
fn fips_provider() -> Result<Arc<CryptoProvider>, TlsError> {
    Err(TlsError::FipsUnavailable)
}

/// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1;
/// ECDSA or RSA) and builds a listener's TLS configuration.
pub fn server_config(cert: &Path, key: &Path, fips: bool) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_reloadable(cert, key, fips).map(|(config, _)| config)
}

/// [`server_config`], with the [`CertStore`] the configuration takes its certificate from, so
/// that a reload can replace the certificate of a listener that keeps serving.
pub fn server_config_reloadable(
    cert: &Path,
    key: &Path,
    fips: bool,
) -> Result<(Arc<ServerConfig>, Arc<CertStore>), TlsError> {
    // Check the build first: a DoH-FIPS listener in a build without FIPS support fails with
    // the message that says how to fix it, not with a file error.
    let provider = provider(fips)?;
    let certified = certified_key(&provider, cert, key)?;
    let store = Arc::new(CertStore::new(certified));
    Ok((build(provider, store.clone(), fips)?, store))
}

/// Reads a certificate chain and its key from their files, for a listener's [`CertStore`]:
/// the key must match the certificate.
pub fn load_certified_key(cert: &Path, key: &Path, fips: bool) -> Result<CertifiedKey, TlsError> {
    certified_key(&*provider(fips)?, cert, key)
}

fn certified_key(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    // Read with a size limit and only from a regular file: `/dev/zero` would read until memory
    // runs out, a FIFO would hang the start.
    let read = |path: &Path| {
        config::read_small_file(path, config::MAX_PEM_FILE).map_err(|message| TlsError::File {
            path: path.to_path_buf(),
            message,
        })
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Certificates {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(read(key)?.as_bytes()).map_err(|source| TlsError::Key {
            path: key.to_path_buf(),
            source,
        })?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

/// Builds a listener's TLS configuration from DER: TLS 1.3 and 1.2, ALPN h2 and http/1.1,
/// resumption by session cache and by tickets.
pub fn server_config_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    fips: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(fips)?;
    let certified = CertifiedKey::from_der(chain, key, &provider)?;
    build(provider, Arc::new(CertStore::new(certified)), fips)
}

/// The certificate a listener presents, replaceable while it serves: a new handshake gets the
/// one in the store at that moment, connections already made keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(certified: CertifiedKey) -> Self {
        CertStore {
            current: ArcSwap::from_pointee(certified),
        }
    }

    /// Presents `certified` from the next handshake on.
    pub fn replace(&self, certified: CertifiedKey) {
        self.current.store(Arc::new(certified));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn build(
    provider: Arc<CryptoProvider>,
    certs: Arc<CertStore>,
    fips: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    // Tickets are AES-256-CBC + HMAC-SHA256 from the same AWS-LC module, approved in FIPS mode.
    let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = ticketer;
    // 0-RTT data can be replayed; DNS queries gain little from it.
    config.max_early_data_size = 0;
    if fips {
        // TLS 1.2 is FIPS-approved only with the extended master secret (SP 800-135).
        config.require_ems = true;
        if !config.fips() {
            return Err(TlsError::NotFips);
        }
    }
    Ok(Arc::new(config))
}

/// A certificate generated at start for the embedded default, with what a client needs to
/// trust it.
#[derive(Debug)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
    /// SHA-256 of the certificate, upper-case hex pairs joined by `:` (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256_fingerprint: String,
    /// Base64 of the SHA-256 of the SubjectPublicKeyInfo: the pin of `kdig +tls-pin=`.
    pub spki_sha256_base64: String,
}

impl SelfSigned {
    /// Generates an ECDSA P-256 certificate for `names` (DNS names or IP addresses).
    pub fn generate(names: &[&str]) -> Result<Self, TlsError> {
        use base64::Engine as _;
        use rcgen::PublicKeyData as _;

        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dohgate self-signed");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        let spki = key.subject_public_key_info();
        Ok(SelfSigned {
            cert_pem: cert.pem(),
            sha256_fingerprint: sha256(&cert_der)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":"),
            spki_sha256_base64: base64::engine::general_purpose::STANDARD.encode(sha256(&spki)),
            cert_der,
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// A listener's TLS configuration serving this certificate.
    pub fn server_config(&self, fips: bool) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_from_der(
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(self.key_der.clone_key()),
            fips,
        )
    }
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_serves_and_prints_its_fingerprint() {
        let s = SelfSigned::generate(&["localhost", "127.0.0.1"]).expect("generates");
        assert_eq!(s.sha256_fingerprint.len(), 32 * 3 - 1);
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let config = s.server_config(false).expect("config");
        assert_eq!(config.alpn_protocols[0], b"h2");
    }

    #[test]
    fn fips_only_when_built_for_it() {
        match provider(true) {
            Ok(p) => {
                assert!(fips_available());
                assert!(p.fips());
            }
            Err(e) => {
                assert!(!fips_available());
                assert!(matches!(e, TlsError::FipsUnavailable));
            }
        }
    }
}
