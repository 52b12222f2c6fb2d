//! Reloading the configuration while the gateway serves: rules and targets swap at once,
//! listeners keep their sockets, an invalid or listener-changing configuration is refused and
//! the running one keeps serving; and SIGHUP reloads a running binary instead of ending it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::support::*;

const IP_OLD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_NEW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn config_text(listen: SocketAddr, admin: SocketAddr, corp: &Stub, default: &Stub) -> String {
    format!(
        "{}[admin]\nlisten = \"{admin}\"\n[[inbound]]\nname = \"test\"\nlisten = [\"{listen}\"]\n{OUTBOUND}{}",
        resolver(default),
        forward_rule("corp", "corp.test", &[corp.addr])
    )
}

#[tokio::test]
async fn a_reload_swaps_rules_and_an_invalid_one_changes_nothing() {
    let default = Stub::start(Behavior::Answer(IP_OLD)).await;
    let old_corp = Stub::start(Behavior::Answer(IP_OLD)).await;
    let new_corp = Stub::start(Behavior::Answer(IP_NEW)).await;
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let gw = gateway(&config_text(any, any, &old_corp, &default)).await;
    let addr = gw.do53_addr().expect("do53");
    let admin = gw.addrs().admin.expect("admin");
    let q = |id| query(id, "host.corp.test", A, None);
    assert_eq!(udp(addr, &q(1)).await.addrs, vec![IP_OLD]);

    // The same listeners (as bound), another target for the rule.
    let reloader = gw.reloader();
    let same_listeners = |corp: &Stub| {
        dohgate_core::config::parse(&config_text(addr, admin, corp, &default), None).expect("valid")
    };
    // Bound to port 0 at start: the reload names the addresses they got, which is the same
    // set of listeners.
    let e = reloader
        .reload(same_listeners(&new_corp))
        .expect_err("port 0 at start and a real port now are different listeners");
    assert!(format!("{e:#}").contains("needs a restart"), "{e:#}");
    gw.shutdown().await;

    // Started on real ports, reloaded with the same ones: the new rule answers at once, the
    // cache is not consulted across the swap (it starts empty), and no listener moved.
    let gw = gateway(&config_text(addr, admin, &old_corp, &default)).await;
    let reloader = gw.reloader();
    assert_eq!(udp(addr, &q(2)).await.addrs, vec![IP_OLD]);
    reloader.reload(same_listeners(&new_corp)).expect("reloads");
    assert_eq!(udp(addr, &q(3)).await.addrs, vec![IP_NEW]);
    assert_eq!(tcp(addr, &q(4)).await.addrs, vec![IP_NEW]);

    // An invalid configuration: refused with the check-config error, the new state serves on.
    let mut bad = same_listeners(&old_corp);
    bad.inbound.clear();
    let e = reloader.reload(bad).expect_err("serves nothing");
    assert!(format!("{e:#}").contains("serve nothing"), "{e:#}");
    assert_eq!(udp(addr, &q(5)).await.addrs, vec![IP_NEW]);

    let (_, m) = http_get(admin, "/metrics").await;
    assert_eq!(
        metric(&m, "dohgate_config_reloads_total", &[("result", "success")]),
        1.0
    );
    assert_eq!(
        metric(&m, "dohgate_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    gw.shutdown().await;
}

/// A free 127.0.0.1 port for both UDP and TCP, found by binding port 0.
async fn free_port() -> SocketAddr {
    loop {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = udp.local_addr().expect("addr");
        if tokio::net::TcpListener::bind(addr).await.is_ok() {
            return addr;
        }
    }
}

#[tokio::test]
async fn sighup_reloads_a_running_binary_instead_of_ending_it() {
    let default = Stub::start(Behavior::Answer(IP_OLD)).await;
    let old_corp = Stub::start(Behavior::Answer(IP_OLD)).await;
    let new_corp = Stub::start(Behavior::Answer(IP_NEW)).await;
    let listen = free_port().await;
    let admin = free_port().await;
    let dir = temp_dir("sighup");
    let file = dir.join("dohgate.toml");
    std::fs::write(&file, config_text(listen, admin, &old_corp, &default)).expect("write");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dohgate"))
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start dohgate");
    let q = |id| query(id, "host.corp.test", A, None);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while try_udp_raw(listen, &q(1), Duration::from_millis(200))
        .await
        .is_none()
    {
        assert!(tokio::time::Instant::now() < until, "dohgate did not start");
    }
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP")
    };
    std::fs::write(&file, config_text(listen, admin, &new_corp, &default)).expect("write");
    assert!(hup(child.id()).success());
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if udp(listen, &q(2)).await.addrs == vec![IP_NEW] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "SIGHUP did not apply the new rule"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A file that no longer parses: the process lives on, serving the last good state.
    std::fs::write(&file, "this is not toml").expect("write");
    assert!(hup(child.id()).success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(child.try_wait().expect("status").is_none(), "still running");
    assert_eq!(udp(listen, &q(3)).await.addrs, vec![IP_NEW]);
    let (_, m) = http_get(admin, "/metrics").await;
    assert_eq!(
        metric(&m, "dohgate_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The leaf certificate a TLS handshake with `addr` presents (trusting the test CA, name
/// localhost).
async fn presented_leaf(addr: SocketAddr) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_file_iter(cert("test-ca.pem")).expect("CA") {
        roots.add(ca.expect("CA parses")).expect("CA usable");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("a certificate the test CA signed");
    tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec()
}

/// The first certificate of a PEM file, in DER.
fn first_cert(file: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_file_iter(file)
        .expect("pem")
        .next()
        .expect("a certificate")
        .expect("parses")
        .to_vec()
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_presented_after_a_reload() {
    let default = Stub::start(Behavior::Answer(IP_OLD)).await;
    let dir = temp_dir("cert-reload");
    let (chain, key) = (dir.join("dns.pem"), dir.join("dns.key"));
    let install = |name: &str| {
        std::fs::copy(cert(&format!("localhost-{name}-chain.pem")), &chain).expect("copy");
        std::fs::copy(cert(&format!("localhost-{name}.key")), &key).expect("copy");
    };
    install("ecdsa");
    let (do53, doh, admin) = (free_port().await, free_port().await, free_port().await);
    let text = format!(
        "{}[admin]\nlisten = \"{admin}\"\n[[inbound]]\nname = \"test\"\nlisten = [\"{do53}\"]\n\
         listen_doh = [\"{doh}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        resolver(&default),
        chain.display(),
        key.display()
    );
    let gw = gateway(&text).await;
    assert_eq!(
        presented_leaf(doh).await,
        first_cert(&cert("localhost-ecdsa-chain.pem"))
    );
    // The operator rotates the certificate and reloads.
    install("rsa");
    let config = dohgate_core::config::parse(&text, None).expect("valid");
    gw.reloader().reload(config).expect("reloads");
    assert_eq!(
        presented_leaf(doh).await,
        first_cert(&cert("localhost-rsa-chain.pem")),
        "the new certificate from the next handshake on"
    );
    // A key that does not match its certificate: the reload fails, the RSA one stays.
    std::fs::copy(cert("localhost-ecdsa.key"), &key).expect("copy");
    let config = dohgate_core::config::parse(&text, None).expect("valid");
    assert!(gw.reloader().reload(config).is_err());
    assert_eq!(
        presented_leaf(doh).await,
        first_cert(&cert("localhost-rsa-chain.pem"))
    );
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
