//! The anomaly guard with real components: the real MariaDB server, a local bucket, the real
//! binary. A table with 80 % of its rows deleted between two backups (and, separately, half the
//! upload files replaced by random bytes of the same names and sizes) under `keep = { last = 2 }`:
//! a WARN alert `anomaly:JOB` in the catalog names what shrank, the next backups and prunes keep
//! every older snapshot, `status` says what to run; after `opsagent ack JOB` retention resumes.

mod common;

use common::agent::{agent_table, opsagent};
use common::mariadb::MariaDb;
use opsagent::alert::Engine;
use opsagent::catalog::Catalog;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PASSWORD: &str = "anomaly-pw";

fn text(o: &std::process::Output) -> String {
    common::output_text(o)
}

fn ok(cfg: &Path, args: &[&str]) -> String {
    let out = opsagent(cfg, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config with `job` (a `[[mysql]]` or `[[media]]` table's lines) on a local bucket.
fn config(dir: &Path, kind: &str, job: &str) -> PathBuf {
    let text = agent_table("web-01", &dir.join("state"), "")
        + &format!(
            "[storage]\ntype = \"local\"\npath = \"{}\"\n[[{kind}]]\nschedule = \"@daily\"\nkeep = {{ last = 2 }}\n{job}",
            dir.join("bucket").display()
        );
    let p = dir.join("opsagent.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The committed snapshots of `job` (manifests in the bucket).
fn manifests(dir: &Path, job: &str) -> usize {
    let base = dir.join("bucket/web-01/snapshots").join(job);
    let mut n = 0;
    for item in std::fs::read_dir(base).unwrap() {
        n += std::fs::read_dir(item.unwrap().path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("json".as_ref()))
            .count();
    }
    n
}

/// Runs the alerting engine once (as the daemon does each tick); returns `anomaly:JOB`'s
/// (firing, severity, detail).
fn alert(cfg: &Path, job: &str) -> (bool, String, String) {
    let c = opsagent::config::load(cfg).unwrap();
    let cat = Arc::new(Catalog::open(&c.catalog_path()).unwrap());
    Engine::new(cat.clone(), c.alert_setup()).ingest().unwrap();
    let a = cat
        .alerts()
        .unwrap()
        .into_iter()
        .find(|a| a.key == format!("anomaly:{job}"))
        .unwrap_or_else(|| panic!("no alert anomaly:{job}"));
    (a.firing, a.severity, a.detail)
}

/// The freeze, seen by prune and status, then lifted by `ack`: what both tests share.
fn frozen_then_acked(cfg: &Path, dir: &Path, job: &str, snaps: usize, needle: &str) {
    // The next backup compares with the shrunk snapshot (no new anomaly) but stays frozen.
    ok(cfg, &["backup"]);
    assert_eq!(manifests(dir, job), snaps + 1);
    let pruned = ok(cfg, &["prune"]);
    assert!(
        pruned.contains("retention FROZEN") && pruned.contains(needle),
        "{pruned}"
    );
    assert!(pruned.contains(&format!("opsagent ack {job}")), "{pruned}");
    assert_eq!(manifests(dir, job), snaps + 1, "{pruned}");
    let status = opsagent(cfg, &["status"]);
    let shown = text(&status);
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("retention FROZEN") && shown.contains(&format!("`opsagent ack {job}`")),
        "{shown}"
    );
    let acked = ok(cfg, &["ack", job]);
    assert!(
        acked.contains("acknowledged") && acked.contains(needle),
        "{acked}"
    );
    let (firing, _, detail) = alert(cfg, job);
    assert!(!firing && detail.contains("acknowledged"), "{detail}");
    ok(cfg, &["prune"]);
    assert_eq!(manifests(dir, job), 2, "retention resumed");
    assert!(ok(cfg, &["ack", job]).contains("no anomaly to acknowledge"));
    let unknown = opsagent(cfg, &["ack", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
}

#[test]
fn rows_deleted_freeze_retention_until_ack() {
    let db = MariaDb::shared();
    db.create_user("backup", PASSWORD);
    let name = db.new_database();
    db.sql_db(
        &name,
        "CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(100));
         INSERT INTO orders SELECT seq, CONCAT('order (', seq, '), ''x''') FROM seq_1_to_1000;
         CREATE TABLE sessions (id INT PRIMARY KEY); INSERT INTO sessions VALUES (1), (2);",
    );
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_secret(dir.path(), "mysql", PASSWORD);
    let job = format!(
        "name = \"main\"\ndatabases = [\"{name}\"]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"backup\"\npassword_file = \"{}\"\n",
        db.port(),
        pw.display()
    );
    let cfg = config(dir.path(), "mysql", &job);
    ok(&cfg, &["backup"]);
    ok(&cfg, &["backup"]);
    // The manifest counts what the dump wrote, per table.
    let item = dir.path().join("bucket/web-01/snapshots/main").join(&name);
    let first = std::fs::read_dir(item).unwrap().next().unwrap().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.path()).unwrap()).unwrap();
    let tables = m["tables"].as_array().unwrap();
    assert_eq!(
        (tables[0]["name"].as_str(), tables[0]["rows"].as_u64()),
        (Some("orders"), Some(1000)),
        "{m}"
    );
    assert_eq!(tables[1]["rows"].as_u64(), Some(2), "{m}");
    db.sql_db(
        &name,
        "DELETE FROM orders WHERE id > 200; DELETE FROM sessions;",
    );
    ok(&cfg, &["backup"]);
    assert_eq!(manifests(dir.path(), "main"), 3, "frozen at once");
    let (firing, severity, detail) = alert(&cfg, "main");
    let shrink = format!("{name}.orders: 1 000 → 200 rows since ");
    assert!(firing && severity == "WARN", "{detail}");
    assert!(detail.contains(&shrink), "{detail}");
    assert!(
        !detail.contains("sessions"),
        "small tables are not judged: {detail}"
    );
    frozen_then_acked(&cfg, dir.path(), "main", 3, &shrink);
}

/// `n` pseudo-random bytes (xorshift), different for each `seed`.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn files_encrypted_in_place_freeze_retention_until_ack() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("uploads");
    std::fs::create_dir(&up).unwrap();
    for i in 0..20 {
        std::fs::write(up.join(format!("f{i:02}.jpg")), noise(8192, i)).unwrap();
    }
    let job = format!("name = \"uploads\"\npaths = [\"{}\"]\n", up.display());
    let cfg = config(dir.path(), "media", &job);
    ok(&cfg, &["backup"]);
    ok(&cfg, &["backup"]);
    // Ransomware: half the files rewritten with random bytes, same names, same sizes.
    for i in 0..10 {
        std::fs::write(up.join(format!("f{i:02}.jpg")), noise(8192, 1000 + i)).unwrap();
    }
    ok(&cfg, &["backup"]);
    assert_eq!(manifests(dir.path(), "uploads"), 3, "frozen at once");
    let (firing, severity, detail) = alert(&cfg, "uploads");
    let shrink = "uploads: 80.0 KiB of 160.0 KiB rewritten (50 %) since ";
    assert!(firing && severity == "WARN", "{detail}");
    assert!(detail.contains(shrink), "{detail}");
    frozen_then_acked(&cfg, dir.path(), "uploads", 3, shrink);
}
