//! The `dohgate` binary as users run it: exit codes and error messages.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn dohgate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dohgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dohgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn config_file(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(text)
}

mod tempfile_path {
    use super::*;

    /// A file under the system temp directory, removed on drop.
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn with(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "dohgate-test-{}-{}.toml",
                std::process::id(),
                rand::random::<u64>()
            ));
            let mut f = std::fs::File::create(&path).expect("create temp config");
            f.write_all(text.as_bytes()).expect("write temp config");
            TempPath(path)
        }

        pub fn as_str(&self) -> &str {
            self.0.to_str().expect("utf-8 temp path")
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let f = config_file(
        "[resolver]\ntargets = [\"127.0.0.1:5300\"]\n[[inbound]]\nname = \"dc\"\nlisten = [\"127.0.0.1:5353\"]\n\
         [[outbound]]\nname = \"o\"\n[[rule]]\nname = \"corp\"\ndomain = \"corp.test\"\ntype = \"forward\"\n\
         outbound = \"o\"\ntargets = [\"127.0.0.1:5301\"]\n",
    );
    let (code, out, err) = dohgate(&["check-config", f.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rule \"corp\": forward corp.test. via o to 127.0.0.1:5301"),
        "{out}"
    );
    assert!(out.contains("configuration is valid"));
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let f = config_file(
        "[[inbound]]\nname = \"dc\"\nlisten = [\"127.0.0.1:5353\"]\nallow = [\"10.0.0.0/40\"]\n",
    );
    let (code, _, err) = dohgate(&["check-config", f.as_str()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:4: inbound[0].allow[0]", f.as_str())),
        "{err}"
    );

    let f = config_file("[admin]\nlisten = \"127.0.0.1:9153\"\nport = 1\n");
    let (code, _, err) = dohgate(&["--config", f.as_str()]);
    assert_eq!(code, 2);
    assert!(err.contains(":3:") && err.contains("port"), "{err}");

    let f = config_file(
        "[[rule]]\nname = \"r\"\ndomain = \"x.test\"\ntype = \"forward\"\noutbound = \"missing\"\ntargets = [\"127.0.0.1\"]\n",
    );
    let (code, _, err) = dohgate(&["check-config", f.as_str()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(":5: rule[0].outbound") && err.contains("missing"),
        "{err}"
    );

    let (code, _, err) = dohgate(&["check-config", "/nonexistent/dohgate.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn bad_flags_are_rejected_before_anything_binds() {
    let (code, _, err) = dohgate(&[
        "--forward",
        "corp.test=dns.corp.test",
        "--listen-do53",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--forward"), "{err}");
    let (code, _, _) = dohgate(&["--listen-do53", "not-an-address"]);
    assert_eq!(code, 2, "clap rejects it");
}

#[test]
fn version_and_help() {
    let (code, out, _) = dohgate(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("dohgate "), "{out}");
    // The version says whether the FIPS module is in the binary, and only then.
    let plain = format!("dohgate {}", env!("CARGO_PKG_VERSION"));
    if cfg!(feature = "fips") {
        let fips = out.trim_end().strip_prefix(&plain).unwrap_or_default();
        assert!(
            fips.starts_with(" (fips: AWS-LC FIPS") && fips.ends_with(')'),
            "the module and its version: {out}"
        );
    } else {
        assert_eq!(out.trim_end(), plain);
    }
    let (code, out, _) = dohgate(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--listen-do53",
        "--upstream",
        "--forward",
        "--system",
        "--admin",
    ] {
        assert!(out.contains(flag), "--help mentions {flag}");
    }
}

/// A DoH endpoint with these certificate and key files, for check-config.
fn doh_with(cert: &str, key: &str) -> tempfile_path::TempPath {
    config_file(&format!(
        "[resolver]\ntargets = [\"127.0.0.1:5300\"]\n[[inbound]]\nname = \"dc\"\n\
         listen_doh = [\"127.0.0.1:8443\"]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
    ))
}

#[test]
fn check_config_reads_the_tls_files_it_names() {
    let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs");
    let file = |name: &str| certs.join(name).display().to_string();
    let good = doh_with(
        &file("localhost-ecdsa-chain.pem"),
        &file("localhost-ecdsa.key"),
    );
    let (code, _, err) = dohgate(&["check-config", good.as_str()]);
    assert_eq!(code, 0, "{err}");

    // /dev/zero used to be read until the allocator aborted; now it is refused at once.
    let zero = doh_with("/dev/zero", &file("localhost-ecdsa.key"));
    let (code, _, err) = dohgate(&["check-config", zero.as_str()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file"),
        "{err}"
    );

    // A FIFO used to hang the start; it is not a regular file either.
    let fifo = std::env::temp_dir().join(format!("dohgate-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let f = doh_with(
            &file("localhost-ecdsa-chain.pem"),
            &fifo.display().to_string(),
        );
        let (code, _, err) = dohgate(&["check-config", f.as_str()]);
        assert_eq!(code, 2);
        assert!(err.contains("not a regular file"), "{err}");
        let _ = std::fs::remove_file(&fifo);
    }

    // A key that belongs to another certificate.
    let mismatched = doh_with(&file("localhost-ecdsa-chain.pem"), &file("wrong-name.key"));
    let (code, _, err) = dohgate(&["check-config", mismatched.as_str()]);
    assert_eq!(code, 2, "a key that does not match its certificate: {err}");
}

#[test]
fn a_configuration_that_serves_nothing_is_an_error() {
    let f = config_file("[resolver]\ntargets = [\"127.0.0.1:5300\"]\n");
    let (code, _, err) = dohgate(&["check-config", f.as_str()]);
    assert_eq!(code, 2);
    assert!(err.contains("serve nothing"), "{err}");
    let (code, _, err) = dohgate(&["--config", f.as_str()]);
    assert_eq!(code, 2, "it does not start either: {err}");
    assert!(err.contains("serve nothing"), "{err}");
}

/// Kills the child by its PID when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a pipe, read on a thread so that a test can wait for them with a timeout.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts the gateway on loopback ports with standard error piped (as a journal or a container
/// runtime reads it), waits for its banner, stops it with SIGTERM and returns its log lines.
fn log_lines_of_a_run(extra: &[&str]) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dohgate"))
        .args(extra)
        // Port 9 on loopback: nothing is sent anywhere else (the embedded default's resolver
        // would come from /etc/resolv.conf).
        .args([
            "--listen-do53",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
            "--admin",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dohgate");
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let mut child = Running(child);
    let banner = stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the banner within 10 s");
    assert!(banner.contains("is running"), "{banner}");
    let stopped = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(stopped, "kill -TERM");
    let mut lines = Vec::new();
    // The pipe closes when the process exits.
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    // SIGTERM right after the banner is a graceful shutdown, never the signal's default
    // action (death): the handler is in place before the listeners take queries.
    let status = child.0.wait().expect("wait for dohgate");
    assert!(
        status.success(),
        "stopped by SIGTERM: {status}, log: {lines:?}"
    );
    assert!(!lines.is_empty(), "no log line at all");
    lines
}

#[test]
fn sigterm_right_after_start_is_a_graceful_shutdown() {
    let lines = log_lines_of_a_run(&[]);
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
}

#[test]
fn json_log_is_one_object_per_line_without_escape_codes() {
    let lines = log_lines_of_a_run(&["--log-format", "json"]);
    for line in &lines {
        assert!(!line.contains('\x1b'), "an escape code: {line:?}");
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(
            v["message"].is_string(),
            "the message is a top-level key: {line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "{lines:?}"
    );
}

#[test]
fn text_log_has_no_colour_when_standard_error_is_not_a_terminal() {
    let lines = log_lines_of_a_run(&[]);
    for line in &lines {
        assert!(!line.contains('\x1b'), "an escape code: {line:?}");
        assert!(!line.starts_with('{'), "text, not JSON: {line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("INFO") && l.contains("shutting down")),
        "{lines:?}"
    );
}

#[test]
fn an_unknown_log_format_is_rejected() {
    let (code, _, err) = dohgate(&["--log-format", "xml", "check-config", "/dev/null"]);
    assert_eq!(code, 2, "clap rejects it: {err}");
    assert!(err.contains("--log-format"), "{err}");
}
