//! Client-side encryption with age (X25519 recipients): a decorator of [`Storage`].
//!
//! With `[encryption]` configured, every data object is encrypted in the writer before its
//! bytes reach the backend, in age's chunked STREAM format (64 KiB chunks, each authenticated),
//! so memory stays bounded and the `age` CLI decrypts what opsagent stored
//! (`age -d -i key.txt shop.sql.zst.age | zstd -d | mariadb shop`). The size and sha256 an
//! [`super::ObjectWriter`] reports are those of the stored ciphertext.
//!
//! The one rule for what stays plaintext is [`stays_plaintext`]: manifests (`snapshots/…`), so
//! listing, retention and freshness work on a server that holds only the public recipients;
//! media index objects (`media/<job>/index/…`), so a media prune needs no identity; and
//! bookkeeping objects directly under the prefix (no `/` in the key). Everything else — MySQL
//! dumps, media packs and trees, and any future data kind — is encrypted.
//!
//! Reads recognise age files by their first line, whatever the key; with `[encryption]`
//! configured, a data object that is not an age file is refused ([`plaintext_accepted`]): [`Storage::reader`] hands
//! back plaintext, decrypting with the identity file, which is read on first need (so a server
//! that only writes backups never needs it). [`Storage::raw_reader`] hands back the stored bytes,
//! for callers that check the manifest's sha256 before decrypting with
//! [`Storage::decrypting_read`].

use std::io::{self, BufReader, Cursor, Read, Write};
use std::path::PathBuf;

use std::sync::{Arc, Mutex, OnceLock};

use age::x25519::{Identity, Recipient};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::error::{ErrorContext, Op};
use super::{ObjectReader, Storage, StorageError};
use keys::IDENTITY_HINT;
pub use keys::{
    parse_recipient, parse_recipients_file, read_identity_file, BadRecipient, CannotDecrypt,
    IdentityError,
};
use stream::{corrupt, unmark, MapRead, Marked};

/// The first line of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// `[encryption]`, resolved: owned by this adapter, built by the config module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionSpec {
    /// Public keys every data object is encrypted to (any one identity decrypts).
    pub recipients: Vec<Recipient>,
    /// The secret key file (`age-keygen -o`), needed only to read encrypted objects.
    pub identity_file: Option<PathBuf>,
}

/// Whether the object at `key` is stored in plaintext even when encryption is on. See the
/// module docs for why each of these stays readable without the identity.
pub fn stays_plaintext(key: &str) -> bool {
    let mut segments = key.split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        // Manifests: `snapshots/<job>/…`.
        (Some("snapshots"), Some(_), _)
            // Media index objects: `media/<job>/index/…`.
            | (Some("media"), Some(_), Some("index"))
            // Bookkeeping directly under the prefix (owner or lock markers).
            | (Some(_), None, _)
    ) || (key.starts_with("binlog/") && key.ends_with(".json"))
}

/// Whether `key` may be read as plaintext although encryption is on. Everything
/// [`stays_plaintext`] exempts, and media packs (`media/<job>/packs/…`): a backup made after
/// `[encryption]` was turned on reuses blobs of packs stored before, and every blob a restore
/// takes from a pack is checked against the BLAKE3 id the (encrypted) tree lists, so a
/// plaintext pack can only supply the very bytes asked for. Any other data object that is not
/// an age file is refused: a bucket writer must not swap plaintext in where ciphertext is
/// expected (a tree, a dump).
pub fn plaintext_accepted(key: &str) -> bool {
    let mut segments = key.split('/');
    stays_plaintext(key)
        || matches!(
            (segments.next(), segments.next(), segments.next()),
            (Some("media"), Some(_), Some("packs"))
        )
}

/// The encryption state of a [`Storage`]: recipients, and the identities once read.
pub(crate) struct Crypt {
    spec: EncryptionSpec,
    identities: OnceLock<Arc<Vec<Identity>>>,
}

impl Crypt {
    pub(crate) fn new(spec: EncryptionSpec) -> Crypt {
        Crypt {
            spec,
            identities: OnceLock::new(),
        }
    }

    /// The identities, read on first use; a failed read is retried next time.
    fn identities(&self) -> Result<Arc<Vec<Identity>>, IdentityError> {
        if let Some(ids) = self.identities.get() {
            return Ok(ids.clone());
        }
        let Some(path) = self.spec.identity_file.as_deref() else {
            return Err(IdentityError::Unconfigured);
        };
        let ids = Arc::new(read_identity_file(path)?);
        Ok(self.identities.get_or_init(|| ids).clone())
    }

