//! Adversarial MySQL backup → restore round trips on the real MariaDB and S3 servers, as the
//! README's users (the GRANT statements are taken from the README itself): a database with a
//! space, a dash, a dot and unicode in its name and every odd type and object (see
//! `support/nasty_sql.rs`) comes back identical side by side, in place, and on a "new machine"
//! where the original is gone; a row larger than half of `max_allowed_packet` restores; a
//! 64-character name restores in place.

mod common;

use common::agent::opsagent;
#[path = "support/nasty_sql.rs"]
mod nasty_sql;

use common::mariadb::MariaDb;
use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use std::path::{Path, PathBuf};
use std::process::Output;

const PASSWORD: &str = "qa p@ss'\"\\";

/// The README's `GRANT` statement for `user`, given to `as_user`@127.0.0.1.
fn readme_grant(user: &str, as_user: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = format!("TO '{user}'@'localhost'");
    let end = readme
        .find(&at)
        .unwrap_or_else(|| panic!("README grants nothing to {user}"));
    let start = readme[..end].rfind("GRANT ").unwrap();
    let tail = &readme[end + at.len()..];
    let tail = &tail[..tail.find(';').unwrap()];
    format!("{}TO '{as_user}'@'127.0.0.1'{tail};", &readme[start..end])
}

fn users(db: &MariaDb) {
    for (readme, user) in [("backup", "qa_backup"), ("restorer", "qa_restorer")] {
        db.sql(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{}';\n{}",
            PASSWORD.replace('\\', "\\\\").replace('\'', "\\'"),
            readme_grant(readme, user)
        ));
    }
}

struct Bench {
    dir: tempfile::TempDir,
    bucket: String,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        common::write_secret(dir.path(), "s3", SECRET_KEY);
        common::write_secret(dir.path(), "mysql", PASSWORD);
        Bench {
            dir,
            bucket: S3Server::shared().new_bucket(),
        }
    }

    /// A config whose job backs up `dbs` as the README's backup user; `root` restores over the
    /// socket as root instead of the README's restore user.
    fn config(&self, name: &str, dbs: &[&str], root: bool) -> PathBuf {
        let (db, s3) = (MariaDb::shared(), S3Server::shared());
        let list: Vec<String> = dbs.iter().map(|d| format!("\"{d}\"")).collect();
        let pw = self.dir.path().join("mysql").display().to_string();
        let login = match root {
            false => format!("host = \"127.0.0.1\"\nport = {}\nuser = \"qa_backup\"\npassword_file = \"{pw}\"\nrestore_user = \"qa_restorer\"\nrestore_password_file = \"{pw}\"\n", db.port()),
            true => format!("socket = \"{}\"\nuser = \"root\"\n", db.socket().display()),
        };
        let text = format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{sec}\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [{list}]\n{login}schedule = \"30 2 * * *\"\nkeep = {{ last = 100 }}\n",
            state = self.dir.path().join("state").display(),
            bucket = self.bucket,
            ep = s3.endpoint(),
            sec = self.dir.path().join("s3").display(),
            list = list.join(", "),
        );
        let p = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", common::output_text(&o));
    o
}

fn restore(cfg: &Path, db: &str, how: &[&str]) -> Output {
    let mut args = vec!["restore", "--date", "now", "--database", db, "--yes"];
    args.extend_from_slice(how);
    opsagent(cfg, &args)
}

/// [`restore`], logging at `info`.
fn restore_logged(cfg: &Path, db: &str, how: &[&str]) -> Output {
    let mut args = vec!["restore", "--date", "now", "--database", db, "--yes"];
    args.extend_from_slice(how);
    common::agent::opsagent_logging("info", cfg, &args)
}

