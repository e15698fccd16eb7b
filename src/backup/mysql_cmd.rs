//! A job's MySQL tools: which dump tool and client to run, and its login, for the adapter in
//! `mysql_client` (which spawns them, credentials in memory, never on a command line).

use crate::config::MysqlJob;
use crate::mysql_client::MysqlError;
use std::path::{Path, PathBuf};

pub use crate::mysql_client::client_tool;

/// The dump tool: the job's `dump_command`, else `mariadb-dump`, else `mysqldump`.
pub fn dump_tool(job: &MysqlJob) -> Result<PathBuf, MysqlError> {
    crate::mysql_client::dump_tool(job.dump_command.as_deref())
}

/// Runs one SQL statement with the client, returning its tab-separated output rows.
pub fn query(job: &MysqlJob, client: &Path, sql: &str) -> Result<Vec<String>, MysqlError> {
    let out = job.login(client).run(
        [
            "--batch",
            "--skip-column-names",
            "--raw",
            "--default-character-set=utf8mb4",
            "-e",
            sql,
        ],
        None,
    )?;
    Ok(out.lines().map(str::to_string).collect())
}
