//! Snapshot manifests: the commit point of a snapshot, and the checks a manifest read back
//! from storage must pass (see docs/FORMAT.md; the key layout is in [`super::keys`]).
//!
//! A snapshot exists when, and only when, its manifest exists; manifests are written after every
//! byte of data is stored and checked, and deleted before the data. The catalog's snapshot table
//! is rebuilt from manifests alone.

use super::keys::{dump_key, manifest_key, segment_ok};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The manifest format this build writes; older ones must keep loading.
pub const FORMAT_VERSION: u32 = 1;

/// One stored object of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Key relative to the storage prefix.
    pub key: String,
    /// Stored (compressed) bytes.
    pub size: u64,
    /// sha256 of the stored bytes, hex.
    pub sha256: String,
    /// Bytes before compression.
    pub raw_size: u64,
    /// `"zstd"`.
    pub compression: String,
}

/// Versions of the tools that made the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    /// opsagent's version.
    pub opsagent: String,
    /// `mariadb-dump --version`.
    #[serde(default)]
    pub dump: String,
    /// The server's `VERSION()`.
    #[serde(default)]
    pub server: String,
}

/// How a snapshot's data objects are encrypted (the manifest itself never is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `"age"`: each data object is an age file (X25519 recipients, STREAM payload).
    pub scheme: String,
    /// The recipients (`age1…`) the data was encrypted to; any one's identity decrypts it.
    pub recipients: Vec<String>,
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT_VERSION`] when written by this build).
    pub format: u32,
    /// Snapshot id (`YYYYMMDDTHHMMSSZ-xxxxxxxx`), unique and sortable by time.
    pub id: String,
    /// `"mysql"`.
    pub kind: String,
    /// Job name.
    pub job: String,
    /// Host that made it.
    pub host: String,
    /// What was backed up: the database name for MySQL snapshots.
    pub item: String,
    /// When the dump started.
    pub started_at: DateTime<Utc>,
    /// When the data was stored.
    pub finished_at: DateTime<Utc>,
    /// The data objects.
    pub objects: Vec<ObjectRef>,
    /// Tool versions.
    pub tools: Tools,
    /// Encryption of the data objects; absent when they are stored in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Media snapshots: what the tree holds and what this run added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaSummary>,
    /// MySQL snapshots: the rows and bytes of each table, as counted in the dump stream;
    /// absent in manifests written before opsagent counted them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<TableStats>>,
    /// MySQL snapshots of a job archiving the binary log: where in the server's binary log the
    /// dump's consistent snapshot stands (`--master-data=2`): a point-in-time restore replays
    /// the archived log from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPos>,
}

/// A position in a server's binary log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BinlogPos {
    /// The binary log file (`binlog.000042`).
    pub file: String,
    /// The byte offset in it.
    pub pos: u64,
}

/// One table of a MySQL snapshot, as its dump wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// The table's name (without the database).
    pub name: String,
    /// Rows in the dump's `INSERT` statements (exact: what the snapshot holds).
    pub rows: u64,
    /// Bytes of those `INSERT` statements (uncompressed SQL).
    pub bytes: u64,
}

/// The part of a manifest only media snapshots have (`kind = "media"`, `item = "files"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaSummary {
    /// The backed-up paths.
    pub paths: Vec<String>,
    /// Regular files in the tree.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of all files.
    pub bytes: u64,
    /// Bytes of file content this run stored for the first time (before compression).
    pub new_bytes: u64,
    /// Bytes of the packs this run uploaded.
    pub new_stored: u64,
    /// Files this run read (new or changed; the others were taken from the previous snapshot).
    #[serde(default)]
    pub files_read: u64,
    /// Bytes this run read from disk.
    #[serde(default)]
    pub bytes_read: u64,
    /// `"complete"`, or `"partial"` when files were skipped or changed while read.
    pub status: String,
    /// What was skipped or may be inconsistent, one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Every pack the tree's chunks live in (lets prune work without reading trees).
    pub packs: Vec<crate::media::Id>,
}

impl Manifest {
    /// The manifest's own key.
    pub fn key(&self) -> String {
        manifest_key(&self.job, &self.item, &self.id)
    }

