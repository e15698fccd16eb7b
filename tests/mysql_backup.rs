//! MySQL backups end to end against the real MariaDB and S3 servers of the bench: the nastiest
//! schema we can make round-trips exactly; failures name host, database and cause and commit
//! nothing; a killed dump leaves no snapshot and no open upload; passwords never reach a command
//! line; retention and `snapshots --refresh` work on the real bucket.

mod common;

use common::agent::{opsagent, Bench as Setup};
use common::mariadb::MariaDb;
use common::s3::S3Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PASSWORD: &str = "p@ss w0rd#\"'\\;$(x)–é";

impl Setup {
    /// Writes a config with one mysql job and returns its path.
    fn config(&self, s3: &S3Server, state: &str, job: &str) -> PathBuf {
        let text =
            self.head(s3, state, "") + &format!("[[mysql]]\nschedule = \"30 2 * * *\"\n{job}\n");
        let p = self.path(&format!("{state}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn secret(dir: &Path, name: &str, value: &str) -> PathBuf {
    common::write_secret(dir, name, value)
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

fn tcp_job(db: &MariaDb, name: &str, databases: &str) -> String {
    format!(
        "name = \"{name}\"\ndatabases = {databases}\nhost = \"127.0.0.1\"\nport = {}\nuser = \"backup\"\npassword_file = \"PWFILE\"\n",
        db.port()
    )
}

fn job_for(setup: &Setup, db: &MariaDb, name: &str, databases: &str) -> String {
    tcp_job(db, name, databases).replace("PWFILE", &setup.path("mysql").display().to_string())
}

/// The schema: every type and object the issue names, in a database whose name has a dash.
const NASTY: &str = r#"
SET NAMES utf8mb4;
CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(100) CHARACTER SET utf8mb4) ENGINE=InnoDB;
CREATE TABLE child (
  id INT AUTO_INCREMENT PRIMARY KEY,
  parent_id INT NOT NULL,
  txt TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  doc JSON,
  price DECIMAL(20,6),
  twice BIGINT AS (id * 2) VIRTUAL,
  stored_len INT AS (CHAR_LENGTH(txt)) STORED,
  FOREIGN KEY (parent_id) REFERENCES parent(id) ON DELETE CASCADE
) ENGINE=InnoDB;
CREATE TABLE legacy (s VARCHAR(200)) CHARACTER SET latin1;
CREATE TABLE bin (id INT PRIMARY KEY, b LONGBLOB, vb VARBINARY(300));
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200));
INSERT INTO parent VALUES (1, 'Ünïcödé 🦀 parent'), (2, '中文名字'), (3, NULL);
INSERT INTO child (parent_id, txt, doc, price) VALUES
  (1, 'emoji 😀🎉👩‍👩‍👧 and CJK 漢字かなカナ 한국어', '{"k": [1, 2, {"x": "ü"}], "n": null}', 12345678901234.123456),
  (2, 'quotes '' " \\ and newline\nand tab\tand NUL-free', '[]', -0.000001),
  (3, NULL, NULL, NULL);
INSERT INTO legacy VALUES ('café crème brûlée ñ ¿¡ £'), ('plain');
INSERT INTO bin VALUES (1, UNHEX(CONCAT(
  '000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F',
  '202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F',
  '404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F',
  '606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F',
  '808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9F',
  'A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF',
  'C0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF',
  'E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF')), UNHEX('00FF27225C0A0D1A'));
INSERT INTO bin VALUES (2, REPEAT(UNHEX('00FF'), 500000), NULL);
CREATE VIEW priced AS SELECT c.id, p.name, c.price FROM child c JOIN parent p ON p.id = c.parent_id WHERE c.price > 0;
CREATE TRIGGER child_ai AFTER INSERT ON child FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('new child ', NEW.id));
CREATE PROCEDURE add_parent(IN pid INT, IN pname VARCHAR(100)) BEGIN INSERT INTO parent VALUES (pid, pname); END;
CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DO DELETE FROM audit WHERE id < 0;
"#;

