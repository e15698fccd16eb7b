//! Open S3 multipart uploads under our prefix: list them and abort them.
//!
//! An upload that is neither completed nor aborted (its process was SIGKILLed, the machine lost
//! power) stays in the bucket, invisible to listings but billed, until someone aborts it. opendal
//! has no call that lists multipart uploads, so this file makes the two S3 requests itself
//! (`ListMultipartUploads`, `AbortMultipartUpload`) with reqwest, signed by reqsign, the signer
//! opendal uses (same SigV4 code, same credential chain: static keys, else the AWS environment,
//! profile and instance metadata). Deciding which uploads are stale is the caller's business
//! (`snapshot::orphan_uploads`); this file only talks to S3. (Writing multipart uploads is `write.rs`.) A local directory has no multipart uploads.

use crate::storage::error::{ErrorContext, Op};
use crate::storage::{Storage, StorageError, StorageSpec};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqsign_aws_v4::Credential;
use reqsign_core::Signer;
use std::time::Duration;

/// Per-request deadline: these are small requests.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Characters S3 wants percent-encoded in paths and query values (all but `A-Za-z0-9-_.~`).
const S3_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The object key it would create, relative to the storage prefix.
    pub key: String,
    /// S3's id of the upload.
    pub upload_id: String,
    /// When it was started (S3's clock).
    pub initiated: DateTime<Utc>,
}

/// A client for the multipart calls on one bucket and prefix.
pub struct Uploads {
    http: reqwest::Client,
    signer: Signer<Credential>,
    /// `https://host[:port]/bucket` (path style) or `https://bucket.host[:port]` (virtual host).
    pub(super) base: String,
    /// The normalised prefix (`web-01/` or empty).
    prefix: String,
    /// [`Storage::describe`], for errors.
    pub(super) describe: String,
}

impl Uploads {
    /// A client for `spec`, or `None` for storage without multipart uploads (a directory).
    /// No I/O.
    pub fn open(spec: &StorageSpec) -> Result<Option<Uploads>, StorageError> {
        let StorageSpec::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            access_key_id,
            secret_access_key,
            ..
        } = spec
        else {
            return Ok(None);
        };
        // (The spec without its lock: opening a locked storage opens this client.)
        let mut plain = spec.clone();
        if let StorageSpec::S3 { object_lock, .. } = &mut plain {
            *object_lock = None;
        }
        let describe = Storage::open(&plain)?.describe();
        let config = |reason: String| StorageError::Config {
            backend: describe.clone(),
            reason,
            hint: "check `endpoint` in the storage settings".into(),
        };
        let endpoint = endpoint
            .clone()
            .or_else(crate::storage::s3::env_endpoint)
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let url = reqwest::Url::parse(endpoint.trim_end_matches('/'))
            .map_err(|e| config(format!("endpoint `{endpoint}`: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| config(format!("endpoint `{endpoint}` has no host")))?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let base = if *path_style {
            format!("{}://{host}{port}/{}", url.scheme(), encode(bucket))
        } else {
            format!("{}://{bucket}.{host}{port}", url.scheme())
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| config(format!("cannot build an HTTP client: {e}")))?;
        let signer = crate::storage::sign::signer(
            region,
            access_key_id.as_deref(),
            secret_access_key.as_ref(),
            Send(http.clone()),
        );
        Ok(Some(Uploads {
            http,
            signer,
            base,
            prefix: crate::storage::key::normalize_prefix(prefix)
                .map_err(|e| config(e.to_string()))?,
            describe,
        }))
    }

    /// Every open upload under our prefix, oldest first.
    pub async fn list(&self) -> Result<Vec<Upload>, StorageError> {
        let ctx = ErrorContext::new(&self.describe, Op::List, "");
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut url = format!("{}/?uploads&prefix={}", self.base, encode(&self.prefix));
            if let Some((key, id)) = &marker {
                url += &format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(key),
                    encode(id)
                );
            }
            let body = self.call(http::Method::GET, &url, &ctx).await?;
            let page: ListResult = quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                ctx.failed(
                    format!("unexpected ListMultipartUploads answer: {e}"),
                    "is the endpoint an S3 service?",
                )
            })?;
            for u in page.uploads {
                if let Some(key) = u.key.strip_prefix(&self.prefix) {
                    out.push(Upload {
                        key: key.to_string(),
                        upload_id: u.upload_id,
                        initiated: u.initiated,
                    });
                }
            }
            let next = (page.next_key_marker, page.next_upload_id_marker);
            if !page.is_truncated || marker.as_ref() == Some(&next) {
                break;
            }
            marker = Some(next);
        }
        out.sort_by(|a, b| (a.initiated, &a.key).cmp(&(b.initiated, &b.key)));
        Ok(out)
    }

    /// Aborts `upload`; one that is already gone (completed or aborted meanwhile) is fine.
    pub async fn abort(&self, upload: &Upload) -> Result<(), StorageError> {
        let ctx = ErrorContext::new(&self.describe, Op::Abort, &upload.key);
        let url = format!(
            "{}?uploadId={}",
            self.object_url(&upload.key),
            encode(&upload.upload_id)
        );
        match self.call(http::Method::DELETE, &url, &ctx).await {
            Err(StorageError::NotFound { .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The URL of the object `key` (relative to the prefix), without a query.
    pub(super) fn object_url(&self, key: &str) -> String {
        let path: Vec<String> = format!("{}{}", self.prefix, key)
            .split('/')
            .map(encode)
            .collect();
        format!("{}/{}", self.base, path.join("/"))
    }

    /// One signed request with an empty body; the response body on 2xx.
    pub(super) async fn call(
        &self,
        method: http::Method,
        url: &str,
        ctx: &ErrorContext<'_>,
    ) -> Result<Bytes, StorageError> {
        let (_, body) = self.send(method, url, Vec::new(), &[], ctx).await?;
        Ok(body)
    }

    /// One signed request with `body` and `headers`; the response headers and body on 2xx.
    pub(super) async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
        ctx: &ErrorContext<'_>,
    ) -> Result<(reqwest::header::HeaderMap, Bytes), StorageError> {
        use sha2::Digest as _;
        let sha = hex::encode(sha2::Sha256::digest(&body));
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-amz-content-sha256", sha);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let (mut parts, ()) = req
            .body(())
            .map_err(|e| ctx.failed(e, "report this as a bug"))?
            .into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| {
            ctx.failed(
                format!("cannot sign the request: {e}"),
                "check the S3 credentials (keys, AWS environment or profile)",
            )
        })?;
        let req = http::Request::from_parts(parts, body);
        let req =
            reqwest::Request::try_from(req).map_err(|e| ctx.failed(e, "report this as a bug"))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| ctx.unreachable(cause(&e), 1))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ctx.unreachable(cause(&e), 1))?;
        match status.as_u16() {
            200..=299 => Ok((headers, body)),
            404 => Err(ctx.not_found()),
            403 => Err(ctx.denied(
                s3_error(&body, status),
                "the key needs s3:ListBucketMultipartUploads and s3:AbortMultipartUpload",
            )),
            _ => Err(ctx.failed(s3_error(&body, status), "retry later; check the S3 service")),
        }
    }
}

