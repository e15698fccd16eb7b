//! The README's first command, as a newcomer follows it: the embedded default
//! (config/opsagent.example.toml, run from the checkout) has a demo job whose backup can be
//! listed and restored within a minute of starting the daemon, with nothing else installed. The
//! daemon is started as command 1 starts it, and the lines run are the README's own (the
//! `opsagent …` lines of the block after "Command 1"), so the README stays true.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `opsagent …` lines of the README's quick-start block, without comments.
fn readme_lines() -> Vec<Vec<String>> {
    let readme = include_str!("../README.md");
    let start = readme.find("Command 1 runs").expect("the quick start");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .filter(|l| l.starts_with("opsagent "))
        .map(|l| {
            let l = l.split(" #").next().unwrap();
            l.split_whitespace().skip(1).map(str::to_string).collect()
        })
        .collect()
}

fn opsagent(cwd: &Path, args: &[String]) -> String {
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
fn the_example_configs_demo_job_backs_up_and_the_readme_lines_list_and_restore_it() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::create_dir(cwd.join("config")).unwrap();
    let example = include_str!("../config/opsagent.example.toml");
    std::fs::write(cwd.join("config/opsagent.example.toml"), example).unwrap();
    // README command 1: the daemon on the example config; its demo job runs at the next minute.
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .current_dir(cwd)
        .args(["--config", "config/opsagent.example.toml", "run"])
        .stderr(std::fs::File::create(cwd.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let lines = readme_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let t0 = std::time::Instant::now();
    let list = loop {
        let list = opsagent(cwd, &lines[0]);
        if list.contains("demo") {
            break list;
        }
        // A minute by the schedule; more slack for a loaded CI machine.
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(150),
            "no snapshot of the demo job: {list}\n{}",
            std::fs::read_to_string(cwd.join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(list.contains("demo"), "{list}");
    let out = opsagent(cwd, &lines[1]);
    assert!(out.contains("restored files of `demo`"), "{out}");
    let restored = walk(&cwd.join("var/restored"));
    let copy = restored
        .iter()
        .find(|p| p.ends_with("config/opsagent.example.toml"))
        .unwrap_or_else(|| panic!("not restored: {restored:?}"));
    assert_eq!(std::fs::read_to_string(copy).unwrap(), example);
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
