//! `[storage]` with `type = "s3"`: bucket, endpoint and credentials.

use super::raw::RawStorage;
use super::resolve::{secret_file, Ctx};
use super::span::KeyPath;
use crate::secret::Secret;
use crate::storage::StorageSpec;

/// S3 bucket naming rules (the subset every S3-compatible store accepts).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !b.contains("..")
}

pub(super) fn s3(
    cx: &mut Ctx,
    s: &RawStorage,
    prefix: Option<String>,
    p: &KeyPath,
) -> Option<StorageSpec> {
    if s.path.is_some() {
        cx.error(
            &p.key("path"),
            "`path` applies to type = \"local\", not \"s3\"",
            "remove it; the bucket and prefix say where backups go",
        );
    }
    let bucket = match &s.bucket {
        None => {
            cx.missing(
                &p.key("bucket"),
                "bucket = \"backups\": the bucket must exist",
            );
            None
        }
        Some(b) if !valid_bucket(b) => {
            cx.error(
                &p.key("bucket"),
                format!("`{b}` is not a valid bucket name"),
                "bucket names are 3–63 characters: lowercase letters, digits, `-` and `.`",
            );
            None
        }
        Some(b) => Some(b.clone()),
    };
    let endpoint = match &s.endpoint {
        Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < 10 => {
            cx.error(
                &p.key("endpoint"),
                format!("`{e}` is not an http(s) URL"),
                "e.g. endpoint = \"http://127.0.0.1:9000\" for MinIO; leave it out for AWS",
            );
            None
        }
        e => Some(e.clone()),
    };
    let secret = credentials(cx, s, p);
    Some(StorageSpec::S3 {
        bucket: bucket?,
        prefix: prefix?,
        region: s
            .region
            .clone()
            .unwrap_or_else(|| super::defaults::S3_REGION.to_string()),
        path_style: s.path_style.unwrap_or(s.endpoint.is_some()),
        endpoint: endpoint?,
        access_key_id: s
            .access_key_id
            .clone()
            .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok()),
        secret_access_key: secret?,
        object_lock: None,
    })
}

/// The secret key: from `secret_access_key_file`, inline `secret_access_key` (with a warning), or
/// `AWS_SECRET_ACCESS_KEY`. `Some(None)` means "no static credentials" (instance roles etc.).
fn credentials(cx: &mut Ctx, s: &RawStorage, p: &KeyPath) -> Option<Option<Secret>> {
    match (&s.secret_access_key, &s.secret_access_key_file) {
        (Some(_), Some(_)) => {
            cx.error(
                &p.key("secret_access_key"),
                "both `secret_access_key` and `secret_access_key_file` are set",
                "keep only secret_access_key_file",
            );
            None
        }
        (Some(inline), None) => {
            cx.warn(
                &p.key("secret_access_key"),
                "the S3 secret is written in the configuration file",
                "move it to a 0600 file and set secret_access_key_file instead",
            );
            Some(Some(Secret::new(inline.clone())))
        }
        (None, Some(f)) => {
            let sec = secret_file(cx, f, &p.key("secret_access_key_file"))?;
            Some(Some(sec))
        }
        (None, None) => {
            let env = std::env::var("AWS_SECRET_ACCESS_KEY").ok().map(Secret::new);
            if s.access_key_id.is_some() && env.is_none() {
                cx.error(
                    &p.key("access_key_id"),
                    "an access key id is set but no secret key",
                    "set secret_access_key_file = \"/etc/opsagent/secrets/s3\" (or AWS_SECRET_ACCESS_KEY)",
                );
                return None;
            }
            Some(env)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bucket_names() {
        for ok in ["backups", "my.bucket-01", "abc"] {
            assert!(super::valid_bucket(ok), "{ok}");
        }
        for bad in ["ab", "Backups", "-x-", "a..b", "under_score", "x-"] {
            assert!(!super::valid_bucket(bad), "{bad}");
        }
    }
}
