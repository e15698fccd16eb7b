//! A run of a `[[mysql]]` job: resolve the database list, dump each database into its own
//! snapshot (data, then manifest), record each in the catalog. One database failing does not
//! stop the others; the run fails if any did.

use super::dump::{dump_to, DumpError, DumpOptions, Dumped};
use super::mysql_cmd::{client_tool, dump_tool, query};
use super::mysql_inspect::{inspect, preamble};
use super::RunReport;
use crate::config::{Databases, MysqlJob};
use crate::mysql_client::{has_dump_history, tool_version, MysqlError, SYSTEM_DATABASES};
use crate::snapshot::commit::commit;
use crate::snapshot::keys::{dump_key, new_id};
use crate::snapshot::manifest::{Encryption, Manifest, ObjectRef, Tools, FORMAT_VERSION};
use crate::snapshot::Env;
use chrono::Utc;

/// A failed run: every failure (one line each), and the bytes that were stored anyway.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(failures))]
pub struct RunError {
    /// Each failed database, or one failure for the whole job.
    pub failures: Vec<Failure>,
    /// Bytes committed by the databases that succeeded.
    pub bytes: u64,
}

/// One failure of a run.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// No dump tool or client to run.
    #[error(transparent)]
    Tools(#[from] MysqlError),
    /// Asking the server for its version and databases failed.
    #[error("{at}: {error}")]
    Server {
        /// `MySQL server <endpoint>`.
        at: String,
        /// Why.
        error: MysqlError,
    },
    /// One database's backup failed.
    #[error("database {} on {at}: {error}", crate::quote::sql_ident(database))]
    Database {
        /// The database.
        database: String,
        /// `MySQL server <endpoint>`.
        at: String,
        /// Why.
        error: DumpError,
    },
    /// The server has no database to back up.
    #[error(
        "{at} has no databases to back up (hint: `databases = [\"*\"]` skips system databases)"
    )]
    NoDatabases {
        /// `MySQL server <endpoint>`.
        at: String,
    },
    /// The run could not go on for a reason of another layer (its message).
    #[error("{0}")]
    Other(String),
}

fn lines(failures: &[Failure]) -> String {
    let v: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    v.join("\n")
}

impl RunError {
    /// A run that failed as a whole, having stored nothing.
    pub fn whole(failure: impl Into<Failure>) -> RunError {
        RunError {
            failures: vec![failure.into()],
            bytes: 0,
        }
    }
}

/// Runs the job once.
pub async fn run(env: &Env, job: &MysqlJob, run_id: i64) -> Result<RunReport, RunError> {
    let tool = dump_tool(job).map_err(RunError::whole)?;
    let client = client_tool(&tool).map_err(RunError::whole)?;
    let at = format!("MySQL server {}", job.endpoint);
    let (j, c) = (job.clone(), client.clone());
    let probe =
        tokio::task::spawn_blocking(move || -> Result<(String, Vec<String>), MysqlError> {
            let version = query(&j, &c, "SELECT VERSION()")?.join("");
            let dbs = match &j.databases {
                Databases::List(v) => v.clone(),
                Databases::All => query(&j, &c, "SHOW DATABASES")?
                    .into_iter()
                    .filter(|d| !SYSTEM_DATABASES.contains(&d.to_ascii_lowercase().as_str()))
                    .collect(),
            };
            Ok((version, dbs))
        });
    let (server, databases) = probe
        .await
        .map_err(|e| RunError::whole(Failure::Other(e.to_string())))?
        .map_err(|error| {
            RunError::whole(Failure::Server {
                at: at.clone(),
                error,
            })
        })?;
    let tools = Tools {
        opsagent: env!("CARGO_PKG_VERSION").to_string(),
        dump: tool_version(&tool).await,
        server,
    };
    let mut report = RunReport::default();
    let mut failures = Vec::new();
    let dump = Dump {
        tool: &tool,
        client: &client,
        history: has_dump_history(&tool),
        tools: &tools,
    };
    for db in &databases {
        match snapshot_one(env, job, &dump, db, run_id).await {
            Ok(Some(m)) => {
                report.bytes += m.stored_size();
                report.snapshots.push(m);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(job = %job.name, database = %db, server = %job.endpoint, error = %e, "database backup failed");
                failures.push(Failure::Database {
                    database: db.clone(),
                    at: at.clone(),
                    error: e,
                });
            }
        }
    }
    if databases.is_empty() {
        failures.push(Failure::NoDatabases { at });
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(RunError {
            failures,
            bytes: report.bytes,
        })
    }
}

/// The tools of a run.
struct Dump<'a> {
    tool: &'a std::path::Path,
    client: &'a std::path::Path,
    /// The dump tool has `--dump-history`.
    history: bool,
    tools: &'a Tools,
}

