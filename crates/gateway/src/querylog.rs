//! The query log's writer: one JSON object per line with the field names of Route 53 Resolver
//! query logs where they apply (docs/query-logs.md), written by a thread of its own.
//!
//! The resolver only queues raw bytes ([`dohgate_outbound::QueryLog`]); decoding, formatting
//! and writing happen here, so neither a slow disk nor a stalled pipe ever holds up a query.
//! Files are rotated by size (`FILE` -> `FILE.1` -> ... -> `FILE.<keep>`).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dohgate_core::config::{FirewallConfig, QueryLogConfig, QueryLogDest};
use dohgate_core::firewall::FirewallAction;
use dohgate_core::handler::Transport;
use dohgate_core::rules::RuleSet;
use dohgate_core::wire;
use dohgate_outbound::{QueryLog, QueryRecord};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use prometheus::{IntCounter, IntCounterVec};
use serde::Serialize;
use tokio::sync::mpsc;

/// The version of dohgate's query log format (the `version` field).
pub const FORMAT_VERSION: &str = "1.0";

/// Records written between two flushes at most, so a steady stream still reaches the file.
const MAX_BATCH: usize = 1024;

/// Starts the writer for `config` if the query log is on, and returns the queue's sending end
/// for the resolver. A file that cannot be opened is an error here, at start.
pub fn start(
    config: &QueryLogConfig,
    rules: &RuleSet,
    firewall: &FirewallConfig,
    dropped: &IntCounterVec,
) -> anyhow::Result<Option<QueryLog>> {
    let Some(dest) = &config.dest else {
        return Ok(None);
    };
    let sink = Sink::open(dest, config.max_bytes, config.keep).map_err(|e| match dest {
        QueryLogDest::File(p) => anyhow::anyhow!("query log {}: {e}", p.display()),
        QueryLogDest::Stdout => anyhow::anyhow!("query log on standard output: {e}"),
    })?;
    let (log, rx) = QueryLog::channel(
        config.queue,
        rules,
        firewall,
        dropped.with_label_values(&["queue_full"]),
    );
    let write_errors = dropped.with_label_values(&["write_error"]);
    std::thread::Builder::new()
        .name("dohgate-query-log".to_string())
        .spawn(move || run(rx, sink, write_errors))?;
    Ok(Some(log))
}

/// The writer thread: ends when every sender is gone (the resolver dropped).
fn run(mut rx: mpsc::Receiver<QueryRecord>, mut sink: Sink, write_errors: IntCounter) {
    let mut line = Vec::with_capacity(1024);
    let mut failing = false;
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut lines = 0u64;
        let mut result = Ok(());
        while let Some(record) = next {
            line.clear();
            format_record(&record, &mut line);
            if result.is_ok() {
                result = sink.write_line(&line);
            }
            lines += 1;
            next = if lines < MAX_BATCH as u64 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if result.is_ok() {
            result = sink.flush();
        }
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("query log: writing again");
            }
            Ok(()) => {}
            Err(e) => {
                write_errors.inc_by(lines);
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "query log: cannot write; records are dropped and counted until it works again");
                }
            }
        }
    }
    let _ = sink.flush();
}

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    File(RotatingFile),
    /// A named pipe (a log shipper reading it): opened by the writer thread, because opening
    /// one waits for a reader, and opened again after the reader goes away.
    Pipe {
        path: PathBuf,
        out: Option<BufWriter<File>>,
    },
}

impl Sink {
    fn open(dest: &QueryLogDest, max_bytes: u64, keep: usize) -> io::Result<Sink> {
        let path = match dest {
            QueryLogDest::Stdout => return Ok(Sink::Stdout),
            QueryLogDest::File(p) => p,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
                return Ok(Sink::Pipe {
                    path: path.clone(),
                    out: None,
                });
            }
        }
        RotatingFile::open(path, max_bytes, keep).map(Sink::File)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::File(f) => f.write_line(line),
            Sink::Pipe { path, out } => {
                let w = match out {
                    Some(w) => w,
                    None => {
                        out.insert(BufWriter::new(OpenOptions::new().write(true).open(&*path)?))
                    }
                };
                let r = w.write_all(line);
                if r.is_err() {
                    *out = None;
                }
                r
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::File(f) => f.out.flush(),
            Sink::Pipe { out, .. } => {
                let r = out.as_mut().map_or(Ok(()), |w| w.flush());
                if r.is_err() {
                    *out = None;
                }
                r
            }
        }
    }
}

