//! `object_lock` on an S3 storage against the real S3 server (moto implements S3 Object Lock
//! and refuses to delete a locked version): every object opsagent writes carries the retention;
//! another client deleting every version by id is refused for the locked ones; with every key
//! hidden behind a delete marker a restore still brings the data back and says so; prune keeps
//! locked snapshots (saying until when), then deletes every version of them once expired;
//! `check-config --connect` fails with a hint on a bucket without object lock.
//!
//! Expired locks come from backups made in the past with faketime: the lock runs from the
//! agent's clock, so a backup "40 days ago" with a 30-day lock is free again now.

mod common;

#[path = "support/media_tree.rs"]
#[allow(dead_code)]
mod support;

use common::agent::{opsagent, opsagent_at, Bench};
use common::s3::S3Server;
use std::path::PathBuf;
use std::process::Output;

const LOCK: &str = "object_lock = { mode = \"governance\", days = 30 }\n";

fn text(o: &Output) -> String {
    common::output_text(o)
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn config(b: &Bench, s3: &S3Server, bucket: &str, lock: &str) -> PathBuf {
    let src = b.path("src");
    std::fs::create_dir_all(&src).unwrap();
    b.write(
        &format!("{bucket}.toml"),
        &format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\n\
             access_key_id = \"k\"\nsecret_access_key_file = \"{sec}\"\n{lock}\
             [[media]]\nname = \"up\"\npaths = [\"{src}\"]\nschedule = \"@daily\"\n\
             keep = {{ last = 1 }}\nanomaly_drop = \"off\"\n",
            state = b.path(&format!("state-{bucket}")).display(),
            ep = s3.endpoint(),
            sec = b.path("s3").display(),
            src = src.display(),
        ),
    )
}

/// Keys of the manifests in the bucket (current versions).
fn manifests(s3: &S3Server, bucket: &str) -> Vec<String> {
    (s3.list_keys(bucket).into_iter())
        .map(|(k, _)| k)
        .filter(|k| k.contains("/snapshots/"))
        .collect()
}