    /// Total stored bytes.
    pub fn stored_size(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    /// Total bytes before compression.
    pub fn raw_size(&self) -> u64 {
        self.objects.iter().map(|o| o.raw_size).sum()
    }

    /// Parses the manifest read from `key`, naming the key on error. A manifest is untrusted
    /// input (anyone who can write the bucket can forge one), so it must agree with the key it
    /// was read from (job, item, id) and name only its own data object (see [`Manifest::check`]).
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let key_owned = || key.to_string();
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                key: key_owned(),
                size: bytes.len(),
            });
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Invalid {
                key: key_owned(),
                source,
            })?;
        if m.format == 0 || m.format > FORMAT_VERSION {
            return Err(ManifestError::Format {
                key: key_owned(),
                format: m.format,
            });
        }
        m.check(key)?;
        Ok(m)
    }

    /// What [`Manifest::parse`] checks beyond the format.
    fn check(&self, key: &str) -> Result<(), ManifestError> {
        let mismatch = |why: String| ManifestError::Mismatch {
            key: key.to_string(),
            why,
        };
        if self.key() != key {
            return Err(mismatch(format!(
                "it says job `{}`, item `{}`, snapshot `{}` (that is `{}`)",
                self.job,
                self.item,
                self.id,
                self.key()
            )));
        }
        let id_ok = self.id.len() == 25
            && self.id.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                16 => b == b'-',
                17.. => b.is_ascii_hexdigit(),
                _ => b.is_ascii_digit(),
            });
        if !id_ok || !segment_ok(&self.job) {
            return Err(mismatch(
                "its job or snapshot id is not one opsagent makes".into(),
            ));
        }
        let data = match self.kind.as_str() {
            "mysql" if self.media.is_none() => dump_key(&self.job, &self.item, &self.id),
            "media" if self.item == crate::media::keys::ITEM && self.media.is_some() => {
                crate::media::keys::tree_key(&self.job, &self.id)
            }
            k => return Err(mismatch(format!("kind `{k}` with item `{}`", self.item))),
        };
        let encrypted = format!("{data}.age");
        let expected = match (&self.encryption, self.kind.as_str()) {
            (Some(_), "mysql") => &encrypted,
            _ => &data,
        };
        match self.objects.as_slice() {
            [o] if &o.key == expected => Ok(()),
            objs => Err(mismatch(format!(
                "its data must be the one object `{expected}`, it lists {}",
                objs.iter()
                    .map(|o| format!("`{}`", o.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// Why a manifest read back from storage was not used. Each names the manifest's key.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Larger than any manifest opsagent writes.
    #[error("manifest `{key}` is {size} bytes, more than any manifest opsagent writes ({MAX_MANIFEST_BYTES}); not read (hint: someone else wrote it: remove it and check who can write the bucket)")]
    TooLarge {
        /// The manifest's key.
        key: String,
        /// Its size.
        size: usize,
    },
    /// Not JSON of the manifest's shape.
    #[error("manifest `{key}` is not valid: {source}")]
    Invalid {
        /// The manifest's key.
        key: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A format this build does not read.
    #[error("manifest `{key}` has format {format}, this opsagent reads up to {FORMAT_VERSION} (hint: upgrade opsagent)")]
    Format {
        /// The manifest's key.
        key: String,
        /// The format it declares.
        format: u32,
    },
    /// It disagrees with its key or names objects not its own.
    #[error("manifest `{key}` does not match where it was read: {why}; it was not used (hint: it was not written by opsagent for this key: remove it and check who can write the bucket)")]
    Mismatch {
        /// The manifest's key.
        key: String,
        /// What disagrees.
        why: String,
    },
    /// A media job's prefix holds a manifest of another kind.
    #[error("manifest `{key}` has no media part")]
    NotMedia {
        /// The manifest's key.
        key: String,
    },
}

/// Largest manifest parsed (the same bound its reads have, see `media::limits`).
pub const MAX_MANIFEST_BYTES: usize = crate::media::limits::MAX_MANIFEST as usize;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::keys::dump_id;

    const V1_KEY: &str = "snapshots/main/shop-eu/20261120T073000Z-0a1b2c3d.json";

    #[test]
    fn encryption_field_is_optional_and_round_trips() {
        let text = include_str!("../../tests/data/manifest-v1.json");
        let mut m = Manifest::parse(V1_KEY, text.as_bytes()).unwrap();
        let plain = serde_json::to_string(&m).unwrap();
        assert!(!plain.contains("encryption"), "{plain}");
        m.encryption = Some(Encryption {
            scheme: "age".into(),
            recipients: vec!["age1x".into()],
        });
        // Encrypted, the dump must be the `.age` object.
        let json = serde_json::to_vec(&m).unwrap();
        assert!(Manifest::parse(V1_KEY, &json).is_err());
        m.objects[0].key.push_str(".age");
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::parse(V1_KEY, &json).unwrap(), m);
        assert_eq!(dump_id("x.sql.zst.age"), Some("x"));
        assert_eq!(dump_id("x.sql.zst"), Some("x"));
        assert_eq!(dump_id("x.json"), None);
    }

    #[test]
    fn a_manifest_must_match_the_key_it_was_read_from() {
        let text = include_str!("../../tests/data/manifest-v1.json");
        let forged = [
            // Read for database `shop` but naming another.
            ("snapshots/main/shop/20261120T073000Z-0a1b2c3d.json", text.to_string()),
            // Another job's key.
            ("snapshots/other/shop-eu/20261120T073000Z-0a1b2c3d.json", text.to_string()),
            // Data outside its own key.
            (V1_KEY, text.replace("mysql/main/shop-eu/2026", "mysql/main/other/2026")),
            (V1_KEY, text.replace("\"mysql\"", "\"media\"")),
            (V1_KEY, text.replace("\"objects\": [", "\"objects\": [{\"key\": \"media/x\", \"size\": 1, \"sha256\": \"0\", \"raw_size\": 1, \"compression\": \"zstd\"},")),
        ];
        for (key, text) in forged {
            let e = Manifest::parse(key, text.as_bytes()).unwrap_err();
            assert!(matches!(e, ManifestError::Mismatch { .. }), "{key}: {e}");
            assert!(
                e.to_string().contains("does not match where it was read"),
                "{key}: {e}"
            );
        }
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(Manifest::parse(V1_KEY, &huge)
            .unwrap_err()
            .to_string()
            .contains("more than any manifest"));
    }

    #[test]
    fn version_one_manifest_still_loads() {
        let text = include_str!("../../tests/data/manifest-v1.json");
        let m = Manifest::parse(V1_KEY, text.as_bytes()).unwrap();
        assert_eq!((m.format, m.item.as_str()), (1, "shop-eu"));
        assert_eq!((m.encryption, m.tables), (None, None));
        assert!(Manifest::parse(V1_KEY, b"{\"format\": 99}").is_err());
        let future = text.replace("\"format\": 1", "\"format\": 2");
        assert!(Manifest::parse(V1_KEY, future.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("upgrade"));
    }
}
