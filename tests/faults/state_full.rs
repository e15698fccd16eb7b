//! Row "state_dir filesystem full": `state_dir` on a 3 MiB tmpfs that the test fills up while
//! the daemon runs. A check that fails meanwhile cannot be stored; the daemon keeps running,
//! keeps the event, and once space returns the alert is mailed through the outbox; the catalog
//! passes `PRAGMA integrity_check`. The failure is logged once (then every 10 minutes), not every
//! round, and its end is logged once. Mounting needs CAP_SYS_ADMIN: without it the test says so
//! and returns.

use super::*;
use common::smtp::SmtpServer;
use std::io::Write;
use std::net::TcpListener;

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(text(&out));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 16 << 10];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    n
}

fn wait_log(log: &Path, within: Duration, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            t0.elapsed() < within,
            "no `{what}` within {within:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn full_state_dir_keeps_the_daemon_running_and_the_alert_comes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _tmpfs = match Tmpfs::mount(&state, "3m") {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs for state_dir here (needs CAP_SYS_ADMIN): {e}"
            );
            return;
        }
    };
    let smtp = SmtpServer::shared();
    let rcpt = format!("{}@example.com", common::unique_name("full"));
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = api.local_addr().unwrap().port();
    let mut cfg = format!(
        "[agent]\nhostname = \"web-01\"\nstate_dir = \"{}\"\ntimezone = \"UTC\"\nshutdown_grace = \"2s\"\n\
         [storage]\ntype = \"local\"\npath = \"{}\"\n\
         [alerts]\ngroup_wait = \"200ms\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n\
         [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
         from = \"opsagent@web-01.example.com\"\nto = [\"{rcpt}\"]\ntimeout = \"5s\"\n\
         [checks]\ninterval = \"1s\"\ntimeout = \"1s\"\n\
         [[checks.tcp]]\nname = \"api\"\naddress = \"127.0.0.1:{port}\"\n",
        state.display(),
        dir.path().join("backups").display(),
        smtp.port()
    );
    for k in ["cpu", "load", "memory", "swap", "disk"] {
        cfg += &format!("[checks.{k}]\nenabled = false\n");
    }
    let cfg_path = dir.path().join("opsagent.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(&cfg_path)
        .arg("run")
        .env("OPSAGENT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let cat = Catalog::open(&state.join("catalog.sqlite")).unwrap();
    let t0 = Instant::now();
    while !cat
        .check_states()
        .unwrap()
        .iter()
        .any(|c| c.check.contains("api") && c.state == "OK")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Full: the check fails now, and nothing can be written.
    let filler = state.join("filler");
    let filled = fill(&filler);
    eprintln!("filled state_dir with {filled} bytes");
    drop(api);
    wait_log(
        &log,
        Duration::from_secs(20),
        "cannot store check states and events",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon died:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        smtp.messages_to(&rcpt).is_empty(),
        "a mail went out while the catalog was full"
    );

    // Space returns: the kept event becomes an alert, queued in the outbox and mailed.
    std::fs::remove_file(&filler).unwrap();
    let t0 = Instant::now();
    while smtp.messages_to(&rcpt).is_empty() {
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no mail after space returned:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mails = smtp.messages_to(&rcpt);
    assert!(
        mails[0].contains("CRIT") && mails[0].contains("api"),
        "{}",
        mails[0]
    );
    let t0 = Instant::now();
    while !cat.outbox(None).unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the outbox did not empty"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = rustix::process::Pid::from_raw(daemon.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = daemon.wait().unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "daemon exit {status}:\n{log_text}");
    // Logged once while it lasted (a round a second), not once a round; then the recovery.
    let full = log_text
        .matches("cannot store check states and events")
        .count();
    assert_eq!(full, 1, "rate-limited:\n{log_text}");
    // One outage, one end: an empty round (the host checks are off here) must not end it
    // early (it did once: the next failure was logged again as a new outage).
    let back = log_text
        .matches("check states and events are stored again")
        .count();
    assert_eq!(back, 1, "one recovery:\n{log_text}");
    // …and that one outage spanned several rounds (the line is not logged once per round).
    let rounds: u64 = log_text
        .split("failed_rounds=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(rounds >= 2, "failed_rounds={rounds}:\n{log_text}");
    assert_eq!(cat.integrity_check().unwrap(), "ok");
    assert_eq!(smtp.messages_to(&rcpt).len(), 1, "mailed twice");
    drop(cat);
}
