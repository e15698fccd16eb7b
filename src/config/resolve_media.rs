//! Validation of `[[media]]` jobs.

use super::defaults;
use super::raw::RawMedia;
use super::resolve::{absolute, compression_level, job_name, keep, schedule, verify_schedule, Ctx};
use super::span::KeyPath;
use super::MediaJob;

/// Checks the `exclude` patterns (gitignore syntax).
fn excludes(cx: &mut Ctx, patterns: &[String], p: &KeyPath) {
    for (i, pat) in patterns.iter().enumerate() {
        let mut b = ignore::gitignore::GitignoreBuilder::new("/");
        if pat.trim().is_empty() || b.add_line(None, pat).is_err() {
            cx.error(
                &p.index(i),
                format!("`{pat}` is not a valid exclude pattern"),
                "gitignore syntax: `cache/`, `*.tmp`, `/tmp-uploads`, `**/thumbs/`",
            );
        }
    }
}

/// Resolves one `[[media]]` table; problems go to `cx`.
pub(super) fn media_job(cx: &mut Ctx, m: &RawMedia, p: &KeyPath) -> Option<MediaJob> {
    let name = job_name(cx, m.name.as_deref(), p);
    let paths = match &m.paths {
        None => {
            cx.missing(
                &p.key("paths"),
                "paths = [\"/var/www/api/storage/app/public\"]: the directories to back up",
            );
            None
        }
        Some(v) if v.is_empty() => {
            cx.error(
                &p.key("paths"),
                "the list is empty: this job would back up nothing",
                "name at least one directory",
            );
            None
        }
        Some(v) => {
            let resolved: Vec<_> = v.iter().map(|x| absolute(x)).collect();
            for (i, a) in resolved.iter().enumerate() {
                // A warning, not an error: a late mount must not keep the daemon (and its
                // health checks) from starting; the backup itself fails, naming the path.
                if let Err(e) = std::fs::metadata(a) {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        cx.warn(
                            &p.key("paths").index(i),
                            format!("`{}` does not exist: backups of this job will fail until it does", a.display()),
                            "check the path (a typo?); a directory on a file system mounted later is fine",
                        );
                    }
                }
                if resolved[..i]
                    .iter()
                    .any(|b| a.starts_with(b) || b.starts_with(a))
                {
                    cx.error(
                        &p.key("paths").index(i),
                        format!("`{}` overlaps another path of this job", a.display()),
                        "list each directory once; a parent already includes its children",
                    );
                }
            }
            Some(resolved)
        }
    };
    excludes(cx, &m.exclude, &p.key("exclude"));
    let schedule = schedule(cx, m.schedule.as_deref(), &p.key("schedule"));
    let keep = keep(cx, m.keep.unwrap_or(defaults::KEEP), &p.key("keep"));
    let verify_schedule = verify_schedule(
        cx,
        m.verify_schedule.as_deref(),
        None,
        &p.key("verify_schedule"),
    );
    let compression_level = compression_level(cx, m.compression_level, &p.key("compression_level"));
    let anomaly_drop =
        super::resolve_anomaly::anomaly_drop(cx, m.anomaly_drop.as_ref(), &p.key("anomaly_drop"));
    Some(MediaJob {
        anomaly_drop,
        ping_url: super::resolve_heartbeat::job_ping_url(
            cx,
            m.ping_url.as_deref(),
            &p.key("ping_url"),
        ),
        copy_to: m.copy_to.clone(),
        name: name?,
        paths: paths?,
        exclude: m.exclude.clone(),
        schedule: schedule?,
        keep: keep?,
        one_file_system: m.one_file_system.unwrap_or(defaults::ONE_FILE_SYSTEM),
        follow_symlinks: m.follow_symlinks.unwrap_or(defaults::FOLLOW_SYMLINKS),
        compression_level,
        prune_grace: m.prune_grace.unwrap_or(defaults::PRUNE_GRACE),
        verify_schedule: verify_schedule?,
    })
}
