//! Per-client-prefix rate limiting: a token bucket for each client network (by default a /24
//! for IPv4 and a /56 for IPv6), kept in a table of fixed size, so memory stays the same
//! however many source addresses a spoofer uses.
//!
//! The table is an array of two-slot sets: a prefix hashes to one set, takes its slot there
//! or, when both slots belong to other prefixes, the one whose bucket is fuller. Forgetting a
//! full bucket loses nothing (a new prefix starts full), while a client being limited has an
//! empty one: a flood of spoofed one-off prefixes evicts its own entries, not the limited
//! client's.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// What a client over its rate gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitAction {
    /// REFUSED over Do53 (HTTP 429 over DoH).
    Refused,
    /// Over UDP an empty answer with TC set, so an honest client retries over TCP (which a
    /// spoofer cannot do); over DoH 429.
    Truncate,
    /// Nothing over Do53 (HTTP 429 over DoH).
    Drop,
}

impl LimitAction {
    /// A stable label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitAction::Refused => "refused",
            LimitAction::Truncate => "truncate",
            LimitAction::Drop => "drop",
        }
    }
}

/// An endpoint's rate limit as configured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained queries per second per client prefix.
    pub qps: u32,
    /// How many queries a prefix may send at once after being idle.
    pub burst: u32,
    pub action: LimitAction,
    /// Prefix lengths that make one client.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Prefixes tracked at once (rounded up to a power of two); the memory bound.
    pub table_size: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            qps: 1000,
            burst: 2000,
            action: LimitAction::Refused,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 65_536,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The masked prefix (IPv4 mapped into IPv6 space), 0 for an empty slot.
    key: u128,
    tokens: f32,
    /// Microseconds since the limiter's epoch.
    last_us: u64,
}

const EMPTY: Slot = Slot {
    key: 0,
    tokens: 0.0,
    last_us: 0,
};

/// Sets are grouped in this many independently locked shards.
const SHARDS: usize = 16;

/// One shard: its sets of two slots.
type Shard = Mutex<Box<[[Slot; 2]]>>;

/// The token buckets of one endpoint's clients.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    /// Each shard holds `sets_per_shard` sets of two slots.
    shards: Box<[Shard]>,
    sets_per_shard: usize,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        let slots = config.table_size.max(SHARDS * 2).next_power_of_two();
        let sets_per_shard = slots / 2 / SHARDS;
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(vec![[EMPTY; 2]; sets_per_shard].into_boxed_slice()))
            .collect();
        RateLimiter {
            config,
            shards,
            sets_per_shard,
            epoch: Instant::now(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The number of prefixes the table can hold: its memory bound.
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.sets_per_shard * 2
    }

    /// The client's prefix as one number (IPv4 in the IPv4-mapped IPv6 space), never 0.
    fn key(&self, ip: IpAddr) -> u128 {
        // An IPv4-mapped address (from a dual-stack socket) is the IPv4 client it carries.
        let ip = ip.to_canonical();
        let masked = match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let len = u32::from(self.config.ipv4_prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                (0xffff_u128 << 32) | u128::from(bits & mask)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let len = u32::from(self.config.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                bits & mask
            }
        };
        // 0 marks an empty slot; the unspecified network gets another value.
        masked.max(1)
    }

    /// Takes one token from `ip`'s bucket at `now`: true if the query may go on.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let key = self.key(ip);
        let mut h = self.hasher.build_hasher();
        h.write_u128(key);
        let hash = h.finish() as usize;
        let shard = hash % SHARDS;
        let set = (hash / SHARDS) % self.sets_per_shard;
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let burst = self.config.burst.max(1) as f32;
        let Ok(mut sets) = self.shards[shard].lock() else {
            // A poisoned lock (a panic elsewhere) must not stop DNS: fail open.
            return true;
        };
        let Some(slots) = sets.get_mut(set) else {
            return true;
        };
        let refilled = |s: &Slot| {
            let elapsed = now_us.saturating_sub(s.last_us) as f32 / 1e6;
            (s.tokens + elapsed * self.config.qps as f32).min(burst)
        };
        let i = match slots.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                // Take the slot whose bucket is fuller (an empty slot counts as full).
                let fullness = |s: &Slot| if s.key == 0 { f32::MAX } else { refilled(s) };
                let i = usize::from(fullness(&slots[1]) > fullness(&slots[0]));
                slots[i] = Slot {
                    key,
                    tokens: burst,
                    last_us: now_us,
                };
                i
            }
        };
        let slot = &mut slots[i];
        slot.tokens = refilled(slot);
        slot.last_us = now_us;
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(qps: u32, burst: u32, table_size: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            qps,
            burst,
            table_size,
            ..RateLimitConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate() {
        let l = limiter(10, 5, 1024);
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| l.allow(ip("192.0.2.7"), t0)).count();
        assert_eq!(allowed, 5, "the burst");
        // Another address of the same /24 shares the bucket; another /24 has its own.
        assert!(!l.allow(ip("192.0.2.200"), t0));
        assert!(l.allow(ip("192.0.3.1"), t0));
        // 10 qps: after 300 ms, 3 more.
        let t1 = t0 + Duration::from_millis(300);
        let allowed = (0..20).filter(|_| l.allow(ip("192.0.2.7"), t1)).count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_56() {
        let l = limiter(1, 1, 1024);
        let t0 = Instant::now();
        assert!(l.allow(ip("2001:db8:0:100::1"), t0));
        assert!(!l.allow(ip("2001:db8:0:1ff::2"), t0), "same /56");
        assert!(l.allow(ip("2001:db8:0:200::1"), t0), "another /56");
        // An IPv4-mapped address is its IPv4 address.
        assert!(l.allow(ip("198.51.100.1"), t0));
        assert!(!l.allow(ip("::ffff:198.51.100.9"), t0));
    }

    #[test]
    fn memory_is_fixed_however_many_prefixes_a_spoofer_uses() {
        let l = limiter(1, 3, 1024);
        let capacity = l.capacity();
        assert_eq!(capacity, 1024);
        let t0 = Instant::now();
        // A busy client, interleaved with a million spoofed one-off /24s.
        let mut busy_allowed = 0;
        for i in 0..1_000_000u32 {
            let spoofed = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8)));
            let now = t0 + Duration::from_micros(u64::from(i));
            l.allow(spoofed, now);
            if i % 1000 == 0 && l.allow(ip("203.0.113.5"), now) {
                busy_allowed += 1;
            }
        }
        assert_eq!(l.capacity(), capacity, "the table never grows");
        // Over one second at 1 qps with a burst of 3 the busy client gets about 4 of its
        // 1,000 queries, not a fresh bucket each time a spoofed prefix evicts it.
        assert!(busy_allowed <= 10, "{busy_allowed}");
    }
}
