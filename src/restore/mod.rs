//! Restores: pick snapshots for a moment (`plan`), stream them back with their sha256 checked
//! (`stream`), into a new database side by side (default), a named one, a file, or in place
//! through a staging database and an atomic swap (`swap`); and restore drills (`verify`).
//! Media snapshots (directory trees) are restored by `media` (the folder restore/media/).

pub mod all;
pub mod binlog;
pub mod date;
pub mod definitions;
pub mod drill_command;
pub mod error;
pub mod media;
pub mod names;
pub mod parallel;
pub mod plan;
pub mod reown;
pub mod rewrite;
pub mod sandbox;
pub mod sql;
pub mod stream;
pub mod swap;
pub mod tables;
pub mod verify;

pub use error::{FileError, RestoreError};
use names::truncate;
pub use names::{random_hex, side_by_side_name, staging_name, STAGING_MARK};

use crate::config::{Config, Databases, MysqlJob};
use crate::mysql_client::{client_tool, dump_tool, SYSTEM_DATABASES};
use crate::storage::Storage;
use chrono::Utc;
use plan::Chosen;
use sql::ident;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Where a restored database goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new database `<db>_<YYYYMMDD_HHMM>` beside the live one.
    SideBySide,
    /// This database (must not exist, or be empty).
    Database(String),
    /// Over the live database, through staging and a swap.
    InPlace,
    /// A file (`.sql`, `.sql.zst` kept compressed, or `.sql.zst.age` as stored).
    File(PathBuf),
    /// Disaster recovery (`--all`): the database of the snapshot's own name, created when
    /// missing, else it must be empty; its events keep the status they were dumped with.
    Recover,
}

/// One planned restore step.
#[derive(Debug, Clone)]
pub struct Step {
    /// The snapshot.
    pub chosen: Chosen,
    /// The database (or file) written.
    pub target: String,
    /// For in-place: where the live tables go.
    pub pre_restore: Option<String>,
    /// The binary log replayed after the dump, to reach the moment asked for.
    pub roll_forward: Option<binlog::RollForward>,
    /// `--table`: only these tables (empty: all).
    pub tables: Vec<String>,
}

/// The job whose connection settings restore `chosen` (same name, else the only/first
/// `[[mysql]]` job, e.g. for `--from-host` snapshots of another machine's jobs).
pub fn connection_for(config: &Config, job: &str) -> Result<MysqlJob, RestoreError> {
    config
        .mysql
        .iter()
        .find(|j| j.name == job)
        .or_else(|| config.mysql.first())
        .map(MysqlJob::for_restore)
        .ok_or(RestoreError::NoConnection)
}

/// Builds the steps for `chosen` and checks every target before anything is written: a new
/// database must not exist (or, for `--to-database`, be empty); a file must not exist.
pub fn prepare(
    config: &Config,
    chosen: Vec<Chosen>,
    target: &Target,
) -> Result<Vec<Step>, RestoreError> {
    let zone = config.agent.zone;
    let mut steps = Vec::new();
    for c in chosen {
        check_against_config(config, &c, target)?;
        let db = c.manifest.item.clone();
        let (name, pre) = match target {
            Target::SideBySide => (side_by_side_name(&db, c.time, zone), None),
            Target::Database(n) => (n.clone(), None),
            Target::Recover => (db.clone(), None),
            Target::InPlace => (
                db.clone(),
                // 30 + 12 + 15 + 7 characters: within MySQL's 64 for any database name, and
                // unique (two databases may share their first 30 characters and second).
                Some(format!(
                    "{}_prerestore_{}_{}",
                    truncate(&db, 30),
                    zone.format(Utc::now(), "%Y%m%d_%H%M%S"),
                    random_hex(3)
                )),
            ),
            Target::File(p) => (p.display().to_string(), None),
        };
        if let Target::File(p) = target {
            if p.exists() {
                return Err(RestoreError::FileExists { path: p.clone() });
            }
        } else {
            let job = &connection_for(config, &c.key.job)?;
            let client = client_for(job)?;
            let existing = sql::database_tables(job, &client, &name).map_err(|cause| {
                RestoreError::Checking {
                    database: name.clone(),
                    endpoint: job.endpoint.to_string(),
                    cause,
                }
            })?;
            match (target, existing) {
                (Target::InPlace, _) | (_, None) => {}
                (Target::Database(_) | Target::Recover, Some(0)) => {}
                (_, Some(tables)) => {
                    return Err(RestoreError::NotEmpty {
                        database: name,
                        tables,
                    })
                }
            }
        }
        steps.push(Step {
            chosen: c,
            target: name,
            pre_restore: pre,
            roll_forward: None,
            tables: Vec::new(),
        });
    }
    Ok(steps)
}

