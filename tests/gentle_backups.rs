//! Gentle backups (issue 20, bandwidth and IO limits) against the real S3 server and MariaDB:
//! `max_upload_rate = "10 MiB/s"` makes a 200 MiB backup take 20 s ± 10 % while the same backup
//! without it is at least 3 × faster; the dump tool runs in IO class idle at nice 19 and the
//! media readers in IO class idle and the CPU idle policy;
//! `pause_when` waits its bound on a busy CPU, then runs, and says so; bad rates are
//! configuration errors at their `file:line:col`; the example config's keys load.
//!
//! The timed tests take a lock, so no other test of this binary loads the machine meanwhile.

mod common;

use common::agent::{check_config_fails, opsagent, Bench};
use common::mariadb::MariaDb;
use common::s3::S3Server;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Held by the tests whose timing another test running at once would disturb.
static TIMED: Mutex<()> = Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|p| p.into_inner())
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

/// `n` files of `size` bytes that neither compress nor dedup (xorshift, a seed per file).
fn random_files(dir: &Path, n: usize, size: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..n {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (f as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut data = Vec::with_capacity(size);
        while data.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(dir.join(format!("f{f:03}.bin")), data).unwrap();
    }
}

/// A config backing `src` up as media job `up` into `bucket`, with `storage_extra` in
/// `[storage]` and `agent_extra` in `[agent]`.
fn media_config(
    b: &Bench,
    s3: &S3Server,
    bucket: &str,
    agent_extra: &str,
    storage_extra: &str,
) -> PathBuf {
    let text = format!(
        "{}{storage_extra}\n[[media]]\nname = \"up\"\npaths = [\"{}\"]\nschedule = \"@daily\"\n\
         anomaly_drop = \"off\"\n",
        common::agent::agent_table("web-01", &b.path(&format!("state-{bucket}")), agent_extra)
            + &common::agent::s3_storage_table(s3, bucket, &b.path("s3")),
        b.path("src").display(),
    );
    b.write(&format!("{bucket}.toml"), &text)
}

/// Runs `opsagent backup` on `cfg` (logging at info) and returns its output and wall time.
fn backup(cfg: &Path) -> (Output, f64) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .env("OPSAGENT_LOG", "info")
        .arg("--config")
        .arg(cfg)
        .arg("backup")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    (out, secs)
}

