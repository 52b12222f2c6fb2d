//! `cfg(mmsg)`: the target has `recvmmsg` and `sendmmsg` (see `src/udp/batch.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mmsg)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(os.as_str(), "linux" | "android" | "freebsd" | "netbsd") {
        println!("cargo::rustc-cfg=mmsg");
    }
}
