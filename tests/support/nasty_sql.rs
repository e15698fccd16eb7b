//! The adversarial schema of `tests/mysql_nasty.rs`, and how two databases are compared: every
//! table's `CHECKSUM TABLE … EXTENDED` and `SHOW CREATE`, every view, trigger, routine and
//! event's `SHOW CREATE` row (with its sql_mode, time zone and collations), and the database's
//! default character set.

use super::common::mariadb::MariaDb;

/// Built as the database's default is latin1; it becomes utf8mb4_unicode_ci at the end, so the
/// dump holds `ALTER DATABASE` lines around the objects made before. `DB` is the database name.
pub const NASTY: &str = r#"
SET NAMES utf8mb4;
SET sql_mode = '';
CREATE TABLE `select` (`from` INT PRIMARY KEY, `we``ird "col"` VARCHAR(40) CHARACTER SET utf8mb4, `sp ace` TEXT,
  b BLOB, vb VARBINARY(300), bn BINARY(255), l1 TEXT CHARACTER SET latin1 COLLATE latin1_bin) ENGINE=InnoDB;
INSERT INTO `select` VALUES (1, 'a`b"c''d\\e 😀𝄞', CONCAT('x', CHAR(0), '\r\n*/;', '\nDELIMITER ;;\n-- x'), NULL, NULL, NULL, NULL),
  (2, '', '', '', '', '', '');
INSERT INTO `select` (`from`, b, vb, bn, l1)
  SELECT 3, UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')),
         UNHEX(GROUP_CONCAT(LPAD(HEX(255 - seq), 2, '0') ORDER BY seq SEPARATOR '')),
         UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')),
         CONVERT(UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')) USING latin1)
  FROM seq_0_to_255;
CREATE TABLE `t-64_ü_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` (id INT);
CREATE TABLE types (
  id INT AUTO_INCREMENT PRIMARY KEY, d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, y YEAR, bt BIT(64),
  dec65 DECIMAL(65,30), dbl DOUBLE, e ENUM('', 'a,b', 'x''y', ' sp'), s SET('a', 'b c', 'd'), j JSON,
  g GEOMETRY, pt POINT NOT NULL, vgen INT AS (y * 3) VIRTUAL, sgen VARCHAR(60) AS (CONCAT(u8, '|', e)) STORED,
  inv INT INVISIBLE DEFAULT 42, u8 VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, cp VARCHAR(20) CHARACTER SET cp1251,
  sj VARCHAR(20) CHARACTER SET sjis, SPATIAL INDEX (pt), FULLTEXT (u8)
) ENGINE=InnoDB AUTO_INCREMENT=1000;
SET time_zone = '+05:45';
INSERT INTO types (d, dt, ts, y, bt, dec65, dbl, e, s, j, g, pt, inv, u8, cp, sj) VALUES
  ('0000-00-00', '0000-00-00 00:00:00', '2038-01-19 08:59:07.999999', 1901, b'1111111111111111111111111111111111111111111111111111111111111111',
   '-99999999999999999999999999999999999.999999999999999999999999999999', 1.7976931348623157e308, '', '', '{"a": [1, 2.5e300, "\u0000"]}',
   ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), POINT(1.5, -2.25), 7, '😀𝄞', 'Ж', 'ｱ'),
  ('2024-02-29', '9999-12-31 23:59:59.999999', '1970-01-01 05:45:01', 2155, 0, 0.000000000000000000000000000001, 4.9e-324,
   'x''y', 'a,b c,d', NULL, NULL, POINT(0, 0), 0, NULL, '', ''),
  ('2000-01-00', NULL, NULL, 0, 1, NULL, -0.0, ' sp', 'b c', 'null', ST_GeomFromText('GEOMETRYCOLLECTION EMPTY'), POINT(1e300, -1e-300), NULL, 'tab	here', NULL, NULL);
