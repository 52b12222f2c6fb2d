//! The documentation stays true: every TOML example in docs/ and deploy/ is a valid
//! configuration, and every flag the docs name exists in `--help`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_toml_example_in_the_docs_is_valid() {
    let mut checked = 0;
    for dir in ["docs", "deploy"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let examples = match path.extension().and_then(|e| e.to_str()) {
                Some("md") => toml_blocks(&text),
                Some("toml") => vec![text],
                _ => continue,
            };
            for (i, example) in examples.iter().enumerate() {
                if let Err(e) = dohgate_core::config::parse(example, None) {
                    panic!("{} example {}: {e}\n{example}", path.display(), i + 1);
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "found only {checked} examples: is the docs folder where it should be?"
    );
}

#[test]
fn documented_flags_exist() {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dohgate"))
        .arg("--help")
        .output()
        .expect("run dohgate --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in docs
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.chars().nth(2).is_some_and(|c| c.is_ascii_lowercase()))
    {
        assert!(
            help.contains(flag),
            "docs/configuration.md names {flag}, which --help does not know"
        );
    }
}
