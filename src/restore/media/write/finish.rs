//! The end of a media restore: files still unfinished are failed, `--delete` sweeps (only when
//! nothing failed), and the directories get their modes and mtimes, deepest first (after
//! everything inside them was written).

use super::super::fs_ops::{self as fs_ops, Excludes};
use super::super::select::depth;
use super::Restoring;
use crate::media::tree::{Node, NodeKind};
use std::collections::HashSet;
use std::os::unix::ffi::OsStringExt;

impl Restoring {
    /// Cleans up, runs `--delete` (only when nothing failed), and sets the directories' modes
    /// and mtimes, deepest first.
    pub fn finish(&mut self, excludes: &Excludes) {
        for i in 0..self.files.len() {
            if self.files[i].temp.is_some() {
                let shown = self.files[i].dest.display().to_string();
                self.fail(i as u32, &shown, "not every chunk was written (bug)");
            }
        }
        self.damage.warnings.extend(self.stripped.warning());
        let nodes = self.nodes.clone();
        let mut dirs: Vec<&Node> = nodes.iter().filter(|n| n.kind == NodeKind::Dir).collect();
        if self.delete {
            self.sweep(&dirs, excludes);
        }
        dirs.sort_by_key(|n| std::cmp::Reverse(depth(&n.path.0)));
        for n in dirs {
            let dest = self.dest.of(n);
            let owners = self.owners;
            let set = self
                .at
                .place(&n.path.0, true)
                .and_then(|at| fs_ops::set_meta(&at.dir, &at.name, n, owners, false));
            match set {
                Ok(()) => self.counts.dirs += 1,
                Err(e) => {
                    self.damage
                        .problem(&dest.display().to_string(), &e.to_string());
                    self.damage.file(&n.path.display());
                }
            }
        }
    }

    fn sweep(&mut self, dirs: &[&Node], excludes: &Excludes) {
        if !self.damage.is_empty() {
            self.damage.warnings.push(
                "--delete was skipped because entries could not be restored; nothing was removed"
                    .into(),
            );
            return;
        }
        let wanted: HashSet<Vec<u8>> = self
            .nodes
            .iter()
            .map(|n| self.dest.of(n).into_os_string().into_vec())
            .collect();
        for d in dirs {
            let dest = self.dest.of(d);
            let is_wanted = |p: &[u8]| wanted.contains(p);
            let swept = self.at.anchor_dev(&d.path.0).and_then(|dev| {
                let fd = self.at.dir(&d.path.0)?;
                fs_ops::sweep(&fd, &dest, dev, &is_wanted, excludes)
            });
            self.at.forget();
            match swept {
                Ok(s) => {
                    self.counts.swept.removed += s.removed;
                    self.counts.swept.kept += s.kept;
                }
                Err(e) => self
                    .damage
                    .problem(&dest.display().to_string(), &format!("--delete: {e}")),
            }
        }
    }
}
