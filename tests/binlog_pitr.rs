//! Point-in-time recovery against a real MariaDB writing a binary log and the real S3 server:
//! the archive keeps up with a steady write load (RPO measured) through a server crash, a
//! rotation and the S3 server frozen for 30 s; a replay stops before a position or GTID that
//! `--show-events` lists.

mod common;

use common::agent::{opsagent, Daemon};
use common::binlog::{caught_up, caught_up_in, master, server_time, Bench};
use common::mariadb::MariaDb;
use common::s3::S3Server;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The archive's (file, end) of each segment, from the manifest keys alone.
fn archived(s3: &S3Server, b: &Bench) -> Option<(String, u64)> {
    (s3.list_keys(&b.bucket).into_iter())
        .filter_map(|(k, _)| {
            let rest = k.split("/binlog/main/").nth(1)?.strip_suffix(".json")?;
            let (file, range) = rest.split_once('/')?;
            let end = range.split_once('-')?.1.parse().ok()?;
            Some((file.to_string(), end))
        })
        .max()
}

/// `INSERT`s one row at a time into `db` on the server at `socket` until `stop`, through
/// restarts (failures are counted, not fatal).
fn writer(socket: std::path::PathBuf, db: String, stop: &AtomicBool, rows: &AtomicU64) {
    let mut id = 1_000_000u64;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        let ok = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "--connect-timeout=2"])
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--database={db}"))
            .arg("-e")
            .arg(format!(
                "INSERT INTO orders VALUES ({id}, REPEAT('w', {id} % 300))"
            ))
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            rows.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

#[test]
fn the_archive_keeps_up_with_a_steady_load_through_a_crash_a_rotation_and_a_frozen_s3() {
    let mut server = MariaDb::start_with_binlog();
    let s3 = S3Server::start();
    let b = Bench::on(&server, &s3);
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    let (stop, rows) = (AtomicBool::new(false), AtomicU64::new(0));
    let (socket, db) = (server.socket(), b.db.clone());
    let crashed = std::thread::scope(|scope| {
        scope.spawn(|| writer(socket, db, &stop, &rows));
        // Samples of the server's position (when it answers); each is resolved when the
        // archive reaches it: the wait is the data at risk at that moment.
        let mut pending: Vec<(Instant, (String, u64))> = Vec::new();
        let mut worst = Duration::ZERO;
        let mut resolved = 0;
        let mut frozen = false;
        let t0 = Instant::now();
        let mut phase = 0;
        let mut crashed = String::new();
        loop {
            let t = t0.elapsed().as_secs();
            match (phase, t) {
                (0, 10..) => {
                    eprintln!("the server crashes (SIGKILL) and restarts");
                    crashed = master(&server).0;
                    server.restart();
                    phase = 1;
                }
                (1, 20..) => {
                    server.sql("FLUSH BINARY LOGS");
                    eprintln!("the S3 server is frozen (SIGSTOP) for 30 s");
                    nix_signal(s3.pid().unwrap(), "STOP");
                    frozen = true;
                    phase = 2;
                }
                (2, 50..) => {
                    nix_signal(s3.pid().unwrap(), "CONT");
                    frozen = false;
                    phase = 3;
                }
                (3, 65..) => break,
                _ => {}
            }
            if let Ok(out) = server.try_sql("SHOW MASTER STATUS") {
                let mut f = out.split_whitespace();
                if let (Some(file), Some(Ok(pos))) = (f.next(), f.next().map(str::parse)) {
                    pending.push((Instant::now(), (file.to_string(), pos)));
                }
            }
            if !frozen {
                if let Some(reach) = archived(&s3, &b) {
                    pending.retain(|(at, p)| {
                        if *p > reach {
                            return true;
                        }
                        worst = worst.max(at.elapsed());
                        resolved += 1;
                        false
                    });
                }
            }
            if let Some((at, _)) = pending.first() {
                worst = worst.max(at.elapsed());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "RPO under a steady load of ~{} rows/s: the newest archived event was at most {:.1} s old ({resolved} samples)",
            rows.load(Ordering::Relaxed) / 65,
            worst.as_secs_f64()
        );
        assert!(resolved > 50, "{resolved} samples resolved\n{log_text}");
        assert!(
            worst <= Duration::from_secs(60),
            "RPO {worst:?} > 60 s\n{log_text}"
        );
        assert!(
            log_text.contains("the archive marks it ended"),
            "{log_text}"
        );
        crashed
    });
    caught_up_in(&b, &server, &s3);
    // Contiguous from 0 in every file (rebuilt_in asserts it); the closed files are the
    // server's byte for byte, the one the crash left unclosed included (but for the "in use"
    // flag, byte 21, which the archive read while it was set, as in the current one).
    let rebuilt = b.rebuilt_in(&s3);
    assert!(rebuilt.len() >= 3, "{:?}", rebuilt.keys());
    let (current, _) = master(&server);
    for (name, bytes) in &rebuilt {
        let mut on_server = std::fs::read(server.datadir().join(name)).unwrap();
        if *name == current || *name == crashed {
            on_server[21] = bytes[21];
        }
        let diff = (on_server.iter().zip(bytes.iter())).position(|(a, b)| a != b);
        assert!(
            on_server == *bytes,
            "{name} differs from the server's: {} bytes there, {} archived, first difference at {diff:?}",
            on_server.len(),
            bytes.len()
        );
    }
    // Every row written is in a copy restored to now.
    std::thread::sleep(Duration::from_millis(1100));
    let copy = format!("{}_now", b.db);
    let now = server_time(&server, 0);
    let out = opsagent(
        &b.cfg,
        &["restore", "--date", &now, "--to-database", &copy, "--yes"],
    );
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}\n{}", daemon.log());
    let count = |db: &str| server.sql_db(db, "SELECT COUNT(*), SUM(id) FROM orders");
    assert_eq!(count(&copy), count(&b.db), "{said}");
    daemon.stop();
}

