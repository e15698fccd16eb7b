//! The bucket as untrusted input to media restores (issue 15), against the real moto S3 server
//! and the real binary: whoever can write to the bucket forges a manifest, a tree or an index
//! (committed with a valid sha256, so only the new checks catch it) or swaps plaintext in, and
//! the web server's user replaces a directory above the job's path by a symlink. Each must end
//! in a clear error, with nothing written outside the job's paths or `--to-dir`, and memory
//! under 256 MiB.

mod common;
#[allow(dead_code)]
use common::media_bench;
#[allow(dead_code)]
#[path = "support/media_tree.rs"]
mod media_tree;

use common::s3::S3Server;
use media_bench::{under, write, Bench, JOB};
use media_tree::{is_root, metas, Meta};
use opsagent::media::index::IndexFile;
use opsagent::media::tree::{self, Node, NodeKind, RawPath};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The storage prefix of the bench's host: keys below are relative to it, as in manifests
/// and messages.
const PREFIX: &str = "web/";

/// Peak memory a hostile object may cost.
const MAX_RSS_KIB: u64 = 256 << 10;

fn bucket(b: &Bench) -> String {
    std::fs::read_to_string(&b.cfg)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("bucket = \"")?
                .strip_suffix('"')
                .map(String::from)
        })
        .unwrap()
}

fn keys(b: &Bench, part: &str) -> Vec<String> {
    let mut k: Vec<String> = S3Server::shared()
        .list_keys(&bucket(b))
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(PREFIX).map(String::from))
        .filter(|k| k.contains(part))
        .collect();
    k.sort();
    k
}

fn get(b: &Bench, key: &str) -> Vec<u8> {
    let full = format!("{PREFIX}{key}");
    S3Server::shared().get_object(&bucket(b), &full).unwrap()
}

fn put(b: &Bench, key: &str, body: &[u8]) {
    S3Server::shared().put_object(&bucket(b), &format!("{PREFIX}{key}"), body);
}

/// The newest snapshot's manifest: (key, parsed).
fn manifest(b: &Bench) -> (String, serde_json::Value) {
    let key = keys(b, "snapshots/").pop().expect("a snapshot");
    let m = serde_json::from_slice(&get(b, &key)).unwrap();
    (key, m)
}

/// Replaces the newest snapshot's tree object by `tree` and commits it in the manifest with
/// its real size and sha256, after `edit`.
fn forge(b: &Bench, tree: &[u8], edit: impl FnOnce(&mut serde_json::Value)) {
    let (key, mut m) = manifest(b);
    let tree_key = m["objects"][0]["key"].as_str().unwrap().to_string();
    put(b, &tree_key, tree);
    m["objects"][0]["size"] = tree.len().into();
    m["objects"][0]["sha256"] = hex::encode(Sha256::digest(tree)).into();
    edit(&mut m);
    put(b, &key, &serde_json::to_vec_pretty(&m).unwrap());
}

fn nodes(b: &Bench) -> Vec<Node> {
    let (key, m) = manifest(b);
    let m = opsagent::snapshot::manifest::Manifest::parse(&key, m.to_string().as_bytes()).unwrap();
    common::agent::tree_nodes(&b.cfg, &m)
}

