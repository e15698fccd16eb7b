//! SMTP capture server for tests: aiosmtpd via `python3 tests/support/smtp_capture.py`.
//!
//! The script stores every accepted message as `N.eml` (raw RFC 5322, written atomically) plus
//! `N.env` (envelope) in the server's mail directory; [`SmtpServer::messages`] reads them back in
//! arrival order. [`SmtpOptions`] switches on STARTTLS (required before MAIL) and AUTH (required,
//! PLAIN/LOGIN, only after STARTTLS when TLS is on) with one user/password;
//! [`self_signed_cert`] makes a certificate for `localhost`/127.0.0.1 with `openssl`;
//! [`send_plain`] is a minimal SMTP client for checking the server itself.
//!
//! [`SmtpServer::shared`] is a plain server shared by a test binary: give each test its own
//! recipient and use [`SmtpServer::messages_to`]. [`SmtpServer::stop`]/[`SmtpServer::restart`]
//! keep the port (refusing connections meanwhile) and the captured messages.

use super::{
    cleanup_at_exit, kill_child, log_file, log_tail, restart_on_port, server_dir, spawn,
    start_on_free_port, wait_until_ready, PortReservation, StartError,
};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_capture.py");

/// `Default`: plain SMTP, no AUTH.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// (certificate PEM, private key PEM): offer STARTTLS and require it.
    pub starttls_cert: Option<(PathBuf, PathBuf)>,
    /// (user, password): require AUTH with exactly these.
    pub auth: Option<(String, String)>,
    /// With `starttls_cert`: TLS from the first byte (port 465 style) instead of STARTTLS.
    pub implicit_tls: bool,
    /// Scripted misbehaviour, `--fault` specs of `tests/support/smtp_capture.py` (`rcpt:ADDR:550`,
    /// `data:451:2`, `drop-data:1`, `slow-data:SECONDS:N`).
    pub faults: Vec<String>,
}

/// The SMTP envelope of a captured message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

pub struct SmtpServer {
    port: u16,
    dir: PathBuf,
    opts: SmtpOptions,
    child: Option<Child>,
    reservation: Option<PortReservation>,
    owned: bool,
}

