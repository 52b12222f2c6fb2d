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

/// The files under `dir`, in every subdirectory (deploy/systemd, deploy/kubernetes/...).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_toml_example_in_the_docs_is_valid() {
    let mut checked = 0;
    for dir in ["docs", "deploy"] {
        for path in files_under(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let examples = match path.extension().and_then(|e| e.to_str()) {
                Some("md") => toml_blocks(&text),
                Some("toml") => vec![text],
                _ => continue,
            };
            for (i, example) in examples.iter().enumerate() {
                // Files an example names (zones, lists) are relative to the repository.
                if let Err(e) = dohgate_core::config::parse(example, Some(&root())) {
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

/// The keys serde accepts in a section, read back from the error it gives for the unknown key
/// `zz_not_a_key` in `text` (`deny_unknown_fields` lists every expected field).
fn schema_keys(text: &str) -> Vec<String> {
    let e = dohgate_core::config::parse(text, None)
        .expect_err("an unknown key is an error")
        .to_string();
    let expected = e
        .split_once("expected")
        .unwrap_or_else(|| panic!("no list of expected keys in: {e}"))
        .1;
    let mut keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    keys.sort();
    keys
}

/// The first-column keys of the first table under the heading that contains `marker`.
fn documented_keys(markdown: &str, marker: &str) -> Vec<String> {
    let mut lines = markdown.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with('#') && l.contains(marker))
        .unwrap_or_else(|| panic!("no heading with {marker} in docs/configuration.md"));
    let mut keys: Vec<String> = lines
        .take_while(|l| !l.starts_with('#'))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|row| row.split('|').nth(1))
        // One cell may name several keys: `min_ttl`, `max_ttl`.
        .flat_map(|cell| {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn configuration_key_tables_match_the_schema() {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let group = "[[firewall.rule_group]]\nname = \"g\"\n";
    for (marker, section) in [
        ("`[server]`", "[server]\n".to_string()),
        ("`[admin]`", "[admin]\n".to_string()),
        ("`[resolver]`", "[resolver]\n".to_string()),
        ("`[timeouts]`", "[timeouts]\n".to_string()),
        ("`[limits]`", "[limits]\n".to_string()),
        ("`[runtime]`", "[runtime]\n".to_string()),
        ("`[query_log]`", "[query_log]\n".to_string()),
        ("`[cache]`", "[cache]\n".to_string()),
        ("`[[inbound]]`", "[[inbound]]\n".to_string()),
        ("`[[outbound]]`", "[[outbound]]\n".to_string()),
        ("`[[rule]]`", "[[rule]]\n".to_string()),
        (
            "Targets",
            "[resolver]\ntargets = [{ address = \"192.0.2.1\", ".to_string(),
        ),
        ("`[firewall]`", "[firewall]\n".to_string()),
        (
            "`[[firewall.domain_list]]`",
            "[[firewall.domain_list]]\n".to_string(),
        ),
        (
            "`[[firewall.rule_group]]`",
            "[[firewall.rule_group]]\n".to_string(),
        ),
        (
            "`[[firewall.rule_group.rule]]`",
            format!("{group}[[firewall.rule_group.rule]]\n"),
        ),
        (
            "`[[firewall.association]]`",
            "[[firewall.association]]\n".to_string(),
        ),
    ] {
        // The inline table of a target needs its closing braces after the unknown key.
        let close = if marker == "Targets" { " }]" } else { "" };
        let schema = schema_keys(&format!("{section}zz_not_a_key = 1{close}\n"));
        assert_eq!(
            documented_keys(&docs, marker),
            schema,
            "docs/configuration.md's table under {marker} and the configuration schema differ"
        );
    }
}
