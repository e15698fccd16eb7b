//! Errors of the MySQL adapter.
//!
//! Policy (as `storage::StorageError`): each message names the tool or the thing, the cause in a
//! few words, and a hint when there is one; causes are kept as text, not as `source()`, so
//! `{:#}` chains at the CLI edge do not print them twice. [`MysqlError::Exit`] carries the
//! tool's (capped) stderr, which callers match MySQL error numbers in ([`MysqlError::has_code`]).

use super::hint::{code, with_hint};
use std::path::PathBuf;

/// An error of the MySQL adapter.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// `dump_command` names no program.
    #[error("dump_command `{command}` was not found (hint: give an absolute path or install the MariaDB/MySQL client)")]
    DumpCommandNotFound {
        /// The setting.
        command: String,
    },
    /// No dump tool on PATH.
    #[error("neither mariadb-dump nor mysqldump is on PATH (hint: apt install mariadb-client, or set dump_command)")]
    NoDumpTool,
    /// No binary log reader on PATH.
    #[error(
        "neither mariadb-binlog nor mysqlbinlog is on PATH (hint: apt install mariadb-client)"
    )]
    NoBinlogTool,
    /// No SQL client beside the dump tool nor on PATH.
    #[error("no mariadb or mysql client found (hint: apt install mariadb-client)")]
    NoClient,
    /// The in-memory option file could not be made.
    #[error("cannot prepare credentials: {cause}")]
    Credentials {
        /// Why.
        cause: String,
    },
    /// The tool could not be started.
    #[error("cannot run {}: {cause}", program.display())]
    Spawn {
        /// The tool.
        program: PathBuf,
        /// Why.
        cause: String,
    },
    /// Waiting for the tool failed.
    #[error("cannot wait for {}: {cause}", program.display())]
    Wait {
        /// The tool.
        program: PathBuf,
        /// Why.
        cause: String,
    },
    /// A protocol connection ([`super::Connection`]) could not log in.
    #[error("cannot connect over the client protocol: {cause}")]
    Connect {
        /// Why.
        cause: String,
    },
    /// A statement sent over a protocol connection failed; the server's error with a hint.
    #[error("{}", with_hint(said))]
    Statement {
        /// The server's error (`ERROR n (state): message`) or the connection's.
        said: String,
    },
    /// The protocol connection was already closed.
    #[error("the connection is closed")]
    Closed,
    /// The tool exited unsuccessfully; its stderr with a hint by MySQL error number.
    #[error("{}", with_hint(stderr))]
    Exit {
        /// The tool.
        program: PathBuf,
        /// Its exit code (`None`: killed by a signal).
        status: Option<i32>,
        /// Its stderr (capped, trimmed).
        stderr: String,
    },
}

impl MysqlError {
    /// Whether this is the tool's error with MySQL error number `n`.
    pub fn has_code(&self, n: u32) -> bool {
        match self {
            MysqlError::Exit { stderr, .. } => code(stderr, n),
            MysqlError::Statement { said } => code(said, n),
            _ => false,
        }
    }
}
