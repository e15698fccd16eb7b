//! Exit codes, and the policy for errors.
//!
//! Error policy (docs/ARCHITECTURE.md): library modules return `thiserror` enums whose variants
//! carry what an operator needs to act (file:line:col, database, bucket/key, endpoint) and end
//! with a hint; `anyhow` appears only at the CLI edge. Secrets never appear in an error.
//!
//! The one exit-code table of the `opsagent` binary:
//!
//! | code | meaning                                                                 |
//! |------|-------------------------------------------------------------------------|
//! | 0    | success                                                                 |
//! | 1    | the work failed (a backup, a storage probe, a restore)                  |
//! | 2    | usage or configuration error (bad flag, bad config, unknown job)        |
//!
//! `opsagent status` reports health Nagios-style, for monitoring scripts ([`Unhealthy`]):
//!
//! | code | meaning                                                                 |
//! |------|-------------------------------------------------------------------------|
//! | 0    | every check OK                                                          |
//! | 1    | a warning: a WARN, UNKNOWN or STALE check, or a mail the server refused |
//! | 2    | a critical check (or a configuration error, as for every verb)          |

/// Process exit codes; see the module documentation for the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Ok,
    /// The work itself failed.
    Failure,
    /// Bad command line or bad configuration.
    Usage,
    /// `status`: the worst check is a warning.
    Warning,
    /// `status`: a check is critical.
    Critical,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure | Exit::Warning => 1,
            Exit::Usage | Exit::Critical => 2,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

/// An error that knows which exit code it deserves. CLI verbs return `anyhow::Error`; wrapping
/// one in `UsageError` makes `main` exit 2 instead of 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What `status` returns when the health it printed is not OK: the exit code says how bad
/// ([`Exit::Warning`], [`Exit::Critical`]); the report is already on stdout, so `main` prints
/// nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    /// A WARN, UNKNOWN or STALE check, or a refused mail.
    #[error("status: warning (see the report above)")]
    Warning,
    /// A CRIT check.
    #[error("status: critical (see the report above)")]
    Critical,
}

impl Unhealthy {
    /// Its exit code.
    pub fn exit(self) -> Exit {
        match self {
            Unhealthy::Warning => Exit::Warning,
            Unhealthy::Critical => Exit::Critical,
        }
    }
}
