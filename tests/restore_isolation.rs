//! A restore touches only its target, whatever the bucket holds (issue 15), on the real MariaDB
//! and S3 servers:
//! - a database whose triggers, views, routines and events name their own schema (bare and
//!   backticked, as MariaDB keeps them) restores side by side, `--to-database`, in a drill and
//!   in place, the copies work, and the live database's objects and data are unchanged by every
//!   restore that does not target it, also after its trigger was dropped; events in copies are
//!   disabled;
//! - forged dumps (committed with a valid sha256) holding client commands, `DROP DATABASE other`,
//!   `CREATE TRIGGER other.t`, `USE other`, a `DEFINER=root` routine: every restore and drill
//!   fails or loads only its target; no file appears, `other` is untouched;
//! - forged dumps shaped like a dump tool's, whose rows load over the client protocol on
//!   several sessions, reach only their target too, and no load (protocol or client) ever reads
//!   a file of this host for `LOAD DATA LOCAL INFILE`;
//! - forged manifests naming another database or another job's data are refused;
//! - an in-place restore never drops a database it did not create (old staging names).

mod common;

use common::mariadb::MariaDb;
use common::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

struct Bench {
    dir: tempfile::TempDir,
    bucket: String,
    db: String,
    /// More databases the job backs up.
    also: Vec<String>,
}

impl Bench {
    /// A database `iso_…` (a bare identifier, so definitions can name it unquoted).
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        common::write_secret(dir.path(), "s3", SECRET_KEY);
        let db = common::unique_name("iso").replace('-', "_");
        MariaDb::shared().sql(&format!("CREATE DATABASE `{db}`"));
        Bench {
            dir,
            bucket: S3Server::shared().new_bucket(),
            db,
            also: Vec::new(),
        }
    }

    fn config_for(&self, db: &MariaDb) -> PathBuf {
        let s3 = S3Server::shared();
        let text = format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{state}\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{ep}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key_file = \"{sec}\"\n\
             [[mysql]]\nname = \"main\"\ndatabases = [{names}]\nsocket = \"{sock}\"\nuser = \"root\"\nschedule = \"30 2 * * *\"\nkeep = {{ last = 100 }}\n",
            state = self.dir.path().join("state").display(),
            bucket = self.bucket,
            ep = s3.endpoint(),
            sec = self.dir.path().join("s3").display(),
            names = std::iter::once(&self.db)
                .chain(&self.also)
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", "),
            sock = db.socket().display(),
        );
        let p = self.dir.path().join("opsagent.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_on(MariaDb::shared(), args)
    }

    fn run_on(&self, db: &MariaDb, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(self.config_for(db))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_on(MariaDb::shared(), args)
    }

    fn ok_on(&self, db: &MariaDb, args: &[&str]) -> String {
        let o = self.run_on(db, args);
        assert!(o.status.success(), "{args:?}: {}", common::output_text(&o));
        common::output_text(&o)
    }

    /// The only snapshot's (manifest key, manifest JSON).
    fn manifest(&self) -> (String, serde_json::Value) {
        let s3 = S3Server::shared();
        let key = s3
            .list_keys(&self.bucket)
            .into_iter()
            .map(|(k, _)| k)
            .find(|k| k.contains("/snapshots/"))
            .expect("a manifest");
        let m = serde_json::from_slice(&s3.get_object(&self.bucket, &key).unwrap()).unwrap();
        (key, m)
    }

    /// Replaces the snapshot's dump with `sql`, committed with a valid size and sha256.
    fn forge_dump(&self, sql: &str) {
        let s3 = S3Server::shared();
        let (mkey, mut m) = self.manifest();
        let prefix = &mkey[..mkey.find("snapshots/").unwrap()];
        let data = zstd::encode_all(sql.as_bytes(), 3).unwrap();
        let obj = &mut m["objects"][0];
        let dkey = format!("{prefix}{}", obj["key"].as_str().unwrap());
        obj["size"] = data.len().into();
        obj["raw_size"] = sql.len().into();
        obj["sha256"] = hex::encode(sha2::Sha256::digest(&data)).into();
        s3.put_object(&self.bucket, &dkey, &data);
        s3.put_object(&self.bucket, &mkey, &serde_json::to_vec(&m).unwrap());
    }
}

