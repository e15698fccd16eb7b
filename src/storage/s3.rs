//! S3 and compatible services (AWS, MinIO, Backblaze B2, moto) through opendal.
//!
//! This file only turns the S3 settings into opendal operators; `opendal_backend.rs` runs
//! them. No signing or HTTP here. Two operators share one service and differ in their I/O
//! timeout: uploads send parts of up to hundreds of MiB in one request, everything else is
//! small. Both retry transient failures (connection errors, timeouts, 5xx, 429) with
//! exponential backoff: waits of 0.5, 1, 2 and 4 s, each stretched by up to 100 % of random
//! jitter, so five attempts take 7.5–15 s for a dead endpoint; then an error names endpoint,
//! bucket and key. (A black-holed endpoint adds the TCP connect time to each attempt.)

use std::sync::Arc;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;
use reqsign_aws_v4::Credential;
use reqsign_core::Signer;

use super::key::normalize_prefix;
use super::lock::LockTransport;
use super::opendal_backend::{on_retry, OpendalBackend, Target};
use super::rate::Bucket;
use super::wire::PacedTransport;
use super::StorageError;
use crate::secret::Secret;

/// Retries after the first attempt.
pub(crate) const MAX_RETRIES: usize = 4;
/// First backoff; doubles on each retry; jitter adds up to 100 % of each.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Deadline for control requests (stat, delete).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one read chunk or one listing page.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one upload request (one part): a 512 MiB part at under 1 MiB/s.
const UPLOAD_IO_TIMEOUT: Duration = Duration::from_secs(600);
/// The same when the parts are paced on the wire: a part takes what the rate makes it take,
/// and the transport fails a request that stops moving (`wire.rs`).
const PACED_IO_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to check when S3 says 403.
const DENIED_HINT: &str = "check the access key id and secret, and that the key may list, \
                           read, write and delete objects in this bucket";

/// The S3 part of a [`super::StorageSpec`], borrowed.
pub(crate) struct S3Settings<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub endpoint: Option<&'a str>,
    pub region: &'a str,
    pub path_style: bool,
    pub access_key_id: Option<&'a str>,
    pub secret_access_key: Option<&'a Secret>,
    pub object_lock: Option<super::ObjectLock>,
}

/// Builds the S3 backend. No I/O.
pub(crate) fn open(s: &S3Settings<'_>) -> Result<OpendalBackend, StorageError> {
    let describe = describe(s);
    let config_error = |(reason, hint): (String, &str)| StorageError::Config {
        backend: describe.clone(),
        reason,
        hint: hint.to_string(),
    };
    let prefix = normalize_prefix(s.prefix)
        .map_err(|e| config_error((e.to_string(), "fix `prefix` in the storage settings")))?;
    let builder = builder(s).map_err(config_error)?;
    opendal::install_default();
    let base = Operator::new(builder)
        .map_err(|err| config_error((err.to_string(), "check the S3 settings")))?;
    let lock = s.object_lock.map(|lock| {
        let http = opendal::HttpTransporter::default();
        let signer = super::sign::signer(s.region, s.access_key_id, s.secret_access_key, http);
        (signer, lock)
    });
    let ops = Operators { base, lock };
    let target = Target {
        describe,
        denied_hint: DENIED_HINT,
    };
    let (op, upload_op) = (ops.build(None, IO_TIMEOUT), ops.upload(None));
    let paced = move |bucket| ops.upload(Some(bucket));
    Ok(OpendalBackend::new(target, prefix, op, upload_op).pacing_with(paced))
}

/// What the operators of one S3 storage are made of.
struct Operators {
    /// The service, without layers or transport.
    base: Operator,
    /// Object lock: the signer its transport signs amended requests with, and the lock.
    lock: Option<(Signer<Credential>, super::ObjectLock)>,
}

impl Operators {
    /// The operator for uploads, their bodies paced by `pace` when given: its I/O timeout
    /// allows for the largest part, or, paced, for any time (the transport times out a
    /// request that makes no progress; `wire.rs`).
    fn upload(&self, pace: Option<Arc<Bucket>>) -> Operator {
        let io_timeout = match pace {
            Some(_) => PACED_IO_TIMEOUT,
            None => UPLOAD_IO_TIMEOUT,
        };
        self.build(pace, io_timeout)
    }

