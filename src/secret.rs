//! A string that must never reach a log, a terminal or a command line.
//!
//! `Secret` wraps passwords and keys read from `*_file` settings. Its `Debug` and `Display`
//! print `***`, so a stray `{:?}` in a log line cannot leak it; the value is only reachable
//! through [`Secret::expose`], which makes every use greppable.
//!
//! [`read_small_file`] reads the small files settings point at (secrets, age keys, CA
//! certificates, the configuration) with a size limit, so a setting pointed at `/dev/zero` or
//! a multi-gigabyte file is an error, not an exhausted memory.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// The most a secret file (`password_file`, `secret_access_key_file`, age key files) may hold.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Why [`read_small_file`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// More bytes than the limit.
    #[error("it is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A directory, FIFO, device or socket where a regular file is needed.
    #[error("it is {kind}, not a regular file")]
    NotRegular {
        /// "a directory", "a FIFO", "a character device"…
        kind: &'static str,
    },
}

impl SmallFileError {
    /// What to do about it (for `what`: "the secret", "the certificate"…).
    pub fn hint(&self, what: &str) -> String {
        match self {
            SmallFileError::Io(e) => match e.kind() {
                io::ErrorKind::NotFound => format!("create it with {what}, mode 0600 (or 0640 root:opsagent)"),
                io::ErrorKind::PermissionDenied => "the file must be readable by the user opsagent runs as (`chown opsagent: FILE; chmod 600 FILE`, or 0640 root:opsagent)".into(),
                io::ErrorKind::InvalidData => format!("the file must hold {what} as UTF-8 text"),
                _ => "check the file".into(),
            },
            SmallFileError::TooLarge { .. } => format!("is this the right file? it should hold only {what}"),
            SmallFileError::NotRegular { .. } => format!("point the setting at a regular file holding {what} (a symlink to one is fine)"),
        }
    }
}

/// Reads a whole file of at most `limit` bytes. With `regular_only`, anything but a regular
/// file (after symlinks) is refused: a FIFO would block or hand out its content once, a device
/// has no content of its own. The file is opened non-blocking, so a FIFO without a writer does
/// not hang the caller before the check.
pub fn read_small_file(
    path: &Path,
    limit: u64,
    regular_only: bool,
) -> Result<Vec<u8>, SmallFileError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else {
        Some("a socket")
    };
    match kind {
        Some(kind) if regular_only || ft.is_dir() => {
            return Err(SmallFileError::NotRegular { kind })
        }
        Some(_) => {
            // A FIFO or device the caller accepts: read it blocking from now on.
            rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).map_err(io::Error::from)?;
        }
        None => {}
    }
    let mut out = Vec::new();
    file.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    Ok(out)
}

/// A secret value (password, access key secret). Redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret file: the whole content with one trailing newline (`\n` or `\r\n`) removed,
    /// as `echo pass > file` writes it. Only a regular file of at most [`MAX_SECRET_FILE`] bytes.
    pub fn from_file(path: &Path) -> Result<Self, SmallFileError> {
        let bytes = read_small_file(path, MAX_SECRET_FILE, true)?;
        let mut s = String::from_utf8(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.utf8_error()))?;
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        Ok(Secret(s))
    }

    /// The clear value. Only hand it to the thing that needs it (an S3 signer, an option file).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_trailing_newline_stripped_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "pa ss\n\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "pa ss\n");
        std::fs::write(&p, "x\r\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "x");
    }

    #[test]
    fn huge_files_devices_fifos_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let err = Secret::from_file(&big).unwrap_err();
        assert!(matches!(err, SmallFileError::TooLarge { .. }), "{err}");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize]).unwrap();
        assert_eq!(Secret::from_file(&big).unwrap().expose().len(), 65536);
        let err = Secret::from_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it is a character device, not a regular file"
        );
        let err = Secret::from_file(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), "it is a directory, not a regular file");
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        // No writer: must not block.
        let err = Secret::from_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        // A caller that accepts devices still gets at most the limit.
        let err = read_small_file(Path::new("/dev/zero"), 1024, false).unwrap_err();
        assert!(
            matches!(err, SmallFileError::TooLarge { limit: 1024 }),
            "{err}"
        );
        let link = dir.path().join("link");
        std::fs::write(dir.path().join("target"), "pw\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        assert_eq!(Secret::from_file(&link).unwrap().expose(), "pw");
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(Secret::from_file(&big)
            .unwrap_err()
            .hint("the password")
            .contains("UTF-8"));
    }
}
