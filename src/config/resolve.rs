//! Raw config → resolved [`Config`]: defaults, every check, every error at once, each pointing
//! at `file:line:col` of the key with a hint.

use super::diagnostic::{did_you_mean, line_col, parse_unknown_field, ConfigError, ConfigErrors};
use super::raw::{RawAgent, RawConfig, RawEmail, RawKeep, RawMysql, RawStorage};
use super::span::{self, KeyPath};
use super::*;

const SYSTEM_DATABASES: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];

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
    let storage = match &raw.storage {
        Some(s) => storage(&mut cx, s, &agent.hostname, &root.key("storage")),
        None => {
            cx.error(&root, "the [storage] section is missing", "add [storage] with type = \"local\" and path = \"/var/backups/opsagent\", or type = \"s3\" with a bucket");
            None
        }
    };
    let mut names: Vec<(String, KeyPath)> = Vec::new();
    let mut mysql = Vec::new();
    for (i, m) in raw.mysql.iter().enumerate() {
        let p = root.key("mysql").index(i);
        if let Some(job) = mysql_job(&mut cx, m, &p) {
            job_name_unique(&mut cx, &mut names, &job.name, &p.key("name"));
            mysql.push(job);
        }
    }
    let mut media = Vec::new();
    for (i, m) in raw.media.iter().enumerate() {
        let p = root.key("media").index(i);
        if let Some(job) = super::resolve_media::media_job(&mut cx, m, &p) {
            job_name_unique(&mut cx, &mut names, &job.name, &p.key("name"));
            media.push(job);
        }
    }
    let email = raw
        .alerts
        .as_ref()
        .and_then(|a| a.email.as_ref())
        .and_then(|e| email(&mut cx, e, &root.key("alerts").key("email")));
    let alerts = super::resolve_alerts::alerts(&mut cx, raw.alerts.as_ref(), &root.key("alerts"));
    let health = super::resolve_checks::checks(
        &mut cx,
        raw.checks.as_ref(),
        &mysql,
        &media,
        agent.zone,
        &root.key("checks"),
    );
    let metrics_listen =
        super::resolve_checks::metrics(&mut cx, raw.metrics.as_ref(), &root.key("metrics"));
    let encryption = raw
        .encryption
        .as_ref()
        .and_then(|e| super::resolve_encryption::encryption(&mut cx, e, &root.key("encryption")));
    super::resolve_encryption::drills_need_identity(&mut cx, encryption.as_ref(), &mysql, &root);
    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    Ok(Config {
        file: absolute(file),
        agent,
        storage: storage.expect("storage resolved when there are no errors"),
        encryption,
        mysql,
        media,
        email,
        alerts,
        warnings: cx.warnings,
        health,
        metrics_listen,
    })
}

/// A serde/TOML syntax error as a positioned [`ConfigError`] with a hint.
fn serde_error(file: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let position = e.span().map(|s| line_col(text, s.start));
    let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
    let msg = e.message().trim().to_string();
    let hint = if let Some((field, expected)) = parse_unknown_field(&msg) {
        let exp: Vec<&str> = expected.iter().map(String::as_str).collect();
        match did_you_mean(&field, &exp) {
            Some(s) => Some(format!("unknown key `{field}`, did you mean `{s}`?")),
            None if exp.is_empty() => Some(format!("remove `{field}`")),
            None => Some(format!(
                "unknown key `{field}`; valid keys here: {}",
                exp.join(", ")
            )),
        }
    } else if msg.contains("duration")
        || msg.contains("time unit")
        || msg.contains("expected number")
    {
        Some("durations are written like \"30s\", \"5m\", \"4h\", \"1h 30m\"".to_string())
    } else if msg.starts_with("invalid type") {
        Some("check the value's type: strings need quotes, lists are [\"a\", \"b\"], numbers have none".to_string())
    } else {
        Some("see config/opsagent.example.toml for the syntax of every key".to_string())
    };
    ConfigError {
        file: file.to_path_buf(),
        position,
        key,
        message: msg,
        hint,
    }
}

/// The dotted key written at byte `offset`: the `[table]` header above it plus the key on its line.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let local = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let header = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (header, local) {
        (_, None) if line.trim_start().starts_with('[') => line
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string(),
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (None, Some(k)) => k,
        (Some(h), None) => h,
        (None, None) => String::new(),
    }
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
            .unwrap_or(Path::new("/var/lib/opsagent")),
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
        shutdown_grace: a.shutdown_grace.unwrap_or(Duration::from_secs(300)),
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

