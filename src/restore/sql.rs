//! Small SQL helpers for restores: identifier quoting, scripts fed on stdin (so bodies with `;`
//! work under `DELIMITER`), and reading `SHOW CREATE …` output safely.

use crate::backup::mysql_cmd::with_hint;
use crate::config::MysqlJob;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `name` as a quoted identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `s` as a quoted string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Runs `script` (statements, `DELIMITER` allowed) with the client; returns the rows, fields
/// unescaped (batch mode escapes tab, newline, backslash and NUL inside values).
pub fn run(job: &MysqlJob, client: &Path, script: &str) -> Result<Vec<Vec<String>>, String> {
    let creds = crate::backup::mysql_cmd::credentials(job)
        .map_err(|e| format!("cannot prepare credentials: {e}"))?;
    let mut cmd = Command::new(client);
    cmd.arg(creds.arg()).args([
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    creds.pass_to(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", client.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = script.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(with_hint(String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(unescape).collect())
        .collect())
}

/// Undoes the client's batch-mode escaping.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Whether database `db` exists, and how many tables and views it holds.
pub fn database_tables(job: &MysqlJob, client: &Path, db: &str) -> Result<Option<usize>, String> {
    let rows = run(job, client, &format!(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {0};\nSELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {0};",
        literal(db)
    ))?;
    let n = |i: usize| {
        rows.get(i)
            .and_then(|r| r.first())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    Ok((n(0) > 0).then(|| n(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_unescaping() {
        assert_eq!(ident("a`b-c"), "`a``b-c`");
        assert_eq!(literal("it's \\"), "'it''s \\\\'");
        assert_eq!(unescape("a\\nb\\tc\\\\d\\0"), "a\nb\tc\\d\0");
    }
}