    /// The service with its transport (object lock above pacing above the HTTP client),
    /// timeouts (`io_timeout` for reads and writes), and retries.
    fn build(&self, pace: Option<Arc<Bucket>>, io_timeout: Duration) -> Operator {
        let mut transport = None;
        if let Some(bucket) = pace {
            let inner = opendal::HttpTransporter::default();
            transport = Some(opendal::HttpTransporter::new(PacedTransport::new(
                inner, bucket,
            )));
        }
        if let Some((signer, lock)) = &self.lock {
            let inner = transport.take().unwrap_or_default();
            let locked = LockTransport::new(inner, signer.clone(), *lock);
            transport = Some(opendal::HttpTransporter::new(locked));
        }
        let mut op = self.base.clone();
        if let Some(transport) = transport {
            op = op.with_context(opendal::OperationContext::new().with_http_transport(transport));
        }
        let retry = RetryLayer::new()
            .with_max_times(MAX_RETRIES)
            .with_min_delay(MIN_BACKOFF)
            .with_factor(2.0)
            .with_max_delay(MAX_BACKOFF)
            .with_jitter()
            .with_notify(on_retry);
        let timeouts = TimeoutLayer::new()
            .with_timeout(CONTROL_TIMEOUT)
            .with_io_timeout(io_timeout);
        // Timeout before retry: each attempt is timed out, and retried.
        op.layer(timeouts).layer(retry)
    }
}

/// The opendal S3 builder for the settings, or what is wrong with them and the fix.
fn builder(s: &S3Settings<'_>) -> Result<opendal::services::S3, (String, &'static str)> {
    if s.bucket.is_empty() || s.bucket.contains('/') {
        let reason = format!("bucket name `{}` is not valid", s.bucket);
        return Err((reason, "set `bucket` to the bucket's bare name"));
    }
    if s.region.is_empty() {
        let hint = "set `region` (MinIO and moto accept any, e.g. us-east-1)";
        return Err(("the region is empty".into(), hint));
    }
    let mut builder = opendal::services::S3::default()
        .bucket(s.bucket)
        .region(s.region)
        .root("/");
    if let Some(endpoint) = s.endpoint {
        builder = builder.endpoint(endpoint);
    }
    if !s.path_style {
        builder = builder.enable_virtual_host_style();
    }
    match (s.access_key_id, s.secret_access_key) {
        (Some(id), Some(secret)) => {
            Ok(builder.access_key_id(id).secret_access_key(secret.expose()))
        }
        (None, None) => Ok(builder),
        _ => Err((
            "only one of the two S3 keys is set".into(),
            "set both `access_key_id` and the secret key file, or neither to use the AWS \
             environment",
        )),
    }
}

/// `s3://bucket/prefix/ at endpoint`, without credentials (even ones inside the URL).
fn describe(s: &S3Settings<'_>) -> String {
    let prefix = normalize_prefix(s.prefix).unwrap_or_else(|_| s.prefix.to_string());
    let endpoint = match s.endpoint {
        Some(endpoint) => strip_userinfo(endpoint.trim_end_matches('/')),
        None => match env_endpoint() {
            Some(endpoint) => strip_userinfo(endpoint.trim_end_matches('/')),
            None => format!("https://s3.{}.amazonaws.com", s.region),
        },
    };
    format!("s3://{}/{prefix} at {endpoint}", s.bucket)
}

/// The endpoint opendal takes from the environment when none is configured.
pub(super) fn env_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_S3_ENDPOINT"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

/// Drops a `user:password@` from a URL.
fn strip_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..host_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    if scheme.is_empty() {
        rest.to_string()
    } else {
        format!("{scheme}://{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Storage, StorageSpec};

    fn spec(prefix: &str, endpoint: Option<&str>) -> StorageSpec {
        StorageSpec::S3 {
            bucket: "backups".into(),
            prefix: prefix.into(),
            endpoint: endpoint.map(str::to_string),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("hunter2-secret")),
            object_lock: None,
        }
    }

    #[test]
    fn describe_names_bucket_prefix_endpoint_never_secret() {
        let s = Storage::open(&spec("/web-01", Some("http://127.0.0.1:9000/"))).unwrap();
        assert_eq!(
            s.describe(),
            "s3://backups/web-01/ at http://127.0.0.1:9000"
        );
        let s = Storage::open(&spec("", Some("https://u:hunter2-secret@minio.lan"))).unwrap();
        assert_eq!(s.describe(), "s3://backups/ at https://minio.lan");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn bad_settings_rejected_without_io() {
        let mut bad = spec("a//b", Some("http://x"));
        let err = Storage::open(&bad).unwrap_err().to_string();
        assert!(err.contains("prefix"), "{err}");
        if let StorageSpec::S3 {
            prefix,
            secret_access_key,
            ..
        } = &mut bad
        {
            *prefix = "ok".into();
            *secret_access_key = None;
        }
        let err = Storage::open(&bad).unwrap_err().to_string();
        assert!(err.contains("only one of the two S3 keys"), "{err}");
    }

    #[test]
    fn userinfo_stripped() {
        assert_eq!(strip_userinfo("http://a:b@h:1/p@q"), "http://h:1/p@q");
        assert_eq!(strip_userinfo("h:9000"), "h:9000");
    }
}
