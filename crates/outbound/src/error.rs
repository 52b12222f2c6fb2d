//! Why one attempt at one target failed.

use std::io;

/// The failure of one exchange with one target; the resolver moves on to the next target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    #[error("no answer within the attempt timeout")]
    Timeout,
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("answer does not match the query: {0}")]
    Mismatch(&'static str),
    #[error("target answered {0}")]
    Rcode(&'static str),
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl AttemptError {
    /// The outcome label of this failure in the per-target metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            AttemptError::Timeout => "timeout",
            AttemptError::Rcode("SERVFAIL") => "servfail",
            AttemptError::Rcode("REFUSED") => "refused",
            _ => "error",
        }
    }
}
