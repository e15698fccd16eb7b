//! `opsagent watch-peer --host web-01`: reads another agent's heartbeat object from this
//! agent's bucket once and says whether that agent is alive and backing up (the check
//! `[[checks.peer]]` runs, for cron on a third machine or by hand). Exit 0 OK, 2 CRIT, 1 when
//! the bucket cannot be read.

use super::Cli;
use crate::error::{Unhealthy, UsageError};
use crate::health::peer::{self, Spec};
use crate::health::state::Level;
use crate::health::{CheckSpec, ProbeSpec, Reading};
use std::time::Duration;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The other agent's host name (its `[agent] hostname`).
    #[arg(long)]
    pub host: String,
    /// Its storage prefix in this bucket; default `<host>/`.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Older heartbeats mean it is down.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
    /// A job whose newest snapshot is older is CRIT; not checked when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_backup_age: Option<Duration>,
}

/// Reads the heartbeat and prints the verdict.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let prefix = match args.prefix.as_deref() {
        None => format!("{}/", args.host),
        Some(p) if p.starts_with('/') || p.split('/').any(|s| s == ".." || s == ".") => {
            return Err(UsageError(format!(
                "--prefix `{p}` is not a valid key prefix (hint: like \"web-01/\")"
            ))
            .into())
        }
        Some(p) if p.is_empty() || p.ends_with('/') => p.to_string(),
        Some(p) => format!("{p}/"),
    };
    let storage = cfg.storage.clone().with_prefix(prefix);
    let spec = Spec {
        host: args.host.clone(),
        storage,
        max_age: args.max_age,
        max_backup_age: args.max_backup_age,
    };
    let check = CheckSpec {
        name: format!("peer:{}", args.host),
        interval: Duration::from_secs(60),
        hold: Duration::ZERO,
        timeout: Duration::from_secs(30),
        probe: ProbeSpec::Peer(spec.clone()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sample = rt
        .block_on(async { tokio::time::timeout(check.timeout, peer::probe(&check, &spec)).await });
    let Ok(sample) = sample else {
        anyhow::bail!("reading the heartbeat of {} timed out after 30s", args.host);
    };
    match sample.reading {
        Reading::Judged {
            level: Level::Ok, ..
        } => {
            println!("OK {}", sample.detail);
            Ok(())
        }
        Reading::Failed => anyhow::bail!("{}", sample.detail),
        _ => {
            println!("CRIT {}", sample.detail);
            Err(Unhealthy::Critical.into())
        }
    }
}
