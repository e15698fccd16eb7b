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

/// Parses one recipient (`age1…`); the error says why in a few words.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    let text = text.trim();
    if text.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err("this is a secret key (an identity), not a recipient".into());
    }
    if text.starts_with("ssh-") {
        return Err("SSH recipients are not supported, only age X25519 ones (`age1…`)".into());
    }
    Recipient::from_str(text).map_err(|why| format!("not an age recipient ({why})"))
}

/// Parses a recipients file (one `age1…` per line, `#` comments, as `age -R` reads). On error,
/// the 1-based line and why; the line's text is never returned (it may be a secret key).
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>, (usize, String)> {
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