    /// Whether the identity file (if any) is the one being talked about, for messages.
    fn identity_name(&self) -> String {
        match &self.spec.identity_file {
            Some(p) => format!("the identity in {}", p.display()),
            None => "no identity".into(),
        }
    }
}

/// The encrypting half of an [`super::ObjectWriter`]: plaintext in, ciphertext out.
pub(crate) struct Encryptor {
    sink: SharedSink,
    stream: age::stream::StreamWriter<SharedSink>,
}

/// Where the age stream writes: a buffer the [`Encryptor`] drains after every write.
#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl SharedSink {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(&mut *self.0.lock().expect("sink lock")))
    }
}

impl Write for SharedSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("sink lock").extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Encryptor {
    fn new(recipients: &[Recipient]) -> Encryptor {
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .expect("X25519 recipients, at least one (checked by the config)");
        let sink = SharedSink::default();
        let stream = encryptor
            .wrap_output(sink.clone())
            .expect("writing to memory does not fail");
        Encryptor { sink, stream }
    }

    /// Encrypts `data`; returns the ciphertext that is ready (the header, full chunks).
    pub(crate) fn push(&mut self, data: &[u8]) -> Bytes {
        self.stream
            .write_all(data)
            .expect("writing to memory does not fail");
        self.sink.take()
    }

    /// Ends the stream; returns the rest of the ciphertext (the last, flagged chunk).
    pub(crate) fn finish(self) -> Bytes {
        let sink = self
            .stream
            .finish()
            .expect("writing to memory does not fail");
        sink.take()
    }
}

impl Storage {
    /// Encrypts every object [`stays_plaintext`] does not exempt to `spec`'s recipients, and
    /// decrypts age objects on [`reader`](Self::reader) with its identity. `None` keeps the
    /// storage as it is (reads of encrypted objects then fail, saying so).
    pub fn with_encryption(mut self, spec: Option<&EncryptionSpec>) -> Storage {
        self.crypt = spec.map(|s| Arc::new(Crypt::new(s.clone())));
        self
    }

    /// The recipients `key` is encrypted to when written, as `age1…` strings; `None` when it
    /// is stored in plaintext. For manifests, and for keys that should say `.age`.
    pub fn recipients_for(&self, key: &str) -> Option<Vec<String>> {
        let crypt = self.crypt.as_ref().filter(|_| !stays_plaintext(key))?;
        Some(
            crypt
                .spec
                .recipients
                .iter()
                .map(|r| r.to_string())
                .collect(),
        )
    }

    pub(crate) fn encryptor_for(&self, key: &str) -> Option<Encryptor> {
        let crypt = self.crypt.as_ref().filter(|_| !stays_plaintext(key))?;
        Some(Encryptor::new(&crypt.spec.recipients))
    }

    /// Checks, before anything is read, that `what` (a snapshot), encrypted to `recipients`,
    /// can be decrypted here: an identity is configured, readable, and one of the recipients.
    pub fn check_can_decrypt(
        &self,
        what: &str,
        recipients: &[String],
    ) -> Result<(), CannotDecrypt> {
        let what = what.to_string();
        let ids = match self.crypt.as_ref().map(|c| c.identities()) {
            Some(Ok(ids)) => ids,
            Some(Err(error)) => return Err(CannotDecrypt::Identity { what, error }),
            None => return Err(CannotDecrypt::NotConfigured { what }),
        };
        let mine: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        if mine.iter().any(|m| recipients.contains(m)) {
            return Ok(());
        }
        Err(CannotDecrypt::OtherRecipients {
            what,
            recipients: recipients.join(", "),
            identity: self
                .crypt
                .as_ref()
                .map(|c| c.identity_name())
                .unwrap_or_default(),
            mine: mine.join(", "),
        })
    }

