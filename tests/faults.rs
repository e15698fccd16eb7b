//! The fault table of issue 10, each row against the real MariaDB and S3 (moto) servers and the
//! real `opsagent` binary.
//!
//! Here: S3 stopped mid-upload and for a whole run, MariaDB killed mid-dump, opsagent SIGKILLed
//! mid-backup, the clock jumping back; in `faults/`: two agents on one storage prefix
//! (`owner.rs`), open multipart uploads left by killed runs (`stale.rs`), a full state_dir
//! (`state_full.rs`).
//!
//! Rows covered elsewhere:
//! * config broken while running → tests/daemon.rs `broken_config_is_refused_and_fixed_one_picked_up`
//! * SMTP down, delivered afterwards across a restart → tests/alerts_delivery.rs
//! * one byte flipped in a stored object → tests/restore.rs `in_place_refuses_corruption…`
//! * a dump killed mid-stream commits nothing → tests/mysql_backup.rs
//!   `killed_dump_commits_nothing_and_password_never_on_a_command_line`
//!
//! Not covered here: encryption.

mod common;
#[path = "faults/owner.rs"]
mod owner;
#[path = "faults/stale.rs"]
mod stale;
#[path = "faults/state_full.rs"]
mod state_full;

use common::agent::{host_checks_off, opsagent, Bench as Setup};
use common::mariadb::MariaDb;
use common::s3::S3Server;
use opsagent::catalog::{Catalog, RunRecord, RunStatus};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const PASSWORD: &str = "fault-pw";
/// The secret files besides the S3 one.
const SECRETS: &[(&str, &str)] = &[("mysql", PASSWORD)];

impl Setup {
    /// A config with one job `j` dumping `database` from `db` over TCP; health checks off.
    fn config(&self, s3: &S3Server, db: &MariaDb, database: &str) -> PathBuf {
        self.config_in(s3, db, database, "state")
    }

    /// [`Setup::config`] with its state directory in `state` (another agent, same bucket and
    /// host name: a cloned machine), written to `<state>.toml`.
    fn config_in(&self, s3: &S3Server, db: &MariaDb, database: &str, state: &str) -> PathBuf {
        let mut text = self.head(s3, state, "shutdown_grace = \"2s\"\n");
        text += &host_checks_off();
        text += &format!(
            "[[mysql]]\nname = \"j\"\nschedule = \"30 2 * * *\"\ndatabases = [\"{database}\"]\n\
             host = \"127.0.0.1\"\nport = {}\nuser = \"backup\"\npassword_file = \"{}\"\n",
            db.port(),
            self.path("mysql").display()
        );
        let p = self.path(&format!("{state}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn catalog(&self) -> Catalog {
        Catalog::open(&self.path("state/catalog.sqlite")).unwrap()
    }

    fn runs(&self) -> Vec<RunRecord> {
        self.catalog().recent_runs(100).unwrap()
    }
}

fn spawn_backup(config: &Path, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsagent"));
    cmd.arg("--config")
        .arg(config)
        .arg("backup")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    common::spawn(cmd).unwrap()
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

/// `opsagent snapshots --json [--refresh]` as a JSON array.
fn snapshots(config: &Path, refresh: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["snapshots", "--json"];
    if refresh {
        args.push("--refresh");
    }
    let out = opsagent(config, &args);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn manifests(s3: &S3Server, bucket: &str) -> Vec<String> {
    s3.list_keys(bucket)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("/snapshots/"))
        .collect()
}

/// A database of `rows` KiB of incompressible rows, so that a dump takes a while.
fn big_database(db: &MariaDb, rows: u32) -> String {
    let name = db.new_database();
    db.sql_db(
        &name,
        &format!(
            "CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, b BLOB) ENGINE=InnoDB;\
             INSERT INTO big (b) SELECT RANDOM_BYTES(1000) FROM seq_1_to_{rows};"
        ),
    );
    name
}

/// One ~20 MiB database on the shared server, made once for the rows that need a long dump.
fn shared_big() -> &'static str {
    static BIG: OnceLock<String> = OnceLock::new();
    BIG.get_or_init(|| {
        let db = MariaDb::shared();
        db.create_user("backup", PASSWORD);
        big_database(db, 20_000)
    })
}

/// Waits until `cond` holds, failing if `child` exits first or `within` passes.
fn wait_while_running(
    child: &mut Child,
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended ({status}) before {what}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of dump tools whose parent is `parent`.
fn dump_children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        let comm = stat
            .split_once(" (")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(c, _)| c);
        if ppid == Some(parent) && comm.is_some_and(|c| c.contains("dump")) {
            pids.push(pid);
        }
    }
    pids
}

