//! The SQLite catalog in `state_dir`: runs of jobs and the snapshots they produced; check
//! states and events, alerts, the outbox and the digests sent; the anomalies that freeze a
//! job's retention until acknowledged.
//!
//! WAL mode and a busy timeout let the daemon and CLI commands use it at the same time. The schema
//! is versioned with `PRAGMA user_version` (see `migrations`). The catalog is a cache of the
//! bucket for snapshots — manifests in storage are the truth and the snapshot table can be rebuilt
//! from them — and the only record of runs.

mod alerts;
mod anomalies;
mod binlog;
mod checks;
mod digests;
mod migrations;
mod pings;
mod runs;
mod snapshots;

pub use alerts::{AlertRow, FinishedRun, OutboxRow, SilenceRow, GIVEN_UP};
pub use anomalies::AnomalyRow;
pub use binlog::BinlogProgress;
pub use checks::{CheckStateRow, EventRow};
pub use digests::{DigestRow, SnapshotTotals};
pub use pings::PingRow;
pub use runs::{RunRecord, RunStatus};
pub use snapshots::SnapshotRow;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Catalog failures; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The state directory or the database cannot be opened.
    #[error("cannot open the catalog {path}: {source} (hint: check that state_dir exists and is writable by the user opsagent runs as)")]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The file was written by a newer opsagent.
    #[error("the catalog {path} has schema version {found}, newer than this opsagent understands ({known}) (hint: upgrade opsagent, or move the file away and rebuild it with `opsagent snapshots --refresh`)")]
    TooNew {
        /// The SQLite file.
        path: PathBuf,
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A query failed.
    #[error("catalog {path}: {source}")]
    Query {
        /// The SQLite file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
}

/// A handle on the catalog. Cheap operations run inline; one connection per handle.
pub struct Catalog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Opens the database at `path` without following a symlink at its name: root-run verbs open
/// it in a directory the opsagent user owns. SQLite's `NOFOLLOW` refuses a link anywhere in the
/// path, so the directory (configured, maybe reached through a link the admin made) is resolved
/// first and only the file's own name is checked.
fn open_nofollow(path: &Path) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
    let resolved = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)?.join(name)
        }
        _ => path.to_path_buf(),
    };
    if std::fs::symlink_metadata(&resolved).is_ok_and(|m| m.file_type().is_symlink()) {
        let why = format!(
            "{} is a symlink; opsagent does not follow links in state_dir (remove it)",
            path.display()
        );
        return Err(why.into());
    }
    let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    Ok(Connection::open_with_flags(&resolved, flags)?)
}

/// How long a statement waits for another process's lock on the catalog.
const BUSY_WAIT: Duration = Duration::from_secs(15);
/// Prepared statements kept per connection (rusqlite's default is 16; the daemon's recurring
/// questions and the catalog's other frequent ones fit in this with room to spare).
const STATEMENT_CACHE: usize = 64;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` again while SQLite reports the database busy, for up to [`BUSY_WAIT`]: for the
/// statements SQLite does not retry itself (it refuses at once where waiting could deadlock).
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match f() {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

impl Catalog {
    /// Opens (creating if needed) `state_dir/catalog.sqlite` at `path`, migrating it to the
    /// current schema.
    pub fn open(path: &Path) -> Result<Catalog, CatalogError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| CatalogError::Open {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let conn = open_nofollow(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_WAIT)
            .map_err(|e| open_err(Box::new(e)))?;
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
        // locked" at once, without its busy handler, while another process is doing the same
        // (seen in CI: the daemon and `opsagent snapshots` starting together). Take turns here.
        retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))
            .map_err(|e| open_err(Box::new(e)))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_err(Box::new(e)))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| open_err(Box::new(e)))?;
        // The daemon asks the same few questions every second (alerting) and every round of
        // checks: their statements are kept prepared rather than parsed each time.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let cat = Catalog {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        };
        migrations::migrate(&cat)?;
        Ok(cat)
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn q(&self, source: rusqlite::Error) -> CatalogError {
        CatalogError::Query {
            path: self.path.clone(),
            source,
        }
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, CatalogError> {
        self.conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.q(e))
    }
}

/// Milliseconds since the Unix epoch, the catalog's time format.
pub fn to_millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`].
pub fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_catalog_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"not a database").unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        // The state dir reached through the admin's link is fine.
        let state = d.path().join("state");
        std::os::unix::fs::symlink(&real, &state).unwrap();
        Catalog::open(&state.join("catalog.sqlite")).unwrap();
        std::os::unix::fs::symlink(&victim, real.join("other.sqlite")).unwrap();
        let err = Catalog::open(&state.join("other.sqlite")).err().unwrap();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"not a database");
    }
}
