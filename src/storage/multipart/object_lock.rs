//! The bucket's S3 Object Lock settings (`GetObjectLockConfiguration`), for `check-config
//! --connect` on a storage configured with `object_lock`: opendal has no call for it, so it is
//! one more signed request beside the multipart ones.

use super::abort::Uploads;
use crate::storage::error::{ErrorContext, Op};
use crate::storage::StorageError;
use serde::Deserialize;

/// What the bucket says about object lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConfig {
    /// `ObjectLockEnabled` is `Enabled`.
    pub enabled: bool,
    /// The default retention's mode (`GOVERNANCE`, `COMPLIANCE`), when there is one.
    pub mode: Option<String>,
    /// The default retention in days (years counted as 365 days), when there is one.
    pub days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    object_lock_enabled: Option<String>,
    rule: Option<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rule {
    default_retention: Option<Retention>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Retention {
    mode: Option<String>,
    days: Option<u32>,
    years: Option<u32>,
}

impl Uploads {
    /// Locks the current version of `key` (relative to the prefix) until `until`, with
    /// `lock`'s mode (`PutObjectRetention`): extends the lock of an object a new snapshot
    /// uses again. S3 refuses to shorten a lock; extending it is always allowed.
    pub async fn extend_lock(
        &self,
        key: &str,
        lock: crate::storage::ObjectLock,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StorageError> {
        let ctx = ErrorContext::new(&self.describe, Op::Upload, key);
        let xml = crate::storage::lock::retention_xml(lock, until);
        let md5 = crate::storage::lock::md5_base64([&xml]);
        let headers = [
            ("content-md5", md5),
            ("content-type", "application/xml".to_string()),
        ];
        let url = format!("{}?retention", self.object_url(key));
        self.send(http::Method::PUT, &url, xml.into_bytes(), &headers, &ctx)
            .await
            .map(drop)
    }

    /// Until when `version` of `key` (relative to the prefix) is locked, from its headers
    /// (`HeadObject`); `None` when it has no lock.
    pub async fn locked_until(
        &self,
        key: &str,
        version: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StorageError> {
        let ctx = ErrorContext::new(&self.describe, Op::Stat, key);
        let url = format!(
            "{}?versionId={}",
            self.object_url(key),
            super::abort::encode(version)
        );
        let (headers, _) = self
            .send(http::Method::HEAD, &url, Vec::new(), &[], &ctx)
            .await?;
        let until = (headers.get("x-amz-object-lock-retain-until-date"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok());
        Ok(until.map(|t| t.to_utc()))
    }

    /// The bucket's object lock configuration; a bucket without one reports `enabled: false`.
    pub async fn object_lock(&self) -> Result<LockConfig, StorageError> {
        let ctx = ErrorContext::new(&self.describe, Op::List, "");
        let url = format!("{}/?object-lock", self.base);
        let body = match self.call(http::Method::GET, &url, &ctx).await {
            Ok(b) => b,
            // S3 answers 404 ObjectLockConfigurationNotFoundError for a bucket without it.
            Err(StorageError::NotFound { .. }) => {
                return Ok(LockConfig {
                    enabled: false,
                    mode: None,
                    days: None,
                })
            }
            Err(e) => return Err(e),
        };
        let a: Answer = quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
            ctx.failed(
                format!("unexpected GetObjectLockConfiguration answer: {e}"),
                "is the endpoint an S3 service that supports object lock?",
            )
        })?;
        let retention = a.rule.and_then(|r| r.default_retention);
        Ok(LockConfig {
            enabled: a.object_lock_enabled.as_deref() == Some("Enabled"),
            mode: retention.as_ref().and_then(|r| r.mode.clone()),
            days: retention.and_then(|r| r.days.or(r.years.map(|y| y.saturating_mul(365)))),
        })
    }
}