fn storage(cx: &mut Ctx, s: &RawStorage, hostname: &str, p: &KeyPath) -> Option<StorageSpec> {
    let prefix = storage_prefix(cx, s.prefix.as_deref(), hostname, &p.key("prefix"));
    match s.kind.as_deref() {
        None => {
            cx.missing(
                &p.key("type"),
                "type = \"local\" (a directory) or type = \"s3\" (S3, MinIO, Backblaze…)",
            );
            None
        }
        Some("local") => {
            for (k, set) in [
                ("bucket", s.bucket.is_some()),
                ("endpoint", s.endpoint.is_some()),
                ("region", s.region.is_some()),
                ("path_style", s.path_style.is_some()),
                ("access_key_id", s.access_key_id.is_some()),
                ("secret_access_key", s.secret_access_key.is_some()),
                ("secret_access_key_file", s.secret_access_key_file.is_some()),
            ] {
                if set {
                    cx.error(
                        &p.key(k),
                        format!("`{k}` applies to type = \"s3\", not \"local\""),
                        "remove it, or set type = \"s3\"",
                    );
                }
            }
            let Some(path) = &s.path else {
                cx.missing(
                    &p.key("path"),
                    "path = \"/srv/backups\": the directory backups are written to",
                );
                return None;
            };
            Some(StorageSpec::Local {
                path: absolute(path),
                prefix: prefix?,
            })
        }
        Some("s3") => super::resolve_s3::s3(cx, s, prefix, p),
        Some(other) => {
            let hint = match did_you_mean(other, &["local", "s3"]) {
                Some(s) => format!("did you mean \"{s}\"? storage types are \"local\" and \"s3\""),
                None => "storage types are \"local\" and \"s3\" (S3, MinIO, Backblaze B2, Wasabi… all speak S3)".to_string(),
            };
            cx.error(
                &p.key("type"),
                format!("unknown storage type `{other}`"),
                hint,
            );
            None
        }
    }
}

fn storage_prefix(
    cx: &mut Ctx,
    prefix: Option<&str>,
    hostname: &str,
    p: &KeyPath,
) -> Option<String> {
    let prefix = match prefix {
        None => format!("{hostname}/"),
        Some("") => String::new(),
        Some(x)
            if x.starts_with('/')
                || x.split('/').any(|seg| seg == ".." || seg == ".")
                || x.contains('\0') =>
        {
            cx.error(
                p,
                format!("prefix `{x}` is not a valid key prefix"),
                "use something like \"web-01/\": no leading `/`, no `.` or `..` segments",
            );
            return None;
        }
        Some(x) if x.ends_with('/') => x.to_string(),
        Some(x) => format!("{x}/"),
    };
    Some(prefix)
}

