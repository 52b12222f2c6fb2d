//! Discovery of Designated Resolvers (RFC 9462) answered by dohgate itself.
//!
//! A client that asks `_dns.resolver.arpa` for SVCB records switches to whatever encrypted
//! resolver the answer designates. A forwarder that passed the question upstream would let
//! its clients leave for the upstream's resolver, past the gateway and its firewall; so
//! `resolver.arpa` is never forwarded: `_dns.resolver.arpa` SVCB designates the endpoint's own
//! DoH listeners (RFC 9461: ALPN, port, address hints, `dohpath`) when the endpoint has a
//! certificate clients can verify and a name for it, and NODATA otherwise; every other name
//! below `resolver.arpa` is NXDOMAIN (a locally served zone, RFC 6303 style).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::error::WireError;
use crate::local;
use crate::wire::{self, Query};

/// The special-use zone DDR lives in.
pub const RESOLVER_ARPA: &str = "resolver.arpa";
/// `_dns.resolver.arpa` in lower-case wire format.
const DNS_RESOLVER_ARPA: &[u8] = b"\x04_dns\x08resolver\x04arpa\x00";
/// The SVCB record type (RFC 9460).
pub const TYPE_SVCB: u16 = 64;
/// How long a client may keep the designation.
const DDR_TTL: u32 = 300;

/// The IPv4 and IPv6 address hints of one port's listeners.
type Hints = (Vec<[u8; 4]>, Vec<[u8; 16]>);

const KEY_ALPN: u16 = 1;
const KEY_PORT: u16 = 3;
const KEY_IPV4HINT: u16 = 4;
const KEY_IPV6HINT: u16 = 6;
const KEY_DOHPATH: u16 = 7;

/// The SVCB records one endpoint answers `_dns.resolver.arpa` with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Designation {
    /// Each record's RDATA, in priority order.
    records: Vec<Vec<u8>>,
}

impl Designation {
    /// Designates the DoH listeners at `listeners` (TLS, HTTP/2 and HTTP/1.1) under the name
    /// `target`, which the listeners' certificate must be valid for, serving `path`. One record
    /// per port, with the listeners' specific addresses as hints (a wildcard address is no
    /// hint: the client then resolves `target`).
    pub fn new(target: &str, listeners: &[SocketAddr], path: &str) -> Result<Self, WireError> {
        let target = wire::name_to_wire(target)?;
        let mut by_port: BTreeMap<u16, Hints> = BTreeMap::new();
        for addr in listeners {
            let (v4, v6) = by_port.entry(addr.port()).or_default();
            match addr {
                _ if addr.ip().is_unspecified() => {}
                SocketAddr::V4(a) => v4.push(a.ip().octets()),
                SocketAddr::V6(a) => v6.push(a.ip().octets()),
            }
        }
        let template = format!("{path}{{?dns}}");
        let mut records = Vec::with_capacity(by_port.len());
        for (i, (port, (v4, v6))) in by_port.into_iter().enumerate() {
            let mut rdata = Vec::with_capacity(64 + target.len());
            let priority = u16::try_from(i + 1).unwrap_or(u16::MAX);
            rdata.extend_from_slice(&priority.to_be_bytes());
            rdata.extend_from_slice(&target);
            // SvcParams in increasing key order (RFC 9460 §2.2).
            push_param(&mut rdata, KEY_ALPN, b"\x02h2\x08http/1.1");
            push_param(&mut rdata, KEY_PORT, &port.to_be_bytes());
            if !v4.is_empty() {
                push_param(&mut rdata, KEY_IPV4HINT, &v4.concat());
            }
            if !v6.is_empty() {
                push_param(&mut rdata, KEY_IPV6HINT, &v6.concat());
            }
            push_param(&mut rdata, KEY_DOHPATH, template.as_bytes());
            records.push(rdata);
        }
        Ok(Designation { records })
    }

    /// The records' RDATA, in priority order.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }
}

