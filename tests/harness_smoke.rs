//! Smoke tests of the integration-test harness in tests/common: each real server (moto S3,
//! MariaDB, aiosmtpd) starts, the helpers round-trip data through it, stop/restart keeps the
//! port, owned servers clean up after themselves, and servers die with a killed test process.

mod common;

use common::mariadb::MariaDb;
use common::s3::S3Server;
use common::smtp::{self_signed_cert, send_plain, SmtpOptions, SmtpServer};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn unique_names_are_valid_and_distinct() {
    let a = common::unique_name("T_x");
    let b = common::unique_name("T_x");
    assert_ne!(a, b);
    assert!(a.starts_with("t-x-") && a.len() == "t-x-".len() + 8, "{a}");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{a}"
    );
    assert_ne!(common::free_port(), 0);
}

#[test]
fn s3_objects_round_trip() {
    let s3 = S3Server::shared();
    assert_eq!(s3.endpoint(), format!("http://127.0.0.1:{}", s3.port()));
    let bucket = s3.new_bucket();
    assert!(s3.list_keys(&bucket).is_empty());

    let odd_key = "dir/sub dir/a+b&c=d%e.txt";
    s3.put_object(&bucket, "a/one.txt", b"hello");
    s3.put_object(&bucket, odd_key, b"x");
    s3.put_object(&bucket, "empty", b"");
    assert_eq!(
        s3.list_keys(&bucket),
        vec![
            ("a/one.txt".to_string(), 5),
            (odd_key.to_string(), 1),
            ("empty".to_string(), 0)
        ]
    );
    assert_eq!(
        s3.get_object(&bucket, "a/one.txt").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(s3.get_object(&bucket, odd_key).as_deref(), Some(&b"x"[..]));
    assert_eq!(s3.get_object(&bucket, "missing"), None);
    s3.delete_object(&bucket, "empty");
    assert_eq!(s3.list_keys(&bucket).len(), 2);

    // Another bucket on the same shared server is independent.
    let other = s3.new_bucket();
    assert_ne!(other, bucket);
    assert!(s3.list_keys(&other).is_empty());
}

#[test]
fn s3_list_keys_follows_pagination() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    for i in 0..23 {
        s3.put_object(&bucket, &format!("k/{i:02}"), &[0u8; 3]);
    }
    let keys = s3.list_keys_paged(&bucket, 5);
    assert_eq!(keys.len(), 23);
    assert_eq!(keys[0], ("k/00".to_string(), 3));
    assert_eq!(keys[22].0, "k/22");
    assert_eq!(keys, s3.list_keys(&bucket));
}

#[test]
fn s3_multipart_uploads_are_listed_until_completed_or_aborted() {
    let s3 = S3Server::shared();
    let bucket = s3.new_bucket();
    assert!(s3.list_multipart_uploads(&bucket).is_empty());

    let id = s3.create_multipart_upload(&bucket, "dump.sql.zst");
    let part1 = vec![7u8; 5 * 1024 * 1024];
    let e1 = s3.upload_part(&bucket, "dump.sql.zst", &id, 1, &part1);
    let e2 = s3.upload_part(&bucket, "dump.sql.zst", &id, 2, b"tail");
    let stale = s3.create_multipart_upload(&bucket, "stale");
    let mut open = s3.list_multipart_uploads(&bucket);
    open.sort();
    assert_eq!(
        open,
        vec![
            ("dump.sql.zst".to_string(), id.clone()),
            ("stale".to_string(), stale.clone())
        ]
    );
    // Not visible as an object before completion.
    assert!(s3.list_keys(&bucket).is_empty());

    s3.complete_multipart_upload(&bucket, "dump.sql.zst", &id, &[(1, e1), (2, e2)]);
    s3.abort_multipart_upload(&bucket, "stale", &stale);
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
    let size = part1.len() as u64 + 4;
    assert_eq!(
        s3.list_keys(&bucket),
        vec![("dump.sql.zst".to_string(), size)]
    );
    let body = s3
        .get_object(&bucket, "dump.sql.zst")
        .expect("completed object");
    assert_eq!(body.len() as u64, size);
    assert!(body.ends_with(b"\x07tail"));
}

