//! In-place restore, the swap: after the snapshot loaded completely into a staging database,
//! the live tables move aside into a pre-restore database and the restored ones move in, with
//! one multi-table `RENAME TABLE` (atomic in MariaDB/MySQL). Tables, system-versioned tables
//! and sequences move; objects that cannot be renamed across databases (triggers, views,
//! routines, events) are captured with `SHOW CREATE`, dropped, and re-created on the other side
//! (see `objects`), each under the settings it was created with. The database's own default
//! character set and collation follow the snapshot; the pre-restore database keeps the old ones.

use super::objects;
use super::rewrite::Definers;
use super::sql::{charset, ident, literal, run};
use crate::config::MysqlJob;
use crate::quote::sql_ident;
use std::path::Path;

fn list(job: &MysqlJob, client: &Path, db: &str, sql: &str) -> Result<Vec<String>, String> {
    Ok(run(job, client, &sql.replace("{db}", &literal(db)))?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// Everything `RENAME TABLE` moves: base tables, system-versioned tables, sequences.
fn tables(job: &MysqlJob, client: &Path, db: &str) -> Result<Vec<String>, String> {
    list(job, client, db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') ORDER BY 1")
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
) -> Result<(), String> {
    let live_objs = objects::capture(job, client, live)?;
    let mut new_objs = objects::capture(job, client, staging)?;
    super::reown::with_definers(&mut new_objs, definers);
    let live_tables = tables(job, client, live)?;
    let new_tables = tables(job, client, staging)?;
    let utf8 = "CHARACTER SET utf8mb4".to_string();
    let live_cs = charset(job, client, live)?.unwrap_or_else(|| utf8.clone());
    let new_cs = charset(job, client, staging)?.unwrap_or(utf8);
    let mut renames: Vec<String> = live_tables
        .iter()
        .map(|t| {
            format!(
                "{}.{} TO {}.{}",
                ident(live),
                ident(t),
                ident(pre),
                ident(t)
            )
        })
        .collect();
    renames.extend(new_tables.iter().map(|t| {
        format!(
            "{}.{} TO {}.{}",
            ident(staging),
            ident(t),
            ident(live),
            ident(t)
        )
    }));
    // Nothing is dropped before both databases are there (a bad name fails here, harmlessly).
    run(
        job,
        client,
        &format!(
            "CREATE DATABASE {} {live_cs};\nCREATE DATABASE IF NOT EXISTS {} {new_cs};",
            ident(pre),
            ident(live)
        ),
    )
    .map_err(|e| {
        format!(
            "swapping {} into {} failed, nothing was changed: {e}",
            sql_ident(staging),
            sql_ident(live)
        )
    })?;
    let mut script = objects::drop_script(live, &live_objs);
    script += &objects::drop_script(staging, &new_objs);
    script += "SET FOREIGN_KEY_CHECKS = 0;\n";
    if !renames.is_empty() {
        script += &format!("RENAME TABLE {};\n", renames.join(", "));
    }
    if let Err(e) = run(job, client, &script) {
        // Put back what was dropped, so a failed swap leaves both databases as they were.
        let mut back = objects::create(job, client, live, live, &live_objs);
        back.extend(objects::create(job, client, staging, staging, &new_objs));
        let _ = run(
            job,
            client,
            &format!("DROP DATABASE IF EXISTS {};", ident(pre)),
        );
        return Err(format!(
            "swapping {} into {} failed, the live tables were not touched: {e}{}",
            sql_ident(staging),
            sql_ident(live),
            if back.is_empty() {
                String::new()
            } else {
                format!("; and putting objects back failed: {}", back.join("; "))
            }
        ));
    }
    // From here the data is swapped; an object failing is reported with the DDL saved.
    let mut problems = Vec::new();
    if let Err(e) = run(
        job,
        client,
        &format!("ALTER DATABASE {} {new_cs};", ident(live)),
    ) {
        problems.push(format!(
            "setting the default character set of {}: {e}",
            sql_ident(live)
        ));
    }
    for p in objects::create(job, client, staging, live, &new_objs) {
        problems.push(format!("in {}: {p}", sql_ident(live)));
    }
    for p in objects::create(job, client, live, pre, &live_objs) {
        problems.push(format!("keeping the old one in {}: {p}", sql_ident(pre)));
    }
    // Staging is empty now: its tables moved, its objects were dropped.
    run(job, client, &format!("DROP DATABASE {};", ident(staging)))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the tables were swapped (old ones are in {}), but: {} (their definitions are in the snapshot's dump)",
            sql_ident(pre),
            problems.join("; ")
        ))
    }
}
