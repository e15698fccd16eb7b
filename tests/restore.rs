//! `opsagent restore` and `opsagent verify` end to end on the real MariaDB and S3 servers:
//! snapshots taken at controlled times (faketime) are picked by `--date`; errors change nothing;
//! in-place restores swap atomically and refuse corrupted objects; a new machine restores from
//! the bucket alone; drills pass on good snapshots and fail on corrupted ones.

mod common;

use common::mariadb::MariaDb;
use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Bench {
    dir: tempfile::TempDir,
    bucket: String,
    db: String,
}

fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    common::write_secret(dir, name, value)
}

impl Bench {
    fn new() -> Bench {
        let (db, s3) = (MariaDb::shared(), S3Server::shared());
        let dir = tempfile::tempdir().unwrap();
        secret(dir.path(), "s3", SECRET_KEY);
        let name = format!("app-{}", common::unique_name("r").replace('-', "_"));
        db.sql(&format!("CREATE DATABASE `{name}`"));
        Bench {
            dir,
            bucket: s3.new_bucket(),
            db: name,
        }
    }

    fn config(&self, state: &str, hostname: &str) -> PathBuf {
        let (db, s3) = (MariaDb::shared(), S3Server::shared());
        let text = format!(
            "[agent]\nhostname = \"{hostname}\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{sec}\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [\"{name}\"]\nsocket = \"{sock}\"\nuser = \"root\"\nschedule = \"30 2 * * *\"\nkeep = {{ last = 100 }}\n",
            state = self.dir.path().join(state).display(),
            bucket = self.bucket,
            ep = s3.endpoint(),
            sec = self.dir.path().join("s3").display(),
            name = self.db,
            sock = db.socket().display(),
        );
        let p = self.dir.path().join(format!("{state}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn rows(&self, db: &str) -> usize {
        MariaDb::shared()
            .sql(&format!("SELECT COUNT(*) FROM `{db}`.t"))
            .trim()
            .parse()
            .unwrap()
    }

    fn set_rows(&self, n: usize) {
        let d = &self.db;
        MariaDb::shared().sql_db(d, &format!(
            "DROP TABLE IF EXISTS t; CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(20)); INSERT INTO t SELECT seq, 'x' FROM seq_1_to_{n};"
        ));
    }
}

fn run(cfg: &Path, at: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = match at {
        Some(t) => {
            let mut c = Command::new("faketime");
            c.arg(t).arg(env!("CARGO_BIN_EXE_opsagent"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_opsagent")),
    };
    cmd.arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

/// The databases whose names start with `prefix` (tests share one server).
fn databases(prefix: &str) -> String {
    MariaDb::shared()
        .sql("SHOW DATABASES")
        .lines()
        .filter(|l| l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Four snapshots: Wed 18th 02:30 (1 row), Thu 19th 02:30 (2), Fri 20th 10:00 (3), Fri 20th 14:00 (4).
fn history(b: &Bench, cfg: &Path) {
    for (at, n) in [
        ("2026-11-18 02:30:00", 1),
        ("2026-11-19 02:30:00", 2),
        ("2026-11-20 10:00:00", 3),
        ("2026-11-20 14:00:00", 4),
    ] {
        b.set_rows(n);
        let out = run(cfg, Some(at), &["backup"]);
        assert!(out.status.success(), "{at}: {}", text(&out));
    }
}

const NOW: &str = "2026-11-21 09:00:00"; // a Saturday

#[test]
fn date_expressions_pick_the_right_snapshot_and_errors_change_nothing() {
    let b = Bench::new();
    let cfg = b.config("state", "web-01");
    history(&b, &cfg);
    for (expr, rows, stamp) in [
        ("yesterday", 4, "20261120_1400"),
        ("3 days ago", 1, "20261118_0230"),
        ("thursday", 2, "20261119_0230"),
        ("2026-11-20 10:05", 3, "20261120_1000"),
    ] {
        let out = run(&cfg, Some(NOW), &["restore", "--date", expr, "--yes"]);
        assert!(out.status.success(), "{expr}: {}", text(&out));
        let target = format!("{}_{stamp}", b.db);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&target),
            "{expr}: {}",
            text(&out)
        );
        assert_eq!(b.rows(&target), rows, "{expr}");
    }
    let before = databases(&b.db);
    // The same target again: refused, nothing created or changed.
    let out = run(
        &cfg,
        Some(NOW),
        &["restore", "--date", "yesterday", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        text(&out)
    );
    // Nothing early enough: names the oldest snapshot.
    let out = run(
        &cfg,
        Some(NOW),
        &["restore", "--date", "2026-11-01", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the oldest is 2026-11-18 02:30:0"),
        "{}",
        text(&out)
    );
    // Nonsense: exit 2 with the accepted forms.
    let out = run(
        &cfg,
        Some(NOW),
        &["restore", "--date", "the day before the thing", "--yes"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("accepted: now, today, yesterday"),
        "{}",
        text(&out)
    );
    // No terminal and no --yes: refused with exit 2.
    let out = run(
        &cfg,
        Some(NOW),
        &[
            "restore",
            "--date",
            "friday",
            "--database",
            &b.db,
            "--to-database",
            "fresh_target",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // --dry-run shows the plan only.
    let out = run(
        &cfg,
        Some(NOW),
        &[
            "restore",
            "--date",
            "friday",
            "--to-database",
            "fresh_target",
            "--dry-run",
        ],
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("dry run"),
        "{}",
        text(&out)
    );
    assert_eq!(
        databases(&b.db),
        before,
        "a refused restore changed the databases"
    );
    assert_eq!(b.rows(&b.db), 4, "live data touched");
}

#[test]
fn in_place_refuses_corruption_then_swaps_and_keeps_the_old_tables() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    let b = Bench::new();
    let cfg = b.config("state", "web-01");
    b.set_rows(10);
    let d = &b.db;
    db.sql(&format!(
        "CREATE VIEW `{d}`.v AS SELECT id FROM `{d}`.t WHERE id > 5; CREATE TABLE `{d}`.log (m VARCHAR(50));\
         CREATE TRIGGER `{d}`.t_ai AFTER INSERT ON `{d}`.t FOR EACH ROW INSERT INTO `{d}`.log VALUES (CONCAT('row ', NEW.id));"
    ));
    let out = run(&cfg, None, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    // Live data moves on after the backup.
    db.sql(&format!(
        "INSERT INTO `{d}`.t VALUES (11, 'late'), (12, 'late');"
    ));
    let live_sum = || db.sql(&format!("CHECKSUM TABLE `{d}`.t EXTENDED"));
    let before = live_sum();

    // One byte flipped in the stored dump: refused, live untouched, no staging left.
    let keys = s3.list_keys(&b.bucket);
    let dump = keys
        .iter()
        .find(|(k, _)| k.ends_with(".sql.zst"))
        .unwrap()
        .0
        .clone();
    let good = s3.get_object(&b.bucket, &dump).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    s3.put_object(&b.bucket, &dump, &bad);
    let out = run(
        &cfg,
        None,
        &["restore", "--date", "now", "--in-place", "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is corrupt") && err.contains(dump.trim_start_matches("web-01/")),
        "{err}"
    );
    assert_eq!(live_sum(), before, "live data changed by a refused restore");
    assert!(
        !databases(d).contains("opsagent_stg") && !databases(d).contains("prerestore"),
        "{}",
        databases(d)
    );
    // Drill on the corrupted snapshot fails, naming the object, and is recorded.
    let out = run(&cfg, None, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is corrupt"),
        "{}",
        text(&out)
    );

    // Good object back: the in-place restore swaps the data and keeps the old tables.
    s3.put_object(&b.bucket, &dump, &good);
    let out = run(&cfg, None, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10 rows"),
        "{}",
        text(&out)
    );
    let out = run(
        &cfg,
        None,
        &["restore", "--date", "now", "--in-place", "--yes"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(b.rows(d), 10);
    let pre = databases(d)
        .lines()
        .find(|l| l.starts_with(&format!("{d}_prerestore_")))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}", databases(d)));
    assert_eq!(b.rows(&pre), 12, "pre-restore tables kept");
    assert!(!databases(d).contains("staging"));
    // Views and triggers work in the swapped-in database.
    assert_eq!(db.sql(&format!("SELECT COUNT(*) FROM `{d}`.v")).trim(), "5");
    db.sql(&format!("INSERT INTO `{d}`.t VALUES (99, 'after');"));
    assert!(db
        .sql(&format!("SELECT m FROM `{d}`.log"))
        .contains("row 99"));
}

#[test]
fn new_machine_restores_from_the_bucket_alone_and_to_files() {
    let b = Bench::new();
    let cfg = b.config("state", "web-01");
    b.set_rows(7);
    assert!(run(&cfg, None, &["backup"]).status.success());
    // Disaster: a new machine with the same config and an empty state_dir.
    let fresh = b.config("fresh-state", "web-01");
    let out = run(
        &fresh,
        None,
        &[
            "restore",
            "--date",
            "now",
            "--to-database",
            &format!("{}_dr", b.db),
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(b.rows(&format!("{}_dr", b.db)), 7);
    // Another host restoring web-01's backups.
    let other = b.config("other-state", "web-02");
    let out = run(
        &other,
        None,
        &[
            "restore",
            "--date",
            "now",
            "--from-host",
            "web-01",
            "--to-database",
            &format!("{}_other", b.db),
            "--yes",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(b.rows(&format!("{}_other", b.db)), 7);
    // To files, plain and compressed.
    let sql = b.dir.path().join("dump.sql");
    let zst = b.dir.path().join("dump.sql.zst");
    for f in [&sql, &zst] {
        let out = run(
            &cfg,
            None,
            &[
                "restore",
                "--date",
                "today",
                "--to-file",
                f.to_str().unwrap(),
                "--yes",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let plain = std::fs::read_to_string(&sql).unwrap();
    assert!(
        plain.contains("INSERT INTO `t`") && plain.trim_end().ends_with("-- Dump completed"),
        "{}",
        &plain[..plain.len().min(300)]
    );
    assert_eq!(
        zstd::decode_all(std::fs::File::open(&zst).unwrap()).unwrap(),
        plain.as_bytes()
    );
}

#[test]
fn to_file_follows_no_planted_link_and_replaces_nothing() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let b = Bench::new();
    let cfg = b.config("state", "web-01");
    b.set_rows(3);
    assert!(run(&cfg, None, &["backup"]).status.success());
    let victim = b.dir.path().join("passwd");
    std::fs::write(&victim, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let file = b.dir.path().join("dump.sql");
    let partial = b.dir.path().join("dump.sql.partial");
    let to_file = || {
        let f = file.to_str().unwrap();
        run(
            &cfg,
            None,
            &["restore", "--date", "now", "--to-file", f, "--yes"],
        )
    };
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink());
    // A link planted at `<file>.partial`: refused, naming it; its target untouched.
    symlink(&victim, &partial).unwrap();
    let out = to_file();
    assert!(!out.status.success(), "{}", text(&out));
    let want = format!("{} already exists", partial.display());
    assert!(text(&out).contains(&want), "{}", text(&out));
    let victim_text = std::fs::read_to_string(&victim).unwrap();
    assert_eq!(victim_text, "root:x:0:0:root:/root:/bin/bash\n");
    assert!(is_link(&partial) && !is_link(&file) && !file.exists());
    // A dangling link at the file itself (`exists()` misses it): not replaced, not followed.
    std::fs::remove_file(&partial).unwrap();
    let nowhere = b.dir.path().join("nowhere");
    symlink(&nowhere, &file).unwrap();
    let out = to_file();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("was not replaced"), "{}", text(&out));
    assert!(is_link(&file) && !nowhere.exists() && !partial.exists());
    // Without links: written, private.
    std::fs::remove_file(&file).unwrap();
    let out = to_file();
    assert!(out.status.success(), "{}", text(&out));
    let md = std::fs::symlink_metadata(&file).unwrap();
    assert!(md.is_file() && !partial.exists());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("-- Dump completed"));
}
