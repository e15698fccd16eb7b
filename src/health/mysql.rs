//! `[[checks.mysql]]`: the server answers, and its connections stay below a share of
//! `max_connections` (value: % in use). Runs the `mariadb`/`mysql` client with the credentials in
//! an in-memory option file (never on the command line), killed if the deadline passes.

use super::state::{Level, Limits};
use super::{inner_budget, CheckSpec, Sample};
use crate::mysql_client::{client_on_path, Client};
use crate::secret::Secret;

pub use crate::mysql_client::Endpoint;

/// A MySQL check.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Server.
    pub endpoint: Endpoint,
    /// User.
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// % of max_connections in use; default warn 80, crit 90.
    pub connections: Limits,
}

const SQL: &str = "SELECT 'alive'; SHOW GLOBAL STATUS LIKE 'Threads_connected'; SHOW GLOBAL VARIABLES LIKE 'max_connections';";

/// Option-file lines the check adds to its login.
const OPTIONS: &str = "connect-timeout=5\n";

/// The `[client]` option file.
pub fn option_file(m: &Spec) -> String {
    crate::mysql_client::option_file(&m.endpoint, m.user.as_deref(), m.password.as_ref(), OPTIONS)
}

/// Parses the client's output into (threads connected, max_connections).
pub fn parse(out: &str) -> Option<(f64, f64)> {
    let mut lines = out.lines();
    (lines.next()? == "alive").then_some(())?;
    let mut val = |name: &str| -> Option<f64> {
        let (k, v) = lines.next()?.split_once('\t')?;
        (k.eq_ignore_ascii_case(name)).then_some(())?;
        v.trim().parse().ok()
    };
    let threads = val("Threads_connected")?;
    let max = val("max_connections")?;
    Some((threads, max))
}

/// Asks the server.
pub async fn probe(spec: &CheckSpec, m: &Spec) -> Sample {
    let Some(client) = client_on_path() else {
        return Sample::failed(
            spec,
            "no mariadb or mysql client on PATH (hint: apt install mariadb-client)".into(),
        );
    };
    let client = Client::new(
        client,
        &m.endpoint,
        m.user.as_deref(),
        m.password.as_ref(),
        OPTIONS,
    );
    let args = ["--batch", "--skip-column-names", "--raw", "-e", SQL];
    let budget = inner_budget(spec.timeout);
    let where_ = m.endpoint.to_string();
    let out = match tokio::time::timeout(budget, client.output_async(&args)).await {
        Err(_) => {
            return Sample::judged(
                spec,
                Level::Crit,
                None,
                format!("MySQL at {where_} did not answer within {budget:?}"),
            )
        }
        Ok(Err(e)) => return Sample::failed(spec, e.to_string()),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = out.stderr.trim();
        return Sample::judged(spec, Level::Crit, None, format!("MySQL at {where_}: {err}"));
    }
    match parse(&out.stdout) {
        Some((threads, max)) => {
            let pct = threads * 100.0 / max.max(1.0);
            let detail =
                format!("MySQL at {where_} answers; {threads} of max_connections {max} in use");
            Sample::value(spec, pct, m.connections, detail)
        }
        None => Sample::failed(spec, format!("unexpected answer from MySQL at {where_}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_output() {
        assert_eq!(
            parse("alive\nThreads_connected\t7\nmax_connections\t151\n"),
            Some((7.0, 151.0))
        );
        assert_eq!(parse("nope\n"), None);
        assert_eq!(parse("alive\n"), None);
    }

    #[test]
    fn option_file_quotes_and_never_leaks_into_args() {
        let m = Spec {
            endpoint: Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 3306,
            },
            user: Some("mon\"itor".into()),
            password: None,
            connections: Limits::above(80.0, 90.0),
        };
        let f = option_file(&m);
        assert!(f.contains("user=\"mon\\\"itor\""), "{f}");
        assert!(f.contains("port=3306"), "{f}");
    }
}
