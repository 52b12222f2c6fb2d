//! Firewall domain lists in Route 53 syntax: `x.example` (that name), `*.x.example` (names
//! strictly below it) and `*` (every name).
//!
//! Entries are kept as lower-case wire-format names in one hash map, so a lookup costs one probe
//! for the exact name and one per proper label suffix, whether the list holds 10 or 1,000,000
//! domains, and allocates nothing.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::error::{ConfigError, WireError};
use crate::wire;

/// The name itself is listed (`x.example`).
const EXACT: u8 = 1;
/// Names strictly below it are listed (`*.x.example`).
const BELOW: u8 = 2;

/// The configuration key that errors in a domain list file are reported under.
pub const DOMAIN_LIST_FILE_KEY: &str = "firewall.domain_list.file";

/// A set of domains a firewall rule matches query names against.
#[derive(Clone, Default)]
pub struct DomainList {
    /// Lower-case wire-format name -> `EXACT` and/or `BELOW`: one map, so a name listed both
    /// ways is stored once.
    names: HashMap<Box<[u8]>, u8>,
    exact: usize,
    /// Entries with `BELOW` set; zero lets a lookup skip the suffix probes.
    wildcards: usize,
    /// `*` was listed.
    any: bool,
}

impl fmt::Debug for DomainList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A list may hold millions of names: show its shape, not its contents.
        f.debug_struct("DomainList")
            .field("exact", &self.exact)
            .field("wildcards", &self.wildcards)
            .field("any", &self.any)
            .finish()
    }
}

impl DomainList {
    /// An empty list, which matches nothing.
    pub fn new() -> Self {
        DomainList::default()
    }

    /// Adds one domain (`x.example`, `*.x.example` or `*`; any case, trailing dot optional).
    ///
    /// `*` is accepted only as a whole leftmost label; `.` lists the root name itself.
    pub fn add(&mut self, domain: &str) -> Result<(), WireError> {
        let d = domain.trim();
        if d == "." {
            self.insert(Box::new([0]), EXACT);
            return Ok(());
        }
        // Strip one trailing dot here, so `a..` (an empty label) is not stripped twice below.
        let d = d.strip_suffix('.').unwrap_or(d);
        if d.is_empty() || d.ends_with('.') {
            return Err(WireError::BadName);
        }
        if d == "*" {
            self.any = true;
            return Ok(());
        }
        let (bit, rest) = match d.strip_prefix("*.") {
            Some(parent) => (BELOW, parent),
            None => (EXACT, d),
        };
        if rest.contains('*') {
            return Err(WireError::BadName);
        }
        let name = wire::name_to_wire(rest)?;
        self.insert(name.into_boxed_slice(), bit);
        Ok(())
    }

    fn insert(&mut self, name: Box<[u8]>, bit: u8) {
        let slot = self.names.entry(name).or_insert(0);
        if *slot & bit == 0 {
            *slot |= bit;
            if bit == EXACT {
                self.exact += 1;
            } else {
                self.wildcards += 1;
            }
        }
    }

