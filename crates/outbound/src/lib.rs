//! dohgate-outbound resolves the queries listeners hand over: its [`Pipeline`] admits them,
//! applies the forwarding rules, answers locally served zones, and sends everything else to a
//! rule's targets or the default resolver over Do53 (or DoH), failing over between targets as
//! Route 53 does.

pub mod cache;
pub mod do53;
pub mod doh;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod querylog;
pub mod resolver;
pub mod target;

pub use cache::AnswerCache;
pub use error::AttemptError;
pub use metrics::OutboundMetrics;
pub use pipeline::Pipeline;
pub use policy::PolicyStage;
pub use querylog::{FirewallMatch, QueryLog, QueryRecord, Route};
pub use resolver::{Resolver, ResolverOptions};
pub use target::{Target, TargetSet};
