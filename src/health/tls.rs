//! `[[checks.tls]]`: days until the certificate served at `address` expires (WARN/CRIT below
//! `warn_days`/`crit_days`). The certificate is read even when it is invalid or already expired:
//! this check is about expiry, the `http` check about validity.

use super::state::Limits;
use super::{inner_budget, CheckSpec, Sample};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// A TLS expiry check.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `host:port`.
    pub address: String,
    /// SNI name; default the host part of `address`.
    pub server_name: String,
    /// Thresholds in days (lower is worse); default warn 14, crit 7.
    pub days: Limits,
}

/// Connects, reads the peer certificate's notAfter.
pub async fn probe(spec: &CheckSpec, t: &Spec) -> Sample {
    let budget = inner_budget(spec.timeout);
    match tokio::time::timeout(budget, not_after(t)).await {
        Ok(Ok((not_after, subject))) => {
            let now = chrono::Utc::now().timestamp();
            let days = (not_after - now) as f64 / 86_400.0;
            let when = chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default();
            let detail = format!(
                "certificate of {} ({subject}) expires {} ({days:.1} days)",
                t.address,
                when.format("%Y-%m-%d %H:%M UTC")
            );
            Sample::value(spec, days, t.days, detail)
        }
        Ok(Err(e)) => Sample::judged(
            spec,
            super::state::Level::Crit,
            None,
            format!("{}: {e}", t.address),
        ),
        Err(_) => Sample::judged(
            spec,
            super::state::Level::Crit,
            None,
            format!("{}: no TLS handshake within {budget:?}", t.address),
        ),
    }
}

/// Why a certificate could not be read; shown as the check's detail.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The TLS client could not be set up.
    #[error("{0}")]
    Setup(rustls::Error),
    /// `server_name` is not a DNS name or an IP address.
    #[error("server name {name:?}: {cause}")]
    ServerName {
        /// The name configured (or taken from `address`).
        name: String,
        /// Why rustls refused it.
        cause: String,
    },
    /// The TCP connection failed.
    #[error("{0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The handshake ended without a certificate.
    #[error("the server sent no certificate")]
    NoCertificate,
    /// The leaf certificate is not X.509 as x509-parser reads it.
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
}

/// The leaf certificate's notAfter (Unix seconds) and subject.
pub async fn not_after(t: &Spec) -> Result<(i64, String), CertError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(CertError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(t.server_name.clone()).map_err(|e| CertError::ServerName {
        name: t.server_name.clone(),
        cause: e.to_string(),
    })?;
    let tcp = tokio::net::TcpStream::connect(&t.address)
        .await
        .map_err(CertError::Connect)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(CertError::Handshake)?;
    let (_, conn) = tls.get_ref();
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(CertError::NoCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    Ok((
        cert.validity().not_after.timestamp(),
        cert.subject().to_string(),
    ))
}

/// Accepts any certificate (signatures on the handshake are still checked).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