fn assert_no_negative_durations(setup: &Setup, cfg: &Path) {
    for r in setup.runs() {
        let end = r.ended_at.unwrap_or_else(|| panic!("run not ended: {r:?}"));
        assert!(end >= r.started_at, "run ends before it starts: {r:?}");
    }
    for s in snapshots(cfg, false) {
        let t = |k: &str| chrono::DateTime::parse_from_rfc3339(s[k].as_str().unwrap()).unwrap();
        assert!(
            t("finished_at") >= t("started_at"),
            "snapshot ends before it starts: {s}"
        );
    }
}

/// Starts `opsagent run`, waits for its first `scheduled` log line, stops it with SIGTERM
/// (it must exit 0) and returns its log.
fn daemon_until_scheduled(config: &Path, envs: &[(&str, String)]) -> String {
    daemon_until(config, envs, "scheduled")
}

/// Starts `opsagent run`, waits for a log line containing `marker`, stops it with SIGTERM (it
/// must exit 0) and returns its log.
fn daemon_until(config: &Path, envs: &[(&str, String)], marker: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsagent"));
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env("OPSAGENT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut daemon = common::spawn(cmd).unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (l, stderr) = (log.clone(), daemon.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut g = l.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.lock().unwrap().contains(marker) {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!(
                "no `{marker}` from the daemon; log:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    // Let the reader thread drain the pipe.
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{log}");
    log
}

fn faketime_lib() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libfaketime (run scripts/install-test-deps)")
}

#[test]
fn s3_stopped_mid_upload_and_back_after_10s_completes_or_fails_cleanly() {
    let db = MariaDb::shared();
    let big = shared_big();
    let mut s3 = S3Server::start();
    let setup = Setup::new(&s3, SECRETS);
    let cfg = setup.config(&s3, db, big);
    let mut child = spawn_backup(&cfg, &[]);
    wait_while_running(
        &mut child,
        "a multipart upload opened",
        Duration::from_secs(60),
        || !s3.list_multipart_uploads(&setup.bucket).is_empty(),
    );
    s3.stop();
    std::thread::sleep(Duration::from_secs(10));
    s3.restart();
    // moto starts empty: the bucket comes back, the open upload does not.
    s3.create_bucket(&setup.bucket);
    let out = child.wait_with_output().unwrap();
    let runs = setup.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    eprintln!("outcome: {:?} {:?}", runs[0].status, runs[0].error);
    match out.status.code() {
        Some(0) => {
            // Completed: one committed, whole snapshot.
            assert_eq!(runs[0].status, RunStatus::Success, "{runs:?}");
            let listed = snapshots(&cfg, true);
            assert_eq!(listed.len(), 1, "{listed:?}");
            let keys = s3.list_keys(&setup.bucket);
            let dump = keys.iter().find(|(k, _)| k.ends_with(".sql.zst")).unwrap();
            assert_eq!(
                Some(dump.1),
                listed[0]["stored_size"].as_u64(),
                "{listed:?}"
            );
            assert_eq!(manifests(&s3, &setup.bucket).len(), 1);
        }
        Some(1) => {
            // Failed cleanly: nothing committed, the failure recorded and explained.
            assert_eq!(runs[0].status, RunStatus::Failed, "{runs:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(big) && err.contains(&setup.bucket),
                "{}",
                text(&out)
            );
            assert_eq!(manifests(&s3, &setup.bucket), Vec::<String>::new());
            assert_eq!(snapshots(&cfg, true), Vec::<serde_json::Value>::new());
            assert_eq!(snapshots(&cfg, false), Vec::<serde_json::Value>::new());
        }
        _ => panic!("neither success nor a clean failure: {}", text(&out)),
    }
    assert_eq!(s3.list_multipart_uploads(&setup.bucket), vec![]);
}

