//! Writes this agent's heartbeat object (`health::peer::HEARTBEAT_KEY`) under its prefix every
//! check interval, for the peers that watch it (`[[checks.peer]]`, `opsagent watch-peer`).
//! Written only by an agent with jobs, and only while no other agent owns the prefix; failures
//! are logged once per outage and never stop anything else.

use crate::health::peer::{Presence, HEARTBEAT_KEY};
use crate::log_throttle::{Repeated, Report};
use crate::snapshot::Env;
use bytes::Bytes;
use std::time::Instant;

/// Runs until aborted (the daemon restarts it with a reloaded configuration).
pub async fn run(env: Env) {
    let mut trouble = Repeated::default();
    let mut tick = tokio::time::interval(env.config.health.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match write(&env).await {
            Ok(()) => {
                if let Some((n, _)) = trouble.succeeded(Instant::now()) {
                    tracing::info!(failed = n, "the heartbeat object is written again");
                }
            }
            Err(e) => match trouble.failed(Instant::now()) {
                Report::First | Report::Again { .. } => {
                    tracing::warn!(error = %e, "cannot write the heartbeat object for peers")
                }
                Report::Quiet => {}
            },
        }
    }
}

/// Why the heartbeat object was not written.
#[derive(Debug, thiserror::Error)]
enum PresenceError {
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Claim(#[from] crate::snapshot::claim::OwnerError),
    #[error("gathering the heartbeat failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

async fn write(env: &Env) -> Result<(), PresenceError> {
    // An agent with no jobs writes nothing to storage (a fresh install must not fill its
    // default local storage, which a purge then has to keep).
    if env.config.job_names().is_empty() {
        return Ok(());
    }
    crate::snapshot::claim::check_only(env).await?;
    let (catalog, host) = (env.catalog.clone(), env.config.agent.hostname.clone());
    let jobs: Vec<String> = env
        .config
        .job_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let presence =
        tokio::task::spawn_blocking(move || Presence::of(&host, &jobs, &catalog)).await??;
    let json = serde_json::to_vec_pretty(&presence).expect("presence serializes");
    env.storage
        .put_bytes(HEARTBEAT_KEY, Bytes::from(json))
        .await?;
    Ok(())
}
