//! Webhooks (`[[alerts.webhook]]`): the same alert groups as the mails, POSTed to a URL as a
//! generic JSON document, a Slack/Mattermost incoming-webhook message or an ntfy notification
//! ([`payload`]). The outbox (`alert/outbox.rs`) makes delivery durable and retries it; this
//! file only says what one attempt did: [`Delivery::Sent`] (2xx), [`Delivery::RetryLater`]
//! (no answer, 408, 429, 5xx) or [`Delivery::GaveUp`] (any other 4xx, a redirect).
//!
//! The URL usually carries a token: it is never logged, stored in the catalog or shown; only
//! `scheme://host/…` is ([`WebhookUrl::describe`]), and text from the server or the HTTP
//! library is scrubbed of it. Every request has a deadline and at most [`MAX_ANSWER`] bytes of
//! an answer are read.

pub mod payload;

use crate::catalog::OutboxRow;
use crate::secret::Secret;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use std::time::Duration;

/// The longest `Retry-After` obeyed (a receiver asking for days would silence the channel).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The most of an answer read (for the error message).
pub const MAX_ANSWER: usize = 4096;
/// The header carrying the notification's id (stable across retries: a receiver can drop a
/// duplicate after a crash between its 2xx and the outbox's delete).
pub const ID_HEADER: &str = "X-Opsagent-Id";

/// What a webhook's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"status", "host", "title", "alerts": [...]}`.
    Json,
    /// `{"text": ...}`: Slack and Mattermost incoming webhooks.
    Slack,
    /// A text body with `Title`, `Priority` and `Tags` headers (ntfy.sh).
    Ntfy,
}

impl WebhookFormat {
    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Ntfy => "ntfy",
        }
    }
}

/// A webhook URL; everything after the host is treated as a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookUrl(pub Secret);

impl WebhookUrl {
    /// `scheme://host/…`, for messages and `status`.
    pub fn describe(&self) -> String {
        match reqwest::Url::parse(self.0.expose()) {
            Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
            Err(_) => "(invalid URL)".into(),
        }
    }

    /// `text` without the URL or its secret part (path and query).
    pub fn scrub(&self, text: &str) -> String {
        let url = self.0.expose();
        let mut out = text.replace(url, &self.describe());
        if let Ok(u) = reqwest::Url::parse(url) {
            out = out.replace(u.as_str(), &self.describe());
            let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
            for secret in [format!("{}{query}", u.path()), u.path().to_string(), query] {
                if secret.len() > 1 {
                    out = out.replace(&secret, "/…");
                }
            }
        }
        out
    }
}

/// `[[alerts.webhook]]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// Its name (in logs, `status`, and the outbox's channel `webhook:<name>`).
    pub name: String,
    /// Where to POST.
    pub url: WebhookUrl,
    /// The body's format.
    pub format: WebhookFormat,
    /// Deadline of one request (connect, send, answer).
    pub timeout: Duration,
}

impl WebhookSettings {
    /// The outbox channel of this webhook.
    pub fn channel(&self) -> String {
        format!("webhook:{}", self.name)
    }
}

/// A failed attempt: which webhook, what happened, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("webhook {name} ({target}): {message} (hint: {hint})")]
pub struct WebhookError {
    /// The webhook's name.
    pub name: String,
    /// `scheme://host/…`.
    pub target: String,
    /// What went wrong (scrubbed of the URL).
    pub message: String,
    /// What to do.
    pub hint: &'static str,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// How long the server asked to wait (`Retry-After` on a 429 or 503), at most
    /// [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
}

/// What one attempt did.
#[derive(Debug)]
pub enum Delivery {
    /// The server answered 2xx: the notification is delivered.
    Sent(u16),
    /// Not now (no answer, 408, 429, 5xx): try again later.
    RetryLater(WebhookError),
    /// Refused for good (4xx, a redirect): the same request would be refused again.
    GaveUp(WebhookError),
}

/// One webhook with its HTTP client.
#[derive(Debug, Clone)]
pub struct Webhook {
    settings: WebhookSettings,
    client: reqwest::Client,
}

const HINT_DOWN: &str = "check the URL's host and port, and that this server can reach it (firewall, proxy); the notification stays in the outbox and is retried";
const HINT_BUSY: &str =
    "the receiver is failing or rate-limiting; the notification stays in the outbox and is retried";
const HINT_REDIRECT: &str =
    "the URL redirects; use the address it redirects to (https instead of http?)";
