//! `[metrics] listen`: the daemon serves Prometheus text with every check's state and value.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn daemon_serves_check_states_to_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let down_port = common::free_port();
    let port = common::free_port();
    let cfg = dir.path().join("o.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [[checks.tcp]]\nname = \"up\"\naddress = \"127.0.0.1:{up_port}\"\n[[checks.tcp]]\nname = \"down\"\naddress = \"127.0.0.1:{down_port}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = common::spawn({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent"));
        c.arg("--config")
            .arg(&cfg)
            .arg("run")
            .stderr(std::process::Stdio::null());
        c
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some(b) = get(port, "/metrics") {
            if b.contains("check=\"down\"") && b.contains("check=\"up\"") {
                break b;
            }
        }
        assert!(Instant::now() < deadline, "no check states on /metrics");
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        body.starts_with("HTTP/1.1 200 OK") && body.contains("text/plain; version=0.0.4"),
        "{body}"
    );
    let line = |check: &str| {
        body.lines()
            .find(|l| {
                l.starts_with("opsagent_check_state{") && l.contains(&format!("check=\"{check}\""))
            })
            .map(str::to_string)
    };
    assert!(line("up").unwrap().ends_with(" 0.0"), "{body}");
    assert!(line("down").unwrap().ends_with(" 2.0"), "{body}");
    assert!(body.contains("# HELP opsagent_check_state"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    drop(up);
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// 500 connections to the metrics port of a daemon limited to 128 open files: it serves a few
/// at a time and backs off on accept errors (it accepted without limit and, out of file
/// descriptors, looped hot at 100 % CPU); its checks keep running, and scrapes are answered
/// again once the flood is gone.
#[test]
fn a_connection_flood_under_a_low_file_limit_neither_spins_nor_stops_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let port = common::free_port();
    let cfg = dir.path().join("o.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [checks]\ninterval = \"1s\"\n[[checks.tcp]]\nname = \"up\"\naddress = \"127.0.0.1:{up_port}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut child = common::spawn({
        let mut c = std::process::Command::new("sh");
        c.args(["-c", "ulimit -n 128 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .stderr(std::process::Stdio::null());
        c
    })
    .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/metrics").is_none_or(|b| !b.contains("check=\"up\"")) {
        assert!(Instant::now() < deadline, "no metrics");
        std::thread::sleep(Duration::from_millis(200));
    }
    let catalog =
        opsagent::catalog::Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let last_check = || {
        catalog
            .check_states()
            .unwrap()
            .into_iter()
            .find(|c| c.check == "up")
            .map(|c| c.updated_at)
    };
    // 500 attempts from 10 threads; past the listen backlog a connect times out (the kernel
    // drops the SYN), which is the flood's problem, not the daemon's.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let flood: Vec<TcpStream> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                (0..50)
                    .filter_map(|_| {
                        TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(flood.len() > 100, "{} connections", flood.len());
    let before = last_check();
    let ticks = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(4));
    let used = cpu_ticks(pid) - ticks;
    let after = last_check();
    // Clock ticks are 1/100 s: 5 % of 4 s is 20.
    assert!(
        used < 20,
        "the daemon used {used} ticks in 4 s under the flood"
    );
    assert!(
        after > before,
        "no check ran during the flood: {before:?} → {after:?}"
    );
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/metrics").is_none_or(|b| !b.contains("check=\"up\"")) {
        assert!(
            Instant::now() < deadline,
            "scrapes not answered after the flood"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(up);
}
