//! S3 server for tests: `moto_server -H 127.0.0.1 -p PORT` (moto 5, in-memory, path-style URLs).
//!
//! moto accepts any credentials and does not verify signatures, so the helpers here talk plain
//! HTTP with `ureq` and a dummy `Authorization` header (unsigned requests count as anonymous and
//! may not read objects): create buckets, put/get/list objects and multipart uploads, to set up
//! and check what the code under test did through its own S3 client (endpoint [`S3Server::endpoint`],
//! region [`REGION`], keys [`ACCESS_KEY`]/[`SECRET_KEY`], path-style).
//!
//! [`S3Server::stop`] / [`S3Server::restart`] simulate an outage: while stopped the port stays
//! reserved (bound, not listening: connections are refused) and the restarted server listens on
//! the same port. moto keeps its state in memory, so a restart starts empty.

use super::{
    cleanup_at_exit, kill_child, listens_on, log_file, restart_on_port, server_dir, spawn,
    start_on_free_port, unique_name, wait_until_ready, PortReservation, StartError,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use ureq::http::{Request, Response};
use ureq::Body;

pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing-secret";
pub const REGION: &str = "us-east-1";

/// moto does not check signatures, but it treats requests without any `Authorization` as
/// anonymous and refuses anonymous reads of objects (403): the helpers send this dummy one.
const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000";

pub struct S3Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    reservation: Option<PortReservation>,
    agent: ureq::Agent,
    owned: bool,
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    ureq::Agent::new_with_config(config)
}

impl S3Server {
    /// Starts a server owned by the caller; it is killed and its directory removed on drop.
    pub fn start() -> S3Server {
        let mut s = S3Server {
            port: 0,
            dir: server_dir("s3"),
            child: None,
            reservation: None,
            agent: agent(),
            owned: true,
        };
        start_on_free_port("S3Server", |port| {
            s.port = port;
            s.launch()
        });
        s
    }

