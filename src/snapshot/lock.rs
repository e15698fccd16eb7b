//! One run of a job at a time, across the daemon and CLI commands: an exclusive `flock` on
//! `state_dir/locks/<job>.lock`, which also holds the holder's pid and start time for the
//! message a second caller gets. The kernel drops the lock when the holder dies.
//!
//! Root-run verbs take these locks too, in a directory the opsagent user owns: `locks/` and the
//! lock file are opened without following a symlink (see `nofollow`), the file is created 0600.

use crate::nofollow::{symlink_in, Dir};
use crate::quote;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else runs the job.
    #[error("job `{job}` is already running ({holder}) (hint: wait for it to finish, or see `opsagent status`)")]
    Busy {
        /// The job.
        job: String,
        /// "since …, pid …" as written by the holder.
        holder: String,
    },
    /// The lock file cannot be created.
    #[error(
        "cannot create the lock file {path}: {source} (hint: check that state_dir is writable)"
    )]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A symlink stands where the lock file or `locks/` should be; it was not followed.
    #[error("refusing the lock file {}: {} is a symlink, and opsagent does not follow links in state_dir (hint: remove it with `rm -- {}`, and find out who planted it: only the opsagent user and root write there)", .path.display(), .link.display(), quote::shell(&.link.to_string_lossy()))]
    Symlink {
        /// The lock file.
        path: PathBuf,
        /// The symlink (the lock file or a directory on the way).
        link: PathBuf,
    },
}

/// Held while a job runs; released on drop.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock of `job` or says who holds it.
    pub fn acquire(state_dir: &Path, job: &str) -> Result<JobLock, LockError> {
        let name = format!("{job}.lock");
        let path = state_dir.join("locks").join(&name);
        let io = |source: std::io::Error| match symlink_in(&source) {
            Some(s) => LockError::Symlink {
                path: path.clone(),
                link: s.path.clone(),
            },
            None => LockError::Io {
                path: path.clone(),
                source,
            },
        };
        let dir = Dir::open(state_dir, Path::new("locks"), true).map_err(io)?;
        let mut file = dir.open_or_create(OsStr::new(&name), 0o600).map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    job: job.to_string(),
                    holder: if holder.is_empty() {
                        "by another process".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let note = format!(
            "since {}, pid {}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S %Z"),
            std::process::id()
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(note.as_bytes()).map_err(io)?;
        Ok(JobLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = JobLock::acquire(dir.path(), "main").unwrap();
        let err = JobLock::acquire(dir.path(), "main")
            .unwrap_err()
            .to_string();
        assert!(err.contains("job `main` is already running"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        JobLock::acquire(dir.path(), "other").unwrap();
        drop(held);
        JobLock::acquire(dir.path(), "main").unwrap();
    }

    #[test]
    fn a_symlink_at_the_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("passwd");
        std::fs::write(&victim, "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::create_dir(dir.path().join("locks")).unwrap();
        let lock = dir.path().join("locks/main.lock");
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let err = JobLock::acquire(dir.path(), "main").unwrap_err();
        assert!(matches!(err, LockError::Symlink { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&lock.display().to_string()) && msg.contains("rm -- "),
            "{msg}"
        );
        let victim_text = std::fs::read_to_string(&victim).unwrap();
        assert_eq!(victim_text, "root:x:0:0::/root:/bin/sh\n");
    }
}