INSERT INTO types (d, pt) VALUES (NULL, POINT(9, 9));
DELETE FROM types WHERE d IS NULL AND pt = POINT(9, 9);
SET time_zone = SYSTEM;
CREATE TABLE approx (id INT PRIMARY KEY, f FLOAT);
INSERT INTO approx VALUES (1, 0.5);
CREATE SEQUENCE seq1 START WITH 100 INCREMENT BY 7 CACHE 0;
DO NEXTVAL(seq1); DO NEXTVAL(seq1);
CREATE TABLE versioned (id INT PRIMARY KEY, v VARCHAR(10)) WITH SYSTEM VERSIONING;
INSERT INTO versioned VALUES (1, 'old');
UPDATE versioned SET v = 'new' WHERE id = 1;
CREATE TABLE part (id INT, k INT, PRIMARY KEY (id, k)) PARTITION BY RANGE (k) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE);
INSERT INTO part VALUES (1, 5), (2, 50);
CREATE TABLE fa (id INT PRIMARY KEY, b_id INT) ENGINE=InnoDB;
CREATE TABLE fb (id INT PRIMARY KEY, a_id INT, FOREIGN KEY (a_id) REFERENCES fa (id)) ENGINE=InnoDB;
ALTER TABLE fa ADD FOREIGN KEY (b_id) REFERENCES fb (id);
SET FOREIGN_KEY_CHECKS = 0;
INSERT INTO fa VALUES (1, 1); INSERT INTO fb VALUES (1, 1);
SET FOREIGN_KEY_CHECKS = 1;
CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, m TEXT);
DELIMITER //
CREATE FUNCTION `fn; */ "x"`(a INT) RETURNS INT DETERMINISTIC BEGIN DECLARE s VARCHAR(20) DEFAULT ';;'; RETURN a + 1; END//
CREATE VIEW `v z` AS SELECT `fn; */ "x"`(`from`) AS n FROM `select`//
CREATE VIEW `a view on view` AS SELECT n FROM `v z` WHERE n > 1//
CREATE DEFINER = `ghost`@`%` SQL SECURITY DEFINER VIEW ghostview AS SELECT 1 AS one//
CREATE TRIGGER `t_b` BEFORE INSERT ON log FOR EACH ROW SET NEW.m = CONCAT(NEW.m, '+b')//
CREATE TRIGGER `t_a` BEFORE INSERT ON log FOR EACH ROW FOLLOWS `t_b` SET NEW.m = CONCAT(NEW.m, '+a')//
CREATE TRIGGER `trg 1` AFTER INSERT ON `select` FOR EACH ROW BEGIN INSERT INTO `DB`.log (m) VALUES (CONCAT('ins; ', NEW.`from`, ' */ ;;')); END//
CREATE PROCEDURE `proc ``q```() BEGIN SELECT 'DELIMITER ;' AS x; SELECT * FROM `DB`.`select`; END//
SET time_zone = '+05:45'//
CREATE EVENT `ev 1` ON SCHEDULE EVERY 1 YEAR STARTS '2035-01-01 00:00:00' DISABLE DO INSERT INTO `DB`.log (m) VALUES ('event')//
SET time_zone = SYSTEM//
DELIMITER ;
ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE PROCEDURE after_alter() SELECT 1;
"#;

fn q(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Everything that must survive a restore, as comparable lines (the database's name replaced;
/// in trigger, routine and event bodies, qualifications with it removed, as restores do).
pub fn fingerprint(db: &MariaDb, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let strip = |s: String| s.replace(&q(name), "`DB`");
    let created = db.sql(&format!("SHOW CREATE DATABASE {}", q(name)));
    out.push(strip(
        created
            .split_once('\t')
            .map_or(created.clone(), |c| c.1.to_string()),
    ));
    let tables = db.sql(&format!(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY 1",
        lit(name)
    ));
    for row in tables.lines() {
        let (t, kind) = row.split_once('\t').unwrap();
        let verb = if kind == "VIEW" { "VIEW" } else { "TABLE" };
        out.push(strip(db.sql(&format!(
            "SHOW CREATE {verb} {}.{}",
            q(name),
            q(t)
        ))));
        if kind != "VIEW" {
            let sum = db.sql(&format!("CHECKSUM TABLE {}.{} EXTENDED", q(name), q(t)));
            out.push(format!(
                "{t} checksum {}",
                sum.split('\t').nth(1).unwrap_or("?").trim()
            ));
        }
    }
    let kinds = [
        ("TRIGGER", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER"),
        ("PROCEDURE", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY 1"),
        ("FUNCTION", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {} AND ROUTINE_TYPE = 'FUNCTION' ORDER BY 1"),
        ("EVENT", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {} ORDER BY 1"),
    ];
    for (verb, list) in kinds {
        for n in db.sql(&list.replace("{}", &lit(name))).lines() {
            let n = n.replace("\\\\", "\\");
            let row = db.sql(&format!("SHOW CREATE {verb} {}.{}", q(name), q(&n)));
            // A trigger's last column is when it was created.
            let row = match verb {
                "TRIGGER" => row.trim_end().rsplit_once('\t').unwrap().0.to_string(),
                _ => row,
            };
            // Bodies naming their own database are made to name the one restored into.
            out.push(strip(format!("{verb} {row}")).replace("`DB`.", ""));
        }
    }
    out
}

/// The named database's schema, made from [`NASTY`].
pub fn create(db: &MariaDb, name: &str) {
    db.sql(&format!("CREATE DATABASE {} CHARACTER SET latin1", q(name)));
    db.sql_db(name, &NASTY.replace("`DB`", &q(name)));
}
