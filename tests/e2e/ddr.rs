//! Discovery of Designated Resolvers (RFC 9462): `_dns.resolver.arpa` is answered by dohgate
//! itself, designating the endpoint's own DoH listener, and nothing under `resolver.arpa` is
//! ever forwarded, so clients that follow DDR upgrade to the gateway instead of leaving it.

use std::net::Ipv4Addr;

use crate::support::*;

const SVCB: u16 = 64;
const NXDOMAIN: u8 = 3;

/// The SvcParams of one SVCB record's RDATA (after priority and target): (key, value).
fn svc_params(rdata: &[u8]) -> (u16, String, Vec<(u16, Vec<u8>)>) {
    let priority = u16::from_be_bytes([rdata[0], rdata[1]]);
    let mut pos = 2;
    let mut target = String::new();
    while rdata[pos] != 0 {
        let len = rdata[pos] as usize;
        target.push_str(&String::from_utf8_lossy(&rdata[pos + 1..pos + 1 + len]));
        target.push('.');
        pos += 1 + len;
    }
    pos += 1;
    let mut params = Vec::new();
    while pos < rdata.len() {
        let key = u16::from_be_bytes([rdata[pos], rdata[pos + 1]]);
        let len = u16::from_be_bytes([rdata[pos + 2], rdata[pos + 3]]) as usize;
        params.push((key, rdata[pos + 4..pos + 4 + len].to_vec()));
        pos += 4 + len;
    }
    (priority, target, params)
}

/// The RDATA of each answer record of type `rtype` (owner names compressed or not).
fn rdata_of(raw: &[u8], rtype: u16) -> Vec<Vec<u8>> {
    let (_, _, mut pos) = read_question(raw).expect("question");
    let ancount = u16::from_be_bytes([raw[6], raw[7]]);
    let mut out = Vec::new();
    for _ in 0..ancount {
        while raw[pos] != 0 && raw[pos] & 0xc0 != 0xc0 {
            pos += 1 + raw[pos] as usize;
        }
        pos += if raw[pos] == 0 { 1 } else { 2 };
        let t = u16::from_be_bytes([raw[pos], raw[pos + 1]]);
        let len = u16::from_be_bytes([raw[pos + 8], raw[pos + 9]]) as usize;
        if t == rtype {
            out.push(raw[pos + 10..pos + 10 + len].to_vec());
        }
        pos += 10 + len;
    }
    out
}

#[tokio::test]
async fn resolver_arpa_designates_the_endpoints_own_doh_and_never_leaves() {
    let stub = Stub::start(Behavior::Answer(Ipv4Addr::new(192, 0, 2, 1))).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"designating\"\nlisten = [\"127.0.0.1:0\"]\n\
         listen_doh = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\nddr_name = \"localhost\"\n\
         [[inbound]]\nname = \"plain\"\nlisten = [\"127.0.0.1:0\"]\n\
         # A rule for resolver.arpa changes nothing: it is never forwarded.\n\
         {OUTBOUND}{}",
        resolver(&stub),
        cert("localhost-ecdsa-chain.pem"),
        cert("localhost-ecdsa.key"),
        forward_rule("leak", "resolver.arpa", &[stub.addr]),
    ))
    .await;
    let designating = gw.addrs().do53[0].1;
    let plain = gw.addrs().do53[1].1;
    let doh_port = gw.addrs().doh[0].1.port();

    let a = udp(
        designating,
        &query(1, "_dns.resolver.arpa", SVCB, Some(1232)),
    )
    .await;
    assert_eq!((a.id, a.rcode, a.aa, a.counts[1]), (1, 0, true, 1));
    let records = rdata_of(&a.raw, SVCB);
    let (priority, target, params) = svc_params(&records[0]);
    assert_eq!((priority, target.as_str()), (1, "localhost."));
    let param = |key: u16| {
        params
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("SvcParam {key} missing: {params:?}"))
    };
    assert_eq!(param(1), b"\x02h2\x08http/1.1", "alpn");
    assert_eq!(param(3), doh_port.to_be_bytes(), "port: the DoH listener's");
    assert_eq!(
        param(4),
        [127, 0, 0, 1],
        "ipv4hint: the address it listens on"
    );
    assert_eq!(param(7), b"/dns-query{?dns}", "dohpath");

    // An endpoint without a designation: NODATA. Other names: NXDOMAIN. Other types: NODATA.
    let a = udp(plain, &query(2, "_dns.resolver.arpa", SVCB, None)).await;
    assert_eq!((a.rcode, a.counts[1]), (0, 0));
    let a = tcp(designating, &query(3, "_dns.resolver.arpa", A, None)).await;
    assert_eq!((a.rcode, a.counts[1]), (0, 0));
    let a = udp(designating, &query(4, "x.resolver.arpa", SVCB, None)).await;
    assert_eq!(a.rcode, NXDOMAIN);
    assert_eq!(stub.count(), 0, "nothing under resolver.arpa went upstream");
    gw.shutdown().await;
}

#[test]
fn ddr_name_needs_a_doh_listener_with_a_verifiable_certificate() {
    let no_doh = dohgate_core::config::parse(
        "[[inbound]]\nname = \"a\"\nlisten = [\"127.0.0.1:53\"]\nddr_name = \"dns.example\"\n",
        None,
    )
    .expect_err("no DoH listener");
    assert_eq!(no_doh.key, "inbound[0].ddr_name");
    let self_signed = dohgate_core::config::parse(
        "[[inbound]]\nname = \"a\"\nlisten_doh = [\"127.0.0.1:443\"]\nddr_name = \"dns.example\"\n",
        None,
    )
    .expect_err("no certificate files");
    assert!(self_signed.message.contains("tls_cert"), "{self_signed}");
}