/// Everything about `db` a restore elsewhere must not change: its objects and its data.
fn fingerprint(db: &str) -> String {
    let l = format!("'{db}'");
    MariaDb::shared().sql(&format!(
        "SELECT 'T', TRIGGER_NAME, ACTION_STATEMENT, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {l} \
         UNION ALL SELECT 'R', ROUTINE_NAME, ROUTINE_DEFINITION, DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {l} \
         UNION ALL SELECT 'E', EVENT_NAME, CONCAT(STATUS, EVENT_DEFINITION), DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {l} \
         UNION ALL SELECT 'V', TABLE_NAME, VIEW_DEFINITION, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {l} \
         UNION ALL SELECT 'B', TABLE_NAME, '', '' FROM information_schema.TABLES WHERE TABLE_SCHEMA = {l} ORDER BY 1, 2; \
         CHECKSUM TABLE `{db}`.audit, `{db}`.log;"
    ))
}

fn qualified_objects(db: &str) {
    MariaDb::shared().sql_db(
        db,
        &format!(
            "CREATE TABLE audit (id INT); CREATE TABLE log (id INT, m VARCHAR(20));
             INSERT INTO audit VALUES (1), (2); INSERT INTO log VALUES (1, 'seed');
             CREATE TRIGGER {db}.audit_bi BEFORE INSERT ON {db}.audit FOR EACH ROW INSERT INTO {db}.log VALUES (NEW.id, 'trigger');
             CREATE VIEW `{db}`.recent AS SELECT a.id FROM `{db}`.audit a JOIN {db}.log l ON l.id = a.id;
             CREATE PROCEDURE `{db}`.touch_log() INSERT INTO `{db}`.log VALUES (99, 'proc');
             CREATE FUNCTION {db}.n_log() RETURNS INT READS SQL DATA RETURN (SELECT COUNT(*) FROM {db}.log);
             CREATE EVENT {db}.tick ON SCHEDULE EVERY 1 DAY STARTS NOW() + INTERVAL 1 DAY DO INSERT INTO {db}.log VALUES (7, 'event');"
        ),
    );
}

#[test]
fn qualified_objects_restore_everywhere_and_the_live_database_never_changes() {
    let b = Bench::new();
    let live = b.db.clone();
    qualified_objects(&live);
    b.ok(&["backup", "main"]);
    let before = fingerprint(&live);

    // Side by side: succeeds, the copy's trigger writes the copy's log, its event is disabled.
    let out = b.ok(&["restore", "--date", "now", "--yes"]);
    assert_eq!(
        fingerprint(&live),
        before,
        "side by side changed the live database"
    );
    let db = MariaDb::shared();
    let copy = db
        .sql(&format!("SHOW DATABASES LIKE '{live}\\_2%'"))
        .trim()
        .to_string();
    assert!(!copy.is_empty(), "no side-by-side copy: {out}");
    db.sql_db(&copy, "INSERT INTO audit VALUES (5); CALL touch_log();");
    assert_eq!(
        db.sql_db(&copy, "SELECT COUNT(*) FROM log WHERE id IN (5, 99); SELECT n_log(); SELECT COUNT(*) FROM recent;").split_whitespace().collect::<Vec<_>>(),
        ["2", "3", "2"]
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{copy}'"
        ))
        .trim(),
        "DISABLED"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{live}'"
        ))
        .trim(),
        "ENABLED"
    );
    assert_eq!(
        fingerprint(&live),
        before,
        "using the copy changed the live database"
    );

    // The live trigger dropped (the accident one restores for): a drill and a --to-database
    // restore must not bring it back on the live table.
    db.sql_db(&live, "DROP TRIGGER audit_bi");
    let dropped = fingerprint(&live);
    b.ok(&["verify", "main"]);
    assert_eq!(
        fingerprint(&live),
        dropped,
        "the drill changed the live database"
    );
    let named = format!("{live}_named");
    b.ok(&["restore", "--date", "now", "--to-database", &named, "--yes"]);
    assert_eq!(
        fingerprint(&live),
        dropped,
        "--to-database changed the live database"
    );
    assert_eq!(
        db.sql(&format!(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{named}'"
        ))
        .trim(),
        "1"
    );

    // In place brings it back, with every object, definers as they were, the event enabled.
    // (Bodies come back without their own schema's qualification: the same statements there.)
    b.ok(&["restore", "--date", "now", "--in-place", "--yes"]);
    let own = |s: String| {
        s.replace(&format!("`{live}`."), "")
            .replace(&format!("{live}."), "")
    };
    assert_eq!(own(fingerprint(&live)), own(before));
    for d in [&copy, &named] {
        db.sql(&format!("DROP DATABASE `{d}`"));
    }
}

