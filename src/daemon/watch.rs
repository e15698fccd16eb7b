//! Watches the configuration file with `notify` and asks for a reload when it changes.
//!
//! The parent directory is watched, not the file: editors and config management replace files by
//! rename, which a watch on the old inode would miss. Bursts of events are debounced.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Keeps the watcher alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Sends `()` on `tx` (debounced by `settle`) whenever `file` is created, written or renamed.
pub fn watch(file: &Path, tx: mpsc::Sender<()>, settle: Duration) -> notify::Result<ConfigWatch> {
    let file: PathBuf = file.to_path_buf();
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = file.file_name().map(|n| n.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Let the writer finish: collect the burst, then signal once.
            tokio::time::sleep(settle).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(ConfigWatch { _watcher: watcher })
}
