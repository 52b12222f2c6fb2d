//! dohgate-inbound holds the listeners of inbound endpoints: Do53 over UDP and TCP, and DoH /
//! DoH-FIPS over HTTPS. Each one decodes its framing, hands the query to the core `Handler`
//! seam, and encodes the reply; rules, forwarding and query metrics live behind the seam.

pub mod accept;
pub mod doh;
pub mod error;
pub mod metrics;
pub mod per_client;
mod ready;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod workers;

pub use doh::{DohListener, DohOptions};
pub use error::{DohError, TlsError};
pub use metrics::InboundMetrics;
pub use tls::fips_available;
pub use workers::Workers;