/// The innermost cause of a reqwest error (`Connection refused (os error 111)`).
fn cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

/// `Code: Message` from an S3 error body, else the HTTP status.
pub(super) fn s3_error(body: &[u8], status: reqwest::StatusCode) -> String {
    match quick_xml::de::from_reader::<_, S3Error>(body) {
        Ok(e) => format!("{}: {}", e.code, e.message)
            .trim_end_matches([':', ' '])
            .to_string(),
        Err(_) => format!("HTTP {status}"),
    }
}

pub(super) fn encode(s: &str) -> String {
    utf8_percent_encode(s, S3_ENCODE).to_string()
}

/// reqsign's HTTP hook (instance metadata, STS) over our reqwest client.
#[derive(Debug)]
struct Send(reqwest::Client);

impl reqsign_core::HttpSend for Send {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let err = |e: reqwest::Error| reqsign_core::Error::unexpected(e.to_string());
        let req = reqwest::Request::try_from(req).map_err(err)?;
        let resp = self.0.execute(req).await.map_err(err)?;
        let mut out = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let body = resp.bytes().await.map_err(err)?;
        out.body(body)
            .map_err(|e| reqsign_core::Error::unexpected(e.to_string()))
    }
}

/// `ListMultipartUploadsResult`, the parts we read.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default, rename = "Upload")]
    uploads: Vec<RawUpload>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: String,
    #[serde(default)]
    next_upload_id_marker: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawUpload {
    key: String,
    upload_id: String,
    initiated: DateTime<Utc>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Error {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answer_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><NextKeyMarker>web-01/b</NextKeyMarker>
  <NextUploadIdMarker>id2</NextUploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>web-01/a b</Key><UploadId>id1</UploadId><Initiated>2026-11-20T07:30:00.000Z</Initiated>
    <StorageClass>STANDARD</StorageClass></Upload>
  <Upload><Key>web-01/b</Key><UploadId>id2</UploadId><Initiated>2026-11-20T07:31:00Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let r: ListResult = quick_xml::de::from_reader(xml.as_bytes()).unwrap();
        assert_eq!(r.uploads.len(), 2);
        assert_eq!(r.uploads[0].key, "web-01/a b");
        assert_eq!(
            r.uploads[1].initiated.to_rfc3339(),
            "2026-11-20T07:31:00+00:00"
        );
        assert!(r.is_truncated);
        assert_eq!(
            (r.next_key_marker.as_str(), r.next_upload_id_marker.as_str()),
            ("web-01/b", "id2")
        );
        let empty = r#"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        let r: ListResult = quick_xml::de::from_reader(empty.as_bytes()).unwrap();
        assert!(r.uploads.is_empty() && !r.is_truncated);
    }

    #[test]
    fn s3_errors_and_encoding() {
        let body = b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
        assert_eq!(
            s3_error(body, reqwest::StatusCode::FORBIDDEN),
            "AccessDenied: no"
        );
        assert_eq!(
            s3_error(b"", reqwest::StatusCode::BAD_GATEWAY),
            "HTTP 502 Bad Gateway"
        );
        assert_eq!(encode("a b/ü~x"), "a%20b%2F%C3%BC~x");
    }

    #[test]
    fn urls_follow_path_style_and_local_has_none() {
        let spec = |path_style| StorageSpec::S3 {
            bucket: "backups".into(),
            prefix: "web-01".into(),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: "us-east-1".into(),
            path_style,
            access_key_id: Some("AK".into()),
            secret_access_key: Some(crate::secret::Secret::new("SK")),
            object_lock: None,
        };
        let u = Uploads::open(&spec(true)).unwrap().unwrap();
        assert_eq!(
            (u.base.as_str(), u.prefix.as_str()),
            ("http://127.0.0.1:9000/backups", "web-01/")
        );
        let u = Uploads::open(&spec(false)).unwrap().unwrap();
        assert_eq!(u.base, "http://backups.127.0.0.1:9000");
        let local = StorageSpec::Local {
            path: "/srv/b".into(),
            prefix: String::new(),
        };
        assert!(Uploads::open(&local).unwrap().is_none());
    }
}
