//! `opsagent status` as a real process: exit codes 0/1/2 from the check states in the catalog,
//! the text screen and `--json`, the last backup and drill of each job.

use chrono::Utc;
use opsagent::catalog::{Catalog, CheckStateRow, RunStatus};
use std::path::Path;
use std::process::Command;

fn setup(dir: &Path) -> (std::path::PathBuf, Catalog) {
    let cfg = dir.join("opsagent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nhostname = \"web-01\"\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n[[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nport = 1\nschedule = \"30 2 * * *\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let cat = Catalog::open(&dir.join("state/catalog.sqlite")).unwrap();
    (cfg, cat)
}

fn row(name: &str, state: &str) -> CheckStateRow {
    let now = Utc::now();
    CheckStateRow {
        check: name.into(),
        kind: if name == "cpu" { "cpu" } else { "tcp" }.into(),
        state: state.into(),
        since: now - chrono::Duration::minutes(5),
        updated_at: now,
        value: Some(42.0),
        threshold: None,
        detail: format!("{name} detail"),
        flapping: false,
    }
}

fn status(cfg: &Path, json: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsagent"));
    cmd.args(["--config", cfg.to_str().unwrap(), "status"]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn exit_codes_follow_the_worst_state() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, cat) = setup(d.path());
    let (code, out) = status(&cfg, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no check results yet"), "{out}");
    cat.save_check_round(&[row("cpu", "OK"), row("shop", "OK")], &[])
        .unwrap();
    assert_eq!(status(&cfg, false).0, 0);
    cat.save_check_round(&[row("shop", "WARN")], &[]).unwrap();
    assert_eq!(status(&cfg, false).0, 1);
    cat.save_check_round(&[row("api", "UNKNOWN")], &[]).unwrap();
    assert_eq!(status(&cfg, false).0, 1);
    cat.save_check_round(&[row("shop", "CRIT")], &[]).unwrap();
    let (code, out) = status(&cfg, false);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("web-01: 1 critical, 1 warning, 1 ok\n"),
        "{out}"
    );
    assert!(out.contains("host: cpu 42.0%"), "{out}");
    let crit = out.find("shop ").unwrap();
    let ok = out.find("cpu  ").unwrap();
    assert!(crit < ok, "worst first:\n{out}");
}

#[test]
fn backups_drills_and_json() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, cat) = setup(d.path());
    let t = Utc::now() - chrono::Duration::hours(3);
    let id = cat.start_run("main", "mysql", "schedule", t).unwrap();
    cat.finish_run(id, RunStatus::Success, 10, None, t).unwrap();
    let id = cat.start_run("main", "verify", "schedule", t).unwrap();
    cat.finish_run(id, RunStatus::Failed, 0, Some("checksum mismatch"), t)
        .unwrap();
    let mut stale = row("old", "OK");
    stale.updated_at = Utc::now() - chrono::Duration::hours(1);
    cat.save_check_round(&[row("cpu", "OK"), stale], &[])
        .unwrap();
    let (code, out) = status(&cfg, false);
    assert_eq!(code, 1, "a stale check is a warning:\n{out}");
    assert!(out.contains("STALE"), "{out}");
    let main = out.lines().find(|l| l.starts_with("main ")).unwrap();
    assert!(
        main.contains("success (3h 0m ago)") && main.contains("failed (3h 0m ago)"),
        "{main}"
    );
    let (code, out) = status(&cfg, true);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "WARN");
    assert_eq!(v["jobs"][0]["last_drill"]["error"], "checksum mismatch");
    assert_eq!(v["jobs"][0]["last_good_backup"]["status"], "success");
    assert_eq!(v["checks"].as_array().unwrap().len(), 2);
}
