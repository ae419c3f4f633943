//! The outcome of each case and the per-feature table, as text or JSON Lines.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use crate::{Feature, Level};

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and every check held.
    Pass,
    /// A check failed (the message and where).
    Fail(String),
    /// It failed, as the driver's expectations declare.
    ExpectedFailure {
        /// The expectation's reason.
        reason: String,
        /// What failed.
        message: String,
    },
    /// It passed although the expectations say it fails: the expectation is stale. Counts as
    /// a failure.
    UnexpectedPass(String),
    /// It did not run (the reason: a capability the driver lacks, or the expectations).
    Skipped(String),
}

impl Outcome {
    /// The outcome's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::ExpectedFailure { .. } => "expected-failure",
            Outcome::UnexpectedPass(_) => "unexpected-pass",
            Outcome::Skipped(_) => "skip",
        }
    }

    /// Whether it counts against the driver.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail(_) | Outcome::UnexpectedPass(_))
    }
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// `level/feature/name`.
    pub id: String,
    /// Its level.
    pub level: Level,
    /// Its feature.
    pub feature: Feature,
    /// How it ended.
    pub outcome: Outcome,
}

impl CaseReport {
    /// The case as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "case": self.id,
            "level": self.level.name(),
            "feature": self.feature.name(),
            "outcome": self.outcome.name(),
        });
        let (reason, message) = match &self.outcome {
            Outcome::Pass => (None, None),
            Outcome::Fail(m) => (None, Some(m)),
            Outcome::ExpectedFailure { reason, message } => (Some(reason), Some(message)),
            Outcome::UnexpectedPass(r) | Outcome::Skipped(r) => (Some(r), None),
        };
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
        if let Some(m) = message {
            v["message"] = json!(m);
        }
        v
    }
}

/// Counts of one feature's outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Failed, or passed against an expected failure.
    pub fail: usize,
    /// Failed as expected.
    pub expected_failure: usize,
    /// Skipped.
    pub skipped: usize,
}

/// Every case's result on one target.
#[derive(Clone, Debug)]
pub struct Report {
    target: String,
    driver: String,
    cases: Vec<CaseReport>,
}

impl Report {
    pub(crate) fn new(target: &str, driver: &str) -> Report {
        Report {
            target: target.to_string(),
            driver: driver.to_string(),
            cases: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, r: CaseReport) {
        self.cases.push(r);
    }

    /// Each case, in the order it ran.
    pub fn cases(&self) -> &[CaseReport] {
        &self.cases
    }

    /// The cases that count against the driver.
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases
            .iter()
            .filter(|c| c.outcome.is_failure())
            .collect()
    }

    /// The result of the case with this id.
    pub fn case(&self, id: &str) -> Option<&CaseReport> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// True when no case failed.
    pub fn is_success(&self) -> bool {
        self.failures().is_empty()
    }

    /// Counts per feature, in [`Feature::ALL`] order (features with no case left out).
    pub fn by_feature(&self) -> Vec<(Feature, Counts)> {
        let mut m: BTreeMap<Feature, Counts> = BTreeMap::new();
        for c in &self.cases {
            let e = m.entry(c.feature).or_default();
            match c.outcome {
                Outcome::Pass => e.pass += 1,
                Outcome::Fail(_) | Outcome::UnexpectedPass(_) => e.fail += 1,
                Outcome::ExpectedFailure { .. } => e.expected_failure += 1,
                Outcome::Skipped(_) => e.skipped += 1,
            }
        }
        m.into_iter().collect()
    }

    /// The table: a row per feature, then every case that did not pass, with its reason.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "conformance of driver `{}` ({})",
            self.driver, self.target
        );
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>5} {:>6} {:>5}",
            "feature", "pass", "fail", "xfail", "skip"
        );
        let mut total = Counts::default();
        for (f, c) in self.by_feature() {
            let _ = writeln!(
                s,
                "{:<20} {:>5} {:>5} {:>6} {:>5}",
                f.name(),
                c.pass,
                c.fail,
                c.expected_failure,
                c.skipped
            );
            total.pass += c.pass;
            total.fail += c.fail;
            total.expected_failure += c.expected_failure;
            total.skipped += c.skipped;
        }
        let _ = writeln!(
            s,
            "{:<20} {:>5} {:>5} {:>6} {:>5}",
            "total", total.pass, total.fail, total.expected_failure, total.skipped
        );
        for c in &self.cases {
            let line = match &c.outcome {
                Outcome::Pass => continue,
                Outcome::Fail(m) => format!("FAIL  {}: {m}", c.id),
                Outcome::UnexpectedPass(r) => {
                    format!("FAIL  {}: passed, but expected to fail ({r})", c.id)
                }
                Outcome::ExpectedFailure { reason, .. } => format!("xfail {}: {reason}", c.id),
                Outcome::Skipped(r) => format!("skip  {}: {r}", c.id),
            };
            let _ = writeln!(s, "{line}");
        }
        s
    }

    /// JSON Lines: one object per case, then one per feature with its counts.
    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        for c in &self.cases {
            let _ = writeln!(s, "{}", c.to_json());
        }
        for (f, c) in self.by_feature() {
            let v = json!({
                "feature": f.name(),
                "driver": self.driver,
                "target": self.target,
                "pass": c.pass,
                "fail": c.fail,
                "expected_failure": c.expected_failure,
                "skipped": c.skipped,
            });
            let _ = writeln!(s, "{v}");
        }
        s
    }
}
