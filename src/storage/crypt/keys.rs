//! Keys for the age decorator: parsing recipients (public, from the config) and reading the
//! identity file (secret, read only when something must be decrypted). Errors never quote a
//! line of these files: it may be a secret key.

use std::io;
use std::path::Path;
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
    #[error("{what}: {cause} (hint: {hint})")]
    Identity {
        /// The snapshot.
        what: String,
        /// What is wrong with the identity.
        cause: String,
        /// What to do.
        hint: String,
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

/// Reads the X25519 identities of an identity file (`age-keygen` output). Errors name the file
/// and line but never quote it; the second string is a hint.
pub fn read_identity_file(path: &Path) -> Result<Vec<Identity>, (String, String)> {
    let bytes = crate::secret::read_small_file(path, crate::secret::MAX_SECRET_FILE, true)
        .map_err(|e| {
            let hint = match &e {
                crate::secret::SmallFileError::Io(io) if io.kind() == io::ErrorKind::NotFound => {
                    IDENTITY_HINT.to_string()
                }
                _ => e.hint("the age identity (`age-keygen -o` output)"),
            };
            (
                format!("cannot read the identity file {}: {e}", path.display()),
                hint,
            )
        })?;
    let text = String::from_utf8_lossy(&bytes);
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        ids.push(Identity::from_str(line).map_err(|_| {
            (
                format!(
                    "line {} of the identity file {} is not an age X25519 identity",
                    i + 1,
                    path.display()
                ),
                "identities are `AGE-SECRET-KEY-1…` lines, as `age-keygen -o key.txt` writes them"
                    .to_string(),
            )
        })?);
    }
    if ids.is_empty() {
        return Err((
            format!("the identity file {} holds no identity", path.display()),
            "point identity_file at the file `age-keygen -o` wrote".into(),
        ));
    }
    Ok(ids)
}
