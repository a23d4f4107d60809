//! What a check found and did, written for a person.

use std::fmt;
use std::path::PathBuf;

use crate::Options;

/// What became of one problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Found; `--repair` would fix it.
    Repairable,
    /// Found; no repair is safe. Says what a person can do.
    Manual(String),
    /// Repaired: what was done.
    Repaired(String),
    /// A repair was attempted and failed, or found it unsafe: why.
    NotRepaired(String),
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The problem, naming what it concerns.
    pub problem: String,
    /// What became of it.
    pub outcome: Outcome,
}

/// The result of a check.
#[derive(Debug, Clone)]
pub struct Report {
    root: PathBuf,
    state: PathBuf,
    repair: bool,
    schema_version: Option<u32>,
    checked: Vec<(&'static str, usize)>,
    findings: Vec<Finding>,
}

impl Report {
    pub(crate) fn new(options: &Options, schema_version: Option<u32>) -> Self {
        Self {
            root: options.root.clone(),
            state: options.state.clone(),
            repair: options.repair,
            schema_version,
            checked: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Notes that `count` things of a kind were looked at.
    pub(crate) fn checked(&mut self, what: &'static str, count: usize) {
        self.checked.push((what, count));
    }

    /// Records `problem`; when repairing, runs `repair`, which says what it
    /// did or why it did not.
    pub(crate) fn found(
        &mut self,
        problem: String,
        repair: impl FnOnce() -> Result<String, String>,
    ) {
        let outcome = if self.repair {
            match repair() {
                Ok(done) => Outcome::Repaired(done),
                Err(why) => Outcome::NotRepaired(why),
            }
        } else {
            Outcome::Repairable
        };
        self.findings.push(Finding { problem, outcome });
    }

    /// Records `problem`, which no repair fixes; `advice` says what to do.
    pub(crate) fn found_manual(&mut self, problem: String, advice: String) {
        self.findings.push(Finding {
            problem,
            outcome: Outcome::Manual(advice),
        });
    }

    /// Every problem found, in the order found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// fsck(8)'s codes: 0 clean, 1 every problem repaired, 4 problems left.
    pub fn exit_code(&self) -> i32 {
        if self.findings.is_empty() {
            0
        } else if self
            .findings
            .iter()
            .all(|f| matches!(f.outcome, Outcome::Repaired(_)))
        {
            1
        } else {
            4
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "crated fsck: root {}, state {}",
            self.root.display(),
            self.state.display()
        )?;
        match self.schema_version {
            Some(v) => writeln!(
                f,
                "metadata schema version {v} (this build writes {})",
                crated_metadata::SCHEMA_VERSION
            )?,
            None => writeln!(f, "metadata schema version: not stamped")?,
        }
        let checked: Vec<String> = self
            .checked
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        writeln!(f, "checked {}", checked.join(", "))?;
        for finding in &self.findings {
            writeln!(f, "- {}", finding.problem)?;
            match &finding.outcome {
                Outcome::Repairable => writeln!(f, "    repairable with --repair")?,
                Outcome::Manual(advice) => writeln!(f, "    not repaired automatically: {advice}")?,
                Outcome::Repaired(done) => writeln!(f, "    repaired: {done}")?,
                Outcome::NotRepaired(why) => writeln!(f, "    NOT repaired: {why}")?,
            }
        }
        let count =
            |p: fn(&Outcome) -> bool| self.findings.iter().filter(|x| p(&x.outcome)).count();
        let total = self.findings.len();
        if total == 0 {
            writeln!(f, "clean: no problems found")
        } else if self.repair {
            let repaired = count(|o| matches!(o, Outcome::Repaired(_)));
            writeln!(
                f,
                "{total} problem(s): {repaired} repaired, {} left",
                total - repaired
            )
        } else {
            let repairable = count(|o| matches!(o, Outcome::Repairable));
            writeln!(
                f,
                "{total} problem(s); `crated fsck --repair` fixes {repairable} of them"
            )
        }
    }
}
