//! Small SQL helpers for restores: identifier quoting, scripts fed on stdin (so bodies with `;`
//! work under `DELIMITER`), and reading `SHOW CREATE …` output safely.

use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use std::path::Path;

pub use crate::mysql_client::sandbox_flag;

/// The client's arguments for loading SQL (a dump, a replayed binary log) into `target`: in
/// batch, large packets, utf8mb4, and the input is data, not a script for the client
/// (`--binary-mode`, the sandbox flag where the client has one: no `\!`, `system`,
/// `source`…), and no file of this host is ever sent (`--local-infile=0`: the sandbox flag
/// does not stop `LOAD DATA LOCAL INFILE`, which would read any file the agent can).
pub fn load_args(client: &Path, target: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--batch",
        "--binary-mode",
        "--local-infile=0",
        "--max-allowed-packet=1G",
        "--default-character-set=utf8mb4",
    ]
    .map(String::from)
    .to_vec();
    args.extend(sandbox_flag(client).iter().map(|s| s.to_string()));
    args.push(format!("--database={target}"));
    args
}

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
pub fn run(job: &MysqlJob, client: &Path, script: &str) -> Result<Vec<Vec<String>>, MysqlError> {
    run_with(job, client, script, false)
}

/// [`run`], going on after a statement fails (`--force`); the error is the client's stderr.
pub fn run_forced(
    job: &MysqlJob,
    client: &Path,
    script: &str,
) -> Result<Vec<Vec<String>>, MysqlError> {
    run_with(job, client, script, true)
}

fn run_with(
    job: &MysqlJob,
    client: &Path,
    script: &str,
    force: bool,
) -> Result<Vec<Vec<String>>, MysqlError> {
    let mut args = vec![
        "--batch",
        // Definitions re-created here came from a dump: never client commands, no local file.
        "--binary-mode",
        "--local-infile=0",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ];
    args.extend(sandbox_flag(client));
    if force {
        args.push("--force");
    }
    let out = job.login(client).run(args, Some(script))?;
    Ok(out
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

/// `db`'s default character set and collation, when it exists.
pub fn charset(job: &MysqlJob, client: &Path, db: &str) -> Result<Option<String>, MysqlError> {
    let rows = run(job, client, &format!(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {};",
        literal(db)
    ))?;
    Ok(rows
        .first()
        .filter(|r| r.len() == 2)
        .map(|r| format!("CHARACTER SET {} COLLATE {}", r[0], r[1])))
}

/// Whether database `db` exists, and how many tables and views it holds.
pub fn database_tables(
    job: &MysqlJob,
    client: &Path,
    db: &str,
) -> Result<Option<usize>, MysqlError> {
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

/// The largest `max_allowed_packet` a server accepts (1 GiB).
pub const MAX_PACKET: u64 = 1 << 30;

/// A global server setting raised for one load and put back afterwards.
#[derive(Debug, Clone)]
pub struct GlobalRaise {
    /// The variable.
    pub var: &'static str,
    /// The value before it was raised.
    pub was: u64,
}

impl GlobalRaise {
    /// Sets the global `var` to `want` when it is lower and the user may (SUPER); new
    /// connections get the new value. `None` when nothing was changed.
    pub fn raise(
        job: &MysqlJob,
        client: &Path,
        var: &'static str,
        want: u64,
    ) -> Option<GlobalRaise> {
        let rows = run(job, client, &format!("SELECT @@GLOBAL.{var};")).ok()?;
        let was: u64 = rows.first()?.first()?.parse().ok()?;
        if was >= want {
            return None;
        }
        match run(job, client, &format!("SET GLOBAL {var} = {want};")) {
            Ok(_) => {
                tracing::info!(server = %job.endpoint, var, was, now = want, "raised for the restore");
                Some(GlobalRaise { var, was })
            }
            Err(e) => {
                tracing::debug!(server = %job.endpoint, var, error = %e, "cannot raise it for the restore");
                None
            }
        }
    }

    /// What a load needs: `max_allowed_packet` at [`MAX_PACKET`] (dumps hold each row in one
    /// statement, blobs in hex: a row the server took may need a packet twice its size to come
    /// back), and, when the server writes a binary log, `log_bin_trust_function_creators`
    /// (else only SUPER may create stored functions, and the load account has no SUPER).
    pub fn for_load(job: &MysqlJob, client: &Path) -> Vec<GlobalRaise> {
        let mut out: Vec<GlobalRaise> = Self::raise(job, client, "max_allowed_packet", MAX_PACKET)
            .into_iter()
            .collect();
        let binlog = run(job, client, "SELECT @@GLOBAL.log_bin;")
            .ok()
            .and_then(|r| r.first()?.first().cloned());
        if binlog.as_deref() == Some("1") {
            out.extend(Self::raise(
                job,
                client,
                "log_bin_trust_function_creators",
                1,
            ));
        }
        out
    }

    /// Puts the old value back.
    pub fn restore(self, job: &MysqlJob, client: &Path) {
        let sql = format!("SET GLOBAL {} = {};", self.var, self.was);
        if let Err(e) = run(job, client, &sql) {
            tracing::warn!(server = %job.endpoint, error = %e, "could not put {} back to {}; run `{sql}`", self.var, self.was);
        }
    }
}

/// Creates `db` for a load; returns whether it was created here. Only `--to-database` and a
/// recovery may name an existing (empty, checked in `prepare`) database; a new one that already
/// exists is an error, so a restore never drops a database it did not create.
pub fn create_database(
    job: &MysqlJob,
    client: &Path,
    db: &str,
    target: &super::Target,
) -> Result<bool, super::RestoreError> {
    if matches!(target, super::Target::Database(_) | super::Target::Recover)
        && database_tables(job, client, db)?.is_some()
    {
        return Ok(false);
    }
    run(
        job,
        client,
        &format!("CREATE DATABASE {} CHARACTER SET utf8mb4;", ident(db)),
    )
    .map_err(|cause| super::RestoreError::CreateDatabase {
        database: db.to_string(),
        endpoint: job.endpoint.to_string(),
        cause,
    })?;
    Ok(true)
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