/// The hostile dumps: each alone, so one's failure cannot hide another's effect.
fn hostile(other: &str, marker: &Path) -> Vec<String> {
    let m = marker.display();
    let table = "CREATE TABLE t (id INT);\nINSERT INTO t VALUES (1);\n";
    vec![
        format!("{table}\\! touch {m}\n"),
        format!("{table}system touch {m}\n"),
        format!("{table}DROP DATABASE `{other}`;\n"),
        format!("{table}DROP TABLE `{other}`.victim;\n"),
        format!("{table}CREATE TRIGGER {other}.t_bi BEFORE INSERT ON {other}.victim FOR EACH ROW SET NEW.id = 0;\n"),
        format!("{table}USE `{other}`;\nDROP TABLE victim;\n"),
        format!("{table}DELIMITER ;;\nCREATE DEFINER=`root`@`localhost` PROCEDURE p() SQL SECURITY DEFINER DELETE FROM `{other}`.victim ;;\nDELIMITER ;\nCALL p();\n"),
        format!("{table}/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW DELETE FROM `{other}`.victim */;\nINSERT INTO t VALUES (2);\n"),
        format!("{table}GRANT ALL ON *.* TO CURRENT_USER;\nDROP DATABASE `{other}`;\n"),
    ]
}

/// A bench whose database (one table) is backed up, and another database `<db>_other` holding
/// the table `victim` that no restore of it may change.
fn backed_up_beside_a_victim() -> (Bench, String) {
    let b = Bench::new();
    let db = MariaDb::shared();
    db.sql_db(&b.db, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    b.ok(&["backup", "main"]);
    let other = format!("{}_other", b.db);
    db.sql(&format!(
        "CREATE DATABASE `{other}`; CREATE TABLE `{other}`.victim (id INT); INSERT INTO `{other}`.victim VALUES (1), (2), (3);"
    ));
    (b, other)
}

#[test]
fn forged_dumps_load_only_their_target_or_fail() {
    let (b, other) = backed_up_beside_a_victim();
    let db = MariaDb::shared();
    let victim = || {
        db.sql(&format!(
            "CHECKSUM TABLE `{other}`.victim; SHOW TRIGGERS FROM `{other}`;"
        ))
    };
    let untouched = victim();
    let marker = b.dir.path().join("pwned");
    for (i, sql) in hostile(&other, &marker).iter().enumerate() {
        b.forge_dump(sql);
        let target = format!("{}_f{i}", b.db);
        let r = b.run(&[
            "restore",
            "--date",
            "now",
            "--to-database",
            &target,
            "--yes",
        ]);
        let v = b.run(&["verify", "main"]);
        let p = b.run(&["restore", "--date", "now", "--in-place", "--yes"]);
        assert!(!marker.exists(), "case {i} ran a command:\n{sql}");
        assert_eq!(
            victim(),
            untouched,
            "case {i} reached `{other}`:\n{sql}\n{}\n{}\n{}",
            common::output_text(&r),
            common::output_text(&v),
            common::output_text(&p)
        );
        // What failed says why, naming the statement's target.
        for o in [&r, &v, &p] {
            if !o.status.success() {
                let text = common::output_text(o);
                assert!(
                    text.contains("failed") || text.contains("denied"),
                    "case {i}: {text}"
                );
            }
        }
        let _ = db.try_sql(&format!("DROP DATABASE IF EXISTS `{target}`"));
    }
    // No load account granted on this test's databases is left behind (other tests of this
    // binary may be loading meanwhile, with their own).
    let grants = db
        .sql("SELECT Db FROM mysql.db WHERE User LIKE 'opsagent\\_load\\_%'")
        .replace("\\_", "_");
    assert!(!grants.contains(&b.db), "load accounts left: {grants}");
}

#[test]
fn forged_manifests_naming_another_database_or_job_are_refused() {
    let b = Bench::new();
    let db = MariaDb::shared();
    db.sql_db(&b.db, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    b.ok(&["backup", "main"]);
    let s3 = S3Server::shared();
    let (mkey, m) = b.manifest();
    // The manifest says it is of database `mysql` while stored under this database's key.
    let mut forged = m.clone();
    forged["item"] = "mysql".into();
    s3.put_object(&b.bucket, &mkey, &serde_json::to_vec(&forged).unwrap());
    let o = b.run(&[
        "restore",
        "--date",
        "now",
        "--in-place",
        "--database",
        &b.db,
        "--yes",
    ]);
    let text = common::output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("does not match where it was read")
            && text.contains(&mkey[mkey.find("snapshots/").unwrap()..]),
        "{text}"
    );
    // Data outside its own key (another job's dump).
    let mut forged = m.clone();
    forged["objects"][0]["key"] = "mysql/other/x/20261120T073000Z-0a1b2c3d.sql.zst".into();
    s3.put_object(&b.bucket, &mkey, &serde_json::to_vec(&forged).unwrap());
    let o = b.run(&["restore", "--date", "now", "--yes"]);
    assert!(
        !o.status.success() && common::output_text(&o).contains("its data must be the one object"),
        "{}",
        common::output_text(&o)
    );
    assert_eq!(db.sql_db(&b.db, "SELECT COUNT(*) FROM t").trim(), "1");
}

#[test]
fn in_place_restores_share_no_staging_and_drop_nothing_they_did_not_make() {
    let db = MariaDb::shared();
    let b = Bench::new();
    db.sql_db(
        &b.db,
        "CREATE TABLE t (id INT); INSERT INTO t VALUES (1), (2);",
    );
    b.ok(&["backup", "main"]);
    // The old fixed staging name, held by a database that is not ours.
    let old: String = b.db.chars().take(40).collect::<String>() + "_opsagent_staging";
    db.sql(&format!("CREATE DATABASE `{old}`; CREATE TABLE `{old}`.keep (id INT); INSERT INTO `{old}`.keep VALUES (42);"));
    db.sql_db(&b.db, "DELETE FROM t");
    b.ok(&["restore", "--date", "now", "--in-place", "--yes"]);
    assert_eq!(db.sql_db(&b.db, "SELECT COUNT(*) FROM t").trim(), "2");
    assert_eq!(db.sql(&format!("SELECT id FROM `{old}`.keep")).trim(), "42");
    let left = db.sql("SHOW DATABASES LIKE '%opsagent\\_stg%'");
    assert!(!left.contains(&b.db), "staging left behind: {left}");
    db.sql(&format!("DROP DATABASE `{old}`"));
}

#[test]
fn stored_functions_load_as_the_load_account_on_a_server_with_a_binary_log() {
    // With log_bin on, only SUPER may create functions (and the load account has none): the
    // restore raises log_bin_trust_function_creators for the load and puts it back.
    let server = MariaDb::start_with_binlog();
    let b = Bench::new();
    server.sql(&format!("CREATE DATABASE `{}`", b.db));
    server.sql_db(
        &b.db,
        "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);
         CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
         CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.id = twice(NEW.id);",
    );
    assert_eq!(
        server
            .sql("SELECT @@log_bin, @@log_bin_trust_function_creators")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1", "0"]
    );
    let ok = |args: &[&str]| b.ok_on(&server, args);
    ok(&["backup", "main"]);
    let copy = format!("{}_copy", b.db);
    ok(&["restore", "--date", "now", "--to-database", &copy, "--yes"]);
    server.sql_db(&copy, "INSERT INTO t VALUES (21)");
    assert_eq!(server.sql_db(&copy, "SELECT MAX(id) FROM t").trim(), "42");
    ok(&["verify", "main"]);
    assert_eq!(
        server
            .sql("SELECT @@log_bin_trust_function_creators")
            .trim(),
        "0"
    );
}

#[test]
fn two_in_place_restores_of_databases_sharing_a_long_prefix_run_at_once() {
    // Staging was `<first 40 characters>_opsagent_staging`: these two shared it.
    let db = MariaDb::shared();
    let mut b = Bench::new();
    let long = format!("{}_{}", b.db, "p".repeat(40));
    let (x, y) = (format!("{long}_x"), format!("{long}_y"));
    for (d, n) in [(&x, 3), (&y, 5)] {
        db.sql(&format!("CREATE DATABASE `{d}`"));
        db.sql_db(
            d,
            &format!("CREATE TABLE t (id INT); INSERT INTO t SELECT seq FROM seq_1_to_{n};"),
        );
    }
    b.also = vec![x.clone(), y.clone()];
    b.ok(&["backup", "main"]);
    for d in [&x, &y] {
        db.sql_db(d, "DELETE FROM t");
    }
    // Written once: `config_for` rewrites the file, and a restore starting meanwhile read it
    // half-written ("the [storage] section is missing", seen in CI).
    let config = b.config_for(db);
    let start = |d: &str| {
        Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&config)
            .args([
                "restore",
                "--date",
                "now",
                "--in-place",
                "--database",
                d,
                "--yes",
            ])
            .output()
            .unwrap()
    };
    let (ox, oy) = std::thread::scope(|s| {
        let hx = s.spawn(|| start(&x));
        let hy = s.spawn(|| start(&y));
        (hx.join().unwrap(), hy.join().unwrap())
    });
    for o in [&ox, &oy] {
        assert!(o.status.success(), "{}", common::output_text(o));
    }
    assert_eq!(db.sql_db(&x, "SELECT COUNT(*) FROM t").trim(), "3");
    assert_eq!(db.sql_db(&y, "SELECT COUNT(*) FROM t").trim(), "5");
}

