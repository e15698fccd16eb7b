//! The README's first command, as a newcomer follows it: the embedded default
//! (config/opsagent.example.toml, run from the checkout) has a demo job whose backup can be
//! listed and restored at once, with nothing else installed.

use std::path::Path;
use std::process::Command;

fn opsagent(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .current_dir(cwd)
        .args(["--config", "config/opsagent.example.toml"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

#[test]
fn the_example_configs_demo_job_backs_up_lists_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir(cwd.join("config")).unwrap();
    let example = include_str!("../config/opsagent.example.toml");
    std::fs::write(cwd.join("config/opsagent.example.toml"), example).unwrap();
    opsagent(cwd, &["backup", "demo"]);
    let list = opsagent(cwd, &["snapshots"]);
    assert!(list.contains("demo"), "{list}");
    let out = opsagent(cwd, &["restore", "--date", "now", "--job", "demo", "--yes"]);
    assert!(out.contains("restored files of `demo`"), "{out}");
    let restored = walkdir(&cwd.join("var/state/restore/demo"));
    let copy = restored
        .iter()
        .find(|p| p.ends_with("config/opsagent.example.toml"))
        .unwrap_or_else(|| panic!("not restored: {restored:?}"));
    assert_eq!(std::fs::read_to_string(copy).unwrap(), example);
}

fn walkdir(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}
