//! In-place restore, the swap: after the snapshot loaded completely into a staging database,
//! the live tables move aside into a pre-restore database and the restored ones move in, with
//! one multi-table `RENAME TABLE` (atomic in MariaDB/MySQL). Tables, system-versioned tables
//! and sequences move; objects that cannot be renamed across databases (triggers, views,
//! routines, events) are captured with `SHOW CREATE`, dropped, and re-created on the other side
//! (see `definitions`), each under the settings it was created with. The database's own default
//! character set and collation follow the snapshot; the pre-restore database keeps the old ones.

use super::definitions::{self, Object};
use super::rewrite::Definers;
use super::sql::{charset, ident, literal, run};
use super::RestoreError;
use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use crate::quote::sql_ident;
use std::path::Path;

fn list(job: &MysqlJob, client: &Path, db: &str, sql: &str) -> Result<Vec<String>, MysqlError> {
    Ok(run(job, client, &sql.replace("{db}", &literal(db)))?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// Everything `RENAME TABLE` moves: base tables, system-versioned tables, sequences.
fn tables(job: &MysqlJob, client: &Path, db: &str) -> Result<Vec<String>, MysqlError> {
    list(job, client, db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') ORDER BY 1")
}

/// One side of the swap, as found before anything moves.
struct Side<'a> {
    db: &'a str,
    objects: Vec<Object>,
    tables: Vec<String>,
    /// `CHARACTER SET … COLLATE …`.
    charset: String,
}

impl<'a> Side<'a> {
    fn read(job: &MysqlJob, client: &Path, db: &'a str) -> Result<Side<'a>, RestoreError> {
        let objects = definitions::capture(job, client, db)?;
        let tables = tables(job, client, db)?;
        let charset =
            charset(job, client, db)?.unwrap_or_else(|| "CHARACTER SET utf8mb4".to_string());
        Ok(Side {
            db,
            objects,
            tables,
            charset,
        })
    }

    /// `db.t TO to.t` for each table.
    fn renames(&self, to: &str) -> impl Iterator<Item = String> + '_ {
        let to = ident(to);
        self.tables
            .iter()
            .map(move |t| format!("{}.{} TO {to}.{}", ident(self.db), ident(t), ident(t)))
    }
}

/// Swaps the contents of `staging` into `live`, keeping the old `live` contents in `pre`
/// (which must not exist). `staging` is dropped at the end.
/// The objects loaded into `staging` belong to the load account; they move into `live` with
/// the definers the dump named (`definers`).
pub fn swap(
    job: &MysqlJob,
    client: &Path,
    (live, staging, pre): (&str, &str, &str),
    definers: &Definers,
) -> Result<(), RestoreError> {
    let old = Side::read(job, client, live)?;
    let mut new = Side::read(job, client, staging)?;
    super::reown::with_definers(&mut new.objects, definers);
    // Nothing is dropped before both databases are there (a bad name fails here, harmlessly).
    run(
        job,
        client,
        &format!(
            "CREATE DATABASE {} {};\nCREATE DATABASE IF NOT EXISTS {} {};",
            ident(pre),
            old.charset,
            ident(live),
            new.charset
        ),
    )
    .map_err(|cause| RestoreError::SwapNotStarted {
        staging: staging.to_string(),
        live: live.to_string(),
        cause,
    })?;
    rename(job, client, &old, &new, pre)?;
    // From here the data is swapped; an object failing is reported with the DDL saved.
    let mut problems = Vec::new();
    if let Err(e) = run(
        job,
        client,
        &format!("ALTER DATABASE {} {};", ident(live), new.charset),
    ) {
        problems.push(format!(
            "setting the default character set of {}: {e}",
            sql_ident(live)
        ));
    }
    for p in definitions::create(job, client, staging, live, &new.objects) {
        problems.push(format!("in {}: {p}", sql_ident(live)));
    }
    for p in definitions::create(job, client, live, pre, &old.objects) {
        problems.push(format!("keeping the old one in {}: {p}", sql_ident(pre)));
    }
    // Staging is empty now: its tables moved, its objects were dropped.
    run(job, client, &format!("DROP DATABASE {};", ident(staging)))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::SwapPartly {
            pre: pre.to_string(),
            problems,
        })
    }
}

/// Drops the objects of both sides and moves the tables in one `RENAME TABLE`: old ones into
/// `pre`, new ones into live. On failure puts the objects back and drops `pre`.
fn rename(
    job: &MysqlJob,
    client: &Path,
    old: &Side,
    new: &Side,
    pre: &str,
) -> Result<(), RestoreError> {
    let (live, staging) = (old.db, new.db);
    let renames: Vec<String> = old.renames(pre).chain(new.renames(live)).collect();
    let mut script = definitions::drop_script(live, &old.objects);
    script += &definitions::drop_script(staging, &new.objects);
    script += "SET FOREIGN_KEY_CHECKS = 0;\n";
    if !renames.is_empty() {
        script += &format!("RENAME TABLE {};\n", renames.join(", "));
    }
    let Err(cause) = run(job, client, &script) else {
        return Ok(());
    };
    // Put back what was dropped, so a failed swap leaves both databases as they were.
    let mut put_back = definitions::create(job, client, live, live, &old.objects);
    put_back.extend(definitions::create(
        job,
        client,
        staging,
        staging,
        &new.objects,
    ));
    let _ = run(
        job,
        client,
        &format!("DROP DATABASE IF EXISTS {};", ident(pre)),
    );
    Err(RestoreError::SwapFailed {
        staging: staging.to_string(),
        live: live.to_string(),
        cause: Box::new(cause),
        put_back,
    })
}
