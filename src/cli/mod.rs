//! The command line: argument definitions (clap) and one file per verb. Verbs print; the work
//! lives in the library modules.

pub mod ack;
pub mod backup;
mod check_binlog;
pub mod check_config;
pub mod generate;
pub mod notify_test;
pub mod prune;
pub mod restore;
pub mod run;
pub mod silence;
pub mod snapshots;
pub mod status;
pub mod verify;
pub mod watch_peer;

use crate::catalog::Catalog;
use crate::config::{self, Config};
use crate::snapshot::Env;
use crate::storage::Storage;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

/// opsagent: backups, health checks and alerts for one server.
#[derive(Debug, Parser)]
#[command(name = "opsagent", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $OPSAGENT_CONFIG, else /etc/opsagent/opsagent.toml]
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scheduled backups (what systemd starts).
    Run,
    /// Validate the configuration and show what will run; exit 2 on errors.
    CheckConfig(check_config::Args),
    /// Run backup jobs now (all when none are named); exit 1 if any failed.
    Backup(backup::Args),
    /// List snapshots, newest first.
    Snapshots(snapshots::Args),
    /// Apply retention now (or show it with --dry-run).
    Prune(prune::Args),
    /// Health at a glance: checks, last backups and drills; exit 0 OK, 1 warnings, 2 critical.
    Status(status::Args),
    /// Restore databases or files as of a date (side by side by default; --in-place, --to-file,
    /// --to-dir, --path; --all: disaster recovery, everything in place).
    Restore(Box<restore::Args>),
    /// Restore drill: restore the newest snapshots into scratch databases and check them; for
    /// media jobs, check every pack and chunk of the newest snapshot.
    Verify(verify::Args),
    /// Acknowledge the anomaly (a snapshot that shrank sharply) that froze a job's retention;
    /// retention resumes.
    Ack(ack::Args),
    /// Mute alerts of a check for a while: add, list, rm.
    Silence(silence::Args),
    /// Send a test mail now and say exactly where it failed if it did.
    NotifyTest(notify_test::Args),
    /// Read another agent's heartbeat from the bucket: alive and backing up? Exit 0 OK, 2 CRIT.
    WatchPeer(watch_peer::Args),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets(generate::Args),
}

/// Loads the configuration named by `--config`/`OPSAGENT_CONFIG`/the default.
pub fn load_config(cli: &Cli) -> Result<Config, config::ConfigErrors> {
    config::load(&config::path_from(cli.config.as_deref()))
}

/// The jobs a verb works on: those named (each must exist), or all when none are; at least one.
pub fn select_jobs(
    cfg: &Config,
    named: &[String],
) -> Result<Vec<String>, crate::error::UsageError> {
    let all = cfg.job_names();
    if let Some(n) = named.iter().find(|n| !all.contains(&n.as_str())) {
        return Err(crate::error::UsageError(format!(
            "no job named `{n}` in {} (jobs: {})",
            cfg.file.display(),
            if all.is_empty() {
                "none".to_string()
            } else {
                all.join(", ")
            }
        )));
    }
    if all.is_empty() {
        return Err(crate::error::UsageError(format!(
            "{} defines no backup jobs (hint: add a [[mysql]] section)",
            cfg.file.display()
        )));
    }
    Ok(if named.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        named.to_vec()
    })
}

/// Opens the catalog and storage for a verb that works on backups.
pub fn open_env(config: Config) -> anyhow::Result<Env> {
    let catalog = Arc::new(Catalog::open(&config.catalog_path())?);
    let storage = config.open_storage(&config.storage, config.storage_limits)?;
    Ok(Env {
        config: Arc::new(config),
        storage,
        catalog,
        progress: None,
        copy: None,
    })
}

/// The copy storage `name` (`[storage.NAME]`) of `cfg`, opened; a usage error naming the copy
/// storages there are when there is none of that name.
pub fn copy_storage(cfg: &Config, name: &str) -> anyhow::Result<Storage> {
    let Some(c) = cfg.copies.iter().find(|c| c.name == name) else {
        let names: Vec<&str> = cfg.copies.iter().map(|c| c.name.as_str()).collect();
        return Err(crate::error::UsageError(format!(
            "no copy storage `{name}` (hint: {})",
            match names.is_empty() {
                true => "the configuration declares none; add [storage.NAME]".to_string(),
                false => format!("the copy storages are {}", names.join(", ")),
            }
        ))
        .into());
    };
    Ok(cfg.open_storage(&c.spec, c.limits)?)
}

/// `--take-over`: claims the storage prefix for this agent, saying whom it replaced.
pub fn take_over(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    me: &crate::snapshot::claim::Identity,
) -> anyhow::Result<()> {
    use crate::snapshot::claim::{ensure, Claim};
    let at = storage.describe();
    match rt.block_on(ensure(storage, me, true))? {
        Claim::TakenOver { previous } => println!("took over {at} from {}", previous.who()),
        Claim::Created => println!("claimed {at} for this agent"),
        Claim::Ours => println!("{at} already belongs to this agent"),
    }
    Ok(())
}

pub use crate::quote::human_bytes;

/// A single-threaded-enough runtime for CLI verbs.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// The exit code for an error returned by a CLI verb (the tables are in `error`): usage and
/// configuration errors exit 2, the health `status` found by how bad it is, everything else 1.
pub fn exit_code_for(err: &anyhow::Error) -> crate::error::Exit {
    use crate::error::{Exit, Unhealthy, UsageError};
    for cause in err.chain() {
        if cause.is::<UsageError>() || cause.is::<crate::config::ConfigErrors>() {
            return Exit::Usage;
        }
        if let Some(u) = cause.downcast_ref::<Unhealthy>() {
            return u.exit();
        }
    }
    Exit::Failure
}
