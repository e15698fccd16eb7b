//! `opsagent prune --credentials FILE`: a second S3 key, one that may delete, for the retention
//! an append-only server key cannot apply. The file is TOML with `access_key_id` and
//! `secret_access_key` (keep it 0600, on a trusted machine); it replaces the key of the
//! storage being pruned, nothing else.

use super::diagnostic::{serde_error, ConfigErrors};
use crate::secret::Secret;
use crate::storage::StorageSpec;
use serde::Deserialize;
use std::path::Path;

/// The most a credentials file may hold.
const MAX_FILE: u64 = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    access_key_id: String,
    secret_access_key: String,
}

/// An S3 key pair read from a credentials file.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
}

/// Reads `path`; errors name the file, line and column.
pub fn load_credentials(path: &Path) -> Result<Credentials, ConfigErrors> {
    let bytes = crate::secret::read_small_file(path, MAX_FILE, false).map_err(|e| {
        ConfigErrors::whole_file(
            path,
            format!("cannot read the credentials file: {e}"),
            Some("write a TOML file with access_key_id = \"…\" and secret_access_key = \"…\" (mode 0600)".into()),
        )
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let raw: RawCredentials =
        toml::from_str(&text).map_err(|e| ConfigErrors(vec![serde_error(path, &text, &e)]))?;
    Ok(Credentials {
        access_key_id: raw.access_key_id,
        secret_access_key: Secret::new(raw.secret_access_key),
    })
}

/// `spec` with its key replaced by `c`; `None` for a local directory (it has no key).
pub fn with_credentials(spec: &StorageSpec, c: &Credentials) -> Option<StorageSpec> {
    let mut s = spec.clone();
    let StorageSpec::S3 {
        access_key_id,
        secret_access_key,
        ..
    } = &mut s
    else {
        return None;
    };
    *access_key_id = Some(c.access_key_id.clone());
    *secret_access_key = Some(c.secret_access_key.clone());
    Some(s)
}
