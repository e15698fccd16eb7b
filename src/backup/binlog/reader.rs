//! The binary log reader: `mariadb-binlog --read-from-remote-server --raw --stop-never` (or
//! `mysqlbinlog`) copying the server's binary log files into the spool as they are written.

use super::ArchiveError;
use crate::config::MysqlJob;
use crate::mysql_client::{MysqlError, Running};
use std::path::Path;

/// The reader process; killed when dropped.
pub(super) struct Reader(Option<Running>, String);

impl Reader {
    pub(super) fn start(job: &MysqlJob, spool: &Path, file: &str) -> Result<Reader, ArchiveError> {
        let tool = crate::mysql_client::which("mariadb-binlog")
            .or_else(|| crate::mysql_client::which("mysqlbinlog"))
            .ok_or(MysqlError::NoBinlogTool)?;
        let program = tool.display().to_string();
        let args = [
            "--read-from-remote-server".to_string(),
            "--raw".to_string(),
            "--stop-never".to_string(),
            format!("--stop-never-slave-server-id={}", server_id(&job.name)),
            format!("--result-file={}/", spool.display()),
            file.to_string(),
        ];
        let running = job.login(&tool).spawn_tied(args)?;
        Ok(Reader(Some(running), program))
    }

    /// Why the reader stopped, from its stderr.
    pub(super) fn stopped(mut self) -> ArchiveError {
        let stderr = match self.0.take().map(Running::finish) {
            Some(Ok(f)) => f.stderr.trim().to_string(),
            Some(Err(e)) => e.to_string(),
            None => String::new(),
        };
        ArchiveError::Reader {
            program: std::mem::take(&mut self.1),
            stderr,
        }
    }

    /// Whether the reader has exited.
    pub(super) fn exited(&mut self) -> bool {
        self.0.as_mut().is_none_or(Running::exited)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(mut r) = self.0.take() {
            r.kill();
            let _ = r.finish();
        }
    }
}

/// The server id the reader presents (a replica's id must be unique on the server): derived
/// from the job's name, in a range real replicas rarely use.
fn server_id(job: &str) -> u32 {
    let h = job.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    3_000_000_000 + h % 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_and_in_range() {
        assert_eq!(server_id("main"), server_id("main"));
        assert_ne!(server_id("main"), server_id("shop"));
        assert!(server_id("main") >= 3_000_000_000);
    }
}
