//! Runs an opendal operator as a [`Backend`]: S3 (built in `s3.rs`) and the in-memory store.
//!
//! Also here: turning opendal errors into [`StorageError`]s that name the backend, the key
//! and the cause in a few words, and counting the attempts opendal's `RetryLayer` made
//! (a task-local counter its retry hook bumps), so an error can say "after 5 attempts".

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::sync::Arc;

use futures::TryStreamExt;
use opendal::{EntryMode, ErrorKind, Operator};

use super::error::{ErrorContext, Op};
use super::key::join;
use super::multipart::{OpendalWriter, Uploads};
use super::rate::Bucket;
use super::versions;
use super::{Backend, BackendWriter, ObjectInfo, ObjectReader, StorageError, StorageFuture};

tokio::task_local! {
    static ATTEMPTS: Cell<u32>;
}

/// Runs `fut`, returning its output and how many attempts the retry layer made inside it.
pub(crate) async fn counted<F: Future>(fut: F) -> (F::Output, u32) {
    ATTEMPTS
        .scope(Cell::new(1), async move {
            let out = fut.await;
            (out, ATTEMPTS.with(Cell::get))
        })
        .await
}

/// The retry layer's hook: logs the retry and counts it for [`counted`].
pub(crate) fn on_retry(event: opendal::layers::RetryEvent<'_>) {
    let _ = ATTEMPTS.try_with(|attempts| attempts.set(event.attempt + 1));
    tracing::warn!(
        operation = ?event.op,
        attempt = event.attempt,
        retry_in = ?event.retry_after,
        cause = %short_cause(event.err),
        "storage request failed; retrying"
    );
}

/// The cause of an opendal error in a few words: the innermost source (`Connection refused
/// (os error 111)`), or the S3 error code and message, or opendal's message.
pub(crate) fn short_cause(err: &opendal::Error) -> String {
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(err);
    while let Some(source) = next {
        innermost = Some(source);
        next = source.source();
    }
    if let Some(source) = innermost {
        return source.to_string();
    }
    let message = err.message();
    if let Some(code) = quoted_field(message, "code") {
        let text = quoted_field(message, "message").unwrap_or_default();
        return format!("{code}: {text}")
            .trim_end_matches([':', ' '])
            .to_string();
    }
    let mut message: String = message.chars().take(200).collect();
    if let Some(timeout) = err_context(err, "timeout") {
        message.push_str(&format!(" ({timeout} s)"));
    }
    message
}

/// `value` from `name: "value"` in a `Debug`-printed struct (how opendal keeps S3 errors).
fn quoted_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("{name}: \""))? + name.len() + 3;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len]).filter(|v| !v.is_empty())
}

/// One context value of an opendal error (its `Display` lists them as `key: value`).
fn err_context(err: &opendal::Error, key: &str) -> Option<String> {
    let text = err.to_string();
    let start = text.find(&format!("{key}: "))? + key.len() + 2;
    let value = &text[start..];
    let end = value.find([',', ' ', '}']).unwrap_or(value.len());
    Some(value[..end].to_string())
}

/// How errors of one backend are described.
pub(crate) struct Target {
    /// What [`super::Storage::describe`] prints.
    pub describe: String,
    /// What to check when access is denied.
    pub denied_hint: &'static str,
}

impl Target {
    /// Error context for `op` on `key`.
    pub fn ctx<'a>(&'a self, op: Op, key: &'a str) -> ErrorContext<'a> {
        ErrorContext::new(&self.describe, op, key)
    }

    /// Turns an opendal error into a [`StorageError`].
    pub fn error(&self, op: Op, key: &str, err: opendal::Error, attempts: u32) -> StorageError {
        let ctx = self.ctx(op, key);
        let cause = short_cause(&err);
        match err.kind() {
            _ if cause.contains("HTTP transport is not installed") => ctx.failed(
                cause,
                "opsagent was built without opendal's `http-transport-reqwest` feature; \
                 rebuild it with that feature",
            ),
            ErrorKind::NotFound if matches!(op, Op::Download | Op::Stat) => ctx.not_found(),
            ErrorKind::PermissionDenied => ctx.denied(cause, self.denied_hint),
            ErrorKind::ConfigInvalid if cause.starts_with("NoSuchBucket") => ctx.failed(
                "the bucket does not exist",
                "create it, or fix `bucket` in the storage settings",
            ),
            ErrorKind::ConfigInvalid => ctx.failed(cause, "check the storage settings"),
            _ if attempts > 1 => ctx.unreachable(cause, attempts),
            _ => ctx.failed(
                cause,
                "retry; if it persists, check the storage service's logs",
            ),
        }
    }
}

