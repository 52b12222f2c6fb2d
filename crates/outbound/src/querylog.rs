//! The query path's side of the query log: a small record per query pushed into a bounded
//! queue without waiting. Formatting and writing happen elsewhere (the gateway's writer
//! thread), so a slow disk or a stalled pipe costs queries nothing: a full queue drops the
//! record and counts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use dohgate_core::Protocol;
use dohgate_core::config::FirewallConfig;
use dohgate_core::firewall::{FirewallAction, Verdict};
use dohgate_core::handler::{DnsRequest, Endpoint, Reply, Transport};
use dohgate_core::rules::RuleSet;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::target::Target;

/// One query as the query log needs it: raw bytes, decoded off the query path.
#[derive(Debug)]
pub struct QueryRecord {
    /// When the query was received.
    pub time: SystemTime,
    /// The query exactly as the client sent it.
    pub query: Vec<u8>,
    /// The answer sent back, if any.
    pub answer: Option<Vec<u8>>,
    pub client: SocketAddr,
    pub endpoint: Arc<Endpoint>,
    pub protocol: Protocol,
    pub transport: Transport,
    /// The matched rule's name; `None`: no rule matched (the default resolver), or the query
    /// never got as far as the rules.
    pub rule: Option<Arc<str>>,
    /// The target that answered, or the last one tried when none did.
    pub target: Option<Arc<Target>>,
    /// The firewall rule that decided the query, if one matched.
    pub firewall: Option<FirewallMatch>,
}

/// A firewall rule's match as Route 53 query logs name it.
#[derive(Clone, Debug)]
pub struct FirewallMatch {
    /// `firewall_rule_group_id`.
    pub rule_group: Arc<str>,
    /// `firewall_rule_action`.
    pub action: FirewallAction,
    /// `firewall_domain_list_id`.
    pub domain_list: Arc<str>,
}

/// Which rule and target a query went to and which firewall rule decided it, filled in by the
/// stages as the query goes through them.
#[derive(Debug, Default)]
pub struct Route {
    /// Index of the matched rule in the resolver's [`RuleSet`].
    pub rule: Option<usize>,
    /// The target that answered, or the last one tried when none did.
    pub target: Option<Arc<Target>>,
    /// The firewall rule that decided the query: the question's, or a name's in the answer's
    /// redirection chain that blocked or alerted.
    pub firewall: Option<Verdict>,
}

/// The sending end of the query log queue.
#[derive(Debug)]
pub struct QueryLog {
    tx: mpsc::Sender<QueryRecord>,
    dropped: IntCounter,
    /// Rule names by index, shared so a record costs a reference count, not a copy.
    rule_names: Vec<Arc<str>>,
    /// By firewall rule group, then rule: what the log says of its matches.
    firewall: Vec<Vec<FirewallMatch>>,
}

impl QueryLog {
    /// A queue of `capacity` records; `dropped` counts the records that found it full (or the
    /// writer gone).
    pub fn channel(
        capacity: usize,
        rules: &RuleSet,
        firewall: &FirewallConfig,
        dropped: IntCounter,
    ) -> (QueryLog, mpsc::Receiver<QueryRecord>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let rule_names = rules
            .rules()
            .iter()
            .map(|r| Arc::from(r.name.as_str()))
            .collect();
        let list_names: Vec<Arc<str>> = firewall
            .list_names
            .iter()
            .map(|n| Arc::from(n.as_str()))
            .collect();
        let firewall = firewall
            .engine
            .groups()
            .iter()
            .map(|g| {
                let group: Arc<str> = Arc::from(g.name.as_str());
                g.rules()
                    .iter()
                    .map(|r| FirewallMatch {
                        rule_group: group.clone(),
                        action: r.action,
                        domain_list: list_names
                            .get(r.list)
                            .cloned()
                            .unwrap_or_else(|| Arc::from("")),
                    })
                    .collect()
            })
            .collect();
        (
            QueryLog {
                tx,
                dropped,
                rule_names,
                firewall,
            },
            rx,
        )
    }

    /// Queues a record of `request` (received at `started`) and its reply, or counts a drop:
    /// never waits.
    pub fn record(&self, request: DnsRequest, reply: &Reply, route: Route, started: Instant) {
        // Reserving first means a full queue costs neither the copy of the answer nor the
        // record's allocation.
        let Ok(permit) = self.tx.try_reserve() else {
            self.dropped.inc();
            return;
        };
        let now = SystemTime::now();
        permit.send(QueryRecord {
            time: now.checked_sub(started.elapsed()).unwrap_or(now),
            query: request.message,
            answer: reply.message().map(<[u8]>::to_vec),
            client: request.client,
            endpoint: request.endpoint,
            protocol: request.protocol,
            transport: request.transport,
            rule: route.rule.and_then(|i| self.rule_names.get(i).cloned()),
            target: route.target,
            firewall: route
                .firewall
                .and_then(|v| self.firewall.get(v.group)?.get(v.rule).cloned()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dohgate_core::acl::AllowList;

    fn request() -> DnsRequest {
        DnsRequest {
            message: vec![0; 12],
            client: "127.0.0.1:5300".parse().expect("addr"),
            endpoint: Endpoint::new("test", AllowList::default()),
            protocol: Protocol::Do53,
            transport: Transport::Udp,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let rules = RuleSet::new(Vec::new()).expect("rules");
        let dropped = IntCounter::new("dropped", "test").expect("counter");
        let (log, mut rx) =
            QueryLog::channel(2, &rules, &FirewallConfig::default(), dropped.clone());
        let reply = Reply::Answer(vec![1; 12]);
        for _ in 0..5 {
            log.record(request(), &reply, Route::default(), Instant::now());
        }
        assert_eq!(dropped.get(), 3);
        let first = rx.try_recv().expect("queued");
        assert_eq!(first.answer.as_deref(), Some(&[1u8; 12][..]));
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());

        drop(rx);
        log.record(request(), &reply, Route::default(), Instant::now());
        assert_eq!(dropped.get(), 4, "a writer that is gone counts as a drop");
    }
}
