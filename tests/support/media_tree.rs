//! The trees media restore tests back up and compare: the acceptance tree (unicode, spaces,
//! invalid UTF-8 and newlines in names, symlinks of every kind, empty and setgid directories, a
//! big file that neither dedups nor compresses, many small files, odd modes, old nanosecond
//! mtimes, other owners), and a comparison that checks what `diff -r` does not.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: a valid C string and two initialised timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Everything `diff` does not compare: type, mode, mtime (ns), owner, size, symlink target.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: char,
    pub mode: u32,
    pub mtime: (i64, i64),
    pub owner: (u32, u32),
    pub size: u64,
    pub target: Option<Vec<u8>>,
}

/// Every entry under `root` (itself as the empty path) with its metadata.
pub fn metas(root: &Path) -> BTreeMap<Vec<u8>, Meta> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<Vec<u8>, Meta>) {
        let md = std::fs::symlink_metadata(p).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else {
            'f'
        };
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        out.insert(
            rel,
            Meta {
                kind,
                mode: md.mode() & 0o7777,
                mtime: (md.mtime(), md.mtime_nsec()),
                owner: (md.uid(), md.gid()),
                size: if kind == 'f' { md.len() } else { 0 },
                target: (kind == 'l').then(|| {
                    std::fs::read_link(p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }),
            },
        );
        if kind == 'd' {
            for e in std::fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `diff -r --no-dereference` plus every entry's metadata.
pub fn assert_identical(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff: {}",
        crate::common::output_text(&out)
    );
    let (ma, mb) = (metas(a), metas(b));
    assert_eq!(ma.len(), mb.len(), "entry counts differ");
    for (k, v) in &ma {
        let name = String::from_utf8_lossy(k);
        assert_eq!(Some(v), mb.get(k), "entry `{name}` differs");
    }
}

pub fn temp_leftovers(root: &Path) -> Vec<Vec<u8>> {
    metas(root)
        .into_keys()
        .filter(|k| k.windows(18).any(|w| w == b".opsagent-restore-"))
        .collect()
}

/// 64-bit xorshift noise.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A file of `mb` MiB: one random MiB repeated with a counter every 64 KiB, so chunks barely
/// dedup and nothing compresses.
pub fn write_big(p: &Path, mb: u64) {
    let mut block = noise(42, 1 << 20);
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    for i in 0..mb {
        for k in 0..16u64 {
            let at = (k as usize) << 16;
            block[at..at + 8].copy_from_slice(&(i * 16 + k).to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

/// The acceptance tree under `root`.
pub fn tricky_tree(root: &Path, big: u64, small: usize) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("ünïcödé dïr/café résumé.txt", "ça va ✓\n".as_bytes());
    w("with space/file with spaces.jpg", &noise(7, 70_000));
    w("with space/private 0600", b"secret\n");
    w("with space/tool 0755", b"#!/bin/sh\necho hi\n");
    w("with space/readonly 0444", b"read only\n");
    w("new\nline.txt", b"newline in the name\n");
    w("dup/a", b"same content\n");
    w("dup/b", b"same content\n");
    w("zero", b"");
    let bad = root.join(OsStr::from_bytes(b"bad \xff\xfe name"));
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join(OsStr::from_bytes(b"inv\xc3(alid")),
        b"latin-1 world",
    )
    .unwrap();
    for d in [
        "empty",
        "nested/deeper/empty too",
        "setgid dir",
        "private dir",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    w("setgid dir/inside", b"group shared\n");
    write_big(&root.join("big.bin"), big);
    for i in 0..small {
        let text = format!("small file {i}\n").repeat(1 + i % 97);
        w(&format!("many/{:03}/f{i:05}.txt", i / 100), text.as_bytes());
    }
    let link = |target: &[u8], at: &str| {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), root.join(at)).unwrap()
    };
    link(
        "../ünïcödé dïr/café résumé.txt".as_bytes(),
        "with space/relative link",
    );
    link(root.join("zero").as_os_str().as_bytes(), "absolute link");
    link(b"does/not/exist \xff", "dangling link");
    chmod(&root.join("with space/private 0600"), 0o600);
    chmod(&root.join("with space/tool 0755"), 0o755);
    chmod(&root.join("with space/readonly 0444"), 0o444);
    chmod(&root.join("setgid dir"), 0o2775);
    chmod(&root.join("private dir"), 0o700);
    if is_root() {
        std::os::unix::fs::lchown(root.join("dup/a"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("dangling link"), Some(4321), Some(8765)).unwrap();
    }
    // Old dates with nanoseconds on every entry, deepest first (writing in a directory
    // changes its mtime); one before 1970.
    let mut all: Vec<Vec<u8>> = metas(root).into_keys().collect();
    all.sort_by_key(|k| {
        std::cmp::Reverse(k.iter().filter(|b| **b == b'/').count() + k.len().min(1))
    });
    for (i, rel) in all.iter().enumerate() {
        let p = root.join(OsStr::from_bytes(rel));
        set_mtime(
            &p,
            300_000_000 + i as i64 * 86_400,
            (i as i64 * 7_919_777) % 1_000_000_000,
        );
    }
    set_mtime(&root.join("zero"), -14_182_940, 123_456_789); // 1969-07-20
}
