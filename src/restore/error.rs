//! Errors of MySQL restores and drills.
//!
//! Policy (as `storage::StorageError`): a message names the operation and the thing (database,
//! object key, file, snapshot), the cause, and a hint where there is one. The adapters' errors
//! are carried typed ([`MysqlError`], [`StorageError`], [`PlanError`]); wrapped with context,
//! they are fields shown in the message, not `source()`, so `{:#}` chains at the CLI edge do
//! not print them twice. Causes from other layers that are still text stay text.

use super::plan::PlanError;
use crate::mysql_client::{with_hint, MysqlError};
use crate::quote::{printable, shell, sql_ident};
use crate::storage::StorageError;
use std::path::PathBuf;

/// An error of a MySQL restore or drill.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The MySQL tools failed.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Choosing or reading the snapshots failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The catalog failed (drills record their runs).
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// A task or thread failed; `what` names it when the message did.
    #[error("{}{cause}", what.map(|w| format!("{w} failed: ")).unwrap_or_default())]
    Task {
        /// Which task.
        what: Option<&'static str>,
        /// Why.
        cause: String,
    },
    /// No `[[mysql]]` section says where to restore to.
    #[error("no [[mysql]] section tells where to restore to (hint: add one with the server's connection settings)")]
    NoConnection,
    /// No such job (drills).
    #[error("no job named `{name}`")]
    NoJob {
        /// The name asked for.
        name: String,
    },
    /// Another drill of the job holds its lock.
    #[error("{cause}")]
    Locked {
        /// The lock's message.
        cause: String,
    },
    /// The media drill failed.
    #[error("{cause}")]
    Media {
        /// Its message.
        cause: String,
    },
    /// The snapshot cannot be decrypted here.
    #[error("{cause}")]
    Decrypt {
        /// The storage's message.
        cause: String,
    },
    /// The manifest names no data object.
    #[error("manifest `{key}` lists no data")]
    NoData {
        /// The manifest's key.
        key: String,
    },
    /// The `--to-file` target exists.
    #[error("{} already exists (hint: choose another --to-file path)", shell(&path.to_string_lossy()))]
    FileExists {
        /// The path.
        path: PathBuf,
    },
    /// Looking at a target database failed.
    #[error("checking {} on {endpoint}: {cause}", sql_ident(database))]
    Checking {
        /// The database.
        database: String,
        /// The server.
        endpoint: String,
        /// Why.
        cause: MysqlError,
    },
    /// A new target database exists and is not empty.
    #[error("database {} already exists with {tables} tables and views; nothing was changed (hint: pick another --to-database, drop it, or use --in-place)", sql_ident(database))]
    NotEmpty {
        /// The database.
        database: String,
        /// Its tables and views.
        tables: usize,
    },
    /// The snapshot's job is a media job in this config.
    #[error("snapshot {id} is a MySQL dump under job {}, which this config has as a [[media]] job; not restored (hint: someone else wrote it: check who can write the bucket)", printable(job))]
    WrongKind {
        /// The snapshot.
        id: String,
        /// Its job.
        job: String,
    },
    /// An in-place restore of a database its job does not back up.
    #[error("snapshot {id} would replace {} in place, a database job {} does not back up; nothing was changed (hint: restore it side by side, or with --to-database)", sql_ident(database), printable(job))]
    NotBackedUp {
        /// The snapshot.
        id: String,
        /// The database.
        database: String,
        /// Its job.
        job: String,
    },
    /// Creating the target database failed.
    #[error(
        "cannot create database {} on {endpoint}: {cause}",
        sql_ident(database)
    )]
    CreateDatabase {
        /// The database.
        database: String,
        /// The server.
        endpoint: String,
        /// Why.
        cause: MysqlError,
    },
    /// The server's clock could not be read.
    #[error("the server did not say its time")]
    NoServerTime,
    /// No randomness for a load account.
    #[error("no randomness: {cause}")]
    Randomness {
        /// Why.
        cause: String,
    },
    /// The load account could not be made.
    #[error("cannot make the load account that keeps this restore inside {}: {cause} (hint: {})", sql_ident(database), if *privilege { "the restore user needs CREATE USER and its privileges WITH GRANT OPTION; see the README's GRANT for the restore user" } else { "the server refused the account for the reason above; nothing was changed" })]
    LoadAccount {
        /// The target database.
        database: String,
        /// The server's error, the password scrubbed.
        cause: String,
        /// The restore user lacks a privilege.
        privilege: bool,
    },
    /// `SHOW CREATE` returned no row.
    #[error("SHOW CREATE {verb} {} returned nothing", sql_ident(name))]
    ShowCreateEmpty {
        /// TRIGGER, VIEW, …
        verb: &'static str,
        /// The object.
        name: String,
    },
    /// `SHOW CREATE` returned no definition.
    #[error(
        "SHOW CREATE {verb} {}: no definition (hint: the restore user needs privileges on it)",
        sql_ident(name)
    )]
    NoDefinition {
        /// TRIGGER, VIEW, …
        verb: &'static str,
        /// The object.
        name: String,
    },
    /// An event's status clause could not be found.
    #[error("cannot read the status of EVENT {} in {}, so it was not re-created enabled (hint: restore to a file and review it): {ddl}", super::sql::ident(name), sql_ident(database))]
    EventStatus {
        /// The event.
        name: String,
        /// Its database.
        database: String,
        /// Its definition.
        ddl: String,
    },
    /// The data loaded; some objects could not be re-created.
    #[error("the data of {} loaded, but re-creating these objects failed: {}", sql_ident(database), problems.join("; "))]
    Recreate {
        /// The database.
        database: String,
        /// One line per object.
        problems: Vec<String>,
    },
    /// The swap failed before anything was dropped.
    #[error(
        "swapping {} into {} failed, nothing was changed: {cause}",
        sql_ident(staging),
        sql_ident(live)
    )]
    SwapNotStarted {
        /// The staging database.
        staging: String,
        /// The live database.
        live: String,
        /// Why.
        cause: MysqlError,
    },
    /// The swap's rename failed; the live tables are untouched.
    #[error(
        "swapping {} into {} failed, the live tables were not touched: {cause}{}",
        sql_ident(staging),
        sql_ident(live),
        put_back_failed(put_back)
    )]
    SwapFailed {
        /// The staging database.
        staging: String,
        /// The live database.
        live: String,
        /// Why.
        cause: Box<MysqlError>,
        /// Objects that could not be put back.
        put_back: Vec<String>,
    },
    /// The tables were swapped; some of the rest failed.
    #[error("the tables were swapped (old ones are in {}), but: {} (their definitions are in the snapshot's dump)", sql_ident(pre), problems.join("; "))]
    SwapPartly {
        /// The pre-restore database.
        pre: String,
        /// What failed.
        problems: Vec<String>,
    },
    /// Reading a stored object failed.
    #[error("reading `{key}` failed: {cause}")]
    ReadObject {
        /// The object.
        key: String,
        /// Why.
        cause: String,
    },
    /// The consumer of a stream went away first (its own error is the cause).
    #[error("the restore stopped reading (see the error above)")]
    Stopped,
    /// A load was stopped because its input was bad (the feeder's error is the cause).
    #[error("stopped")]
    Aborted,
    /// The stored object does not match its manifest.
    #[error("object `{key}` is corrupt: {size} bytes with sha256 {sha256}, the manifest recorded {want_size} bytes with sha256 {want_sha256}; nothing was swapped in (hint: restore an older snapshot with an earlier --date)")]
    Corrupt {
        /// The object.
        key: String,
        /// Bytes read.
        size: u64,
        /// Their hash.
        sha256: String,
        /// Size in the manifest.
        want_size: u64,
        /// Hash in the manifest.
        want_sha256: String,
    },
    /// Decompressing or rewriting the dump failed.
    #[error("reading the dump failed: {cause}")]
    ReadDump {
        /// Why.
        cause: String,
    },
    /// The dump reached outside its target and the server refused it.
    #[error("loading into {t} failed: the dump reached for something outside {t} and the server refused it; nothing else was changed: {} (hint: a snapshot with objects in other databases or other definers, or a forged one; restore it with --to-file and review it)", printable(stderr), t = sql_ident(target))]
    LoadOutside {
        /// The target database.
        target: String,
        /// The client's error.
        stderr: String,
    },
    /// The client failed loading.
    #[error("loading into {} failed: {}", sql_ident(target), with_hint(stderr))]
    Load {
        /// The target database.
        target: String,
        /// The client's error.
        stderr: String,
    },
    /// A drill's database failed.
    #[error("database {} snapshot {snapshot}: {cause}", sql_ident(database))]
    Drill {
        /// The database.
        database: String,
        /// The snapshot.
        snapshot: String,
        /// Why.
        cause: Box<RestoreError>,
    },
    /// A drill's `drill_command` failed.
    #[error("drill_command `{command}` failed ({status}); its last lines: {output}")]
    DrillCommand {
        /// The command.
        command: String,
        /// Its exit status, or why it has none.
        status: String,
        /// Its last output lines.
        output: String,
    },
    /// A restored table cannot be read to its end.
    #[error("table `{table}` is not readable: {cause}")]
    Unreadable {
        /// The table.
        table: String,
        /// Why.
        cause: MysqlError,
    },
    /// Writing `--to-file` failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Rolling forward with the binary log failed.
    #[error(transparent)]
    Binlog(#[from] super::binlog::BinlogRestoreError),
}