/// A file rotated by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_bytes: u64,
    keep: usize,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it if needed).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            size,
            max_bytes,
            keep,
        })
    }

    /// Appends one whole line, rotating first if it would take the file past `max_bytes`.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
        if self.keep == 0 {
            ignore_missing(fs::remove_file(&self.path))?;
        } else {
            for i in (1..self.keep).rev() {
                ignore_missing(fs::rename(
                    numbered(&self.path, i),
                    numbered(&self.path, i + 1),
                ))?;
            }
            ignore_missing(fs::rename(&self.path, numbered(&self.path, 1)))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// `FILE.<i>`.
pub fn numbered(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------------
// Formatting.

#[derive(Serialize)]
struct LogLine<'a> {
    version: &'static str,
    query_timestamp: String,
    query_name: Option<String>,
    query_type: Option<Cow<'static, str>>,
    query_class: Option<Cow<'static, str>>,
    rcode: Option<Cow<'static, str>>,
    answers: Vec<LogAnswer>,
    srcaddr: String,
    srcport: String,
    transport: &'static str,
    protocol: &'static str,
    endpoint: &'a str,
    rule: Option<&'a str>,
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_rule_group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_rule_action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firewall_domain_list_id: Option<&'a str>,
}

#[derive(Serialize)]
struct LogAnswer {
    #[serde(rename = "Rdata")]
    rdata: String,
    #[serde(rename = "Type")]
    rtype: Cow<'static, str>,
    #[serde(rename = "Class")]
    class: Cow<'static, str>,
}

/// Appends `record` as one JSON line to `out`.
pub fn format_record(record: &QueryRecord, out: &mut Vec<u8>) {
    let question = wire::question(&record.query).ok();
    let parsed = record
        .answer
        .as_deref()
        .and_then(|a| Message::from_vec(a).ok());
    let rcode = match (&parsed, record.answer.as_deref()) {
        // The parsed message has the EDNS extended bits merged in (BADVERS and above).
        (Some(m), _) => Some(rcode_name(u16::from(m.metadata.response_code))),
        (None, Some(a)) if a.len() >= wire::HEADER_LEN => Some(rcode_name(wire::rcode(a))),
        _ => None,
    };
    let line = LogLine {
        version: FORMAT_VERSION,
        query_timestamp: rfc3339(record.time),
        query_name: question.map(|q| wire::name_to_string(q.name(&record.query))),
        query_type: question.map(|q| type_name(q.qtype)),
        query_class: question.map(|q| class_name(q.qclass)),
        rcode,
        answers: parsed
            .map(|m| m.answers.iter().map(log_answer).collect())
            .unwrap_or_default(),
        srcaddr: record.client.ip().to_string(),
        srcport: record.client.port().to_string(),
        transport: match record.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::H1 | Transport::H2 => "DoH",
        },
        protocol: record.protocol.as_str(),
        endpoint: &record.endpoint.name,
        rule: record.rule.as_deref(),
        target: record.target.as_deref().map(|t| t.label()),
        firewall_rule_group_id: record.firewall.as_ref().map(|f| &*f.rule_group),
        firewall_rule_action: record.firewall.as_ref().map(|f| match f.action {
            // Route 53's spelling of the action in query logs.
            FirewallAction::Allow => "ALLOW",
            FirewallAction::Alert => "ALERT",
            FirewallAction::Block => "BLOCK",
        }),
        firewall_domain_list_id: record.firewall.as_ref().map(|f| &*f.domain_list),
    };
    // Serializing plain strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

fn log_answer(r: &Record) -> LogAnswer {
    LogAnswer {
        rdata: rdata(&r.data),
        rtype: type_name(u16::from(r.record_type())),
        class: class_name(u16::from(r.dns_class)),
    }
}

/// Presentation form for the common types, RFC 3597's `\# LENGTH HEX` for the others.
fn rdata(d: &RData) -> String {
    match d {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => n.0.to_ascii(),
        RData::NS(n) => n.0.to_ascii(),
        RData::PTR(n) => n.0.to_ascii(),
        RData::MX(mx) => format!("{} {}", mx.preference, mx.exchange.to_ascii()),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| quoted(s))
            .collect::<Vec<_>>()
            .join(" "),
        other => {
            let bytes = other.to_bytes().unwrap_or_default();
            let mut s = format!("\\# {}", bytes.len());
            if !bytes.is_empty() {
                s.push(' ');
                for b in bytes {
                    s.push_str(&format!("{b:02x}"));
                }
            }
            s
        }
    }
}

/// A character-string in presentation form: quoted, with `"` and `\` escaped and bytes outside
/// printable ASCII as `\DDD`.
fn quoted(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

/// The mnemonic of a record type (`A`, `AAAA`, ...), or `TYPEnnn` (RFC 3597).
pub fn type_name(t: u16) -> Cow<'static, str> {
    match RecordType::from(t) {
        RecordType::Unknown(_) => Cow::Owned(format!("TYPE{t}")),
        known => Cow::Borrowed(<&'static str>::from(known)),
    }
}

/// The mnemonic of a class (`IN`, `CH`, ...), or `CLASSnnn` (RFC 3597).
pub fn class_name(c: u16) -> Cow<'static, str> {
    match c {
        1 => Cow::Borrowed("IN"),
        3 => Cow::Borrowed("CH"),
        4 => Cow::Borrowed("HS"),
        254 => Cow::Borrowed("NONE"),
        255 => Cow::Borrowed("ANY"),
        _ => Cow::Owned(format!("CLASS{c}")),
    }
}