const HINT_AUTH: &str = "the token in the URL is wrong or was revoked: create a new webhook URL";
const HINT_GONE: &str = "the URL is wrong or the webhook was deleted at the receiver";
const HINT_PAYLOAD: &str = "the receiver refused the payload: check that `format` (json, slack, ntfy) is what it expects; its answer above says more";

impl Webhook {
    /// A client for `settings`: the deadline on every request, no redirects followed.
    pub fn new(settings: WebhookSettings) -> Result<Webhook, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("opsagent/", env!("CARGO_PKG_VERSION")))
            .build();
        match client {
            Ok(client) => Ok(Webhook { settings, client }),
            Err(e) => Err(Webhook::error(
                &settings,
                format!(
                    "cannot build an HTTP client: {}",
                    settings.url.scrub(&cause(&e))
                ),
                "report this as a bug",
                None,
            )),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    fn error(
        s: &WebhookSettings,
        message: String,
        hint: &'static str,
        status: Option<u16>,
    ) -> WebhookError {
        WebhookError {
            name: s.name.clone(),
            target: s.url.describe(),
            message,
            hint,
            status,
            retry_after: None,
        }
    }

    /// POSTs the outbox row's body.
    pub async fn deliver_row(&self, row: &OutboxRow) -> Delivery {
        self.post(&row.raw, &row.content_type, &row.headers, &row.message_id)
            .await
    }

    /// POSTs `body` once.
    pub async fn post(
        &self,
        body: &[u8],
        content_type: &str,
        headers: &[(String, String)],
        id: &str,
    ) -> Delivery {
        let mut req = self
            .client
            .post(self.settings.url.0.expose())
            .header(CONTENT_TYPE, content_type)
            .body(body.to_vec());
        for (n, v) in headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain([(ID_HEADER, id)])
        {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::from_str(v)) {
                req = req.header(n, v);
            }
        }
        let s = &self.settings;
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let message = if e.is_timeout() {
                    format!(
                        "no answer within {} (`timeout`)",
                        humantime::format_duration(s.timeout)
                    )
                } else if e.is_connect() {
                    format!("cannot connect: {}", s.url.scrub(&cause(&e)))
                } else {
                    format!("request failed: {}", s.url.scrub(&cause(&e)))
                };
                return Delivery::RetryLater(Webhook::error(s, message, HINT_DOWN, None));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Delivery::Sent(status.as_u16());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, chrono::Utc::now()));
        let answer = s.url.scrub(&read_answer(resp).await);
        let message = match answer.is_empty() {
            true => format!("answered {status}"),
            false => format!("answered {status}: {answer}"),
        };
        let code = status.as_u16();
        let fail = |hint| Webhook::error(s, message.clone(), hint, Some(code));
        match code {
            408 | 429 | 500..=599 | 100..=199 => Delivery::RetryLater(WebhookError {
                retry_after,
                ..fail(HINT_BUSY)
            }),
            300..=399 => Delivery::GaveUp(fail(HINT_REDIRECT)),
            401 | 403 => Delivery::GaveUp(fail(HINT_AUTH)),
            404 | 410 => Delivery::GaveUp(fail(HINT_GONE)),
            _ => Delivery::GaveUp(fail(HINT_PAYLOAD)),
        }
    }
}

/// A `Retry-After` value (delay-seconds or an HTTP date) as a wait from `now`, capped at
/// [`MAX_RETRY_AFTER`]; `None` when it cannot be read.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// At most [`MAX_ANSWER`] bytes of the answer, as one line of text.
async fn read_answer(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c[..c.len().min(MAX_ANSWER - buf.len())]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    line
}

/// The innermost cause of a reqwest error (`Connection refused (os error 111)`); the outer
/// ones quote the URL.
fn cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_described_and_scrubbed() {
        let u = WebhookUrl(Secret::new(
            "https://hooks.example.com/services/T0/B0/s3cr3t?x=1",
        ));
        assert_eq!(u.describe(), "https://hooks.example.com/…");
        let got = u.scrub("error sending request for url (https://hooks.example.com/services/T0/B0/s3cr3t?x=1): echo /services/T0/B0/s3cr3t");
        assert!(!got.contains("s3cr3t"), "{got}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_capped_at_an_hour() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 02 Dec 2026 08:05:00 GMT", now),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            retry_after("Wed, 02 Dec 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
