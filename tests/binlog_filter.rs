//! The binary-log filter (src/binlog) on a real MariaDB binary log: two databases written in
//! row format, separately and in one transaction; the log filtered for the first one is read
//! by `mariadb-binlog` (stale `log_pos` fields and all, checksums verified), names only the
//! first database's table in its `Table_map` lines, and replayed into a server where both
//! databases are empty it brings back the first one's rows and leaves the second one empty.

mod common;

use common::mariadb::MariaDb;
use opsagent::binlog::{filter_file, scan_events, Filter, Summary};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `mariadb-binlog --verify-binlog-checksum FILE`: its stdout; panics with stderr on failure.
fn binlog_text(file: &Path) -> String {
    let out = Command::new("mariadb-binlog")
        .arg("--no-defaults")
        .arg("--verify-binlog-checksum")
        .arg(file)
        .output()
        .expect("run mariadb-binlog");
    assert!(
        out.status.success(),
        "mariadb-binlog {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `mariadb-binlog FILE | mariadb -uroot --socket=…` into `server`.
fn replay(file: &Path, server: &MariaDb) {
    let mut dump = Command::new("mariadb-binlog")
        .arg("--no-defaults")
        .arg(file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run mariadb-binlog");
    let client = Command::new("mariadb")
        .args(["--no-defaults", "--sandbox", "-uroot"])
        .arg(format!("--socket={}", server.socket().display()))
        .stdin(dump.stdout.take().expect("piped stdout"))
        .output()
        .expect("run mariadb");
    assert!(dump.wait().expect("wait for mariadb-binlog").success());
    assert!(
        client.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&client.stderr)
    );
}

fn filter(log: &Path, out: &Path, f: &Filter) -> Summary {
    let mut input = std::fs::File::open(log).expect("open the binary log");
    let mut output = std::fs::File::create(out).expect("create the filtered log");
    filter_file(&mut input, &mut output, f).expect("filter the binary log")
}

fn table_maps(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("Table_map:")).collect()
}

/// The current binary log and position.
fn master_status(server: &MariaDb) -> (PathBuf, u64) {
    let status = server.sql("SHOW MASTER STATUS");
    let mut fields = status.split_whitespace();
    let file = fields.next().expect("a binary log file");
    let pos = fields
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a position");
    (server.datadir().join(file), pos)
}

/// What the source server wrote: two databases, `db1.t` and `db2.u`, written after `start`
/// in `log` (row format), the last transaction at 2000000000.
struct Written {
    db1: String,
    db2: String,
    schema: String,
    log: PathBuf,
    start: u64,
}

fn write_two_databases(source: &MariaDb) -> Written {
    let (db1, db2) = (source.new_database(), source.new_database());
    let schema = format!(
        "CREATE TABLE `{db1}`.t (id INT PRIMARY KEY, v VARCHAR(20));
         CREATE TABLE `{db2}`.u (id INT PRIMARY KEY);"
    );
    source.sql(&schema);
    let (log, start) = master_status(source);
    source.sql(&format!(
        "SET SESSION binlog_format = 'ROW';
         INSERT INTO `{db1}`.t VALUES (1, 'one'), (2, 'two');
         INSERT INTO `{db2}`.u VALUES (10);
         SET timestamp = 2000000000;
         BEGIN;
         INSERT INTO `{db1}`.t VALUES (3, 'three');
         INSERT INTO `{db2}`.u VALUES (11);
         UPDATE `{db2}`.u SET id = 12 WHERE id = 11;
         DELETE FROM `{db1}`.t WHERE id = 2;
         COMMIT;
         FLUSH BINARY LOGS;"
    ));
    Written {
        db1,
        db2,
        schema,
        log,
        start,
    }
}

#[test]
fn a_real_log_filtered_for_one_database_replays_only_that_database() {
    let source = MariaDb::start_with_binlog();
    let Written {
        db1,
        db2,
        schema,
        log,
        start,
    } = write_two_databases(&source);
    let gtid_pos = source.sql("SELECT @@gtid_binlog_pos").trim().to_string();
    let original = binlog_text(&log);
    assert!(original.contains(&format!("`{db2}`.`u`")), "{original}");

    // The archiver's scan: the closed file is whole, its last GTID is the server's.
    let bytes = std::fs::read(&log).unwrap();
    let scan = scan_events(&bytes, 0).unwrap();
    assert_eq!(scan.complete, bytes.len() as u64);
    assert_eq!(scan.last_gtid.as_deref(), Some(gtid_pos.as_str()));
    let tail = scan_events(&bytes[start as usize..], start).unwrap();
    assert_eq!(tail.complete, bytes.len() as u64 - start);

    let dir = tempfile::tempdir().unwrap();
    let filtered = dir.path().join("filtered.bin");
    let mut f = Filter::new(db1.clone());
    f.start_pos = Some(start);
    let sum = filter(&log, &filtered, &f);
    assert_eq!(sum.transactions, 3, "{sum:?}");
    assert_eq!(sum.dropped_row_events, 3, "{sum:?}");
    assert_eq!(
        sum.dropped_tables.iter().collect::<Vec<_>>(),
        [&format!("{db2}.u")]
    );
    let text = binlog_text(&filtered);
    let maps = table_maps(&text);
    assert_eq!(maps.len(), 3, "{text}"); // one per statement
    assert!(
        maps.iter().all(|l| l.contains(&format!("`{db1}`.`t`"))),
        "{text}"
    );
    assert!(!maps.iter().any(|l| l.contains(&db2)), "{text}");

    // From the start of the file: GTID list, checkpoint, DDL and rotate pass too.
    let whole = dir.path().join("whole.bin");
    let sum = filter(&log, &whole, &Filter::new(db1.clone()));
    assert_eq!(sum.dropped_row_events, 3, "{sum:?}");
    assert!(binlog_text(&whole).contains("Binlog checkpoint"));

    // A restore target where both databases exist, empty.
    let target = MariaDb::start();
    target.sql(&format!(
        "CREATE DATABASE `{db1}`; CREATE DATABASE `{db2}`; {schema}"
    ));
    replay(&filtered, &target);
    assert_eq!(
        target.sql(&format!("SELECT id, v FROM `{db1}`.t ORDER BY id")),
        "1\tone\n3\tthree\n"
    );
    assert_eq!(
        target
            .sql(&format!("SELECT COUNT(*) FROM `{db2}`.u"))
            .trim(),
        "0"
    );

    // Stopping before the explicit transaction's moment leaves it out, whole.
    let early = dir.path().join("early.bin");
    f.stop_before = Some(2_000_000_000);
    let sum = filter(&log, &early, &f);
    assert_eq!(sum.stopped_at.map(|(_, ts)| ts), Some(2_000_000_000));
    assert_eq!(sum.transactions, 2, "{sum:?}");
    let text = binlog_text(&early);
    assert_eq!(table_maps(&text).len(), 1, "{text}");
    assert!(!text.contains("three"), "{text}");
}
