//! `[web]`: the read-only status page (`listen`, `password_file`). Off by default; on a
//! loopback address it needs nothing more, anywhere else a password (HTTP basic auth).

use super::resolve::{secret_file, Ctx};
use super::span::KeyPath;
use super::WebSettings;
use serde::Deserialize;
use std::path::PathBuf;

/// `[web]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Address of the status page (`127.0.0.1:9188`); off when absent.
    pub listen: Option<String>,
    /// The password of HTTP basic auth (any user name), on one line; required off loopback.
    pub password_file: Option<PathBuf>,
}

/// `[web]`, resolved: `None` when off.
pub(super) fn web(cx: &mut Ctx, r: Option<&RawWeb>, p: &KeyPath) -> Option<WebSettings> {
    let r = r?;
    let password =
        (r.password_file.as_ref()).and_then(|f| secret_file(cx, f, &p.key("password_file")));
    let l = r.listen.as_ref()?;
    let listen: std::net::SocketAddr = match l.parse() {
        Ok(a) => a,
        Err(_) => {
            cx.error(
                &p.key("listen"),
                format!("`{l}` is not an address:port"),
                "e.g. listen = \"127.0.0.1:9188\" (loopback; reach it through an SSH tunnel)",
            );
            return None;
        }
    };
    if !listen.ip().is_loopback() && r.password_file.is_none() {
        cx.error(
            &p.key("listen"),
            format!("`{l}` is not a loopback address and [web] has no password_file"),
            "the status page shows this host's checks, jobs and alerts: keep listen on 127.0.0.1, or set password_file = \"/etc/opsagent/secrets/web\" (a password on one line; the page then asks for it with HTTP basic auth, any user name)",
        );
        return None;
    }
    if matches!(&password, Some(s) if s.is_empty()) {
        cx.error(
            &p.key("password_file"),
            "the password file is empty",
            "write the password on one line",
        );
        return None;
    }
    Some(WebSettings { listen, password })
}