/// A backend over opendal operators.
#[derive(Clone)]
pub(crate) struct OpendalBackend {
    target: Arc<Target>,
    /// Normalised prefix (`web-01/` or empty).
    prefix: String,
    /// For everything but uploads.
    op: Operator,
    /// For uploads: its I/O timeout allows for the largest part.
    upload_op: Operator,
    /// Under object lock: deleting a key deletes all its versions no longer locked (a bucket
    /// with object lock keeps versions); this client reads their locks.
    delete_versions: Option<Arc<Uploads>>,
    /// Lists and reads each key's newest version that is not a delete marker
    /// ([`Backend::undeleted`]).
    undeleted: bool,
    /// Makes `upload_op` with its request bodies paced by a bucket ([`Backend::paced_on_the_wire`]).
    pacing: Option<Arc<PacedUploads>>,
}

/// Makes the upload operator of a backend whose uploads are paced on the wire.
pub(crate) type PacedUploads = dyn Fn(Arc<Bucket>) -> Operator + Send + Sync;

impl OpendalBackend {
    pub(crate) fn new(target: Target, prefix: String, op: Operator, upload_op: Operator) -> Self {
        OpendalBackend {
            target: Arc::new(target),
            prefix,
            op,
            upload_op,
            delete_versions: None,
            undeleted: false,
            pacing: None,
        }
    }

    /// Uploads can be paced on the wire, with the upload operator `paced` makes.
    pub(crate) fn pacing_with(
        mut self,
        paced: impl Fn(Arc<Bucket>) -> Operator + Send + Sync + 'static,
    ) -> Self {
        self.pacing = Some(Arc::new(paced));
        self
    }

    /// Deleting a key deletes every version of it no longer locked (see `versions.rs`).
    pub(crate) fn deleting_versions(mut self, bucket: Uploads) -> Self {
        self.delete_versions = Some(Arc::new(bucket));
        self
    }

    fn err(&self, op: Op, key: &str, err: opendal::Error, attempts: u32) -> StorageError {
        self.target.error(op, key, err, attempts)
    }

    async fn list_all(&self, prefix: &str) -> opendal::Result<Vec<ObjectInfo>> {
        let path = join(&self.prefix, prefix);
        if self.undeleted {
            let (found, _) = versions::undeleted(&self.op, &path).await?;
            let rel = |u: versions::Undeleted| {
                let key = u.path.strip_prefix(&self.prefix)?.to_string();
                Some(ObjectInfo { key, size: u.size })
            };
            return Ok(found.into_iter().filter_map(rel).collect());
        }
        let mut lister = self.op.lister_with(&path).recursive(true).await?;
        let mut objects = Vec::new();
        while let Some(entry) = lister.try_next().await? {
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            if let Some(key) = entry.path().strip_prefix(&self.prefix) {
                let size = entry.metadata().content_length();
                objects.push(ObjectInfo {
                    key: key.to_string(),
                    size,
                });
            }
        }
        Ok(objects)
    }

    async fn open_reader(&self, key: &str) -> opendal::Result<ObjectReader> {
        let path = join(&self.prefix, key);
        let reader = if self.undeleted {
            let Some(v) = versions::newest(&self.op, &path).await? else {
                return Err(opendal::Error::new(
                    ErrorKind::NotFound,
                    "no version that is not a delete marker",
                ));
            };
            self.op.reader_with(&path).version(&v.version).await?
        } else {
            self.op.reader(&path).await?
        };
        let mut stream = reader.into_bytes_stream(..).await?;
        let size = match stream.metadata().await {
            Ok(meta) => Some(meta.content_length()),
            Err(err) if err.kind() == ErrorKind::Unsupported => None,
            Err(err) => return Err(err),
        };
        let what = format!("cannot download `{key}` from {}", self.target.describe);
        Ok(ObjectReader::from_stream(stream, size, what))
    }
}

impl Backend for OpendalBackend {
    fn describe(&self) -> &str {
        &self.target.describe
    }

