//! What a media restore (or drill) could not do: the problems, each with what failed and why,
//! the files they cost, and warnings; its text is the report the operator reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How many files a damage report names before it only counts.
pub const NAMED_FILES: usize = 20;
/// How many problems a damage report lists before it only counts.
pub const NAMED_PROBLEMS: usize = 10;

/// What could not be restored (or verified), and why.
#[derive(Debug, Default, Clone)]
pub struct Damage {
    /// (what failed: a pack key, a path; why) → how many times.
    pub problems: BTreeMap<(String, String), u64>,
    /// Original paths of the files (and other entries) that were not restored.
    pub files: BTreeSet<String>,
    /// Not failures, but worth saying.
    pub warnings: Vec<String>,
}

impl Damage {
    /// Records that `what` failed because of `why`.
    pub fn problem(&mut self, what: &str, why: &str) {
        *self
            .problems
            .entry((what.to_string(), why.to_string()))
            .or_default() += 1;
    }

    /// Records an affected file.
    pub fn file(&mut self, path: &str) {
        self.files.insert(path.to_string());
    }

    /// Whether nothing failed.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty() && self.files.is_empty()
    }

    /// What to do next: make room when the target ran full, else look for intact copies.
    pub fn hint(&self) -> &'static str {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        if self.problems.keys().any(|(_, why)| why.contains(&full)) {
            "the target file system is full: make room (`df -h`) or restore elsewhere with --to-dir, then run the restore again; files that did not fit were not left behind half-written"
        } else {
            "an older snapshot, with an earlier --date, may hold intact copies; `opsagent verify` checks every pack of the newest"
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} file(s) affected by:", self.files.len())?;
        for ((what, why), n) in self.problems.iter().take(NAMED_PROBLEMS) {
            let more = if *n > 1 {
                format!(" ({n} times)")
            } else {
                String::new()
            };
            write!(f, "\n  `{}`: {why}{more}", what.escape_debug())?;
        }
        if self.problems.len() > NAMED_PROBLEMS {
            write!(
                f,
                "\n  and {} more problems",
                self.problems.len() - NAMED_PROBLEMS
            )?;
        }
        if !self.files.is_empty() {
            let named: Vec<String> = self
                .files
                .iter()
                .take(NAMED_FILES)
                .map(|p| format!("`{}`", p.escape_debug()))
                .collect();
            write!(f, "\nfiles affected: {}", named.join(", "))?;
            if self.files.len() > NAMED_FILES {
                write!(f, " and {} more", self.files.len() - NAMED_FILES)?;
            }
        }
        for w in &self.warnings {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}
