//! `[storage]`: the kind, the key prefix, and `type = "local"` (`type = "s3"` is `resolve_s3`).

use super::diagnostic::did_you_mean;
use super::raw::RawStorage;
use super::resolve::{absolute, Ctx};
use super::span::KeyPath;
use crate::storage::{ObjectLock, StorageSpec};

/// The `[storage]` section: the default storage, its bandwidth limits and its copies (each
/// distinct from the others). Without the section, an error that says what to add.
pub(super) fn section(
    cx: &mut Ctx,
    raw: Option<&RawStorage>,
    hostname: &str,
    root: &KeyPath,
) -> (
    Option<StorageSpec>,
    crate::storage::RateLimits,
    Vec<super::CopyStorage>,
) {
    let p = &root.key("storage");
    let Some(s) = raw else {
        cx.error(root, "the [storage] section is missing", "add [storage] with type = \"local\" and path = \"/var/backups/opsagent\", or type = \"s3\" with a bucket");
        return (None, Default::default(), Vec::new());
    };
    let storage = storage(cx, s, hostname, p);
    let limits = super::resolve_limits::rate_limits(cx, s, p);
    let copies = copies(cx, s, hostname, p);
    check_distinct(cx, storage.as_ref(), &copies, p);
    (storage, limits, copies)
}

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
            object_lock(cx, s, p);
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
        Some("s3") => {
            let lock = object_lock(cx, s, p);
            let mut spec = super::resolve_s3::s3(cx, s, prefix, p)?;
            if let StorageSpec::S3 { object_lock, .. } = &mut spec {
                *object_lock = lock;
            }
            Some(spec)
        }
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

/// The keys a `[storage]` table may hold (besides `[storage.NAME]` tables).
const KEYS: &[&str] = &[
    "type",
    "path",
    "bucket",
    "prefix",
    "endpoint",
    "region",
    "path_style",
    "access_key_id",
    "secret_access_key",
    "secret_access_key_file",
    "keep",
    "object_lock",
    "max_upload_rate",
    "max_download_rate",
];

/// The `[storage.NAME]` tables of `[storage]` (copy storages), in name order; reports a key of
/// `[storage]` that is neither a known one nor a table, and `keep` on the default storage.
pub(super) fn copies(
    cx: &mut Ctx,
    s: &RawStorage,
    hostname: &str,
    p: &KeyPath,
) -> Vec<super::CopyStorage> {
    if s.keep.is_some() {
        cx.error(
            &p.key("keep"),
            "`keep` applies to copy storages ([storage.NAME]), not to the default one",
            "set retention per job (`keep` in [[mysql]] / [[media]]); a copy storage may keep differently",
        );
    }
    let mut out = Vec::new();
    for (name, value) in &s.named {
        let at = p.key(name);
        let Some(table) = value.as_table() else {
            unknown_key(cx, name, &at);
            continue;
        };
        if !super::resolve::valid_name(name, 32, false) || name == "default" {
            cx.error(
                &at,
                format!("`{name}` cannot name a copy storage"),
                "use letters, digits, `-` and `_` (not `default`, which is [storage] itself)",
            );
            continue;
        }
        let raw: RawStorage = match toml::Value::Table(table.clone()).try_into() {
            Ok(r) => r,
            Err(e) => {
                cx.error(
                    &at,
                    format!("[storage.{name}]: {}", e.message()),
                    "see the keys of [storage] in config/opsagent.example.toml",
                );
                continue;
            }
        };
        for (inner, v) in &raw.named {
            if v.is_table() {
                cx.error(
                    &at.key(inner),
                    format!("[storage.{name}.{inner}]: copy storages do not nest"),
                    "declare every copy storage directly under [storage]: [storage.NAME]",
                );
            } else {
                unknown_key(cx, inner, &at.key(inner));
            }
        }
        let spec = storage(cx, &raw, hostname, &at);
        let keep = raw
            .keep
            .and_then(|k| super::resolve::keep(cx, k, &at.key("keep")));
        let limits = super::resolve_limits::rate_limits(cx, &raw, &at);
        if let Some(spec) = spec {
            out.push(super::CopyStorage {
                name: name.clone(),
                spec,
                keep,
                limits,
            });
        }
    }
    out
}

fn unknown_key(cx: &mut Ctx, key: &str, at: &KeyPath) {
    let hint = match did_you_mean(key, KEYS) {
        Some(k) => format!("did you mean `{k}`? a copy storage is a table: [storage.NAME]"),
        None => format!(
            "known keys: {}; a copy storage is a table: [storage.NAME]",
            KEYS.join(", ")
        ),
    };
    cx.error(at, format!("unknown key `{key}` in [storage]"), hint);
}

