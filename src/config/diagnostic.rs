//! Configuration errors that point at the file, line and column of the offending key, say what is
//! wrong and give a hint — and the "did you mean" suggestions behind those hints.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted key, e.g. `mysql[0].schedule`; empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a configuration file (validation reports them all at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} errors in the configuration", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// A single error that is not tied to a place in the file (e.g. the file cannot be read).
    pub fn whole_file(file: &Path, message: String, hint: Option<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            position: None,
            key: String::new(),
            message,
            hint,
        }])
    }
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The candidate closest to `word` if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into (x, [a, b]).
pub fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_string();
    let expected = match rest[end..].find("expected") {
        Some(i) => rest[end + i..]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    Some((field, expected))
}

/// A serde/TOML syntax error as a positioned [`ConfigError`] with a hint.
pub(super) fn serde_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|s| line_col(text, s.start));
    let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
    let msg = e.message().trim().to_string();
    let hint = if let Some((field, expected)) = parse_unknown_field(&msg) {
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        match did_you_mean(&field, &exp) {
            Some(s) => Some(format!("unknown key `{field}`, did you mean `{s}`?")),
            None if exp.is_empty() => Some(format!("remove `{field}`")),
            None => Some(format!(
                "unknown key `{field}`; valid keys here: {}",
                exp.join(", ")
            )),
        }
    } else if msg.contains("duration")
        || msg.contains("time unit")
        || msg.contains("expected number")
    {
        Some("durations are written like \"30s\", \"5m\", \"4h\", \"1h 30m\"".to_string())
    } else if msg.starts_with("invalid type") {
        Some("check the value's type: strings need quotes, lists are [\"a\", \"b\"], numbers have none".to_string())
    } else {
        Some("see config/opsagent.example.toml for the syntax of every key".to_string())
    };
    ConfigError {
        file: file.to_path_buf(),
        position,
        key,
        message: msg,
        hint,
    }
}

/// The dotted key written at byte `offset`: the `[table]` header above it plus the key on its line.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let local = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let header = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (header, local) {
        (_, None) if line.trim_start().starts_with('[') => line
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string(),
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (None, Some(k)) => k,
        (Some(h), None) => h,
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, t.find('=').unwrap()), (1, 3));
        assert_eq!(line_col(t, 10), (2, 4));
        assert_eq!(line_col(t, 999), (3, 1));
    }

    #[test]
    fn suggestions() {
        let keys = ["name", "schedule", "databases", "keep"];
        assert_eq!(did_you_mean("scheduel", &keys), Some("schedule"));
        assert_eq!(did_you_mean("database", &keys), Some("databases"));
        assert_eq!(did_you_mean("zzzzzz", &keys), None);
    }

    #[test]
    fn unknown_field_message() {
        let (f, exp) =
            parse_unknown_field("unknown field `scheduel`, expected one of `name`, `schedule`")
                .unwrap();
        assert_eq!(f, "scheduel");
        assert_eq!(exp, vec!["name", "schedule"]);
        let (f, exp) = parse_unknown_field("unknown field `x`, expected `name`").unwrap();
        assert_eq!((f.as_str(), exp), ("x", vec!["name".to_string()]));
        let (f, exp) = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert_eq!((f.as_str(), exp.len()), ("x", 0));
    }
}
