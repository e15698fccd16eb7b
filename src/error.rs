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

/// Process exit codes; see the module documentation for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Ok = 0,
    /// The work itself failed.
    Failure = 1,
    /// Bad command line or bad configuration.
    Usage = 2,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// An error that knows which exit code it deserves. CLI verbs return `anyhow::Error`; wrapping
/// one in `UsageError` makes `main` exit 2 instead of 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