#[test]
fn s3_stop_and_restart_on_the_same_port() {
    let mut s3 = S3Server::start();
    let port = s3.port();
    let first_pid = s3.pid().expect("running");
    let bucket = s3.new_bucket();
    s3.put_object(&bucket, "k", b"v");

    s3.stop();
    assert_eq!(s3.pid(), None);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
    // The stopped server's port is held: nobody else can bind it.
    assert!(
        common::PortReservation::is_held(port),
        "port {port} not held"
    );

    s3.restart();
    assert_eq!(s3.port(), port);
    assert_ne!(s3.pid(), Some(first_pid));
    // moto keeps state in memory only: the bucket is gone, the server works.
    s3.create_bucket(&bucket);
    assert!(s3.list_keys(&bucket).is_empty());
    s3.put_object(&bucket, "k2", b"v2");
    assert_eq!(s3.get_object(&bucket, "k2").as_deref(), Some(&b"v2"[..]));

    let pid = s3.pid().expect("running") as i32;
    drop(s3);
    assert!(!alive(pid), "moto_server {pid} survived drop");
}

#[test]
fn mariadb_create_insert_select() {
    let db = MariaDb::shared();
    let name = db.new_database();
    assert!(name.starts_with("db_"), "{name}");
    db.sql_db(&name, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1,'a'),(2,'b c');");
    assert_eq!(
        db.sql_db(&name, "SELECT id, v FROM t ORDER BY id"),
        "1\ta\n2\tb c\n"
    );
    assert_eq!(
        db.sql(&format!("SELECT COUNT(*) FROM `{name}`.t")).trim(),
        "2"
    );
    let err = db.try_sql("SELECT * FROM no_such_db.t").unwrap_err();
    assert!(err.contains("no_such_db"), "{err}");
    assert!(db.socket().exists());
    assert!(db.datadir().join(&name).is_dir());

    // A password user reaches the server over TCP and has the backup grants.
    let user = common::unique_name("u").replace('-', "_");
    db.create_user(&user, "s3cret'pw");
    db.create_user(&user, "s3cret'pw"); // idempotent
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "-N",
            "-B",
            "-e",
            "SHOW GRANTS; SHOW DATABASES",
        ])
        .arg(format!("-P{}", db.port()))
        .arg(format!("-u{user}"))
        .arg("-ps3cret'pw")
        .output()
        .expect("run mariadb client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("SELECT, RELOAD, PROCESS, SHOW DATABASES, LOCK TABLES"),
        "{text}"
    );
    assert!(
        text.contains("SHOW VIEW") && text.contains("EVENT") && text.contains("TRIGGER"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == name), "{text}");
}

#[test]
fn mariadb_owned_server_survives_kill_and_cleans_up() {
    let mut db = MariaDb::start();
    let name = db.new_database();
    db.sql_db(
        &name,
        "CREATE TABLE t (id INT) ENGINE=InnoDB; INSERT INTO t VALUES (42);",
    );
    let port = db.port();
    db.kill();
    assert!(db.try_sql("SELECT 1").is_err());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    db.restart();
    assert_eq!(db.port(), port);
    assert_eq!(db.sql_db(&name, "SELECT id FROM t").trim(), "42");

    let datadir = db.datadir();
    let pid = db.pid().expect("running") as i32;
    drop(db);
    assert!(!alive(pid), "mariadbd {pid} survived drop");
    assert!(!datadir.exists(), "{} not removed", datadir.display());
}

#[test]
fn smtp_captures_plain_mail_and_keeps_it_across_restart() {
    let mut smtp = SmtpServer::start();
    assert!(smtp.messages().is_empty());
    let msg =
        "From: agent@example.org\nTo: ops@example.org\nSubject: disk almost full\n\nsda1 at 93%\n";
    send_plain(smtp.port(), "agent@example.org", "ops@example.org", msg);
    let got = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: disk almost full"), "{}", got[0]);
    assert!(got[0].contains("sda1 at 93%"), "{}", got[0]);
    let (env, _) = &smtp.messages_with_envelopes()[0];
    assert_eq!(env.mail_from, "agent@example.org");
    assert_eq!(env.rcpt_to, vec!["ops@example.org".to_string()]);
    assert_eq!(smtp.messages_to("OPS@example.org").len(), 1);
    assert!(smtp.messages_to("other@example.org").is_empty());

    let port = smtp.port();
    smtp.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    smtp.restart();
    assert_eq!(smtp.port(), port);
    send_plain(
        port,
        "agent@example.org",
        "ops@example.org",
        "Subject: second\n\nagain\n",
    );
    let got = smtp.wait_for_messages(2, Duration::from_secs(10));
    assert!(
        got[0].contains("disk almost full") && got[1].contains("Subject: second"),
        "{got:?}"
    );
}

