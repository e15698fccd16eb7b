//! MariaDB server for tests: a private `mariadbd` on 127.0.0.1:PORT with its own datadir.
//!
//! Start-up: `mariadb-install-db --auth-root-authentication-method=normal` runs once per test
//! binary into a template datadir (≈2 s); every server then copies the template (≈0.2 s) and runs
//! `mariadbd --defaults-file=DIR/my.cnf --datadir=D --socket=D/sock --port=P
//! --bind-address=127.0.0.1 --skip-log-bin --user=$(id -un) --pid-file=D/pid --log-error=D/err.log`.
//! `--defaults-file` (written here) keeps /etc/mysql out; the client runs with `--no-defaults`.
//! Ready when `mariadb -uroot --socket=D/sock -e 'select 1'` succeeds.
//!
//! Root has no password and is reached over the socket; [`MariaDb::create_user`] makes a password
//! user for TCP (127.0.0.1) and socket (localhost) logins with the grants a backup user needs.
//! The my.cnf trades durability against OS crashes for speed (fine for tests; a killed `mariadbd`
//! still recovers every committed transaction).

use super::{
    cleanup_at_exit, kill_child, log_file, log_tail, restart_on_port, server_dir, spawn,
    start_on_free_port, unique_name, wait_until_ready, PortReservation, StartError, START_TIMEOUT,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MY_CNF: &str = "[mysqld]\n\
innodb_log_file_size=16M\n\
innodb_buffer_pool_size=64M\n\
innodb_flush_log_at_trx_commit=2\n\
skip-name-resolve\n\
max_connections=200\n";

pub struct MariaDb {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    reservation: Option<PortReservation>,
    owned: bool,
    /// Writes a binary log (`--log-bin`), as production servers with replication or
    /// point-in-time recovery do.
    binlog: bool,
}

fn user_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name at once.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() {
            return std::env::var("USER").unwrap_or_else(|_| "root".into());
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// The datadir made by `mariadb-install-db`, once per test binary; servers start from a copy.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = server_dir("mariadb-template");
        cleanup_at_exit(None, dir.clone());
        let cnf = dir.join("my.cnf");
        std::fs::write(&cnf, MY_CNF).expect("write template my.cnf");
        let log = dir.join("install.log");
        let (out, err) = log_file(&log, "mariadb-install-db");
        let mut cmd = Command::new("mariadb-install-db");
        cmd.arg(format!("--defaults-file={}", cnf.display()))
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--user={}", user_name()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = spawn(cmd).unwrap_or_else(|e| {
            panic!("MariaDb: cannot run mariadb-install-db ({e}); run scripts/install-test-deps")
        });
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mariadb-install-db") {
                break status;
            }
            if t0.elapsed() > START_TIMEOUT * 2 {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "MariaDb: mariadb-install-db hangs; {}:\n{}",
                    log.display(),
                    log_tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "MariaDb: mariadb-install-db failed ({status}); {}:\n{}",
            log.display(),
            log_tail(&log, 40)
        );
        eprintln!("MariaDb template datadir made in {:?}", t0.elapsed());
        dir.join("data")
    })
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl MariaDb {
    /// Starts a server owned by the caller; it is killed and its directory removed on drop.
    pub fn start() -> MariaDb {
        Self::start_with(false)
    }

    /// [`MariaDb::start`], writing a binary log.
    #[allow(dead_code)]
    pub fn start_with_binlog() -> MariaDb {
        Self::start_with(true)
    }

    fn start_with(binlog: bool) -> MariaDb {
        let template = template();
        let dir = server_dir("mariadb");
        copy_dir(template, &dir.join("data"))
            .unwrap_or_else(|e| panic!("MariaDb: copy datadir: {e}"));
        std::fs::write(dir.join("my.cnf"), MY_CNF).expect("write my.cnf");
        let mut db = MariaDb {
            port: 0,
            dir,
            child: None,
            reservation: None,
            owned: true,
            binlog,
        };
        start_on_free_port("MariaDb", |port| {
            db.port = port;
            db.launch()
        });
        db
    }

    /// One server per test binary, started on first use, killed when the binary exits.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut db = MariaDb::start();
            db.owned = false;
            cleanup_at_exit(db.child.as_ref().map(|c| c.id()), db.dir.clone());
            db
        })
    }

    fn launch(&mut self) -> Result<(), StartError> {
        let d = self.datadir();
        let log = d.join("err.log");
        let (out, err) = log_file(&log, &format!("mariadbd on port {}", self.port));
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("MariaDb: make its tmpdir");
        let mut cmd = Command::new("mariadbd");
        cmd.arg(format!(
            "--defaults-file={}",
            self.dir.join("my.cnf").display()
        ))
        .arg(format!("--datadir={}", d.display()))
        .arg(format!("--socket={}", self.socket().display()))
        .arg(format!("--port={}", self.port))
        .arg("--bind-address=127.0.0.1")
        // Its own tmpdir: a server starting removes every `#sql*` file in its tmpdir, and in a
        // shared /tmp that included the temporary tables of the other servers' running queries
        // ("Error on delete of '/tmp/#sql-temptable-….MAI'").
        .arg(format!("--tmpdir={}", tmp.display()));
        if self.binlog {
            cmd.arg(format!("--log-bin={}", d.join("binlog").display()))
                .arg("--server-id=1");
        } else {
            cmd.arg("--skip-log-bin");
        }
        cmd.arg(format!("--user={}", user_name()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = spawn(cmd).unwrap_or_else(|e| {
            panic!("MariaDb: cannot run mariadbd ({e}); run scripts/install-test-deps")
        });
        let sock = self.socket();
        let probe = || sock.exists() && self.try_sql("select 1").is_ok();
        wait_until_ready("mariadbd", &mut child, &log, probe)?;
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

    pub fn socket(&self) -> PathBuf {
        self.datadir().join("sock")
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs `sql` as root over the socket (`mariadb -N -B`, SQL on stdin); stdout or stderr.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.try_sql_db(None, sql)
    }

    pub fn try_sql_db(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--connect-timeout=10", "-N", "-B"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run mariadb client: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = sql.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child
            .wait_with_output()
            .map_err(|e| format!("mariadb client: {e}"))?;
        let _ = writer.join();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ))
        }
    }

    /// Like [`MariaDb::try_sql`], panicking with the client's stderr on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("MariaDb: SQL failed: {e}\nSQL: {sql}"))
    }

    pub fn sql_db(&self, db: &str, sql: &str) -> String {
        self.try_sql_db(Some(db), sql)
            .unwrap_or_else(|e| panic!("MariaDb: SQL in `{db}` failed: {e}\nSQL: {sql}"))
    }

    /// Creates (or updates the password of) `user`@`127.0.0.1` and `user`@`localhost` with `password` and the
    /// global grants a backup user needs.
    pub fn create_user(&self, user: &str, password: &str) {
        let grants =
            "SELECT, SHOW VIEW, TRIGGER, LOCK TABLES, EVENT, EXECUTE, PROCESS, RELOAD, SHOW DATABASES";
        let (u, p) = (quote(user), quote(password));
        let mut sql = String::new();
        for host in ["'127.0.0.1'", "'localhost'"] {
            // Not CREATE OR REPLACE: tests sharing a server may create the same user
            // concurrently, and dropping it would briefly revoke the other test's grants.
            sql.push_str(&format!(
                "CREATE USER IF NOT EXISTS {u}@{host} IDENTIFIED BY {p};\n"
            ));
            sql.push_str(&format!("ALTER USER {u}@{host} IDENTIFIED BY {p};\n"));
            sql.push_str(&format!("GRANT {grants} ON *.* TO {u}@{host};\n"));
        }
        self.sql(&sql);
    }

    /// Creates a database named `db_XXXXXXXX` (no quoting needed) and returns the name.
    pub fn new_database(&self) -> String {
        let name = unique_name("db").replace('-', "_");
        self.sql(&format!("CREATE DATABASE `{name}`"));
        name
    }

    /// SIGKILLs the server (fault tests). Its port stays reserved (connections refused).
    pub fn kill(&mut self) {
        kill_child(&mut self.child);
        if self.reservation.is_none() {
            self.reservation = Some(PortReservation::hold("MariaDb", self.port));
        }
    }

    /// Starts the server again on the same port and datadir (after [`MariaDb::kill`], InnoDB
    /// crash recovery runs); kills the running one first if needed.
    pub fn restart(&mut self) {
        self.kill();
        restart_on_port("MariaDb", self.port, || {
            self.reservation = None;
            self.launch()
        });
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
