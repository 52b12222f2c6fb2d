//! Errors of the core crate: malformed wire data and invalid configuration.

use std::fmt;
use std::path::PathBuf;

use crate::wire::Rcode;

/// Why a DNS message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("message is truncated")]
    Truncated,
    #[error("message has no question")]
    NoQuestion,
    #[error("query has {0} questions, not 1")]
    QuestionCount(u16),
    #[error("malformed domain name")]
    BadName,
    #[error("message is a response, not a query")]
    NotAQuery,
    #[error("opcode {0} is not implemented")]
    Opcode(u8),
    #[error("more than one OPT record")]
    BadOpt,
    #[error("bytes after the last record")]
    TrailingBytes,
}

impl WireError {
    /// The RCODE a query with this defect is answered with (RFC 1035 §4.1.1, RFC 6891 §6.1.1).
    pub fn rcode(self) -> Rcode {
        match self {
            WireError::Opcode(_) => Rcode::NotImp,
            _ => Rcode::FormErr,
        }
    }

    /// A short, stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::NoQuestion | WireError::QuestionCount(_) => "question_count",
            WireError::BadName => "bad_name",
            WireError::NotAQuery => "not_a_query",
            WireError::Opcode(_) => "opcode",
            WireError::BadOpt => "bad_opt",
            WireError::TrailingBytes => "trailing_bytes",
        }
    }
}

/// An error in the configuration, naming the file, line and key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
