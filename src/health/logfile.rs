//! `[[checks.log]]`: lines of a file matching a regex, counted over a sliding `window`
//! (WARN/CRIT at `warn`/`crit` matches), with the last matching lines in the detail. The file is
//! followed by polling on each sample: appended lines are read from the open handle, a rotated
//! file (new inode at the path) is drained and then reopened from its start, a truncated one is
//! read again from its start. Lines written before the agent started are not counted.

use super::state::Limits;
use super::{CheckSpec, Sample};
use regex::Regex;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A log check.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The file.
    pub path: PathBuf,
    /// What counts.
    pub pattern: Regex,
    /// Counting window; default 5m.
    pub window: Duration,
    /// Matches per window; default warn 1, no crit.
    pub limits: Limits,
}

/// Longest line passed on: a longer one is cut to this many bytes (and counted, see
/// [`Follower::long_lines`]), so a file with no newline cannot grow the agent's memory.
pub const MAX_LINE: usize = 64 * 1024;
/// Most bytes read from a followed file per sample; a file growing faster is caught up over the
/// next samples, so a huge append cannot hold a sample for long.
pub const MAX_READ: u64 = 32 << 20;
/// Bytes read at a time.
const CHUNK: u64 = 64 * 1024;

/// Reads what was appended to a file since the last call, across rotation and truncation.
/// Only regular files are read (a symlink to one is fine): a FIFO would block the read and a
/// device such as `/dev/zero` never ends, and the web user who owns an application's log can
/// put either at its path.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    /// The line being read is longer than [`MAX_LINE`]; the rest of it is skipped.
    cut: bool,
    buf: Vec<u8>,
    long_lines: u64,
}

impl Follower {
    /// Starts following `path` at its current end (or at the start of a file created later).
    pub fn new(path: PathBuf) -> Follower {
        let mut f = Follower {
            path,
            file: None,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
            cut: false,
            buf: Vec::with_capacity(CHUNK as usize),
            long_lines: 0,
        };
        if f.open().is_ok() {
            f.offset = f
                .file
                .as_ref()
                .and_then(|h| h.metadata().ok())
                .map_or(0, |m| m.len());
        }
        f
    }

    /// Lines longer than [`MAX_LINE`] seen so far (each was passed on cut).
    pub fn long_lines(&self) -> u64 {
        self.long_lines
    }

    /// Opens the path without blocking (a FIFO opened for reading waits for a writer) and
    /// refuses anything but a regular file. Leaves the current handle alone on error.
    fn open(&mut self) -> Result<(), Unreadable> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let h = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&self.path)
            .map_err(|_| Unreadable::Open {
                path: self.path.clone(),
            })?;
        let meta = h.metadata().map_err(|_| Unreadable::Open {
            path: self.path.clone(),
        })?;
        let t = meta.file_type();
        if !t.is_file() {
            let kind = if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_socket() {
                "a socket"
            } else {
                "not a file"
            };
            return Err(Unreadable::NotRegular {
                path: self.path.clone(),
                kind,
            });
        }
        self.ino = meta.ino();
        self.file = Some(h);
        self.offset = 0;
        self.partial.clear();
        self.cut = false;
        Ok(())
    }

    /// Calls `line` for every complete new line, reading at most [`MAX_READ`] bytes; `Err` when
    /// the file cannot be read at all, or its path now names something that is not a file.
    pub fn read_new(&mut self, mut line: impl FnMut(&str)) -> Result<(), Unreadable> {
        if self.file.is_none() {
            self.open()?;
        }
        let mut budget = MAX_READ;
        let drained = self.drain(&mut line, &mut budget);
        // Rotated: the path names another file now. Once what was left in the old one is read,
        // the new one is opened (and checked: a rotation to a FIFO is refused each sample).
        let now_ino = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if drained && now_ino.is_some_and(|i| i != self.ino) {
            self.open()?;
            self.drain(&mut line, &mut budget);
        }
        Ok(())
    }

    /// Reads from the offset until the end or until `budget` is spent; whether the end was
    /// reached.
    fn drain(&mut self, line: &mut impl FnMut(&str), budget: &mut u64) -> bool {
        let Some(f) = self.file.as_mut() else {
            return true;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated (copytruncate): start again.
            self.offset = 0;
            self.partial.clear();
            self.cut = false;
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return true;
        }
        while *budget > 0 {
            self.buf.clear();
            let want = CHUNK.min(*budget);
            let n = match f.by_ref().take(want).read_to_end(&mut self.buf) {
                Ok(0) | Err(_) => return true,
                Ok(n) => n,
            };
            *budget -= n as u64;
            self.offset += n as u64;
            let mut start = 0;
            for i in 0..self.buf.len() {
                if self.buf[i] == b'\n' {
                    Self::append(&mut self.partial, &mut self.cut, &self.buf[start..i]);
                    if self.cut {
                        self.long_lines += 1;
                    }
                    line(&String::from_utf8_lossy(&self.partial));
                    self.partial.clear();
                    self.cut = false;
                    start = i + 1;
                }
            }
            Self::append(&mut self.partial, &mut self.cut, &self.buf[start..]);
        }
        false
    }

    /// Adds `bytes` to the line being read, up to [`MAX_LINE`].
    fn append(partial: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]) {
        let room = MAX_LINE - partial.len();
        if bytes.len() > room {
            *cut = true;
        }
        partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// A followed file that cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreadable {
    /// Missing, or not readable by the agent.
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
    },
    /// The path names a FIFO, a device, a directory or a socket.
    #[error("{} is {kind}, not a regular file: not read (hint: point the check at the log file itself; only regular files are followed)", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
}

