//! Media backups against the real moto S3 server and the real binary: what a snapshot holds
//! (excludes, symlinks, empty dirs), a file growing while it is read (a `partial` snapshot, exit
//! 1, a WARN for the run), an unchanged tree backed up again (nothing read, nothing uploaded), and
//! failures that commit nothing (storage down, a path that does not exist).

mod common;

use common::agent::{host_checks_off, opsagent, Bench as Setup};
use common::s3::S3Server;
use opsagent::catalog::{Catalog, RunStatus};
use opsagent::media::tree::{self, NodeKind};
use opsagent::snapshot::manifest::Manifest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A bench with a `src` directory to back up.
fn setup(s3: &S3Server) -> Setup {
    let b = Setup::new(s3, &[]);
    std::fs::create_dir(b.path("src")).unwrap();
    b
}

impl Setup {
    fn config(&self, s3: &S3Server, paths: &[PathBuf], extra: &str) -> PathBuf {
        let list: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        let mut text = self.head(s3, "state", "");
        text += &host_checks_off();
        text += &format!(
            "[[media]]\nname = \"uploads\"\nschedule = \"@daily\"\npaths = [{}]\n{extra}",
            list.join(", ")
        );
        let p = self.path("opsagent.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn manifests(&self, s3: &S3Server) -> Vec<Manifest> {
        let mut v: Vec<Manifest> = s3
            .list_keys(&self.bucket)
            .into_iter()
            .filter(|(k, _)| k.starts_with("web-01/snapshots/uploads/files/"))
            .map(|(k, _)| {
                // Manifests check the key they were read from, relative to the prefix.
                let rel = k.strip_prefix("web-01/").unwrap();
                Manifest::parse(rel, &s3.get_object(&self.bucket, &k).unwrap()).unwrap()
            })
            .collect();
        // Ids have one-second resolution; two runs in the same second sort by start time.
        v.sort_by_key(|m| m.started_at);
        v
    }

    fn tree(&self, _s3: &S3Server, m: &Manifest) -> Vec<tree::Node> {
        common::agent::tree_nodes(&self.path("opsagent.toml"), m)
    }
}

fn rel(root: &Path, n: &tree::Node) -> String {
    n.path
        .display()
        .strip_prefix(&root.display().to_string())
        .unwrap()
        .to_string()
}

#[test]
fn excludes_symlinks_and_an_unchanged_rerun_that_reads_nothing() {
    let s3 = S3Server::shared();
    let s = setup(s3);
    let src = s.path("src");
    for d in ["avatars/ünï cödé", "cache/thumbs", "empty dir"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("avatars/ünï cödé/me 1.jpg"), vec![7u8; 300_000]).unwrap();
    std::fs::write(src.join("avatars/notes.txt"), "hello\n".repeat(1000)).unwrap();
    std::fs::write(src.join("avatars/copy.txt"), "hello\n".repeat(1000)).unwrap();
    std::fs::write(src.join("cache/thumbs/t.jpg"), b"thumb").unwrap();
    std::fs::write(src.join("upload.tmp"), b"partial upload").unwrap();
    std::os::unix::fs::symlink("avatars/notes.txt", src.join("latest")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    let cfg = s.config(
        s3,
        std::slice::from_ref(&src),
        "exclude = [\"cache/\", \"*.tmp\"]\n",
    );

    let out = opsagent(&cfg, &["backup", "uploads"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let ms = s.manifests(s3);
    assert_eq!(ms.len(), 1);
    let media = ms[0].media.clone().unwrap();
    assert_eq!(
        (media.files, media.symlinks, media.status.as_str()),
        (3, 2, "complete")
    );
    let nodes = s.tree(s3, &ms[0]);
    let names: Vec<(String, NodeKind)> = nodes.iter().map(|n| (rel(&src, n), n.kind)).collect();
    assert!(
        names
            .iter()
            .all(|(p, _)| !p.contains("cache") && !p.ends_with(".tmp")),
        "{names:?}"
    );
    assert!(
        names.contains(&("/empty dir".into(), NodeKind::Dir)),
        "{names:?}"
    );
    let dangling = nodes.iter().find(|n| rel(&src, n) == "/dangling").unwrap();
    assert_eq!(
        dangling.target.as_ref().unwrap().display(),
        "/nonexistent/target"
    );
    // Two files with the same content share their chunk: stored once.
    let notes = nodes
        .iter()
        .find(|n| rel(&src, n) == "/avatars/notes.txt")
        .unwrap();
    let copy = nodes
        .iter()
        .find(|n| rel(&src, n) == "/avatars/copy.txt")
        .unwrap();
    assert_eq!(notes.chunks, copy.chunks);
    assert!(media.new_bytes < 300_000 + 2 * 6000, "{}", media.new_bytes);

    let before = s3.list_keys(&s.bucket).len();
    let out = opsagent(&cfg, &["backup", "uploads"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let ms = s.manifests(s3);
    let second = ms[1].media.clone().unwrap();
    assert_eq!(
        (second.new_bytes, second.new_stored),
        (0, 0),
        "nothing changed, nothing stored"
    );
    assert_eq!(second.packs, media.packs);
    // Only the new tree and manifest reached the bucket: no pack, no index.
    assert_eq!(s3.list_keys(&s.bucket).len(), before + 2);
    let listing = common::output_text(&opsagent(&cfg, &["snapshots"]));
    assert!(listing.contains("3 files, +0 B"), "{listing}");
}

#[test]
fn a_file_growing_while_read_makes_a_partial_snapshot_and_a_warning() {
    let s3 = S3Server::shared();
    let s = setup(s3);
    let src = s.path("src");
    std::fs::write(src.join("steady.txt"), b"steady").unwrap();
    let log = src.join("growing.log");
    std::fs::write(&log, vec![b'x'; 32 << 20]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&[b'y'; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let cfg = s.config(s3, std::slice::from_ref(&src), "");
    let out = opsagent(&cfg, &["backup", "uploads"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PARTIAL")
            && text.contains("growing.log")
            && text.contains("changed while being read"),
        "{text}"
    );
    let ms = s.manifests(s3);
    assert_eq!(ms.len(), 1, "the snapshot is committed all the same");
    let media = ms[0].media.clone().unwrap();
    assert_eq!(media.status, "partial");
    assert_eq!(media.files, 2);
    let runs = Catalog::open(&s.path("state/catalog.sqlite"))
        .unwrap()
        .recent_runs(5)
        .unwrap();
    assert_eq!(runs[0].status, RunStatus::Partial);
    assert!(runs[0].error.as_deref().unwrap().contains("growing.log"));
}

#[test]
fn failures_commit_nothing_and_name_the_cause() {
    let s3 = S3Server::shared();
    let s = setup(s3);
    let missing = s.path("no-such-dir");
    let cfg = s.config(s3, &[missing], "");
    let out = opsagent(&cfg, &["backup", "uploads"]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no-such-dir") && text.contains("hint:"),
        "{text}"
    );
    assert!(s.manifests(s3).is_empty());

    // A bucket that does not exist: the error names it; nothing is committed anywhere.
    std::fs::write(s.path("src/a.txt"), b"a").unwrap();
    let cfg = s.config(s3, &[s.path("src")], "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("bucket = \"{}\"", s.bucket),
        "bucket = \"no-such-bucket-x\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = opsagent(&cfg, &["backup", "uploads"]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("no-such-bucket-x"), "{text}");
    let runs = Catalog::open(&s.path("state/catalog.sqlite"))
        .unwrap()
        .recent_runs(5)
        .unwrap();
    assert_eq!(runs[0].status, RunStatus::Failed);
}

#[test]
fn encrypted_media_objects_hold_no_plaintext_and_restore_with_the_identity() {
    let s3 = S3Server::shared();
    let s = setup(s3);
    let src = s.path("src");
    let marker = "MARKER-7f3a9c-profile-picture";
    std::fs::write(src.join(format!("{marker}.txt")), marker.repeat(2000)).unwrap();
    std::fs::write(src.join("avatar.jpg"), format!("{marker} jpeg bytes")).unwrap();
    let key = s.path("key.txt");
    let gen = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", common::output_text(&gen));
    let recipient = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    let recipient = String::from_utf8(recipient.stdout)
        .unwrap()
        .trim()
        .to_string();
    let cfg = s.config(
        s3,
        std::slice::from_ref(&src),
        &format!("[encryption]\nrecipients = [\"{recipient}\"]\n"),
    );
    let out = opsagent(&cfg, &["backup", "uploads"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let mut packs = 0;
    for (key, _) in s3.list_keys(&s.bucket) {
        let body = s3.get_object(&s.bucket, &key).unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains(marker), "{key} holds plaintext");
        if key.contains("/packs/") || key.contains("/trees/") {
            assert!(
                body.starts_with(b"age-encryption.org/v1"),
                "{key} is not age-encrypted"
            );
            packs += 1;
        }
    }
    assert!(packs >= 2, "a pack and a tree");
    // Restoring needs the identity.
    let out = opsagent(
        &cfg,
        &["restore", "--date", "now", "--job", "uploads", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    let with_key = std::fs::read_to_string(&cfg).unwrap().replace(
        "[encryption]\n",
        &format!("[encryption]\nidentity_file = \"{}\"\n", key.display()),
    );
    std::fs::write(&cfg, with_key).unwrap();
    let dest = s.path("restored");
    let out = opsagent(
        &cfg,
        &[
            "restore",
            "--date",
            "now",
            "--job",
            "uploads",
            "--to-dir",
            dest.to_str().unwrap(),
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    let restored = dest
        .join(src.strip_prefix("/").unwrap())
        .join(format!("{marker}.txt"));
    assert_eq!(
        std::fs::read_to_string(restored).unwrap(),
        marker.repeat(2000)
    );
}