fn mysql_job(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<MysqlJob> {
    let name = job_name(cx, m.name.as_deref(), p);
    let databases = match &m.databases {
        None => {
            cx.missing(
                &p.key("databases"),
                "databases = [\"shop\"] or [\"*\"] for every non-system database",
            );
            None
        }
        Some(v) if v.is_empty() => {
            cx.error(
                &p.key("databases"),
                "the list is empty: this job would back up nothing",
                "name the databases, or use [\"*\"] for every non-system database",
            );
            None
        }
        Some(v) if v.iter().any(|d| d == "*") => {
            if v.len() > 1 {
                cx.error(
                    &p.key("databases"),
                    "\"*\" already means every database",
                    "use either [\"*\"] or a list of names",
                );
            }
            Some(Databases::All)
        }
        Some(v) => {
            for (i, d) in v.iter().enumerate() {
                // `/`, `\\`, `.` and spaces are fine in (quoted) names: MariaDB encodes them.
                if d.is_empty() || d.chars().count() > 64 || d.contains('\0') || d.ends_with(' ') {
                    cx.error(
                        &p.key("databases").index(i),
                        format!("`{d}` is not a valid database name"),
                        "MySQL names are 1 to 64 characters, without NUL or trailing spaces",
                    );
                } else if SYSTEM_DATABASES.contains(&d.to_ascii_lowercase().as_str()) {
                    cx.warn(&p.key("databases").index(i), format!("`{d}` is a system database"), "users and grants live in `mysql`; dumping it is fine but it is not restorable under another name");
                }
            }
            Some(Databases::List(v.clone()))
        }
    };
    let endpoint = mysql_endpoint(cx, m, p);
    let password = m
        .password_file
        .as_ref()
        .and_then(|f| secret_file(cx, f, &p.key("password_file")));
    let schedule = schedule(cx, m.schedule.as_deref(), &p.key("schedule"));
    let keep = keep(
        cx,
        m.keep.unwrap_or(RawKeep {
            last: Some(3),
            daily: Some(7),
            weekly: Some(4),
            monthly: Some(12),
            ..RawKeep::default()
        }),
        &p.key("keep"),
    );
    let verify_schedule = match m.verify_schedule.as_deref() {
        Some("off") | Some("never") => Some(None),
        other => self::schedule(
            cx,
            Some(other.unwrap_or("@weekly")),
            &p.key("verify_schedule"),
        )
        .map(Some),
    };
    let restore_password = m
        .restore_password_file
        .as_ref()
        .and_then(|f| secret_file(cx, f, &p.key("restore_password_file")));
    let compression_level = m.compression_level.unwrap_or(3);
    if !(1..=19).contains(&compression_level) {
        cx.error(
            &p.key("compression_level"),
            format!("compression level {compression_level} is out of range"),
            "use 1 (fastest) to 19 (smallest); 3 is the default",
        );
    }
    if let Some(u) = &m.user {
        if u.is_empty() {
            cx.error(
                &p.key("user"),
                "the user is empty",
                "remove `user` to use the client default, or name the MySQL user",
            );
        }
    }
    for (i, a) in m.extra_args.iter().enumerate() {
        if a.starts_with("--password") || a == "-p" || (a.starts_with("-p") && a.len() > 2) {
            cx.error(
                &p.key("extra_args").index(i),
                "a password on the dump command line is visible to every user in `ps`",
                "put it in a file and set password_file",
            );
        }
    }
    Some(MysqlJob {
        name: name?,
        databases: databases?,
        endpoint: endpoint?,
        user: m.user.clone(),
        password,
        schedule: schedule?,
        keep: keep?,
        dump_command: m.dump_command.clone(),
        extra_args: m.extra_args.clone(),
        compression_level,
        verify_schedule: verify_schedule?,
        restore_user: m.restore_user.clone(),
        restore_password,
    })
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

fn mysql_endpoint(cx: &mut Ctx, m: &RawMysql, p: &KeyPath) -> Option<MysqlEndpoint> {
    match &m.socket {
        Some(s) => {
            if m.host.is_some() || m.port.is_some() {
                cx.error(
                    &p.key("socket"),
                    "both `socket` and `host`/`port` are set",
                    "use either socket = \"/run/mysqld/mysqld.sock\" or host and port",
                );
                return None;
            }
            if !s.is_absolute() {
                cx.error(
                    &p.key("socket"),
                    format!("`{}` is a relative path", s.display()),
                    "the socket needs an absolute path, e.g. /run/mysqld/mysqld.sock",
                );
                return None;
            }
            Some(MysqlEndpoint::Socket(s.clone()))
        }
        None => {
            let host = m.host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
            if host.is_empty() || host.contains(char::is_whitespace) {
                cx.error(
                    &p.key("host"),
                    format!("`{host}` is not a host name"),
                    "e.g. host = \"127.0.0.1\"",
                );
                return None;
            }
            if m.port == Some(0) {
                cx.error(
                    &p.key("port"),
                    "port 0 is not a port",
                    "MySQL listens on 3306 by default",
                );
                return None;
            }
            Some(MysqlEndpoint::Tcp {
                host,
                port: m.port.unwrap_or(3306),
            })
        }
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
                let (msg, hint) = match e.split_once(" (hint: ") {
                    Some((m, h)) => (m.to_string(), h.trim_end_matches(')').to_string()),
                    None => (e, String::new()),
                };
                cx.error(p, msg, hint);
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

fn email(cx: &mut Ctx, e: &RawEmail, p: &KeyPath) -> Option<EmailSettings> {
    super::resolve_email::email(cx, e, p)
}
