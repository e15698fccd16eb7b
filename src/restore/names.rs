//! The names restores give databases: staging for in-place restores, side-by-side copies.

use crate::config::Zone;
use chrono::{DateTime, Utc};

/// Marks the staging database of an in-place restore (`<db>_opsagent_stg_<random>`).
pub const STAGING_MARK: &str = "_opsagent_stg_";

/// A staging database name for `db` no other restore shares (within MySQL's 64 characters).
pub fn staging_name(db: &str) -> String {
    format!("{}{STAGING_MARK}{}", truncate(db, 30), random_hex(4))
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// The database name a side-by-side restore of `db` from a snapshot taken at `t` uses.
pub fn side_by_side_name(db: &str, t: DateTime<Utc>, zone: Zone) -> String {
    let suffix = zone.format(t, "_%Y%m%d_%H%M");
    let max = 64 - suffix.len();
    let base: String = db.chars().take(max).collect();
    format!("{base}{suffix}")
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