    /// One server per test binary, started on first use, killed when the binary exits.
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut s = S3Server::start();
            s.owned = false;
            cleanup_at_exit(s.child.as_ref().map(|c| c.id()), s.dir.clone());
            s
        })
    }

    fn launch(&mut self) -> Result<(), StartError> {
        let log = self.dir.join("moto.log");
        let (out, err) = log_file(&log, &format!("moto_server on port {}", self.port));
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .current_dir(&self.dir)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = spawn(cmd).unwrap_or_else(|e| {
            panic!("S3Server: cannot run moto_server ({e}); run scripts/install-test-deps")
        });
        let (url, pid, port) = (format!("{}/", self.endpoint()), child.id(), self.port);
        let agent = self.agent.clone();
        let probe = move || {
            listens_on(pid, port)
                && agent
                    .get(&url)
                    .config()
                    .timeout_global(Some(Duration::from_secs(2)))
                    .build()
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .is_some_and(|b| b.contains("ListAllMyBucketsResult"))
        };
        wait_until_ready("moto_server", &mut child, &log, probe)?;
        self.child = Some(child);
        Ok(())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server; the port stays reserved (connections are refused) until `restart`.
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
        if self.reservation.is_none() {
            self.reservation = Some(PortReservation::hold("S3Server", self.port));
        }
    }

    /// Starts a fresh (empty) server on the same port; stops the running one first if needed.
    pub fn restart(&mut self) {
        self.stop();
        restart_on_port("S3Server", self.port, || {
            self.reservation = None;
            self.launch()
        });
    }

    fn url(&self, bucket: &str, key: &str, query: &str) -> String {
        let mut u = format!("{}/{}", self.endpoint(), encode(bucket, false));
        if !key.is_empty() {
            u.push('/');
            u.push_str(&encode(key, true));
        }
        if !query.is_empty() {
            u.push('?');
            u.push_str(query);
        }
        u
    }

    /// Sends a request with the dummy `Authorization` header; panics on a transport error.
    /// `body` is `Some` (possibly empty) for PUT and POST, `None` for GET and DELETE.
    fn call(&self, method: &str, url: &str, body: Option<&[u8]>) -> Response<Body> {
        let req = Request::builder().method(method).uri(url);
        let req = req.header("authorization", AUTHORIZATION);
        let result = match body {
            Some(b) => self.agent.run(req.body(b).expect("valid request")),
            None => self.agent.run(req.body(()).expect("valid request")),
        };
        result.unwrap_or_else(|e| panic!("S3 {method} {url}: {e}"))
    }

    /// Sends a request and returns (status, body); panics on a transport error.
    fn request(&self, method: &str, url: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let mut resp = self.call(method, url, body);
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("S3 {method} {url}: reading body: {e}"));
        (status, body)
    }

    fn expect_ok(&self, method: &str, url: &str, body: Option<&[u8]>) -> String {
        let (status, body) = self.request(method, url, body);
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(
            (200..300).contains(&status),
            "S3 {method} {url}: HTTP {status}: {text}"
        );
        text
    }

    /// Creates a bucket `t-XXXXXXXX` with S3 Object Lock enabled and, when `days` is set, a
    /// default retention of `GOVERNANCE` for that many days; returns the name.
    pub fn new_locked_bucket(&self, days: Option<u32>) -> String {
        let name = unique_name("t");
        let req = Request::builder()
            .method("PUT")
            .uri(self.url(&name, "", ""))
            .header("authorization", AUTHORIZATION)
            .header("x-amz-bucket-object-lock-enabled", "true");
        let resp = self.agent.run(req.body(&b""[..]).expect("valid request"));
        let status = resp.map(|r| r.status().as_u16()).unwrap_or(0);
        assert!(
            (200..300).contains(&status),
            "create locked bucket: HTTP {status}"
        );
        if let Some(days) = days {
            let xml = format!(
                "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
                 <Mode>GOVERNANCE</Mode><Days>{days}</Days></DefaultRetention></Rule>\
                 </ObjectLockConfiguration>"
            );
            self.expect_ok(
                "PUT",
                &self.url(&name, "", "object-lock"),
                Some(xml.as_bytes()),
            );
        }
        name
    }

    pub fn create_bucket(&self, name: &str) {
        self.expect_ok("PUT", &self.url(name, "", ""), Some(b""));
    }

    /// Creates a bucket named `t-XXXXXXXX` and returns the name.
    pub fn new_bucket(&self) -> String {
        let name = unique_name("t");
        self.create_bucket(&name);
        name
    }

    /// Every object in the bucket as (key, size), in key order (follows continuation tokens).
    pub fn list_keys(&self, bucket: &str) -> Vec<(String, u64)> {
        self.list_keys_paged(bucket, 1000)
    }

    /// [`S3Server::list_keys`] asking for `page_size` keys per ListObjectsV2 request.
    pub fn list_keys_paged(&self, bucket: &str, page_size: u32) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = format!("list-type=2&max-keys={page_size}");
            if let Some(t) = &token {
                q.push_str("&continuation-token=");
                q.push_str(&encode(t, false));
            }
            let xml = self.expect_ok("GET", &self.url(bucket, "", &q), None);
            for c in elements(&xml, "Contents") {
                let key = element(c, "Key").map(unescape).unwrap_or_default();
                let size = element(c, "Size")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                out.push((key, size));
            }
            token = element(&xml, "NextContinuationToken").map(unescape);
            if element(&xml, "IsTruncated") != Some("true") || token.is_none() {
                return out;
            }
        }
    }

    /// The object's bytes, or `None` if it does not exist (HTTP 404).
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let url = self.url(bucket, key, "");
        let (status, body) = self.request("GET", &url, None);
        match status {
            200..=299 => Some(body),
            404 => None,
            _ => panic!(
                "S3 GET {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        self.expect_ok("PUT", &self.url(bucket, key, ""), Some(body));
    }

    pub fn delete_object(&self, bucket: &str, key: &str) {
        self.expect_ok("DELETE", &self.url(bucket, key, ""), None);
    }

    /// Every version and delete marker in the bucket, as (key, version id, is a delete
    /// marker), in the server's order.
    pub fn list_versions(&self, bucket: &str) -> Vec<(String, String, bool)> {
        let xml = self.expect_ok(
            "GET",
            &self.url(bucket, "", "versions&max-keys=100000"),
            None,
        );
        let mut out = Vec::new();
        for (tag, marker) in [("Version", false), ("DeleteMarker", true)] {
            for v in elements(&xml, tag) {
                let key = element(v, "Key").map(unescape).unwrap_or_default();
                let id = element(v, "VersionId").map(unescape).unwrap_or_default();
                out.push((key, id, marker));
            }
        }
        out
    }

    /// Deletes one version by id, as a client with the bucket's key may try; the HTTP status
    /// (S3 answers 403 AccessDenied for a version still locked).
    pub fn delete_version(&self, bucket: &str, key: &str, version: &str) -> u16 {
        let q = format!("versionId={}", encode(version, false));
        self.request("DELETE", &self.url(bucket, key, &q), None).0
    }

    /// The lock of the object's current version as (mode, retain-until date), if it has one.
    pub fn object_retention(&self, bucket: &str, key: &str) -> Option<(String, String)> {
        let resp = self.call("HEAD", &self.url(bucket, key, ""), None);
        let header = |name: &str| Some(resp.headers().get(name)?.to_str().ok()?.to_string());
        Some((
            header("x-amz-object-lock-mode")?,
            header("x-amz-object-lock-retain-until-date")?,
        ))
    }

    /// (key, upload id) of every multipart upload that was started and neither completed nor
    /// aborted.
    pub fn list_multipart_uploads(&self, bucket: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q = "uploads".to_string();
            if let Some((k, u)) = &markers {
                q.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(k, false),
                    encode(u, false)
                ));
            }
            let xml = self.expect_ok("GET", &self.url(bucket, "", &q), None);
            for u in elements(&xml, "Upload") {
                let key = element(u, "Key").map(unescape).unwrap_or_default();
                let id = element(u, "UploadId").map(unescape).unwrap_or_default();
                out.push((key, id));
            }
            let next = (
                element(&xml, "NextKeyMarker")
                    .map(unescape)
                    .unwrap_or_default(),
                element(&xml, "NextUploadIdMarker")
                    .map(unescape)
                    .unwrap_or_default(),
            );
            if element(&xml, "IsTruncated") != Some("true") || markers.as_ref() == Some(&next) {
                return out;
            }
            markers = Some(next);
        }
    }

    /// Starts a multipart upload and returns its upload id.
    pub fn create_multipart_upload(&self, bucket: &str, key: &str) -> String {
        let xml = self.expect_ok("POST", &self.url(bucket, key, "uploads"), Some(b""));
        element(&xml, "UploadId")
            .map(unescape)
            .unwrap_or_else(|| panic!("S3 create multipart upload: no UploadId in {xml}"))
    }

    /// Uploads one part (1-based); returns its ETag (with quotes, as S3 sends it).
    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: u32,
        body: &[u8],
    ) -> String {
        let q = format!("partNumber={part}&uploadId={}", encode(upload_id, false));
        let url = self.url(bucket, key, &q);
        let resp = self.call("PUT", &url, Some(body));
        assert!(
            resp.status().is_success(),
            "S3 PUT {url}: HTTP {}",
            resp.status()
        );
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok());
        etag.unwrap_or_else(|| panic!("S3 PUT {url}: no ETag"))
            .to_string()
    }

    /// Completes an upload from (part number, ETag) pairs.
    pub fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) {
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (n, etag) in parts {
            xml.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let q = format!("uploadId={}", encode(upload_id, false));
        self.expect_ok("POST", &self.url(bucket, key, &q), Some(xml.as_bytes()));
    }

    pub fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) {
        let q = format!("uploadId={}", encode(upload_id, false));
        self.expect_ok("DELETE", &self.url(bucket, key, &q), None);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Inner text of every `<tag>…</tag>` (S3 responses have no attributes on these elements).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    elements(xml, tag).into_iter().next()
}

fn unescape(s: &str) -> String {
    let mut out = s.to_string();
    for (entity, c) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#34;", "\""),
    ] {
        out = out.replace(entity, c);
    }
    for (entity, c) in [
        ("&apos;", "'"),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&amp;", "&"),
    ] {
        out = out.replace(entity, c);
    }
    out
}