#[test]
fn a_restore_user_that_cannot_make_load_accounts_is_told_by_check_config_and_restores_change_nothing(
) {
    let db = MariaDb::shared();
    let b = Bench::new();
    db.sql_db(&b.db, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    b.ok(&["backup", "main"]);
    let ok = b.ok(&["check-config", "--connect"]);
    assert!(ok.contains("restores of main: ok"), "{ok}");
    // The grants the README gave restore users before load accounts: no CREATE USER.
    let weak = format!("weak_{}", &b.db[4..]);
    db.sql(&format!(
        "CREATE USER '{weak}'@'localhost' IDENTIFIED BY 'pw';
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, CREATE VIEW, SHOW VIEW,
           TRIGGER, EVENT, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, LOCK TABLES, CREATE TEMPORARY TABLES,
           SET USER ON *.* TO '{weak}'@'localhost';"
    ));
    let pw = common::write_secret(b.dir.path(), "weak", "pw");
    let cfg = std::fs::read_to_string(b.config_for(db)).unwrap().replace(
        "user = \"root\"\n",
        &format!(
            "user = \"root\"\nrestore_user = \"{weak}\"\nrestore_password_file = \"{}\"\n",
            pw.display()
        ),
    );
    let path = b.dir.path().join("weak.toml");
    std::fs::write(&path, cfg).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["check-config", "--connect"]);
    let text = common::output_text(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("warning: restores and drills of main would fail")
            && text.contains("CREATE USER"),
        "{text}"
    );
    let o = run(&["restore", "--date", "now", "--yes"]);
    let text = common::output_text(&o);
    assert!(
        !o.status.success() && text.contains("load account"),
        "{text}"
    );
    let left = db.sql(&format!("SHOW DATABASES LIKE '{}\\_2%'", b.db));
    assert!(left.trim().is_empty(), "a failed restore left {left}");
    db.sql(&format!("DROP USER '{weak}'@'localhost'"));
}

