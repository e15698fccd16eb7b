//! Restore drills (`opsagent verify`, and `verify_schedule` in the daemon): the newest snapshot
//! of each database of a job is restored into a scratch database, checked, and dropped. A backup
//! nobody has restored is a hope; a drill makes it a fact, and records how long it took (RTO).
//! Media jobs have their own drill (`media::verify`): every pack and blob of the newest snapshot.

use super::media::verify::{self as media_verify, MediaDrill};
use super::plan::{all_snapshots, break_ties, choose, load, Filter};
use super::sql;
use super::RestoreError;
use crate::catalog::RunStatus;
use crate::mysql_client::{client_tool, dump_tool};
use crate::snapshot::Env;
use chrono::Utc;
use sql::ident;

/// The result of one database's drill.
#[derive(Debug, Clone)]
pub struct Drill {
    /// Database.
    pub database: String,
    /// Snapshot id.
    pub snapshot: String,
    /// Tables found readable.
    pub tables: usize,
    /// Rows counted.
    pub rows: u64,
    /// Seconds the restore took.
    pub seconds: f64,
    /// With a binary log archive: the moment the copy was rolled forward to, and how it
    /// compared with the live database.
    pub rolled: Option<(chrono::DateTime<Utc>, super::binlog::drill::Compared)>,
}

/// What a drill checked.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A MySQL job: one drill per database.
    Databases(Vec<Drill>),
    /// A media job: its newest snapshot's packs and blobs.
    Files(MediaDrill),
}

/// Runs the drill for job `name` (MySQL or media), recording it in the catalog as a `verify`
/// run, which the job's `backup:` health check reads.
pub async fn run_drill(env: &Env, name: &str) -> Result<Outcome, RestoreError> {
    let media = env.config.media.iter().any(|j| j.name == name);
    let job = match media {
        true => None,
        false => Some(
            env.config
                .mysql
                .iter()
                .find(|j| j.name == name)
                .ok_or_else(|| RestoreError::NoJob {
                    name: name.to_string(),
                })?
                .for_restore(),
        ),
    };
    let _lock = crate::snapshot::lock::JobLock::acquire(
        &env.config.agent.state_dir,
        &format!("verify-{name}"),
    )
    .map_err(|e| RestoreError::Locked {
        cause: e.to_string(),
    })?;
    let run_id = env.catalog.start_run(name, "verify", "drill", Utc::now())?;
    let result = match &job {
        Some(job) => drill(env, job).await.map(Outcome::Databases),
        None => media_verify::drill(&env.storage, name, env.config.agent.zone)
            .await
            .map(Outcome::Files)
            .map_err(|e| RestoreError::Media {
                cause: e.to_string(),
            }),
    };
    let (status, err) = match &result {
        Ok(_) => (RunStatus::Success, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string().replace('\n', "; "))),
    };
    let bytes = match &result {
        Ok(Outcome::Files(d)) => d.downloaded,
        _ => 0,
    };
    env.catalog
        .finish_run(run_id, status, bytes, err.as_deref(), Utc::now())?;
    match &result {
        Ok(Outcome::Databases(d)) => {
            tracing::info!(job = name, databases = d.len(), "restore drill passed")
        }
        Ok(Outcome::Files(d)) => {
            tracing::info!(
                job = name,
                packs = d.packs,
                blobs = d.blobs,
                "restore drill passed"
            )
        }
        Err(e) => tracing::error!(job = name, error = %e, "restore drill FAILED"),
    }
    result
}

async fn drill(env: &Env, job: &crate::config::MysqlJob) -> Result<Vec<Drill>, RestoreError> {
    let snaps = all_snapshots(&env.storage).await?;
    let filter = Filter {
        jobs: vec![job.name.clone()],
        databases: vec![],
    };
    let chosen = choose(&snaps, &filter, Utc::now(), env.config.agent.zone)?;
    let chosen = load(
        &env.storage,
        break_ties(&env.storage, &snaps, chosen).await?,
    )
    .await?;
    let client = client_tool(&dump_tool(job.dump_command.as_deref())?)?;
    let mut out = Vec::new();
    for c in chosen {
        out.push(drill_one(env, (job, &client), &c).await?);
    }
    Ok(out)
}