/// A snapshot read from the bucket against the config: a job the config knows must be of the
/// snapshot's kind, and an in-place restore or a recovery may only write a database the job
/// backs up (never a system database such as `mysql`, whatever a manifest says).
fn check_against_config(config: &Config, c: &Chosen, target: &Target) -> Result<(), RestoreError> {
    let (job, db) = (&c.key.job, &c.manifest.item);
    if config.media.iter().any(|j| &j.name == job) {
        return Err(RestoreError::WrongKind {
            id: c.key.id.clone(),
            job: job.clone(),
        });
    }
    if !matches!(target, Target::InPlace | Target::Recover) {
        return Ok(());
    }
    let system = SYSTEM_DATABASES.contains(&db.to_ascii_lowercase().as_str());
    let configured = config.mysql.iter().find(|j| &j.name == job);
    let backed_up = match configured.map(|j| &j.databases) {
        Some(Databases::List(l)) => l.contains(db),
        Some(Databases::All) | None => true,
    };
    if system || !backed_up {
        return Err(RestoreError::NotBackedUp {
            id: c.key.id.clone(),
            database: db.clone(),
            job: job.clone(),
        });
    }
    Ok(())
}

/// Checks that every step's snapshot can be decrypted here (when it is encrypted), before
/// anything is written. A `--to-file` ending in `.age` copies the stored bytes and needs no key.
pub fn check_decryptable(
    storage: &Storage,
    steps: &[Step],
    target: &Target,
) -> Result<(), RestoreError> {
    if let Target::File(p) = target {
        if p.extension().is_some_and(|e| e == "age") {
            return Ok(());
        }
    }
    for s in steps {
        decryptable(storage, &s.chosen)?;
    }
    Ok(())
}

/// [`check_decryptable`] for one snapshot.
pub fn decryptable(storage: &Storage, c: &Chosen) -> Result<(), RestoreError> {
    match &c.manifest.encryption {
        Some(e) => storage
            .check_can_decrypt(
                &format!(
                    "snapshot {} of `{}` (job {})",
                    c.key.id, c.manifest.item, c.key.job
                ),
                &e.recipients,
            )
            .map_err(|e| RestoreError::Decrypt {
                cause: e.to_string(),
            }),
        None => Ok(()),
    }
}

/// The SQL client for `job`'s restores (beside its dump tool, or found on PATH).
fn client_for(job: &MysqlJob) -> Result<PathBuf, RestoreError> {
    let dump = dump_tool(job.dump_command.as_deref())
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/mariadb-dump"));
    Ok(client_tool(&dump)?)
}

