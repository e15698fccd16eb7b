//! The triggers, views, routines and events of a database, captured with `SHOW CREATE` and
//! re-created in another (the in-place swap moves them this way: `RENAME TABLE` cannot).
//!
//! Order matters and is kept: functions and procedures first (views may call them), then views
//! (one view may select from another: views that fail are retried while any other succeeds),
//! triggers in their action order per table and event, then events. Each object is created
//! under the `sql_mode`, connection collation, time zone (events) and database collation it
//! was created with, as `SHOW CREATE` reports them; definitions naming their old database have
//! that qualification removed. One object failing never stops the others.

use super::sql::{charset, ident, literal, run, run_forced};
use super::RestoreError;
use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use std::collections::HashSet;
use std::path::Path;

/// What kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A stored function.
    Function,
    /// A stored procedure.
    Procedure,
    /// A view.
    View,
    /// A trigger.
    Trigger,
    /// An event.
    Event,
}

impl Kind {
    /// The SQL word (`DROP <verb>`, `SHOW CREATE <verb>`).
    pub fn verb(self) -> &'static str {
        match self {
            Kind::Function => "FUNCTION",
            Kind::Procedure => "PROCEDURE",
            Kind::View => "VIEW",
            Kind::Trigger => "TRIGGER",
            Kind::Event => "EVENT",
        }
    }

    /// The listing query (`{db}` is the schema literal), in creation order.
    fn listing(self) -> &'static str {
        match self {
            Kind::Function => "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} AND ROUTINE_TYPE = 'FUNCTION' ORDER BY 1",
            Kind::Procedure => "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY 1",
            Kind::View => "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db} ORDER BY 1",
            Kind::Trigger => "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {db} ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            Kind::Event => "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} ORDER BY 1",
        }
    }

    /// Columns of its `SHOW CREATE` row: (sql_mode, time_zone, DDL, collation_connection,
    /// database collation).
    fn columns(self) -> (Option<usize>, Option<usize>, usize, usize, Option<usize>) {
        match self {
            Kind::Function | Kind::Procedure | Kind::Trigger => (Some(1), None, 2, 4, Some(5)),
            Kind::View => (None, None, 1, 3, None),
            Kind::Event => (Some(1), Some(2), 3, 5, Some(6)),
        }
    }
}

/// The creation order.
const ORDER: [Kind; 5] = [
    Kind::Function,
    Kind::Procedure,
    Kind::View,
    Kind::Trigger,
    Kind::Event,
];

/// A schema object re-created by DDL.
#[derive(Debug, Clone)]
pub struct Object {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// `SHOW CREATE` DDL.
    pub ddl: String,
    /// `sql_mode` it was created under (views: none recorded).
    pub sql_mode: Option<String>,
    /// Events: the time zone their schedule is in.
    pub time_zone: Option<String>,
    /// `collation_connection` it was created under.
    pub collation: Option<String>,
    /// The database's collation when it was created (routines, triggers, events).
    pub db_collation: Option<String>,
}

/// Captures every trigger, view, routine and event of `db`, in creation order.
pub fn capture(job: &MysqlJob, client: &Path, db: &str) -> Result<Vec<Object>, RestoreError> {
    let mut out = Vec::new();
    for kind in ORDER {
        let names = run(job, client, &kind.listing().replace("{db}", &literal(db)))?;
        for name in names.into_iter().filter_map(|r| r.into_iter().next()) {
            let verb = kind.verb();
            let rows = run(
                job,
                client,
                &format!("SHOW CREATE {verb} {}.{}", ident(db), ident(&name)),
            )?;
            let row = rows
                .into_iter()
                .next()
                .ok_or_else(|| RestoreError::ShowCreateEmpty {
                    verb,
                    name: name.clone(),
                })?;
            let (mode, tz, ddl, coll, dbcoll) = kind.columns();
            let col = |i: Option<usize>| i.and_then(|i| row.get(i).cloned());
            let ddl = col(Some(ddl))
                .filter(|d| !d.is_empty() && d != "NULL")
                .ok_or_else(|| RestoreError::NoDefinition {
                    verb,
                    name: name.clone(),
                })?;
            out.push(Object {
                kind,
                ddl,
                sql_mode: col(mode),
                time_zone: col(tz),
                collation: col(Some(coll)),
                db_collation: col(dbcoll),
                name,
            });
        }
    }
    Ok(out)
}