fn definitions(db: &MariaDb, schema: &str) -> Vec<String> {
    let q = format!(
        "SELECT CONCAT('routine ', ROUTINE_NAME, ': ', ROUTINE_DEFINITION) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{schema}' \
         UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME, ': ', ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{schema}' \
         UNION ALL SELECT CONCAT('event ', EVENT_NAME, ': ', EVENT_DEFINITION) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{schema}' \
         UNION ALL SELECT CONCAT('view ', TABLE_NAME, ': ', REPLACE(VIEW_DEFINITION, '`{schema}`', '`DB`')) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{schema}' ORDER BY 1"
    );
    db.sql(&q).lines().map(str::to_string).collect()
}

fn checksums(db: &MariaDb, schema: &str) -> Vec<String> {
    let tables = db.sql(&format!(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{schema}' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
    ));
    tables
        .lines()
        .map(|t| {
            let out = db.sql(&format!("CHECKSUM TABLE `{schema}`.`{t}` EXTENDED"));
            format!("{t} {}", out.split('\t').nth(1).unwrap_or("?").trim())
        })
        .collect()
}

/// Loads a stored dump into `target` the way the README tells an admin to: zstd -d | mariadb.
fn load_dump(db: &MariaDb, compressed: &[u8], target: &str) {
    let sql = zstd::decode_all(compressed).unwrap();
    db.sql(&format!("CREATE DATABASE `{target}`"));
    db.try_sql_db(
        Some(target),
        &String::from_utf8(sql).expect("dump is UTF-8 (hex blobs)"),
    )
    .unwrap_or_else(|e| panic!("restore failed: {e}"));
}

#[test]
fn nasty_database_round_trips_exactly() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    db.create_user("backup", PASSWORD);
    let setup = Setup::new(s3, &[("mysql", PASSWORD)]);
    let name = format!("shop-{}", common::unique_name("x").replace('-', "_"));
    db.sql(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"));
    db.sql_db(
        &name,
        &format!("DELIMITER //\n{}\n//", NASTY.replace(";\n", "//\n")),
    );
    let cfg = setup.config(
        s3,
        "state",
        &job_for(&setup, db, "main", &format!("[\"{name}\"]")),
    );
    let out = opsagent(&cfg, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));

    let keys = s3.list_keys(&setup.bucket);
    let dump = keys
        .iter()
        .find(|(k, _)| k.ends_with(".sql.zst"))
        .unwrap_or_else(|| panic!("no dump in {keys:?}"));
    assert!(dump.0.starts_with("web-01/mysql/main/shop-"), "{keys:?}");
    assert!(
        keys.iter()
            .any(|(k, _)| k.starts_with("web-01/snapshots/main/") && k.ends_with(".json")),
        "{keys:?}"
    );
    let bytes = s3.get_object(&setup.bucket, &dump.0).unwrap();

    let restored = format!("r_{}", name.replace('-', "_"));
    load_dump(db, &bytes, &restored);
    assert_eq!(checksums(db, &name), checksums(db, &restored));
    assert_eq!(checksums(db, &name).len(), 5);
    let (a, b) = (definitions(db, &name), definitions(db, &restored));
    assert_eq!(a.len(), 5, "{a:?}");
    assert_eq!(a, b);
    // The snapshot is listed, as JSON too.
    let out = opsagent(&cfg, &["snapshots", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["database"], name.as_str());
    assert_eq!(list[0]["job"], "main");
}

