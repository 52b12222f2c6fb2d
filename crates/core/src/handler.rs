//! The transport-blind seam: every listener decodes its framing, hands the raw query to a
//! [`Handler`], and encodes the [`Reply`]. Rules, forwarding, limits and metrics live behind it,
//! so Do53 and DoH share one pipeline.

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

/// What the handler answers.
#[derive(Debug, Default)]
pub struct Reply {
    /// The DNS message to send back; `None` when nothing can be sent (a datagram too short to
    /// carry an ID).
    pub message: Option<Vec<u8>>,
    /// Set when the gateway rejected the query itself as malformed: DoH answers such a query
    /// with HTTP 400 and this reason rather than a DNS message.
    pub malformed: Option<WireError>,
}

impl Reply {
    pub fn message(message: Vec<u8>) -> Self {
        Reply {
            message: Some(message),
            malformed: None,
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
