//! `[metrics] listen`: a Prometheus text endpoint (`GET /metrics`) on a loopback port, off by
//! default, so a team that outgrows one box can scrape this one. Every scrape reads the catalog
//! (check states written by the health runner, backup and drill runs), so the endpoint holds no
//! state of its own and costs nothing between scrapes.

use crate::catalog::{Catalog, RunStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

type Labels = Vec<(String, String)>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Binds `addr` and serves until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    catalog: Arc<Catalog>,
    jobs: Vec<String>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    Ok(tokio::spawn(accept_loop(listener, catalog, jobs)))
}

/// Scrapes served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a client may take to send its request, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts scrapes, at most [`MAX_CONNECTIONS`] at a time. An accept error (out of file
/// descriptors) is logged once and backs off up to a second instead of spinning.
async fn accept_loop(listener: TcpListener, catalog: Arc<Catalog>, jobs: Vec<String>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut sock = accept_backing_off(&listener, "metrics endpoint").await;
        let (catalog, jobs) = (catalog.clone(), jobs.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer(&mut sock, catalog, jobs)).await;
        });
    }
}

/// The next connection on `listener`. An accept error (out of file descriptors) is logged once
/// per streak, naming `what`, and backs off from 50 ms up to a second instead of spinning.
pub async fn accept_backing_off(listener: &TcpListener, what: &str) -> TcpStream {
    let mut backoff = Duration::from_millis(50);
    loop {
        match listener.accept().await {
            Ok((sock, _)) => return sock,
            Err(e) => {
                if backoff == Duration::from_millis(50) {
                    tracing::warn!(error = %e, "{what} cannot accept a connection; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Reads one request and answers it.
async fn answer(sock: &mut TcpStream, catalog: Arc<Catalog>, jobs: Vec<String>) {
    let mut buf = vec![0u8; 4096];
    let Ok(n) = sock.read(&mut buf).await else {
        return;
    };
    let head = String::from_utf8_lossy(&buf[..n]);
    let response = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
        let body = tokio::task::spawn_blocking(move || render(&catalog, &jobs))
            .await
            .unwrap_or_default();
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = sock.write_all(response.as_bytes()).await;
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The exposition text for the catalog's current state.
pub fn render(catalog: &Catalog, jobs: &[String]) -> String {
    let mut reg = Registry::with_prefix("opsagent");
    let state = FloatGauges::default();
    let value = FloatGauges::default();
    let flapping = FloatGauges::default();
    for c in catalog.check_states().unwrap_or_default() {
        let l = labels(&[("check", &c.check), ("kind", &c.kind)]);
        let code = match c.state.as_str() {
            "OK" => 0.0,
            "WARN" => 1.0,
            "CRIT" => 2.0,
            _ => 3.0,
        };
        state.get_or_create(&l).set(code);
        flapping
            .get_or_create(&l)
            .set(if c.flapping { 1.0 } else { 0.0 });
        if let Some(v) = c.value {
            value.get_or_create(&l).set(v);
        }
    }
    let last_success = FloatGauges::default();
    let last_ok = FloatGauges::default();
    let archived = FloatGauges::default();
    for job in jobs {
        if let Ok(Some(b)) = catalog.binlog_progress(job) {
            let l = labels(&[("job", job)]);
            archived
                .get_or_create(&l)
                .set(b.updated_at.timestamp() as f64);
        }
        for kind in ["mysql", "media", "verify"] {
            let l = labels(&[("job", job), ("kind", kind)]);
            if let Ok(Some(r)) = catalog.last_finished_run(job, kind, true) {
                last_success
                    .get_or_create(&l)
                    .set(r.started_at.timestamp() as f64);
            }
            if let Ok(Some(r)) = catalog.last_finished_run(job, kind, false) {
                last_ok
                    .get_or_create(&l)
                    .set(if r.status == RunStatus::Success {
                        1.0
                    } else {
                        0.0
                    });
            }
        }
    }
    reg.register(
        "check_state",
        "Check state: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN",
        state,
    );
    reg.register("check_value", "Last sampled value of the check", value);
    reg.register("check_flapping", "1 while the check is flapping", flapping);
    reg.register(
        "run_last_success_timestamp_seconds",
        "Start of the newest successful backup (kind mysql) or restore drill (kind verify)",
        last_success,
    );
    reg.register(
        "binlog_archived_timestamp_seconds",
        "The moment up to which the job's binary log is archived (now minus it: the data at risk)",
        archived,
    );
    reg.register(
        "run_last_ok",
        "1 if the newest finished run of the job succeeded",
        last_ok,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}