/// Whether `exclude_tables` leaves table `t` of `db` out of its dumps.
fn excluded(job: &MysqlJob, db: &str, t: &str) -> bool {
    let name = format!("{db}.{t}");
    (job.exclude_tables.iter()).any(|p| crate::alert::silence::matches(p, &name))
}

/// How `db` is dumped, from what the server says about it; `None` when a database listed by
/// `["*"]` has been dropped since (nothing to back up, so no failure).
async fn options(job: &MysqlJob, d: &Dump<'_>, db: &str) -> Result<Option<DumpOptions>, DumpError> {
    let (j, c, name) = (job.clone(), d.client.to_path_buf(), db.to_string());
    let i = tokio::task::spawn_blocking(move || inspect(&j, &c, &name))
        .await
        .map_err(|e| DumpError::Task {
            what: "inspecting the database",
            cause: e.to_string(),
        })??;
    if !i.exists && matches!(job.databases, Databases::All) {
        tracing::warn!(job = %job.name, database = %db, "database was dropped after it was listed; skipped");
        return Ok(None);
    }
    let mut args = Vec::new();
    if !i.versioned.is_empty() {
        if d.history {
            args.push("--dump-history".to_string());
        } else {
            tracing::warn!(job = %job.name, database = %db, tables = %i.versioned.join(", "), "only the current rows of system-versioned tables are dumped: the dump tool has no --dump-history (MariaDB 10.11 or later has)");
        }
    }
    for t in i.tables.iter().filter(|t| excluded(job, db, t)) {
        args.push(format!("--ignore-table={db}.{t}"));
    }
    if !i.floats.is_empty() {
        tracing::warn!(job = %job.name, database = %db, columns = %i.floats.join(", "), "FLOAT columns are dumped with 6 significant digits (as by any mysqldump); use DOUBLE or DECIMAL to keep every digit");
    }
    Ok(Some(DumpOptions {
        args,
        preamble: preamble(&i),
        priority: None,
    }))
}

/// Dumps one database and commits it as a snapshot (`None`: skipped, see [`options`]).
async fn snapshot_one(
    env: &Env,
    job: &MysqlJob,
    d: &Dump<'_>,
    db: &str,
    run_id: i64,
) -> Result<Option<Manifest>, DumpError> {
    let Some(mut opts) = options(job, d, db).await? else {
        return Ok(None);
    };
    opts.priority = Some(env.config.agent.priority);
    let started_at = Utc::now();
    let id = new_id(started_at);
    let mut key = dump_key(&job.name, db, &id);
    let recipients = env.storage.recipients_for(&key);
    if recipients.is_some() {
        // So an admin knows to run `age -d` before `zstd -d`.
        key.push_str(".age");
    }
    let progress = env.progress.clone();
    let mut dumped = dump_to(&env.storage, job, d.tool, db, &key, progress.clone(), &opts).await;
    if matches!(&dumped, Err(e) if e.to_string().contains("transaction-precise")) {
        // --dump-history cannot read history kept by transaction id: dump the current rows.
        tracing::warn!(job = %job.name, database = %db, "a system-versioned table keeps transaction-precise history, which no dump tool can dump: only the current rows are dumped");
        opts.args.retain(|a| a != "--dump-history");
        dumped = dump_to(&env.storage, job, d.tool, db, &key, progress, &opts).await;
    }
    let Dumped {
        put,
        raw_size,
        tables,
        binlog,
    } = dumped?;
    // Verify what the store holds before committing: the object is there, whole.
    let listed = env.storage.list(&key).await?;
    let stored = listed.iter().find(|o| o.key == key).map(|o| o.size);
    if stored != Some(put.size) {
        return Err(DumpError::NotStored {
            key,
            stored,
            sent: put.size,
        });
    }
    let manifest = Manifest {
        format: FORMAT_VERSION,
        id,
        kind: "mysql".into(),
        job: job.name.clone(),
        host: env.config.agent.hostname.clone(),
        item: db.to_string(),
        started_at,
        // Never before the start, should the clock jump back during the dump.
        finished_at: Utc::now().max(started_at),
        objects: vec![ObjectRef {
            key,
            size: put.size,
            sha256: put.sha256,
            raw_size,
            compression: "zstd".into(),
        }],
        tools: d.tools.clone(),
        media: None,
        tables: Some(tables),
        binlog,
        encryption: recipients.map(|recipients| Encryption {
            scheme: "age".into(),
            recipients,
        }),
    };
    commit(env, &manifest, run_id)
        .await
        .map_err(DumpError::Commit)?;
    tracing::info!(job = %job.name, database = %db, snapshot = %manifest.id, bytes = put.size, raw = raw_size, "snapshot committed");
    super::anomaly::check(env, job.anomaly_drop, &job.anomaly_expected, &manifest);
    Ok(Some(manifest))
}