/// `kill -SIG pid`.
fn nix_signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// The listing's position and GTID of the transaction whose statement starts with `what`.
fn listed(said: &str, what: &str) -> (String, String) {
    let line = (said.lines())
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what} listed:\n{said}"));
    let mut f = line.split_whitespace();
    let pos = f.next().unwrap().to_string();
    let _date = f.next();
    let _time = f.next();
    (pos, f.next().unwrap().to_string())
}

#[test]
fn a_replay_stops_before_the_position_or_gtid_the_listing_names() {
    let server = MariaDb::start_with_binlog();
    let b = Bench::new(&server);
    let sql = |q: &str| server.sql_db(&b.db, q);
    sql("INSERT INTO orders SELECT seq, 'dumped' FROM seq_1_to_100");
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    sql("INSERT INTO orders SELECT seq, 'later' FROM seq_101_to_150");
    sql("UPDATE orders SET note = 'changed' WHERE id < 10");
    let before_delete = sql("CHECKSUM TABLE orders");
    sql("DELETE FROM orders WHERE id > 20");
    sql("INSERT INTO orders VALUES (999, 'after the delete')");
    caught_up(&b, &server);
    std::thread::sleep(Duration::from_millis(1100));
    let now = server_time(&server, 0);

    let out = opsagent(&b.cfg, &["restore", "--date", &now, "--show-events"]);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("dry run: nothing was changed"), "{said}");
    assert!(said.contains("4 transaction(s)"), "{said}");
    let (pos, gtid) = listed(&said, "DELETE FROM orders WHERE id > 20");
    assert!(said.contains("--to-position "), "{said}");
    let checksum = |db: &str| {
        let out = server.sql_db(db, "CHECKSUM TABLE orders");
        out.split_whitespace().last().unwrap().to_string()
    };
    let want = before_delete.split_whitespace().last().unwrap().to_string();
    for (flag, value, name) in [("--to-position", &pos, "pos"), ("--to-gtid", &gtid, "gtid")] {
        let copy = format!("{}_{name}", b.db);
        let out = opsagent(
            &b.cfg,
            &[
                "restore",
                "--date",
                &now,
                flag,
                value,
                "--to-database",
                &copy,
                "--yes",
            ],
        );
        let said = common::output_text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("up to, not including"), "{said}");
        assert_eq!(checksum(&copy), want, "{flag} {value}: {said}");
    }
    // A position before the dump, a GTID that is not there, a malformed one: refused, and
    // nothing is created.
    let (file, _) = master(&server);
    let early = format!("{file}:4");
    for (flag, value, says, code) in [
        ("--to-position", early.as_str(), "comes before the dump", 1),
        ("--to-gtid", "0-1-999999", "GTID 0-1-999999", 1),
        ("--to-gtid", "0-1;DROP", "is not a GTID", 2),
    ] {
        let copy = format!("{}_bad", b.db);
        let all = [
            "restore",
            "--date",
            &now,
            "--to-database",
            &copy,
            "--yes",
            flag,
            value,
        ];
        let out = opsagent(&b.cfg, &all);
        let said = common::output_text(&out);
        assert_eq!(out.status.code(), Some(code), "{said}");
        assert!(said.contains(says), "{said}");
        assert!(
            server.try_sql(&format!("USE `{copy}`")).is_err(),
            "{copy} was left behind: {said}"
        );
    }
    daemon.stop();
}

#[test]
fn a_drill_rolls_forward_and_checks_unchanged_tables_against_the_live_ones() {
    let server = MariaDb::start_with_binlog();
    let b = Bench::new(&server);
    let sql = |q: &str| server.sql_db(&b.db, q);
    // Every change a row event (a statement's tables are not known: see below).
    server.sql("SET GLOBAL binlog_format = 'ROW'");
    sql("CREATE TABLE customers (id INT PRIMARY KEY); CREATE TABLE logs (id INT PRIMARY KEY)");
    sql("INSERT INTO orders SELECT seq, 'dumped' FROM seq_1_to_100; INSERT INTO customers SELECT seq FROM seq_1_to_10");
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    // Changes the replay must bring: more than a minute before the drill.
    sql("INSERT INTO orders SELECT seq, 'later' FROM seq_101_to_150; DELETE FROM customers WHERE id > 5");
    caught_up(&b, &server);
    std::thread::sleep(Duration::from_secs(62));
    // A change within the last minute: that table is left out of the comparison.
    sql("INSERT INTO logs VALUES (1)");
    let out = opsagent(&b.cfg, &["verify", "main"]);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}\n{}", daemon.log());
    assert!(
        said.contains("rolled forward with the binary log to"),
        "{said}"
    );
    assert!(
        said.contains("2 unchanged table(s) match the live row counts"),
        "{said}"
    );
    // Rows the binary log never saw (written with it off): the copy cannot match, and the
    // drill says which table.
    sql("SET sql_log_bin = 0; INSERT INTO customers VALUES (99)");
    let out = opsagent(&b.cfg, &["verify", "main"]);
    let said = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("has 5 rows in `customers`, the live database 6"),
        "{said}"
    );
    // A change logged as a statement: which table it touched is not known, so nothing is
    // compared, and the drill says why.
    sql("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO logs VALUES (2)");
    let out = opsagent(&b.cfg, &["verify", "main"]);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("the binary log holds 1 statement(s) since"),
        "{said}"
    );
    daemon.stop();
}
