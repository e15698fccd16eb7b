//! Media backup → restore of trees nobody tuned the code for, and restores into targets that
//! fight back, against the real moto S3 server and the real binary (one shared moto):
//!
//! - names of every byte 0x01–0xFF, tabs, 255-byte names, names starting with `-`, names that
//!   differ only in case; FIFOs, sockets and device files (left out, and a FIFO must not hang
//!   the backup); symlink loops; setuid/setgid (not restored on files)/sticky bits and mode
//!   000; mtimes before 1970
//!   and after 2262 (clamped); a sparse file (its holes come back); 300 directories restored
//!   under `ulimit -n 128`; a path near `PATH_MAX` restored under a directory that pushes it
//!   past 4096 bytes, and one past it in the source (a warning);
//! - `--in-place` where a directory of the snapshot is now a symlink to elsewhere (nothing is
//!   written or deleted through it), and a job whose path is itself a symlink (Laravel's
//!   `public/storage`: the link stays, its target is restored; re-pointed elsewhere, it is
//!   not followed).
//!
//! Faults (a killed restore, a full disk, a lost pack) are in media_faults.rs.

mod common;
#[allow(dead_code)]
use common::media_bench;
#[allow(dead_code)] // the acceptance tree is media_restore.rs's
#[path = "support/media_tree.rs"]
mod media_tree;

use media_bench::{under, write, Bench, JOB};
use media_tree::{chmod, is_root, metas, set_mtime, temp_leftovers, Meta};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Sets an mtime the file system may refuse (too far out); returns whether it took.
fn try_mtime(p: &Path, sec: i64) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: 5,
        },
    ];
    // SAFETY: a valid C string and two initialised timespecs.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    r == 0 && std::fs::metadata(p).map(|m| m.len()).is_ok()
}

/// The nasty tree under `root`; returns the entries a snapshot cannot hold (special files).
fn nasty_tree(root: &Path) -> Vec<Vec<u8>> {
    // One file per byte value, its content that byte repeated.
    for b in 1u8..=255 {
        if b == b'/' || b == b'.' {
            continue;
        }
        write(
            &root.join("bytes").join(OsStr::from_bytes(&[b])),
            &vec![b; b as usize],
        );
    }
    write(&root.join("bytes/..."), b"dots");
    let long_mb = format!("{}x", "é".repeat(127));
    for n in [
        "tab\there",
        "-rf",
        "--help",
        " lead",
        "trail ",
        "*?[",
        &"n".repeat(255),
        &long_mb,
    ] {
        write(&root.join("odd").join(n), n.as_bytes());
    }
    for i in 0..300 {
        write(
            &root.join(format!("dirs/{i:03}/f")),
            format!("{i}").as_bytes(),
        );
    }
    write(&root.join("case/abc"), b"file");
    write(&root.join("case/Abc/inner"), b"dir");
    // Special files: not in the snapshot, and never opened.
    let special = root.join("special");
    std::fs::create_dir_all(&special).unwrap();
    let fifo = std::ffi::CString::new(special.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(special.join("sock")).unwrap();
    if is_root() {
        let null = std::ffi::CString::new(special.join("null").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; makedev(1, 3) is /dev/null's.
        let r = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(r, 0);
    }
    for (target, at) in [
        ("loop2", "loop1"),
        ("loop1", "loop2"),
        ("self", "self"),
        ("/etc/passwd", "outside"),
        ("..", "up"),
    ] {
        std::os::unix::fs::symlink(target, special.join(at)).unwrap();
    }
    // Modes and owners.
    write(&root.join("modes/suid"), b"#!/bin/sh\n");
    write(&root.join("modes/none"), b"mode 000");
    write(
        &root.join("modes/locked/inner/f"),
        b"in a mode-000 directory",
    );
    std::fs::create_dir_all(root.join("modes/sticky")).unwrap();
    chmod(&root.join("modes/suid"), 0o4755);
    chmod(&root.join("modes/sticky"), 0o1777);
    if is_root() {
        // Unreadable to anyone but root (a non-root backup skips them: covered elsewhere).
        chmod(&root.join("modes/none"), 0);
        write(&root.join("modes/www"), b"owned by 33");
        std::os::unix::fs::chown(root.join("modes/www"), Some(33), Some(4343)).unwrap();
        chmod(&root.join("modes/www"), 0o6750);
    }
    // A sparse 64 MiB file with a few bytes at its end: restored with its holes.
    let sparse = std::fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"tail", (64 << 20) - 4).unwrap();
    // Times: zero-length file before 1970; one past 2262 when the file system takes it.
    write(&root.join("zero"), b"");
    set_mtime(&root.join("zero"), -2_000_000_000, 1);
    // A path near PATH_MAX: 3800 bytes below the root.
    let mut deep = root.join("deep");
    for i in 0..19 {
        deep = deep.join(format!("{i:02}{}", "d".repeat(198)));
    }
    write(&deep.join("leaf"), b"deep leaf");
    let mut special_keys = Vec::new();
    for e in std::fs::read_dir(&special).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_fifo() || ft.is_socket() || ft.is_char_device() {
            let rel = e.path();
            let rel = rel.strip_prefix(root).unwrap().as_os_str().as_bytes();
            special_keys.push(rel.to_vec());
        }
    }
    if is_root() {
        chmod(&root.join("modes/locked"), 0);
    }
    special_keys
}