    /// Adds the domains of a list file's text: one per line, `#` starts a comment, blank lines
    /// are skipped.
    ///
    /// A bad line is an error naming `file` and the line; the lines before it stay added, so a
    /// caller that must not keep a half-loaded list loads into a fresh one.
    pub fn add_file_text(&mut self, text: &str, file: &Path) -> Result<(), ConfigError> {
        // One line is at most one entry: reserving up front saves rehashing a million names.
        let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
        self.names.reserve(lines);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, line) in text.lines().enumerate() {
            let domain = line
                .split_once('#')
                .map_or(line, |(before, _)| before)
                .trim();
            if domain.is_empty() {
                continue;
            }
            self.add(domain).map_err(|_| ConfigError {
                file: Some(file.to_path_buf()),
                line: Some(index + 1),
                key: DOMAIN_LIST_FILE_KEY.to_string(),
                message: format!("{domain:?} is not a valid domain name"),
            })?;
        }
        Ok(())
    }

    /// The number of entries (`x.example` and `*.x.example` count as two, `*` as one).
    pub fn len(&self) -> usize {
        self.exact + self.wildcards + usize::from(self.any)
    }

    /// True for a list that matches nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if the list covers a wire-format name (uncompressed, any case).
    pub fn matches(&self, name: &[u8]) -> bool {
        if self.any {
            return true;
        }
        let mut buf = [0u8; 255];
        self.matches_lowercase(wire::lowercase_name(name, &mut buf))
    }

    /// Like [`DomainList::matches`] for a name already lower-cased (with
    /// [`wire::lowercase_name`]), so an evaluator checking many lists lower-cases once.
    pub fn matches_lowercase(&self, name: &[u8]) -> bool {
        if self.any {
            return true;
        }
        if self.names.get(name).is_some_and(|&bits| bits & EXACT != 0) {
            return true;
        }
        if self.wildcards == 0 {
            return false;
        }
        // Probe each proper suffix: `*.x.example` matches a name if x.example is a suffix of it
        // that is not the whole name. The root suffix is never stored with BELOW (`*` is `any`).
        let mut at = 0;
        while let Some(&len) = name.get(at) {
            if len == 0 || len & 0xc0 != 0 {
                break;
            }
            at += 1 + len as usize;
            match name.get(at..) {
                Some(suffix) if suffix.len() > 1 => {
                    if self
                        .names
                        .get(suffix)
                        .is_some_and(|&bits| bits & BELOW != 0)
                    {
                        return true;
                    }
                }
                _ => break,
            }
        }
        false
    }

    /// True if the list covers a presentation-format name (for tools and tests).
    pub fn matches_name(&self, name: &str) -> bool {
        wire::name_to_wire(name).is_ok_and(|w| self.matches(&w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(domains: &[&str]) -> DomainList {
        let mut l = DomainList::new();
        for d in domains {
            l.add(d).expect("valid domain");
        }
        l
    }

    #[test]
    fn exact_wildcard_and_any() {
        let l = list(&["x.example", "*.w.example"]);
        assert!(l.matches_name("x.example"));
        assert!(!l.matches_name("a.x.example"), "exact does not cover below");
        assert!(!l.matches_name("w.example"), "*. does not cover the parent");
        assert!(l.matches_name("a.w.example"));
        assert!(l.matches_name("b.a.w.example"));
        assert!(!l.matches_name("example"));
        assert_eq!(l.len(), 2);
        let any = list(&["*"]);
        assert!(any.matches_name("anything.at.all"));
        assert!(any.matches_name("."));
        assert!(!DomainList::new().matches_name("x.example"));
    }

    #[test]
    fn matching_is_label_wise_and_case_insensitive() {
        let l = list(&["*.x.example", "Y.Example."]);
        assert!(!l.matches_name("evilx.example"));
        assert!(!l.matches_name("a.evilx.example"));
        assert!(l.matches_name("A.X.EXAMPLE."));
        assert!(l.matches(b"\x01A\x01x\x07ExAmPlE\x00"));
        assert!(l.matches_name("y.example"));
        assert!(!l.matches_name("y.example.com"));
    }

    #[test]
    fn a_name_listed_both_ways_counts_twice() {
        let l = list(&["x.example", "*.x.example", "X.example."]);
        assert_eq!(l.len(), 2);
        assert!(l.matches_name("x.example") && l.matches_name("a.x.example"));
    }

    #[test]
    fn rejects_bad_domains() {
        let mut l = DomainList::new();
        for bad in [
            "",
            "a..b",
            "a..",
            "*..",
            "*x.example",
            "a.*.example",
            "**",
            "a b",
            "é.x",
        ] {
            assert_eq!(l.add(bad), Err(WireError::BadName), "{bad:?}");
        }
        assert!(l.add(&format!("{}.x", "a".repeat(64))).is_err());
        assert!(l.is_empty());
        l.add(".").expect("the root");
        assert!(l.matches_name(".") && !l.matches_name("x.example"));
        l.add("*.").expect("`*` with its trailing dot");
        assert!(l.matches_name("x.example"));
    }

    #[test]
    fn file_loader_skips_comments_and_names_bad_lines() {
        let mut l = DomainList::new();
        let text = "\u{feff}# blocked\n\nbad.example  # trailing comment\n  *.ads.example\r\n";
        l.add_file_text(text, Path::new("lists/block.txt"))
            .expect("valid file");
        assert!(l.matches_name("bad.example"));
        assert!(l.matches_name("x.ads.example"));
        assert_eq!(l.len(), 2);

        let err = l
            .add_file_text(
                "ok.example\n# fine\nnot a domain\n",
                Path::new("lists/b.txt"),
            )
            .expect_err("line 3 is bad");
        assert_eq!(err.file.as_deref(), Some(Path::new("lists/b.txt")));
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key, DOMAIN_LIST_FILE_KEY);
        assert!(
            err.to_string()
                .starts_with("lists/b.txt:3: firewall.domain_list.file:")
        );
    }

    #[test]
    fn large_lists_load_and_match() {
        let text: String = (0..200_000)
            .map(|i| {
                if i % 2 == 0 {
                    format!("host{i}.block.example\n")
                } else {
                    format!("*.zone{i}.block.example\n")
                }
            })
            .collect();
        let mut l = DomainList::new();
        l.add_file_text(&text, Path::new("big.txt")).expect("valid");
        assert_eq!(l.len(), 200_000);
        assert!(l.matches_name("host199998.block.example"));
        assert!(!l.matches_name("a.host199998.block.example"));
        assert!(l.matches_name("a.b.zone199999.block.example"));
        assert!(!l.matches_name("zone199999.block.example"));
        assert!(!l.matches_name("host1.block.example"));
    }
}
