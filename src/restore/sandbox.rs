//! A login that can reach one database and nothing else, for loading a dump under another name
//! (side by side, `--to-database`, the in-place staging database, drills).
//!
//! Threat model: the text of a dump comes from the bucket, and anyone who can write there can
//! forge one (with a matching sha256 in a forged manifest). Whatever it says — `USE other`,
//! `DROP DATABASE other`, `CREATE TRIGGER other.t …`, a `DEFINER=root` routine, a view over
//! another schema — the load must only ever change its target. Filtering statements by their
//! text cannot promise that; the server's privilege system can. So the restore user makes a
//! short-lived account `opsagent_load_<time>_<random>` with a random password, granted the
//! privileges a dump needs on the target database alone (the name's `_` and `%` escaped, so
//! the grant is not a pattern), and the load runs as that account. Anything naming another
//! schema, setting another definer, or touching global state is refused by the server, and
//! the load fails naming the statement. The account is dropped after the load; one left by a
//! crash is dropped by the next restore once it is a day old by the server's clock (its password
//! was never stored).

use super::sql::{literal, run};
use super::RestoreError;
use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use crate::secret::Secret;
use std::path::Path;

/// Prefix of every load account's name.
pub const PREFIX: &str = "opsagent_load_";

/// Age after which a load account is taken as left by a crash.
const STALE_SECS: u64 = 24 * 3600;

/// What a dump needs on its own database (no GRANT OPTION, nothing global).
const PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, \
    CREATE VIEW, SHOW VIEW, TRIGGER, EVENT, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, LOCK TABLES, \
    CREATE TEMPORARY TABLES";

/// A load account, alive until [`Sandbox::drop_account`].
pub struct Sandbox {
    /// User name.
    pub user: String,
    /// Host part (as the server sees the restore user's connection).
    pub host: String,
    password: Secret,
}

