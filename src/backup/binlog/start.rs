//! Where an archiving session starts: the server's files and the last committed segment.

use super::ArchiveError;
use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;

/// The server's binary log files, oldest first (`SHOW BINARY LOGS`).
pub(super) async fn server_files(job: &MysqlJob) -> Result<Vec<String>, ArchiveError> {
    let dump = crate::mysql_client::dump_tool(job.dump_command.as_deref())?;
    let client = crate::mysql_client::client_tool(&dump)?;
    let (j, c) = (job.clone(), client.clone());
    let out = tokio::task::spawn_blocking(move || {
        crate::backup::mysql_cmd::query(&j, &c, "SHOW BINARY LOGS")
    })
    .await
    .map_err(|e| MysqlError::Wait {
        program: client.clone(),
        cause: e.to_string(),
    })?;
    let files: Vec<String> = match out {
        Ok(rows) => (rows.iter())
            .filter_map(|l| l.split('\t').next())
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty() && !f.contains('/'))
            .collect(),
        // ER_NO_BINARY_LOGGING: "You are not using binary logging".
        Err(e) if e.has_code(1381) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if files.is_empty() {
        return Err(ArchiveError::NoBinlog {
            job: job.name.clone(),
        });
    }
    Ok(files)
}

/// Where a session starts: after the last committed segment, else at the start of the
/// server's current file. When the server no longer has the file to resume in (it purged it
/// while archiving was stopped), at its oldest file: the archive has a gap there, which a
/// restore past it refuses, naming it.
pub(super) fn start_point(
    job: &str,
    resume: Option<(String, u64)>,
    server: &[String],
) -> (String, u64) {
    let oldest = server.first().cloned().unwrap_or_default();
    let current = server.last().cloned().unwrap_or_default();
    match resume {
        None => (current, 0),
        Some((file, _)) if file < oldest => {
            tracing::error!(%job, missing_from = %file, resumes_at = %oldest, "the server purged binary logs before they were archived: the archive has a gap; restores past it are refused until the next dump");
            (oldest, 0)
        }
        Some(at) => at,
    }
}
