//! The anomaly guard: after a snapshot commits, it is compared with the job's previous
//! snapshot of the same item; a sharp shrink is recorded in the catalog, which freezes the
//! job's retention (`prune` keeps everything) and fires the WARN alert `anomaly:JOB` until an
//! operator runs `opsagent ack JOB`. An accidental `DELETE`, a broken migration or ransomware
//! can then no longer age the last good snapshots out while nobody looks.
//!
//! What counts as a shrink of at least `anomaly_drop` (a share, default 50 %):
//! - MySQL: the dump's size (uncompressed SQL), or a table's rows as the dump wrote them
//!   (`Manifest::tables`; a table gone counts as 0 rows; tables under
//!   `ANOMALY_MIN_ROWS` rows before are not judged by rows);
//! - media: the file count or the bytes of all files; and content **rewritten**: the bytes the
//!   run stored for the first time beyond what the tree grew by (`new_bytes − growth`), as a
//!   share of the previous snapshot's bytes. Ransomware that encrypts files in place keeps
//!   names, count and often sizes, but every encrypted byte is new content; uploads that only
//!   add files grow the tree by what is new and rewrite nothing.
//!
//! Snapshots made before tables were counted are compared by size only.

use crate::catalog::AnomalyRow;
use crate::quote::human_bytes;
use crate::snapshot::manifest::Manifest;
use crate::snapshot::Env;
use chrono::Utc;

/// Tables with fewer rows than this in the previous snapshot are not judged by their rows
/// (small tables such as sessions or caches empty themselves routinely).
pub const ANOMALY_MIN_ROWS: u64 = 100;

/// One measure that shrank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrink {
    /// What shrank: `shop.orders`, `shop` (the dump), `uploads` (a media job).
    pub what: String,
    /// The measure before and after.
    pub before: u64,
    /// …
    pub after: u64,
    /// What the numbers count.
    pub unit: Unit,
}

/// What a [`Shrink`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Table rows.
    Rows,
    /// Files of a media snapshot.
    Files,
    /// Bytes (a dump's SQL, a media tree's files).
    Bytes,
    /// Media bytes rewritten: `before` the previous snapshot's bytes, `after` the rewritten ones.
    Rewritten,
}

impl std::fmt::Display for Shrink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (b, a) = (self.before, self.after);
        match self.unit {
            Unit::Rows => write!(f, "{}: {} → {} rows", self.what, grouped(b), grouped(a)),
            Unit::Files => write!(
                f,
                "{}: {} files → {} files",
                self.what,
                grouped(b),
                grouped(a)
            ),
            Unit::Bytes => write!(f, "{}: {} → {}", self.what, human_bytes(b), human_bytes(a)),
            Unit::Rewritten => write!(
                f,
                "{}: {} of {} rewritten ({} %)",
                self.what,
                human_bytes(a),
                human_bytes(b),
                (a as f64 * 100.0 / b.max(1) as f64).round()
            ),
        }
    }
}

/// `1200000` as `1 200 000`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Whether `what` (`db.table`, `db`) matches one of the job's `anomaly_expected` patterns.
fn is_expected(patterns: &[String], what: &str) -> bool {
    patterns
        .iter()
        .any(|p| crate::alert::silence::matches(p, what))
}

/// `after` is at least `share` below `before`.
fn dropped(before: u64, after: u64, share: f64) -> bool {
    before > 0 && (after as f64) <= before as f64 * (1.0 - share)
}

/// What shrank by `share` or more from `prev` to `cur` (two snapshots of one job and item).
pub fn compare(prev: &Manifest, cur: &Manifest, share: f64) -> Vec<Shrink> {
    let mut out = Vec::new();
    let mut push = |what: String, before: u64, after: u64, unit: Unit| {
        out.push(Shrink {
            what,
            before,
            after,
            unit,
        })
    };
    if let (Some(p), Some(c)) = (&prev.media, &cur.media) {
        let job = &cur.job;
        if dropped(p.files, c.files, share) {
            push(job.clone(), p.files, c.files, Unit::Files);
        }
        if dropped(p.bytes, c.bytes, share) {
            push(job.clone(), p.bytes, c.bytes, Unit::Bytes);
        }
        let rewritten = c.new_bytes.saturating_sub(c.bytes.saturating_sub(p.bytes));
        if p.bytes > 0 && rewritten as f64 >= share * p.bytes as f64 {
            push(job.clone(), p.bytes, rewritten, Unit::Rewritten);
        }
        return out;
    }
    let db = &cur.item;
    if dropped(prev.raw_size(), cur.raw_size(), share) {
        push(db.clone(), prev.raw_size(), cur.raw_size(), Unit::Bytes);
    }
    let (Some(before), Some(now)) = (&prev.tables, &cur.tables) else {
        return out;
    };
    for t in before.iter().filter(|t| t.rows >= ANOMALY_MIN_ROWS) {
        let after = now.iter().find(|n| n.name == t.name).map_or(0, |n| n.rows);
        if dropped(t.rows, after, share) {
            push(format!("{db}.{}", t.name), t.rows, after, Unit::Rows);
        }
    }
    out
}

