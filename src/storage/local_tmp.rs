//! Temp files of the local-directory backend: each upload writes `<pid>-<n>.tmp` in
//! `.opsagent-tmp/` and holds an exclusive `flock` on it until the file is renamed into place
//! or removed. A run killed outright (SIGKILL, OOM, power cut) leaves its temp file behind; the
//! kernel drops its lock with the process. [`sweep`] removes such leftovers: a temp file is
//! removed only when it is older than [`LEFTOVER_AFTER`] *and* its lock can be taken, so a file
//! a running backup (in this process or another) is writing is never touched, however long
//! the backup takes. The age guards against a writer between `create` and `flock`.

use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::{flock, FlockOperation};

/// Temp files younger than this are never removed.
pub(crate) const LEFTOVER_AFTER: Duration = Duration::from_secs(3600);

/// How often a backend sweeps its temp directory (at its next upload).
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Takes the writer's lock on a temp file just created.
pub(crate) fn lock(file: &impl std::os::fd::AsFd) -> io::Result<()> {
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
}

/// Sweeps `dir` unless `swept` (the backend's last sweep) is under [`SWEEP_EVERY`] ago;
/// failures are logged and never fail the upload that triggered it.
pub(crate) async fn sweep_now_and_then(swept: &Mutex<Option<Instant>>, dir: &Path) {
    {
        let mut swept = swept.lock().unwrap_or_else(|p| p.into_inner());
        if swept.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        *swept = Some(Instant::now());
    }
    let owned = dir.to_path_buf();
    let done = tokio::task::spawn_blocking(move || sweep(&owned, SystemTime::now())).await;
    match done {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            tracing::info!(dir = %dir.display(), removed = n, "removed temp files left by interrupted runs")
        }
        Ok(Err(e)) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot sweep leftover temp files")
        }
        Err(e) => tracing::warn!(error = %e, "temp file sweep panicked"),
    }
}

/// Removes leftover temp files in `dir` (see the module doc); returns how many.
pub(crate) fn sweep(dir: &Path, now: SystemTime) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= LEFTOVER_AFTER);
        let ours = path.extension().is_some_and(|e| e == "tmp");
        if !meta.is_file() || !old || !ours {
            continue;
        }
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        match lock(&file) {
            // Nobody holds it: its writer is gone. Removed while we hold the lock.
            Ok(()) => match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), size = meta.len(), "removed a temp file left by an interrupted run");
                    removed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!(path = %path.display(), "old temp file still being written; left alone");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unlocked_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"partial").unwrap();
            p
        };
        let (dead, live, other) = (mk("1-0.tmp"), mk("1-1.tmp"), mk("notes.txt"));
        let young = mk("1-2.tmp");
        let held = std::fs::File::open(&live).unwrap();
        lock(&held).unwrap();
        let later = SystemTime::now() + LEFTOVER_AFTER + Duration::from_secs(1);
        assert_eq!(sweep(dir.path(), SystemTime::now()).unwrap(), 0);
        assert!(young.exists());
        assert_eq!(
            sweep(dir.path(), later).unwrap(),
            2,
            "dead and young, both unlocked"
        );
        assert!(!dead.exists() && !young.exists());
        assert!(live.exists(), "a locked file is being written");
        assert!(other.exists(), "not a temp file of ours");
        drop(held);
        assert_eq!(sweep(dir.path(), later).unwrap(), 1);
        assert_eq!(sweep(&dir.path().join("missing"), later).unwrap(), 0);
    }
}