fn put_back_failed(put_back: &[String]) -> String {
    if put_back.is_empty() {
        String::new()
    } else {
        format!("; and putting objects back failed: {}", put_back.join("; "))
    }
}

/// Why a `--to-file` restore failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path ends in no file name.
    #[error("--to-file {} names no file", path.display())]
    NoName {
        /// The path.
        path: PathBuf,
    },
    /// Its directory cannot be opened.
    #[error("cannot open the directory of {}: {cause}", path.display())]
    OpenDir {
        /// The path.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// The temporary file is there already.
    #[error("{} already exists ({what}); it was not followed nor overwritten (hint: remove it and restore again)", path.display())]
    Planted {
        /// The temporary file.
        path: PathBuf,
        /// A symlink, or left by an interrupted restore.
        what: &'static str,
    },
    /// The temporary file cannot be created.
    #[error("cannot create {}: {cause}", path.display())]
    Create {
        /// The temporary file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// Writing the temporary file failed.
    #[error("writing {} failed: {cause}", path.display())]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// The target appeared while the restore ran.
    #[error("{} exists (a file or a symlink, there now or made while the restore ran); it was not replaced nor followed (hint: choose another --to-file path)", path.display())]
    Exists {
        /// The path.
        path: PathBuf,
    },
    /// The rename failed.
    #[error("cannot rename {} to {}: {cause}", from.display(), to.display())]
    Rename {
        /// The temporary file.
        from: PathBuf,
        /// The path.
        to: PathBuf,
        /// Why.
        cause: String,
    },
}

impl RestoreError {
    /// A failed `spawn_blocking` task.
    pub fn task(e: tokio::task::JoinError) -> RestoreError {
        RestoreError::Task {
            what: None,
            cause: e.to_string(),
        }
    }
}