/// Runs one step. Anything this step created is dropped again when it fails.
pub async fn execute(
    config: &Config,
    storage: &Storage,
    step: &Step,
    target: &Target,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Vec<String>, RestoreError> {
    let obj = step
        .chosen
        .manifest
        .objects
        .first()
        .ok_or_else(|| RestoreError::NoData {
            key: step.chosen.key.key.clone(),
        })?
        .clone();
    check_decryptable(storage, std::slice::from_ref(step), target)?;
    if let Target::File(p) = target {
        return stream::write_file(storage, &obj, p, progress)
            .await
            .map(|()| Vec::new());
    }
    let job = connection_for(config, &step.chosen.key.job)?;
    let client = client_for(&job)?;
    let load_target = match target {
        Target::InPlace => staging_name(&step.target),
        _ => step.target.clone(),
    };
    let created = sql::create_database(&job, &client, &load_target, target)?;
    let source = &step.chosen.manifest.item;
    let after = match target {
        Target::InPlace => AfterLoad::Staging,
        Target::Recover => AfterLoad::Live,
        _ => AfterLoad::Copy,
    };
    let work = config
        .agent
        .state_dir
        .join(format!("binlog-replay-{}", names::random_hex(4)));
    let roll = step.roll_forward.as_ref().map(|r| (r, work.as_path()));
    let loaded = load_isolated(
        storage,
        (&job, &client),
        &obj,
        (source, &load_target, &step.tables),
        (after, roll),
        progress,
    )
    .await;
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            if created {
                let _ = sql::run(
                    &job,
                    &client,
                    &format!("DROP DATABASE IF EXISTS {};", ident(&load_target)),
                );
            }
            return Err(e);
        }
    };
    if let (Target::InPlace, Some(pre)) = (target, &step.pre_restore) {
        let (j, c, live, staging, pre) = (
            job.clone(),
            client.clone(),
            step.target.clone(),
            load_target.clone(),
            pre.clone(),
        );
        let definers = loaded.definers;
        tokio::task::spawn_blocking(move || swap::swap(&j, &c, (&live, &staging, &pre), &definers))
            .await
            .map_err(RestoreError::task)??;
    }
    Ok(loaded.warnings)
}

/// What happens after a load to the objects it created (they belong to the load account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoad {
    /// Nothing yet: the swap gives them their definers.
    Staging,
    /// A copy: their definers back, events disabled.
    Copy,
    /// The live database (disaster recovery): their definers back, events as dumped.
    Live,
}

/// What [`load_isolated`] did.
pub struct Loaded {
    /// The definers the dump named, per object.
    pub definers: rewrite::Definers,
    /// Definitions that still name the original database.
    pub warnings: Vec<String>,
}

/// Loads the dump `obj` of database `source` into the (new, empty) database `target`, logged in
/// as a load account that can reach `target` alone (see `sandbox`), dropped afterwards. The
/// objects then get their definers back, and in a copy events are disabled (see `reown` and
/// [`AfterLoad`]); for staging that happens in the swap.
pub async fn load_isolated(
    storage: &Storage,
    (job, client): (&MysqlJob, &Path),
    obj: &crate::snapshot::manifest::ObjectRef,
    (source, target, tables): (&str, &str, &[String]),
    (after, roll): (AfterLoad, Option<(&binlog::RollForward, &Path)>),
    progress: Option<Arc<AtomicU64>>,
) -> Result<Loaded, RestoreError> {
    let (j, c, t, a) = (
        job.clone(),
        client.to_path_buf(),
        target.to_string(),
        roll.is_some(),
    );
    let account = tokio::task::spawn_blocking(move || sandbox::Sandbox::for_load(&j, &c, &t, a))
        .await
        .map_err(RestoreError::task)??;
    tracing::info!(account = %account.user, database = target, "loading as an account that can reach only this database");
    let login = account.login(job);
    let loaded = stream::load_into_database(
        storage,
        (job, &login),
        client,
        obj,
        (source, target, tables),
        progress,
    )
    .await;
    let loaded =
        binlog::after_load(storage, loaded, roll, (&login, client), (source, target)).await;
    let (j, c) = (job.clone(), client.to_path_buf());
    let dropped = tokio::task::spawn_blocking(move || account.drop_account(&j, &c))
        .await
        .map_err(RestoreError::task)?;
    let definers = loaded?;
    if let Err(e) = dropped {
        tracing::warn!(error = %e, "cannot drop the load account; the next restore drops it after a day");
    }
    let warnings = if after != AfterLoad::Staging {
        let copy = after == AfterLoad::Copy;
        let (j, c, t, s) = (
            job.clone(),
            client.to_path_buf(),
            target.to_string(),
            source.to_string(),
        );
        let d = definers.clone();
        tokio::task::spawn_blocking(move || reown::reown(&j, &c, &t, &s, &d, copy))
            .await
            .map_err(RestoreError::task)??
    } else {
        Vec::new()
    };
    for w in &warnings {
        tracing::warn!(database = target, "{w} (review it before using the copy)");
    }
    Ok(Loaded { definers, warnings })
}
