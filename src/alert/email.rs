//! SMTP delivery with lettre, one step at a time so a failure names the step an operator has to
//! fix: DNS, connect, TLS (implicit or STARTTLS), greeting, AUTH, sender, each recipient, data.
//!
//! Certificates are checked against the system's roots plus an optional `ca_file` (a private CA
//! or a self-signed relay). Passwords never appear in errors or logs.

use crate::secret::Secret;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The largest `ca_file` read (Debian's whole CA bundle is ~220 KB).
pub const MAX_CA_FILE: u64 = 4 << 20;

/// TLS mode of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// No TLS at all (local relays only).
    None,
}

/// `[alerts.email]`, resolved.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// SMTP server.
    pub smtp_host: String,
    /// SMTP port.
    pub smtp_port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// AUTH user.
    pub username: Option<String>,
    /// AUTH password.
    pub password: Option<Secret>,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Extra CA certificate.
    pub ca_file: Option<PathBuf>,
    /// Connection timeout.
    pub timeout: Duration,
}

/// The step of an SMTP delivery that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Reading `ca_file` or setting up TLS.
    Setup,
    /// Resolving the host name.
    Dns,
    /// The TCP connection.
    Connect,
    /// The TLS handshake (implicit TLS or STARTTLS).
    Tls,
    /// The server's greeting and EHLO.
    Greeting,
    /// SMTP AUTH.
    Auth,
    /// MAIL FROM.
    Sender,
    /// RCPT TO, for this address.
    Recipient(String),
    /// DATA: the server refused the message itself.
    Data,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Setup => write!(f, "TLS setup"),
            Step::Dns => write!(f, "DNS lookup"),
            Step::Connect => write!(f, "connect"),
            Step::Tls => write!(f, "TLS handshake"),
            Step::Greeting => write!(f, "greeting (EHLO)"),
            Step::Auth => write!(f, "authentication (AUTH)"),
            Step::Sender => write!(f, "sender (MAIL FROM)"),
            Step::Recipient(r) => write!(f, "recipient {r} (RCPT TO)"),
            Step::Data => write!(f, "message (DATA)"),
        }
    }
}

/// A failed delivery: which server, which step, what it said, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SMTP {server}: {step} failed: {message} (hint: {})", hint(.step))]
pub struct SendError {
    /// `host:port`.
    pub server: String,
    /// Where it failed.
    pub step: Step,
    /// What went wrong.
    pub message: String,
    /// The server's reply code when it answered with a refusal (4xx, 5xx); `None` for a
    /// timeout, a closed connection or a local problem.
    pub code: Option<u16>,
}

impl SendError {
    /// A 5xx reply: the same mail will be refused again, retrying it is pointless.
    pub fn permanent(&self) -> bool {
        self.code.is_some_and(|c| c >= 500)
    }
}

/// The reply code in an error, when the server answered.
pub(crate) trait ReplyCode {
    /// `Some(code)` for a negative SMTP reply.
    fn reply_code(&self) -> Option<u16>;
}

impl ReplyCode for lettre::transport::smtp::Error {
    fn reply_code(&self) -> Option<u16> {
        self.status().and_then(|c| c.to_string().parse().ok())
    }
}

impl ReplyCode for std::io::Error {
    fn reply_code(&self) -> Option<u16> {
        None
    }
}

/// "no answer within 10s (alerts.email.timeout)".
fn no_answer(timeout: Duration) -> String {
    format!(
        "no answer within {} (`timeout` in [alerts.email])",
        humantime::format_duration(timeout)
    )
}

fn hint(step: &Step) -> &'static str {
    match step {
        Step::Setup => "check ca_file: it must be a PEM certificate",
        Step::Dns => "check smtp_host and the DNS resolver (/etc/resolv.conf)",
        Step::Connect => "check smtp_host, smtp_port and any firewall between this host and the server",
        Step::Tls => "check tls (\"starttls\" for 587, \"tls\" for 465) and that the server's certificate is trusted (ca_file for a private CA)",
        Step::Greeting => "is this an SMTP server? check smtp_port and tls: port 465 speaks TLS at once (tls = \"tls\"), 587 and 25 start in plain text (tls = \"starttls\")",
        Step::Auth => "check username and the password in password_file",
        Step::Sender => "the server refuses this sender: check `from` (many servers only accept the authenticated user's address)",
        Step::Recipient(_) => "check the address in `to`, and that the server relays for it",
        Step::Data => "the server refused the message; its reply above says why",
    }
}

/// Sends mails to one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    settings: EmailSettings,
    /// `ca_file`'s PEM, read and checked once; the TLS parameters (with the built-in roots) are
    /// built per connection, so an idle daemon does not hold a parsed root store.
    ca_pem: Option<Vec<u8>>,
    server: String,
}

impl Mailer {
    /// Checks the settings (reading `ca_file`); TLS is set up when a connection needs it.
    pub fn new(settings: EmailSettings) -> Result<Mailer, SendError> {
        let server = format!("{}:{}", settings.smtp_host, settings.smtp_port);
        let fail = |message: String| SendError {
            server: server.clone(),
            step: Step::Setup,
            message,
            code: None,
        };
        let ca_pem = match (&settings.ca_file, settings.tls) {
            (Some(ca), SmtpTls::Starttls | SmtpTls::Tls) => {
                let pem = crate::secret::read_small_file(ca, MAX_CA_FILE, true)
                    .map_err(|e| fail(format!("cannot read {}: {e}", ca.display())))?;
                Certificate::from_pem(&pem).map_err(|e| fail(format!("{}: {e}", ca.display())))?;
                Some(pem)
            }
            _ => None,
        };
        Ok(Mailer {
            settings,
            ca_pem,
            server,
        })
    }

