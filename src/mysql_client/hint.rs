//! Operator hints by MySQL error number, as the client tools print it.

/// Whether `err` carries MySQL error number `n` as the tools print it: `ERROR n (…)` (client),
/// `… (n)` (dump tool), `error: n:` (dump tool connecting).
pub fn code(err: &str, n: u32) -> bool {
    [
        format!("ERROR {n} "),
        format!("({n})"),
        format!("error: {n}:"),
    ]
    .iter()
    .any(|p| err.contains(p.as_str()))
}

/// Adds an operator hint to a client error by its MySQL error number.
pub fn with_hint(err: &str) -> String {
    let hint = if code(err, 1044)
        || code(err, 1142)
        || code(err, 1143)
        || code(err, 1227)
        || code(err, 1370)
    {
        "the user lacks a privilege; see the README for the GRANT statements"
    } else if code(err, 1045) || err.contains("Access denied") {
        "check `user` and the password in `password_file`"
    } else if code(err, 2002) || code(err, 2003) || code(err, 2013) || err.contains("Can't connect")
    {
        "is the server running and reachable? check `host`/`port` or `socket`"
    } else if code(err, 1049) || err.contains("Unknown database") {
        "check the names in `databases` (SHOW DATABASES lists them)"
    } else if code(err, 1419) {
        "the server writes a binary log, and then only SUPER may create stored functions: set `log_bin_trust_function_creators = 1` on the server, or restore as a user with SUPER, for whom opsagent sets it during the load"
    } else if err.contains("max_allowed_packet") || code(err, 2006) {
        "a row is larger than the server's max_allowed_packet: raise it (`SET GLOBAL max_allowed_packet = 1073741824`, or `max_allowed_packet = 1G` under [mysqld]) or restore as a user with SUPER, which opsagent raises it for"
    } else {
        return err.to_string();
    };
    format!("{err} (hint: {hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_as_each_tool_prints_them() {
        assert!(code("ERROR 1045 (28000): Access denied", 1045));
        assert!(code(
            "mariadb-dump: Got error: 1049: Unknown database",
            1049
        ));
        assert!(code("Couldn't execute 'x': Access denied (1227)", 1227));
        assert!(!code("ERROR 10450 (x)", 1045));
        assert!(with_hint("ERROR 1142 (42000): SELECT command denied").contains("GRANT"));
        assert_eq!(with_hint("something else"), "something else");
    }
}