#[test]
fn failures_name_host_database_and_cause_and_commit_nothing() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    db.create_user("backup", PASSWORD);
    let setup = Setup::new(s3, &[("mysql", PASSWORD)]);
    secret(setup.dir.path(), "wrong", "not-the-password");
    let good = db.new_database();
    db.sql_db(&good, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    let dead_port = common::free_port();
    let cases = [
        (
            "wrong-password",
            tcp_job(db, "j", &format!("[\"{good}\"]"))
                .replace("PWFILE", &setup.path("wrong").display().to_string()),
            vec!["127.0.0.1", "Access denied", "password"],
        ),
        (
            "server-down",
            job_for(&setup, db, "j", &format!("[\"{good}\"]")).replace(
                &format!("port = {}", db.port()),
                &format!("port = {dead_port}"),
            ),
            vec![
                format!("127.0.0.1:{dead_port}").leak() as &str,
                "server running",
            ],
        ),
        (
            "unknown-database",
            job_for(&setup, db, "j", "[\"no_such_db\"]"),
            vec![
                "no_such_db",
                "127.0.0.1",
                "Unknown database",
                "check the names",
            ],
        ),
    ];
    for (state, job, needles) in cases {
        // One agent (one id) tried with three configurations: the prefix stays its own.
        std::fs::create_dir_all(setup.path(state)).unwrap();
        std::fs::write(setup.path(state).join("agent-id"), "0f".repeat(16)).unwrap();
        let cfg = setup.config(s3, state, &job);
        let out = opsagent(&cfg, &["backup"]);
        assert_eq!(out.status.code(), Some(1), "{state}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{state}: `{n}` missing from:\n{err}");
        }
        assert!(
            !err.contains(PASSWORD) && !err.contains("not-the-password"),
            "{err}"
        );
        let listed = opsagent(&cfg, &["snapshots", "--json", "--refresh"]);
        assert_eq!(
            String::from_utf8_lossy(&listed.stdout).trim(),
            "[]",
            "{state}: {}",
            text(&listed)
        );
    }
    assert!(s3
        .list_keys(&setup.bucket)
        .iter()
        .all(|(k, _)| !k.contains("/snapshots/")));
    assert!(s3.list_multipart_uploads(&setup.bucket).is_empty());
}

/// A database with ~150 MiB of incompressible rows, so a dump takes a few seconds.
fn big_database(db: &MariaDb) -> String {
    let name = db.new_database();
    db.sql_db(
        &name,
        "CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB) ENGINE=InnoDB;\
        INSERT INTO big (b) SELECT RANDOM_BYTES(1000) FROM seq_1_to_150000;",
    );
    name
}

fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for what in ["cmdline", "environ"] {
            if let Ok(b) = std::fs::read(e.path().join(what)) {
                if String::from_utf8_lossy(&b).contains(needle) {
                    hits.push((pid, what.to_string()));
                }
            }
        }
    }
    hits
}

fn dump_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&b);
            if c.starts_with("mariadb-dump")
                || c.contains("/mariadb-dump\0")
                || c.contains("/mysqldump\0")
            {
                pids.push(pid);
            }
        }
    }
    pids
}

