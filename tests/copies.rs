//! Copies to several storages (`[storage.NAME]`, `copy_to`) against real S3 servers: the
//! default storage is a bucket on the shared moto server, the copy `offsite` a bucket on a
//! second moto server of its own (stopped for a while), the copy `usb` a local directory. After
//! backups all three hold every snapshot; with `offsite` down the backup still commits, status
//! and `snapshots` show the copy behind, and the next run catches up; an unchanged snapshot
//! copies only its tree and manifest; the copy adds no more than 1.1 × the snapshot's bytes;
//! with the default bucket emptied by hand, `restore` reads the copy, identical; a database
//! restores from a local copy (same checksum) when the default directory is gone.

mod common;

use common::agent::{opsagent, Bench};
use common::s3::S3Server;
#[path = "support/media_tree.rs"]
#[allow(dead_code)] // the shared tree kit; this file uses part of it
mod media_tree;
use media_tree::{assert_identical, noise, tricky_tree};
use std::path::Path;

fn text(o: &std::process::Output) -> String {
    common::output_text(o)
}

fn ok(cfg: &Path, args: &[&str]) -> String {
    let out = opsagent(cfg, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// Manifest keys in a bucket or directory listing.
fn manifests(keys: &[(String, u64)]) -> Vec<String> {
    let mut v: Vec<String> = keys
        .iter()
        .filter(|(k, _)| k.contains("snapshots/") && k.ends_with(".json"))
        .map(|(k, _)| k.clone())
        .collect();
    v.sort();
    v
}

fn local_keys(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((key, e.metadata().unwrap().len()));
            }
        }
    }
    out
}

#[test]
fn copies_reach_every_storage_catch_up_after_an_outage_and_restore_from_a_copy() {
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    let mut off = S3Server::start();
    let off_bucket = off.new_bucket();
    let src = b.path("src");
    tricky_tree(&src, 3, 50);
    let usb = b.path("usb");
    let cfg = b.write(
        "opsagent.toml",
        &(b.head(s3, "state", "")
            + &format!(
                "[storage.offsite]\ntype = \"s3\"\nbucket = \"{off_bucket}\"\nendpoint = \"{}\"\n\
                 access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\n\
                 [storage.usb]\ntype = \"local\"\npath = \"{}\"\n\
                 [[media]]\nname = \"up\"\npaths = [\"{}\"]\nschedule = \"@daily\"\n\
                 keep = {{ last = 10 }}\ncopy_to = [\"offsite\", \"usb\"]\n",
                off.endpoint(),
                common::s3::ACCESS_KEY,
                b.path("s3").display(),
                usb.display(),
                src.display()
            )),
    );
    let out = ok(&cfg, &["check-config"]);
    assert!(
        out.contains("copy      `offsite`: s3://") && out.contains("copied to offsite, usb"),
        "{out}"
    );
    // A freshness check per copy storage.
    assert!(
        out.contains("backup:up@offsite") && out.contains("backup:up@usb"),
        "{out}"
    );

    // 1. One backup: the snapshot is in all three storages.
    ok(&cfg, &["backup", "up"]);
    let primary = s3.list_keys(&b.bucket);
    assert_eq!(manifests(&primary).len(), 1, "{primary:?}");
    assert_eq!(manifests(&off.list_keys(&off_bucket)), manifests(&primary));
    let usb_keys = local_keys(&usb);
    assert_eq!(manifests(&usb_keys), manifests(&primary));
    // The copy holds no more than 1.1 × what the default storage holds.
    let total = |k: &[(String, u64)]| k.iter().map(|(_, s)| s).sum::<u64>();
    let (p, o) = (total(&primary), total(&off.list_keys(&off_bucket)));
    assert!(o as f64 <= p as f64 * 1.1, "copy {o} B for {p} B");

    // 2. Unchanged: the copy gets the new tree and manifest (and no pack).
    let before: Vec<String> = off
        .list_keys(&off_bucket)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    ok(&cfg, &["backup", "up"]);
    let added: Vec<String> = off
        .list_keys(&off_bucket)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !before.contains(k))
        .collect();
    assert!(
        added.len() <= 3 && added.iter().all(|k| !k.contains("/packs/")),
        "an unchanged snapshot copied {added:?}"
    );

    // 3. `offsite` down: the backup commits, the copy is behind and says so.
    off.stop();
    std::fs::write(src.join("new-upload.bin"), noise(7, 200_000)).unwrap();
    ok(&cfg, &["backup", "up"]);
    assert_eq!(manifests(&s3.list_keys(&b.bucket)).len(), 3);
    assert_eq!(manifests(&local_keys(&usb)).len(), 3);
    let status = text(&opsagent(&cfg, &["status"]));
    let line = status
        .lines()
        .find(|l| l.starts_with("up@offsite"))
        .unwrap_or_default();
    assert!(line.contains("failed"), "{status}");
    let snaps = ok(&cfg, &["snapshots"]);
    // Down: `snapshots` says it cannot be listed (up again, it would say how far behind).
    assert!(
        snaps.contains("copy storage `offsite`: cannot be listed"),
        "{snaps}"
    );
    assert!(
        snaps
            .lines()
            .any(|l| l.contains("`usb`") && l.contains("up to date")),
        "{snaps}"
    );
    let alerts = opsagent::catalog::Catalog::open(&b.path("state/catalog.sqlite"))
        .unwrap()
        .last_run_of("up@offsite", "copy")
        .unwrap()
        .unwrap();
    assert!(
        alerts.error.as_deref().unwrap_or("").contains("offsite"),
        "{alerts:?}"
    );

    // 4. Back (an empty server: the bucket is made again): the next run catches up.
    off.restart();
    off.create_bucket(&off_bucket);
    ok(&cfg, &["backup", "up"]);
    let primary = s3.list_keys(&b.bucket);
    assert_eq!(manifests(&primary).len(), 4);
    assert_eq!(manifests(&off.list_keys(&off_bucket)), manifests(&primary));
    let snaps = ok(&cfg, &["snapshots", "--storage", "offsite"]);
    assert_eq!(
        snaps.matches(" up ").count() + snaps.matches("\nup ").count(),
        4,
        "{snaps}"
    );

    // 5. The default bucket emptied by hand: the restore reads `offsite` and says so.
    for (k, _) in &primary {
        s3.delete_object(&b.bucket, k);
    }
    // A restore of `now` under `dir` (with `extra` flags); returns its output.
    let restore_to = |dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--date",
            "now",
            "--to-dir",
            dir.to_str().unwrap(),
            "--yes",
        ];
        args.extend_from_slice(extra);
        ok(&cfg, &args)
    };
    let to = b.path("restored");
    let out = restore_to(&to, &[]);
    assert!(
        out.contains("restoring from the copy storage `offsite`"),
        "{out}"
    );
    assert_identical(&src, &to.join(src.strip_prefix("/").unwrap()));
    // `--storage usb` reads the local copy.
    let to_usb = b.path("restored-usb");
    let out = restore_to(&to_usb, &["--storage", "usb"]);
    let drill = ok(&cfg, &["verify", "--storage", "offsite", "up"]);
    assert!(
        drill.contains("copy storage `offsite`") && drill.contains(": ok,"),
        "{drill}"
    );
    assert!(out.contains("`usb`"), "{out}");
    assert_identical(&src, &to_usb.join(src.strip_prefix("/").unwrap()));
}

