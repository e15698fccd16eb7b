//! In-place restore, the swap: after the snapshot loaded completely into a staging database,
//! the live tables move aside into a pre-restore database and the restored ones move in, with
//! one multi-table `RENAME TABLE` (atomic in MariaDB/MySQL). Objects that cannot be renamed
//! across databases (triggers, views, routines, events) are captured with `SHOW CREATE`, dropped,
//! and re-created on the other side, under the sql_mode they were created with.

use super::sql::{ident, literal, run};
use crate::config::MysqlJob;
use std::path::Path;

/// A schema object re-created by DDL.
#[derive(Debug, Clone)]
struct Object {
    kind: &'static str,
    name: String,
    sql_mode: String,
    ddl: String,
}

fn list(job: &MysqlJob, client: &Path, db: &str, sql: &str) -> Result<Vec<String>, String> {
    Ok(run(job, client, &sql.replace("{db}", &literal(db)))?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect())
}

/// Captures every trigger, view, routine and event of `db`.
fn objects(job: &MysqlJob, client: &Path, db: &str) -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    // (kind, listing query, SHOW CREATE verb, index of sql_mode, index of the DDL column)
    let kinds: [(&str, &str, &str, Option<usize>, usize); 5] = [
        ("TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db}", "TRIGGER", Some(1), 2),
        ("VIEW", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db}", "VIEW", None, 1),
        ("PROCEDURE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} AND ROUTINE_TYPE = 'PROCEDURE'", "PROCEDURE", Some(1), 2),
        ("FUNCTION", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} AND ROUTINE_TYPE = 'FUNCTION'", "FUNCTION", Some(1), 2),
        ("EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}", "EVENT", Some(1), 3),
    ];
    for (kind, q, verb, mode_col, ddl_col) in kinds {
        for name in list(job, client, db, q)? {
            let rows = run(
                job,
                client,
                &format!("SHOW CREATE {verb} {}.{}", ident(db), ident(&name)),
            )?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| format!("SHOW CREATE {verb} {name} returned nothing"))?;
            let ddl = row
                .get(ddl_col)
                .cloned()
                .ok_or_else(|| format!("SHOW CREATE {verb} {name}: unexpected output"))?;
            let sql_mode = mode_col
                .and_then(|i| row.get(i).cloned())
                .unwrap_or_default();
            out.push(Object {
                kind,
                name,
                sql_mode,
                ddl,
            });
        }
    }
    Ok(out)
}

fn drop_script(db: &str, objs: &[Object]) -> String {
    objs.iter()
        .map(|o| {
            format!(
                "DROP {} IF EXISTS {}.{};\n",
                o.kind,
                ident(db),
                ident(&o.name)
            )
        })
        .collect()
}

/// Re-creates `objs` (captured in `from`) inside `to`. Definitions may name their database
/// (views always do, triggers when written so); those qualifications are removed.
fn create_script(from: &str, to: &str, objs: &[Object]) -> String {
    let mut s = format!("USE {};\nDELIMITER ;;\n", ident(to));
    // Views first need their tables; triggers need theirs; routines and events are independent.
    for o in objs {
        let ddl = o.ddl.replace(&format!("{}.", ident(from)), "");
        s += &format!(
            "SET SESSION sql_mode = {};;\n{ddl};;\n",
            literal(&o.sql_mode)
        );
    }
    s + "DELIMITER ;\n"
}

fn base_tables(job: &MysqlJob, client: &Path, db: &str) -> Result<Vec<String>, String> {
    list(job, client, db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db} AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1")
}

/// Swaps the contents of `staging` into `live`, keeping the old `live` contents in `pre`
/// (which must not exist). `staging` is dropped at the end.
pub fn swap(
    job: &MysqlJob,
    client: &Path,
    live: &str,
    staging: &str,
    pre: &str,
) -> Result<(), String> {
    let live_objs = objects(job, client, live)?;
    let new_objs = objects(job, client, staging)?;
    let live_tables = base_tables(job, client, live)?;
    let new_tables = base_tables(job, client, staging)?;
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
    let mut script = format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4;\nCREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4;\n",
        ident(pre),
        ident(live)
    );
    script += &drop_script(live, &live_objs);
    script += &drop_script(staging, &new_objs);
    script += "SET FOREIGN_KEY_CHECKS = 0;\n";
    if !renames.is_empty() {
        script += &format!("RENAME TABLE {};\n", renames.join(", "));
    }
    run(job, client, &script)
        .map_err(|e| format!("swapping `{staging}` into `{live}` failed: {e}"))?;
    // From here the data is swapped; re-creating objects failing is reported with the DDL saved.
    let mut problems = Vec::new();
    if let Err(e) = run(job, client, &create_script(staging, live, &new_objs)) {
        problems.push(format!(
            "re-creating triggers/views/routines/events in `{live}`: {e}"
        ));
    }
    if let Err(e) = run(job, client, &create_script(live, pre, &live_objs)) {
        problems.push(format!(
            "keeping the old triggers/views/routines/events in `{pre}`: {e}"
        ));
    }
    if problems.is_empty() {
        run(job, client, &format!("DROP DATABASE {};", ident(staging)))?;
        Ok(())
    } else {
        Err(format!(
            "the tables were swapped (old ones are in `{pre}`), but: {} (their definitions are in the snapshot's dump)",
            problems.join("; ")
        ))
    }
}
