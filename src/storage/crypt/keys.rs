//! Keys for the age decorator: parsing recipients (public, from the config) and reading the
//! identity file (secret, read only when something must be decrypted). Errors never quote a
//! line of these files: it may be a secret key.

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::x25519::{Identity, Recipient};

/// Hint for a missing or unusable identity.
pub(super) const IDENTITY_HINT: &str = "set `[encryption] identity_file` to the key file made \
    by `age-keygen` (only needed to restore and verify; keep it off the backup server otherwise)";

/// Why a text is not a recipient, in a few words (never quoting it: it may be a secret key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecipient {
    /// An `AGE-SECRET-KEY-…` line: a secret key where a public one belongs.
    #[error("this is a secret key (an identity), not a recipient")]
    SecretKey,
    /// An SSH public key.
    #[error("SSH recipients are not supported, only age X25519 ones (`age1…`)")]
    Ssh,
    /// Anything else age does not read as a recipient.
    #[error("not an age recipient ({0})")]
    NotAge(String),
}

/// Parses one recipient (`age1…`); the error says why in a few words.
pub fn parse_recipient(text: &str) -> Result<Recipient, BadRecipient> {
    let text = text.trim();
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(BadRecipient::SecretKey);
    }
    if text.starts_with("ssh-") {
        return Err(BadRecipient::Ssh);
    }
    Recipient::from_str(text).map_err(|why| BadRecipient::NotAge(why.to_string()))
}

/// Why a snapshot cannot be decrypted here, found before anything is read
/// ([`super::Storage::check_can_decrypt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotDecrypt {
    /// The identity file is missing, unreadable or not an identity.
    #[error("{what}: {error}")]
    Identity {
        /// The snapshot.
        what: String,
        /// What is wrong with the identity file.
        error: IdentityError,
    },
    /// No `[encryption]` section, so no identity.
    #[error(
        "{what} is encrypted with age and this configuration has no [encryption] section \
         (hint: {IDENTITY_HINT})"
    )]
    NotConfigured {
        /// The snapshot.
        what: String,
    },
    /// The identity is not one of the snapshot's recipients.
    #[error(
        "{what} is encrypted to {recipients}; {identity} is for {mine} (hint: use the \
         identity file whose `age-keygen -y` prints one of the snapshot's recipients)"
    )]
    OtherRecipients {
        /// The snapshot.
        what: String,
        /// Its recipients, comma-separated.
        recipients: String,
        /// "the identity in <file>".
        identity: String,
        /// The public keys of the configured identities, comma-separated.
        mine: String,
    },
}

/// Parses a recipients file (one `age1…` per line, `#` comments, as `age -R` reads). On error,
/// the 1-based line and why; the line's text is never returned (it may be a secret key).
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>, (usize, BadRecipient)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_recipient(line).map_err(|why| (i + 1, why))?);
    }
    Ok(out)
}

/// Why the identity file gave no identity. Never quotes the file: it holds secret keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (hint: {})", self.cause(), self.hint())]
pub enum IdentityError {
    /// `[encryption]` has no `identity_file`.
    Unconfigured,
    /// It cannot be read (missing, not readable by the agent, too large, loose mode).
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why, from [`crate::secret::read_small_file`].
        cause: String,
        /// What to do, for that cause.
        hint: String,
    },
    /// A line is not an `AGE-SECRET-KEY-1…` identity.
    BadLine {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
    },
    /// Only blank lines and comments.
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl IdentityError {
    /// What is wrong, naming the file (and line).
    pub fn cause(&self) -> String {
        match self {
            IdentityError::Unconfigured => {
                "it is encrypted with age and no identity is configured".to_string()
            }
            IdentityError::Unreadable { path, cause, .. } => {
                format!("cannot read the identity file {}: {cause}", path.display())
            }
            IdentityError::BadLine { path, line } => format!(
                "line {line} of the identity file {} is not an age X25519 identity",
                path.display()
            ),
            IdentityError::Empty { path } => {
                format!("the identity file {} holds no identity", path.display())
            }
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            IdentityError::Unconfigured => IDENTITY_HINT.to_string(),
            IdentityError::Unreadable { hint, .. } => hint.clone(),
            IdentityError::BadLine { .. } => {
                "identities are `AGE-SECRET-KEY-1…` lines, as `age-keygen -o key.txt` writes them"
                    .to_string()
            }
            IdentityError::Empty { .. } => {
                "point identity_file at the file `age-keygen -o` wrote".to_string()
            }
        }
    }
}

/// Reads the X25519 identities of an identity file (`age-keygen` output). Errors name the file
/// and line but never quote it.
pub fn read_identity_file(path: &Path) -> Result<Vec<Identity>, IdentityError> {
    let bytes = crate::secret::read_small_file(path, crate::secret::MAX_SECRET_FILE, true)
        .map_err(|e| {
            let hint = match &e {
                crate::secret::SmallFileError::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                    IDENTITY_HINT.to_string()
                }
                _ => e.hint("the age identity (`age-keygen -o` output)"),
            };
            IdentityError::Unreadable {
                path: path.to_path_buf(),
                cause: e.to_string(),
                hint,
            }
        })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        ids.push(
            Identity::from_str(line).map_err(|_| IdentityError::BadLine {
                path: path.to_path_buf(),
                line: i + 1,
            })?,
        );
    }
    if ids.is_empty() {
        return Err(IdentityError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(ids)
}
