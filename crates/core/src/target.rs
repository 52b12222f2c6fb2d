//! Forwarding targets: where an outbound endpoint sends the queries a rule matches.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::protocol::Protocol;

/// The default DoH path (RFC 8484 §3 leaves it open; everyone uses this one).
pub const DEFAULT_DOH_PATH: &str = "/dns-query";

/// How a DoH target is asked: POST (the default) or GET (friendlier to HTTP caches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DohMethod {
    #[default]
    Post,
    Get,
}

/// One target of a forwarding rule or of the default resolver. Targets are addresses, never
/// names, so reaching one needs no bootstrap resolution (as in Route 53's `TargetIps`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetSpec {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// DoH: the name for TLS SNI, certificate verification and the HTTP Host / `:authority`.
    /// Without it the certificate must be valid for the IP address.
    pub server_name: Option<String>,
    /// DoH: the URL path.
    pub path: String,
    /// DoH: a PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// DoH: POST or GET.
    pub method: DohMethod,
    /// DoH: the client certificate and key for targets that require mutual TLS (from the
    /// outbound endpoint).
    pub client_cert: Option<crate::config::TlsFiles>,
}

impl TargetSpec {
    pub fn do53(addr: SocketAddr) -> Self {
        TargetSpec {
            addr,
            protocol: Protocol::Do53,
            server_name: None,
            path: DEFAULT_DOH_PATH.to_string(),
            ca_file: None,
            method: DohMethod::Post,
            client_cert: None,
        }
    }

    /// Parses the command-line form of a target:
    /// `IP`, `IP:PORT`, `[IPv6]:PORT` for Do53 (port 53 by default), and
    /// `https://IP[:PORT][/PATH]` for DoH (port 443 and path `/dns-query` by default).
    pub fn parse(s: &str) -> Result<TargetSpec, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("https://") {
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, DEFAULT_DOH_PATH),
            };
            let addr = parse_addr(hostport, 443).map_err(|e| format!("{s:?}: {e}"))?;
            let mut t = TargetSpec::do53(addr);
            t.protocol = Protocol::DoH;
            t.path = path.to_string();
            return Ok(t);
        }
        if s.contains("://") {
            return Err(format!(
                "{s:?}: unsupported scheme (a target is IP[:PORT] for Do53 or https://IP[:PORT][/PATH] for DoH)"
            ));
        }
        parse_addr(s, 53)
            .map(TargetSpec::do53)
            .map_err(|e| format!("{s:?}: {e}"))
    }

    /// A stable, bounded label for metrics and logs.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Do53 => write!(f, "{}", self.addr),
            Protocol::DoH => write!(f, "https://{}{}", self.addr, self.path),
            Protocol::DohFips => write!(f, "https+fips://{}{}", self.addr, self.path),
        }
    }
}

/// Parses `IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT`, with `default_port` when none is given.
pub fn parse_addr(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(
        "not an IP address with optional port (names are not accepted: targets are addresses)"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_do53_forms() {
        let t = TargetSpec::parse("192.0.2.1").expect("ok");
        assert_eq!(t.addr, "192.0.2.1:53".parse().expect("addr"));
        assert_eq!(t.protocol, Protocol::Do53);
        assert_eq!(
            TargetSpec::parse("192.0.2.1:5300").expect("ok").addr.port(),
            5300
        );
        assert_eq!(
            TargetSpec::parse("[::1]:53").expect("ok").addr,
            "[::1]:53".parse().expect("addr")
        );
        assert_eq!(
            TargetSpec::parse("::1").expect("ok").addr,
            "[::1]:53".parse().expect("addr")
        );
        assert!(TargetSpec::parse("dns.example").is_err());
        assert!(TargetSpec::parse("tls://192.0.2.1").is_err());
    }

    #[test]
    fn parses_doh_forms() {
        let t = TargetSpec::parse("https://127.0.0.1:9443/q").expect("ok");
        assert_eq!(t.protocol, Protocol::DoH);
        assert_eq!(t.addr.port(), 9443);
        assert_eq!(t.path, "/q");
        let t = TargetSpec::parse("https://[::1]").expect("ok");
        assert_eq!(t.addr, "[::1]:443".parse().expect("addr"));
        assert_eq!(t.path, "/dns-query");
        assert_eq!(t.to_string(), "https://[::1]:443/dns-query");
    }
}
