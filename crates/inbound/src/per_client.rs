//! Connections per client address: a client that opens thousands of connections meets its
//! own cap long before the listener's, so it cannot starve the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The connections each client address holds on one listener. An address appears only while
/// it holds a connection, so the map never holds more entries than the listener has
/// connections.
#[derive(Clone, Debug)]
pub struct PerClient {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// A connection's place under its client's cap, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl PerClient {
    /// At most `max` connections per client address (0: no cap).
    pub fn new(max: u32) -> Self {
        PerClient {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` when it holds `max` already.
    pub fn try_take(&self, ip: IpAddr) -> Option<ClientSlot> {
        if self.max == 0 {
            return Some(ClientSlot {
                ip,
                open: Arc::default(),
            });
        }
        // An IPv4-mapped address (from a dual-stack socket) is the IPv4 client it carries.
        let ip = ip.to_canonical();
        // A poisoned lock (a panic elsewhere) must not stop the listener: no cap then.
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_cap_and_gets_its_slots_back() {
        let p = PerClient::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let s1 = p.try_take(a).expect("first");
        let _s2 = p.try_take(a).expect("second");
        assert!(p.try_take(a).is_none(), "a third from the same address");
        assert!(p.try_take(b).is_some(), "another address is not affected");
        drop(s1);
        let _s3 = p
            .try_take(a)
            .expect("a closed connection gives its slot back");
        assert!(
            p.try_take("::ffff:192.0.2.1".parse().expect("ip"))
                .is_none(),
            "an IPv4-mapped address is the same client"
        );
    }

    #[test]
    fn the_map_holds_only_clients_with_open_connections() {
        let p = PerClient::new(4);
        let slots: Vec<_> = (0..100u8)
            .filter_map(|i| p.try_take(IpAddr::from([10, 0, 0, i])))
            .collect();
        assert_eq!(p.open.lock().map(|m| m.len()).unwrap_or(0), 100);
        drop(slots);
        assert_eq!(p.open.lock().map(|m| m.len()).unwrap_or(1), 0);
    }
}
