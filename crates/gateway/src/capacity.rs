//! Endpoint capacity status, in the spirit of Route 53's ResolverEndpointCapacityStatus: once a
//! second a background task reads each endpoint's `dohgate_queries_total` counters, computes
//! the query rate over the last [`WINDOW`], and sets `dohgate_endpoint_capacity_status` to 0
//! (ok), 1 (above 50 % of `capacity_qps`) or 2 (above 75 %). The query path is untouched: it
//! only increments the counters it already has.

use std::collections::VecDeque;
use std::time::Duration;

use dohgate_core::Protocol;
use dohgate_core::config::InboundEndpoint;
use dohgate_core::handler::Transport;
use dohgate_outbound::OutboundMetrics;
use prometheus::{IntCounter, IntGauge};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;

/// The span the rate is measured over.
pub const WINDOW: Duration = Duration::from_secs(10);
/// How often the status is recomputed.
pub const TICK: Duration = Duration::from_secs(1);

const TRANSPORTS: [Transport; 4] = [Transport::Udp, Transport::Tcp, Transport::H1, Transport::H2];

/// The status for `rate` queries per second against `capacity`.
pub fn status(rate: f64, capacity: u64) -> i64 {
    let capacity = capacity.max(1) as f64;
    if rate > 0.75 * capacity {
        2
    } else if rate > 0.5 * capacity {
        1
    } else {
        0
    }
}

/// Samples of a monotonic counter over a sliding window.
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Adds a sample and returns the rate per second over the window (0 until two samples
    /// exist).
    pub fn push(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while let Some(&(t, _)) = self.samples.front() {
            if now.duration_since(t) > WINDOW && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, v0)), Some(&(t1, v1))) if t1 > t0 => {
                v1.saturating_sub(v0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// One endpoint as the watcher sees it.
#[derive(Debug)]
struct Watched {
    counters: Vec<IntCounter>,
    capacity: u64,
    status: IntGauge,
    window: RateWindow,
}

impl Watched {
    fn total(&self) -> u64 {
        self.counters.iter().map(IntCounter::get).sum()
    }
}

/// The endpoints whose capacity status is kept current.
#[derive(Debug)]
pub struct Watcher {
    watched: Vec<Watched>,
}

impl Watcher {
    /// Sets up the capacity gauges of `endpoints` (status 0 until measured).
    pub fn new(
        endpoints: &[InboundEndpoint],
        queries: &OutboundMetrics,
        metrics: &GatewayMetrics,
    ) -> Self {
        let watched = endpoints
            .iter()
            .map(|ep| {
                let name = ep.name.as_str();
                let capacity = ep.capacity_qps();
                metrics
                    .capacity_qps
                    .with_label_values(&[name])
                    .set(i64::try_from(capacity).unwrap_or(i64::MAX));
                let status = metrics.capacity_status.with_label_values(&[name]);
                status.set(0);
                let counters = Protocol::ALL
                    .iter()
                    .flat_map(|p| {
                        TRANSPORTS.iter().map(move |t| {
                            queries
                                .queries
                                .with_label_values(&[name, p.as_str(), t.as_str()])
                        })
                    })
                    .collect();
                Watched {
                    counters,
                    capacity,
                    status,
                    window: RateWindow::default(),
                }
            })
            .collect();
        Watcher { watched }
    }

    /// Recomputes every status once a [`TICK`] until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                now = tick.tick() => {
                    for w in &mut self.watched {
                        let rate = w.window.push(now, w.total());
                        w.status.set(status(rate, w.capacity));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_strictly_above_half_and_three_quarters() {
        assert_eq!(status(0.0, 100), 0);
        assert_eq!(status(50.0, 100), 0);
        assert_eq!(status(50.1, 100), 1);
        assert_eq!(status(75.0, 100), 1);
        assert_eq!(status(75.1, 100), 2);
        assert_eq!(status(1000.0, 100), 2);
    }

    #[test]
    fn rate_is_measured_over_the_last_ten_seconds() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.push(at(0), 0), 0.0);
        // A burst of 1000 queries in the first second.
        assert_eq!(w.push(at(1), 1000), 1000.0);
        let mut rate = 0.0;
        for s in 2..=10 {
            rate = w.push(at(s), 1000);
        }
        assert_eq!(rate, 100.0);
        // Twelve seconds on, the burst has left the window.
        assert_eq!(w.push(at(12), 1000), 0.0);
        assert_eq!(w.push(at(13), 1300), 30.0);
    }
}