#[test]
fn smtp_shared_server_separates_tests_by_recipient() {
    let smtp = SmtpServer::shared();
    let rcpt = format!("{}@example.org", common::unique_name("r"));
    send_plain(
        smtp.port(),
        "a@example.org",
        &rcpt,
        "Subject: mine\n\nbody\n",
    );
    let got = smtp.wait_for_messages_to(&rcpt, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: mine"));
}

#[test]
fn smtp_starttls_and_auth_are_enforced() {
    let certs = common::server_dir("certs");
    let (cert, key) = self_signed_cert(&certs);
    let smtp = SmtpServer::start_with(SmtpOptions {
        starttls_cert: Some((cert, key)),
        auth: Some(("alerts".into(), "pa55".into())),
        ..Default::default()
    });
    let script = r#"
import smtplib, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def attempt(tls, user, pw):
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        s.ehlo()
        if tls: s.starttls(context=ctx); s.ehlo()
        if user: s.login(user, pw)
        s.sendmail("agent@example.org", ["ops@example.org"], "Subject: tls %s %s\r\n\r\nbody\r\n" % (tls, user))
        return "sent"
    except smtplib.SMTPException as e:
        return "refused %s" % getattr(e, "smtp_code", type(e).__name__)
    finally:
        try: s.quit()
        except Exception: pass
print(attempt(False, None, None))
print(attempt(True, None, None))
print(attempt(True, "alerts", "wrong"))
print(attempt(True, "alerts", "pa55"))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(smtp.port().to_string())
        .output()
        .expect("run python3 smtplib client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("refused 530"),
        "no STARTTLS must be refused: {stdout}"
    );
    assert!(
        lines[1].starts_with("refused 530"),
        "no AUTH must be refused: {stdout}"
    );
    assert!(
        lines[2].starts_with("refused 535"),
        "bad password must be refused: {stdout}"
    );
    assert_eq!(lines[3], "sent", "{stdout}");
    let got = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("Subject: tls True alerts"), "{}", got[0]);
    let _ = std::fs::remove_dir_all(certs);
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Runs this very test in a child process that starts servers and then gets SIGKILLed; the
/// servers must die with it (PR_SET_PDEATHSIG), although nothing dropped them.
#[test]
fn servers_die_when_the_test_process_is_killed() {
    if std::env::var_os("HARNESS_SMOKE_CHILD").is_some() {
        let s3 = S3Server::start();
        let smtp = SmtpServer::shared();
        println!("PIDS {} {}", s3.pid().unwrap(), smtp.pid().unwrap());
        std::thread::sleep(Duration::from_secs(120));
        unreachable!("the parent kills this process");
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "servers_die_when_the_test_process_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HARNESS_SMOKE_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("re-run the test binary");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints "test NAME ... " before the test's own output on the same line.
            if let Some(i) = line.find("PIDS ") {
                let pids: Vec<i32> = line[i + 5..]
                    .split(' ')
                    .filter_map(|p| p.parse().ok())
                    .collect();
                let _ = tx.send(pids);
                return;
            }
        }
    });
    let pids = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    if pids.len() != 2 {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(pids.len(), 2, "child did not report its server pids");
    assert!(pids.iter().all(|&p| alive(p)));
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "servers {pids:?} outlived their test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Their directories are left behind; the next harness user sweeps them away.
    let stale = common::harness_base().join(format!("s3-{}-0", child.id()));
    assert!(stale.is_dir(), "{}", stale.display());
    common::sweep_stale_dirs();
    assert!(!stale.exists(), "{} not swept", stale.display());
}

#[test]
fn a_port_whose_server_closed_connections_first_can_be_held_at_once() {
    // What a killed server leaves behind: its side of each open connection in TIME_WAIT on the
    // port for a minute, during which a plain bind of the port fails.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    drop(server_side);
    drop(listener);
    std::thread::sleep(Duration::from_millis(100));
    drop(client);
    std::thread::sleep(Duration::from_millis(100));

    let t0 = Instant::now();
    let held = common::PortReservation::hold("test", port);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(common::PortReservation::is_held(port));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(held);
}
