//! Client allow-lists of inbound endpoints.

use std::net::IpAddr;

use ipnet::IpNet;

/// A network as an allow-list takes it: a CIDR (`10.0.0.0/8`) or one address (`192.0.2.7`).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// What a client outside an endpoint's allow-list gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refuse {
    /// REFUSED, as Route 53 and most servers answer (the default).
    #[default]
    Refused,
    /// Nothing: the datagram is dropped and a connection closed at once, so a scanner learns
    /// nothing and no answer can be reflected at a spoofed source.
    Drop,
}

/// The networks an inbound endpoint accepts queries from (empty means everyone), and what the
/// others get.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    nets: Vec<IpNet>,
    refuse: Refuse,
}

impl AllowList {
    pub fn new(nets: Vec<IpNet>) -> Self {
        AllowList {
            nets,
            refuse: Refuse::Refused,
        }
    }

    /// The same list, answering clients outside it with `refuse`.
    pub fn with_refuse(mut self, refuse: Refuse) -> Self {
        self.refuse = refuse;
        self
    }

    /// What clients outside the list get.
    pub fn refuse(&self) -> Refuse {
        self.refuse
    }

    pub fn is_open(&self) -> bool {
        self.nets.is_empty()
    }

    /// True if `ip` may query. IPv4-mapped IPv6 addresses (from dual-stack sockets) are
    /// matched as the IPv4 address they carry.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        // An IPv4-mapped address (from a dual-stack socket) is the IPv4 client it carries.
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_allows_all_and_nets_restrict() {
        assert!(AllowList::default().allows("203.0.113.9".parse().expect("ip")));
        let acl = AllowList::new(vec![
            "10.0.0.0/8".parse().expect("net"),
            "::1/128".parse().expect("net"),
        ]);
        assert!(acl.allows("10.1.2.3".parse().expect("ip")));
        assert!(acl.allows("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(acl.allows("::1".parse().expect("ip")));
        assert!(!acl.allows("11.0.0.1".parse().expect("ip")));
    }
}