/// Runs the binary (`ulimit -v` of `virt_mib` when given); returns exit code, output text and
/// peak resident memory in KiB (`ru_maxrss` of the child).
fn run_peak(b: &Bench, args: &[&str], virt_mib: Option<u64>) -> (Option<i32>, String, u64) {
    let out_path = b.path("run.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = match virt_mib {
        None => Command::new(env!("CARGO_BIN_EXE_opsagent")),
        Some(m) => {
            let mut c = Command::new("sh");
            c.args([
                "-c",
                &format!("ulimit -v {} && exec \"$0\" \"$@\"", m << 10),
            ])
            .arg(env!("CARGO_BIN_EXE_opsagent"));
            c
        }
    };
    // Reaped by wait4 below (for its rusage), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .arg("--config")
        .arg(&b.cfg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: valid pointers to a status and a rusage.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let text = String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned();
    (code, text, usage.ru_maxrss as u64)
}

fn restore_in_place(b: &Bench) -> (Option<i32>, String) {
    let (code, text, _) = run_peak(
        b,
        &[
            "restore",
            "--date",
            "now",
            "--in-place",
            "--delete",
            "--yes",
        ],
        None,
    );
    (code, text)
}

fn snapshot_of(b: &Bench) -> String {
    manifest(b).1["id"].as_str().unwrap().to_string()
}

#[test]
fn forged_paths_outside_the_job_are_refused_in_place_and_stay_inside_to_dir() {
    let b = Bench::new(&["src"]);
    let (src, other) = (b.path("src"), b.path("other"));
    write(&src.join("a.txt"), b"a\n");
    write(&other.join("precious"), b"precious\n");
    b.ok(&["backup", JOB]);
    let before = metas(&other);
    let id = snapshot_of(&b);
    // A `..` that climbs out of the job's path, then a path outside it. (Not `/`: on a
    // build without the check, `--delete` would sweep the machine.)
    let from = src.display().to_string();
    let original = nodes(&b);
    for to in [format!("{from}/../other"), other.display().to_string()] {
        let moved: Vec<Node> = original
            .iter()
            .cloned()
            .map(|mut n| {
                let p = n.path.display().replacen(&from, &to, 1);
                n.path = RawPath(p.into_bytes());
                n.mode |= 0o4000;
                n
            })
            .collect();
        let to2 = to.clone();
        forge(&b, &tree::encode(&moved).unwrap(), |m| {
            m["media"]["paths"] = serde_json::json!([to2]);
        });
        let (code, text) = restore_in_place(&b);
        assert_eq!(code, Some(1), "{to}: {text}");
        for needle in [
            to.as_str(),
            id.as_str(),
            "`up`",
            "--to-dir",
            "configured paths",
        ] {
            assert!(text.contains(needle), "{to}: `{needle}` missing in {text}");
        }
        assert_eq!(metas(&other), before, "{to}: `other` was changed");
    }
    // With --to-dir the forged paths land inside that directory, without the setuid bit.
    let to_dir = b.path("out");
    let out = b.ok(&[
        "restore",
        "--date",
        "now",
        "--to-dir",
        to_dir.to_str().unwrap(),
        "--yes",
    ]);
    let got = under(&to_dir, &other).join("a.txt");
    assert_eq!(std::fs::read(&got).unwrap(), b"a\n", "{out}");
    assert_eq!(std::fs::metadata(&got).unwrap().mode() & 0o7000, 0);
    assert_eq!(metas(&other), before);
}

#[test]
fn setuid_and_setgid_bits_are_not_restored_and_a_warning_names_the_files() {
    let b = Bench::new(&["src"]);
    let src = b.path("src");
    for i in 0..15 {
        write(&src.join(format!("bin/tool{i:02}")), b"#!/bin/sh\n");
        media_tree::chmod(&src.join(format!("bin/tool{i:02}")), 0o4755);
    }
    write(&src.join("sgid"), b"x");
    media_tree::chmod(&src.join("sgid"), 0o2750);
    std::fs::create_dir(src.join("shared")).unwrap();
    media_tree::chmod(&src.join("shared"), 0o2775);
    b.ok(&["backup", JOB]);
    let to = b.path("out");
    let (code, text, _) = run_peak(
        &b,
        &[
            "restore",
            "--date",
            "now",
            "--to-dir",
            to.to_str().unwrap(),
            "--yes",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{text}");
    let got = under(&to, &src);
    let mode = |p: &str| std::fs::metadata(got.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("bin/tool00"), 0o755);
    assert_eq!(mode("sgid"), 0o750);
    // A directory keeps setgid (group inheritance grants nothing).
    assert_eq!(mode("shared"), 0o2775);
    assert_eq!(text.matches("setuid/setgid").count(), 1, "{text}");
    assert!(
        text.contains("16 file(s)") && text.contains("and 6 more"),
        "{text}"
    );
    assert!(
        text.contains(&format!("`{}`", src.join("bin/tool00").display())),
        "{text}"
    );
}

/// A file of `n` KiB of text (compressible: stored as a zstd blob).
fn text_file(p: &Path, n: usize) {
    write(p, "all work and no play\n".repeat(n * 50).as_bytes());
}

#[test]
fn a_4_gib_blob_length_in_an_index_or_pack_header_is_refused_naming_its_object() {
    let b = Bench::new(&["src"]);
    let src = b.path("src");
    text_file(&src.join("f"), 1024);
    b.ok(&["backup", JOB]);
    let before = nodes(&b);
    // The pack holding the file (the other one holds the tree's blobs).
    let chunk = before
        .iter()
        .find_map(|n| n.chunks.first())
        .copied()
        .unwrap();
    let pack_key = (keys(&b, "/packs/").into_iter())
        .find(|k| {
            let p = get(&b, k);
            let blobs = opsagent::media::pack::parse_header(k, &p).unwrap();
            blobs.iter().any(|e| e.id == chunk)
        })
        .unwrap();
    // The pack's own header claims 4 GiB: `verify` names the pack.
    let pack = get(&b, &pack_key);
    let n = pack.len();
    let hlen = u32::from_le_bytes(pack[n - 8..n - 4].try_into().unwrap()) as usize;
    let header = String::from_utf8(pack[n - 8 - hlen..n - 8].to_vec()).unwrap();
    let raw = serde_json::from_str::<serde_json::Value>(&header).unwrap()["blobs"][0]["raw_length"]
        .to_string();
    let forged = header.replace(
        &format!("\"raw_length\":{raw}"),
        "\"raw_length\":4294967296",
    );
    let mut bytes = pack[..n - 8 - hlen].to_vec();
    bytes.extend_from_slice(forged.as_bytes());
    bytes.extend_from_slice(&(forged.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"OAPK");
    put(&b, &pack_key, &bytes);
    let (code, text, peak) = run_peak(&b, &["verify", JOB], Some(2048));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&pack_key) && text.contains("4294967296"),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
    assert!(peak < MAX_RSS_KIB, "verify peaked at {peak} KiB");
    println!(
        "4 GiB raw_length in a pack header: verify peak {} MiB",
        peak >> 10
    );
    put(&b, &pack_key, &pack);
    // The index claims it, and the tree agrees: the restore refuses before allocating 4 GiB
    // (under a 2 GiB address-space limit, an allocation of it would abort).
    let index_key = keys(&b, "/index/").pop().unwrap();
    let mut index = IndexFile::decode(&index_key, &get(&b, &index_key)).unwrap();
    for p in &mut index.packs {
        for e in p.blobs.iter_mut().filter(|e| e.id == chunk) {
            e.raw_length = 4 << 30;
        }
    }
    put(&b, &index_key, &index.encode().1);
    let grown: Vec<Node> = before
        .into_iter()
        .map(|mut n| {
            if n.kind == NodeKind::File {
                n.size = 4 << 30;
            }
            n
        })
        .collect();
    forge(&b, &tree::encode(&grown).unwrap(), |_| {});
    let to = b.path("out");
    let (code, text, peak) = run_peak(
        &b,
        &[
            "restore",
            "--date",
            "now",
            "--to-dir",
            to.to_str().unwrap(),
            "--yes",
        ],
        Some(2048),
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&index_key) && text.contains("4294967296"),
        "{text}"
    );
    assert!(peak < MAX_RSS_KIB, "restore peaked at {peak} KiB");
    println!(
        "4 GiB raw_length in the index: restore peak {} MiB",
        peak >> 10
    );
    assert!(!under(&to, &src).join("f").exists());
}

#[test]
fn a_tree_that_expands_a_thousandfold_is_refused_in_bounded_memory() {
    let b = Bench::new(&["src"]);
    let src = b.path("src");
    write(&src.join("f"), b"f\n");
    b.ok(&["backup", JOB]);
    let node = nodes(&b)
        .into_iter()
        .find(|n| n.kind == NodeKind::File)
        .unwrap();
    // One frame of 4 MiB of entries, repeated: zstd reads concatenated frames as one stream.
    let mut line = serde_json::to_vec(&node).unwrap();
    line.push(b'\n');
    let mut block = Vec::new();
    while block.len() < 4 << 20 {
        block.extend_from_slice(&line);
    }
    let frame = zstd::bulk::compress(&block, 3).unwrap();
    let mut bomb = zstd::bulk::compress(b"{\"format\":1}\n", 3).unwrap();
    let copies = 60; // 240 MiB of entries
    for _ in 0..copies {
        bomb.extend_from_slice(&frame);
    }
    let expanded = (block.len() * copies) as f64 / bomb.len() as f64;
    assert!(expanded > 1000.0, "{expanded}");
    forge(&b, &bomb, |_| {});
    let to = b.path("out");
    let (code, text, peak) = run_peak(
        &b,
        &[
            "restore",
            "--date",
            "now",
            "--to-dir",
            to.to_str().unwrap(),
            "--yes",
        ],
        None,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("/trees/") && text.contains("decompresses to more than"),
        "{text}"
    );
    assert!(peak < MAX_RSS_KIB, "restore peaked at {peak} KiB");
    println!("tree bomb ({expanded:.0}×): peak {} MiB", peak >> 10);
    assert!(!to.exists() || metas(&to).len() <= 1);
}

#[test]
fn with_encryption_a_plaintext_tree_is_refused_and_old_plaintext_packs_still_serve() {
    let b = Bench::new(&["src"]);
    let src = b.path("src");
    text_file(&src.join("f"), 512);
    b.ok(&["backup", JOB]);
    let (_, plain_m) = manifest(&b);
    let plain_tree = get(&b, plain_m["objects"][0]["key"].as_str().unwrap());
    // Encryption turned on: the next snapshot's tree is encrypted, its packs reused plaintext.
    let key = b.path("age.key");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::output_text(&out));
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&key)
        .output()
        .unwrap();
    let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&b.cfg)
        .unwrap();
    writeln!(
        f,
        "[encryption]\nrecipients = [\"{recipient}\"]\nidentity_file = \"{}\"",
        key.display()
    )
    .unwrap();
    write(&src.join("g"), b"g\n");
    // Snapshot ids and `--date now` have one-second resolution: two backups in the same second
    // sort by their random suffix, and the plaintext one could be taken for the newest.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.ok(&["backup", JOB]);
    let to = b.path("out");
    b.ok(&[
        "restore",
        "--date",
        "now",
        "--to-dir",
        to.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(std::fs::read(under(&to, &src).join("g")).unwrap(), b"g\n");
    assert_eq!(
        std::fs::read(under(&to, &src).join("f")).unwrap(),
        std::fs::read(src.join("f")).unwrap()
    );
    // The encrypted snapshot's tree swapped for a plaintext one (with a matching sha256).
    let (_, m) = manifest(&b);
    let tree_key = m["objects"][0]["key"].as_str().unwrap().to_string();
    assert!(get(&b, &tree_key).starts_with(b"age-encryption.org/v1\n"));
    forge(&b, &plain_tree, |_| {});
    let to2 = b.path("out2");
    let (code, text, _) = run_peak(
        &b,
        &[
            "restore",
            "--date",
            "now",
            "--to-dir",
            to2.to_str().unwrap(),
            "--yes",
        ],
        None,
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&tree_key) && text.contains("plaintext"),
        "{text}"
    );
    assert!(!to2.exists() || metas(&to2).len() <= 1);
}