    /// Opens `key` for reading its stored bytes as they are (ciphertext when encrypted): for
    /// checking a manifest's sha256, or copying an object unchanged.
    pub async fn raw_reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        super::validate_key(key)?;
        self.backend.reader(key).await
    }

    /// Wraps a blocking reader of `key`'s stored bytes so it yields plaintext: decrypted when
    /// they are an age file, unchanged otherwise. Decryption errors name the key.
    pub fn decrypting_read<R: Read + Send + 'static>(
        &self,
        key: &str,
        mut stored: R,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let ctx = ErrorContext::new(self.backend.describe(), Op::Download, key);
        let head = sniff_sync(&mut stored).map_err(|e| ctx.failed(e, "retry"))?;
        let chained = Read::chain(Cursor::new(head.clone()), stored);
        if !is_age(&head) {
            self.check_plaintext(&ctx, key)?;
            return Ok(Box::new(chained));
        }
        let ids = self.identities_for(&ctx)?;
        let decryptor = age::Decryptor::new_buffered(BufReader::new(chained))
            .map_err(|e| decrypt_error(&ctx, e, self.crypt.as_deref()))?;
        let plain = decryptor
            .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| decrypt_error(&ctx, e, self.crypt.as_deref()))?;
        let key = key.to_string();
        Ok(Box::new(MapRead(plain, move |e: io::Error| {
            corrupt(&key, e)
        })))
    }

    /// Turns a reader of stored bytes into one of plaintext (see [`Storage::reader`]).
    pub(crate) async fn plaintext(
        &self,
        key: &str,
        mut stored: ObjectReader,
    ) -> Result<ObjectReader, StorageError> {
        let ctx = ErrorContext::new(self.backend.describe(), Op::Download, key);
        let size = stored.size();
        let head = sniff_async(&mut stored)
            .await
            .map_err(|e| ctx.failed(e, "retry; if it persists, check the storage's health"))?;
        let chained = AsyncReadExt::chain(Cursor::new(head.clone()), stored);
        if !is_age(&head) {
            self.check_plaintext(&ctx, key)?;
            return Ok(ObjectReader::new(chained, size, String::new()));
        }
        let ids = self.identities_for(&ctx)?;
        let marked = futures::io::BufReader::new(Marked(chained).compat());
        let decryptor = age::Decryptor::new_async_buffered(marked)
            .await
            .map_err(|e| decrypt_error(&ctx, e, self.crypt.as_deref()))?;
        let plain = decryptor
            .decrypt_async(ids.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| decrypt_error(&ctx, e, self.crypt.as_deref()))?
            .compat();
        let key = key.to_string();
        let unmarked = MapRead(plain, move |e: io::Error| match unmark(e) {
            Ok(stored_error) => stored_error,
            Err(e) => corrupt(&key, e),
        });
        Ok(ObjectReader::new(unmarked, None, String::new()))
    }

    /// With `[encryption]`, refuses a plaintext object where an age file is expected (see
    /// [`plaintext_accepted`]).
    fn check_plaintext(&self, ctx: &ErrorContext, key: &str) -> Result<(), StorageError> {
        if self.crypt.is_none() || plaintext_accepted(key) {
            return Ok(());
        }
        Err(ctx.failed(
            "it is stored in plaintext, but with [encryption] configured it must be an age file; refused (it may have been replaced by someone who can write to the bucket)",
            "restore an older snapshot; one made before [encryption] was turned on is restored with a copy of the configuration without the [encryption] section",
        ))
    }

    fn identities_for(&self, ctx: &ErrorContext) -> Result<Arc<Vec<Identity>>, StorageError> {
        match self.crypt.as_ref().map(|c| c.identities()) {
            Some(Ok(ids)) => Ok(ids),
            Some(Err(e)) => Err(ctx.failed(e.cause(), e.hint())),
            None => Err(ctx.failed(
                "it is encrypted with age and this configuration has no [encryption] section",
                IDENTITY_HINT,
            )),
        }
    }
}

fn is_age(head: &[u8]) -> bool {
    head == AGE_MAGIC
}

/// Reads up to the length of [`AGE_MAGIC`] (less only at the end of the object).
fn sniff_sync(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(AGE_MAGIC.len());
    r.take(AGE_MAGIC.len() as u64).read_to_end(&mut head)?;
    Ok(head)
}

async fn sniff_async(r: &mut ObjectReader) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(AGE_MAGIC.len());
    r.take(AGE_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .await?;
    Ok(head)
}

fn decrypt_error(ctx: &ErrorContext, e: age::DecryptError, crypt: Option<&Crypt>) -> StorageError {
    use age::DecryptError as D;
    let who = crypt.map(Crypt::identity_name).unwrap_or_default();
    match e {
        D::NoMatchingKeys => ctx.failed(
            format!("it is not encrypted to {who}"),
            "use the identity file whose `age-keygen -y` prints one of the recipients the \
             snapshot's manifest lists",
        ),
        D::Io(e) => ctx.failed(
            unmark(e).unwrap_or_else(|e| e),
            "retry; if it persists, check the storage's health",
        ),
        D::UnknownFormat => ctx.failed(
            "it is an age file of a newer format",
            "upgrade opsagent, or decrypt it with the age CLI",
        ),
        other => ctx.failed(
            format!("the object is corrupt: its age header does not check ({other:?})"),
            "restore an older snapshot",
        ),
    }
}

mod keys;
mod stream;
#[cfg(test)]
mod tests;