#[test]
fn a_foreign_key_into_another_database_fails_clearly_and_leaves_nothing() {
    let db = MariaDb::shared();
    let b = Bench::new();
    let other = format!("{}_ref", b.db);
    db.sql(&format!(
        "CREATE DATABASE `{other}`; CREATE TABLE `{other}`.p (id INT PRIMARY KEY); INSERT INTO `{other}`.p VALUES (1);"
    ));
    db.sql_db(
        &b.db,
        &format!("CREATE TABLE c (id INT, pid INT, FOREIGN KEY (pid) REFERENCES `{other}`.p (id)); INSERT INTO c VALUES (1, 1);"),
    );
    b.ok(&["backup", "main"]);
    let o = b.run(&["restore", "--date", "now", "--yes"]);
    let text = common::output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("reached for something outside") && text.contains(&other),
        "{text}"
    );
    let left = db.sql(&format!("SHOW DATABASES LIKE '{}\\_2%'", b.db));
    assert!(left.trim().is_empty(), "a failed restore left {left}");
    // By hand from --to-file it loads, as the README says.
    let file = b.dir.path().join("c.sql");
    b.ok(&[
        "restore",
        "--date",
        "now",
        "--to-file",
        file.to_str().unwrap(),
        "--yes",
    ]);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains(&format!("REFERENCES `{other}`")));
}