#[test]
fn killed_dump_commits_nothing_and_password_never_on_a_command_line() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    db.create_user("backup", PASSWORD);
    let setup = Setup::new(s3, &[("mysql", PASSWORD)]);
    let name = big_database(db);
    let cfg = setup.config(
        s3,
        "state",
        &job_for(&setup, db, "big", &format!("[\"{name}\"]")),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(&cfg)
        .arg("backup")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the upload is under way (a multipart upload is open), checking /proc as we go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut leaks = Vec::new();
    loop {
        leaks.extend(processes_with("w0rd#"));
        if !s3.list_multipart_uploads(&setup.bucket).is_empty() && !dump_pids().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dump never started uploading"
        );
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("backup ended before it could be killed: {}", text(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    leaks.extend(processes_with("w0rd#"));
    assert!(leaks.is_empty(), "password visible in /proc: {leaks:?}");
    for pid in dump_pids() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name) && err.contains("signal"), "{err}");
    assert!(
        s3.list_multipart_uploads(&setup.bucket).is_empty(),
        "open uploads left behind"
    );
    // Only the owner object the run claimed the prefix with (see tests/faults/owner.rs).
    assert_eq!(
        s3.list_keys(&setup.bucket)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>(),
        vec!["web-01/opsagent-owner.json".to_string()]
    );
    let listed = opsagent(&cfg, &["snapshots", "--json"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}

#[test]
fn retention_prunes_the_real_bucket_and_refresh_rebuilds_the_catalog() {
    let (db, s3) = (MariaDb::shared(), S3Server::shared());
    db.create_user("backup", PASSWORD);
    let setup = Setup::new(s3, &[("mysql", PASSWORD)]);
    let (a, b) = (db.new_database(), db.new_database());
    for d in [&a, &b] {
        db.sql_db(
            d,
            "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2);",
        );
    }
    let job =
        job_for(&setup, db, "main", &format!("[\"{a}\", \"{b}\"]")) + "keep = { daily = 2 }\n";
    let cfg = setup.config(s3, "state", &job);
    // Snapshots on four days (faketime), two on the last day.
    for day in [
        "2026-11-17 02:30:00",
        "2026-11-18 02:30:00",
        "2026-11-19 02:30:00",
        "2026-11-20 01:00:00",
        "2026-11-20 02:30:00",
    ] {
        let out = Command::new("faketime")
            .arg(day)
            .arg(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&cfg)
            .arg("backup")
            .output()
            .unwrap();
        assert!(out.status.success(), "{day}: {}", text(&out));
    }
    // Each backup applies retention: daily = 2 keeps the newest of the 20th and of the 19th.
    let list = |cfg: &Path, refresh: bool| -> Vec<(String, String)> {
        let args: &[&str] = if refresh {
            &["snapshots", "--json", "--refresh"]
        } else {
            &["snapshots", "--json"]
        };
        let out = opsagent(cfg, args);
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut rows: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["database"].as_str().unwrap().to_string(),
                    r["started_at"].as_str().unwrap()[..16].to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let want: Vec<(String, String)> = [&a, &b]
        .iter()
        .flat_map(|d| {
            [
                (d.to_string(), "2026-11-19T02:30".to_string()),
                (d.to_string(), "2026-11-20T02:30".to_string()),
            ]
        })
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(list(&cfg, false), want);
    assert_eq!(list(&cfg, true), want);
    let keys = s3.list_keys(&setup.bucket);
    assert_eq!(
        keys.iter().filter(|(k, _)| k.ends_with(".sql.zst")).count(),
        4,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter()
            .filter(|(k, _)| k.contains("/snapshots/") && k.ends_with(".json"))
            .count(),
        4,
        "{keys:?}"
    );
    // prune --dry-run shows the plan and removes nothing more.
    let out = opsagent(&cfg, &["prune", "--dry-run"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("keep"),
        "{}",
        text(&out)
    );
    assert_eq!(s3.list_keys(&setup.bucket).len(), 9, "8 + the owner object");
    // Dumps no manifest commits (a run died between upload and manifest) are swept by prune once
    // older than the grace; a fresh one may belong to a running backup and stays.
    let old_orphan = format!("web-01/mysql/main/{a}/20261101T000000Z-deadbeef.sql.zst");
    let new_orphan = format!(
        "web-01/mysql/main/{a}/{}-0badf00d.sql.zst",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    s3.put_object(&setup.bucket, &old_orphan, b"partial");
    s3.put_object(&setup.bucket, &new_orphan, b"partial");
    let out = opsagent(&cfg, &["prune"]);
    assert!(out.status.success(), "{}", text(&out));
    let keys: Vec<String> = s3
        .list_keys(&setup.bucket)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        !keys.contains(&old_orphan) && keys.contains(&new_orphan),
        "{keys:?}"
    );
    s3.delete_object(&setup.bucket, &new_orphan);
    assert_eq!(list(&cfg, true), want);
    // A fresh state_dir on the same bucket (a new machine) finds the same snapshots.
    let fresh = setup.config(s3, "fresh-state", &job);
    assert_eq!(list(&fresh, false), vec![]);
    assert_eq!(list(&fresh, true), want);
}

#[test]
fn every_database_with_star_over_the_socket() {
    let db = MariaDb::start();
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, &[("mysql", PASSWORD)]);
    db.sql("DROP DATABASE IF EXISTS test; CREATE DATABASE one; CREATE DATABASE `two-2`; CREATE TABLE one.t (x INT); CREATE TABLE `two-2`.t (y INT);");
    let job = format!(
        "name = \"all\"\ndatabases = [\"*\"]\nsocket = \"{}\"\nuser = \"root\"\n",
        db.socket().display()
    );
    let cfg = setup.config(s3, "state", &job);
    let out = opsagent(&cfg, &["backup", "all"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = opsagent(&cfg, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut dbs: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    dbs.sort();
    assert_eq!(dbs, ["one", "two-2"], "system databases must be skipped");
    let unknown = opsagent(&cfg, &["backup", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
}
