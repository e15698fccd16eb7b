//! `[encryption]`: the age recipients backups are encrypted to, and the identity file that
//! restores and drills decrypt with. The recipients are public and needed for every backup, so
//! they are checked here; the identity is a secret needed only to read, so it is read when a
//! restore needs it (here only its path is checked, and a loose mode or an unreadable file
//! gives a warning).

use super::raw::RawEncryption;
use super::resolve::Ctx;
use super::span::KeyPath;
use super::MysqlJob;
use crate::storage::{parse_recipient, parse_recipients_file, BadRecipient, EncryptionSpec};
use std::path::Path;

/// What a recipient looks like, for hints.
const RECIPIENT_HINT: &str = "recipients are public keys like \"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\"; `age-keygen -y key.txt` prints the one of a key file (only X25519 `age1…` recipients are supported)";

pub(super) fn encryption(cx: &mut Ctx, e: &RawEncryption, p: &KeyPath) -> Option<EncryptionSpec> {
    let mut recipients = Vec::new();
    let mut ok = true;
    for (i, text) in e.recipients.iter().flatten().enumerate() {
        match parse_recipient(text) {
            Ok(r) => recipients.push(r),
            Err(why @ BadRecipient::SecretKey) => {
                ok = false;
                cx.error(
                    &p.key("recipients").index(i),
                    format!("this is a secret key, not a recipient: {why}"),
                    "put only the public key (`age-keygen -y key.txt`) here, and keep the secret key off this server; if it was committed or shared, make a new key",
                );
            }
            Err(why) => {
                ok = false;
                cx.error(
                    &p.key("recipients").index(i),
                    format!("`{}` is {why}", text.escape_debug()),
                    RECIPIENT_HINT,
                );
            }
        }
    }
    if let Some(file) = &e.recipients_file {
        ok &= recipients_file(cx, file, &p.key("recipients_file"), &mut recipients);
    }
    if ok && recipients.is_empty() {
        let at = if e.recipients.is_some() {
            p.key("recipients")
        } else {
            p.clone()
        };
        cx.error(
            &at,
            "no recipients: nothing to encrypt the backups to",
            "recipients = [\"age1…\"] (the public key `age-keygen -o key.txt` prints), or recipients_file = \"/etc/opsagent/recipients.txt\"",
        );
    }
    if let Some(file) = &e.identity_file {
        ok &= identity_file(cx, file, &p.key("identity_file"));
    }
    ok.then(|| EncryptionSpec {
        recipients,
        identity_file: e.identity_file.clone(),
    })
}

fn recipients_file(
    cx: &mut Ctx,
    file: &Path,
    p: &KeyPath,
    out: &mut Vec<age::x25519::Recipient>,
) -> bool {
    if !file.is_absolute() {
        cx.error(
            p,
            format!("`{}` is a relative path", file.display()),
            "use an absolute path, e.g. /etc/opsagent/recipients.txt",
        );
        return false;
    }
    let read = crate::secret::read_small_file(file, crate::secret::MAX_SECRET_FILE, true);
    let text = match read.map(|b| String::from_utf8_lossy(&b).into_owned()) {
        Ok(t) => t,
        Err(err) => {
            cx.error(
                p,
                format!("cannot read recipients file {}: {err}", file.display()),
                err.hint("one `age1…` public key per line"),
            );
            return false;
        }
    };
    match parse_recipients_file(&text) {
        Ok(found) if found.is_empty() => {
            cx.error(
                p,
                format!("recipients file {} lists no recipient", file.display()),
                RECIPIENT_HINT,
            );
            false
        }
        Ok(found) => {
            out.extend(found);
            true
        }
        Err((line, why)) => {
            cx.error(
                p,
                format!("line {line} of recipients file {}: {why}", file.display()),
                RECIPIENT_HINT,
            );
            false
        }
    }
}

/// Checks the identity file's path; warns (never fails) about its mode or readability, since
/// a server that only makes backups may rightly not have it yet.
fn identity_file(cx: &mut Ctx, file: &Path, p: &KeyPath) -> bool {
    if !file.is_absolute() {
        cx.error(
            p,
            format!("`{}` is a relative path", file.display()),
            "use an absolute path, e.g. /root/opsagent-age-key.txt",
        );
        return false;
    }
    match std::fs::metadata(file) {
        Ok(md) if !md.is_file() => cx.error(
            p,
            format!("identity file {} is not a regular file", file.display()),
            "point identity_file at the key file `age-keygen -o` wrote",
        ),
        Ok(_) => super::resolve::warn_if_world_readable(cx, file, p, "identity file"),
        Err(err) => cx.warn(
            p,
            format!(
                "cannot read identity file {}: {err}; restores and drills of encrypted snapshots will fail",
                file.display()
            ),
            "backups still work (they need only the recipients); put the key file there, readable by the user opsagent runs as, before restoring",
        ),
    }
    true
}

/// Warns when restore drills are scheduled but cannot decrypt: backups are encrypted and no
/// identity file is set. (Keeping the identity off the server is right; the drills then belong
/// where the key is.)
pub(super) fn drills_need_identity(
    cx: &mut Ctx,
    enc: Option<&EncryptionSpec>,
    jobs: &[MysqlJob],
    root: &KeyPath,
) {
    if enc.is_none_or(|e| e.identity_file.is_some()) {
        return;
    }
    for (i, job) in jobs.iter().enumerate() {
        if job.verify_schedule.is_some() {
            cx.warn(
                &root.key("mysql").index(i).key("name"),
                format!(
                    "job `{}` has restore drills scheduled, but its backups are encrypted and no [encryption] identity_file is set: every drill will fail",
                    job.name
                ),
                "set verify_schedule = \"off\" here and run `opsagent verify` where the key is, or set identity_file",
            );
        }
    }
}
