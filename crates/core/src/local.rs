//! Answers for locally served zones (RFC 6303, RFC 6761 §6.3), so that reverse lookups of
//! private addresses and `localhost` names never leak to an upstream.

use crate::wire::{self, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, HEADER_LEN, Query, Rcode};

/// The zones answered locally unless a configured rule covers the same domain: RFC 6303 §4
/// (private and special-use reverse zones), RFC 7793 (100.64.0.0/10), and the RFC 6761
/// special-use names `localhost` and `invalid`.
pub const LOCALLY_SERVED_ZONES: &[&str] = &[
    "localhost",
    "invalid",
    // RFC 1918
    "10.in-addr.arpa",
    "16.172.in-addr.arpa",
    "17.172.in-addr.arpa",
    "18.172.in-addr.arpa",
    "19.172.in-addr.arpa",
    "20.172.in-addr.arpa",
    "21.172.in-addr.arpa",
    "22.172.in-addr.arpa",
    "23.172.in-addr.arpa",
    "24.172.in-addr.arpa",
    "25.172.in-addr.arpa",
    "26.172.in-addr.arpa",
    "27.172.in-addr.arpa",
    "28.172.in-addr.arpa",
    "29.172.in-addr.arpa",
    "30.172.in-addr.arpa",
    "31.172.in-addr.arpa",
    "168.192.in-addr.arpa",
    // RFC 5735 / RFC 6303 special-use IPv4
    "0.in-addr.arpa",
    "127.in-addr.arpa",
    "254.169.in-addr.arpa",
    "2.0.192.in-addr.arpa",
    "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa",
    "255.255.255.255.in-addr.arpa",
    // RFC 7793: shared address space 100.64.0.0/10
    "64.100.in-addr.arpa",
    "65.100.in-addr.arpa",
    "66.100.in-addr.arpa",
    "67.100.in-addr.arpa",
    "68.100.in-addr.arpa",
    "69.100.in-addr.arpa",
    "70.100.in-addr.arpa",
    "71.100.in-addr.arpa",
    "72.100.in-addr.arpa",
    "73.100.in-addr.arpa",
    "74.100.in-addr.arpa",
    "75.100.in-addr.arpa",
    "76.100.in-addr.arpa",
    "77.100.in-addr.arpa",
    "78.100.in-addr.arpa",
    "79.100.in-addr.arpa",
    "80.100.in-addr.arpa",
    "81.100.in-addr.arpa",
    "82.100.in-addr.arpa",
    "83.100.in-addr.arpa",
    "84.100.in-addr.arpa",
    "85.100.in-addr.arpa",
    "86.100.in-addr.arpa",
    "87.100.in-addr.arpa",
    "88.100.in-addr.arpa",
    "89.100.in-addr.arpa",
    "90.100.in-addr.arpa",
    "91.100.in-addr.arpa",
    "92.100.in-addr.arpa",
    "93.100.in-addr.arpa",
    "94.100.in-addr.arpa",
    "95.100.in-addr.arpa",
    "96.100.in-addr.arpa",
    "97.100.in-addr.arpa",
    "98.100.in-addr.arpa",
    "99.100.in-addr.arpa",
    "100.100.in-addr.arpa",
    "101.100.in-addr.arpa",
    "102.100.in-addr.arpa",
    "103.100.in-addr.arpa",
    "104.100.in-addr.arpa",
    "105.100.in-addr.arpa",
    "106.100.in-addr.arpa",
    "107.100.in-addr.arpa",
    "108.100.in-addr.arpa",
    "109.100.in-addr.arpa",
    "110.100.in-addr.arpa",
    "111.100.in-addr.arpa",
    "112.100.in-addr.arpa",
    "113.100.in-addr.arpa",
    "114.100.in-addr.arpa",
    "115.100.in-addr.arpa",
    "116.100.in-addr.arpa",
    "117.100.in-addr.arpa",
    "118.100.in-addr.arpa",
    "119.100.in-addr.arpa",
    "120.100.in-addr.arpa",
    "121.100.in-addr.arpa",
    "122.100.in-addr.arpa",
    "123.100.in-addr.arpa",
    "124.100.in-addr.arpa",
    "125.100.in-addr.arpa",
    "126.100.in-addr.arpa",
    "127.100.in-addr.arpa",
    // RFC 6303 §4.3: IPv6 unspecified, loopback, ULA, link-local, documentation
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
    "d.f.ip6.arpa",
    "8.e.f.ip6.arpa",
    "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa",
    "b.e.f.ip6.arpa",
    "8.b.d.0.1.0.0.2.ip6.arpa",
];