/// The name of an RCODE as Route 53 logs it (`NOERROR`, `NXDOMAIN`, ...), or `RCODEnnn`.
pub fn rcode_name(rcode: u16) -> Cow<'static, str> {
    match wire::rcode_name(rcode) {
        "OTHER" => Cow::Owned(format!("RCODE{rcode}")),
        name => Cow::Borrowed(name),
    }
}

/// `2026-11-27T17:30:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use dohgate_core::Protocol;
    use dohgate_core::acl::AllowList;
    use dohgate_core::handler::Endpoint;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_007); // a leap day
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.007Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // the last second of 2026
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn names_of_types_classes_and_rcodes() {
        assert_eq!(type_name(1), "A");
        assert_eq!(type_name(28), "AAAA");
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(65_280), "TYPE65280");
        assert_eq!(class_name(1), "IN");
        assert_eq!(class_name(42), "CLASS42");
        assert_eq!(rcode_name(3), "NXDOMAIN");
        assert_eq!(rcode_name(16), "BADVERS");
        assert_eq!(rcode_name(11), "RCODE11");
    }

    /// An answer to `query` (ID 7, `www.example.` A/IN) with the given records appended.
    fn answer_with(records: &[u8], count: u8) -> Vec<u8> {
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, count, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        m.extend_from_slice(records);
        m
    }

    fn record(answer: Option<Vec<u8>>) -> QueryRecord {
        let query = wire::build_query(7, "WWW.example", 1, None).expect("query");
        QueryRecord {
            time: UNIX_EPOCH + Duration::from_secs(1_798_761_599),
            query,
            answer,
            client: "[2001:db8::1]:5300".parse().expect("addr"),
            endpoint: Endpoint::new("onprem", AllowList::default()),
            protocol: Protocol::DoH,
            transport: Transport::H2,
            rule: Some(Arc::from("corp")),
            target: None,
            firewall: None,
        }
    }

    #[test]
    fn a_record_becomes_one_json_line() {
        let records = [
            // A 192.0.2.1
            &b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x01"[..],
            // TXT "a\"b" "c"
            b"\xc0\x0c\x00\x10\x00\x01\x00\x00\x01\x2c\x00\x06\x03a\"b\x01c",
            // MX 10 mail.example.
            b"\xc0\x0c\x00\x0f\x00\x01\x00\x00\x01\x2c\x00\x09\x00\x0a\x04mail\xc0\x10",
            // TYPE65280 with two bytes
            b"\xc0\x0c\xff\x00\x00\x01\x00\x00\x01\x2c\x00\x02\xab\xcd",
        ]
        .concat();
        let mut out = Vec::new();
        format_record(&record(Some(answer_with(&records, 4))), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["version"], FORMAT_VERSION);
        assert_eq!(v["query_timestamp"], "2026-12-31T23:59:59.000Z");
        assert_eq!(v["query_name"], "www.example.");
        assert_eq!(v["query_type"], "A");
        assert_eq!(v["query_class"], "IN");
        assert_eq!(v["rcode"], "NOERROR");
        assert_eq!(v["srcaddr"], "2001:db8::1");
        assert_eq!(v["srcport"], "5300");
        assert_eq!(v["transport"], "DoH");
        assert_eq!(v["protocol"], "doh");
        assert_eq!(v["endpoint"], "onprem");
        assert_eq!(v["rule"], "corp");
        assert!(v["target"].is_null());
        let answers = v["answers"].as_array().expect("answers");
        let rdata: Vec<&str> = answers
            .iter()
            .map(|a| a["Rdata"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            rdata,
            [
                "192.0.2.1",
                "\"a\\\"b\" \"c\"",
                "10 mail.example.",
                "\\# 2 abcd"
            ]
        );
        assert_eq!(answers[3]["Type"], "TYPE65280");
        assert_eq!(answers[0]["Class"], "IN");
    }

    #[test]
    fn garbage_is_logged_with_what_can_be_read() {
        let mut r = record(Some(vec![0, 7, 0x81, 0x83]));
        r.query = vec![1, 2, 3];
        let mut out = Vec::new();
        format_record(&r, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert!(v["query_name"].is_null());
        assert!(v["rcode"].is_null());
        assert_eq!(v["answers"], serde_json::json!([]));
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dohgate-querylog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn files_rotate_by_size_and_keep_n() {
        let dir = temp_dir("rotate");
        let path = dir.join("q.log");
        let mut f = RotatingFile::open(&path, 100, 2).expect("open");
        for i in 0..10 {
            // 40-byte lines: two fit in a 100-byte file, the third starts a new one.
            f.write_line(format!("{i:039}\n").as_bytes())
                .expect("write");
        }
        f.flush().expect("flush");
        let lines = |p: &Path| -> Vec<String> {
            fs::read_to_string(p)
                .map(|t| {
                    t.lines()
                        .map(|l| l.trim_start_matches('0').to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(lines(&path), ["8", "9"]);
        assert_eq!(lines(&numbered(&path, 1)), ["6", "7"]);
        assert_eq!(lines(&numbered(&path, 2)), ["4", "5"]);
        assert!(!numbered(&path, 3).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