/// `db` as a database name in a `GRANT … ON db.*`, where `_` and `%` are wildcards.
pub fn grant_pattern(db: &str) -> String {
    let mut s = String::with_capacity(db.len() + 4);
    for c in db.chars() {
        if matches!(c, '_' | '%' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    format!("`{}`", s.replace('`', "``"))
}

/// The server's clock (`UNIX_TIMESTAMP()`): account ages are measured on the server, so
/// restores run from hosts (or under `faketime`) whose clocks disagree cannot take one
/// another's live account for a stale one.
fn server_now(job: &MysqlJob, client: &Path) -> Result<u64, RestoreError> {
    run(job, client, "SELECT UNIX_TIMESTAMP();")?
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .ok_or(RestoreError::NoServerTime)
}

/// What a temporary account may do on its one database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Load a dump: create, write, define objects.
    Load,
    /// [`Access::Load`], and replay binary log events (`BINLOG REPLAY`, MariaDB ≥ 10.5): the
    /// server applies row events without checking table privileges, so the replay filters
    /// them first (`restore::binlog`).
    Replay,
    /// Read only: what a drill's `drill_command` gets.
    Read,
}

impl Access {
    /// [`Access::Replay`] when a binary log is replayed after the dump, else [`Access::Load`].
    pub fn load(replay: bool) -> Access {
        if replay {
            Access::Replay
        } else {
            Access::Load
        }
    }
}

impl Sandbox {
    /// Makes an account that may work on `db` only. Fails with the grants to add when the
    /// restore user may not create accounts.
    pub fn create(job: &MysqlJob, client: &Path, db: &str) -> Result<Sandbox, RestoreError> {
        Self::create_with(job, client, db, Access::Load)
    }

    /// The load account of a restore, which may also replay a binary log when `replay`.
    pub fn for_load(
        job: &MysqlJob,
        client: &Path,
        db: &str,
        replay: bool,
    ) -> Result<Sandbox, RestoreError> {
        Self::create_with(job, client, db, Access::load(replay))
    }

    /// [`Sandbox::create`] with the privileges `access` says.
    pub fn create_with(
        job: &MysqlJob,
        client: &Path,
        db: &str,
        access: Access,
    ) -> Result<Sandbox, RestoreError> {
        let now = server_now(job, client)?;
        sweep(job, client, now);
        let rows = run(job, client, "SELECT USER();")?;
        let me = rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .unwrap_or_default();
        let host = me
            .rsplit_once('@')
            .map(|(_, h)| h.to_string())
            .unwrap_or_else(|| "localhost".into());
        let mut rnd = [0u8; 16];
        let mut tag = [0u8; 3];
        getrandom::fill(&mut rnd)
            .and_then(|()| getrandom::fill(&mut tag))
            .map_err(|e| RestoreError::Randomness {
                cause: e.to_string(),
            })?;
        let user = format!("{PREFIX}{now:x}_{}", hex::encode(tag));
        let sandbox = Sandbox {
            user,
            host,
            // Every class of character, for servers that enforce a password policy
            // (simple_password_check, validate_password).
            password: Secret::new(format!("Lo4d-{}", hex::encode(rnd))),
        };
        let privileges = match access {
            Access::Read => "SELECT, SHOW VIEW, EXECUTE",
            Access::Load | Access::Replay => PRIVILEGES,
        };
        let mut script = format!(
            "CREATE USER {a} IDENTIFIED BY {p};\nGRANT {privileges} ON {db}.* TO {a};\n",
            a = sandbox.account(),
            p = literal(sandbox.password.expose()),
            db = grant_pattern(db),
        );
        if access == Access::Replay {
            script.push_str(&format!(
                "GRANT BINLOG REPLAY ON *.* TO {};\n",
                sandbox.account()
            ));
        }
        if let Err(e) = run(job, client, &script) {
            let _ = sandbox.drop_account(job, client);
            return Err(RestoreError::LoadAccount {
                database: db.to_string(),
                cause: scrub(&e.to_string(), sandbox.password.expose()),
                privilege: [1044, 1045, 1142, 1227, 1410]
                    .iter()
                    .any(|n| e.has_code(*n)),
            });
        }
        Ok(sandbox)
    }

    /// The account as SQL.
    pub fn account(&self) -> String {
        format!("{}@{}", literal(&self.user), literal(&self.host))
    }

    /// The account as `SHOW CREATE` prints definers.
    pub fn definer(&self) -> String {
        format!(
            "`{}`@`{}`",
            self.user.replace('`', "``"),
            self.host.replace('`', "``")
        )
    }

    /// `job`'s connection, logged in as this account.
    pub fn login(&self, job: &MysqlJob) -> MysqlJob {
        let mut j = job.clone();
        j.user = Some(self.user.clone());
        j.password = Some(self.password.clone());
        j
    }

    /// Drops the account.
    pub fn drop_account(&self, job: &MysqlJob, client: &Path) -> Result<(), MysqlError> {
        run(
            job,
            client,
            &format!("DROP USER IF EXISTS {};", self.account()),
        )
        .map(|_| ())
    }
}

/// Whether the restore user can make load accounts: makes one for a database that does not
/// exist and drops it again (for `check-config --connect`).
pub fn probe(job: &MysqlJob, client: &Path) -> Result<(), RestoreError> {
    let db = format!("opsagent_probe_{}", super::random_hex(4));
    Ok(Sandbox::create(job, client, &db)?.drop_account(job, client)?)
}

/// The client's error without the password (it is never echoed today; this keeps it so).
fn scrub(e: &str, password: &str) -> String {
    e.replace(password, "<redacted>")
}

/// Drops load accounts older than a day by the server's clock `now` (left by a crash); best
/// effort.
pub fn sweep(job: &MysqlJob, client: &Path, now: u64) {
    let Ok(rows) = run(
        job,
        client,
        &format!(
            "SELECT User, Host FROM mysql.user WHERE User LIKE {};",
            literal(&format!("{}%", PREFIX.replace('_', "\\_")))
        ),
    ) else {
        return;
    };
    for r in rows.into_iter().filter(|r| r.len() == 2) {
        let born = r[0]
            .strip_prefix(PREFIX)
            .and_then(|s| s.split('_').next())
            .and_then(|t| u64::from_str_radix(t, 16).ok());
        if born.is_some_and(|t| now.saturating_sub(t) > STALE_SECS) {
            let sql = format!("DROP USER IF EXISTS {}@{};", literal(&r[0]), literal(&r[1]));
            match run(job, client, &sql) {
                Ok(_) => {
                    tracing::info!(user = %r[0], "dropped a load account left by an interrupted restore")
                }
                Err(e) => {
                    tracing::warn!(user = %r[0], error = %e, "cannot drop a load account left by an interrupted restore")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_patterns_are_not_wildcards() {
        assert_eq!(grant_pattern("shop_2026"), "`shop\\_2026`");
        assert_eq!(grant_pattern("a%b`c\\"), "`a\\%b``c\\\\`");
    }
}
