//! Disaster recovery (`opsagent restore --all`): for every job of the configuration, the newest
//! snapshot at or before a moment, found from the manifests in storage (a new machine's catalog
//! is empty), each database restored under its own name (created when missing) and each media
//! tree over the job's configured paths.
//!
//! Order: databases first, then media trees. The data of record is in the databases (upload rows
//! name the files, not the other way round), they are usually the smaller part and the quicker
//! to come back, and an application can start on its database while files still arrive; a
//! recovery stopped halfway leaves the databases whole rather than files nothing points to.
//!
//! Two kinds of trouble are told apart:
//! * a **target** that holds data (a database with tables, a configured directory with entries)
//!   stops the whole recovery before anything is written ([`AllError`]): restoring over live
//!   data is what `--in-place` says, and a DR run on the wrong machine must change nothing;
//! * an **item** that cannot be had from storage (no snapshot early enough, a manifest or tree
//!   refused as untrusted input) is listed in [`Plan::missing`]; everything else is restored and
//!   the run fails at the end, naming it. In a disaster, what can come back should.
//!
//! Every restore keeps its usual guarantees: a dump loads as the sandboxed load account that
//! reaches only its own database (`sandbox`), media never writes through a symlink
//! (`media/beneath_target.rs`) and only at or under the job's configured paths.

use super::media::select::{configured_paths, Destination};
use super::media::{self, MediaError, Options, Prepared};
use super::plan::{self, Chosen, Filter, PlanError};
use super::{prepare, RestoreError, Step, Target};
use crate::config::{Config, Databases};
use crate::mysql_client::SYSTEM_DATABASES;
use crate::quote::{printable, shell, sql_ident};
use crate::snapshot::keys::SnapshotKey;
use crate::storage::Storage;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::path::Path;

/// The manifest kinds of the two job kinds.
const MYSQL: &str = "mysql";
const MEDIA: &str = "media";

/// What `--all` asks for.
#[derive(Debug, Clone)]
pub struct Request {
    /// The moment to go back to.
    pub at: DateTime<Utc>,
    /// Replace databases that hold tables (through staging and a swap) and write over media
    /// directories that hold entries, instead of refusing them.
    pub in_place: bool,
    /// With `in_place`: remove from media directories what the snapshot does not hold.
    pub delete: bool,
}

/// A recovery, checked and ready to run.
#[derive(Debug)]
pub struct Plan {
    /// Database restores, jobs in configuration order; each with its own target
    /// ([`Target::Recover`], or [`Target::InPlace`] for a database with tables under
    /// `--in-place`).
    pub dumps: Vec<(Step, Target)>,
    /// Media restores over the configured paths, in configuration order.
    pub media: Vec<(Chosen, Prepared)>,
    /// What cannot be restored; the rest is.
    pub missing: Vec<Missing>,
    /// Jobs with snapshots in storage that this configuration does not have (not restored).
    pub unconfigured: Vec<String>,
}

/// Something the recovery cannot restore, and why.
#[derive(Debug, Clone)]
pub struct Missing {
    /// The job.
    pub job: String,
    /// The database (MySQL jobs), when one is named.
    pub item: Option<String>,
    /// Why, naming the key or snapshot where there is one.
    pub why: String,
}

impl Missing {
    /// `database `shop` (job main)` or `files of job uploads`, for messages.
    pub fn what(&self) -> String {
        match &self.item {
            Some(db) => format!("database {} (job {})", sql_ident(db), printable(&self.job)),
            None => format!("job {}", printable(&self.job)),
        }
    }
}

/// Why a recovery did not start; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum AllError {
    /// Listing the snapshots failed.
    #[error("listing the snapshots in storage failed: {0}")]
    List(PlanError),
    /// The configuration has no jobs.
    #[error("the configuration has no [[mysql]] or [[media]] job, so --all has nothing to restore (hint: put back the opsagent.toml the lost server ran with)")]
    NoJobs,
    /// A database to recover holds tables.
    #[error("database {} (job {}) already exists with {tables} tables and views; --all restores only into missing or empty databases, so nothing was changed (hint: add --in-place to replace it, its tables kept in a `…_prerestore_…` database; or drop it; or restore it alone beside the live one with `opsagent restore --date … --job {} --database {}`)", sql_ident(database), printable(job), shell(job), shell(database))]
    NotEmpty {
        /// The job.
        job: String,
        /// The database.
        database: String,
        /// Its tables and views.
        tables: usize,
    },
    /// A media directory to recover holds entries.
    #[error("{} (job {}) already holds {entries} entries; --all writes only into missing or empty directories, so nothing was changed (hint: add --in-place to write over it, files not in the snapshot are kept; or empty it; or restore it elsewhere with `opsagent restore --date … --job {} --to-dir DIR`)", shell(&path.to_string_lossy()), printable(job), shell(job))]
    MediaNotEmpty {
        /// The job.
        job: String,
        /// The configured path.
        path: std::path::PathBuf,
        /// What is in it (1 for something that is not a directory).
        entries: usize,
    },
    /// A database's target could not be checked, or is refused.
    #[error("database {} (job {}): {cause}", sql_ident(database), printable(job))]
    Database {
        /// The job.
        job: String,
        /// The database.
        database: String,
        /// Why.
        cause: Box<RestoreError>,
    },
    /// A media snapshot names paths this configuration does not back up.
    #[error("job {}: {cause}", printable(job))]
    Media {
        /// The job.
        job: String,
        /// Why.
        cause: Box<MediaError>,
    },
}

