//! Build facts for `dohgate_build_info`: the git commit ($DOHGATE_GIT_SHA if set, else from git,
//! else "unknown") and the cargo features the binary was built with.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // A container build has no .git (.dockerignore leaves it out): the Dockerfile passes the
    // commit in DOHGATE_GIT_SHA instead.
    println!("cargo:rerun-if-env-changed=DOHGATE_GIT_SHA");
    let sha = std::env::var("DOHGATE_GIT_SHA")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=DOHGATE_GIT_SHA={sha}");

    // A commit moves the branch ref (or HEAD itself when detached); watching both keeps the sha
    // current without rerunning on every build. Only existing files: cargo reruns the script
    // every time for a watched path that does not exist.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
        // Branch refs live in the common directory, which differs from the git dir in a
        // worktree.
        let common = git(&["rev-parse", "--git-common-dir"]).map_or(dir.clone(), PathBuf::from);
        let mut watch = vec![dir.join("HEAD"), common.join("packed-refs")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(head_ref));
        }
        for path in watch.into_iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }

    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    features.sort();
    println!("cargo:rustc-env=DOHGATE_FEATURES={}", features.join(","));
}
