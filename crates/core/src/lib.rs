//! dohgate-core holds what the inbound and outbound sides share: the protocols an endpoint
//! speaks, the Route 53-style forwarding rules, the configuration, byte-level DNS wire helpers,
//! and the transport-blind [`Handler`] seam every listener hands its queries to.

pub mod acl;
pub mod config;
pub mod ddr;
pub mod error;
pub mod firewall;
pub mod handler;
pub mod local;
pub mod protocol;
pub mod ratelimit;
pub mod rules;
pub mod target;
pub mod wire;
pub mod worker;
pub mod zone;

pub use error::{ConfigError, WireError};
pub use handler::{DnsRequest, Endpoint, Handler, Reply, Transport};
pub use protocol::{Protocol, ProtocolSet};
pub use rules::{ForwardingRule, RuleKind, RuleSet};
pub use target::TargetSpec;
