//! Disk checks: space (`disk:MOUNT`) and inodes (`inodes:MOUNT`) of every real, writable mounted
//! filesystem from `/proc/self/mountinfo` (pseudo filesystems, read-only mounts and bind mounts of
//! the same device skipped), with the biggest directories in the detail when one fills up (walked
//! again at most every 15 minutes). The time-until-full forecast (`disk-forecast:MOUNT`) is made
//! by the runner from the history.

use super::procfs::ProcReader;
use super::state::{Level, Limits};
use super::{Reading, Sample};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Filesystem types that are never checked.
pub const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "overlay",
    "squashfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "hugetlbfs",
    "fusectl",
    "configfs",
    "binfmt_misc",
    "nsfs",
    "efivarfs",
    "rpc_pipefs",
    "fuse.lxcfs",
    "nfsd",
    "selinuxfs",
    "iso9660",
    "fuse.snapfuse",
    "fuse.portal",
];

/// `[checks.disk]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskConfig {
    /// % space used; default warn 80, crit 90.
    pub space: Limits,
    /// % inodes used; default warn 80, crit 90.
    pub inodes: Limits,
    /// `for`; default 0 (disks do not spike).
    pub hold: Duration,
    /// WARN when the forecast says full within this; `None` disables it. Default 24h.
    pub full_within: Option<Duration>,
    /// Mount points not to check.
    pub ignore: Vec<PathBuf>,
}

impl Default for DiskConfig {
    fn default() -> DiskConfig {
        DiskConfig {
            space: Limits::above(80.0, 90.0),
            inodes: Limits::above(80.0, 90.0),
            hold: Duration::ZERO,
            full_within: Some(Duration::from_secs(24 * 3600)),
            ignore: Vec::new(),
        }
    }
}

/// A mounted filesystem worth checking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub path: PathBuf,
    /// Its type.
    pub fstype: String,
}

/// The real, writable mounts in a `mountinfo` text, one per device.
pub fn real_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut seen_dev: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.is_empty() {
            continue;
        }
        let (dev, mount_point, opts, fstype) = (l[2], l[4], l[5], r[0]);
        let read_only = opts.split(',').any(|o| o == "ro");
        if read_only || PSEUDO_FS.contains(&fstype) || seen_dev.contains(&dev) {
            continue;
        }
        seen_dev.push(dev);
        out.push(Mount {
            path: PathBuf::from(unescape(mount_point)),
            fstype: fstype.to_string(),
        });
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Space and inode use of one filesystem, in %.
pub fn usage(path: &Path) -> std::io::Result<(f64, Option<f64>)> {
    let st = rustix::fs::statvfs(path)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    // As df: the blocks reserved for root count as not available.
    let space = used * 100.0 / (used + st.f_bavail as f64).max(1.0);
    let inodes = (st.f_files > 0)
        .then(|| st.f_files.saturating_sub(st.f_ffree) as f64 * 100.0 / st.f_files as f64);
    Ok((space, inodes))
}

/// How long the biggest directories of a filling disk are reused before they are walked again
/// (the walk reads up to 200 000 entries; a disk stays full for days).
const BIGGEST_REFRESH: Duration = Duration::from_secs(15 * 60);

/// One checked mount and its check names.
#[derive(Debug)]
struct Checked {
    path: PathBuf,
    disk: Arc<str>,
    inodes: Arc<str>,
    /// The last biggest-directories detail and when it was made.
    biggest: Option<(Instant, String)>,
}

/// Samples the disks; keeps the mount list (rebuilt only when `/proc/self/mountinfo` changes)
/// and the check names between ticks, so a round without a full disk allocates nothing.
#[derive(Debug, Default)]
pub struct DiskSampler {
    mountinfo: String,
    mounts: Vec<Checked>,
}