/// Finds, loads and checks everything `--all` restores. Reads storage and looks at the
/// targets; writes nothing. `rt` runs the storage reads.
pub fn plan(
    rt: &tokio::runtime::Handle,
    config: &Config,
    storage: &Storage,
    req: &Request,
) -> Result<Plan, AllError> {
    if config.mysql.is_empty() && config.media.is_empty() {
        return Err(AllError::NoJobs);
    }
    let snaps = rt
        .block_on(plan::all_snapshots(storage))
        .map_err(AllError::List)?;
    let mut out = Plan {
        dumps: Vec::new(),
        media: Vec::new(),
        missing: Vec::new(),
        unconfigured: unconfigured(config, &snaps),
    };
    // Databases first, then media (the plan says why); (job, its items, a database job?).
    let dbs = config.mysql.iter().map(|job| {
        let items = match &job.databases {
            Databases::List(l) => l.clone(),
            Databases::All => items_of(&snaps, &job.name),
        };
        (&job.name, items, true)
    });
    let trees = (config.media.iter()).map(|job| (&job.name, items_of(&snaps, &job.name), false));
    for (job, items, database) in dbs.chain(trees) {
        if items.is_empty() {
            out.missing.push(no_snapshot(job, None));
        }
        for item in items {
            let Some(c) = pick(
                rt,
                storage,
                &snaps,
                (job, Some(&item)),
                req.at,
                config,
                &mut out,
            ) else {
                continue;
            };
            if database {
                out.dumps.push(dump_step(config, c, req.in_place)?);
            } else if let Some(p) = media_step(rt, storage, config, &c, req, &mut out)? {
                out.media.push((c, p));
            }
        }
    }
    Ok(out)
}