/// The SOA and negative-caching TTL of locally served zones (RFC 6303 §3).
const LOCAL_TTL: u32 = 10_800;

/// Builds the answer to `query` (whose parsed form is `q`) from the locally served zone whose
/// lower-case wire-format name is `zone`: `localhost` addresses for address queries below
/// `localhost` (RFC 6761 §6.3), the SOA or NS at the apex, NODATA for other apex types, and
/// NXDOMAIN with the SOA below the apex.
pub fn answer(query: &[u8], q: &Query, zone: &[u8]) -> Vec<u8> {
    respond(query, q, zone, false)
}

/// NODATA (NOERROR without answer records) with the zone's SOA, for a name inside `zone` that
/// exists without data of the type asked.
pub fn nodata(query: &[u8], q: &Query, zone: &[u8]) -> Vec<u8> {
    respond(query, q, zone, true)
}

fn respond(query: &[u8], q: &Query, zone: &[u8], exists: bool) -> Vec<u8> {
    let name_len = q.question.name_len;
    let zone_len = zone.len().min(name_len);
    // Offset of the zone's name inside the question, used as a compression target.
    let zone_ptr = 0xc000 | (HEADER_LEN + name_len - zone_len) as u16;
    let qname_ptr = 0xc000 | HEADER_LEN as u16;
    let apex = zone_len == name_len;
    let qtype = q.question.qtype;
    let is_localhost = zone == b"\x09localhost\x00";

    let mut out = Vec::with_capacity(q.question.end + 80);
    out.extend_from_slice(&query[..q.question.end]);
    let mut rcode = Rcode::NoError;
    let (mut ancount, mut nscount) = (0u16, 0u16);
    if exists {
        push_soa(&mut out, zone_ptr);
        nscount = 1;
    } else if is_localhost && (qtype == wire::TYPE_A || qtype == 28) {
        push_rr_head(&mut out, qname_ptr, qtype, LOCAL_TTL);
        if qtype == wire::TYPE_A {
            push_rdata(&mut out, &[127, 0, 0, 1]);
        } else {
            let mut v6 = [0u8; 16];
            v6[15] = 1;
            push_rdata(&mut out, &v6);
        }
        ancount = 1;
    } else if apex && qtype == wire::TYPE_SOA {
        push_soa(&mut out, zone_ptr);
        ancount = 1;
    } else if apex && qtype == wire::TYPE_NS {
        push_rr_head(&mut out, zone_ptr, wire::TYPE_NS, LOCAL_TTL);
        push_rdata(&mut out, &zone_ptr.to_be_bytes());
        ancount = 1;
    } else {
        if !apex && !is_localhost {
            rcode = Rcode::NxDomain;
        }
        push_soa(&mut out, zone_ptr);
        nscount = 1;
    }
    let flags = FLAG_QR | FLAG_AA | FLAG_RA | (q.flags & (FLAG_RD | FLAG_CD)) | rcode as u16;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out[6..8].copy_from_slice(&ancount.to_be_bytes());
    out[8..10].copy_from_slice(&nscount.to_be_bytes());
    if let Some(e) = q.edns {
        wire::push_opt(&mut out, 0, e.dnssec_ok);
    }
    out
}

/// The CHAOS class (RFC 1035 §3.2.4), which servers use to say who they are.
pub const CLASS_CH: u16 = 3;