/// Each job's `copy_to` names a copy storage (a `[storage.NAME]` table, valid or not: its own
/// errors are reported where it is).
pub(super) fn check_copy_to(cx: &mut Ctx, s: Option<&RawStorage>, jobs: &[(&[String], KeyPath)]) {
    let names: Vec<&str> = s
        .map(|s| {
            s.named
                .iter()
                .filter(|(_, v)| v.is_table())
                .map(|(n, _)| n.as_str())
                .collect()
        })
        .unwrap_or_default();
    for (copy_to, p) in jobs {
        for (i, name) in copy_to.iter().enumerate() {
            if names.contains(&name.as_str()) {
                continue;
            }
            let hint = match (did_you_mean(name, &names), names.is_empty()) {
                (Some(n), _) => format!("did you mean `{n}`?"),
                (None, true) => {
                    "declare it as [storage.NAME] (type, bucket or path…) beside [storage]"
                        .to_string()
                }
                (None, false) => format!("copy storages: {}", names.join(", ")),
            };
            cx.error(&p.index(i), format!("no copy storage `{name}`"), hint);
        }
    }
}

/// Whether two storages are the same place (directory or bucket, endpoint and prefix): a copy
/// there would be the data itself, and its retention would prune the original.
fn same_place(a: &StorageSpec, b: &StorageSpec) -> bool {
    match (a, b) {
        (
            StorageSpec::Local {
                path: p1,
                prefix: x1,
            },
            StorageSpec::Local {
                path: p2,
                prefix: x2,
            },
        ) => p1 == p2 && x1.trim_end_matches('/') == x2.trim_end_matches('/'),
        (
            StorageSpec::S3 {
                bucket: b1,
                prefix: x1,
                endpoint: e1,
                ..
            },
            StorageSpec::S3 {
                bucket: b2,
                prefix: x2,
                endpoint: e2,
                ..
            },
        ) => b1 == b2 && e1 == e2 && x1.trim_end_matches('/') == x2.trim_end_matches('/'),
        _ => false,
    }
}

/// A copy storage must be somewhere else than `[storage]` and every other copy.
pub(super) fn check_distinct(
    cx: &mut Ctx,
    default: Option<&StorageSpec>,
    copies: &[super::CopyStorage],
    p: &KeyPath,
) {
    for (i, c) in copies.iter().enumerate() {
        let other = default
            .filter(|d| same_place(d, &c.spec))
            .map(|_| "[storage]".to_string())
            .or_else(|| {
                copies[..i]
                    .iter()
                    .find(|o| same_place(&o.spec, &c.spec))
                    .map(|o| format!("[storage.{}]", o.name))
            });
        if let Some(other) = other {
            cx.error(
                &p.key(&c.name),
                format!("[storage.{}] is the same place as {other}", c.name),
                "a copy must be another directory or bucket (or at least another prefix): its retention would otherwise prune the original",
            );
        }
    }
}

/// `object_lock = { mode, days }` of a storage (S3 only).
fn object_lock(cx: &mut Ctx, s: &RawStorage, p: &KeyPath) -> Option<ObjectLock> {
    let raw = s.object_lock.as_ref()?;
    let at = p.key("object_lock");
    if s.kind.as_deref() != Some("s3") {
        cx.error(
            &at,
            "`object_lock` applies to type = \"s3\"",
            "object lock is an S3 bucket setting; remove it here",
        );
        return None;
    }
    let compliance = match raw.mode.as_deref() {
        Some("governance") => Some(false),
        Some("compliance") => Some(true),
        Some(other) => {
            cx.error(
                &at.key("mode"),
                format!("unknown object lock mode `{other}`"),
                "use \"governance\" (an admin may lift it) or \"compliance\" (nobody can)",
            );
            None
        }
        None => {
            cx.missing(
                &at.key("mode"),
                "mode = \"governance\" or \"compliance\", as the bucket's default retention says",
            );
            None
        }
    };
    let days = match raw.days {
        Some(d) if (1..=36_500).contains(&d) => Some(d),
        Some(d) => {
            cx.error(
                &at.key("days"),
                format!("{d} days is not a retention period"),
                "use the bucket's default retention in days (1 to 36500)",
            );
            None
        }
        None => {
            cx.missing(&at.key("days"), "days = 30: the bucket's default retention");
            None
        }
    };
    Some(ObjectLock {
        compliance: compliance?,
        days: days?,
    })
}
