//! Format-2 media trees (issue 21) against the real moto S3 server and the real binary: an
//! unchanged tree backed up again costs a manifest and a tiny tree object, a scattered 1 %
//! change rewrites a small part of the tree, new-format snapshots restore byte-identical,
//! old-format (whole-tree) snapshots still restore and verify, and damaged or forged tree
//! blobs are refused naming the object.

mod common;

use common::agent::{opsagent, tree_nodes};
use common::media_bench::{self, JOB};
use common::s3::S3Server;
use opsagent::media::index::{Index, IndexFile};
use opsagent::media::{tree, Id};
use opsagent::snapshot::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

const PREFIX: &str = "web/";

/// The shared media bench, with what these tests read and forge in its bucket.
struct Bench {
    b: media_bench::Bench,
    src: PathBuf,
    state: PathBuf,
    cfg: PathBuf,
    bucket: String,
}

impl Bench {
    fn new() -> Bench {
        let b = media_bench::Bench::with_job_lines(
            &["src"],
            "keep = { last = 100 }\n\
             # The prune test rewrites every file on purpose: no anomaly freeze.\n\
             anomaly_drop = \"off\"\n",
        );
        let (src, state) = (b.path("src"), b.path("state"));
        std::fs::create_dir_all(&src).unwrap();
        let (cfg, bucket) = (b.cfg.clone(), b.bucket.clone());
        Bench {
            b,
            src,
            state,
            cfg,
            bucket,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.b.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.b.ok(args)
    }

    /// Objects of the bucket (keys without the prefix) and their sizes.
    fn objects(&self) -> BTreeMap<String, u64> {
        (S3Server::shared().list_keys(&self.bucket).into_iter())
            .filter_map(|(k, s)| Some((k.strip_prefix(PREFIX)?.to_string(), s)))
            .collect()
    }

    fn bytes(&self) -> u64 {
        self.objects().values().sum()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        S3Server::shared()
            .get_object(&self.bucket, &format!("{PREFIX}{key}"))
            .unwrap()
    }

    fn put(&self, key: &str, body: &[u8]) {
        S3Server::shared().put_object(&self.bucket, &format!("{PREFIX}{key}"), body);
    }

    /// The manifests, oldest first.
    fn manifests(&self) -> Vec<Manifest> {
        let mut v: Vec<Manifest> = (self.objects().into_keys())
            .filter(|k| k.starts_with("snapshots/"))
            .map(|k| Manifest::parse(&k, &self.get(&k)).unwrap())
            .collect();
        v.sort_by_key(|m| m.started_at);
        v
    }

    fn index(&self) -> Index {
        let mut idx = Index::default();
        for k in self.objects().into_keys().filter(|k| k.contains("/index/")) {
            idx.add(IndexFile::decode(&k, &self.get(&k)).unwrap());
        }
        idx
    }

    /// The packs holding no file content of any snapshot: tree packs, (key, size).
    fn tree_packs(&self) -> BTreeMap<String, u64> {
        let chunks: HashSet<Id> = (self.manifests().iter())
            .flat_map(|m| tree_nodes(&self.cfg, m))
            .flat_map(|n| n.chunks)
            .collect();
        let idx = self.index();
        let objects = self.objects();
        (idx.packs.values())
            .filter(|p| !p.blobs.iter().any(|b| chunks.contains(&b.id)))
            .map(|p| opsagent::media::keys::pack_key(JOB, &p.id))
            .filter_map(|k| Some((k.clone(), *objects.get(&k)?)))
            .collect()
    }

    /// Replaces the newest snapshot's tree object by `tree`, with its manifest's size and sha256.
    fn forge(&self, tree: &[u8]) {
        let key = (self.objects().into_keys())
            .filter(|k| k.starts_with("snapshots/"))
            .max()
            .unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&self.get(&key)).unwrap();
        let tree_key = m["objects"][0]["key"].as_str().unwrap().to_string();
        self.put(&tree_key, tree);
        m["objects"][0]["size"] = tree.len().into();
        m["objects"][0]["sha256"] = hex::encode(Sha256::digest(tree)).into();
        self.put(&key, &serde_json::to_vec_pretty(&m).unwrap());
    }

    /// Restores the newest snapshot under `to` and checks it is the source, byte for byte.
    fn restores_identical(&self, to: &str) {
        let dir = self.state.join(to);
        let d = dir.display().to_string();
        self.ok(&[
            "restore", "--date", "now", "--job", JOB, "--to-dir", &d, "--yes",
        ]);
        let mut restored = dir.clone();
        restored.push(self.src.strip_prefix("/").unwrap());
        assert_eq!(scan(&restored), scan(&self.src));
    }
}

/// Every file under `root`, relative, with its content.
fn scan(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(p);
            } else if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else {
                let data = std::fs::read(&p).unwrap();
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), data);
            }
        }
    }
    out
}

/// 3 000 small files in 150 directories (names long enough for entries of the usual size).
fn many_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for i in 0..3000 {
        let p = src.join(format!(
            "uploads/{:03}/avatar-{i:05}-{:x}.jpg",
            i % 150,
            i * 7919
        ));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("content of file {i}\n")).unwrap();
        files.push(p);
    }
    files
}

