//! S3 Object Lock on every object opsagent writes to a storage with `object_lock`.
//!
//! opendal has no option for the lock headers, so they are added where its requests leave:
//! an HTTP transport ([`LockTransport`]) installed on that storage's operator. It sees each
//! signed request with the S3 call it is (opendal tags it), and for
//!
//! - `PutObject` and `CreateMultipartUpload` adds `x-amz-object-lock-mode` and
//!   `x-amz-object-lock-retain-until-date` (now + `days`),
//! - `PutObject` and `UploadPart` adds `Content-MD5` (S3 wants a checksum on every write to a
//!   bucket with object lock; MD5 is the one every S3 implementation accepts),
//!
//! then signs the request again (SigV4 signs every header). After a `CompleteMultipartUpload`
//! it sets the retention once more with `PutObjectRetention`, for servers that drop the lock
//! headers of a multipart upload: an object is locked before its upload reports success.
//!
//! Locks are per object, written with our clock, so prune knows when each one ends without
//! asking; the bucket needs object lock enabled (checked by `check-config --connect`), not a
//! default retention.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{header, HeaderValue, Request, Response};
use md5::Digest as _;
use opendal::raw::ServiceOperation;
use opendal::{Buffer, ErrorKind, HttpBody, HttpTransport, HttpTransporter};
use reqsign_aws_v4::Credential;
use reqsign_core::Signer;

/// `object_lock = { mode, days }` of an S3 storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// `COMPLIANCE` (nobody may shorten it, not even the account's root) rather than
    /// `GOVERNANCE` (a user with `s3:BypassGovernanceRetention` may).
    pub compliance: bool,
    /// Days an object stays locked after it is written.
    pub days: u32,
}

impl ObjectLock {
    /// The mode as S3 spells it.
    pub fn mode(&self) -> &'static str {
        if self.compliance {
            "COMPLIANCE"
        } else {
            "GOVERNANCE"
        }
    }

    /// When an object written at `at` stops being locked.
    pub fn until(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + chrono::Duration::days(i64::from(self.days))
    }
}

/// The transport that locks what it uploads; everything else passes through untouched.
pub(crate) struct LockTransport {
    inner: HttpTransporter,
    signer: Signer<Credential>,
    lock: ObjectLock,
}

impl LockTransport {
    /// Locks what goes through `inner`.
    pub(crate) fn new(
        inner: HttpTransporter,
        signer: Signer<Credential>,
        lock: ObjectLock,
    ) -> Self {
        LockTransport {
            inner,
            signer,
            lock,
        }
    }

    /// `req` with the lock headers and/or Content-MD5, signed again.
    async fn amend(
        &self,
        req: Request<Buffer>,
        lock: bool,
        md5: bool,
    ) -> opendal::Result<Request<Buffer>> {
        let (mut parts, body) = req.into_parts();
        let h = &mut parts.headers;
        h.remove(header::AUTHORIZATION);
        h.remove("x-amz-date");
        if lock {
            h.insert(
                "x-amz-object-lock-mode",
                HeaderValue::from_static(self.lock.mode()),
            );
            h.insert("x-amz-object-lock-retain-until-date", self.until()?);
        }
        if md5 {
            h.insert("content-md5", content_md5(body.clone())?);
        }
        self.sign(&mut parts).await?;
        Ok(Request::from_parts(parts, body))
    }

    /// The retain-until date for an object written now, as S3 wants it.
    fn until(&self) -> opendal::Result<HeaderValue> {
        let text = s3_date(self.lock.until(Utc::now()));
        HeaderValue::from_str(&text).map_err(|e| unexpected(format!("retain-until date: {e}")))
    }

    async fn sign(&self, parts: &mut http::request::Parts) -> opendal::Result<()> {
        self.signer
            .sign(parts, None)
            .await
            .map_err(|e| unexpected(format!("cannot sign the object lock request: {e}")))?;
        // As opendal does: the HTTP client sets Host itself.
        parts.headers.remove(header::HOST);
        Ok(())
    }