fn databases(db: &MariaDb, prefix: &str) -> Vec<String> {
    db.sql("SHOW DATABASES")
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn nasty_database_restores_identically_side_by_side_in_place_and_on_a_new_machine() {
    let db = MariaDb::shared();
    users(db);
    let u = common::unique_name("q").replace('-', "_");
    let name = format!("qa db-ü.{u}");
    nasty_sql::create(db, &name);
    let long = format!("{u}_{}", "ü".repeat(64 - u.len() - 1));
    db.sql(&format!("CREATE DATABASE `{long}`; CREATE TABLE `{long}`.t (id INT); INSERT INTO `{long}`.t VALUES (1);"));
    let b = Bench::new();
    let cfg = b.config("qa", &[&name, &long], false);
    let out = ok(opsagent(&cfg, &["backup"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FLOAT") && err.contains("approx.f"), "{err}");
    let original = nasty_sql::fingerprint(db, &name);
    assert!(original.len() > 30, "{original:?}");

    // Side by side, under another name: identical (the live database's default is untouched).
    let copy = format!("qa copy {u}");
    ok(restore(&cfg, &name, &["--to-database", &copy]));
    assert_eq!(nasty_sql::fingerprint(db, &copy), original);
    let as_copied = nasty_sql::fingerprint(db, &copy);

    // In place, after the live database moved on: the snapshot comes back, the rest is kept aside.
    db.sql_db(&name, "INSERT INTO log (m) VALUES ('late'); CREATE TABLE extra (x INT); DROP VIEW `a view on view`; DO NEXTVAL(seq1); UPDATE versioned SET v = 'newer'; ALTER DATABASE CHARACTER SET latin1;");
    ok(restore(&cfg, &name, &["--in-place"]));
    assert_eq!(nasty_sql::fingerprint(db, &name), original);
    let pre = databases(db, &format!("{name}_prerestore_"));
    assert_eq!(pre.len(), 1, "{pre:?}");
    let kept = db.sql(&format!("SELECT COUNT(*) FROM `{}`.extra; SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{}'", pre[0], pre[0]));
    assert_eq!(kept.split_whitespace().collect::<Vec<_>>(), ["0", "2"]);
    assert_eq!(
        db.sql_db(
            &name,
            "INSERT INTO log (m) VALUES ('x'); SELECT m FROM log ORDER BY id DESC LIMIT 1"
        )
        .trim(),
        "x+b+a",
        "trigger order"
    );

    // A new machine: the original is gone; the dump still loads under any name.
    db.sql(&format!(
        "DROP DATABASE `{name}`; DROP DATABASE `{}`",
        pre[0]
    ));
    let again = format!("qa again {u}");
    ok(restore(&cfg, &name, &["--to-database", &again]));
    assert_eq!(nasty_sql::fingerprint(db, &again), as_copied);
    assert!(
        databases(db, &name).is_empty(),
        "nothing re-created the original"
    );

    // A 64-character name restores in place (its pre-restore name fits too).
    db.sql_db(&long, "INSERT INTO t VALUES (2)");
    ok(restore(&cfg, &long, &["--in-place"]));
    assert_eq!(
        db.sql(&format!("SELECT COUNT(*) FROM `{long}`.t")).trim(),
        "1"
    );
    let kept: Vec<String> = databases(db, &u)
        .into_iter()
        .filter(|d| d.contains("_prerestore_"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // The plain SQL file carries the database's default character set after the sandbox line.
    let file = b.dir.path().join("nasty.sql");
    ok(restore(&cfg, &name, &["--to-file", file.to_str().unwrap()]));
    let sql = std::fs::read(&file).unwrap();
    let head: Vec<&[u8]> = sql.split(|c| *c == b'\n').take(3).collect();
    assert!(
        head[0].starts_with(b"/*M!999999"),
        "{:?}",
        String::from_utf8_lossy(head[0])
    );
    assert_eq!(
        head[2],
        b"/*!40101 ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci */;"
    );
    assert!(sql.ends_with(b"-- Dump completed\n"));
}

#[test]
fn rows_larger_than_half_the_packet_limit_restore_and_missing_privileges_say_so() {
    let db = MariaDb::shared();
    users(db);
    let name = format!("wide-{}", common::unique_name("w").replace('-', "_"));
    let limit = db
        .sql("SELECT @@GLOBAL.max_allowed_packet")
        .trim()
        .to_string();
    assert_eq!(limit, "16777216", "the test needs the default limit");
    // 12 MiB of random bytes: 24 MiB of hex in the dump, more than the server's 16 MiB.
    db.sql(&format!("CREATE DATABASE `{name}`"));
    db.sql_db(
        &name,
        "CREATE TABLE w (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT CHARACTER SET utf8mb4);\
        INSERT INTO w VALUES (1, RANDOM_BYTES(1024), NULL), (2, NULL, REPEAT('é', 4 << 20));\
        UPDATE w SET b = REPEAT(b, 12 << 10) WHERE id = 1;",
    );
    let sums = |d: &str| {
        db.sql(&format!(
            "SELECT MD5(b), MD5(t), LENGTH(b) FROM `{d}`.w ORDER BY id"
        ))
    };
    let b = Bench::new();
    let cfg = b.config("wide", &[&name], false);
    ok(opsagent(&cfg, &["backup"]));
    // The README's restore user (no SUPER): refused with the setting to change, nothing left.
    let out = restore(&cfg, &name, &["--to-database", &format!("{name}_r1")]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_allowed_packet = 1G") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert!(databases(db, &format!("{name}_r1")).is_empty());
    // With SUPER the limit is raised for the load, and put back.
    let root = b.config("wide-root", &[&name], true);
    ok(restore(
        &root,
        &name,
        &["--to-database", &format!("{name}_r2")],
    ));
    assert_eq!(sums(&format!("{name}_r2")), sums(&name));
    assert!(sums(&name).contains("12582912"));
    assert_eq!(db.sql("SELECT @@GLOBAL.max_allowed_packet").trim(), limit);
}

/// `restore_threads = 4`: a table of many statements of rows loads on several sessions, and
/// what follows the rows in the dump waits for all of them: the trigger that would copy every
/// row into `audit` is created after the last row, the foreign key's child loads, the view
/// and the routine come back; every table's checksum equals the source's.
#[test]
fn rows_spread_over_sessions_and_triggers_come_after_the_last_row() {
    let db = MariaDb::shared();
    users(db);
    let name = format!("par-{}", common::unique_name("p").replace('-', "_"));
    db.sql(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"));
    db.sql_db(
        &name,
        "CREATE TABLE big (id INT PRIMARY KEY, pad VARCHAR(250), k INT, KEY (k));\
        INSERT INTO big SELECT seq, CONCAT(REPEAT(CHAR(65 + seq % 26), 200), 'é;\\n),(', seq), seq % 97 FROM seq_1_to_60000;\
        CREATE TABLE audit (n INT);\
        CREATE TRIGGER big_ai AFTER INSERT ON big FOR EACH ROW INSERT INTO audit VALUES (NEW.id);\
        CREATE TABLE child (id INT PRIMARY KEY, big_id INT, FOREIGN KEY (big_id) REFERENCES big (id));\
        INSERT INTO child SELECT seq, 1 + seq % 60000 FROM seq_1_to_30000;\
        CREATE VIEW v AS SELECT k, COUNT(*) AS n FROM big GROUP BY k;\
        CREATE PROCEDURE p() SELECT COUNT(*) FROM child;\
        CREATE TABLE ref_a (id INT PRIMARY KEY, code INT, note TEXT, KEY (code), KEY two (note(8), code) COMMENT 'x, y');\
        INSERT INTO ref_a SELECT seq, seq * 7 % 1000, MD5(seq) FROM seq_1_to_20000;\
        CREATE TABLE ref_b (id INT PRIMARY KEY, code INT, FOREIGN KEY (code) REFERENCES ref_a (code));\
        INSERT INTO ref_b SELECT seq, seq % 1000 FROM seq_1_to_5000;\
        CREATE TABLE ref_c (tenant INT, id INT AUTO_INCREMENT, k INT, PRIMARY KEY (tenant, id), KEY (id), KEY (k));\
        INSERT INTO ref_c (tenant, k) SELECT seq % 3, seq FROM seq_1_to_3000;",
    );
    // The indexes built after the rows (plain keys) come back as the source has them, and
    // before `ref_b`, whose foreign key needs `ref_a.code` indexed.
    let sums = |d: &str| {
        db.sql(&format!(
            "CHECKSUM TABLE `{d}`.big, `{d}`.child, `{d}`.audit, `{d}`.ref_a, `{d}`.ref_b; \
             SELECT COUNT(*) FROM `{d}`.v; \
             SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{d}'; \
             SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{d}'; \
             SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, SUB_PART, NON_UNIQUE, INDEX_COMMENT \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{d}' ORDER BY 1, 2, 3; \
             SHOW CREATE TABLE `{d}`.big; SHOW CREATE TABLE `{d}`.ref_a; SHOW CREATE TABLE `{d}`.ref_b; SHOW CREATE TABLE `{d}`.ref_c"
        ))
        .replace(d, "DB")
    };
    let b = Bench::new();
    let cfg = b.config("par", &[&name], false);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("restore_threads = 4\n");
    std::fs::write(&cfg, text).unwrap();
    ok(opsagent(&cfg, &["backup"]));
    let copy = format!("{name}_copy");
    let out = ok(restore_logged(&cfg, &name, &["--to-database", &copy]));
    assert_eq!(sums(&copy), sums(&name));
    assert!(
        sums(&name).contains("\t0\n"),
        "audit is empty: {}",
        sums(&name)
    );
    // The log says how the rows were spread: more than one session ran statements of rows.
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("statements per session"))
        .unwrap_or_else(|| panic!("{log}"));
    let counts: Vec<u64> = line[line.rfind('[').unwrap() + 1..line.rfind(']').unwrap()]
        .split(", ")
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 4, "{line}");
    assert!(counts.iter().filter(|n| **n > 0).count() > 1, "{line}");
    // `big`, `ref_a` and `ref_c` (its `KEY (k)`; `KEY (id)` must stay: id is AUTO_INCREMENT);
    // not `child` and `ref_b` (foreign keys), nor `audit`.
    assert!(
        line.contains("secondary indexes of 3 table(s) built after their rows"),
        "{line}"
    );
    // One session loads the same dump to the same result.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace("restore_threads = 4", "restore_threads = 1");
    std::fs::write(&cfg, text).unwrap();
    let one = format!("{name}_one");
    let out = ok(restore_logged(&cfg, &name, &["--to-database", &one]));
    assert_eq!(sums(&one), sums(&name));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rows loaded on 1 of 1 sessions"));
}
