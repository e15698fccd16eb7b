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

/// Reads what was appended to a file since the last call, across rotation and truncation.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    buf: Vec<u8>,
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
            buf: Vec::with_capacity(64 * 1024),
        };
        if f.open() {
            f.offset = f
                .file
                .as_ref()
                .and_then(|h| h.metadata().ok())
                .map_or(0, |m| m.len());
        }
        f
    }

    fn open(&mut self) -> bool {
        match File::open(&self.path) {
            Ok(h) => {
                self.ino = h.metadata().map(|m| m.ino()).unwrap_or(0);
                self.file = Some(h);
                self.offset = 0;
                self.partial.clear();
                true
            }
            Err(_) => false,
        }
    }

    /// Calls `line` for every complete new line; `Err` when the file cannot be read at all.
    pub fn read_new(&mut self, mut line: impl FnMut(&str)) -> Result<(), Unreadable> {
        if self.file.is_none() && !self.open() {
            return Err(Unreadable {
                path: self.path.clone(),
            });
        }
        self.drain(&mut line);
        // Rotated: the path names another file now. What was left in the old one is read above.
        let now_ino = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if now_ino.is_some_and(|i| i != self.ino) && self.open() {
            self.drain(&mut line);
        }
        Ok(())
    }

    fn drain(&mut self, line: &mut impl FnMut(&str)) {
        let Some(f) = self.file.as_mut() else { return };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated (copytruncate): start again.
            self.offset = 0;
            self.partial.clear();
        }
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        loop {
            self.buf.clear();
            let n = match f.by_ref().take(64 * 1024).read_to_end(&mut self.buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.offset += n as u64;
            let mut start = 0;
            for (i, b) in self.buf.iter().enumerate() {
                if *b == b'\n' {
                    self.partial.extend_from_slice(&self.buf[start..i]);
                    line(&String::from_utf8_lossy(&self.partial));
                    self.partial.clear();
                    start = i + 1;
                }
            }
            self.partial.extend_from_slice(&self.buf[start..]);
        }
    }
}

/// A followed file that cannot be opened (missing, or not readable by the agent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot open {}", path.display())]
pub struct Unreadable {
    /// The file.
    pub path: std::path::PathBuf,
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