#[test]
fn copy_storage_mistakes_are_config_errors_at_their_position() {
    let (_dir, cfg, err) = common::agent::check_config_fails(
        "bukcet = \"x\"\n[storage.offsite]\ntype = \"local\"\n\
         [[media]]\nname = \"m\"\npaths = [\"{dir}\"]\nschedule = \"@daily\"\ncopy_to = [\"ofsite\"]\n",
    );
    let at = |l: usize| format!("{}:{l}:", cfg.display());
    assert!(
        err.contains(&at(6)) && err.contains("did you mean `bucket`"),
        "{err}"
    );
    assert!(
        err.contains(&at(7)) && err.contains("`storage.offsite.path`"),
        "{err}"
    );
    assert!(
        err.contains(&at(13)) && err.contains("did you mean `offsite`"),
        "{err}"
    );
}

#[test]
fn a_copy_in_the_same_place_as_the_original_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("same.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{0}/state\"\n\
             [storage]\ntype = \"local\"\npath = \"{0}/b\"\n\
             [storage.again]\ntype = \"local\"\npath = \"{0}/b\"\nprefix = \"web-01/\"\nkeep = {{ last = 1 }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let err = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:7:", cfg.display()))
            && err.contains("[storage.again] is the same place as [storage]"),
        "{err}"
    );
}

#[test]
fn the_commented_copy_storage_of_the_example_config_loads() {
    let example = include_str!("../config/opsagent.example.toml");
    let start = example.find("# [storage.offsite]\n").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let block: String = example[start..end]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l).to_string() + "\n")
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n{block}\
             [[media]]\nname = \"m\"\npaths = [\"{0}\"]\nschedule = \"@daily\"\ncopy_to = [\"offsite\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = ok(&cfg, &["check-config"]);
    assert!(
        out.contains("copy      `offsite`: local directory /mnt/usb/opsagent/"),
        "{out}"
    );
    assert!(out.contains("keep daily 30"), "{out}");
}

#[test]
fn a_database_restores_from_the_copy_when_the_default_storage_lost_it() {
    let db = common::mariadb::MariaDb::shared();
    let name = db.new_database();
    db.sql_db(
        &name,
        "CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB); \
         INSERT INTO t VALUES (1, UNHEX(REPEAT('00FF7F805C27220D0A1A', 5000))), (2, 'plain');",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"local\"\npath = \"{0}/a\"\n\
             [storage.usb]\ntype = \"local\"\npath = \"{0}/b\"\n\
             [[mysql]]\nname = \"m\"\ndatabases = [\"{name}\"]\nsocket = \"{1}\"\nuser = \"root\"\n\
             schedule = \"@daily\"\nkeep = {{ last = 3 }}\ncopy_to = [\"usb\"]\n",
            dir.path().display(),
            db.socket().display()
        ),
    )
    .unwrap();
    ok(&cfg, &["backup", "m"]);
    // The dump arrived as stored (same bytes) in the copy.
    let dumps = |root: &Path| -> Vec<(String, u64)> {
        let mut v: Vec<_> = local_keys(root)
            .into_iter()
            .filter(|(k, _)| k.ends_with(".sql.zst"))
            .collect();
        v.sort();
        v
    };
    let here = dumps(&dir.path().join("a"));
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(dumps(&dir.path().join("b")), here);
    std::fs::remove_dir_all(dir.path().join("a")).unwrap();
    let back = format!("{name}_back");
    let out = ok(
        &cfg,
        &[
            "restore",
            "--date",
            "now",
            "--database",
            &name,
            "--to-database",
            &back,
            "--yes",
        ],
    );
    assert!(
        out.contains("restoring from the copy storage `usb`"),
        "{out}"
    );
    let sum = |d: &str| {
        let row = db.sql_db(d, "CHECKSUM TABLE t");
        row.split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(sum(&back), sum(&name));
    db.sql(&format!("DROP DATABASE `{back}`"));
}
