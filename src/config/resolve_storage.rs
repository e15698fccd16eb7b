//! `[storage]`: the kind, the key prefix, and `type = "local"` (`type = "s3"` is `resolve_s3`).

use super::diagnostic::did_you_mean;
use super::raw::RawStorage;
use super::resolve::{absolute, Ctx};
use super::span::KeyPath;
use crate::storage::StorageSpec;

pub(super) fn storage(
    cx: &mut Ctx,
    s: &RawStorage,
    hostname: &str,
    p: &KeyPath,
) -> Option<StorageSpec> {
    let prefix = storage_prefix(cx, s.prefix.as_deref(), hostname, &p.key("prefix"));
    match s.kind.as_deref() {
        None => {
            cx.missing(
                &p.key("type"),
                "type = \"local\" (a directory) or type = \"s3\" (S3, MinIO, Backblaze…)",
            );
            None
        }
        Some("local") => {
            for (k, set) in [
                ("bucket", s.bucket.is_some()),
                ("endpoint", s.endpoint.is_some()),
                ("region", s.region.is_some()),
                ("path_style", s.path_style.is_some()),
                ("access_key_id", s.access_key_id.is_some()),
                ("secret_access_key", s.secret_access_key.is_some()),
                ("secret_access_key_file", s.secret_access_key_file.is_some()),
            ] {
                if set {
                    cx.error(
                        &p.key(k),
                        format!("`{k}` applies to type = \"s3\", not \"local\""),
                        "remove it, or set type = \"s3\"",
                    );
                }
            }
            let Some(path) = &s.path else {
                cx.missing(
                    &p.key("path"),
                    "path = \"/srv/backups\": the directory backups are written to",
                );
                return None;
            };
            Some(StorageSpec::Local {
                path: absolute(path),
                prefix: prefix?,
            })
        }
        Some("s3") => super::resolve_s3::s3(cx, s, prefix, p),
        Some(other) => {
            let hint = match did_you_mean(other, &["local", "s3"]) {
                Some(s) => format!("did you mean \"{s}\"? storage types are \"local\" and \"s3\""),
                None => "storage types are \"local\" and \"s3\" (S3, MinIO, Backblaze B2, Wasabi… all speak S3)".to_string(),
            };
            cx.error(
                &p.key("type"),
                format!("unknown storage type `{other}`"),
                hint,
            );
            None
        }
    }
}

pub(super) fn storage_prefix(
    cx: &mut Ctx,
    prefix: Option<&str>,
    hostname: &str,
    p: &KeyPath,
) -> Option<String> {
    let prefix = match prefix {
        None => format!("{hostname}/"),
        Some("") => String::new(),
        Some(x)
            if x.starts_with('/')
                || x.split('/').any(|seg| seg == ".." || seg == ".")
                || x.contains('\0') =>
        {
            cx.error(
                p,
                format!("prefix `{x}` is not a valid key prefix"),
                "use something like \"web-01/\": no leading `/`, no `.` or `..` segments",
            );
            return None;
        }
        Some(x) if x.ends_with('/') => x.to_string(),
        Some(x) => format!("{x}/"),
    };
    Some(prefix)
}
