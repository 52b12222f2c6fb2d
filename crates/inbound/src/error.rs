//! Errors of the inbound crate: setting up TLS and DoH listeners ([`TlsError`]), and the one
//! place where a DoH request's failure becomes an HTTP status ([`DohError::status`]).

use std::path::PathBuf;

use dohgate_core::WireError;
use http::StatusCode;

/// What a build without the `fips` feature says when asked for DoH-FIPS.
pub const FIPS_BUILD_HINT: &str = "this dohgate was built without FIPS support, so it cannot serve DoH-FIPS; \
     rebuild it with `cargo build --release --features fips` (the FIPS 140-3 validated AWS-LC module needs cmake and Go to build)";

/// Why a TLS server configuration or a DoH listener could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("cannot read TLS certificate chain {path}: {source}")]
    Certificates {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("TLS certificate file {path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read TLS private key {path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("unusable TLS certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{FIPS_BUILD_HINT}")]
    FipsUnavailable,
    #[error(
        "the TLS configuration of a DoH-FIPS listener is not in FIPS mode (ServerConfig::fips() is false)"
    )]
    NotFips,
    #[error("a DoH-FIPS listener needs TLS: cleartext DoH cannot be FIPS")]
    FipsWithoutTls,
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// Why a DoH request got no DNS answer; each maps to one HTTP status and a one-line reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DohError {
    #[error("unknown path")]
    NotFound,
    #[error("HTTP/1.1 request without a Host header (RFC 9112 section 3.2)")]
    MissingHost,
    #[error("method not allowed: use GET or POST")]
    MethodNotAllowed,
    #[error("content-type must be application/dns-message")]
    UnsupportedMediaType,
    #[error("missing dns parameter")]
    MissingDnsParam,
    #[error("the dns parameter is repeated")]
    RepeatedDnsParam,
    #[error("the dns parameter is empty")]
    EmptyDnsParam,
    #[error("the dns parameter is not base64url")]
    BadBase64,
    #[error("DNS message larger than 65535 bytes")]
    TooLarge,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("request body could not be read")]
    BodyAborted,
    #[error("malformed DNS query: {0}")]
    Malformed(WireError),
    #[error("no answer")]
    NoAnswer,
    #[error("too many queries from your network: slow down")]
    RateLimited,
}

impl DohError {
    /// The HTTP status this failure is answered with (RFC 8484 §4.2.1, RFC 9110 §15).
    pub fn status(self) -> StatusCode {
        match self {
            DohError::NotFound => StatusCode::NOT_FOUND,
            DohError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            DohError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DohError::MissingHost
            | DohError::MissingDnsParam
            | DohError::RepeatedDnsParam
            | DohError::EmptyDnsParam
            | DohError::BadBase64
            | DohError::BodyAborted
            | DohError::Malformed(_) => StatusCode::BAD_REQUEST,
            DohError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            DohError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            DohError::NoAnswer => StatusCode::INTERNAL_SERVER_ERROR,
            DohError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_hint_says_how_to_build() {
        let text = TlsError::FipsUnavailable.to_string();
        assert!(
            text.contains("cargo build --release --features fips"),
            "{text}"
        );
        assert!(text.contains("cmake") && text.contains("Go"), "{text}");
    }

    #[test]
    fn every_error_has_a_client_or_server_status() {
        assert_eq!(DohError::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            DohError::Malformed(WireError::Truncated).status(),
            StatusCode::BAD_REQUEST
        );
        assert!(!DohError::NoAnswer.to_string().contains('\n'));
    }
}
