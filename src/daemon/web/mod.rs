//! `[web] listen`: the read-only status page. `/` shows the host, every check (state, since,
//! value, a sparkline), every job (last backup, last drill, RTO, size trend), the alerts,
//! silences and the outbox; `/check/NAME` one check's charts (6 hours, 2 days, 90 days);
//! `/api/status` the `status --json` document ([`super::report`]); `/metrics` too when
//! `[metrics] listen` is the same address. Off by default.
//!
//! A small hand-rolled HTTP/1.1 server, like the metrics endpoint's: one request per
//! connection, each connection its own task with a deadline ([`CLIENT_TIMEOUT`]) and a bounded
//! request ([`MAX_REQUEST`]); at most [`MAX_CONNECTIONS`] at once, the next refused with a
//! 503 at once, so a slow or hostile client stalls nothing (the health watch, the scheduler and
//! alerting are other tasks; pages are rendered on the blocking pool). Every answer carries
//! the security headers ([`security_headers`]). Off loopback, `config` has made sure there is
//! a password: HTTP basic auth, compared in constant time ([`auth`]).

pub mod auth;
pub mod page;
pub mod svg;

use crate::catalog::Catalog;
use crate::config::Config;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// The most a request's head may be.
pub const MAX_REQUEST: usize = 8 << 10;
/// How long a client has to send its request and take the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection needs.
struct Shared {
    config: watch::Receiver<Arc<Config>>,
    catalog: Arc<Catalog>,
    password: Option<auth::Password>,
    /// Job names for `/metrics`, when this server also answers it.
    metrics: bool,
    headers: String,
}

/// The security headers of every answer: a Content-Security-Policy that allows nothing but the
/// page's own style sheet (by its hash), no sniffing, no framing, no referrer, no caching.
pub fn security_headers() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(page::CSS));
    format!(
        "Content-Security-Policy: default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\nCache-Control: no-store\r\n"
    )
}

/// Binds `addr` and serves until the task is dropped; `config` follows reloads. With
/// `metrics`, `/metrics` is answered too (`[metrics] listen` on the same address).
pub async fn serve(
    addr: SocketAddr,
    password: Option<&crate::secret::Secret>,
    config: watch::Receiver<Arc<Config>>,
    catalog: Arc<Catalog>,
    metrics: bool,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, auth = password.is_some(), "status page on http://{addr}/");
    let shared = Arc::new(Shared {
        config,
        catalog,
        password: password.map(|p| auth::Password::new(p.expose())),
        metrics,
        headers: security_headers(),
    });
    Ok(tokio::spawn(accept_loop(listener, shared)))
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let sock = crate::metrics::accept_backing_off(&listener, "status page").await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Busy: say so at once, read what the client sent for a moment (closing a socket
            // with unread input resets it before the answer is read), close. As many of these
            // as pages at most; beyond that the connection is just closed.
            if let Ok(busy) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _busy = busy;
                    let mut sock = sock;
                    let _ = tokio::time::timeout(BUSY_TIMEOUT, refuse(&mut sock)).await;
                });
            }
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut sock = sock;
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, connection(&mut sock, &shared)).await;
        });
    }
}

/// How long a refused connection is given to take its 503.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Answers 503 and drains what the client sent until it closes (or the caller's deadline).
async fn refuse(sock: &mut TcpStream) {
    let _ = sock
        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        .await;
    shutdown_draining(sock).await;
}

/// Shuts the writing side, then reads what the client still sends until it closes: closing a
/// socket with unread input (a request cut at [`MAX_REQUEST`]) resets it before the client has
/// read the answer.
async fn shutdown_draining(sock: &mut TcpStream) {
    let _ = sock.shutdown().await;
    let mut sink = [0u8; 1024];
    while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A response: status line, content type, body.
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    extra: &'static str,
}

impl Answer {
    fn text(status: &'static str, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n").into_bytes(),
            extra: "",
        }
    }
}

/// Reads the request head (up to the blank line), at most [`MAX_REQUEST`] bytes.
async fn read_head(sock: &mut TcpStream) -> Result<String, Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock
            .read(&mut chunk)
            .await
            .map_err(|_| Answer::text("400 Bad Request", "bad request"))?;
        if n == 0 {
            return Err(Answer::text("400 Bad Request", "incomplete request"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        if buf.len() > MAX_REQUEST {
            return Err(Answer::text(
                "431 Request Header Fields Too Large",
                "request too large",
            ));
        }
    }
}

async fn connection(sock: &mut TcpStream, shared: &Arc<Shared>) {
    let (answer, head_only) = match read_head(sock).await {
        Ok(head) => {
            let head_only = head.starts_with("HEAD ");
            (respond(&head, shared).await, head_only)
        }
        Err(a) => (a, false),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}{}\r\n",
        answer.status,
        answer.content_type,
        answer.body.len(),
        shared.headers,
        answer.extra
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&answer.body);
    }
    drop(answer);
    let _ = sock.write_all(&out).await;
    drop(out);
    give_back_memory();
    let _ = tokio::time::timeout(BUSY_TIMEOUT, shutdown_draining(sock)).await;
}

