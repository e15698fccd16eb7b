//! HTTP basic auth of the status page: any user name, the password of `[web] password_file`.
//! The password sent and the one configured are both hashed (SHA-256) and the digests compared
//! in constant time, so a wrong password costs what a right one does and its length leaks
//! nothing.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured password, kept as its digest.
#[derive(Clone)]
pub struct Password([u8; 32]);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// The digest of `password`.
    pub fn new(password: &str) -> Password {
        Password(Sha256::digest(password.as_bytes()).into())
    }

    /// Whether the `Authorization` header value `header` carries this password (`Basic`
    /// scheme, any user name).
    pub fn admits(&self, header: Option<&str>) -> bool {
        let Some(h) = header else {
            return false;
        };
        let b64 = h
            .trim()
            .strip_prefix("Basic ")
            .or_else(|| h.trim().strip_prefix("basic "))
            .unwrap_or("")
            .trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        // Everything after the first ':' is the password; a header without one hashes the
        // empty password, so every path does the same work.
        let pw = match decoded.iter().position(|b| *b == b':') {
            Some(i) => &decoded[i + 1..],
            None => &[][..],
        };
        let given: [u8; 32] = Sha256::digest(pw).into();
        bool::from(given.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn admits_the_password_only() {
        let p = Password::new("s3cret:with colon");
        assert!(p.admits(Some(&basic("anyone:s3cret:with colon"))));
        assert!(p.admits(Some(&basic(":s3cret:with colon"))));
        assert!(!p.admits(Some(&basic("anyone:s3cret"))));
        assert!(!p.admits(Some(&basic("s3cret:with colon"))));
        assert!(!p.admits(Some("Bearer x")));
        assert!(!p.admits(None));
        assert!(!format!("{p:?}").contains("s3cret"));
    }
}
