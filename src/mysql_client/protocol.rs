//! Statements sent over the client protocol itself (`mysql_async`), for the one load where the
//! `mariadb` client's own work costs more than the server's: the statements of rows a parallel
//! restore spreads over its sessions. That client reads every byte of its input to find where
//! each statement ends (a restore of a 456 MiB dump spent 4.7 s of CPU in it, on the cores the
//! server loads with); here the caller already knows, so each statement goes out as it is.
//!
//! A [`Connection`] is blocking (it owns a small current-thread runtime) so a plain thread can
//! drive it. It never reads a local file: `LOAD DATA LOCAL` asked for by a statement fails, as
//! no handler for it is installed. Errors are [`MysqlError`], a server's error in the client's
//! words (`ERROR 1142 (42000): …`) so hints and codes read the same as for the tools.

use super::{Endpoint, MysqlError};
use crate::secret::Secret;
use mysql_async::prelude::Queryable;

/// How long a login may take (a server that accepts the connection and never answers).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One logged-in connection.
pub struct Connection {
    rt: tokio::runtime::Runtime,
    conn: Option<mysql_async::Conn>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Logs in at `endpoint` as `user`, with `database` as the default database.
    pub fn open(
        endpoint: &Endpoint,
        user: Option<&str>,
        password: Option<&Secret>,
        database: &str,
    ) -> Result<Connection, MysqlError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MysqlError::Connect {
                cause: e.to_string(),
            })?;
        let mut opts = mysql_async::OptsBuilder::default()
            .user(user)
            .pass(password.map(|p| p.expose().to_string()))
            .db_name(Some(database))
            .prefer_socket(false)
            .stmt_cache_size(0);
        opts = match endpoint {
            Endpoint::Tcp { host, port } => opts.ip_or_hostname(host.as_str()).tcp_port(*port),
            Endpoint::Socket(p) => opts.socket(Some(p.to_string_lossy())),
        };
        let conn = rt
            // (The timer is made inside the runtime: it needs the runtime's clock.)
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts)).await
            })
            .map_err(|_| MysqlError::Connect {
                cause: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| MysqlError::Connect { cause: said(&e) })?;
        Ok(Connection {
            rt,
            conn: Some(conn),
        })
    }

    /// Runs `sql` (one statement, or several when the text holds several), its results dropped.
    pub fn execute(&mut self, sql: &[u8]) -> Result<(), MysqlError> {
        let conn = self.conn.as_mut().ok_or(MysqlError::Closed)?;
        self.rt
            .block_on(conn.query_drop(sql))
            .map_err(|e| MysqlError::Statement { said: said(&e) })
    }

    /// Logs out.
    pub fn close(mut self) {
        if let Some(c) = self.conn.take() {
            let _ = self.rt.block_on(c.disconnect());
        }
    }
}

/// An error as the `mariadb` client prints it (server errors), or the crate's words.
fn said(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => {
            format!("ERROR {} ({}): {}", s.code, s.state, s.message)
        }
        other => other.to_string(),
    }
}