    /// `PutObjectRetention` on the object at `uri` (its query dropped).
    async fn put_retention(&self, uri: &http::Uri) -> opendal::Result<()> {
        let xml = retention_xml(self.lock, self.lock.until(Utc::now()));
        let url = format!(
            "{}://{}{}?retention",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default(),
            uri.path()
        );
        let body = Buffer::from(xml.into_bytes());
        let (mut parts, ()) = Request::put(&url)
            .header(header::CONTENT_TYPE, "application/xml")
            .header(header::CONTENT_LENGTH, body.len())
            .header("content-md5", content_md5(body.clone())?)
            .body(())
            .map_err(|e| unexpected(format!("PutObjectRetention request: {e}")))?
            .into_parts();
        self.sign(&mut parts).await?;
        let resp = self.inner.send(Request::from_parts(parts, body)).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().to_vec()).into_owned();
        let err = unexpected(format!(
            "the object was stored but its lock could not be set (PutObjectRetention: HTTP {status}: {})",
            s3_message(&text)
        ));
        Err(if status.is_server_error() {
            err.set_temporary()
        } else {
            err
        })
    }
}

impl HttpTransport for LockTransport {
    async fn fetch(&self, req: Request<Buffer>) -> opendal::Result<Response<HttpBody>> {
        let op = req.extensions().get::<ServiceOperation>().map(|o| o.0);
        match op {
            Some("PutObject") => self.inner.fetch(self.amend(req, true, true).await?).await,
            Some("CreateMultipartUpload") => {
                self.inner.fetch(self.amend(req, true, false).await?).await
            }
            Some("UploadPart") => self.inner.fetch(self.amend(req, false, true).await?).await,
            Some("CompleteMultipartUpload") => {
                let uri = req.uri().clone();
                let resp = self.inner.fetch(req).await?;
                if resp.status().is_success() {
                    self.put_retention(&uri).await?;
                }
                Ok(resp)
            }
            _ => self.inner.fetch(req).await,
        }
    }
}

/// A retain-until date as S3 wants it.
fn s3_date(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The `PutObjectRetention` body that locks an object in `lock`'s mode until `until`.
pub(crate) fn retention_xml(lock: ObjectLock, until: DateTime<Utc>) -> String {
    format!(
        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
         <RetainUntilDate>{}</RetainUntilDate></Retention>",
        lock.mode(),
        s3_date(until)
    )
}

/// `Content-MD5` of bytes given in pieces: base64 of their MD5.
pub(crate) fn md5_base64<B: AsRef<[u8]>>(pieces: impl IntoIterator<Item = B>) -> String {
    let mut md5 = md5::Md5::new();
    for p in pieces {
        md5.update(p.as_ref());
    }
    base64::engine::general_purpose::STANDARD.encode(md5.finalize())
}

/// `Content-MD5` of a body, as a header value.
fn content_md5(body: Buffer) -> opendal::Result<HeaderValue> {
    HeaderValue::from_str(&md5_base64(body)).map_err(|e| unexpected(format!("Content-MD5: {e}")))
}

/// `Code: Message` of an S3 error body, or the body's start.
fn s3_message(body: &str) -> String {
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find('<')? + start;
        Some(body[start..end].to_string())
    };
    match (field("Code"), field("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => body.chars().take(200).collect(),
    }
}

fn unexpected(message: String) -> opendal::Error {
    opendal::Error::new(ErrorKind::Unexpected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_and_until() {
        let lock = ObjectLock {
            compliance: false,
            days: 30,
        };
        assert_eq!(lock.mode(), "GOVERNANCE");
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(lock.until(at).to_rfc3339(), "2027-01-01T10:00:00+00:00");
    }

    #[test]
    fn md5_of_a_chunked_body_is_that_of_its_bytes() {
        let body = Buffer::from(vec![
            bytes::Bytes::from_static(b"hel"),
            bytes::Bytes::from_static(b"lo"),
        ]);
        // md5("hello") = 5d41402abc4b2a76b9719d911017c592
        assert_eq!(content_md5(body).unwrap(), "XUFAKrxLKna5cZ2REBfFkg==");
    }

    #[test]
    fn s3_error_message_extracted() {
        let body = "<Error><Code>InvalidRequest</Code><Message>Bucket is missing Object Lock Configuration</Message></Error>";
        assert_eq!(
            s3_message(body),
            "InvalidRequest: Bucket is missing Object Lock Configuration"
        );
        assert_eq!(s3_message("oops"), "oops");
    }
}
