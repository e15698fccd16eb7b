//! Object keys and the storage prefix: what a valid key is, and how the prefix is joined in.
//!
//! Keys are relative, `/`-separated paths (`mysql/main/shop/2026-11-20.sql.zst`). The rules
//! are the intersection of what S3 and a Linux directory accept unchanged, so one key names
//! the same object on every backend: no empty key, no leading or trailing `/`, no empty,
//! `.` or `..` segment, no NUL or other control character, no surrounding whitespace
//! (opendal trims it).

use super::StorageError;

/// Checks that `key` is a valid object key (see the module docs for the rules).
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    key_problem(key).map_or(Ok(()), |reason| {
        Err(StorageError::InvalidKey {
            key: key.escape_debug().to_string(),
            reason,
        })
    })
}

/// Why `key` is not a valid object key, or `None` when it is.
fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        return Some("the key is empty");
    }
    if key.starts_with('/') {
        return Some("the key starts with `/`; keys are relative to the storage prefix");
    }
    if key.ends_with('/') {
        return Some("the key ends with `/`; it names a directory, not an object");
    }
    if key.chars().any(char::is_control) {
        return Some("the key contains a NUL or another control character");
    }
    if key.trim() != key {
        return Some("the key starts or ends with whitespace");
    }
    segment_problem(key)
}

/// Checks the `/`-separated segments of a key or prefix.
fn segment_problem(path: &str) -> Option<&'static str> {
    for segment in path.split('/') {
        match segment {
            "" => return Some("the key contains an empty segment (`//`)"),
            "." | ".." => return Some("the key contains a `.` or `..` segment"),
            _ => {}
        }
    }
    None
}

/// Checks a listing prefix: empty, or a key-like string that may end with `/`.
pub(crate) fn validate_list_prefix(prefix: &str) -> Result<(), StorageError> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// Normalises a configured storage prefix: surrounding `/` removed, then one `/` appended
/// unless the prefix is empty. `"web-01"`, `"/web-01/"` → `"web-01/"`; `""`, `"/"` → `""`.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, BadPrefix> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if let Some(reason) = key_problem(trimmed) {
        return Err(BadPrefix {
            prefix: prefix.escape_debug().to_string(),
            reason,
        });
    }
    Ok(format!("{trimmed}/"))
}

/// A configured storage prefix that breaks the key rules; the backend that opens it wraps it in
/// a [`StorageError::Config`] with the hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix `{prefix}`: {reason}")]
pub(crate) struct BadPrefix {
    /// The prefix as configured, control characters escaped.
    prefix: String,
    /// Which rule it breaks.
    reason: &'static str,
}

/// Joins a normalised prefix and a key (or a listing prefix) into the full object path.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys() {
        for key in [
            "a",
            "mysql/main/shop/2026-11-20T02:30:00Z.sql.zst",
            "media/with space/file name.jpg",
            "média/日本語/ü-ß.txt",
            "dash-and_underscore.tar",
            ".hidden/file",
            "a..b/c...d",
        ] {
            assert!(validate_key(key).is_ok(), "{key:?} should be valid");
        }
    }

    #[test]
    fn invalid_keys() {
        for (key, why) in [
            ("", "empty"),
            ("/abs", "starts with `/`"),
            ("dir/", "ends with `/`"),
            ("a//b", "empty segment"),
            ("../etc/passwd", "`..`"),
            ("a/../b", "`..`"),
            ("a/./b", "`.`"),
            ("..", "`..`"),
            ("a\0b", "NUL"),
            ("a\nb", "control"),
            (" lead", "whitespace"),
            ("trail ", "whitespace"),
        ] {
            let err = validate_key(key).expect_err(key).to_string();
            assert!(err.contains(why), "{key:?}: {err}");
        }
    }

    #[test]
    fn invalid_key_error_names_key_escaped() {
        let err = validate_key("a\0b").unwrap_err().to_string();
        assert!(err.contains("`a\\0b`"), "{err}");
    }

    #[test]
    fn prefixes_normalised() {
        for (input, want) in [
            ("", ""),
            ("/", ""),
            ("//", ""),
            ("web-01", "web-01/"),
            ("web-01/", "web-01/"),
            ("/web-01/", "web-01/"),
            ("a/b", "a/b/"),
            ("hosts/web 01/", "hosts/web 01/"),
        ] {
            assert_eq!(normalize_prefix(input).unwrap(), want, "{input:?}");
        }
        assert!(normalize_prefix("a//b").is_err());
        assert!(normalize_prefix("../x").is_err());
        assert!(normalize_prefix("a\0").is_err());
    }

    #[test]
    fn prefix_joined() {
        assert_eq!(join("", "a/b"), "a/b");
        assert_eq!(join("web-01/", "a/b"), "web-01/a/b");
        assert_eq!(join("web-01/", ""), "web-01/");
    }

    #[test]
    fn list_prefixes() {
        for ok in ["", "mysql/", "mysql", "mysql/ma", "mysql/main/"] {
            assert!(validate_list_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["/", "/mysql", "a//", "../"] {
            assert!(validate_list_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