#[test]
fn unchanged_snapshots_cost_almost_nothing_and_a_scattered_change_little() {
    let b = Bench::new();
    let files = many_files(&b.src);
    b.ok(&["backup", JOB]);
    let full_tree: u64 = b.tree_packs().values().sum();
    assert!(full_tree > 50_000, "the tree of 3 000 files: {full_tree}");
    let (before, packs_before) = (
        b.bytes(),
        b.objects().keys().filter(|k| k.contains("/packs/")).count(),
    );
    for _ in 0..24 {
        b.ok(&["backup", JOB]);
    }
    let added = b.bytes() - before;
    let packs_after = b.objects().keys().filter(|k| k.contains("/packs/")).count();
    assert_eq!(
        packs_after, packs_before,
        "unchanged snapshots store no blob"
    );
    assert!(
        added < 2 << 20,
        "24 unchanged snapshots added {added} bytes"
    );
    // A manifest (about 1 KiB) and a tree object of a few list blob ids each.
    assert!(
        added < 24 * 3000,
        "24 unchanged snapshots added {added} bytes"
    );

    // 1 % of the files, spread over the tree, change.
    for (n, f) in files.iter().enumerate().filter(|(n, _)| n % 100 == 37) {
        std::fs::write(f, format!("changed {n}\n")).unwrap();
    }
    let old_tree_packs = b.tree_packs();
    b.ok(&["backup", JOB]);
    let new_tree: u64 = (b.tree_packs().into_iter())
        .filter(|(k, _)| !old_tree_packs.contains_key(k))
        .map(|(_, s)| s)
        .sum();
    assert!(
        new_tree * 3 < full_tree,
        "a 1 % change stored {new_tree} bytes of tree, the whole tree is {full_tree}"
    );
    b.restores_identical("restored");
}

#[test]
fn an_old_format_snapshot_still_restores_verifies_and_survives_prune() {
    let b = Bench::new();
    many_files(&b.src);
    std::fs::create_dir(b.src.join("empty")).unwrap();
    std::os::unix::fs::symlink("uploads/000", b.src.join("link")).unwrap();
    b.ok(&["backup", JOB]);
    let m = b.manifests().pop().unwrap();
    // The snapshot as an opsagent before format 2 wrote it: the whole tree in one object.
    let nodes = tree_nodes(&b.cfg, &m);
    let old = tree::encode(&nodes).unwrap();
    assert!(
        String::from_utf8_lossy(&zstd::decode_all(&old[..]).unwrap())
            .starts_with("{\"format\":1}\n")
    );
    b.forge(&old);
    b.ok(&["verify", JOB]);
    b.restores_identical("old-format");
    // A format-2 snapshot on top; prune keeps both, and the old one still restores.
    b.ok(&["backup", JOB]);
    b.ok(&["prune", JOB]);
    assert_eq!(b.manifests().len(), 2);
    let m0 = &b.manifests()[0];
    assert_eq!(tree_nodes(&b.cfg, m0), nodes);
}

#[test]
fn a_corrupt_tree_blob_fails_verify_and_restore_naming_the_pack() {
    let b = Bench::new();
    many_files(&b.src);
    b.ok(&["backup", JOB]);
    let (pack_key, _) = b.tree_packs().into_iter().next().unwrap();
    let mut bytes = b.get(&pack_key);
    bytes[10] ^= 0x55; // inside the first blob
    b.put(&pack_key, &bytes);
    for args in [
        &["verify", JOB][..],
        &["restore", "--date", "now", "--job", JOB, "--yes"],
    ] {
        let out = b.run(args);
        let text = common::output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains(&pack_key) && text.contains("tree blob"),
            "{args:?}: {text}"
        );
    }
}

#[test]
fn forged_tree_objects_are_refused_with_a_clear_error() {
    let b = Bench::new();
    many_files(&b.src);
    b.ok(&["backup", JOB]);
    let cases: [(&[u8], &str); 4] = [
        (b"{\"format\":2,\"lists\":1000000000000}\n", "more than the 1048576"),
        (b"{\"format\":2,\"lists\":3}\nab\n", "line 2 is not a blob id"),
        (b"{\"format\":2,\"lists\":2}\n", "lists 0 list blobs where its header claims 2"),
        (
            b"{\"format\":2,\"lists\":1}\n0000000000000000000000000000000000000000000000000000000000000000\n",
            "is in no pack of the job's index",
        ),
    ];
    for (text, said) in cases {
        b.forge(&zstd::encode_all(text, 3).unwrap());
        let out = b.run(&["verify", JOB]);
        let got = common::output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{got}");
        assert!(
            got.contains(said) && got.contains("/trees/"),
            "{said}: {got}"
        );
    }
}

#[test]
fn prune_keeps_the_tree_blobs_of_kept_snapshots_and_removes_the_others() {
    let b = Bench::new();
    let files = many_files(&b.src);
    b.ok(&["backup", JOB]);
    let t1: HashSet<String> = b.tree_packs().into_keys().collect();
    // Every file changes: no entry blob of the first tree is in the second.
    for (n, f) in files.iter().enumerate() {
        std::fs::write(f, format!("second version of {n}\n")).unwrap();
    }
    b.ok(&["backup", JOB]);
    let second = b.manifests().pop().unwrap();
    let t2: HashSet<String> = (b.tree_packs().into_keys())
        .filter(|k| !t1.contains(k))
        .collect();
    assert!(!t1.is_empty() && !t2.is_empty());
    let text = std::fs::read_to_string(&b.cfg).unwrap();
    let keep_one = b.cfg.with_file_name("keep-one.toml");
    let text = text.replace(
        "keep = { last = 100 }",
        "keep = { last = 1 }\nprune_grace = \"0s\"",
    );
    std::fs::write(&keep_one, text).unwrap();
    let out = opsagent(&keep_one, &["prune", JOB]);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    let left: HashSet<String> = b.objects().into_keys().collect();
    assert!(
        t1.iter().all(|k| !left.contains(k)),
        "the first tree's packs go: {said}"
    );
    assert!(
        t2.iter().all(|k| left.contains(k)),
        "the second tree's packs stay: {said}"
    );
    assert_eq!(b.manifests(), vec![second]);
    b.restores_identical("after-prune");
}
