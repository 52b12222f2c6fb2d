//! The transport-blind seam: every listener decodes its framing, hands the raw query to a
//! [`Handler`], and carries out the [`Reply`] (send this answer, or drop). Admission, policy,
//! routing and observation live behind it, so Do53 and DoH share one pipeline.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::acl::AllowList;
use crate::error::WireError;
use crate::protocol::Protocol;

/// How a query reached dohgate, below the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// DoH over HTTP/1.1.
    H1,
    /// DoH over HTTP/2.
    H2,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::H1 => "h1",
            Transport::H2 => "h2",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inbound endpoint as its listeners see it: a name for metrics and logs, and who may ask.
#[derive(Debug, Default)]
pub struct Endpoint {
    /// The endpoint's position in the configuration, so the handler can find per-endpoint
    /// state (such as metric handles) without a lookup by name.
    pub id: usize,
    pub name: String,
    pub allow: AllowList,
}

impl Endpoint {
    pub fn new(name: impl Into<String>, allow: AllowList) -> Arc<Self> {
        Self::with_id(0, name, allow)
    }

    pub fn with_id(id: usize, name: impl Into<String>, allow: AllowList) -> Arc<Self> {
        Arc::new(Endpoint {
            id,
            name: name.into(),
            allow,
        })
    }
}

/// One query as a listener received it.
#[derive(Debug)]
pub struct DnsRequest {
    /// The DNS message exactly as the client sent it.
    pub message: Vec<u8>,
    pub client: SocketAddr,
    pub endpoint: Arc<Endpoint>,
    pub protocol: Protocol,
    pub transport: Transport,
}

/// What the listener must do with a query once the handler is done with it, so that no
/// listener invents its own meaning for a missing answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this DNS message back. For a query that came over UDP it already fits the
    /// client's payload size (TC set otherwise).
    Answer(Vec<u8>),
    /// The query is malformed. Do53 sends `answer` when there is one (FORMERR or NOTIMP;
    /// never for a message with QR set, which is dropped); DoH answers HTTP 400 with `error`.
    Malformed {
        error: WireError,
        answer: Option<Vec<u8>>,
    },
    /// The client is over its rate limit. Do53 sends `answer` when there is one (REFUSED, or
    /// an empty answer with TC set); DoH answers HTTP 429 with `Retry-After`.
    Limited { answer: Option<Vec<u8>> },
    /// Send nothing.
    Drop,
}

impl Reply {
    /// The DNS message a Do53 listener sends, if any.
    pub fn into_message(self) -> Option<Vec<u8>> {
        match self {
            Reply::Answer(m) => Some(m),
            Reply::Malformed { answer, .. } | Reply::Limited { answer } => answer,
            Reply::Drop => None,
        }
    }

    /// The DNS message sent back, if any (for metrics and logs).
    pub fn message(&self) -> Option<&[u8]> {
        match self {
            Reply::Answer(m) => Some(m),
            Reply::Malformed { answer, .. } | Reply::Limited { answer } => answer.as_deref(),
            Reply::Drop => None,
        }
    }
}

/// What listeners hand queries to.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: DnsRequest) -> impl Future<Output = Reply> + Send;
}

impl<H: Handler> Handler for Arc<H> {
    fn handle(&self, request: DnsRequest) -> impl Future<Output = Reply> + Send {
        (**self).handle(request)
    }
}
