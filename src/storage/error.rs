//! Errors of the storage adapter.
//!
//! Policy: every error an operator can see names the backend (`s3://bucket/prefix/ at
//! endpoint`, or the local directory), the key where there is one, the operation, the cause
//! in a few words, and a hint saying what to try next. Secrets never appear: backends are
//! described by [`super::Storage::describe`], which has none. Causes are kept as text (not
//! as `source()`), so `{:#}` chains at the CLI edge do not print them twice.
//! [`StorageError::NotFound`] is the variant callers match on; the others are for people.

use std::fmt;

/// What the storage was asked to do when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Writing an object (`writer`, `put_bytes`, `finish`).
    Upload,
    /// Reading an object (`reader`, `get_bytes`).
    Download,
    /// Listing objects (`list`, `check_access`).
    List,
    /// Deleting an object.
    Delete,
    /// Asking whether an object exists.
    Stat,
    /// Aborting an unfinished upload.
    Abort,
}

impl Op {
    fn verb_and_preposition(self) -> (&'static str, &'static str) {
        match self {
            Op::Upload => ("upload", "to"),
            Op::Download => ("download", "from"),
            Op::List => ("list", "in"),
            Op::Delete => ("delete", "from"),
            Op::Stat => ("look up", "in"),
            Op::Abort => ("abort the upload of", "to"),
        }
    }
}

/// Formats "upload `key` to", "list objects in", … for error messages.
fn action(op: &Op, key: &Option<String>) -> String {
    let (verb, prep) = op.verb_and_preposition();
    match (op, key.as_deref()) {
        (Op::List, None | Some("")) => format!("{verb} objects {prep}"),
        (Op::List, Some(prefix)) => format!("{verb} `{prefix}*` {prep}"),
        (_, Some(key)) => format!("{verb} `{key}` {prep}"),
        (_, None) => format!("{verb} {prep}"),
    }
}

/// Formats " after N attempts" when an operation was retried.
fn attempts_suffix(attempts: &u32) -> String {
    if *attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

/// An error of the storage adapter. See the module docs for what each message contains.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The key breaks the rules of [`super::validate_key`].
    #[error(
        "invalid object key `{key}`: {reason} (hint: keys are relative paths like \
         `mysql/main/shop/2026-11-20.sql.zst`)"
    )]
    InvalidKey {
        /// The rejected key, with control characters escaped.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// The storage settings cannot work (found without I/O, or reported by the server).
    #[error("invalid storage settings for {backend}: {reason} (hint: {hint})")]
    Config {
        /// The backend, as [`super::Storage::describe`] prints it.
        backend: String,
        /// What is wrong.
        reason: String,
        /// What to change.
        hint: String,
    },

    /// The object does not exist.
    #[error(
        "object `{key}` not found in {backend} (hint: it may never have been uploaded or was \
         pruned; list the storage to see what is there)"
    )]
    NotFound {
        /// The backend, as [`super::Storage::describe`] prints it.
        backend: String,
        /// The missing key, relative to the storage prefix.
        key: String,
    },

    /// The server could not be reached, or kept failing, through all retries.
    #[error(
        "cannot {} {backend}: {cause}{} (hint: is the S3 endpoint reachable? \
         `opsagent check-config --connect` tests it)",
        action(.op, .key),
        attempts_suffix(.attempts)
    )]
    Unreachable {
        /// What was being done.
        op: Op,
        /// The backend, as [`super::Storage::describe`] prints it.
        backend: String,
        /// The key or listing prefix, if any.
        key: Option<String>,
        /// The last failure, in a few words.
        cause: String,
        /// How many times the request was tried.
        attempts: u32,
    },

    /// The credentials or file permissions do not allow the operation.
    #[error("cannot {} {backend}: access denied: {cause} (hint: {hint})", action(.op, .key))]
    Denied {
        /// What was being done.
        op: Op,
        /// The backend, as [`super::Storage::describe`] prints it.
        backend: String,
        /// The key or listing prefix, if any.
        key: Option<String>,
        /// What the server or the OS said.
        cause: String,
        /// What to check.
        hint: &'static str,
    },

    /// Any other failure.
    #[error("cannot {} {backend}: {cause} (hint: {hint})", action(.op, .key))]
    Failed {
        /// What was being done.
        op: Op,
        /// The backend, as [`super::Storage::describe`] prints it.
        backend: String,
        /// The key or listing prefix, if any.
        key: Option<String>,
        /// What went wrong.
        cause: String,
        /// What to try next.
        hint: String,
    },
}