impl DiskSampler {
    /// One round of disk samples appended to `out` (blocking; `proc` is the read buffer).
    pub fn sample_into(&mut self, cfg: &DiskConfig, proc: &mut ProcReader, out: &mut Vec<Sample>) {
        let text = proc.read("/proc/self/mountinfo").unwrap_or_default();
        if text != self.mountinfo {
            self.mountinfo.clear();
            self.mountinfo.push_str(text);
            self.mounts = real_mounts(text)
                .into_iter()
                .map(|m| {
                    let name = m.path.display().to_string();
                    Checked {
                        disk: Arc::from(format!("disk:{name}")),
                        inodes: Arc::from(format!("inodes:{name}")),
                        path: m.path,
                        biggest: None,
                    }
                })
                .collect();
        }
        for m in &mut self.mounts {
            if cfg.ignore.contains(&m.path) {
                continue;
            }
            let mk = |check: &Arc<str>, kind: &'static str, reading, detail| Sample {
                check: check.clone(),
                kind,
                reading,
                detail,
                hold: cfg.hold,
            };
            match usage(&m.path) {
                Ok((space, inodes)) => {
                    let detail = if cfg.space.level(space, Level::Ok).0 != Level::Ok {
                        m.biggest_dirs()
                    } else {
                        m.biggest = None;
                        String::new()
                    };
                    let r = Reading::Value {
                        value: space,
                        limits: cfg.space,
                    };
                    out.push(mk(&m.disk, "disk", r, detail));
                    if let Some(i) = inodes {
                        let r = Reading::Value {
                            value: i,
                            limits: cfg.inodes,
                        };
                        out.push(mk(&m.inodes, "inodes", r, String::new()));
                    }
                }
                Err(e) => {
                    let detail = format!("statvfs {}: {e}", m.path.display());
                    out.push(mk(&m.disk, "disk", Reading::Failed, detail));
                }
            }
        }
    }
}

impl Checked {
    /// The biggest directories, walked again at most every [`BIGGEST_REFRESH`].
    fn biggest_dirs(&mut self) -> String {
        match &self.biggest {
            Some((at, d)) if at.elapsed() < BIGGEST_REFRESH => d.clone(),
            _ => {
                let d = biggest_dirs(&self.path, 5, 200_000);
                self.biggest = Some((Instant::now(), d.clone()));
                d
            }
        }
    }
}

/// One round of disk samples (blocking).
pub fn sample(cfg: &DiskConfig) -> Vec<Sample> {
    let mut out = Vec::new();
    DiskSampler::default().sample_into(cfg, &mut ProcReader::new(), &mut out);
    out
}

/// "biggest: /var/log 12.0 GiB, …": the largest directories directly under `root` on the same
/// filesystem, visiting at most `budget` entries (a partial answer beats none at 3 a.m.).
pub fn biggest_dirs(root: &Path, n: usize, budget: usize) -> String {
    let Ok(dev) = std::fs::symlink_metadata(root).map(|m| m.dev()) else {
        return String::new();
    };
    let mut left = budget;
    let mut sizes: Vec<(u64, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            (md.is_dir() && md.dev() == dev)
                .then(|| (dir_size(&e.path(), dev, &mut left), e.path()))
        })
        .collect();
    sizes.sort_by_key(|b| std::cmp::Reverse(b.0));
    let list: Vec<String> = sizes
        .iter()
        .take(n)
        .map(|(s, p)| format!("{} {:.1} GiB", p.display(), *s as f64 / (1u64 << 30) as f64))
        .collect();
    let partial = if left == 0 { " (partial)" } else { "" };
    format!("biggest directories{partial}: {}", list.join(", "))
}

fn dir_size(dir: &Path, dev: u64, left: &mut usize) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if *left == 0 {
                return total;
            }
            *left -= 1;
            let Ok(md) = e.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=123k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
28 27 254:1 / /srv/my\\040data rw,relatime shared:5 - xfs /dev/vdb rw
29 27 254:0 /srv /var/www rw,relatime - ext4 /dev/vda rw
30 27 7:0 / /snap/core/1 ro,nodev - squashfs /dev/loop0 ro
31 27 254:2 / /mnt/backup ro,relatime - ext4 /dev/vdc ro
32 27 0:40 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw
";

    #[test]
    fn only_real_writable_filesystems_once_each() {
        let m = real_mounts(MOUNTINFO);
        let paths: Vec<&str> = m.iter().map(|m| m.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["/", "/srv/my data"]);
        assert_eq!(m[1].fstype, "xfs");
    }

    #[test]
    fn samples_this_hosts_disks() {
        let cfg = DiskConfig::default();
        let s = sample(&cfg);
        for x in &s {
            assert!(x.check.starts_with("disk:/") || x.check.starts_with("inodes:/"));
        }
        let (space, _) = usage(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&space));
    }

    #[test]
    fn biggest_dirs_lists_the_largest_first() {
        let d = tempfile::tempdir().unwrap();
        for (name, kib) in [("small", 8), ("big", 512), ("mid", 64)] {
            std::fs::create_dir(d.path().join(name)).unwrap();
            std::fs::write(d.path().join(name).join("f"), vec![1u8; kib * 1024]).unwrap();
        }
        let s = biggest_dirs(d.path(), 2, 1000);
        let big = s.find("/big").unwrap();
        let mid = s.find("/mid").unwrap();
        assert!(big < mid && !s.contains("/small"), "{s}");
    }
}