    /// The TLS parameters of one connection (`None` for `tls = "none"`).
    fn tls_params(&self) -> Result<Option<TlsParameters>, SendError> {
        if self.settings.tls == SmtpTls::None {
            return Ok(None);
        }
        let mut b = TlsParameters::builder(self.settings.smtp_host.clone());
        if let Some(pem) = &self.ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| self.err(Step::Setup, e))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map(Some).map_err(|e| self.err(Step::Setup, e))
    }

    /// The settings.
    pub fn settings(&self) -> &EmailSettings {
        &self.settings
    }

    fn err(&self, step: Step, message: impl fmt::Display) -> SendError {
        SendError {
            server: self.server.clone(),
            step,
            message: message.to_string(),
            code: None,
        }
    }

    async fn step<T, E: fmt::Display + ReplyCode>(
        &self,
        step: Step,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(SendError {
                code: e.reply_code(),
                ..self.err(step, &e)
            }),
            Err(_) => Err(self.err(step, no_answer(self.settings.timeout))),
        }
    }

    /// Resolves, connects, sets up TLS and authenticates.
    pub async fn open(&self) -> Result<Session, SendError> {
        let (addr, stream) = self.connect().await?;
        let mut conn = self.handshake(addr, stream).await?;
        self.authenticate(&mut conn).await?;
        Ok(Session {
            conn,
            server: self.server.clone(),
            timeout: self.settings.timeout,
        })
    }

    /// Resolves the host name and connects to the first address that answers.
    async fn connect(&self) -> Result<(SocketAddr, tokio::net::TcpStream), SendError> {
        let s = &self.settings;
        let addrs: Vec<SocketAddr> = self
            .step(
                Step::Dns,
                tokio::net::lookup_host((s.smtp_host.as_str(), s.smtp_port)),
            )
            .await?
            .collect();
        if addrs.is_empty() {
            return Err(self.err(Step::Dns, "the name has no addresses"));
        }
        let mut last = None;
        for a in &addrs {
            match self
                .step(Step::Connect, tokio::net::TcpStream::connect(a))
                .await
            {
                Ok(stream) => return Ok((*a, stream)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.err(Step::Connect, "no address")))
    }

    /// TLS (implicit or STARTTLS, as configured) and the greeting.
    async fn handshake(
        &self,
        addr: SocketAddr,
        stream: tokio::net::TcpStream,
    ) -> Result<AsyncSmtpConnection, SendError> {
        let s = &self.settings;
        let hello = ClientId::default();
        let tls = self.tls_params()?;
        let mut conn = match (s.tls, tls.clone()) {
            (SmtpTls::Tls, Some(implicit)) => {
                // lettre does the TLS handshake only on a connection it opens itself.
                drop(stream);
                let connect = AsyncSmtpConnection::connect_tokio1(
                    addr,
                    Some(s.timeout),
                    &hello,
                    Some(implicit),
                    None,
                );
                match self.step(Step::Tls, connect).await {
                    Ok(c) => c,
                    // The handshake worked when the server answered with a reply code.
                    Err(mut e) if e.code.is_some() => {
                        e.step = Step::Greeting;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            // Plain or STARTTLS: the connection just made carries the session (one
            // connection per attempt, as mail servers expect).
            _ => {
                let connect = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello);
                self.step(Step::Greeting, connect).await?
            }
        };
        if s.tls == SmtpTls::Starttls {
            if !conn.can_starttls() {
                return Err(self.err(Step::Tls, "the server does not offer STARTTLS"));
            }
            let params = tls.expect("TLS parameters for starttls");
            self.step(Step::Tls, conn.starttls(params, &hello)).await?;
        }
        Ok(conn)
    }

    /// SMTP AUTH, when a username and password are configured.
    async fn authenticate(&self, conn: &mut AsyncSmtpConnection) -> Result<(), SendError> {
        let s = &self.settings;
        let (Some(user), Some(pw)) = (&s.username, &s.password) else {
            return Ok(());
        };
        let mechanisms = [Mechanism::Plain, Mechanism::Login];
        if conn.server_info().get_auth_mechanism(&mechanisms).is_none() {
            let why = match s.tls {
                SmtpTls::None => "the server offers no AUTH (PLAIN or LOGIN) on this connection; most offer it only over TLS: set tls = \"starttls\" (port 587) or \"tls\" (465), or remove username and password_file if this relay needs no login",
                _ => "the server offers no AUTH (PLAIN or LOGIN): remove username and password_file if this relay needs no login, or use its submission port (587)",
            };
            return Err(self.err(Step::Auth, why));
        }
        let creds = Credentials::new(user.clone(), pw.expose().to_string());
        self.step(Step::Auth, conn.auth(&mechanisms, &creds))
            .await?;
        Ok(())
    }
}

mod session;
pub use session::Session;