/// The drill of one database's snapshot `c`: loaded (and rolled forward) into a scratch
/// database, checked, dropped.
async fn drill_one(
    env: &Env,
    (job, client): (&crate::config::MysqlJob, &std::path::Path),
    c: &super::plan::Chosen,
) -> Result<Drill, RestoreError> {
    let client = client.to_path_buf();
    // Unique, and created here (never dropped unless this drill created it).
    let scratch = format!(
        "opsagent_verify_{}_{}",
        &c.key.id.replace('-', "_").to_ascii_lowercase(),
        super::random_hex(4)
    );
    let obj = c
        .manifest
        .objects
        .first()
        .ok_or_else(|| RestoreError::NoData {
            key: c.key.key.clone(),
        })?
        .clone();
    super::decryptable(&env.storage, c)?;
    let roll = super::binlog::drill::plan_for_drill(&env.storage, job, c, Utc::now()).await?;
    let work = super::binlog::work_dir(&env.config.agent.state_dir);
    let started = std::time::Instant::now();
    let (j, cl, s) = (job.clone(), client.clone(), scratch.clone());
    tokio::task::spawn_blocking(move || {
        sql::create_database(&j, &cl, &s, &super::Target::SideBySide)
    })
    .await
    .map_err(RestoreError::task)??;
    let loaded = super::load_isolated(
        &env.storage,
        (job, &client),
        &obj,
        (&c.manifest.item, &scratch, &[]),
        (
            super::AfterLoad::Copy,
            roll.as_ref().map(|r| (r, work.as_path())),
        ),
        None,
    )
    .await
    .map(|_| ());
    let checked = match loaded {
        Ok(()) => {
            let (j, cl, s) = (job.clone(), client.clone(), scratch.clone());
            tokio::task::spawn_blocking(move || check_copy(&j, &cl, &s))
                .await
                .map_err(RestoreError::task)?
        }
        Err(e) => Err(e),
    };
    let checked = match (checked, &roll) {
        (Ok(counted), Some(rf)) => {
            let source = c.manifest.item.as_str();
            super::binlog::drill::check_against_live(env, (job, &client), source, rf, &counted)
                .await
                .map(|compared| (counted, Some((rf.to, compared))))
        }
        (checked, _) => checked.map(|counted| (counted, None)),
    };
    let (j, cl, s) = (job.clone(), client.clone(), scratch.clone());
    let _ = tokio::task::spawn_blocking(move || {
        sql::run(&j, &cl, &format!("DROP DATABASE IF EXISTS {};", ident(&s)))
    })
    .await;
    let (counted, rolled) = checked.map_err(|e| RestoreError::Drill {
        database: c.manifest.item.clone(),
        snapshot: c.key.id.clone(),
        cause: Box::new(e),
    })?;
    Ok(Drill {
        database: c.manifest.item.clone(),
        snapshot: c.key.id.clone(),
        tables: counted.len(),
        rows: counted.iter().map(|(_, n)| n).sum(),
        seconds: started.elapsed().as_secs_f64(),
        rolled,
    })
}

/// The scratch copy `db` passes: every table reads to its end, then the job's `drill_command`
/// (when set) exits 0. Returns the tables and rows.
fn check_copy(
    job: &crate::config::MysqlJob,
    client: &std::path::Path,
    db: &str,
) -> Result<Vec<(String, u64)>, RestoreError> {
    let counted = super::binlog::drill::counts(job, client, db)?;
    if let Some(cmd) = &job.drill_command {
        let said = super::drill_command::run(job, client, db, cmd)?;
        tracing::info!(job = %job.name, database = db, command = %cmd, output = %said, "drill command passed");
    }
    Ok(counted)
}