/// Returns the heap a page was rendered in to the system: a page of 100 checks takes a few
/// MiB while it is built (on a blocking-pool thread, in that thread's malloc arena), which
/// glibc would otherwise keep, and the idle daemon's RSS would grow by that much.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; glibc serialises it with allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Header `name`'s value in `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Whether a `Host` header names this machine by address or as `localhost`. A page without a
/// password answers only those: a web page elsewhere that points its own name at 127.0.0.1
/// (DNS rebinding) must not read the status through a visitor's browser or SSH tunnel.
fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn respond(head: &str, shared: &Arc<Shared>) -> Answer {
    let line = head.split("\r\n").next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match &shared.password {
        // `/metrics` on the shared socket answers as the metrics endpoint alone does.
        None if !(header(head, "host").is_none_or(local_host)
            || (shared.metrics && target == "/metrics")) =>
        {
            return Answer::text(
                "421 Misdirected Request",
                "without a password the status page answers only to its address or localhost",
            );
        }
        None => {}
        Some(p) if !p.admits(header(head, "authorization")) => {
            return Answer {
                extra: "WWW-Authenticate: Basic realm=\"opsagent\", charset=\"UTF-8\"\r\n",
                ..Answer::text(
                    "401 Unauthorized",
                    "this page needs the password of [web] password_file",
                )
            };
        }
        Some(_) => {}
    }
    if method != "GET" && method != "HEAD" {
        return Answer {
            extra: "Allow: GET, HEAD\r\n",
            ..Answer::text("405 Method Not Allowed", "read-only: GET only")
        };
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let route = match path {
        "/" => Route::Index,
        "/api/status" => Route::Json,
        "/metrics" if shared.metrics => Route::Metrics,
        p => match p.strip_prefix("/check/") {
            Some(n) if !n.is_empty() => Route::Check(
                percent_encoding::percent_decode_str(n)
                    .decode_utf8_lossy()
                    .into_owned(),
            ),
            _ => return Answer::text("404 Not Found", "not found: try /"),
        },
    };
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || render(route, &shared))
        .await
        .unwrap_or_else(|_| Answer::text("500 Internal Server Error", "the page failed"))
}

enum Route {
    Index,
    Json,
    Metrics,
    Check(String),
}

fn render(route: Route, shared: &Shared) -> Answer {
    let config = shared.config.borrow().clone();
    let now = chrono::Utc::now();
    let cat = &shared.catalog;
    if let Route::Metrics = route {
        let jobs: Vec<String> = config.job_names().iter().map(|s| s.to_string()).collect();
        return Answer {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: crate::metrics::render(cat, &jobs).into_bytes(),
            extra: "",
        };
    }
    let report = match super::report::Report::build(&config, cat, now) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "status page cannot read the catalog");
            return Answer::text(
                "500 Internal Server Error",
                "cannot read the catalog; see the journal",
            );
        }
    };
    let thresholds = crate::config::thresholds(&config.health);
    let cx = page::Context {
        catalog: cat,
        thresholds: &thresholds,
        zone: config.agent.zone,
        now,
    };
    let html = |body: Vec<u8>| Answer {
        status: "200 OK",
        content_type: "text/html; charset=utf-8",
        body,
        extra: "",
    };
    let result = match route {
        Route::Json => {
            let doc = super::report::to_json(&report, now);
            return Answer {
                status: "200 OK",
                content_type: "application/json",
                body: serde_json::to_vec_pretty(&doc).unwrap_or_default(),
                extra: "",
            };
        }
        Route::Index => page::index(&report, &cx).map(|s| html(s.into_bytes())),
        Route::Check(name) => page::check(&report, &name, &cx).map(|s| match s {
            Some(s) => html(s.into_bytes()),
            None => Answer::text("404 Not Found", "no such check"),
        }),
        Route::Metrics => unreachable!("answered above"),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "status page cannot read the catalog");
        Answer::text(
            "500 Internal Server Error",
            "cannot read the catalog; see the journal",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for h in [
            "127.0.0.1:9188",
            "localhost:9188",
            "LOCALHOST",
            "[::1]:9188",
            "10.0.0.5",
        ] {
            assert!(local_host(h), "{h}");
        }
        for h in [
            "evil.example:9188",
            "evil.example",
            "127.0.0.1.nip.io:9188",
            "[evil]:1",
        ] {
            assert!(!local_host(h), "{h}");
        }
    }
}
