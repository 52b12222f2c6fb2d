//! Observability end to end: exact counters after a known mix of queries, scraped from
//! `/metrics` over real HTTP; query log lines parsed as JSON; a full log queue that drops and
//! counts instead of blocking; the capacity status; promtool on the scrape and on deploy/.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::support::*;

const IP_DEFAULT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const IP_CORP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A name in a locally served zone (RFC 6303): answered NXDOMAIN without an upstream.
const PRIVATE_PTR: &str = "1.1.168.192.in-addr.arpa";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// QDCOUNT 2: FORMERR, counted as malformed.
fn malformed(id: u16) -> Vec<u8> {
    let mut q = query(id, "bad.example", A, None);
    q[5] = 2;
    q
}

/// Polls `/metrics` until `done` holds for the text, for at most `within`.
async fn metrics_until(admin: SocketAddr, within: Duration, done: impl Fn(&str) -> bool) -> String {
    let until = tokio::time::Instant::now() + within;
    loop {
        let (status, text) = http_get(admin, "/metrics").await;
        assert_eq!(status, 200);
        if done(&text) || tokio::time::Instant::now() >= until {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
    })
}

#[tokio::test]
async fn counters_match_a_known_mix_of_queries() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let dead = Stub::start(Behavior::Silent).await;
    let gw = gateway(&format!(
        "[timeouts]\nattempt_ms = 700\nquery_ms = 700\n{DO53_AND_DOH}{}{OUTBOUND}{}{}",
        resolver(&default),
        forward_rule("corp", "corp.test", &[corp.addr]),
        forward_rule("broken", "broken.test", &[dead.addr]),
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let admin = gw.addrs().admin.expect("admin");

    // Distinct names throughout, so no answer can come from a cache.
    for (i, name) in ["a.example", "b.example", "c.example"].iter().enumerate() {
        assert_eq!(
            udp(addr, &query(i as u16, name, A, None)).await.addrs,
            [IP_DEFAULT]
        );
    }
    assert_eq!(
        tcp(addr, &query(3, "d.example", A, None)).await.addrs,
        [IP_DEFAULT]
    );
    for (i, name) in ["h1.corp.test", "h2.corp.test"].iter().enumerate() {
        assert_eq!(
            udp(addr, &query(10 + i as u16, name, A, None)).await.addrs,
            [IP_CORP]
        );
    }
    assert_eq!(udp(addr, &query(20, PRIVATE_PTR, PTR, None)).await.rcode, 3);
    assert_eq!(
        udp(addr, &query(21, "x.broken.test", A, None)).await.rcode,
        2
    );
    assert_eq!(udp(addr, &malformed(22)).await.rcode, 1);
    let doh = doh_plain(doh_addr(&gw), &query(0, "e.example", A, None)).await;
    assert_eq!(doh.addrs, [IP_DEFAULT]);

    let (status, m) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let ep = ("endpoint", "test");
    let do53 = ("protocol", "do53");
    let q = |t| metric(&m, "dohgate_queries_total", &[ep, do53, ("transport", t)]);
    assert_eq!((q("udp"), q("tcp")), (8.0, 1.0));
    let r = |rc| metric(&m, "dohgate_responses_total", &[ep, do53, ("rcode", rc)]);
    assert_eq!(
        [
            r("NOERROR"),
            r("NXDOMAIN"),
            r("SERVFAIL"),
            r("FORMERR"),
            r("REFUSED")
        ],
        [6.0, 1.0, 1.0, 1.0, 0.0]
    );
    assert_eq!(
        metric(&m, "dohgate_query_duration_seconds_count", &[ep, do53]),
        9.0
    );
    let doh = ("protocol", "doh");
    assert_eq!(
        metric(&m, "dohgate_queries_total", &[ep, doh, ("transport", "h1")]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_responses_total",
            &[ep, doh, ("rcode", "NOERROR")]
        ),
        1.0
    );
    assert_eq!(metric(&m, "dohgate_responses_total", &[ep, doh]), 1.0);
    assert_eq!(
        metric(
            &m,
            "dohgate_doh_http_responses_total",
            &[ep, ("status", "200")]
        ),
        1.0
    );
    let rule = |name| metric(&m, "dohgate_rule_matches_total", &[("rule", name)]);
    assert_eq!(
        [
            rule("default"),
            rule("corp"),
            rule("broken"),
            rule("auto-local")
        ],
        [5.0, 2.0, 1.0, 1.0]
    );
    assert_eq!(metric(&m, "dohgate_malformed_queries_total", &[ep]), 1.0);
    assert_eq!(metric(&m, "dohgate_refused_clients_total", &[ep]), 0.0);

    let target = |s: &Stub| s.addr.to_string();
    let (t_default, t_corp, t_dead) = (target(&default), target(&corp), target(&dead));
    let tq = |t: &str| metric(&m, "dohgate_target_queries_total", &[("target", t)]);
    assert_eq!([tq(&t_default), tq(&t_corp), tq(&t_dead)], [5.0, 2.0, 1.0]);
    let outcome = |t: &str, o| {
        metric(
            &m,
            "dohgate_target_outcomes_total",
            &[("target", t), ("outcome", o)],
        )
    };
    assert_eq!(
        [
            outcome(&t_default, "ok"),
            outcome(&t_corp, "ok"),
            outcome(&t_dead, "timeout"),
            outcome(&t_dead, "ok")
        ],
        [5.0, 2.0, 1.0, 0.0]
    );
    assert_eq!(
        metric(
            &m,
            "dohgate_target_attempt_duration_seconds_count",
            &[("target", &t_dead)]
        ),
        1.0
    );
    // One failure does not make a target unhealthy; three in a row do.
    assert_eq!(
        metric(&m, "dohgate_target_healthy", &[("target", &t_dead)]),
        1.0
    );
    let accepted = |p| metric(&m, "dohgate_inbound_connections_accepted_total", &[ep, p]);
    assert_eq!((accepted(do53), accepted(doh)), (1.0, 1.0));

    // Process and build facts.
    assert_eq!(
        metric(
            &m,
            "dohgate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let info = m
        .lines()
        .find(|l| l.starts_with("dohgate_build_info{"))
        .expect("build info");
    assert!(
        info.contains("git_sha=\"") && !info.contains("git_sha=\"\""),
        "{info}"
    );
    for result in ["success", "failure"] {
        assert!(
            has_series(&m, "dohgate_config_reloads_total", &[("result", result)]),
            "config reloads by {result} are exported (as 0) from the start"
        );
    }
    assert_eq!(metric(&m, "dohgate_config_reloads_total", &[]), 0.0);
    // Route 53's 10,000 per listen address, two addresses (Do53 and cleartext DoH).
    assert_eq!(metric(&m, "dohgate_endpoint_capacity_qps", &[ep]), 20_000.0);
    assert_eq!(metric(&m, "dohgate_endpoint_capacity_status", &[ep]), 0.0);
    assert_eq!(metric(&m, "dohgate_query_log_dropped_total", &[]), 0.0);
    if cfg!(target_os = "linux") {
        assert!(metric(&m, "process_start_time_seconds", &[]) > 0.0);
        assert!(metric(&m, "process_resident_memory_bytes", &[]) > 0.0);
    }
    // Bounded labels: neither query names nor client addresses ever become labels.
    assert!(
        !m.contains("corp.test\""),
        "a query name leaked into a label"
    );
    assert!(!m.contains("example\""), "a query name leaked into a label");

    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("config: loaded"), "{body}");
    assert!(body.contains("listeners: bound"), "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn query_log_lines_are_json_with_route53_fields() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let corp = Stub::start(Behavior::Answer(IP_CORP)).await;
    let dir = temp_dir("querylog");
    let log = dir.join("queries.log");
    let gw = gateway(&format!(
        "[query_log]\npath = \"{}\"\n{DO53_AND_DOH}{}{OUTBOUND}{}",
        log.display(),
        resolver(&default),
        forward_rule("corp", "corp.test", &[corp.addr]),
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = sock.local_addr().expect("addr").port().to_string();

    assert_eq!(
        udp_from(&sock, addr, &query(1, "Host.CORP.test", A, None))
            .await
            .rcode,
        0
    );
    assert_eq!(tcp(addr, &query(2, PRIVATE_PTR, PTR, None)).await.rcode, 3);
    assert_eq!(
        udp_from(&sock, addr, &query(3, "www.example", 28, None))
            .await
            .rcode,
        0
    );
    assert_eq!(udp_from(&sock, addr, &malformed(4)).await.rcode, 1);
    let doh = doh_plain(doh_addr(&gw), &query(0, "doh.corp.test", A, None)).await;
    assert_eq!(doh.addrs, [IP_CORP]);

    let lines = lines_of(&log, 5).await;
    assert_eq!(lines.len(), 5, "one line per query: {lines:#?}");
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &v {
        for field in [
            "version",
            "query_timestamp",
            "query_name",
            "query_type",
            "query_class",
            "rcode",
            "answers",
            "srcaddr",
            "srcport",
            "transport",
            "protocol",
            "endpoint",
            "rule",
            "target",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        let ts = line["query_timestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "RFC 3339 UTC: {ts}"
        );
        assert_eq!(line["srcaddr"], "127.0.0.1");
        assert_eq!(line["endpoint"], "test");
    }

    // Forwarded by a rule: names lower-cased, the answer in presentation form.
    let f = &v[0];
    assert_eq!(f["query_name"], "host.corp.test.");
    assert_eq!(
        (&f["query_type"], &f["query_class"]),
        (&"A".into(), &"IN".into())
    );
    assert_eq!(f["rcode"], "NOERROR");
    assert_eq!(
        f["answers"],
        serde_json::json!([{"Rdata": "192.0.2.2", "Type": "A", "Class": "IN"}])
    );
    assert_eq!(
        (&f["srcport"], &f["transport"]),
        (&port.clone().into(), &"UDP".into())
    );
    assert_eq!(f["rule"], "corp");
    assert_eq!(f["target"], corp.addr.to_string());

    // Answered locally: a rule, no target.
    let l = &v[1];
    assert_eq!(l["query_name"], format!("{PRIVATE_PTR}."));
    assert_eq!(
        (&l["query_type"], &l["rcode"]),
        (&"PTR".into(), &"NXDOMAIN".into())
    );
    assert_eq!(l["transport"], "TCP");
    assert_eq!(l["rule"], "auto-local");
    assert!(l["target"].is_null());
    assert_eq!(l["answers"], serde_json::json!([]));

    // The default resolver: no rule.
    let d = &v[2];
    assert_eq!(d["query_type"], "AAAA");
    assert!(d["rule"].is_null());
    assert_eq!(d["target"], default.addr.to_string());

    // Malformed: what can be read, and the FORMERR sent back.
    let m = &v[3];
    assert_eq!(m["rcode"], "FORMERR");
    assert!(m["rule"].is_null() && m["target"].is_null());

    // DoH: the same fields, transport "DoH".
    let h = &v[4];
    assert_eq!(
        (&h["transport"], &h["protocol"]),
        (&"DoH".into(), &"doh".into())
    );
    assert_eq!(h["query_name"], "doh.corp.test.");
    assert_eq!(h["rule"], "corp");
    for line in &v[..4] {
        assert_eq!(line["protocol"], "do53");
    }

    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_full_log_queue_drops_and_counts_instead_of_blocking() {
    const QUERIES: usize = 20;
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let dir = temp_dir("querylog-pipe");
    // A named pipe nobody reads: the writer blocks opening it, so the queue (one record) stays
    // full.
    let pipe = dir.join("queries.pipe");
    let made = Command::new("mkfifo").arg(&pipe).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let gw = gateway(&format!(
        "[query_log]\npath = \"{}\"\nqueue = 1\n{}",
        pipe.display(),
        resolver(&default)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let admin = gw.addrs().admin.expect("admin");

    // Every query is answered although nothing can be logged.
    for i in 0..QUERIES {
        let a = udp(addr, &query(i as u16, &format!("q{i}.example"), A, None)).await;
        assert_eq!(a.addrs, [IP_DEFAULT], "query {i}");
    }
    let (_, m) = http_get(admin, "/metrics").await;
    let dropped = metric(
        &m,
        "dohgate_query_log_dropped_total",
        &[("reason", "queue_full")],
    ) as usize;
    // One record waits in the queue, and at most one more was taken by the blocked writer.
    assert!(
        (QUERIES - 2..=QUERIES - 1).contains(&dropped),
        "dropped {dropped} of {QUERIES}"
    );

    // A reader comes: what was not dropped is written, and nothing else.
    let want = QUERIES - dropped;
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let f = std::fs::File::open(&pipe).expect("open the pipe");
        std::io::BufReader::new(f)
            .lines()
            .take(want)
            .map(|l| l.expect("read"))
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the queued records arrive")
        .expect("reader");
    assert_eq!(lines.len(), want);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
        assert_eq!(v["rcode"], "NOERROR");
    }
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn capacity_status_rises_above_three_quarters() {
    let default = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&format!(
        "{}[[inbound]]\nname = \"small\"\nlisten = [\"127.0.0.1:0\"]\ncapacity_qps = 2\n",
        resolver(&default)
    ))
    .await;
    let addr = gw.do53_addr().expect("do53");
    let admin = gw.addrs().admin.expect("admin");
    let status = |m: &str| {
        metric(
            m,
            "dohgate_endpoint_capacity_status",
            &[("endpoint", "small")],
        )
    };
    let m = metrics_until(admin, Duration::from_secs(1), |_| true).await;
    assert_eq!(
        metric(
            &m,
            "dohgate_endpoint_capacity_qps",
            &[("endpoint", "small")]
        ),
        2.0
    );
    assert_eq!(status(&m), 0.0);
    // 40 queries within the 10 s window are 4 per second at least: above 75 % of 2.
    for i in 0..40u16 {
        udp(addr, &query(i, &format!("c{i}.example"), A, None)).await;
    }
    let m = metrics_until(admin, Duration::from_secs(5), |m| status(m) == 2.0).await;
    assert_eq!(status(&m), 2.0, "capacity status after a burst");
    gw.shutdown().await;
}

fn promtool() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: promtool is not on PATH (Debian package prometheus)");
    }
    found
}

#[tokio::test]
async fn promtool_finds_nothing_to_report_in_the_metrics() {
    if !promtool() {
        return;
    }
    let stub = Stub::start(Behavior::Answer(IP_DEFAULT)).await;
    let gw = gateway(&resolver(&stub)).await;
    let addr = gw.do53_addr().expect("do53");
    udp(addr, &query(1, "a.example", A, None)).await;
    udp(addr, &malformed(2)).await;
    let (_, text) = http_get(gw.addrs().admin.expect("admin"), "/metrics").await;
    gw.shutdown().await;

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
    assert!(
        report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[test]
fn promtool_accepts_the_shipped_config_and_alerts_fire_as_meant() {
    if !promtool() {
        return;
    }
    let deploy = root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["check", "config", "prometheus.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&deploy)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `"dohgate_..."` metric name in the crates' sources.
fn metric_names_in_code() -> Vec<String> {
    let mut names = Vec::new();
    for krate in ["core", "inbound", "outbound", "gateway"] {
        let Ok(entries) = std::fs::read_dir(root().join("crates").join(krate).join("src")) else {
            continue;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for (i, _) in text.match_indices("\"dohgate_") {
                let rest = &text[i + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                if rest[end..].starts_with('"') {
                    names.push(rest[..end].to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn docs_list_every_metric() {
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).expect("docs/metrics.md");
    let code = metric_names_in_code();
    assert!(code.len() >= 20, "found only {code:?}");
    for name in &code {
        assert!(
            docs.contains(&format!("`{name}`")),
            "docs/metrics.md does not document {name}"
        );
    }
}
