//! `opsagent run`: start the daemon; signals become [`Control`]s for it.

use super::Cli;
use crate::config;
use crate::daemon::Control;
use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Loads the configuration and runs the daemon until SIGTERM or SIGINT; SIGHUP reloads.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let path = config::path_from(cli.config.as_deref());
    let cfg = config::load(&path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // File reads of checks and media work run here; bounded under the unit's TasksMax.
        .max_blocking_threads(64)
        // Keep an idle blocking thread across check intervals instead of starting one per tick.
        .thread_keep_alive(std::time::Duration::from_secs(120))
        .enable_all()
        .build()?;
    rt.block_on(async {
        let control = signals()?;
        crate::daemon::run(path, cfg, control).await?;
        anyhow::Ok(())
    })?;
    // Abandoned jobs (past the grace period) must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Installs the handlers (before the daemon starts, so an early SIGTERM is not lost) and
/// forwards each signal as a [`Control`].
fn signals() -> anyhow::Result<mpsc::Receiver<Control>> {
    let handler =
        |kind, name| signal(kind).with_context(|| format!("cannot set up the {name} handler"));
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = handler(SignalKind::hangup(), "SIGHUP")?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload("SIGHUP"),
            };
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
