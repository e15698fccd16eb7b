//! SMTP delivery with lettre, one step at a time so a failure names the step an operator has to
//! fix: DNS, connect, TLS (implicit or STARTTLS), greeting, AUTH, sender, each recipient, data.
//!
//! Certificates are checked against the system's roots plus an optional `ca_file` (a private CA
//! or a self-signed relay). Passwords never appear in errors or logs.

use crate::secret::Secret;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
}

fn hint(step: &Step) -> &'static str {
    match step {
        Step::Setup => "check ca_file: it must be a PEM certificate",
        Step::Dns => "check smtp_host and the DNS resolver (/etc/resolv.conf)",
        Step::Connect => "check smtp_host, smtp_port and any firewall between this host and the server",
        Step::Tls => "check tls (\"starttls\" for 587, \"tls\" for 465) and that the server's certificate is trusted (ca_file for a private CA)",
        Step::Greeting => "is this an SMTP server? check smtp_port and tls",
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

/// One open SMTP session (after TLS and AUTH).
pub struct Session {
    conn: AsyncSmtpConnection,
    server: String,
    timeout: Duration,
}

impl Mailer {
    /// Checks the settings (reading `ca_file`); TLS is set up when a connection needs it.
    pub fn new(settings: EmailSettings) -> Result<Mailer, SendError> {
        let server = format!("{}:{}", settings.smtp_host, settings.smtp_port);
        let fail = |message: String| SendError {
            server: server.clone(),
            step: Step::Setup,
            message,
        };
        let ca_pem = match (&settings.ca_file, settings.tls) {
            (Some(ca), SmtpTls::Starttls | SmtpTls::Tls) => {
                let pem = std::fs::read(ca)
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
        }
    }

    async fn step<T, E: fmt::Display>(
        &self,
        step: Step,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.settings.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.err(step, e)),
            Err(_) => Err(self.err(
                step,
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.settings.timeout)
                ),
            )),
        }
    }

    /// Resolves, connects, sets up TLS and authenticates.
    pub async fn open(&self) -> Result<Session, SendError> {
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
        let mut reachable = None;
        for a in &addrs {
            match self
                .step(Step::Connect, tokio::net::TcpStream::connect(a))
                .await
            {
                Ok(_) => {
                    reachable = Some(*a);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(addr) = reachable else {
            return Err(last.unwrap_or_else(|| self.err(Step::Connect, "no address")));
        };
        let hello = ClientId::default();
        let tls = self.tls_params()?;
        let implicit = (s.tls == SmtpTls::Tls).then(|| tls.clone()).flatten();
        let first = if implicit.is_some() {
            Step::Tls
        } else {
            Step::Greeting
        };
        let connect =
            AsyncSmtpConnection::connect_tokio1(addr, Some(s.timeout), &hello, implicit, None);
        let mut conn = match self.step(first.clone(), connect).await {
            Ok(c) => c,
            Err(mut e) if first == Step::Tls && !e.message.to_lowercase().contains("tls") => {
                e.step = Step::Greeting;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if s.tls == SmtpTls::Starttls {
            if !conn.can_starttls() {
                return Err(self.err(Step::Tls, "the server does not offer STARTTLS"));
            }
            let params = tls.expect("TLS parameters for starttls");
            self.step(Step::Tls, conn.starttls(params, &hello)).await?;
        }
        if let (Some(user), Some(pw)) = (&s.username, &s.password) {
            let creds = Credentials::new(user.clone(), pw.expose().to_string());
            self.step(
                Step::Auth,
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds),
            )
            .await?;
        }
        Ok(Session {
            conn,
            server: self.server.clone(),
            timeout: s.timeout,
        })
    }
}

fn address(mailbox: &str) -> Result<lettre::Address, String> {
    mailbox
        .parse::<Mailbox>()
        .map(|m| m.email)
        .map_err(|e| format!("`{mailbox}` is not an address: {e}"))
}

impl Session {
    async fn step<T, E: fmt::Display>(
        server: &str,
        timeout: Duration,
        step: Step,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SendError> {
        let err = |message: String| SendError {
            server: server.to_string(),
            step: step.clone(),
            message,
        };
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(err(e.to_string())),
            Err(_) => Err(err("no answer in time".into())),
        }
    }

    /// Sends one formatted message (RFC 5322 text) to `to`.
    pub async fn send(&mut self, from: &str, to: &[String], raw: &[u8]) -> Result<(), SendError> {
        let (server, t) = (self.server.clone(), self.timeout);
        let from_addr = address(from).map_err(|m| SendError {
            server: server.clone(),
            step: Step::Sender,
            message: m,
        })?;
        Self::step(
            &server,
            t,
            Step::Sender,
            self.conn.command(Mail::new(Some(from_addr), vec![])),
        )
        .await?;
        for r in to {
            let step = Step::Recipient(r.clone());
            let a = address(r).map_err(|m| SendError {
                server: server.clone(),
                step: step.clone(),
                message: m,
            })?;
            Self::step(&server, t, step, self.conn.command(Rcpt::new(a, vec![]))).await?;
        }
        Self::step(&server, t, Step::Data, self.conn.command(Data)).await?;
        Self::step(&server, t, Step::Data, self.conn.message(raw)).await?;
        Ok(())
    }

    /// Says goodbye (errors ignored: the mail is already accepted).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.quit()).await;
    }

    /// Whether the connection is still usable after an error.
    pub fn broken(&self) -> bool {
        self.conn.has_broken()
    }
}
