//! `[[checks.tcp]]`: a TCP connection to `address` opens. CRIT when refused or unanswered; the
//! value is the connect time in milliseconds.

use super::state::Level;
use super::{inner_budget, CheckSpec, Sample};
use std::time::Instant;

/// A TCP check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `host:port`.
    pub address: String,
}

/// Connects once.
pub async fn probe(spec: &CheckSpec, t: &Spec) -> Sample {
    let budget = inner_budget(spec.timeout);
    let start = Instant::now();
    match tokio::time::timeout(budget, tokio::net::TcpStream::connect(&t.address)).await {
        Ok(Ok(_stream)) => {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            Sample::judged(
                spec,
                Level::Ok,
                Some(ms),
                format!("{} answers in {ms:.1} ms", t.address),
            )
        }
        Ok(Err(e)) => Sample::judged(spec, Level::Crit, None, format!("{}: {e}", t.address)),
        Err(_) => Sample::judged(
            spec,
            Level::Crit,
            None,
            format!("{}: no answer within {budget:?}", t.address),
        ),
    }
}
