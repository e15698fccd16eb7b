//! Where opsagent writes on the local side, with the real binary (issue 15): what it creates is
//! private to its user whatever the caller's umask (dumps 0600, directories 0700), and no symlink
//! planted in the state dir (at a lock file, at the side-by-side restore directory) is followed:
//! the link's target is untouched and the error names the link. `--to-file` is in
//! tests/restore.rs (it needs a MySQL dump); the catalog and the helpers have unit tests.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Bench {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cfg: PathBuf,
}

impl Bench {
    /// A media job `up` over `src/`, backed up to the local directory `store/`.
    fn new() -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("src/a")).unwrap();
        std::fs::create_dir_all(root.join("store")).unwrap();
        std::fs::write(root.join("src/a/photo.jpg"), b"jpeg bytes").unwrap();
        let text = format!(
            "[agent]\nhostname = \"web\"\nstate_dir = \"{r}/state\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"local\"\npath = \"{r}/store\"\n\
             [[media]]\nname = \"up\"\npaths = [\"{r}/src\"]\nschedule = \"@daily\"\n",
            r = root.display()
        );
        let cfg = root.join("opsagent.toml");
        std::fs::write(&cfg, text).unwrap();
        Bench {
            _dir: dir,
            root,
            cfg,
        }
    }

    /// Runs opsagent with the permissive umask a shell often has.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsagent"));
        cmd.arg("--config").arg(&self.cfg).args(args);
        cmd.stdin(std::process::Stdio::null());
        // SAFETY: umask is async-signal-safe; called in the child between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        cmd.output().unwrap()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A file standing in for `/etc/passwd`.
    fn victim(&self) -> PathBuf {
        let v = self.path("passwd");
        std::fs::write(&v, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        v
    }
}

fn text(o: &Output) -> String {
    common::output_text(o)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file and directory under `dir` (not `dir` itself), with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push((p.clone(), mode(&p)));
        if e.file_type().unwrap().is_dir() {
            out.extend(modes(&p));
        }
    }
    out
}

#[test]
fn what_opsagent_creates_is_private_whatever_the_umask() {
    let b = Bench::new();
    let out = b.run(&["backup", "up"]);
    assert!(out.status.success(), "{}", text(&out));
    let stored = modes(&b.path("store"));
    assert!(
        stored.iter().filter(|(p, _)| p.is_file()).count() >= 2,
        "{stored:?}"
    );
    for (p, m) in stored.iter().chain(&modes(&b.path("state"))) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} is {m:o}", p.display());
    }
    assert_eq!(mode(&b.path("state")), 0o700);
    assert!(b.path("state/locks/up.lock").is_file());
}

#[test]
fn a_symlink_planted_at_a_lock_file_is_not_followed() {
    let b = Bench::new();
    let victim = b.victim();
    std::fs::create_dir_all(b.path("state/locks")).unwrap();
    let lock = b.path("state/locks/up.lock");
    symlink(&victim, &lock).unwrap();
    let out = b.run(&["backup", "up"]);
    let err = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{} is a symlink", lock.display())) && err.contains("rm -- "),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "root:x:0:0:root:/root:/bin/bash\n"
    );
    assert_eq!(mode(&victim), 0o644);
    // `locks/` itself replaced by a link to another directory: not followed either.
    std::fs::remove_dir_all(b.path("state/locks")).unwrap();
    std::fs::create_dir(b.path("elsewhere")).unwrap();
    symlink(b.path("elsewhere"), b.path("state/locks")).unwrap();
    let out = b.run(&["backup", "up"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("locks is a symlink"), "{}", text(&out));
    assert_eq!(std::fs::read_dir(b.path("elsewhere")).unwrap().count(), 0);
}

#[test]
fn a_symlink_planted_at_the_side_by_side_directory_is_not_followed() {
    let b = Bench::new();
    let out = b.run(&["backup", "up"]);
    assert!(out.status.success(), "{}", text(&out));
    // `restore/` replaced by a link to a directory root cares about.
    let etc = b.path("etc");
    std::fs::create_dir(&etc).unwrap();
    symlink(&etc, b.path("state/restore")).unwrap();
    let out = b.run(&["restore", "--date", "now", "--yes"]);
    let err = text(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "{} is a symlink",
            b.path("state/restore").display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&etc).unwrap().count(),
        0,
        "nothing written through the link"
    );
    // `restore/up` a link: the same.
    std::fs::remove_file(b.path("state/restore")).unwrap();
    std::fs::create_dir(b.path("state/restore")).unwrap();
    symlink(&etc, b.path("state/restore/up")).unwrap();
    let out = b.run(&["restore", "--date", "now", "--yes"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_dir(&etc).unwrap().count(), 0);
    // Without the link the restore works, into a private directory.
    std::fs::remove_file(b.path("state/restore/up")).unwrap();
    let out = b.run(&["restore", "--date", "now", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&b.path("state/restore/up")), 0o700);
}
