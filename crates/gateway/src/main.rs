//! The `dohgate` binary: parses the command line, loads the configuration, starts the gateway
//! and stops it gracefully on SIGTERM or ctrl-c.

use std::process::ExitCode;

use clap::Parser;
use dohgate::cli::{self, Cli, Command, LogFormat};
use dohgate_core::config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Cli::parse();
    init_log(args.log_format);

    if let Some(Command::Import { kind, files }) = &args.command {
        return import(*kind, files);
    }

    if let Some(Command::CheckConfig { file }) = &args.command {
        return match config::load(file)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| {
                args.apply(&mut c)?;
                dohgate::check(&c)?;
                Ok(c)
            }) {
            Ok(c) => {
                print!("{}", cli::describe(&c));
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("dohgate: {e:#}");
                ExitCode::from(2)
            }
        };
    }

    // What check-config checks is a configuration error at start too (exit code 2).
    let config = match args
        .load_config()
        .and_then(|c| dohgate::check(&c).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dohgate: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.threads {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dohgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, config))
}

/// dohgate's own log, on standard error. A journal or a container runtime captures it through
/// a pipe and stores what it gets: colour codes only where a person reads a terminal.
fn init_log(format: LogFormat) {
    use std::io::IsTerminal;
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => log.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields beside timestamp, level and target, not nested under "fields":
        // what collectors index without a parsing rule.
        LogFormat::Json => log.json().flatten_event(true).with_ansi(false).init(),
    }
}

/// `dohgate import`: the configuration on standard output, what was left out (and notes) on
/// standard error; 2 when an input is not what KIND reads.
fn import(kind: dohgate::import::ImportKind, files: &[std::path::PathBuf]) -> ExitCode {
    use dohgate::import::ImportError;
    match dohgate::import::run(kind, files) {
        Ok(out) => {
            print!("{}", out.toml);
            for line in &out.left_out {
                eprintln!("left out: {line}");
            }
            for note in &out.notes {
                eprintln!("note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(e @ ImportError::Input { .. }) => {
            eprintln!("dohgate: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("dohgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Cli, config: config::Config) -> ExitCode {
    let log_on_stdout = config.query_log.dest == Some(config::QueryLogDest::Stdout);
    let signal = shutdown_signal();
    // Taken before the listeners exist: without a handler a SIGHUP ends the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    #[cfg(not(unix))]
    let hangup = ();
    let gateway = match dohgate::start(config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("dohgate: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if log_on_stdout {
        // Standard output carries only JSON lines then, for whatever reads them.
        tracing::info!("the query log is on standard output: no start-up banner");
    } else {
        print_banner(&gateway);
    }
    reload_on_hangup(hangup, args, gateway.reloader(), gateway.shutdown_token());
    let token = gateway.shutdown_token();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: no new queries, finishing those in flight");
        token.cancel();
    });
    gateway.wait().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn print_banner(gateway: &dohgate::RunningGateway) {
    let a = gateway.addrs();
    println!("dohgate {} is running", cli::version());
    for (ep, addr) in &a.do53 {
        println!("  do53 (udp+tcp)  {addr}  endpoint {ep}");
    }
    for (ep, addr) in &a.doh {
        println!("  doh             https://{addr}/dns-query  endpoint {ep}");
    }
    for (ep, addr) in &a.doh_fips {
        println!("  doh-fips        https://{addr}/dns-query  endpoint {ep}");
    }
    for (ep, addr) in &a.doh_plain {
        println!("  doh (cleartext) http://{addr}/dns-query  endpoint {ep}");
    }
    if let Some(admin) = a.admin {
        println!("  admin           http://{admin}/metrics  /healthz  /readyz");
    }
    let resolver = gateway.resolver();
    let defaults = resolver.default_targets();
    let names: Vec<&str> = defaults.targets().iter().map(|t| t.label()).collect();
    println!(
        "  default resolver: {}",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    );
    if let Some(addr) = gateway.do53_addr() {
        println!("try: dig @{} -p {} localhost A", addr.ip(), addr.port());
    }
    print_doh_hints(gateway);
}

/// Says how to reach the first DoH listener, and how to trust a self-signed certificate.
fn print_doh_hints(gateway: &dohgate::RunningGateway) {
    let a = gateway.addrs();
    let Some((_, addr)) = a.doh.first().or(a.doh_fips.first()) else {
        return;
    };
    // A GET for `localhost A` with ID 0 (RFC 8484 §4.1).
    const LOCALHOST_A: &str = "AAABAAABAAAAAAAACWxvY2FsaG9zdAAAAQAB";
    let (ip, port) = (addr.ip(), addr.port());
    match gateway.self_signed() {
        Some(cert) => {
            println!(
                "  tls: self-signed certificate made at start (for localhost and the listen addresses)"
            );
            println!("       SHA-256 fingerprint {}", cert.sha256_fingerprint);
            if let Some(file) = &cert.pem_file {
                println!(
                    "try: kdig @{ip} -p {port} +https +tls-ca={} +tls-hostname=localhost localhost A",
                    file.display()
                );
            } else {
                println!(
                    "try: kdig @{ip} -p {port} +https +tls-pin={} localhost A",
                    cert.spki_pin
                );
            }
            println!(
                "try: curl -k -sS -o /dev/null -w '%{{http_code}} %{{content_type}}\\n' 'https://{addr}/dns-query?dns={LOCALHOST_A}'"
            );
        }
        None => println!("try: kdig @{ip} -p {port} +https localhost A"),
    }
}

/// Installs the SIGTERM and SIGINT (ctrl-c) handlers now and returns what waits for either.
/// Until a handler is in place a signal takes its default action and ends the process with
/// no graceful shutdown, so this runs before the listeners take queries: an orchestrator may
/// stop a pod the moment it started.
/// SIGHUP (`systemctl reload`, a closed terminal) reloads the configuration from where it was
/// loaded, with the same flags, instead of ending the process.
#[cfg(unix)]
fn reload_on_hangup(
    hangup: std::io::Result<tokio::signal::unix::Signal>,
    args: Cli,
    reloader: dohgate::Reloader,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut hangup = match hangup {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: a reload needs a restart");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = reloader.reload_loaded(args.load_config());
        }
    });
}

#[cfg(not(unix))]
fn reload_on_hangup(
    _hangup: (),
    _args: Cli,
    _reloader: dohgate::Reloader,
    _shutdown: tokio_util::sync::CancellationToken,
) {
}

fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn recv(signal: std::io::Result<Signal>) {
            match signal {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot handle a shutdown signal");
                    std::future::pending::<()>().await;
                }
            }
        }
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            tokio::select! {
                _ = recv(term) => {}
                _ = recv(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