    fn check_access(&self) -> StorageFuture<'_, ()> {
        Box::pin(async move {
            let path = join(&self.prefix, "");
            let (result, attempts) = counted(async {
                let mut lister = self.op.lister_with(&path).limit(1).await?;
                lister.try_next().await
            })
            .await;
            result
                .map(drop)
                .map_err(|e| self.err(Op::List, "", e, attempts))
        })
    }

    fn writer<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Box<dyn BackendWriter>> {
        Box::pin(async move {
            let path = join(&self.prefix, key);
            let (result, attempts) = counted(
                self.upload_op
                    .writer_with(&path)
                    .concurrent(1)
                    .into_future(),
            )
            .await;
            let writer = result.map_err(|e| self.err(Op::Upload, key, e, attempts))?;
            let writer = OpendalWriter::new(self.target.clone(), key, writer);
            Ok(Box::new(writer) as Box<dyn BackendWriter>)
        })
    }

    fn reader<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ObjectReader> {
        Box::pin(async move {
            let (result, attempts) = counted(self.open_reader(key)).await;
            result.map_err(|e| self.err(Op::Download, key, e, attempts))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<ObjectInfo>> {
        Box::pin(async move {
            let (result, attempts) = counted(self.list_all(prefix)).await;
            result.map_err(|e| self.err(Op::List, prefix, e, attempts))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            let path = join(&self.prefix, key);
            if self.undeleted {
                let why = "this view of hidden versions is for restores; it deletes nothing";
                return Err(self
                    .target
                    .ctx(Op::Delete, key)
                    .failed(why, "report this as a bug"));
            }
            let (result, attempts) = match &self.delete_versions {
                Some(bucket) => {
                    match counted(versions::delete_unlocked(&self.op, &path, key, bucket)).await {
                        (Err(versions::DeleteError::Storage(e)), _) => return Err(e),
                        (Err(versions::DeleteError::Opendal(e)), n) => (Err(e), n),
                        (Ok(()), n) => (Ok(()), n),
                    }
                }
                None => counted(self.op.delete(&path)).await,
            };
            result.map_err(|e| self.err(Op::Delete, key, e, attempts))
        })
    }

    fn paced_on_the_wire(&self, bucket: Arc<Bucket>) -> Option<Arc<dyn Backend>> {
        let mut paced = self.clone();
        paced.upload_op = (self.pacing.as_ref()?)(bucket);
        Some(Arc::new(paced))
    }

    fn undeleted(&self) -> Option<Arc<dyn Backend>> {
        let mut view = self.clone();
        view.undeleted = true;
        view.target = Arc::new(Target {
            describe: format!(
                "{} (versions hidden behind delete markers)",
                self.target.describe
            ),
            denied_hint: self.target.denied_hint,
        });
        Some(Arc::new(view))
    }

    fn exists<'a>(&'a self, key: &'a str) -> StorageFuture<'a, bool> {
        Box::pin(async move {
            let path = join(&self.prefix, key);
            let (result, attempts) = if self.undeleted {
                counted(async { Ok(versions::newest(&self.op, &path).await?.is_some()) }).await
            } else {
                counted(self.op.exists(&path)).await
            };
            result.map_err(|e| self.err(Op::Stat, key, e, attempts))
        })
    }
}

/// The in-memory backend behind [`super::Storage::in_memory`].
pub(crate) fn memory() -> OpendalBackend {
    let op = Operator::new(opendal::services::Memory::default())
        .expect("the memory service needs no configuration");
    let target = Target {
        describe: "in-memory storage".to_string(),
        denied_hint: "the in-memory storage never denies access",
    };
    OpendalBackend::new(target, String::new(), op.clone(), op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_cause_extracted() {
        let msg = r#"S3Error { code: "NoSuchBucket", message: "The specified bucket does not exist", resource: "", request_id: "" }"#;
        let err = opendal::Error::new(ErrorKind::ConfigInvalid, msg);
        assert_eq!(
            short_cause(&err),
            "NoSuchBucket: The specified bucket does not exist"
        );
        let target = Target {
            describe: "s3://b/ at http://x".into(),
            denied_hint: "h",
        };
        let text = target.error(Op::List, "", err, 1).to_string();
        assert!(text.contains("the bucket does not exist"), "{text}");
    }

    #[test]
    fn innermost_source_is_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = opendal::Error::new(ErrorKind::Unexpected, "send http request").set_source(io);
        assert_eq!(short_cause(&err), "Connection refused");
    }

    #[test]
    fn retried_errors_are_unreachable() {
        let target = Target {
            describe: "s3://b/p/ at http://127.0.0.1:1".into(),
            denied_hint: "h",
        };
        let err = opendal::Error::new(ErrorKind::Unexpected, "send http request");
        let e = target.error(Op::Upload, "k", err, 5);
        assert!(matches!(e, StorageError::Unreachable { attempts: 5, .. }));
        let err = opendal::Error::new(ErrorKind::NotFound, "gone");
        assert!(target.error(Op::Download, "k", err, 1).is_not_found());
    }
}
