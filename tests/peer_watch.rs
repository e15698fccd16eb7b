//! Two agents, one bucket (two prefixes): each writes its heartbeat object; agent B's
//! `[[checks.peer]]` on A goes CRIT within `max_age` after A is killed, naming A and the age,
//! and OK again after A restarts; `opsagent watch-peer` says the same from the command line.

mod common;

use common::agent::{agent_table, host_checks_off, opsagent, s3_storage_table, wait_for, Bench};
use common::s3::S3Server;
use opsagent::catalog::Catalog;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

fn start(cfg: &Path) -> Child {
    common::spawn({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_opsagent"));
        c.arg("--config").arg(cfg).arg("run").stderr(Stdio::null());
        c
    })
    .unwrap()
}

fn config(b: &Bench, host: &str, extra: &str) -> PathBuf {
    let s3 = S3Server::shared();
    let text = agent_table(host, &b.path(host), "")
        + &s3_storage_table(s3, &b.bucket, &b.path("s3"))
        + "[checks]\ninterval = \"1s\"\n"
        + &host_checks_off()
        + extra;
    b.write(&format!("{host}.toml"), &text)
}

fn peer_state(b: &Bench) -> Option<(String, String)> {
    let path = b.path("web-02/catalog.sqlite");
    if !path.exists() {
        return None;
    }
    Catalog::open(&path)
        .ok()?
        .check_states()
        .ok()?
        .into_iter()
        .find(|c| c.check == "a")
        .map(|c| (c.state, c.detail))
}

#[test]
fn a_peer_check_sees_the_other_agent_die_and_come_back() {
    let b = Bench::new(S3Server::shared(), &[]);
    std::fs::create_dir(b.path("media")).unwrap();
    let job = format!(
        "[[media]]\nname = \"pics\"\npaths = [\"{}\"]\nschedule = \"@daily\"\n",
        b.path("media").display()
    );
    let a_cfg = config(&b, "web-01", &job);
    let b_cfg = config(
        &b,
        "web-02",
        "[[checks.peer]]\nname = \"a\"\nhost = \"web-01\"\nmax_age = \"4s\"\n",
    );
    let mut a = start(&a_cfg);
    let mut peer = start(&b_cfg);
    wait_for("B sees A alive", Duration::from_secs(30), || {
        peer_state(&b).is_some_and(|(s, d)| s == "OK" && d.contains("web-01: heartbeat"))
    });
    let out = opsagent(
        &b_cfg,
        &["watch-peer", "--host", "web-01", "--max-age", "4s"],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK web-01: heartbeat"));

    let _ = a.kill();
    let _ = a.wait();
    wait_for("B sees A dead", Duration::from_secs(20), || {
        peer_state(&b).is_some_and(|(s, _)| s == "CRIT")
    });
    let (_, detail) = peer_state(&b).unwrap();
    assert!(
        detail.contains("web-01 last wrote its heartbeat") && detail.contains("ago (max 4s)"),
        "{detail}"
    );
    let out = opsagent(
        &b_cfg,
        &["watch-peer", "--host", "web-01", "--max-age", "4s"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CRIT web-01 last wrote"));
    let out = opsagent(&b_cfg, &["watch-peer", "--host", "web-09"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no heartbeat of web-09"));

    let mut a = start(&a_cfg);
    wait_for("B sees A back", Duration::from_secs(30), || {
        peer_state(&b).is_some_and(|(s, _)| s == "OK")
    });
    let _ = a.kill();
    let _ = peer.kill();
    let _ = a.wait();
    let _ = peer.wait();
}
