//! One run of a job at a time, across the daemon and CLI commands: an exclusive `flock` on
//! `state_dir/locks/<job>.lock`, which also holds the holder's pid and start time for the
//! message a second caller gets. The kernel drops the lock when the holder dies.

use std::fs::{File, OpenOptions};
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
}

/// Held while a job runs; released on drop.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

impl JobLock {
    /// Takes the lock of `job` or says who holds it.
    pub fn acquire(state_dir: &Path, job: &str) -> Result<JobLock, LockError> {
        let dir = state_dir.join("locks");
        let path = dir.join(format!("{job}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
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
}