impl SmtpServer {
    /// Plain SMTP without AUTH, owned by the caller (killed, directory removed on drop).
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(SmtpOptions::default())
    }

    pub fn start_with(opts: SmtpOptions) -> SmtpServer {
        let dir = server_dir("smtp");
        std::fs::create_dir_all(dir.join("mail")).expect("create mail dir");
        let mut s = SmtpServer {
            port: 0,
            dir,
            opts,
            child: None,
            reservation: None,
            owned: true,
        };
        start_on_free_port("SmtpServer", |port| {
            s.port = port;
            s.launch()
        });
        s
    }

    /// One plain server per test binary, started on first use, killed when the binary exits.
    pub fn shared() -> &'static SmtpServer {
        static SHARED: OnceLock<SmtpServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut s = SmtpServer::start();
            s.owned = false;
            cleanup_at_exit(s.child.as_ref().map(|c| c.id()), s.dir.clone());
            s
        })
    }

    fn launch(&mut self) -> Result<(), StartError> {
        let mail = self.mail_dir();
        let ready = mail.join("ready");
        let _ = std::fs::remove_file(&ready);
        let log = self.dir.join("smtp.log");
        let (out, err) = log_file(&log, &format!("smtp_capture.py on port {}", self.port));
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&mail)
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some((cert, key)) = &self.opts.starttls_cert {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if let Some((user, password)) = &self.opts.auth {
            cmd.args(["--auth-user", user, "--auth-password", password]);
        }
        if self.opts.implicit_tls {
            cmd.arg("--implicit-tls");
        }
        for f in &self.opts.faults {
            cmd.args(["--fault", f]);
        }
        let mut child = spawn(cmd).unwrap_or_else(|e| {
            panic!("SmtpServer: cannot run python3 ({e}); run scripts/install-test-deps")
        });
        let pid = child.id().to_string();
        let probe = || std::fs::read_to_string(&ready).is_ok_and(|p| p.trim() == pid);
        wait_until_ready("smtp_capture.py", &mut child, &log, probe)?;
        self.child = Some(child);
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// TCP connections the server accepted so far (its own readiness probe included).
    pub fn connections(&self) -> u64 {
        std::fs::read_to_string(self.mail_dir().join("connections"))
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Where `N.eml` / `N.env` are written.
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.join("mail")
    }

    fn numbered(&self) -> Vec<u64> {
        let mut ns: Vec<u64> = std::fs::read_dir(self.mail_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".eml")?.parse().ok())
            .collect();
        ns.sort_unstable();
        ns
    }

    fn read(&self, n: u64, ext: &str) -> String {
        let path = self.mail_dir().join(format!("{n}.{ext}"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn envelope(&self, n: u64) -> Envelope {
        let text = self.read(n, "env");
        let mut lines = text.lines().map(str::to_string);
        let mail_from = lines.next().unwrap_or_default();
        Envelope {
            mail_from,
            rcpt_to: lines.filter(|l| !l.is_empty()).collect(),
        }
    }

    /// Raw RFC 5322 texts of all messages captured so far, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.numbered()
            .into_iter()
            .map(|n| self.read(n, "eml"))
            .collect()
    }

    /// Envelope and raw text of all messages captured so far, in arrival order.
    pub fn messages_with_envelopes(&self) -> Vec<(Envelope, String)> {
        self.numbered()
            .into_iter()
            .map(|n| (self.envelope(n), self.read(n, "eml")))
            .collect()
    }

    /// Raw texts of the messages with `rcpt` (case-insensitive) among their envelope recipients.
    pub fn messages_to(&self, rcpt: &str) -> Vec<String> {
        self.messages_with_envelopes()
            .into_iter()
            .filter(|(e, _)| e.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(rcpt)))
            .map(|(_, m)| m)
            .collect()
    }

    /// Waits until at least `n` messages arrived and returns all of them; panics on timeout.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait(n, timeout, "", || self.messages())
    }

    /// [`SmtpServer::wait_for_messages`] counting only messages to `rcpt`.
    pub fn wait_for_messages_to(&self, rcpt: &str, n: usize, timeout: Duration) -> Vec<String> {
        self.wait(n, timeout, rcpt, || self.messages_to(rcpt))
    }

    fn wait(
        &self,
        n: usize,
        timeout: Duration,
        rcpt: &str,
        get: impl Fn() -> Vec<String>,
    ) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let got = get();
            if got.len() >= n {
                return got;
            }
            if t0.elapsed() > timeout {
                let to = if rcpt.is_empty() {
                    String::new()
                } else {
                    format!(" to {rcpt}")
                };
                panic!(
                    "SmtpServer: expected {n} message(s){to} within {timeout:?}, got {}; {} messages in \
                     total; server log:\n{}",
                    got.len(),
                    self.numbered().len(),
                    log_tail(&self.dir.join("smtp.log"), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server; the port stays reserved (connections refused) until `restart`.
    pub fn stop(&mut self) {
        kill_child(&mut self.child);
        if self.reservation.is_none() {
            self.reservation = Some(PortReservation::hold("SmtpServer", self.port));
        }
    }

    /// Starts it again on the same port with the same options; captured messages are kept.
    pub fn restart(&mut self) {
        self.stop();
        restart_on_port("SmtpServer", self.port, || {
            self.reservation = None;
            self.launch()
        });
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends one message with a minimal plain SMTP dialogue (EHLO, MAIL, RCPT, DATA, QUIT), panicking
/// on any unexpected reply; returns the server's reply lines. `message` may use `\n` line ends.
pub fn send_plain(port: u16, from: &str, to: &str, message: &str) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to SMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut replies = Vec::new();
    let mut read_reply = |replies: &mut Vec<String>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read SMTP reply");
        replies.push(line.trim_end().to_string());
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line[..3].to_string();
        }
    };
    assert_eq!(read_reply(&mut replies), "220");
    let data = format!("{}\r\n.", message.replace('\n', "\r\n"));
    let commands = [
        ("EHLO test.local".to_string(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_string(), "354"),
        (data, "250"),
        ("QUIT".to_string(), "221"),
    ];
    for (cmd, want) in commands {
        writer.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        assert_eq!(read_reply(&mut replies), want, "after {cmd:?}: {replies:?}");
    }
    replies
}

/// Writes a self-signed certificate for `localhost` and `127.0.0.1` into `dir` with `openssl`;
/// returns (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("create cert dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