#[test]
fn load_accounts_are_aged_by_the_servers_clock_not_the_restoring_hosts() {
    let db = MariaDb::shared();
    let b = Bench::new();
    db.sql_db(&b.db, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    b.ok(&["backup", "main"]);
    let now: u64 = db.sql("SELECT UNIX_TIMESTAMP()").trim().parse().unwrap();
    let tag = &b.db[4..10];
    let (stale, live) = (
        format!("opsagent_load_{:x}_{tag}", now - 2 * 86400),
        format!("opsagent_load_{now:x}_{tag}"),
    );
    for u in [&stale, &live] {
        db.sql(&format!("CREATE USER '{u}'@'localhost' IDENTIFIED BY 'x'"));
    }
    // A restore from a host whose clock is ten days ahead (or run under faketime).
    let target = format!("{}_later", b.db);
    let o = Command::new("faketime")
        .args(["-f", "+10d"])
        .arg(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(b.config_for(db))
        .args([
            "restore",
            "--date",
            "now",
            "--to-database",
            &target,
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::output_text(&o));
    let users = db.sql(&format!(
        "SELECT User FROM mysql.user WHERE User LIKE 'opsagent\\_load\\_%\\_{tag}'"
    ));
    assert!(
        !users.contains(&stale),
        "the day-old account stayed: {users}"
    );
    assert!(
        users.contains(&live),
        "another restore's live account was dropped: {users}"
    );
    db.sql(&format!(
        "DROP USER '{live}'@'localhost'; DROP DATABASE `{target}`"
    ));
}

#[test]
fn load_accounts_satisfy_a_servers_password_policy() {
    // simple_password_check: 8 characters with a digit, an upper and a lower case letter and a
    // symbol; CREATE USER with a weaker password is refused.
    let server = MariaDb::start();
    server.sql("INSTALL SONAME 'simple_password_check'");
    let b = Bench::new();
    server.sql(&format!("CREATE DATABASE `{}`", b.db));
    server.sql_db(&b.db, "CREATE TABLE t (id INT); INSERT INTO t VALUES (7);");
    let ok = |args: &[&str]| b.ok_on(&server, args);
    ok(&["backup", "main"]);
    let copy = format!("{}_copy", b.db);
    ok(&["restore", "--date", "now", "--to-database", &copy, "--yes"]);
    assert_eq!(server.sql_db(&copy, "SELECT id FROM t").trim(), "7");
}

/// Watches FIFO `path` for a reader: `true` in the flag once anybody opened it to read (a
/// write-only non-blocking open succeeds only then), which a load must never do.
fn watch_fifo(path: &Path) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    use std::os::unix::fs::OpenOptionsExt;
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    let (opened, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (o, s, p) = (opened.clone(), stop.clone(), path.to_path_buf());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&p);
            if let Ok(mut w) = w {
                o.store(true, Ordering::SeqCst);
                let _ = std::io::Write::write_all(&mut w, b"4242\n");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    (opened, stop)
}

/// Forged dumps shaped like a dump tool's (a preamble, then a table's data section), so their
/// statements of rows load over the client protocol on several sessions (`restore_threads =
/// 2`): a statement of rows carrying a second statement that reaches another database, rows
/// for another database, `LOAD DATA LOCAL INFILE` of a file on this host (in the rows, in the
/// preamble, and in a plain script loaded by the `mariadb` client): every restore loads only its
/// target or fails, `other` is untouched, and nothing ever opens the file.
#[test]
fn rows_on_several_sessions_reach_only_their_target_and_no_load_reads_a_local_file() {
    let (b, other) = backed_up_beside_a_victim();
    let db = MariaDb::shared();
    let victim = || db.sql(&format!("CHECKSUM TABLE `{other}`.victim"));
    let untouched = victim();
    let fifo = b.dir.path().join("host-file");
    let (opened, stop) = watch_fifo(&fifo);
    let f = fifo.display();
    let head = |extra: &str| {
        format!(
            "-- MariaDB dump 10.19\n/*!40101 SET NAMES utf8mb4 */;{extra}\n\
             /*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n\n\
             --\n-- Table structure for table `t`\n--\n\nDROP TABLE IF EXISTS `t`;\n\
             CREATE TABLE `t` (`id` int);\n\n--\n-- Dumping data for table `t`\n--\n\n"
        )
    };
    let rows = "INSERT INTO `t` VALUES (5),(6);\nINSERT INTO `t` VALUES (7);\n".repeat(20);
    let cases = [
        format!(
            "{}INSERT INTO `t` VALUES (1); DROP TABLE `{other}`.victim;\n{rows}",
            head("")
        ),
        format!(
            "{}{rows}INSERT INTO `{other}`.victim VALUES (9);\n",
            head("")
        ),
        format!(
            "{}INSERT INTO `t` VALUES (1); USE `{other}`; DELETE FROM victim;\n{rows}",
            head("")
        ),
        format!(
            "{}{rows}INSERT INTO `t` VALUES (1); LOAD DATA LOCAL INFILE '{f}' INTO TABLE `t`;\n",
            head("")
        ),
        format!(
            "{}{rows}",
            head(&format!("\nLOAD DATA LOCAL INFILE '{f}' INTO TABLE `t`;"))
        ),
        format!("CREATE TABLE t (id INT);\nLOAD DATA LOCAL INFILE '{f}' INTO TABLE t;\n"),
    ];
    let cfg = b.config_for(db);
    let text = std::fs::read_to_string(&cfg).unwrap() + "restore_threads = 2\n";
    let cfg = b.dir.path().join("threads.toml");
    std::fs::write(&cfg, text).unwrap();
    let restore = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&cfg)
            .args(["restore", "--date", "now", "--to-database", target, "--yes"])
            .env("OPSAGENT_LOG", "info")
            .output()
            .unwrap()
    };
    // The shape itself loads, its rows on the two protocol sessions (session 0 gets none).
    b.forge_dump(&format!("{}{rows}", head("")));
    let target = format!("{}_fine", b.db);
    let out = restore(&target);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("protocol=true"), "{said}");
    assert_eq!(
        db.sql(&format!("SELECT COUNT(*) FROM `{target}`.t")).trim(),
        "60"
    );
    db.sql(&format!("DROP DATABASE `{target}`"));
    for (i, sql) in cases.iter().enumerate() {
        b.forge_dump(sql);
        let target = format!("{}_l{i}", b.db);
        let out = restore(&target);
        let said = common::output_text(&out);
        assert!(
            !opened.load(Ordering::SeqCst),
            "case {i} read a local file:\n{sql}\n{said}"
        );
        assert_eq!(
            victim(),
            untouched,
            "case {i} reached `{other}`:\n{sql}\n{said}"
        );
        if out.status.success() {
            let rows = db.sql(&format!(
                "SELECT COUNT(*) FROM `{target}`.t WHERE id = 4242"
            ));
            assert_eq!(rows.trim(), "0", "case {i}: {said}");
        } else {
            assert!(
                said.contains("failed") || said.contains("denied"),
                "case {i}: {said}"
            );
        }
        let _ = db.try_sql(&format!("DROP DATABASE IF EXISTS `{target}`"));
    }
    stop.store(true, Ordering::SeqCst);
}
