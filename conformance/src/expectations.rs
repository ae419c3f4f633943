//! Per-driver expectations: the cases a driver is known to fail or must skip, each with the
//! reason, read from a small text file.
//!
//! One entry per line: a case id (`level/feature/name`) or a prefix ending in `*`, the word
//! `fail` or `skip`, then the reason (required). `#` starts a comment.
//!
//! ```text
//! # expectations for the acme driver
//! runtime/kernel-gemm/*            skip  GEMM is served by the vendor BLAS, not this driver
//! abi/queues-semaphores/queue_priorities fail  priorities are accepted but ignored (ACME-142)
//! ```
//!
//! An entry that names no case of the kit is an error, so a typo cannot hide a failure.

use std::path::Path;

/// What an entry expects of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The case runs and must fail.
    Fail,
    /// The case does not run.
    Skip,
}

/// One line of an expectations file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// A case id, or a prefix of ids when it ends in `*`.
    pub pattern: String,
    /// Fail or skip.
    pub expect: Expect,
    /// Why (never empty).
    pub reason: String,
    /// The 1-based line it came from.
    pub line: usize,
}

impl Expectation {
    /// Whether the entry covers the case with this id.
    pub fn matches(&self, id: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => id == self.pattern,
        }
    }
}

/// The expectations of one driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    entries: Vec<Expectation>,
}

/// The expectations shipped with the kit, by driver name.
const BUNDLED: &[(&str, &str)] = &[("sim", include_str!("../expectations/sim.txt"))];

impl Expectations {
    /// No expected failures or skips: every case must pass or be skipped by capability.
    pub fn none() -> Expectations {
        Expectations::default()
    }

    /// The file shipped with the kit for the driver of this name, or none.
    pub fn for_driver(name: &str) -> Expectations {
        BUNDLED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| {
                Expectations::parse(text).unwrap_or_else(|e| {
                    panic!("the bundled expectations of `{n}` are malformed: {e}")
                })
            })
            .unwrap_or_default()
    }

    /// Reads an expectations file.
    pub fn load(path: &Path) -> Result<Expectations, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Expectations::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of an expectations file and checks that every entry names a case of
    /// the kit.
    pub fn parse(text: &str) -> Result<Expectations, String> {
        let ids: Vec<String> = crate::cases().iter().map(|c| c.id()).collect();
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let (pattern, rest) = first_word(line);
            let (kind, reason) = first_word(rest);
            let expect = match kind {
                "fail" => Expect::Fail,
                "skip" => Expect::Skip,
                other => {
                    return Err(format!(
                        "line {}: expected `fail` or `skip` after the case, found `{other}`",
                        i + 1
                    ))
                }
            };
            let (pattern, reason) = (pattern.to_string(), reason.trim().to_string());
            if reason.is_empty() {
                return Err(format!("line {}: `{pattern}` needs a reason", i + 1));
            }
            let e = Expectation {
                pattern,
                expect,
                reason,
                line: i + 1,
            };
            if !ids.iter().any(|id| e.matches(id)) {
                return Err(format!(
                    "line {}: `{}` names no case of the kit (run `knpu conformance --list`)",
                    i + 1,
                    e.pattern
                ));
            }
            entries.push(e);
        }
        Ok(Expectations { entries })
    }

    /// The first entry that covers the case with this id.
    pub fn lookup(&self, id: &str) -> Option<&Expectation> {
        self.entries.iter().find(|e| e.matches(id))
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Expectation] {
        &self.entries
    }
}

/// The line without a comment: `#` at its start or after whitespace begins one.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// The first whitespace-separated word and what follows it.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_need_a_known_case_a_kind_and_a_reason() {
        let e = Expectations::parse(
            "# comment\n\nabi/copies/*    skip  no DMA engine yet # trailing\n\
             runtime/devices/properties fail reports zero cores (ACME-#12)\n",
        )
        .unwrap();
        assert_eq!(e.entries().len(), 2);
        let copies = e.lookup("abi/copies/fill_patterns").unwrap();
        assert_eq!(copies.expect, Expect::Skip);
        assert_eq!(copies.reason, "no DMA engine yet");
        assert_eq!(copies.line, 3);
        assert!(e.lookup("runtime/copies/fills").is_none());
        let props = e.lookup("runtime/devices/properties").unwrap();
        assert_eq!(props.expect, Expect::Fail);
        assert_eq!(props.reason, "reports zero cores (ACME-#12)");
        assert!(Expectations::parse("abi/copies/fill_patterns fail")
            .unwrap_err()
            .contains("needs a reason"));
        assert!(Expectations::parse("abi/copies/fill_patterns maybe flaky")
            .unwrap_err()
            .contains("`fail` or `skip`"));
        assert!(Expectations::parse("abi/copies/no_such_case fail typo")
            .unwrap_err()
            .contains("names no case"));
    }

    #[test]
    fn bundled_files_parse() {
        for (name, _) in BUNDLED {
            Expectations::for_driver(name);
        }
        assert_eq!(
            Expectations::for_driver("no-such-driver"),
            Expectations::none()
        );
    }
}