/// Entries under `root` with their metadata and content.
fn snapshot_dir(root: &Path) -> BTreeMap<Vec<u8>, (Meta, Vec<u8>)> {
    metas(root)
        .into_iter()
        .map(|(k, m)| {
            let p = root.join(std::ffi::OsStr::new(std::str::from_utf8(&k).unwrap()));
            let data = if m.kind == 'f' {
                std::fs::read(p).unwrap()
            } else {
                Vec::new()
            };
            (k, (m, data))
        })
        .collect()
}

#[test]
fn in_place_refuses_a_parent_of_the_job_path_replaced_by_a_symlink() {
    // Laravel: the job backs up `storage/app/public`; `public/storage` links to it.
    let b = Bench::new(&["app/storage/app/public"]);
    let public = b.path("app/storage/app/public");
    write(&public.join("avatars/1.jpg"), b"one\n");
    write(&public.join("old.txt"), b"old\n");
    b.ok(&["backup", JOB]);
    // The web server's user moves `storage/app` away and links it to another directory.
    let victim = b.path("victim");
    write(&victim.join("public/precious"), b"precious\n");
    write(&victim.join("public/avatars/keep"), b"keep\n");
    media_tree::chmod(&victim.join("public"), 0o750);
    let storage = b.path("app/storage");
    std::fs::rename(storage.join("app"), b.path("moved-app")).unwrap();
    std::os::unix::fs::symlink(&victim, storage.join("app")).unwrap();
    // A directory the web server may write (its owner, or mode 0777 without root).
    if is_root() {
        std::os::unix::fs::lchown(storage.join("app"), Some(33), Some(33)).unwrap();
        std::os::unix::fs::chown(&storage, Some(33), Some(33)).unwrap();
    } else {
        media_tree::chmod(&storage, 0o777);
    }
    let before = snapshot_dir(&victim);
    let (code, text) = restore_in_place(&b);
    assert_eq!(code, Some(1), "{text}");
    let link = format!("`{}`", storage.join("app").display());
    assert!(
        text.contains(&link) && text.contains("not followed"),
        "{text}"
    );
    assert_eq!(
        snapshot_dir(&victim),
        before,
        "the link's target was changed"
    );
    assert!(storage.join("app").is_symlink());
}
