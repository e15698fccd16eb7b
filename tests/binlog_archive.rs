//! The binary log archive (`binlog = true`) against a real MariaDB writing a binary log and
//! the real S3 server: a dump records where it stands in the log; the daemon commits what the
//! server writes in contiguous segments that rebuild the server's files byte for byte, across
//! a rotation and a SIGKILL of the agent (no gap, no overlap); `status` shows the data at risk.

mod common;

use common::agent::{opsagent, Daemon};
use common::binlog::{caught_up, master, restore_to, server_time, Bench};
use common::mariadb::MariaDb;
use common::s3::S3Server;
use std::time::{Duration, Instant};

#[test]
fn the_archive_follows_the_server_across_rotation_and_a_killed_agent() {
    let server = MariaDb::start_with_binlog();
    let b = Bench::new(&server);
    let insert = |from: u32, to: u32| {
        server.sql_db(
            &b.db,
            &format!(
                "INSERT INTO orders SELECT seq, REPEAT('x', seq % 200) FROM seq_{from}_to_{to}"
            ),
        );
    };
    insert(1, 100);
    // The dump says where it stands in the binary log.
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let s3 = S3Server::shared();
    let manifest = (s3.list_keys(&b.bucket).into_iter())
        .find(|(k, _)| k.contains("/snapshots/main/"))
        .map(|(k, _)| k)
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&s3.get_object(&b.bucket, &manifest).unwrap()).unwrap();
    let (file, pos) = master(&server);
    assert_eq!(m["binlog"]["file"], file.as_str(), "{m}");
    assert_eq!(m["binlog"]["pos"].as_u64(), Some(pos), "{m}");

    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    insert(101, 200);
    caught_up(&b, &server);
    // A rotation, writes on both sides of it, then the agent killed mid-stream.
    insert(201, 300);
    server.sql("FLUSH BINARY LOGS");
    insert(301, 400);
    let t0 = Instant::now();
    caught_up(&b, &server);
    eprintln!(
        "caught up {:.1}s after the last write",
        t0.elapsed().as_secs_f64()
    );
    drop(daemon);
    insert(401, 500);
    let daemon = Daemon::start(&b.cfg, &log);
    insert(501, 600);
    caught_up(&b, &server);

    // Contiguous from 0 in every file; the closed files are the server's, byte for byte (the
    // current one differs only in its "in use" flag, byte 21).
    let rebuilt = b.rebuilt();
    assert!(rebuilt.len() >= 2, "{:?}", rebuilt.keys());
    let datadir = server.datadir();
    let (current, _) = master(&server);
    for (name, bytes) in &rebuilt {
        let mut on_server = std::fs::read(datadir.join(name)).unwrap();
        if *name == current {
            on_server[21] = bytes[21];
        }
        assert!(on_server == *bytes, "{name} differs from the server's");
    }

    let status = common::output_text(&opsagent(&b.cfg, &["status"]));
    assert!(
        status.contains("main: binary log archived up to"),
        "{status}"
    );
    assert!(status.contains("data at risk: "), "{status}");

    // A new dump in a newer file; keep last = 1 forgets the first dump, and with it the
    // segments only it needed.
    server.sql("FLUSH BINARY LOGS");
    let (newest, _) = master(&server);
    // The old file's last segment (its rotate event) archived first: one uploaded after the
    // backup's retention ran would be left until the next run's.
    caught_up(&b, &server);
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let left = b.segments();
    assert!(
        left.iter().all(|(f, _, _)| *f >= newest),
        "{left:?} (newest dump in {newest})"
    );
    daemon.stop();
    let daemon_log = std::fs::read_to_string(&log).unwrap();
    assert!(!daemon_log.contains("ERROR"), "{daemon_log}");
}