#[test]
fn s3_stopped_for_the_whole_run_fails_naming_endpoint_and_bucket() {
    let db = MariaDb::shared();
    db.create_user("backup", PASSWORD);
    let mut s3 = S3Server::start();
    let setup = Setup::new(&s3, SECRETS);
    let name = db.new_database();
    db.sql_db(&name, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    let cfg = setup.config(&s3, db, &name);
    s3.stop();
    let out = opsagent(&cfg, &["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // It fails at its first request, the owner check, before dumping anything.
    for needle in [
        s3.endpoint().as_str(),
        setup.bucket.as_str(),
        "owner of the storage prefix",
        "j: FAILED",
    ] {
        assert!(err.contains(needle), "`{needle}` missing from:\n{err}");
    }
    let runs = setup.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains(&setup.bucket),
        "{runs:?}"
    );
    // The failed run is what the alerts engine turns into `backup-run:j`.
    let status = opsagent(&cfg, &["status", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&status)));
    assert_eq!(v["jobs"][0]["job"], "j", "{v}");
    assert_eq!(v["jobs"][0]["last_backup"]["status"], "failed", "{v}");
    assert!(v["jobs"][0]["last_good_backup"].is_null(), "{v}");
    assert_eq!(snapshots(&cfg, false), Vec::<serde_json::Value>::new());
    s3.restart();
}

#[test]
fn mariadb_killed_mid_dump_fails_and_commits_nothing() {
    let mut db = MariaDb::start();
    db.create_user("backup", PASSWORD);
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, SECRETS);
    let name = big_database(&db, 20_000);
    let cfg = setup.config(s3, &db, &name);
    let mut child = spawn_backup(&cfg, &[]);
    let pid = child.id();
    wait_while_running(
        &mut child,
        "the dump started",
        Duration::from_secs(60),
        || !dump_children(pid).is_empty(),
    );
    db.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&name) && err.contains("127.0.0.1"), "{err}");
    let runs = setup.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Failed, "{runs:?}");
    assert!(
        runs[0].error.as_deref().unwrap_or("").contains(&name),
        "{runs:?}"
    );
    let keys: Vec<String> = s3
        .list_keys(&setup.bucket)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["web-01/opsagent-owner.json".to_string()]);
    assert_eq!(s3.list_multipart_uploads(&setup.bucket), vec![]);
    assert_eq!(snapshots(&cfg, true), Vec::<serde_json::Value>::new());
}

