//! MySQL job extras against the real MariaDB and S3 server:
//! - `drill_command`: after a drill loads the snapshot into its scratch database, the command
//!   runs with that database and a read-only account in its environment; its exit 0 passes the
//!   drill, its failure fails it quoting its last lines; scratch and account go either way;
//! - `exclude_tables` leaves tables out of the dumps;
//! - `restore --table` brings back one table of a ten-table database, nothing else.

mod common;

use common::agent::{agent_table, opsagent, s3_storage_table};
use common::mariadb::MariaDb;
use common::s3::{S3Server, SECRET_KEY};

fn config(dir: &std::path::Path, db: &str, extra: &str) -> std::path::PathBuf {
    let s3 = S3Server::shared();
    let sec = common::write_secret(dir, "s3", SECRET_KEY);
    let text = agent_table("web-01", &dir.join("state"), "")
        + &s3_storage_table(s3, &s3.new_bucket(), &sec)
        + &format!(
            "[[mysql]]\nname = \"main\"\ndatabases = [\"{db}\"]\nsocket = \"{}\"\nuser = \"root\"\n\
             schedule = \"30 2 * * *\"\n{extra}\n",
            MariaDb::shared().socket().display()
        );
    let cfg = dir.join("opsagent.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn the_drill_command_proves_the_copy_or_fails_the_drill() {
    let server = MariaDb::shared();
    let db = common::unique_name("dc").replace('-', "_");
    server.sql(&format!("CREATE DATABASE `{db}`"));
    server.sql_db(
        &db,
        "CREATE TABLE orders (id INT); INSERT INTO orders VALUES (1), (2), (3)",
    );
    let scratches = || server.sql("SHOW DATABASES LIKE 'opsagent\\_verify%'");
    let accounts =
        || server.sql("SELECT COUNT(*) FROM mysql.user WHERE User LIKE 'opsagent\\_load%'");
    let before = accounts();

    // The application's check: the table is there with its rows, read as the drill's account.
    let dir = tempfile::tempdir().unwrap();
    let check = "n=$(mariadb --socket=\"$OPSAGENT_DRILL_SOCKET\" -u\"$OPSAGENT_DRILL_USER\" \
                 -p\"$OPSAGENT_DRILL_PASSWORD\" -N -e 'SELECT COUNT(*) FROM orders' \"$OPSAGENT_DRILL_DATABASE\") \
                 && echo \"orders: $n\" && test \"$n\" = 3 \
                 && ! mariadb --socket=\"$OPSAGENT_DRILL_SOCKET\" -u\"$OPSAGENT_DRILL_USER\" \
                 -p\"$OPSAGENT_DRILL_PASSWORD\" -e 'DELETE FROM orders' \"$OPSAGENT_DRILL_DATABASE\" 2>/dev/null";
    let cfg = config(dir.path(), &db, &format!("drill_command = '''{check}'''"));
    let out = opsagent(&cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let out = opsagent(&cfg, &["verify", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));

    // A failing check fails the drill, quoting what it said.
    let dir2 = tempfile::tempdir().unwrap();
    let failing = "echo checking migrations; echo 'migration 2026_12_01_add_orders_note is missing' >&2; exit 3";
    let cfg = config(
        dir2.path(),
        &db,
        &format!("drill_command = '''{failing}'''"),
    );
    let out = opsagent(&cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let out = opsagent(&cfg, &["verify", "main"]);
    let said = common::output_text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("drill_command"), "{said}");
    assert!(
        said.contains("migration 2026_12_01_add_orders_note is missing"),
        "{said}"
    );
    assert!(said.contains("exit status: 3"), "{said}");

    assert_eq!(scratches().trim(), "", "scratch databases left");
    assert_eq!(accounts(), before, "accounts left");
}

#[test]
fn excluded_tables_are_left_out_of_the_dump() {
    let server = MariaDb::shared();
    let db = common::unique_name("ex").replace('-', "_");
    server.sql(&format!("CREATE DATABASE `{db}`"));
    server.sql_db(
        &db,
        "CREATE TABLE orders (id INT); INSERT INTO orders VALUES (1);
         CREATE TABLE sessions (id INT); CREATE TABLE sessions_old (id INT); CREATE TABLE cache (id INT)",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &db,
        &format!("exclude_tables = [\"{db}.sessions*\", \"{db}.cache\"]"),
    );
    let out = opsagent(&cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let copy = format!("{db}_copy");
    let out = opsagent(
        &cfg,
        &["restore", "--date", "now", "--to-database", &copy, "--yes"],
    );
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert_eq!(server.sql_db(&copy, "SHOW TABLES").trim(), "orders");
}

#[test]
fn one_table_of_ten_comes_back_alone() {
    let server = MariaDb::shared();
    let db = common::unique_name("tb").replace('-', "_");
    server.sql(&format!("CREATE DATABASE `{db}`"));
    let mut ddl = String::new();
    for i in 0..9 {
        ddl.push_str(&format!(
            "CREATE TABLE t{i} (id INT); INSERT INTO t{i} VALUES ({i});\n"
        ));
    }
    ddl.push_str(
        "CREATE TABLE orders (id INT PRIMARY KEY, note TEXT);\n\
         INSERT INTO orders SELECT seq, CONCAT('n', seq, X'0A27') FROM seq_1_to_500;\n\
         CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW SET NEW.note = UPPER(NEW.note);\n\
         CREATE VIEW v AS SELECT id FROM t0;\n\
         CREATE PROCEDURE p() SELECT 1;\n",
    );
    server.sql_db(&db, &ddl);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &db, "");
    let out = opsagent(&cfg, &["backup", "main"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let copy = format!("{db}_one");
    let out = opsagent(
        &cfg,
        &[
            "restore",
            "--date",
            "now",
            "--table",
            "orders",
            "--to-database",
            &copy,
            "--yes",
        ],
    );
    let said = common::output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("only the table(s) `orders`"), "{said}");
    assert_eq!(
        server
            .sql_db(&copy, "SHOW FULL TABLES")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["orders", "BASE", "TABLE"]
    );
    let sum = |d: &str| {
        server
            .sql_db(d, "CHECKSUM TABLE orders")
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    assert_eq!(sum(&copy), sum(&db));
    assert!(server.sql_db(&copy, "SHOW TRIGGERS").contains("orders_bi"));
    let routines = server.sql(&format!(
        "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{copy}'"
    ));
    assert_eq!(routines.trim(), "0");
}