/// Compares the committed snapshot `m` with its job's previous one of the same item (from the
/// catalog) and records an anomaly when something shrank by `share` or more (`None`: the
/// guard is off). Never fails the run: a catalog failure is logged.
pub fn check(
    env: &Env,
    share: Option<f64>,
    expected: &[String],
    m: &Manifest,
) -> Option<AnomalyRow> {
    let share = share?;
    let prev = match env.catalog.previous_snapshot(&m.job, &m.item, &m.id) {
        Ok(Some(row)) => Manifest::parse(&row.manifest_key, row.manifest.as_bytes()).ok()?,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(job = %m.job, error = %e, "the anomaly guard cannot read the previous snapshot; this snapshot was not compared");
            return None;
        }
    };
    let mut shrinks = compare(&prev, m, share);
    shrinks.retain(|s| !is_expected(expected, &s.what));
    if shrinks.is_empty() {
        return None;
    }
    let since = env
        .config
        .agent
        .zone
        .format(prev.started_at, "%Y-%m-%d %H:%M");
    let detail = shrinks
        .iter()
        .map(|s| format!("{s} since {since}"))
        .collect::<Vec<_>>()
        .join("; ");
    let at = Utc::now();
    match env.catalog.add_anomaly(&m.job, &m.item, &m.id, at, &detail) {
        Ok(id) => {
            tracing::warn!(job = %m.job, snapshot = %m.id, %detail, "snapshot shrank sharply: retention of the job is frozen until `opsagent ack {}`", m.job);
            Some(AnomalyRow {
                id,
                job: m.job.clone(),
                item: m.item.clone(),
                snapshot: m.id.clone(),
                detected_at: at,
                detail,
                acked_at: None,
                acked_by: None,
            })
        }
        Err(e) => {
            tracing::error!(job = %m.job, %detail, error = %e, "snapshot shrank sharply but the anomaly could not be recorded: retention is NOT frozen");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::manifest::{MediaSummary, TableStats};

    fn mysql(raw: u64, tables: &[(&str, u64)]) -> Manifest {
        let text = include_str!("../../tests/data/manifest-v1.json");
        let mut m: Manifest = serde_json::from_str(text).unwrap();
        m.objects[0].raw_size = raw;
        m.tables = Some(
            tables
                .iter()
                .map(|(n, r)| TableStats {
                    name: n.to_string(),
                    rows: *r,
                    bytes: r * 40,
                })
                .collect(),
        );
        m
    }

    fn media(files: u64, bytes: u64, new_bytes: u64) -> Manifest {
        let mut m = mysql(0, &[]);
        m.job = "uploads".into();
        m.tables = None;
        m.media = Some(MediaSummary {
            files,
            bytes,
            new_bytes,
            ..MediaSummary::default()
        });
        m
    }

    fn said(prev: &Manifest, cur: &Manifest, share: f64) -> Vec<String> {
        compare(prev, cur, share)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn tables_and_dump_size() {
        let prev = mysql(
            1 << 20,
            &[("orders", 1_200_000), ("sessions", 40), ("gone", 500)],
        );
        let cur = mysql(900_000, &[("orders", 240_000), ("sessions", 0)]);
        assert_eq!(
            said(&prev, &cur, 0.5),
            [
                "shop-eu.orders: 1 200 000 → 240 000 rows",
                "shop-eu.gone: 500 → 0 rows"
            ]
        );
        // 80 % gone is not a drop of 90 %, a table dropped is; the dump halving is one of 50 %.
        assert_eq!(said(&prev, &cur, 0.9), ["shop-eu.gone: 500 → 0 rows"]);
        let half = mysql(1 << 19, &[("orders", 1_200_000)]);
        assert_eq!(said(&prev, &half, 0.5)[0], "shop-eu: 1.0 MiB → 512.0 KiB");
        // Growth, and a snapshot from before tables were counted, are fine.
        assert!(said(&cur, &prev, 0.5).is_empty());
        let mut old = prev.clone();
        old.tables = None;
        assert!(said(&old, &cur, 0.5).is_empty());
    }

    #[test]
    fn expected_tables_are_named_exactly_or_by_prefix() {
        let pats = ["shop.sessions".to_string(), "shop.cache_*".to_string()];
        assert!(is_expected(&pats, "shop.sessions"));
        assert!(is_expected(&pats, "shop.cache_pages"));
        assert!(!is_expected(&pats, "shop.orders"));
        assert!(!is_expected(&pats, "shop.sessions_old"));
        assert!(!is_expected(&pats, "shop"));
    }

    #[test]
    fn media_count_size_and_rewritten_content() {
        let prev = media(1000, 1 << 30, 0);
        assert_eq!(
            said(&prev, &media(500, 1 << 29, 0), 0.5),
            [
                "uploads: 1 000 files → 500 files",
                "uploads: 1.0 GiB → 512.0 MiB"
            ]
        );
        // Half the files encrypted in place: same count, same size, half the content new.
        assert_eq!(
            said(&prev, &media(1000, 1 << 30, 1 << 29), 0.5),
            ["uploads: 512.0 MiB of 1.0 GiB rewritten (50 %)"]
        );
        // New uploads grow the tree by what is new: nothing rewritten.
        assert!(said(&prev, &media(3000, 3 << 30, 2 << 30), 0.5).is_empty());
        assert!(said(&prev, &media(1000, 1 << 30, 1 << 28), 0.5).is_empty());
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(100), "100");
        assert_eq!(grouped(1000), "1 000");
    }
}