#[test]
fn opsagent_sigkilled_mid_backup_is_marked_interrupted_and_next_run_succeeds() {
    let db = MariaDb::shared();
    let big = shared_big();
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, SECRETS);
    let cfg = setup.config(s3, db, big);
    let mut child = spawn_backup(&cfg, &[]);
    wait_while_running(
        &mut child,
        "a multipart upload opened",
        Duration::from_secs(60),
        || !s3.list_multipart_uploads(&setup.bucket).is_empty(),
    );
    let pid = child.id();
    let dumps = dump_children(pid);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for d in dumps {
        // The dump tool would die of SIGPIPE on its next write; do not wait for it.
        let _ = Command::new("kill")
            .args(["-KILL", &d.to_string()])
            .status();
    }
    assert_eq!(setup.runs()[0].status, RunStatus::Running);
    assert_eq!(manifests(s3, &setup.bucket), Vec::<String>::new());

    // The daemon repairs the stale run at start.
    let log = daemon_until_scheduled(&cfg, &[]);
    assert!(log.contains("marked `interrupted`"), "{log}");
    let runs = setup.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Interrupted, "{runs:?}");
    assert!(runs[0].ended_at.unwrap() >= runs[0].started_at);
    assert_eq!(snapshots(&cfg, true), Vec::<serde_json::Value>::new());
    assert_eq!(manifests(s3, &setup.bucket), Vec::<String>::new());
    assert!(
        !s3.list_keys(&setup.bucket)
            .iter()
            .any(|(k, _)| k.ends_with(".sql.zst")),
        "an incomplete dump became visible"
    );
    // Its open upload is aborted by prune (faults/stale.rs has the details).
    assert_eq!(s3.list_multipart_uploads(&setup.bucket).len(), 1);
    let out = opsagent(&cfg, &["prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("aborted stale upload mysql/j/"),
        "{}",
        text(&out)
    );
    assert_eq!(s3.list_multipart_uploads(&setup.bucket), vec![]);

    // The next backup succeeds and is the only snapshot.
    let out = opsagent(&cfg, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshots(&cfg, true).len(), 1);
    let runs = setup.runs();
    assert_eq!(
        runs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![RunStatus::Success, RunStatus::Interrupted]
    );
}

#[test]
fn clock_jumping_back_an_hour_gives_no_negative_durations_nor_duplicates() {
    let db = MariaDb::shared();
    let big = shared_big();
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, SECRETS);
    let cfg = setup.config(s3, db, big);
    // libfaketime reads the offset from a file (uncached), so it can change mid-run.
    let lib = faketime_lib();
    let offset = setup.path("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let envs = [
        ("LD_PRELOAD", lib.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
        ("DONT_FAKE_MONOTONIC", "1".to_string()),
    ];
    // 1. A run at the real time.
    let out = opsagent(&cfg, &["backup"]);
    assert!(out.status.success(), "{}", text(&out));
    // 2. A run during which the clock jumps back an hour.
    let mut child = spawn_backup(&cfg, &envs);
    wait_while_running(
        &mut child,
        "a multipart upload opened",
        Duration::from_secs(60),
        || !s3.list_multipart_uploads(&setup.bucket).is_empty(),
    );
    std::fs::write(&offset, "-3600\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // 3. A run an hour behind, before the first one.
    let behind = [
        ("LD_PRELOAD", lib.to_string()),
        ("FAKETIME", "-3600".to_string()),
        ("DONT_FAKE_MONOTONIC", "1".to_string()),
    ];
    let out = spawn_backup(&cfg, &behind).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let runs = setup.runs();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Success),
        "{runs:?}"
    );
    assert_no_negative_durations(&setup, &cfg);
    let mut ids: Vec<String> = snapshots(&cfg, true)
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "duplicate snapshot ids");
    assert_no_negative_durations(&setup, &cfg);
}

#[test]
fn clock_back_an_hour_across_a_daemon_restart_does_not_repeat_the_slot() {
    let db = MariaDb::shared();
    db.create_user("backup", PASSWORD);
    let s3 = S3Server::shared();
    let setup = Setup::new(s3, SECRETS);
    let name = db.new_database();
    db.sql_db(&name, "CREATE TABLE t (id INT); INSERT INTO t VALUES (1);");
    let cfg = setup.config(s3, db, &name);
    let at = |t: &str| {
        vec![
            ("LD_PRELOAD", faketime_lib().to_string()),
            ("FAKETIME", format!("@{t}")),
        ]
    };
    // The 02:30 slot is taken…
    let out = spawn_backup(&cfg, &at("2026-11-23 02:30:01"))
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // …then the clock goes back an hour and the daemon starts: 02:30 today must not run again.
    let log = daemon_until_scheduled(&cfg, &at("2026-11-23 01:35:00"));
    let line = log
        .lines()
        .find(|l| l.contains("scheduled") && l.contains("job=j"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("2026-11-24 02:30"), "{line}");
    assert!(!line.contains("catch_up=true"), "{line}");
    assert_eq!(setup.runs().len(), 1);
}