/// Per-sample counts over a sliding window.
#[derive(Debug, Default)]
pub struct Window {
    slots: VecDeque<(Instant, u64)>,
}

impl Window {
    /// Adds `n` at `now` and returns the total within `window`.
    pub fn add(&mut self, now: Instant, n: u64, window: Duration) -> u64 {
        while self
            .slots
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.slots.pop_front();
        }
        self.slots.push_back((now, n));
        self.slots.iter().map(|(_, c)| c).sum()
    }
}

/// The state of one log check.
#[derive(Debug)]
pub struct Watcher {
    follower: Follower,
    window: Window,
    last: VecDeque<String>,
}

impl Watcher {
    /// Starts following the file.
    pub fn new(spec: &Spec) -> Watcher {
        Watcher {
            follower: Follower::new(spec.path.clone()),
            window: Window::default(),
            last: VecDeque::with_capacity(5),
        }
    }

    /// Reads new lines and counts matches.
    pub fn probe(&mut self, spec: &CheckSpec) -> Sample {
        let super::ProbeSpec::Log(l) = &spec.probe else {
            return Sample::failed(spec, "internal: not a log check".into());
        };
        let mut n = 0;
        let last = &mut self.last;
        let r = self.follower.read_new(|line| {
            if l.pattern.is_match(line) {
                n += 1;
                if last.len() == 5 {
                    last.pop_front();
                }
                last.push_back(line.chars().take(300).collect());
            }
        });
        if let Err(e) = r {
            return Sample::failed(spec, e.to_string());
        }
        let total = self.window.add(Instant::now(), n, l.window);
        let mut detail = format!(
            "{total} line(s) matching /{}/ in {} in the last {}",
            l.pattern.as_str(),
            l.path.display(),
            humantime::format_duration(l.window)
        );
        let long = self.follower.long_lines();
        if long > 0 {
            detail.push_str(&format!(
                "; {long} line(s) longer than {} KiB were cut",
                MAX_LINE / 1024
            ));
        }
        if total > 0 && !self.last.is_empty() {
            detail.push_str("; last:\n");
            for line in &self.last {
                detail.push_str(line);
                detail.push('\n');
            }
        }
        Sample::value(spec, total as f64, l.limits, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let mut w = Window::default();
        let t = Instant::now();
        let win = Duration::from_secs(60);
        assert_eq!(w.add(t, 3, win), 3);
        assert_eq!(w.add(t + Duration::from_secs(30), 2, win), 5);
        assert_eq!(w.add(t + Duration::from_secs(61), 0, win), 2);
        assert_eq!(w.add(t + Duration::from_secs(200), 1, win), 1);
    }
}
