//! Names from outside (database names, paths, keys read back from a bucket) put into text a
//! person reads on a terminal or copies into a shell or a SQL client.
//!
//! Threat model: a database name can hold any character MariaDB allows in an identifier
//! (quotes, backticks, `;`, spaces) and a name read back from storage can hold anything. Printed
//! raw, an escape sequence (`ESC [ …`) rewrites what the terminal shows, and a hint such as
//! "run: DROP DATABASE `x`;" turns into another statement or shell command when copied. So every
//! such name goes through one of these functions before it is printed: control characters
//! (C0, DEL, C1 including ESC and CSI) and the Unicode bidirectional overrides are removed, then
//! the name is quoted for where it lands. Removing changes a name that held control characters;
//! such a command then fails on a missing name instead of doing something else.
//!
//! Also [`human_bytes`]: byte counts as people read them (`1.5 GiB`), for the CLI and mails.
//!
//! A leaf: imports nothing of ours.

/// `s` without control characters and bidirectional overrides: safe to print to a terminal.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !hidden(*c)).collect()
}

/// Characters that change what a terminal shows rather than showing themselves.
fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` as one shell word, for a command an admin copies: left bare when it holds only
/// characters no shell treats specially, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell(s: &str) -> String {
    let s = printable(s);
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./:=@+,%".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) && !s.starts_with('-') {
        return s;
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as a MariaDB/MySQL identifier: in backticks, a backtick inside doubled.
pub fn sql_ident(s: &str) -> String {
    format!("`{}`", printable(s).replace('`', "``"))
}

/// Human-readable byte counts (`1.5 GiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_codes_are_removed() {
        assert_eq!(printable("shop"), "shop");
        assert_eq!(printable("a\x1b[2Jb\x1b]0;x\x07c"), "a[2Jb]0;xc");
        assert_eq!(printable("x\u{9b}31my\u{7f}\n\r\t"), "x31my");
        assert_eq!(printable("abc\u{202e}fdp.exe"), "abcfdp.exe");
        assert_eq!(printable("café 🙂"), "café 🙂");
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn shell_words() {
        let table = [
            ("shop", "shop"),
            ("/var/backups/shop.sql.zst", "/var/backups/shop.sql.zst"),
            ("2026-11-20T02:30:00Z", "2026-11-20T02:30:00Z"),
            ("", "''"),
            ("my shop", "'my shop'"),
            ("it's", r"'it'\''s'"),
            ("$(reboot)", "'$(reboot)'"),
            ("a;rm -rf /", "'a;rm -rf /'"),
            ("-rf", "'-rf'"),
            ("x\x1b[1;31m'`y", r"'x[1;31m'\''`y'"),
            ("naïve", "'naïve'"),
        ];
        for (name, want) in table {
            assert_eq!(shell(name), want, "{name:?}");
        }
    }

    #[test]
    fn sql_identifiers() {
        let table = [
            ("shop", "`shop`"),
            ("my`db", "`my``db`"),
            ("x`; DROP DATABASE y; --", "`x``; DROP DATABASE y; --`"),
            ("a\x1b[0m\nb", "`a[0mb`"),
            ("", "``"),
        ];
        for (name, want) in table {
            assert_eq!(sql_ident(name), want, "{name:?}");
        }
    }
}
