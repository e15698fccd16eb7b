//! After a load as the load account (see `sandbox`), the triggers, views, routines and events
//! it created belong to that account, which is about to be dropped. Here the trusted session
//! gives each one back the definer the dump named (recorded by `rewrite`; the restore user when
//! the dump named none), by re-creating it from its `SHOW CREATE`. In a copy (side by side,
//! `--to-database`, a drill) events are disabled first: an event whose body names the original
//! schema would otherwise run against live data on its schedule. Definitions that still name
//! the original database are reported, for the operator to review.

use super::definitions::{self, Kind, Object};
use super::rewrite::{identifier, parse_account, Definers};
use super::sql::{ident, run};
use super::RestoreError;
use crate::config::MysqlJob;
use std::path::Path;

/// `ddl` with its `DEFINER=…` clause set to `definer` (SQL, e.g. `` `root`@`localhost` `` or
/// `CURRENT_USER`).
pub fn set_definer(ddl: &str, definer: &str) -> String {
    let Some(i) = ddl.find("DEFINER=") else {
        return ddl.to_string();
    };
    let at = i + "DEFINER=".len();
    match parse_account(&ddl[at..]) {
        Some((_, used)) => format!("{}{definer}{}", &ddl[..at], &ddl[at + used..]),
        None => ddl.to_string(),
    }
}

/// A `SHOW CREATE EVENT` definition with its status set to `DISABLE` (the clause after
/// `ON COMPLETION [NOT] PRESERVE`, found after the event's name); `None` if it is not there.
pub fn disable_event(ddl: &str) -> Option<String> {
    let at = ddl.find(" EVENT ")? + " EVENT ".len();
    let (_, name_len) = identifier(&ddl[at..])?;
    let after_name = at + name_len;
    let clause = ddl[after_name..].find(" ON COMPLETION ")? + after_name + " ON COMPLETION ".len();
    let rest = &ddl[clause..];
    let status = clause
        + if rest.starts_with("NOT PRESERVE ") {
            "NOT PRESERVE ".len()
        } else if rest.starts_with("PRESERVE ") {
            "PRESERVE ".len()
        } else {
            return None;
        };
    let tail = &ddl[status..];
    let keep = if tail.starts_with("ENABLE") {
        "ENABLE".len()
    } else if tail.starts_with("DISABLE ON SLAVE") {
        "DISABLE ON SLAVE".len()
    } else if tail.starts_with("DISABLE") {
        "DISABLE".len()
    } else {
        return None;
    };
    Some(format!("{}DISABLE{}", &ddl[..status], &tail[keep..]))
}

/// Gives `objs` their definers from `definers` (else `CURRENT_USER`, the restore user).
pub fn with_definers(objs: &mut [Object], definers: &Definers) {
    // Names as the server may have folded them (trigger and event names are not case-sensitive).
    let folded: std::collections::HashMap<(Kind, String), &super::rewrite::Definer> = definers
        .iter()
        .map(|((k, n), d)| ((*k, n.to_ascii_lowercase()), d))
        .collect();
    for o in objs {
        let d = definers
            .get(&(o.kind, o.name.clone()))
            .or_else(|| folded.get(&(o.kind, o.name.to_ascii_lowercase())).copied())
            .map(|d| d.sql())
            .unwrap_or_else(|| "CURRENT_USER".into());
        o.ddl = set_definer(&o.ddl, &d);
    }
}

/// One line per object whose definition still names `source` (a qualified reference the
/// rewrite did not catch, dynamic SQL, a string).
pub fn naming(objs: &[Object], source: &str) -> Vec<String> {
    let quoted = format!("{}.", ident(source));
    let source_q = crate::quote::sql_ident(source);
    let bare = format!("{source}.");
    objs.iter()
        .filter(|o| o.ddl.contains(&quoted) || o.ddl.contains(&bare))
        .map(|o| format!("{} {} names {source_q}", o.kind.verb(), ident(&o.name)))
        .collect()
}

/// Re-owns every object of `db` (a copy when `copy`: events disabled). Returns warnings.
pub fn reown(
    job: &MysqlJob,
    client: &Path,
    db: &str,
    source: &str,
    definers: &Definers,
    copy: bool,
) -> Result<Vec<String>, RestoreError> {
    let mut objs = definitions::capture(job, client, db)?;
    if copy {
        for o in objs.iter_mut().filter(|o| o.kind == Kind::Event) {
            o.ddl = disable_event(&o.ddl).ok_or_else(|| RestoreError::EventStatus {
                name: o.name.clone(),
                database: db.to_string(),
                ddl: o.ddl.clone(),
            })?;
        }
    }
    if objs.is_empty() {
        return Ok(Vec::new());
    }
    let warnings = if source != db {
        naming(&objs, source)
    } else {
        Vec::new()
    };
    with_definers(&mut objs, definers);
    let drops = definitions::drop_script(db, &objs);
    run(job, client, &drops)?;
    let problems = definitions::create(job, client, db, db, &objs);
    if !problems.is_empty() {
        return Err(RestoreError::Recreate {
            database: db.to_string(),
            problems,
        });
    }
    if copy {
        let n = objs.iter().filter(|o| o.kind == Kind::Event).count();
        if n > 0 {
            tracing::info!(
                database = db,
                events = n,
                "events in a restored copy are disabled"
            );
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_disabled_by_their_status_clause_only() {
        let ddl = "CREATE DEFINER=`root`@`localhost` EVENT `x ON COMPLETION NOT PRESERVE ENABLE` ON SCHEDULE EVERY 1 HOUR STARTS '2026-12-02 13:40:32' ON COMPLETION NOT PRESERVE ENABLE COMMENT 'ENABLE' DO SELECT 'PRESERVE ENABLE'";
        assert_eq!(
            disable_event(ddl).unwrap(),
            "CREATE DEFINER=`root`@`localhost` EVENT `x ON COMPLETION NOT PRESERVE ENABLE` ON SCHEDULE EVERY 1 HOUR STARTS '2026-12-02 13:40:32' ON COMPLETION NOT PRESERVE DISABLE COMMENT 'ENABLE' DO SELECT 'PRESERVE ENABLE'"
        );
        let slave = "CREATE DEFINER=`a`@`b` EVENT `e` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE ON SLAVE DO SELECT 1";
        assert!(disable_event(slave)
            .unwrap()
            .contains("PRESERVE DISABLE DO SELECT 1"));
        assert_eq!(disable_event("CREATE EVENT `e` DO SELECT 1"), None);
    }

    #[test]
    fn definer_clauses_are_replaced_in_show_create_text() {
        let ddl = "CREATE DEFINER=`opsagent_load_1_ab`@`localhost` TRIGGER `t` BEFORE INSERT ON `x` FOR EACH ROW SET @a = 'DEFINER=`z`@`y`'";
        assert_eq!(
            set_definer(ddl, "`root`@`%`"),
            "CREATE DEFINER=`root`@`%` TRIGGER `t` BEFORE INSERT ON `x` FOR EACH ROW SET @a = 'DEFINER=`z`@`y`'"
        );
        let view =
            "CREATE ALGORITHM=UNDEFINED DEFINER=`a`@`b` SQL SECURITY DEFINER VIEW `v` AS select 1";
        assert_eq!(
            set_definer(view, "CURRENT_USER"),
            "CREATE ALGORITHM=UNDEFINED DEFINER=CURRENT_USER SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
    }
}
