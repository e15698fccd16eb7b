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