fn push_param(out: &mut Vec<u8>, key: u16, value: &[u8]) {
    out.extend_from_slice(&key.to_be_bytes());
    // Values here are short: ALPN ids, a port, a few addresses, a path.
    out.extend_from_slice(&(value.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The answer to a query for a name at or below `resolver.arpa` from an endpoint with
/// `designation` (or none): SVCB for `_dns.resolver.arpa`, NODATA for its other types (and
/// for SVCB without a designation), and the locally served zone's answers elsewhere.
pub fn answer(query: &[u8], q: &Query, designation: Option<&Designation>) -> Vec<u8> {
    let mut buf = [0u8; 255];
    let name = wire::lowercase_name(q.question.name(query), &mut buf);
    let zone = &DNS_RESOLVER_ARPA[5..];
    if name != DNS_RESOLVER_ARPA {
        return local::answer(query, q, zone);
    }
    match designation {
        Some(d) if q.question.qtype == TYPE_SVCB && !d.records.is_empty() => {
            let mut out = Vec::with_capacity(q.question.end + 64 * d.records.len() + 11);
            out.extend_from_slice(&query[..q.question.end]);
            for rdata in &d.records {
                out.extend_from_slice(&(0xc000 | wire::HEADER_LEN as u16).to_be_bytes());
                out.extend_from_slice(&TYPE_SVCB.to_be_bytes());
                out.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
                out.extend_from_slice(&DDR_TTL.to_be_bytes());
                out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                out.extend_from_slice(rdata);
            }
            let flags = wire::FLAG_QR
                | wire::FLAG_AA
                | wire::FLAG_RA
                | (q.flags & (wire::FLAG_RD | wire::FLAG_CD));
            out[2..4].copy_from_slice(&flags.to_be_bytes());
            let ancount = u16::try_from(d.records.len()).unwrap_or(u16::MAX);
            out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            out[6..8].copy_from_slice(&ancount.to_be_bytes());
            if let Some(e) = q.edns {
                wire::push_opt(&mut out, 0, e.dnssec_ok);
            }
            out
        }
        _ => local::nodata(query, q, zone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_query, counts, parse_query, rcode};

    fn ask(name: &str, qtype: u16, d: Option<&Designation>) -> Vec<u8> {
        let q = build_query(7, name, qtype, Some(1232)).expect("valid");
        let p = parse_query(&q).expect("parses");
        answer(&q, &p, d)
    }

    fn designation() -> Designation {
        let listeners: Vec<SocketAddr> = ["192.0.2.10:443", "[2001:db8::10]:443", "0.0.0.0:8443"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        Designation::new("dns.corp.example", &listeners, "/dns-query").expect("valid")
    }

    #[test]
    fn svcb_designates_each_port_with_its_hints() {
        let d = designation();
        assert_eq!(d.records().len(), 2, "ports 443 and 8443");
        let first = &d.records()[0];
        assert_eq!(&first[..2], &[0, 1], "priority 1");
        let target = b"\x03dns\x04corp\x07example\x00";
        assert_eq!(&first[2..2 + target.len()], target);
        let params = &first[2 + target.len()..];
        let mut expected = Vec::new();
        push_param(&mut expected, KEY_ALPN, b"\x02h2\x08http/1.1");
        push_param(&mut expected, KEY_PORT, &443u16.to_be_bytes());
        push_param(&mut expected, KEY_IPV4HINT, &[192, 0, 2, 10]);
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 0x10;
        push_param(&mut expected, KEY_IPV6HINT, &v6);
        push_param(&mut expected, KEY_DOHPATH, b"/dns-query{?dns}");
        assert_eq!(params, &expected[..]);
        let second = &d.records()[1];
        assert_eq!(&second[..2], &[0, 2]);
        let mut expected = Vec::new();
        push_param(&mut expected, KEY_ALPN, b"\x02h2\x08http/1.1");
        push_param(&mut expected, KEY_PORT, &8443u16.to_be_bytes());
        push_param(&mut expected, KEY_DOHPATH, b"/dns-query{?dns}");
        assert_eq!(
            &second[2 + target.len()..],
            &expected[..],
            "a wildcard address is no hint"
        );

        let r = ask("_DNS.Resolver.Arpa", TYPE_SVCB, Some(&d));
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 2, 0, 1]));
        assert_ne!(wire::flags(&r) & wire::FLAG_AA, 0);
        assert_eq!(&r[12..17], b"\x04_DNS", "the question as sent");
    }

    #[test]
    fn without_a_designation_or_for_other_names_nothing_is_designated() {
        let r = ask("_dns.resolver.arpa", TYPE_SVCB, None);
        assert_eq!(
            (rcode(&r), counts(&r)),
            (0, [1, 0, 1, 1]),
            "NODATA with SOA"
        );
        let d = designation();
        let r = ask("_dns.resolver.arpa", wire::TYPE_A, Some(&d));
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 0, 1, 1]));
        let r = ask("other.resolver.arpa", TYPE_SVCB, Some(&d));
        assert_eq!(rcode(&r), 3, "NXDOMAIN below resolver.arpa");
        let r = ask("_dns._dns.resolver.arpa", TYPE_SVCB, Some(&d));
        assert_eq!(rcode(&r), 3);
    }
}
