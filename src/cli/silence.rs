//! `opsagent silence add CHECK --for 2h --reason "…"`, `silence list [--all]`, `silence rm ID`:
//! mute an alert (its state is still recorded and shown by `status`; nothing is mailed).
//! CHECK is a check name as `status` shows it (`disk:/`, `tcp:shop`), `backup-run:JOB` or
//! `drill:JOB` for failed runs, or a prefix ending in `*` (`disk:*`, `*`).

use super::Cli;
use crate::alert::silence::matches;
use crate::catalog::Catalog;
use crate::error::UsageError;
use chrono::Utc;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// `silence` actions.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Mute CHECK for a while.
    Add {
        /// Check name, `backup-run:JOB`, `drill:JOB`, or a prefix ending in `*`.
        check: String,
        /// How long ("2h", "30m", "1d").
        #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Why (shown by `status` and `silence list`).
        #[arg(long)]
        reason: String,
    },
    /// List silences that have not ended (all with --all).
    List {
        /// Also the ended ones.
        #[arg(long)]
        all: bool,
    },
    /// Remove a silence by its id.
    Rm {
        /// The id `silence list` shows.
        id: i64,
    },
}

/// Who runs the verb: the user sudo was run by, else the login name, else the uid.
pub(super) fn who() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// Runs the action.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let cat = Catalog::open(&cfg.catalog_path())?;
    let zone = cfg.agent.zone;
    let now = Utc::now();
    match &args.action {
        Action::Add {
            check,
            duration,
            reason,
        } => {
            if check.is_empty() || check.contains(char::is_whitespace) {
                return Err(UsageError(format!(
                    "`{check}` is not a check name (see `opsagent status`)"
                ))
                .into());
            }
            if duration.is_zero() {
                return Err(UsageError("--for must be longer than 0s".into()).into());
            }
            let end = now + chrono::Duration::from_std(*duration)?;
            let id = cat.add_silence(check, now, end, reason, &who())?;
            println!(
                "silence {id}: {check} until {} ({reason})",
                zone.format(end, "%Y-%m-%d %H:%M %Z")
            );
            let mut known: Vec<String> = cat.check_states()?.into_iter().map(|c| c.check).collect();
            known.extend(cat.alerts()?.into_iter().map(|a| a.key));
            for j in cfg.job_names() {
                known.push(format!("backup-run:{j}"));
                known.push(format!("drill:{j}"));
            }
            if !known.iter().any(|k| matches(check, k)) {
                println!(
                    "note: no check named `{check}` is known yet; `opsagent status` lists them"
                );
            }
        }
        Action::List { all } => {
            let rows = cat.silences((!all).then_some(now))?;
            if rows.is_empty() {
                println!("no silences");
            }
            for s in rows {
                let state = if s.ends_at <= now { "ended" } else { "until" };
                println!(
                    "{:>4}  {:<24} {state} {}  by {}: {}",
                    s.id,
                    s.pattern,
                    zone.format(s.ends_at, "%Y-%m-%d %H:%M %Z"),
                    s.created_by,
                    s.reason
                );
            }
        }
        Action::Rm { id } => {
            if !cat.remove_silence(*id)? {
                return Err(UsageError(format!(
                    "no silence with id {id} (see `opsagent silence list --all`)"
                ))
                .into());
            }
            println!("silence {id} removed");
        }
    }
    Ok(())
}
