//! Raw config → resolved [`Config`]: defaults, every check, every error at once, each pointing
//! at `file:line:col` of the key with a hint.

use super::defaults;
use super::diagnostic::{did_you_mean, line_col, serde_error, ConfigError, ConfigErrors};
use super::raw::{RawAgent, RawConfig, RawKeep};
use super::span::{self, KeyPath};
use super::*;

/// Collects errors and warnings while resolving one file.
pub(super) struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    fn make(&self, path: &KeyPath, message: String, hint: Option<String>) -> ConfigError {
        let position = span::find(self.text, path).map(|s| line_col(self.text, s.start));
        ConfigError {
            file: self.file.to_path_buf(),
            position,
            key: path.to_string(),
            message,
            hint,
        }
    }

    /// Records an error at `path`.
    pub(super) fn error(
        &mut self,
        path: &KeyPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let hint = Some(hint.into()).filter(|h| !h.is_empty());
        let e = self.make(path, message.into(), hint);
        self.errors.push(e);
    }

    /// Records a warning at `path`.
    pub(super) fn warn(
        &mut self,
        path: &KeyPath,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let hint = Some(hint.into()).filter(|h| !h.is_empty());
        let w = self.make(path, message.into(), hint);
        self.warnings.push(w);
    }

    /// A required key that is missing.
    pub(super) fn missing(&mut self, path: &KeyPath, hint: &str) {
        self.error(path, "required key is missing", hint);
    }
}

pub(super) fn resolve(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigErrors(vec![serde_error(file, text, &e)]))?;
    let mut cx = Ctx {
        file,
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let root = KeyPath::root();
    let agent = agent(&mut cx, &raw.agent, &root.key("agent"));
    let (storage, storage_limits, copies) =
        super::resolve_storage::section(&mut cx, raw.storage.as_ref(), &agent.hostname, &root);
    let (mysql, media) = jobs(&mut cx, &raw, &root);
    let email = raw
        .alerts
        .as_ref()
        .and_then(|a| a.email.as_ref())
        .and_then(|e| super::resolve_email::email(&mut cx, e, &root.key("alerts").key("email")));
    let mut alerts =
        super::resolve_alerts::alerts(&mut cx, raw.alerts.as_ref(), &root.key("alerts"));
    let (health, depends) = super::resolve_checks::checks(
        &mut cx,
        raw.checks.as_ref(),
        &mysql,
        &media,
        agent.zone,
        storage.as_ref(),
        &root.key("checks"),
    );
    alerts.depends = depends;
    let metrics_listen =
        super::resolve_checks::metrics(&mut cx, raw.metrics.as_ref(), &root.key("metrics"));
    let web = super::resolve_web::web(&mut cx, raw.web.as_ref(), &root.key("web"));
    let encryption = raw
        .encryption
        .as_ref()
        .and_then(|e| super::resolve_encryption::encryption(&mut cx, e, &root.key("encryption")));
    super::resolve_encryption::drills_need_identity(&mut cx, encryption.as_ref(), &mysql, &root);
    let heartbeat = super::resolve_heartbeat::section(&mut cx, &raw, &mysql, &media, &root);
    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Config {
        file: absolute(file),
        agent,
        storage: storage.expect("storage resolved when there are no errors"),
        storage_limits,
        copies,
        encryption,
        mysql,
        media,
        email,
        alerts,
        warnings: cx.warnings,
        health,
        metrics_listen,
        heartbeat,
        web,
    })
}

/// The `[[mysql]]` and `[[media]]` jobs: names unique, `copy_to` naming copy storages.
fn jobs(cx: &mut Ctx, raw: &RawConfig, root: &KeyPath) -> (Vec<MysqlJob>, Vec<MediaJob>) {
    let mut names: Vec<(String, KeyPath)> = Vec::new();
    let mut mysql = Vec::new();
    for (i, m) in raw.mysql.iter().enumerate() {
        let p = root.key("mysql").index(i);
        if let Some(job) = super::resolve_mysql::mysql_job(cx, m, &p) {
            job_name_unique(cx, &mut names, &job.name, &p.key("name"));
            mysql.push(job);
        }
    }
    let mut media = Vec::new();
    for (i, m) in raw.media.iter().enumerate() {
        let p = root.key("media").index(i);
        if let Some(job) = super::resolve_media::media_job(cx, m, &p) {
            job_name_unique(cx, &mut names, &job.name, &p.key("name"));
            media.push(job);
        }
    }
    let copy_to: Vec<(&[String], KeyPath)> = (raw.mysql.iter().enumerate())
        .map(|(i, m)| (&m.copy_to[..], root.key("mysql").index(i).key("copy_to")))
        .chain(
            (raw.media.iter().enumerate())
                .map(|(i, m)| (&m.copy_to[..], root.key("media").index(i).key("copy_to"))),
        )
        .collect();
    super::resolve_storage::check_copy_to(cx, raw.storage.as_ref(), &copy_to);
    (mysql, media)
}

