//! Media restores end to end against the real S3 server (moto) and the real binary: a tricky
//! tree (unicode, spaces, invalid UTF-8 and newlines in names, symlinks of every kind, empty
//! directories, a big file, 10k small files, odd modes and old nanosecond mtimes, other owners)
//! comes back identical; `--path` and `--to-dir` select and place; `--in-place` keeps extra
//! files and `--delete` removes them (but not excluded ones); a flipped byte in a pack fails the
//! restore and the drill naming the pack and the files, after everything else was restored;
//! a partial snapshot restores what it holds.
//!
//! `MEDIA_BIG_MB` sets the size of the big file: 256 MiB by default keeps this file near 45 s in
//! CI; `MEDIA_BIG_MB=1024` (the acceptance size) took about 100 s in a debug build on 2 busy
//! cores, most of it the backup.

mod common;

use common::agent::{agent_table, opsagent, s3_storage_table};
#[path = "support/media_tree.rs"]
mod media_tree;

use common::s3::{S3Server, SECRET_KEY};
use media_tree::{
    assert_identical, chmod, is_root, metas, noise, set_mtime, temp_leftovers, tricky_tree,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const JOB: &str = "up";

struct Bench {
    dir: tempfile::TempDir,
    bucket: String,
    src: PathBuf,
    state: PathBuf,
    cfg: PathBuf,
}

impl Bench {
    fn new(exclude: &[&str]) -> Bench {
        Bench::new_in(tempfile::tempdir().unwrap(), exclude)
    }

    /// A bench in memory (tmpfs) when there is one: 20k files are made and removed in a
    /// moment there, while a disk mounted with `discard` takes half a minute to delete them.
    fn in_memory() -> Bench {
        let shm = Path::new("/dev/shm");
        match tempfile::Builder::new()
            .prefix("media-restore")
            .tempdir_in(shm)
        {
            Ok(d) => Bench::new_in(d, &[]),
            Err(_) => Bench::new(&[]),
        }
    }

    fn new_in(dir: tempfile::TempDir, exclude: &[&str]) -> Bench {
        let s3 = S3Server::shared();
        let sec = common::write_secret(dir.path(), "s3", SECRET_KEY);
        let (src, state) = (dir.path().join("src"), dir.path().join("state"));
        std::fs::create_dir_all(&src).unwrap();
        let bucket = s3.new_bucket();
        let excl: Vec<String> = exclude.iter().map(|e| format!("\"{e}\"")).collect();
        let text = agent_table("web", &state, "")
            + &s3_storage_table(s3, &bucket, &sec)
            + &format!(
                "[[media]]\nname = \"{JOB}\"\npaths = [\"{}\"]\nexclude = [{}]\nschedule = \"@daily\"\n",
                src.display(),
                excl.join(", ")
            );
        let cfg = dir.path().join("opsagent.toml");
        std::fs::write(&cfg, text).unwrap();
        Bench {
            dir,
            bucket,
            src,
            state,
            cfg,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        opsagent(&self.cfg, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let t = Instant::now();
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            common::output_text(&out)
        );
        eprintln!("{args:?} took {:.1}s", t.elapsed().as_secs_f64());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn backup(&self) {
        self.ok(&["backup", JOB]);
    }

    /// Where a side-by-side restore put the source tree.
    fn restored(&self) -> PathBuf {
        let base = self.state.join("restore").join(JOB);
        let dirs: Vec<_> = std::fs::read_dir(&base).unwrap().flatten().collect();
        assert_eq!(
            dirs.len(),
            1,
            "one snapshot directory under {}",
            base.display()
        );
        under(&dirs[0].path(), &self.src)
    }

    fn packs(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = S3Server::shared()
            .list_keys(&self.bucket)
            .into_iter()
            .filter(|(k, _)| k.contains("/packs/"))
            .collect();
        v.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
        v
    }
}

/// `base` followed by absolute path `p`.
fn under(base: &Path, p: &Path) -> PathBuf {
    base.join(p.strip_prefix("/").unwrap())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn big_mb() -> u64 {
    std::env::var("MEDIA_BIG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
fn a_tricky_tree_comes_back_identical() {
    let b = Bench::in_memory();
    let t = Instant::now();
    tricky_tree(&b.src, big_mb(), 10_000);
    eprintln!(
        "tree of {} MiB + 10k files made in {:.1}s",
        big_mb(),
        t.elapsed().as_secs_f64()
    );
    b.backup();
    let out = b.ok(&["restore", "--date", "now", "--job", JOB, "--yes"]);
    assert!(out.contains("10012 files"), "{out}");
    let restored = b.restored();
    let t = Instant::now();
    assert_identical(&b.src, &restored);
    eprintln!("compared in {:.1}s", t.elapsed().as_secs_f64());
    assert!(temp_leftovers(&restored).is_empty());
    // The drill reads every pack and blob and passes; the catalog has a verify run.
    let out = b.ok(&["verify", JOB]);
    assert!(out.contains(": ok, 10012 files"), "{out}");
    let t = Instant::now();
    drop(b);
    eprintln!("cleaned up in {:.1}s", t.elapsed().as_secs_f64());
}

/// A small tree: `a.txt`, `sub/b.txt`, `sub/link` → `b.txt`, `keep.tmp` (excluded).
fn small_tree(b: &Bench) {
    std::fs::create_dir_all(b.src.join("sub/deep")).unwrap();
    std::fs::write(b.src.join("a.txt"), b"a\n").unwrap();
    std::fs::write(b.src.join("sub/b.txt"), b"b\n").unwrap();
    std::fs::write(b.src.join("sub/deep/c.txt"), b"c\n").unwrap();
    std::fs::write(b.src.join("keep.tmp"), b"not backed up\n").unwrap();
    std::os::unix::fs::symlink("b.txt", b.src.join("sub/link")).unwrap();
    set_mtime(&b.src.join("sub/b.txt"), 1_000_000_000, 5);
    set_mtime(&b.src.join("sub"), 1_000_000_000, 6);
}

#[test]
fn path_selects_to_dir_places_and_flags_are_checked() {
    let b = Bench::new(&["*.tmp"]);
    small_tree(&b);
    b.backup();
    // --dry-run: the plan with counts and destinations, nothing written.
    let out = b.ok(&["restore", "--date", "now", "--path", "sub", "--dry-run"]);
    assert!(out.contains("2 files, 2 directories, 1 symlinks"), "{out}");
    assert!(
        out.contains(&format!("{}/sub/deep/c.txt", b.src.display())),
        "{out}"
    );
    assert!(out.contains("dry run"), "{out}");
    assert!(!b.state.join("restore").exists());
    // Relative --path under --to-dir.
    let to = b.dir.path().join("out");
    b.ok(&[
        "restore",
        "--date",
        "now",
        "--path",
        "sub/",
        "--to-dir",
        to.to_str().unwrap(),
        "--yes",
    ]);
    let got = under(&to, &b.src);
    assert_identical(&b.src.join("sub"), &got.join("sub"));
    assert!(!got.join("a.txt").exists());
    // Absolute --path of one file.
    let one = b.dir.path().join("one");
    let abs = b.src.join("sub/deep/c.txt");
    b.ok(&[
        "restore",
        "--date",
        "now",
        "--path",
        abs.to_str().unwrap(),
        "--to-dir",
        one.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(std::fs::read(under(&one, &abs)).unwrap(), b"c\n");
    assert!(!under(&one, &b.src.join("sub/b.txt")).exists());
    // Usage errors: exit 2, nothing written.
    for (args, says) in [
        (&["--path", "nope"][..], "not in this snapshot"),
        (&["--database", "shop"][..], "media job"),
        (&["--to-file", "x.sql"][..], "media job"),
        (&["--delete"][..], "--in-place"),
        (&["--path", "sub", "--database", "x"][..], "cannot be mixed"),
        (&["--in-place"][..], "--yes"),
    ] {
        let mut all = vec!["restore", "--date", "now", "--job", JOB];
        all.extend_from_slice(args);
        let out = b.run(&all);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            common::output_text(&out)
        );
        assert!(
            stderr(&out).contains(says),
            "{args:?}: {}",
            common::output_text(&out)
        );
    }
}

#[test]
fn in_place_keeps_extra_files_and_delete_removes_them_but_not_excluded_ones() {
    let b = Bench::new(&["*.tmp"]);
    small_tree(&b);
    b.backup();
    let before = metas(&b.src);
    // Damage: a file gone, one changed (content, mode, mtime), a link replaced by a directory,
    // extra files and directories, an excluded file.
    std::fs::remove_file(b.src.join("a.txt")).unwrap();
    std::fs::write(b.src.join("sub/b.txt"), b"changed!\n").unwrap();
    chmod(&b.src.join("sub/b.txt"), 0o600);
    std::fs::remove_file(b.src.join("sub/link")).unwrap();
    std::fs::create_dir_all(b.src.join("sub/link/inside")).unwrap();
    std::fs::write(b.src.join("extra.txt"), b"x").unwrap();
    std::fs::create_dir_all(b.src.join("sub/extra dir/deeper")).unwrap();
    std::fs::write(b.src.join("sub/cache.tmp"), b"x").unwrap();
    // A directory where the snapshot has a link is not replaced without --delete.
    let out = b.run(&["restore", "--date", "now", "--in-place", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(stderr(&out).contains("--delete"), "{}", stderr(&out));
    std::fs::remove_dir_all(b.src.join("sub/link")).unwrap();
    b.ok(&["restore", "--date", "now", "--in-place", "--yes"]);
    let now = metas(&b.src);
    for (k, v) in &before {
        assert_eq!(now.get(k), Some(v), "`{}`", String::from_utf8_lossy(k));
    }
    assert!(b.src.join("extra.txt").exists() && b.src.join("sub/extra dir/deeper").exists());
    // --delete: extras go, excluded files stay, the rest is as backed up.
    std::fs::create_dir_all(b.src.join("sub/link2/inside")).unwrap();
    let out = b.ok(&[
        "restore",
        "--date",
        "now",
        "--in-place",
        "--delete",
        "--yes",
    ]);
    assert!(out.contains("--delete removed 5 entries"), "{out}");
    assert!(out.contains("kept 2"), "keep.tmp and sub/cache.tmp: {out}");
    let mut now = metas(&b.src);
    assert!(now.remove(&b"sub/cache.tmp"[..]).is_some());
    assert_eq!(now, before);
}

/// The file names a damage report lists after `files affected:`.
fn affected(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.split_once("files affected: ").map(|x| x.1))
        .unwrap_or_else(|| panic!("no `files affected` in {text}"));
    line.split(", ")
        .map(|s| s.trim_matches('`').to_string())
        .collect()
}

#[test]
fn a_flipped_byte_in_a_pack_fails_restore_and_drill_naming_pack_and_files() {
    let b = Bench::new(&[]);
    for i in 0..30 {
        std::fs::write(
            b.src.join(format!("f{i:02}")),
            format!("file {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    std::fs::write(b.src.join("noise.bin"), noise(3, 3 << 20)).unwrap();
    b.backup();
    let (key, _) = b.packs()[0].clone();
    let s3 = S3Server::shared();
    let mut bytes = s3.get_object(&b.bucket, &key).unwrap();
    bytes[0] ^= 0x55;
    s3.put_object(&b.bucket, &key, &bytes);
    let short = key.strip_prefix("web/").unwrap_or(&key).to_string();
    let out = b.run(&["restore", "--date", "now", "--yes"]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&short), "names the pack: {text}");
    let lost = affected(&text);
    assert!(
        !lost.is_empty()
            && lost
                .iter()
                .all(|f| f.starts_with(&b.src.display().to_string())),
        "{lost:?}"
    );
    // Everything else was restored, and the damaged files are not there under their names.
    let restored = b.restored();
    let mut intact = 0;
    for e in std::fs::read_dir(&b.src).unwrap().flatten() {
        let got = restored.join(e.file_name());
        if lost.contains(&e.path().display().to_string()) {
            assert!(!got.exists(), "{} was not restored", got.display());
        } else {
            assert_eq!(
                std::fs::read(&got).unwrap(),
                std::fs::read(e.path()).unwrap()
            );
            intact += 1;
        }
    }
    assert_eq!(intact + lost.len(), 31);
    assert!(temp_leftovers(&restored).is_empty());
    // The drill fails and names the same pack and files.
    let out = b.run(&["verify", JOB]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&short), "{short}: {text}");
    assert!(text.contains("do not hash to its id"), "{text}");
    assert_eq!(affected(&text), lost);
    let status = b.ok(&["status"]);
    let row = status
        .lines()
        .find(|l| l.starts_with(JOB))
        .unwrap_or_default();
    assert!(row.contains("failed"), "the failed drill shows: {status}");
    // A missing pack: every file with content is named.
    s3.delete_object(&b.bucket, &key);
    let out = b.run(&[
        "restore",
        "--date",
        "now",
        "--to-dir",
        b.dir.path().join("x").to_str().unwrap(),
        "--yes",
    ]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("missing from storage") && text.contains("31 file(s)"),
        "{text}"
    );
}

#[test]
fn a_partial_snapshot_restores_what_it_holds() {
    if !is_root() {
        eprintln!("skipped: needs root to run the backup as another user");
        return;
    }
    let b = Bench::new(&[]);
    small_tree(&b);
    std::fs::create_dir_all(b.src.join("locked dir")).unwrap();
    std::fs::write(b.src.join("locked dir/x"), b"x").unwrap();
    std::fs::write(b.src.join("locked.txt"), b"locked").unwrap();
    chmod(&b.src.join("locked dir"), 0o700);
    chmod(&b.src.join("locked.txt"), 0o600);
    // The backup runs as `nobody`, who may read all but the locked entries.
    chmod(b.dir.path(), 0o755);
    std::fs::create_dir_all(&b.state).unwrap();
    for p in [b.dir.path().join("s3"), b.state.clone()] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--config")
        .arg(&b.cfg)
        .args(["backup", JOB])
        .output()
        .unwrap();
    let text = common::output_text(&out);
    assert!(
        text.contains("locked.txt") && text.contains("locked dir"),
        "{text}"
    );
    let plan = b.ok(&["restore", "--date", "now", "--dry-run"]);
    assert!(plan.contains("partial: 2 entries were skipped"), "{plan}");
    b.ok(&["restore", "--date", "now", "--yes"]);
    let restored = b.restored();
    assert!(!restored.join("locked.txt").exists());
    assert!(restored.join("locked dir").is_dir());
    std::fs::remove_dir_all(b.src.join("locked dir")).unwrap();
    std::fs::remove_file(b.src.join("locked.txt")).unwrap();
    std::fs::remove_dir_all(restored.join("locked dir")).unwrap();
    let (src, got) = (metas(&b.src), metas(&restored));
    for (k, v) in &got {
        if !k.is_empty() {
            assert_eq!(src.get(k), Some(v), "`{}`", String::from_utf8_lossy(k));
        }
    }
}

#[test]
fn a_media_drill_schedule_is_validated() {
    let b = Bench::new(&[]);
    let text = std::fs::read_to_string(&b.cfg).unwrap();
    std::fs::write(&b.cfg, format!("{text}verify_schedule = \"@monthly\"\n")).unwrap();
    b.ok(&["check-config"]);
    std::fs::write(
        &b.cfg,
        format!("{text}verify_schedule = \"every tuesday\"\n"),
    )
    .unwrap();
    let out = b.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::output_text(&out));
    assert!(stderr(&out).contains("verify_schedule"), "{}", stderr(&out));
}

#[test]
fn lost_index_objects_are_rebuilt_from_the_packs_own_headers() {
    let b = Bench::new(&[]);
    small_tree(&b);
    std::fs::write(b.src.join("noise.bin"), noise(7, 3 << 20)).unwrap();
    b.backup();
    let s3 = S3Server::shared();
    let index: Vec<String> = (s3.list_keys(&b.bucket).into_iter())
        .map(|(k, _)| k)
        .filter(|k| k.contains("/index/"))
        .collect();
    assert!(!index.is_empty());
    for k in &index {
        s3.delete_object(&b.bucket, k);
    }
    let out = b.run(&["restore", "--date", "now", "--job", JOB, "--yes"]);
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("is in no index object"), "{said}");
    assert_identical(&b.src, &b.restored());
}