/// The distinct items (databases; the media series) of `job` in storage, sorted.
fn items_of(snaps: &[(DateTime<Utc>, SnapshotKey)], job: &str) -> Vec<String> {
    let set: BTreeSet<&str> = snaps
        .iter()
        .filter(|s| s.1.job == job)
        .map(|s| s.1.item.as_str())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Jobs in storage the configuration does not have.
fn unconfigured(config: &Config, snaps: &[(DateTime<Utc>, SnapshotKey)]) -> Vec<String> {
    let known = config.job_names();
    let set: BTreeSet<&str> = snaps
        .iter()
        .map(|s| s.1.job.as_str())
        .filter(|j| !known.contains(j))
        .collect();
    set.into_iter().map(str::to_string).collect()
}

fn no_snapshot(job: &str, item: Option<&str>) -> Missing {
    Missing {
        job: job.to_string(),
        item: item.map(str::to_string),
        why: "no snapshot in storage (hint: `opsagent snapshots --refresh` lists what there is; check [storage] and --from-host)".into(),
    }
}

/// The newest snapshot of (`job`, `item`) at or before `at`, its manifest read and checked
/// against its key and the job's kind; `None` (recorded in `out.missing`) when there is none.
fn pick(
    rt: &tokio::runtime::Handle,
    storage: &Storage,
    snaps: &[(DateTime<Utc>, SnapshotKey)],
    (job, item): (&str, Option<&str>),
    at: DateTime<Utc>,
    config: &Config,
    out: &mut Plan,
) -> Option<Chosen> {
    let mysql = config.mysql.iter().any(|j| j.name == job);
    let filter = Filter {
        jobs: vec![job.to_string()],
        databases: item.map(|d| vec![d.to_string()]).unwrap_or_default(),
    };
    let mut missing = |why: String| {
        out.missing.push(Missing {
            job: job.to_string(),
            item: item.filter(|_| mysql).map(str::to_string),
            why,
        });
        None
    };
    if mysql && item.is_some_and(|d| SYSTEM_DATABASES.contains(&d.to_ascii_lowercase().as_str())) {
        return missing("a system database; a recovery never writes one (hint: someone else wrote this snapshot: check who can write the bucket)".into());
    }
    let chosen = match plan::choose(snaps, &filter, at, config.agent.zone) {
        Ok(c) => c,
        Err(PlanError::NoSnapshotOf { .. } | PlanError::NoSnapshots { .. }) => {
            return missing(no_snapshot(job, item).why)
        }
        Err(e) => return missing(e.to_string()),
    };
    let c = match rt.block_on(plan::load(storage, chosen)) {
        Ok(mut v) if v.len() == 1 => v.remove(0),
        Ok(v) => return missing(format!("{} snapshots matched one series", v.len())),
        Err(e) => return missing(e.to_string()),
    };
    let want = if mysql { MYSQL } else { MEDIA };
    if c.manifest.kind != want {
        return missing(format!(
            "snapshot {} is a {} snapshot, but {} is a [[{want}]] job here; not restored (hint: someone else wrote it: check who can write the bucket)",
            c.key.id,
            printable(&c.manifest.kind),
            printable(job)
        ));
    }
    Some(c)
}

/// The step restoring dump `c` under its own name: [`Target::Recover`] when the database is
/// missing or empty; one with tables is refused, or replaced under `in_place`.
fn dump_step(config: &Config, c: Chosen, in_place: bool) -> Result<(Step, Target), AllError> {
    let (job, database) = (c.key.job.clone(), c.manifest.item.clone());
    let wrap = |cause| AllError::Database {
        job: job.clone(),
        database: database.clone(),
        cause: Box::new(cause),
    };
    let target = match prepare(config, vec![c.clone()], &Target::Recover) {
        Ok(mut steps) => return Ok((steps.remove(0), Target::Recover)),
        Err(RestoreError::NotEmpty { tables, .. }) if !in_place => {
            return Err(AllError::NotEmpty {
                job,
                database,
                tables,
            })
        }
        Err(RestoreError::NotEmpty { .. }) => Target::InPlace,
        Err(e) => return Err(wrap(e)),
    };
    let mut steps = prepare(config, vec![c], &target).map_err(wrap)?;
    Ok((steps.remove(0), target))
}

/// Loads the tree of media snapshot `c` for a restore over the job's configured paths, and
/// refuses paths that hold entries unless `--in-place`. `None` when the tree cannot be had
/// (recorded in `out.missing`).
fn media_step(
    rt: &tokio::runtime::Handle,
    storage: &Storage,
    config: &Config,
    c: &Chosen,
    req: &Request,
    out: &mut Plan,
) -> Result<Option<Prepared>, AllError> {
    let job = config.media.iter().find(|j| j.name == c.key.job);
    let opts = Options {
        dest: Destination::InPlace,
        path: None,
        delete: req.in_place && req.delete,
        exclude: job.map(|j| j.exclude.clone()).unwrap_or_default(),
        under_identity: None,
        job_paths: job.map(configured_paths),
    };
    let prepared = match rt.block_on(media::prepare(storage, c, opts)) {
        Ok(p) => p,
        Err(e @ MediaError::NotConfigured { .. }) => {
            return Err(AllError::Media {
                job: c.key.job.clone(),
                cause: Box::new(e),
            })
        }
        Err(e) => {
            out.missing.push(Missing {
                job: c.key.job.clone(),
                item: None,
                why: format!("snapshot {}: {e}", c.key.id),
            });
            return Ok(None);
        }
    };
    if !req.in_place {
        for root in &prepared.roots {
            let entries = entries(Path::new(root));
            if entries > 0 {
                return Err(AllError::MediaNotEmpty {
                    job: c.key.job.clone(),
                    path: root.into(),
                    entries,
                });
            }
        }
    }
    Ok(Some(prepared))
}

/// How many entries `path` holds: 0 when it is missing or an empty directory, 1 when it is
/// something else than a directory (a symlink is not followed).
fn entries(path: &Path) -> usize {
    match std::fs::symlink_metadata(path) {
        Err(_) => 0,
        Ok(m) if m.is_dir() => std::fs::read_dir(path).map_or(1, |d| d.count()),
        Ok(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_counts_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(entries(&t.path().join("none")), 0);
        assert_eq!(entries(t.path()), 0);
        std::fs::write(t.path().join("a"), b"x").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        assert_eq!(entries(t.path()), 2);
        assert_eq!(entries(&t.path().join("a")), 1);
        std::os::unix::fs::symlink(t.path().join("d"), t.path().join("l")).unwrap();
        assert_eq!(entries(&t.path().join("l")), 1);
    }
}