/// `p` made absolute against the working directory, without `.` components.
pub(super) fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn system_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn agent(cx: &mut Ctx, a: &RawAgent, p: &KeyPath) -> Agent {
    let hostname = match &a.hostname {
        Some(h) if !valid_name(h, 253, true) => {
            cx.error(&p.key("hostname"), format!("`{h}` is not a usable host name"), "use letters, digits, `.`, `-` and `_` (it appears in object keys and mail subjects)");
            h.clone()
        }
        Some(h) => h.clone(),
        None => system_hostname(),
    };
    let state_dir = absolute(
        a.state_dir
            .as_deref()
            .unwrap_or(Path::new(defaults::STATE_DIR)),
    );
    let zone = match &a.timezone {
        None => Zone::Local,
        Some(t) => Zone::parse(t).unwrap_or_else(|| {
            let hint = match closest_zone(t) {
                Some(z) => format!("did you mean `{z}`? Use an IANA name (`timedatectl list-timezones`), or leave it out for the system's zone"),
                None => "use an IANA name like \"Europe/Berlin\" or \"UTC\" (`timedatectl list-timezones`), or leave it out for the system's zone".to_string(),
            };
            cx.error(&p.key("timezone"), format!("unknown time zone `{t}`"), hint);
            Zone::Local
        }),
    };
    Agent {
        hostname,
        state_dir,
        zone,
        shutdown_grace: a.shutdown_grace.unwrap_or(defaults::SHUTDOWN_GRACE),
        priority: super::resolve_limits::priority(cx, a, p),
        pause_when: super::resolve_limits::pause_when(cx, a.pause_when.as_ref(), p),
    }
}

fn closest_zone(t: &str) -> Option<&'static str> {
    let names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let lower = t.to_ascii_lowercase();
    names
        .iter()
        .find(|n| n.to_ascii_lowercase() == lower)
        .copied()
        .or_else(|| did_you_mean(t, &names))
}

/// Job names, host names, bucket prefixes: letters, digits and a few separators.
pub(super) fn valid_name(s: &str, max: usize, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'))
        && !s.starts_with(['-', '.'])
}

pub(super) fn job_name_unique(
    cx: &mut Ctx,
    seen: &mut Vec<(String, KeyPath)>,
    name: &str,
    p: &KeyPath,
) {
    if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
        let first = first.to_string();
        cx.error(
            p,
            format!("duplicate job name `{name}` (also used by `{first}`)"),
            "every job needs its own name: it names the job's objects in the bucket",
        );
    } else {
        seen.push((name.to_string(), p.clone()));
    }
}

/// Warns when `file` can be read (or written) by every user. Group access is fine: the package
/// installs secrets 0640 root:opsagent.
pub(super) fn warn_if_world_readable(cx: &mut Ctx, file: &Path, p: &KeyPath, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(md) = std::fs::metadata(file) {
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o006 != 0 {
            cx.warn(
                p,
                format!(
                    "{what} {} can be read by every user (mode {mode:o})",
                    file.display()
                ),
                format!(
                    "chmod 600 {} (or 0640 owned by root, group opsagent)",
                    file.display()
                ),
            );
        }
    }
}

/// Reads a secret file, with errors and loose-permission warnings at `p`.
pub(super) fn secret_file(cx: &mut Ctx, file: &Path, p: &KeyPath) -> Option<Secret> {
    if !file.is_absolute() {
        cx.error(
            p,
            format!("`{}` is a relative path", file.display()),
            "secret files need an absolute path, e.g. /etc/opsagent/secrets/mysql",
        );
        return None;
    }
    match Secret::from_file(file) {
        Ok(s) => {
            warn_if_world_readable(cx, file, p, "secret file");
            Some(s)
        }
        Err(e) => {
            cx.error(
                p,
                format!("cannot read secret file {}: {e}", file.display()),
                e.hint("the secret on one line"),
            );
            None
        }
    }
}

pub(super) fn job_name(cx: &mut Ctx, name: Option<&str>, p: &KeyPath) -> Option<String> {
    match name {
        None => {
            cx.missing(
                &p.key("name"),
                "name = \"main\": a short name for the job (letters, digits, `-`, `_`)",
            );
            None
        }
        Some(n) if !valid_name(n, 64, false) => {
            cx.error(&p.key("name"), format!("`{n}` is not a valid job name"), "use letters, digits, `-` and `_` (at most 64): the name appears in object keys and commands");
            None
        }
        Some(n) => Some(n.to_string()),
    }
}

pub(super) fn schedule(cx: &mut Ctx, text: Option<&str>, p: &KeyPath) -> Option<Schedule> {
    match text {
        None => {
            cx.missing(
                p,
                "schedule = \"30 2 * * *\" (crontab: every day at 02:30) or \"@daily\"",
            );
            None
        }
        Some(t) => match Schedule::parse(t) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.error(p, e.message(), e.hint());
                None
            }
        },
    }
}

pub(super) fn keep(cx: &mut Ctx, k: RawKeep, p: &KeyPath) -> Option<KeepPolicy> {
    let policy = KeepPolicy {
        last: k.last,
        hourly: k.hourly,
        daily: k.daily,
        weekly: k.weekly,
        monthly: k.monthly,
        yearly: k.yearly,
    };
    if policy.is_empty() {
        cx.error(
            p,
            "this policy keeps nothing but the newest snapshot",
            "e.g. keep = { last = 3, daily = 7, weekly = 4, monthly = 12 }",
        );
        return None;
    }
    Some(policy)
}

/// `verify_schedule`: a schedule, `"off"`/`"never"`, or `default` when left out (`None`: off).
pub(super) fn verify_schedule(
    cx: &mut Ctx,
    text: Option<&str>,
    default: Option<&str>,
    p: &KeyPath,
) -> Option<Option<Schedule>> {
    match text.or(default) {
        None => Some(None),
        Some(t) if defaults::VERIFY_OFF.contains(&t) => Some(None),
        Some(t) => schedule(cx, Some(t), p).map(Some),
    }
}

/// `compression_level`: a zstd level, the default when left out.
pub(super) fn compression_level(cx: &mut Ctx, level: Option<i32>, p: &KeyPath) -> i32 {
    let level = level.unwrap_or(defaults::COMPRESSION_LEVEL);
    if !defaults::COMPRESSION_LEVELS.contains(&level) {
        cx.error(
            p,
            format!("compression level {level} is out of range"),
            "use 1 (fastest) to 19 (smallest); 3 is the default",
        );
    }
    level
}