impl StorageError {
    /// True for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// True when the storage refused a delete (an append-only key: it may write, not delete).
    pub fn is_delete_denied(&self) -> bool {
        matches!(self, StorageError::Denied { op: Op::Delete, .. })
    }

    /// The key (or listing prefix) the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            StorageError::InvalidKey { key, .. } | StorageError::NotFound { key, .. } => Some(key),
            StorageError::Unreachable { key, .. }
            | StorageError::Denied { key, .. }
            | StorageError::Failed { key, .. } => key.as_deref(),
            StorageError::Config { .. } => None,
        }
    }
}

/// Where an error happened: the backend description, the operation and the key.
/// Backends build their errors from it.
#[derive(Clone)]
pub(crate) struct ErrorContext<'a> {
    pub backend: &'a str,
    pub op: Op,
    pub key: Option<&'a str>,
}

impl<'a> ErrorContext<'a> {
    /// Context for an operation on one key (or, for [`Op::List`], a prefix).
    pub fn new(backend: &'a str, op: Op, key: &'a str) -> Self {
        ErrorContext {
            backend,
            op,
            key: Some(key),
        }
    }

    /// A [`StorageError::NotFound`] for this key.
    pub fn not_found(&self) -> StorageError {
        StorageError::NotFound {
            backend: self.backend.to_string(),
            key: self.key.unwrap_or_default().to_string(),
        }
    }

    /// A [`StorageError::Failed`] with the given cause and hint.
    pub fn failed(&self, cause: impl fmt::Display, hint: impl Into<String>) -> StorageError {
        StorageError::Failed {
            op: self.op,
            backend: self.backend.to_string(),
            key: self.key.map(str::to_string),
            cause: cause.to_string(),
            hint: hint.into(),
        }
    }

    /// A [`StorageError::Denied`] with the given cause and hint.
    pub fn denied(&self, cause: impl fmt::Display, hint: &'static str) -> StorageError {
        StorageError::Denied {
            op: self.op,
            backend: self.backend.to_string(),
            key: self.key.map(str::to_string),
            cause: cause.to_string(),
            hint,
        }
    }

    /// A [`StorageError::Unreachable`] after `attempts` tries.
    pub fn unreachable(&self, cause: impl fmt::Display, attempts: u32) -> StorageError {
        StorageError::Unreachable {
            op: self.op,
            backend: self.backend.to_string(),
            key: self.key.map(str::to_string),
            cause: cause.to_string(),
            attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3: &str = "s3://backups/web-01/ at http://127.0.0.1:9000";

    #[test]
    fn unreachable_message_names_everything() {
        let ctx = ErrorContext::new(S3, Op::Upload, "mysql/main/shop/x.sql.zst");
        let msg = ctx.unreachable("connection refused", 5).to_string();
        assert_eq!(
            msg,
            "cannot upload `mysql/main/shop/x.sql.zst` to s3://backups/web-01/ at \
             http://127.0.0.1:9000: connection refused after 5 attempts (hint: is the S3 \
             endpoint reachable? `opsagent check-config --connect` tests it)"
        );
    }

    #[test]
    fn list_and_not_found_messages() {
        let ctx = ErrorContext::new(S3, Op::List, "");
        let msg = ctx.failed("boom", "retry").to_string();
        assert!(
            msg.starts_with("cannot list objects in s3://backups/web-01/"),
            "{msg}"
        );
        let ctx = ErrorContext::new(S3, Op::List, "mysql/");
        assert!(ctx
            .failed("x", "y")
            .to_string()
            .contains("list `mysql/*` in"));
        let err = ErrorContext::new(S3, Op::Download, "a/b").not_found();
        assert!(err.is_not_found());
        assert_eq!(err.key(), Some("a/b"));
        assert!(err
            .to_string()
            .starts_with("object `a/b` not found in s3://backups/"));
    }

    #[test]
    fn single_attempt_has_no_suffix() {
        let ctx = ErrorContext::new(S3, Op::Delete, "k");
        let msg = ctx.unreachable("timed out", 1).to_string();
        assert!(
            msg.contains(
                "delete `k` from s3://backups/web-01/ at http://127.0.0.1:9000: timed out (hint"
            ),
            "{msg}"
        );
    }
}