/// The answer to a CHAOS-class query, which dohgate never forwards (it would tell any client
/// the upstream's software and version): `id.server` and `hostname.bind` TXT (RFC 4892) give
/// `identity` when one is configured; anything else is REFUSED.
pub fn chaos(query: &[u8], q: &Query, identity: Option<&str>) -> Vec<u8> {
    let mut buf = [0u8; 255];
    let name = wire::lowercase_name(q.question.name(query), &mut buf);
    let asks_identity = name == b"\x02id\x06server\x00" || name == b"\x08hostname\x04bind\x00";
    let qtype = q.question.qtype;
    let Some(identity) = identity.filter(|_| asks_identity && (qtype == 16 || qtype == 255)) else {
        return wire::error_response(query, Rcode::Refused).unwrap_or_default();
    };
    let mut out = Vec::with_capacity(q.question.end + 16 + identity.len());
    out.extend_from_slice(&query[..q.question.end]);
    out.extend_from_slice(&(0xc000 | HEADER_LEN as u16).to_be_bytes());
    out.extend_from_slice(&16u16.to_be_bytes());
    out.extend_from_slice(&CLASS_CH.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    // One character-string of at most 255 bytes (the configuration keeps it shorter).
    let text = &identity.as_bytes()[..identity.len().min(255)];
    push_rdata(&mut out, &[&[text.len() as u8][..], text].concat());
    let flags = FLAG_QR | FLAG_AA | (q.flags & (FLAG_RD | FLAG_CD));
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    if let Some(e) = q.edns {
        wire::push_opt(&mut out, 0, e.dnssec_ok);
    }
    out
}

fn push_rr_head(out: &mut Vec<u8>, owner_ptr: u16, rtype: u16, ttl: u32) {
    out.extend_from_slice(&owner_ptr.to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
}

fn push_rdata(out: &mut Vec<u8>, rdata: &[u8]) {
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn push_soa(out: &mut Vec<u8>, zone_ptr: u16) {
    push_rr_head(out, zone_ptr, wire::TYPE_SOA, LOCAL_TTL);
    let mut rdata = Vec::with_capacity(38);
    rdata.extend_from_slice(&zone_ptr.to_be_bytes()); // MNAME: the zone itself
    rdata.extend_from_slice(b"\x06nobody\x07invalid\x00"); // RNAME
    for v in [1u32, 3600, 1200, 604_800, LOCAL_TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    push_rdata(out, &rdata);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_query, counts, min_ttl, name_to_wire, parse_query, rcode};

    fn ask(name: &str, qtype: u16, zone: &str) -> Vec<u8> {
        let q = build_query(42, name, qtype, Some(1232)).expect("valid");
        let p = parse_query(&q).expect("parses");
        answer(&q, &p, &name_to_wire(zone).expect("zone"))
    }

    #[test]
    fn private_reverse_names_are_nxdomain_with_soa() {
        let r = ask("1.0.0.10.in-addr.arpa", 12, "10.in-addr.arpa");
        assert_eq!(rcode(&r), 3);
        assert_eq!(counts(&r), [1, 0, 1, 1]);
        assert_eq!(min_ttl(&r), Some(10_800));
        assert!(crate::wire::question(&r).is_ok());
    }

    #[test]
    fn apex_soa_and_nodata() {
        let r = ask("10.in-addr.arpa", 6, "10.in-addr.arpa");
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 1, 0, 1]));
        let r = ask("10.in-addr.arpa", 1, "10.in-addr.arpa");
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 0, 1, 1]));
    }

    #[test]
    fn chaos_tells_only_the_configured_identity() {
        let ch = |name: &str, qtype: u16, identity: Option<&str>| {
            let mut q = build_query(5, name, qtype, None).expect("valid");
            let class_at = q.len() - 2;
            q[class_at..].copy_from_slice(&CLASS_CH.to_be_bytes());
            let p = parse_query(&q).expect("parses");
            chaos(&q, &p, identity)
        };
        let r = ch("ID.Server", 16, Some("gw-dublin-1"));
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 1, 0, 0]));
        assert!(r.ends_with(b"\x0bgw-dublin-1"), "{r:?}");
        assert_eq!(rcode(&ch("hostname.bind", 16, Some("gw"))), 0);
        assert_eq!(
            rcode(&ch("version.bind", 16, Some("gw"))),
            5,
            "no version, ever"
        );
        assert_eq!(
            rcode(&ch("id.server", 16, None)),
            5,
            "no identity configured"
        );
        assert_eq!(rcode(&ch("id.server", 1, Some("gw"))), 5);
    }

    #[test]
    fn localhost_resolves_to_loopback() {
        let r = ask("LocalHost", 1, "localhost");
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 1, 0, 1]));
        assert_eq!(&r[r.len() - 11 - 4..r.len() - 11], &[127, 0, 0, 1]);
        let r = ask("app.localhost", 15, "localhost");
        assert_eq!((rcode(&r), counts(&r)), (0, [1, 0, 1, 1]));
    }
}
