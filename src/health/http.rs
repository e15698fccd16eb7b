//! `[[checks.http]]`: a request to `url` answers with an expected status (default any 2xx/3xx),
//! optionally containing a body substring, within latency thresholds; TLS verified unless
//! `tls_verify = false`. The value is the response time in milliseconds.

use super::state::{Level, Limits};
use super::{inner_budget, CheckSpec, Sample};
use std::sync::OnceLock;
use std::time::Instant;

/// An HTTP check.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The URL.
    pub url: String,
    /// `GET`, `HEAD`, `POST`…
    pub method: String,
    /// Accepted status codes; empty: 200–399.
    pub status: Vec<u16>,
    /// A substring the body must contain.
    pub body: Option<String>,
    /// Response-time thresholds in milliseconds.
    pub latency: Option<Limits>,
    /// Verify the server's certificate (default true).
    pub tls_verify: bool,
}

/// The HTTP client for checks with this `tls_verify`: one per process for each setting, shared by
/// every check (one connection pool, one TLS configuration); each request sets its own timeout.
pub fn client(spec: &Spec) -> reqwest::Client {
    static VERIFYING: OnceLock<reqwest::Client> = OnceLock::new();
    static TRUSTING: OnceLock<reqwest::Client> = OnceLock::new();
    let cell = if spec.tls_verify {
        &VERIFYING
    } else {
        &TRUSTING
    };
    cell.get_or_init(|| {
        reqwest::Client::builder()
            .danger_accept_invalid_certs(!spec.tls_verify)
            .user_agent(concat!("opsagent/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
    .clone()
}

/// Sends one request.
pub async fn probe(spec: &CheckSpec, client: &reqwest::Client) -> Sample {
    let super::ProbeSpec::Http(h) = &spec.probe else {
        return Sample::failed(spec, "internal: not an http check".into());
    };
    let method = reqwest::Method::from_bytes(h.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let start = Instant::now();
    let request = client.request(method, &h.url);
    let resp = match request.timeout(inner_budget(spec.timeout)).send().await {
        Ok(r) => r,
        Err(e) => return Sample::judged(spec, Level::Crit, None, describe(&h.url, &e)),
    };
    let status = resp.status().as_u16();
    let body = match &h.body {
        Some(needle) => match read_until(resp, needle.as_bytes(), MAX_BODY).await {
            Ok(b) => b,
            Err(e) => return Sample::judged(spec, Level::Crit, None, describe(&h.url, &e)),
        },
        None => {
            drop(resp);
            Body::default()
        }
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let ok_status = if h.status.is_empty() {
        (200..400).contains(&status)
    } else {
        h.status.contains(&status)
    };
    if !ok_status {
        let want = if h.status.is_empty() {
            "2xx/3xx".to_string()
        } else {
            format!("{:?}", h.status)
        };
        return Sample::judged(
            spec,
            Level::Crit,
            Some(ms),
            format!("{} answered {status}, expected {want}", h.url),
        );
    }
    if let Some(needle) = &h.body {
        if !body.found {
            let head: String = String::from_utf8_lossy(&body.head)
                .chars()
                .take(200)
                .collect();
            let within = if body.cut {
                format!(" in its first {} KiB", MAX_BODY / 1024)
            } else {
                String::new()
            };
            return Sample::judged(
                spec,
                Level::Crit,
                Some(ms),
                format!(
                    "{} answered {status} without {needle:?} in the body{within}; it starts: {head:?}",
                    h.url
                ),
            );
        }
    }
    let detail = format!("{} answered {status} in {ms:.0} ms", h.url);
    match h.latency {
        Some(l) => Sample::value(spec, ms, l, detail),
        None => Sample::judged(spec, Level::Ok, Some(ms), detail),
    }
}

/// The most of a body read to look for the `body` substring: an endpoint that never stops
/// sending (or sends gigabytes) costs at most this much memory and is judged on it.
pub const MAX_BODY: usize = 1 << 20;

/// What was read of a body.
#[derive(Debug, Default)]
struct Body {
    /// The needle was found.
    found: bool,
    /// The body was longer than the limit and not read to its end.
    cut: bool,
    /// Its first bytes, for the message when the needle is missing.
    head: Vec<u8>,
}

/// Reads `resp`'s body chunk by chunk until `needle` shows up or `max` bytes were read.
async fn read_until(
    mut resp: reqwest::Response,
    needle: &[u8],
    max: usize,
) -> Result<Body, reqwest::Error> {
    let mut seen: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = max - seen.len();
        let cut = chunk.len() > room;
        // Only where the new bytes can complete a match is searched again.
        let from = seen.len().saturating_sub(needle.len().saturating_sub(1));
        seen.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let found = contains(&seen[from..], needle);
        if found || cut {
            seen.truncate(256);
            return Ok(Body {
                found,
                cut: cut && !found,
                head: seen,
            });
        }
    }
    seen.truncate(256);
    Ok(Body {
        found: false,
        cut: false,
        head: seen,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn describe(url: &str, e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut msg = format!("{url}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    if e.is_timeout() {
        msg.push_str(" (timed out)");
    }
    msg
}