/// A statement delimiter that appears in none of the definitions: random, so a definition
/// (whose text came from a dump) cannot be made to contain it and split into two statements.
/// 14 characters: the client keeps at most 15.
fn delimiter(ddls: &[String]) -> String {
    loop {
        let mut rnd = [0u8; 5];
        getrandom::fill(&mut rnd).expect("the OS random source works");
        let d = format!("$${}$$", hex::encode(rnd));
        if ddls.iter().all(|x| !x.contains(&d)) {
            return d;
        }
    }
}

/// The script creating `objs` (captured in `from`) in `to`, leaving `to`'s default collation
/// as `restore_cs` (`CHARACTER SET … COLLATE …`) at the end.
fn script(from: &str, to: &str, objs: &[&Object], restore_cs: &str) -> String {
    // The definitions as they will be sent, before the delimiter is chosen: moved to another
    // database, they lose the old one's qualification; re-created where they are (new
    // definers), they stay as written.
    let ddls: Vec<String> = objs
        .iter()
        .map(|o| match from == to {
            true => o.ddl.clone(),
            false => o.ddl.replace(&format!("{}.", ident(from)), ""),
        })
        .collect();
    let d = delimiter(&ddls);
    let mut s = format!("USE {};\nDELIMITER {d}\n", ident(to));
    for (o, ddl) in objs.iter().zip(&ddls) {
        let mode = match &o.sql_mode {
            Some(m) => literal(m),
            None => "@@GLOBAL.sql_mode".into(),
        };
        s += &format!("SET SESSION sql_mode = {mode}{d}\n");
        if let Some(c) = &o.collation {
            s += &format!("SET SESSION collation_connection = {}{d}\n", literal(c));
        }
        if let Some(tz) = &o.time_zone {
            s += &format!("SET SESSION time_zone = {}{d}\n", literal(tz));
        }
        if let Some(c) = &o.db_collation {
            s += &format!("ALTER DATABASE {} COLLATE {}{d}\n", ident(to), literal(c));
        }
        s += &format!("{ddl}{d}\n");
    }
    s += &format!(
        "ALTER DATABASE {} {restore_cs}{d}\nDELIMITER ;\n",
        ident(to)
    );
    s
}

/// The objects `db` holds, as (kind, name).
fn present(
    job: &MysqlJob,
    client: &Path,
    db: &str,
) -> Result<HashSet<(String, String)>, MysqlError> {
    let l = literal(db);
    let rows = run(job, client, &format!(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l} \
         UNION ALL SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {l} \
         UNION ALL SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {l} \
         UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l};"
    ))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.len() == 2)
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect())
}

/// Creates `objs` (captured in `from`) in `to`. Returns one line per object that could not be
/// created, with the error and its definition (so it is not lost).
pub fn create(job: &MysqlJob, client: &Path, from: &str, to: &str, objs: &[Object]) -> Vec<String> {
    if objs.is_empty() {
        return Vec::new();
    }
    let restore_cs = match charset(job, client, to) {
        Ok(Some(cs)) => cs,
        _ => "CHARACTER SET utf8mb4".into(),
    };
    let mut pending: Vec<&Object> = objs.iter().collect();
    // Each pass creates what it can; a view waiting for another comes in a later pass.
    while !pending.is_empty() {
        let _ = run_forced(job, client, &script(from, to, &pending, &restore_cs));
        let Ok(there) = present(job, client, to) else {
            break;
        };
        let before = pending.len();
        pending.retain(|o| !there.contains(&(o.kind.verb().to_string(), o.name.clone())));
        if pending.len() == before {
            break;
        }
    }
    // What is left fails alone, for its own error message.
    pending
        .into_iter()
        .filter_map(|o| {
            run(job, client, &script(from, to, &[o], &restore_cs))
                .err()
                .map(|e| {
                    format!(
                        "{} {}: {e}; its definition: {}",
                        o.kind.verb(),
                        ident(&o.name),
                        o.ddl
                    )
                })
        })
        .collect()
}

/// The script dropping `objs` from `db`.
pub fn drop_script(db: &str, objs: &[Object]) -> String {
    objs.iter()
        .map(|o| {
            format!(
                "DROP {} IF EXISTS {}.{};\n",
                o.kind.verb(),
                ident(db),
                ident(&o.name)
            )
        })
        .collect()
}