#[test]
fn nasty_names_modes_times_and_special_files_round_trip() {
    let b = Bench::new(&["src"]);
    let src = b.path("src");
    let specials = nasty_tree(&src);
    let future = src.join("future");
    write(&future, b"from the future");
    let far = try_mtime(&future, 15_000_000_000); // year 2445
    let out = b.ok(&["backup", JOB]);
    assert!(!out.contains("PARTIAL"), "{out}");
    // Side by side under a directory that pushes the deep path past PATH_MAX.
    let r = "r".repeat(250);
    let to = b.path(&format!("restored/{r}/{r}"));
    // With the usual soft limit of open files, or less: 300 directories must not need 300.
    let args = [
        "restore",
        "--date",
        "now",
        "--to-dir",
        to.to_str().unwrap(),
        "--yes",
    ];
    let out = b.run_with_files(&args, Some(128));
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    // setuid/setgid bits of files are not restored, and one warning names the files.
    let suid = format!("`{}`", src.join("modes/suid").display());
    assert!(
        text.contains("setuid/setgid") && text.contains(&suid),
        "{text}"
    );
    let got = under(&to, &src);
    // The deep leaf, read through a shorter path (std::fs takes paths up to PATH_MAX only).
    let first = format!("00{}", "d".repeat(198));
    let mut rest = PathBuf::new();
    for i in 1..19 {
        rest.push(format!("{i:02}{}", "d".repeat(198)));
    }
    rest.push("leaf");
    let full = got.join("deep").join(&first).join(&rest);
    assert!(full.as_os_str().len() > 4096, "{}", full.as_os_str().len());
    let moved = b.path("deep-moved");
    std::fs::rename(got.join("deep").join(&first), &moved).unwrap();
    assert_eq!(std::fs::read(moved.join(&rest)).unwrap(), b"deep leaf");
    let mut want: BTreeMap<Vec<u8>, Meta> = metas(&src);
    // `deep` itself changed with the rename.
    want.retain(|k, _| !k.starts_with(b"deep"));
    for k in &specials {
        assert!(want.remove(k).is_some());
    }
    for f in ["modes/suid", "modes/www"] {
        if let Some(m) = want.get_mut(f.as_bytes()) {
            m.mode &= !0o6000;
        }
    }
    if far {
        // Nanoseconds since 1970 end in 2262: later times come back clamped there.
        let m = want.get_mut(&b"future"[..]).unwrap();
        m.mtime = (i64::MAX / 1_000_000_000, i64::MAX % 1_000_000_000);
    }
    let mut have = metas(&got);
    have.retain(|k, _| !k.starts_with(b"deep"));
    for (k, v) in &want {
        let name = String::from_utf8_lossy(k);
        assert_eq!(have.get(k), Some(v), "`{name}`");
    }
    assert_eq!(have.len(), want.len());
    let img = std::fs::metadata(got.join("sparse.img")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(img.blocks() * 512 < 4 << 20, "{} blocks", img.blocks());
    for b in [1u8, b'\n', 0x7f, 0xff] {
        let p = got.join("bytes").join(OsStr::from_bytes(&[b]));
        assert_eq!(std::fs::read(p).unwrap(), vec![b; b as usize]);
    }
    assert!(temp_leftovers(&got).is_empty());
    // Past PATH_MAX the backup cannot read: a warning names the directory and the limit.
    // (Made at a short path, then moved in below the deep leaf's directory.)
    let ext = b.path("ext");
    let mut deeper = ext.clone();
    for i in 0..3 {
        deeper.push(format!("x{i}{}", "e".repeat(100)));
    }
    write(&deeper.join("too-deep"), b"x");
    let x0 = format!("x0{}", "e".repeat(100));
    let leaf_dir = src.join("deep").join(&first).join(rest.parent().unwrap());
    std::fs::rename(ext.join(&x0), leaf_dir.join(&x0)).unwrap();
    let out = b.run(&["backup", JOB]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PARTIAL") && text.contains("PATH_MAX"),
        "{text}"
    );
}

#[test]
fn in_place_never_follows_a_symlink_below_the_backed_up_path() {
    let b = Bench::new(&["link-root"]);
    // The job's path is a symlink to the real directory, as Laravel's `public/storage`.
    let real = b.path("real");
    std::os::unix::fs::symlink(&real, b.path("link-root")).unwrap();
    write(&real.join("sub/f"), b"f\n");
    write(&real.join("sub/deep/c"), b"c\n");
    write(&real.join("top"), b"top\n");
    b.ok(&["backup", JOB]);
    // The web server's user replaces `sub` by a link to a directory it wants written.
    let victim = b.path("victim");
    write(&victim.join("deep/precious"), b"precious\n");
    std::fs::remove_dir_all(real.join("sub")).unwrap();
    std::os::unix::fs::symlink(&victim, real.join("sub")).unwrap();
    std::fs::write(real.join("top"), b"damaged\n").unwrap();
    for sel in ["sub/f", "sub/deep", "sub/deep/c"] {
        // Without --delete the link is not replaced, and nothing goes through it.
        let out = b.run(&[
            "restore",
            "--date",
            "now",
            "--path",
            sel,
            "--in-place",
            "--yes",
        ]);
        let text = common::output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("--delete") && text.contains("/link-root/sub`"),
            "{text}"
        );
        assert!(real.join("sub").is_symlink());
        assert_eq!(
            walk_names(&victim),
            ["deep", "deep/precious"],
            "{sel}: {text}"
        );
        b.ok(&[
            "restore",
            "--date",
            "now",
            "--path",
            sel,
            "--in-place",
            "--delete",
            "--yes",
        ]);
        let left: Vec<_> = walk_names(&victim);
        assert_eq!(left, ["deep", "deep/precious"], "after --path {sel}");
        assert!(real.join("sub").is_dir() && !real.join("sub").is_symlink());
        std::fs::remove_dir_all(real.join("sub")).unwrap();
        std::os::unix::fs::symlink(&victim, real.join("sub")).unwrap();
    }
    // The job's link itself pointed at the victim: not followed, nothing written there.
    std::fs::remove_file(b.path("link-root")).unwrap();
    std::os::unix::fs::symlink(&victim, b.path("link-root")).unwrap();
    let out = b.run(&[
        "restore",
        "--date",
        "now",
        "--in-place",
        "--delete",
        "--yes",
    ]);
    let text = common::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not followed"), "{text}");
    assert_eq!(walk_names(&victim), ["deep", "deep/precious"]);
    std::fs::remove_file(b.path("link-root")).unwrap();
    std::os::unix::fs::symlink(&real, b.path("link-root")).unwrap();
    // The whole snapshot in place: the job's own link stays a link, its target is restored.
    b.ok(&[
        "restore",
        "--date",
        "now",
        "--in-place",
        "--delete",
        "--yes",
    ]);
    assert!(b.path("link-root").is_symlink());
    assert_eq!(std::fs::read(real.join("top")).unwrap(), b"top\n");
    assert_eq!(std::fs::read(real.join("sub/deep/c")).unwrap(), b"c\n");
    assert_eq!(walk_names(&victim), ["deep", "deep/precious"]);
}

/// Every entry under `root`, relative, sorted.
fn walk_names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = metas(root)
        .into_keys()
        .filter(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    v.sort();
    v
}
