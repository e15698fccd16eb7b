//! The object-key layout of snapshots (see docs/FORMAT.md).
//!
//! ```text
//! <prefix>mysql/<job>/<database>/<snapshot-id>.sql.zst          the dump (plain zstd'd SQL)
//! <prefix>mysql/<job>/<database>/<snapshot-id>.sql.zst.age      … encrypted with age, when on
//! <prefix>media/<job>/…                                         packs, indexes, trees (`media::keys`)
//! <prefix>snapshots/<job>/<item>/<snapshot-id>.json             its manifest: the commit point
//! ```
//! Database names are percent-encoded in keys (anything outside `A-Za-z0-9_-`, `%` included),
//! so `my-db`, `db.x` or `ünïcode` all map to one safe key segment.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Whether `s` is a job name as the config allows it (letters, digits, `_`, `-`).
pub(crate) fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// A new snapshot id for a snapshot started at `t`.
pub fn new_id(t: DateTime<Utc>) -> String {
    let mut rnd = [0u8; 4];
    getrandom::fill(&mut rnd).expect("the OS random source works");
    format!("{}-{}", t.format("%Y%m%dT%H%M%SZ"), hex::encode(rnd))
}

/// Percent-encodes a name into one key segment.
pub fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_segment`].
pub fn decode_segment(seg: &str) -> Option<String> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = seg.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a MySQL dump is stored (before the `.age` an encrypted dump adds).
pub fn dump_key(job: &str, database: &str, id: &str) -> String {
    format!("mysql/{job}/{}/{id}.sql.zst", encode_segment(database))
}

/// The snapshot id in a dump's file name (`<id>.sql.zst` or `<id>.sql.zst.age`).
pub fn dump_id(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".sql.zst.age")
        .or_else(|| file_name.strip_suffix(".sql.zst"))
}

/// Where a snapshot's manifest is stored.
pub fn manifest_key(job: &str, item: &str, id: &str) -> String {
    format!("snapshots/{job}/{}/{id}.json", encode_segment(item))
}

/// The prefix holding every manifest of `job` (or of all jobs when `None`).
pub fn manifests_prefix(job: Option<&str>) -> String {
    match job {
        Some(j) => format!("snapshots/{j}/"),
        None => "snapshots/".to_string(),
    }
}

/// A snapshot as seen in a manifest key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    /// Job.
    pub job: String,
    /// Database.
    pub item: String,
    /// Snapshot id.
    pub id: String,
    /// Manifest key.
    pub key: String,
}

/// Parses `snapshots/<job>/<item>/<id>.json` into its parts and the id's time.
pub fn parse_manifest_key(key: &str) -> Option<(DateTime<Utc>, SnapshotKey)> {
    let rest = key.strip_prefix("snapshots/")?;
    let mut parts = rest.split('/');
    let (job, item, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let id = file.strip_suffix(".json")?;
    let stamp = id.split('-').next()?;
    let t = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    Some((
        t,
        SnapshotKey {
            job: job.to_string(),
            item: decode_segment(item)?,
            id: id.to_string(),
            key: key.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for name in ["shop", "my-db", "db.x", "ünï code", "100%", "a/b", "_x_"] {
            let enc = encode_segment(name);
            assert!(
                enc.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "{enc}"
            );
            assert_eq!(decode_segment(&enc).as_deref(), Some(name));
        }
        assert_eq!(encode_segment("my-db"), "my-db");
        assert_eq!(decode_segment("%ZZ"), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let a = new_id(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let b = new_id(chrono::DateTime::from_timestamp(1_700_000_060, 0).unwrap());
        assert!(a < b);
        assert_eq!(a.len(), "20231114T221320Z-".len() + 8);
    }

    #[test]
    fn manifest_keys_parse() {
        let (t, k) =
            parse_manifest_key("snapshots/main/my-db%2Ex/20261120T073000Z-0a1b2c3d.json").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-20T07:30:00+00:00");
        assert_eq!(
            (k.job.as_str(), k.item.as_str(), k.id.as_str()),
            ("main", "my-db.x", "20261120T073000Z-0a1b2c3d")
        );
        assert!(parse_manifest_key("snapshots/main/x/notatime.json").is_none());
        assert!(parse_manifest_key("snapshots/main/x/y/z.json").is_none());
        assert!(parse_manifest_key("mysql/main/x/20261120T073000Z-0a.json").is_none());
    }
}