#[test]
fn upload_rate_limit_paces_a_200_mib_backup_to_20_seconds() {
    let _t = timed();
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    random_files(&b.path("src"), 20, 10 * MIB);
    // Each run into its own bucket: nothing is deduplicated against an earlier one.
    let free = media_config(&b, s3, &s3.new_bucket(), "", "");
    let limited_bucket = s3.new_bucket();
    let limited = media_config(
        &b,
        s3,
        &limited_bucket,
        "",
        "max_upload_rate = \"10 MiB/s\"\n",
    );
    let (_, mut fast) = backup(&free);
    let (_, slow) = backup(&limited);
    // Other work on a shared machine slows the unlimited run, never the paced one (10 MiB/s is
    // far below what the machine can do): the fastest of up to three unlimited runs, each into
    // a fresh bucket, is what the machine can do without the limit.
    for _ in 0..2 {
        if fast * 3.0 <= slow {
            break;
        }
        let again = media_config(&b, s3, &s3.new_bucket(), "", "");
        fast = fast.min(backup(&again).1);
    }
    let stored: u64 = s3.list_keys(&limited_bucket).iter().map(|(_, n)| n).sum();
    eprintln!(
        "200 MiB media backup to S3: unlimited {fast:.2} s, max_upload_rate = 10 MiB/s {slow:.2} s \
         ({:.1} MiB stored, {:.2} MiB/s); load {}",
        stored as f64 / MIB as f64,
        stored as f64 / MIB as f64 / slow,
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    assert!(stored >= 200 * MIB as u64, "{stored} bytes stored");
    assert!(
        (18.0..=22.0).contains(&slow),
        "limited backup took {slow:.2} s, not 20 s ± 10 %"
    );
    assert!(
        fast * 3.0 <= slow,
        "unlimited {fast:.2} s is not 3 × faster than {slow:.2} s"
    );
}

/// What the network sees of a limited upload to S3 is a steady stream at the rate, not each
/// 8 MiB part at line speed: a relay between the agent and the server records the bytes.
#[test]
fn a_limited_upload_goes_on_the_wire_at_the_rate_not_in_bursts() {
    let _t = timed();
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    random_files(&b.path("src"), 4, 10 * MIB);
    let meter = common::wire_meter::WireMeter::start(s3.port());
    let bucket = s3.new_bucket();
    let cfg = media_config(&b, s3, &bucket, "", "max_upload_rate = \"10 MiB/s\"\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace(&s3.endpoint(), &meter.endpoint())).unwrap();
    let (_, secs) = backup(&cfg);
    // The busiest tenth of a second after the first: the rate's share (1 MiB), plus the one
    // burst the bucket allows after a pause (1 MiB), plus headers and a piece. Sent as whole
    // parts, a tenth of a second would carry most of a part (8 MiB).
    let (busiest, at) = meter.busiest(0.1, 0.2);
    eprintln!(
        "40 MiB at 10 MiB/s through the relay: {secs:.2} s, {:.1} MiB sent; busiest 0.1 s: \
         {:.2} MiB at {at:.2} s",
        meter.total() as f64 / MIB as f64,
        busiest as f64 / MIB as f64
    );
    assert!(meter.total() >= 40 * MIB, "{} bytes sent", meter.total());
    assert!(
        busiest <= 2 * MIB + MIB / 4,
        "{busiest} bytes went within 0.1 s (at {at:.2} s): the upload was not paced on the wire"
    );
    assert!(
        (3.6..=5.5).contains(&secs),
        "40 MiB at 10 MiB/s took {secs:.2} s"
    );
}

/// (name, policy, nice) of every thread of `pid` seen while it runs, polled every 5 ms.
fn thread_priorities(agent: &mut std::process::Child) -> Vec<(String, String, String)> {
    let mut seen = Vec::new();
    while agent.try_wait().unwrap().is_none() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", agent.id()));
        for t in tasks.into_iter().flatten().flatten() {
            let tid: u32 = t.file_name().to_string_lossy().parse().unwrap();
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if let (Some(policy), Some(nice)) = (stat_field(tid, 41), stat_field(tid, 19)) {
                let thread = (name.trim_end().to_string(), policy, nice);
                if !seen.contains(&thread) {
                    seen.push(thread);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

#[test]
fn the_job_and_its_readers_run_in_the_cpu_idle_policy_by_default_and_at_a_nice_value_when_set() {
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    random_files(&b.path("src"), 4, 8 * MIB);
    for (agent_extra, want) in [("", ("5", "0")), ("nice = 7\n", ("0", "7"))] {
        let rate = "max_upload_rate = \"16 MiB/s\"\n";
        let cfg = media_config(&b, s3, &s3.new_bucket(), agent_extra, rate);
        let mut agent = Command::new(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&cfg)
            .arg("backup")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = thread_priorities(&mut agent);
        assert!(agent.wait().unwrap().success());
        eprintln!("{agent_extra:?}: (name, policy, nice) of the agent's threads: {seen:?}");
        // Some thread was seen whose name passes `named`, and each such one ran at `want`.
        let all_at = |named: &dyn Fn(&str) -> bool, want: (&str, &str), what: &str| {
            let threads: Vec<_> = seen.iter().filter(|t| named(&t.0)).collect();
            assert!(!threads.is_empty(), "no {what} thread: {seen:?}");
            let at = |t: &&(String, String, String)| (t.1.as_str(), t.2.as_str()) == want;
            assert!(threads.iter().all(at), "{what} not at {want:?}: {seen:?}");
        };
        // The job's own runtime (its storage writes and uploads' sends) and its readers.
        all_at(&|n| n == "opsagent-job", want, "job runtime");
        all_at(&|n| n == "opsagent-read", want, "reader");
        // The rest of the agent (its runtime, the health checks of a daemon) runs as started.
        all_at(&|n| n.starts_with("tokio-"), ("0", "0"), "main runtime");
        if agent_extra.is_empty() {
            assert!(!seen.iter().any(|t| t.2 != "0"), "{seen:?}");
        } else {
            assert!(!seen.iter().any(|t| t.1 == "5"), "{seen:?}");
        }
    }
}

/// The child of `pid` that is the dump itself (not the agent's `--version` probe of the tool).
fn dump_child(pid: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let ppid = stat_field(child, 4);
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        let dumping = String::from_utf8_lossy(&cmdline).contains("--single-transaction");
        if ppid == Some(pid.to_string()) && dumping {
            return Some(child);
        }
    }
    None
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n - 3).map(str::to_string)
}

#[test]
fn the_dump_tool_runs_in_io_class_idle_at_nice_19() {
    let _t = timed();
    let db = MariaDb::shared();
    let s3 = S3Server::shared();
    db.create_user("backup", "gentle-pw");
    let b = Bench::new(s3, &[("mysql", "gentle-pw")]);
    let name = db.new_database();
    // 16 MiB of random bytes: about 16 MiB compressed (hex), uploaded at 2 MiB/s, so the dump
    // tool is held by back-pressure for seconds.
    db.sql_db(
        &name,
        "CREATE TABLE t (id INT PRIMARY KEY, b BLOB); \
         INSERT INTO t SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_16384;",
    );
    let text_cfg = b.head(s3, "state", "")
        + "max_upload_rate = \"2 MiB/s\"\n"
        + &format!(
            "[[mysql]]\nname = \"main\"\ndatabases = [\"{name}\"]\nhost = \"127.0.0.1\"\nport = {}\n\
             user = \"backup\"\npassword_file = \"{}\"\nschedule = \"@daily\"\nverify_schedule = \"off\"\n",
            db.port(),
            b.path("mysql").display()
        );
    let cfg = b.write("dump.toml", &text_cfg);
    let mut agent = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(&cfg)
        .args(["backup", "main"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let dump = loop {
        if let Some(pid) = dump_child(agent.id()) {
            break pid;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no dump tool seen");
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the backup ended before its dump was seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: a plain syscall (IOPRIO_WHO_PROCESS = 1).
    let ioprio = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, dump as libc::c_int) };
    let nice = stat_field(dump, 19);
    let policy = stat_field(dump, 41);
    let ionice = Command::new("ionice")
        .arg("-p")
        .arg(dump.to_string())
        .output();
    let ionice = ionice.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("dump tool {dump}: ioprio {ioprio:#x}, nice {nice:?}, ionice says {ionice:?}");
    assert_eq!(ioprio, 3 << 13, "IO class idle (IOPRIO_CLASS_IDLE << 13)");
    // `nice = "idle"` (the default) gives a child nice 19, not the idle policy (src/priority.rs).
    assert_eq!(nice.as_deref(), Some("19"));
    assert_eq!(policy.as_deref(), Some("0"), "SCHED_OTHER");
    if let Ok(said) = ionice {
        assert_eq!(said, "idle");
    }
}

#[test]
fn pause_when_waits_its_bound_on_a_busy_cpu_then_runs() {
    let _t = timed();
    let s3 = S3Server::shared();
    let b = Bench::new(s3, &[]);
    random_files(&b.path("src"), 1, 1024);
    let pause = "pause_when = { cpu_above = \"0%\", max_wait = \"3s\" }\n";
    let cfg = media_config(&b, s3, &b.bucket, pause, "");
    // Something is always busy on a test machine; a spinning thread makes sure.
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let (out, secs) = backup(&cfg);
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    let said = text(&out);
    eprintln!("pause_when: the backup took {secs:.2} s");
    assert!(said.contains("waiting: CPU"), "{said}");
    assert!(said.contains("> 0%"), "{said}");
    assert!(said.contains("after 3s: starting anyway"), "{said}");
    assert!(said.contains("up: ok, 1 snapshot(s)"), "{said}");
    assert!((3.0..30.0).contains(&secs), "took {secs:.2} s");
}

#[test]
fn bad_rates_and_priorities_are_errors_at_their_key() {
    for (line, says, hint) in [
        (
            "max_upload_rate = \"0 MiB/s\"",
            "would stop every transfer",
            "leave the key out",
        ),
        (
            "max_upload_rate = \"-5 MiB/s\"",
            "is negative",
            "\"20 MiB/s\"",
        ),
        ("max_upload_rate = 10", "`10` has no unit", "\"10 MiB/s\"?"),
        (
            "max_download_rate = \"10 MiB\"",
            "is not a rate",
            "\"500 KiB/s\"",
        ),
        (
            "max_upload_rate = \"10 Mb/s\"",
            "unknown unit `Mb`",
            "did you mean `MB`?",
        ),
    ] {
        let (_dir, cfg, said) = check_config_fails(&format!("{line}\n"));
        let at = format!("{}:6:", cfg.display());
        assert!(said.contains(&at), "{line}: no {at} in {said}");
        assert!(said.contains(says) && said.contains(hint), "{line}: {said}");
    }
    let (_dir, cfg, said) = check_config_fails(
        "[storage.usb]\ntype = \"local\"\npath = \"{dir}/usb\"\nmax_upload_rate = \"fast\"\n",
    );
    assert!(said.contains(&format!("{}:9:", cfg.display())), "{said}");
    let agent =
        "[agent]\nio_priority = \"idel\"\nnice = 25\npause_when = { cpu_above = \"100%\" }\n";
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    std::fs::write(
        &cfg,
        format!(
            "{agent}[storage]\ntype = \"local\"\npath = \"{}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let said = text(&opsagent(&cfg, &["check-config"]));
    for (at, what) in [
        (2, "did you mean \"idle\"?"),
        (3, "nice 25 is out of range"),
        (4, "is not a share below 100%"),
    ] {
        assert!(
            said.contains(&format!("{}:{at}:", cfg.display())) && said.contains(what),
            "{what}: {said}"
        );
    }
    let body = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, body.replace("nice = 25", "nice = \"low\"")).unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("{}:3:", cfg.display()))
            && said.contains("nice \"low\" is not a CPU priority")
            && said.contains("or \"idle\""),
        "{said}"
    );
}

#[test]
fn the_example_configs_gentle_keys_load() {
    let example = include_str!("../config/opsagent.example.toml");
    let keys = [
        "io_priority",
        "nice",
        "pause_when",
        "max_upload_rate",
        "max_download_rate",
    ];
    let wanted = |key: &str| {
        let line = example
            .lines()
            .find(|l| l.starts_with(&format!("# {key} = ")))
            .unwrap_or_else(|| panic!("no commented `{key}` in the example config"));
        line.trim_start_matches("# ").to_string() + "\n"
    };
    let agent: String = keys[..3].iter().map(|k| wanted(k)).collect();
    let storage: String = keys[3..].iter().map(|k| wanted(k)).collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let d = dir.path().display();
    std::fs::write(&cfg, format!("[agent]\nstate_dir = \"{d}/state\"\n{agent}[storage]\ntype = \"local\"\npath = \"{d}/b\"\n{storage}")).unwrap();
    let out = opsagent(&cfg, &["check-config"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("; uploads ≤ 20.0 MiB/s; downloads ≤ 50.0 MiB/s"),
        "{said}"
    );
    assert!(
        said.contains("at IO class idle, CPU idle (SCHED_IDLE; the dump tool at nice 19); backups wait while CPU > 85% (at most 10m)"),
        "{said}"
    );
}