#[test]
fn a_restore_rolls_the_dump_forward_to_the_second_before_the_delete() {
    let server = MariaDb::start_with_binlog();
    let b = Bench::new(&server);
    let sql = |q: &str| server.sql_db(&b.db, q);
    let other = format!("{}_other", b.db);
    server.sql(&format!(
        "CREATE DATABASE `{other}`; CREATE TABLE `{other}`.t (id INT PRIMARY KEY)"
    ));
    sql("INSERT INTO orders SELECT seq, CONCAT('v', seq, X'00FF27') FROM seq_1_to_100");
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    std::thread::sleep(Duration::from_millis(1100));
    let after_dump = server_time(&server, 0);
    std::thread::sleep(Duration::from_millis(1100));
    sql("INSERT INTO orders SELECT seq, REPEAT('y', seq) FROM seq_101_to_200");
    // The replay spans two files.
    server.sql("FLUSH BINARY LOGS");
    sql("UPDATE orders SET note = 'changed' WHERE id = 7");
    server.sql_db(&other, "INSERT INTO t SELECT seq FROM seq_1_to_50");
    let before_delete = sql("CHECKSUM TABLE orders");
    std::thread::sleep(Duration::from_millis(1100));
    let moment = server_time(&server, 0);
    std::thread::sleep(Duration::from_millis(1100));
    sql("DELETE FROM orders");
    caught_up(&b, &server);

    // To the second before the DELETE: every row of before, byte for byte.
    let copy = format!("{}_pitr", b.db);
    let out = restore_to(&b, &moment, &copy);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("then the binary log from"), "{said}");
    assert!(
        said.contains("rolled forward with the binary log"),
        "{said}"
    );
    let checksum = |db: &str| {
        server
            .sql_db(db, "CHECKSUM TABLE orders")
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        checksum(&copy),
        before_delete.split_whitespace().last().unwrap(),
        "{said}"
    );
    // The other database's events were not replayed anywhere.
    assert_eq!(
        server
            .sql(&format!("SELECT COUNT(*) FROM `{other}`.t"))
            .trim(),
        "50"
    );

    // Between the dump and the inserts: the dump's 100 rows, none of the later ones.
    let early = format!("{}_early", b.db);
    let out = restore_to(&b, &after_dump, &early);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert_eq!(
        server
            .sql_db(&early, "SELECT COUNT(*), MAX(id) FROM orders")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["100", "100"]
    );
    daemon.stop();
}

#[test]
fn a_log_purged_before_it_was_archived_is_a_gap_a_restore_names() {
    let server = MariaDb::start_with_binlog();
    let b = Bench::new(&server);
    let sql = |q: &str| server.sql_db(&b.db, q);
    sql("INSERT INTO orders SELECT seq, 'a' FROM seq_1_to_10");
    let out = opsagent(&b.cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let log = b.dir.path().join("daemon.log");
    let daemon = Daemon::start(&b.cfg, &log);
    sql("INSERT INTO orders SELECT seq, 'b' FROM seq_11_to_20");
    caught_up(&b, &server);
    std::thread::sleep(Duration::from_millis(1100));
    let before_gap = server_time(&server, 0);
    drop(daemon);
    // While the agent is down: writes, and the server rotates and purges that file.
    std::thread::sleep(Duration::from_millis(1100));
    sql("INSERT INTO orders SELECT seq, 'lost' FROM seq_21_to_30");
    let (lost, _) = master(&server);
    server.sql("FLUSH BINARY LOGS");
    let (now_file, _) = master(&server);
    // (The server keeps a file a reader still has open: the killed agent's reader goes with
    // it, and the server notices a moment later.)
    let t0 = Instant::now();
    loop {
        server.sql(&format!("PURGE BINARY LOGS TO '{now_file}'"));
        if !server.sql("SHOW BINARY LOGS").contains(&lost) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{lost} is never purged"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let daemon = Daemon::start(&b.cfg, &log);
    sql("INSERT INTO orders SELECT seq, 'after' FROM seq_31_to_40");
    caught_up(&b, &server);

    let out = restore_to(&b, &server_time(&server, 0), &format!("{}_late", b.db));
    let said = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("has a gap at {now_file}"))
            || said.contains(&format!("gap at {lost}")),
        "{said}"
    );
    assert!(
        said.contains("the newest moment it can restore to is"),
        "{said}"
    );
    // Before the gap is fine.
    let early = format!("{}_early", b.db);
    let out = restore_to(&b, &before_gap, &early);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert_eq!(
        server.sql_db(&early, "SELECT COUNT(*) FROM orders").trim(),
        "20"
    );
    daemon.stop();
}
