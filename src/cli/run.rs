//! `opsagent run`: start the daemon.

use super::Cli;
use crate::config;

/// Loads the configuration and runs the daemon until SIGTERM.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let path = config::path_from(cli.config.as_deref());
    let cfg = config::load(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Keep an idle blocking thread across check intervals instead of starting one per tick.
        .thread_keep_alive(std::time::Duration::from_secs(120))
        .enable_all()
        .build()?;
    rt.block_on(crate::daemon::run(path, cfg))?;
    // Abandoned jobs (past the grace period) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}