#[test]
fn locked_objects_survive_deletion_prune_waits_for_expiry_and_restore_reads_past_delete_markers() {
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    let bucket = s3.new_locked_bucket(None);
    let cfg = config(&b, s3, &bucket, LOCK);
    let src = b.path("src");

    // 40 days ago (its lock has expired), then twice now.
    std::fs::write(src.join("old.txt"), b"from long ago").unwrap();
    ok(opsagent_at("40 days ago", &cfg, &["backup", "up"]));
    let old = manifests(s3, &bucket);
    assert_eq!(old.len(), 1, "{old:?}");
    support::write_big(&src.join("big.bin"), 20);
    std::fs::write(src.join("a.txt"), b"one").unwrap();
    let said = ok(opsagent(&cfg, &["backup", "up"]));
    assert!(said.contains("1 old snapshot(s) pruned"), "{said}");
    // keep last = 1 after that backup: the old snapshot's lock is over, so it went, every
    // version of its manifest with it (not only hidden behind a delete marker).
    let versions = s3.list_versions(&bucket);
    assert!(
        !versions.iter().any(|(k, _, _)| k == &old[0]),
        "{versions:?}"
    );
    std::fs::write(src.join("a.txt"), b"two, the last").unwrap();
    ok(opsagent(&cfg, &["backup", "up"]));
    // The middle one is locked: kept, and the dry run says until when.
    assert_eq!(manifests(s3, &bucket).len(), 2);
    let dry = ok(opsagent(&cfg, &["prune", "--dry-run"]));
    assert!(
        dry.contains("locked by the bucket's object lock (30 days): removable after"),
        "{dry}"
    );
    ok(opsagent(&cfg, &["prune"]));
    assert_eq!(manifests(s3, &bucket).len(), 2);

    // Every object carries a retention until about 30 days from now, the pack holding
    // old.txt too (written 40 days ago, its lock extended by the snapshots using it). A pack
    // no kept snapshot uses (the old snapshot's tree pack, waiting for a later prune to delete
    // it) may keep its expired lock: nothing needs it.
    let used: Vec<String> = manifests(s3, &bucket)
        .iter()
        .flat_map(|k| {
            let m: serde_json::Value =
                serde_json::from_slice(&s3.get_object(&bucket, k).unwrap()).unwrap();
            let packs = m["media"]["packs"].as_array().cloned().unwrap_or_default();
            packs.into_iter().map(|p| p.as_str().unwrap().to_string())
        })
        .collect();
    assert!(!used.is_empty());
    let soon = (chrono::Utc::now() + chrono::Duration::days(29)).to_rfc3339();
    let keys = s3.list_keys(&bucket);
    assert!(keys.len() >= 6, "{keys:?}");
    for (key, _) in &keys {
        let (mode, until) = s3
            .object_retention(&bucket, key)
            .unwrap_or_else(|| panic!("{key} has no retention"));
        assert_eq!(mode, "GOVERNANCE", "{key}");
        let unused_pack =
            key.contains("/packs/") && !used.iter().any(|id| key.contains(id.as_str()));
        if !key.contains("/index/") && !key.ends_with("opsagent-owner.json") && !unused_pack {
            assert!(until > soon, "{key} locked only until {until}");
        }
    }

    // A leaked key deletes every version by id: refused for every locked one.
    let mut refused = 0;
    for (key, version, _) in s3.list_versions(&bucket) {
        let status = s3.delete_version(&bucket, &key, &version);
        if status == 403 {
            refused += 1;
        }
    }
    assert!(refused >= 5, "only {refused} deletions refused");
    assert_eq!(manifests(s3, &bucket).len(), 2);

    // It hides every key behind a delete marker instead: the restore reads underneath.
    for (key, _) in s3.list_keys(&bucket) {
        s3.delete_object(&bucket, &key);
    }
    assert!(s3.list_keys(&bucket).is_empty());
    let out = opsagent(&cfg, &["restore", "--date", "today", "--yes"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("hidden behind delete markers"), "{said}");
    let base = b.path(&format!("state-{bucket}")).join("restore/up");
    let dir = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let restored = dir.join(src.strip_prefix("/").unwrap());
    support::assert_identical(&src, &restored);
}

/// A streamed upload of 20 MiB (a multipart upload: its parts are 8 MiB) is locked too, and a
/// small one (a single PUT); the server refuses to delete either version.
#[test]
fn multipart_and_single_uploads_are_locked() {
    use opsagent::secret::Secret;
    use opsagent::storage::{ObjectLock, RateLimits, Storage, StorageSpec};
    let s3 = S3Server::shared();
    let bucket = s3.new_locked_bucket(Some(1));
    let spec = |prefix: &str| StorageSpec::S3 {
        bucket: bucket.clone(),
        prefix: prefix.into(),
        endpoint: Some(s3.endpoint()),
        region: common::s3::REGION.into(),
        path_style: true,
        access_key_id: Some(common::s3::ACCESS_KEY.into()),
        secret_access_key: Some(Secret::new(common::s3::SECRET_KEY)),
        object_lock: Some(ObjectLock {
            compliance: true,
            days: 3,
        }),
    };
    // Under `p` unlimited; under `q` with the uploads paced on the wire (the lock's transport
    // above the pacing one).
    let paced = RateLimits {
        upload: Some(64 << 20),
        download: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (prefix, limits) in [("p", RateLimits::default()), ("q", paced)] {
        rt.block_on(async {
            let storage = Storage::open(&spec(prefix))
                .unwrap()
                .with_rate_limits(limits);
            let mut w = storage.writer("big").await.unwrap();
            for i in 0..20u8 {
                w.write(bytes::Bytes::from(vec![i; 1 << 20])).await.unwrap();
            }
            w.finish().await.unwrap();
            storage
                .put_bytes("small", bytes::Bytes::from_static(b"x"))
                .await
                .unwrap();
        });
    }
    let in_two_days = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    for key in ["p/big", "p/small", "q/big", "q/small"] {
        let (mode, until) = s3.object_retention(&bucket, key).expect(key);
        assert_eq!(mode, "COMPLIANCE", "{key}");
        assert!(until > in_two_days, "{key}: {until}");
    }
    let sizes: Vec<_> = s3
        .list_keys(&bucket)
        .into_iter()
        .filter(|k| k.0.ends_with("big"))
        .collect();
    assert_eq!(
        sizes,
        [
            ("p/big".to_string(), 20 << 20),
            ("q/big".to_string(), 20 << 20)
        ]
    );
    for (key, version, _) in s3.list_versions(&bucket) {
        assert_eq!(s3.delete_version(&bucket, &key, &version), 403, "{key}");
    }
}

#[test]
fn check_config_connect_needs_object_lock_on_the_bucket() {
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);

    // Object lock enabled, with or without a default retention: fine.
    for days in [None, Some(7)] {
        let bucket = s3.new_locked_bucket(days);
        let out = ok(opsagent(
            &config(&b, s3, &bucket, LOCK),
            &["check-config", "--connect"],
        ));
        assert!(
            out.contains("opsagent locks every object it writes there GOVERNANCE for 30 days"),
            "{out}"
        );
        if days.is_some() {
            assert!(
                out.contains("default retention (GOVERNANCE, 7 days)"),
                "{out}"
            );
        }
    }

    // No object lock on the bucket: fails, with how to make one.
    let plain = s3.new_bucket();
    let out = opsagent(
        &config(&b, s3, &plain, LOCK),
        &["check-config", "--connect"],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("no object lock enabled")
            && text(&out).contains("--object-lock-enabled-for-bucket"),
        "{}",
        text(&out)
    );
}

#[test]
fn object_lock_settings_are_checked_at_their_position() {
    let (_dir, _, err) = common::agent::check_config_fails(
        "object_lock = { mode = \"governance\", days = 30 }\n\
         [storage.off]\ntype = \"s3\"\nbucket = \"abc\"\nendpoint = \"http://127.0.0.1:9\"\n\
         object_lock = { mode = \"strict\", days = 0 }\n",
    );
    assert!(
        err.contains("`object_lock` applies to type = \"s3\""),
        "{err}"
    );
    assert!(err.contains("unknown object lock mode `strict`"), "{err}");
    assert!(err.contains("0 days is not a retention period"), "{err}");
}
