//! Ping checks against real networks: each test makes a network namespace (tests/common/netns.rs),
//! runs the real daemon inside it with `ip netns exec`, injects loss with nftables there (this
//! kernel has no netem) and reads the results with `opsagent status --json` and the catalog's
//! history. Loss statistics use 100 probes a round, so ±10 points is several standard deviations.

mod common;

use common::agent::{opsagent, Daemon};
use common::netns::Netns;
use common::pingkit::{checks, config, find, ping, state, watch};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The mean loss of the samples taken while a rule was on (the first, whose round may have
/// started before it, left out), checked to be `expected` ± 10 points.
fn assert_loss_near(samples: &[Value], expected: f64) {
    let values: Vec<f64> = samples
        .iter()
        .skip(1)
        .filter_map(|s| s["value"].as_f64())
        .collect();
    assert!(values.len() >= 2, "too few samples: {samples:#?}");
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    eprintln!("loss per round {values:?}: mean {mean:.1}%, expected {expected}%");
    assert!(
        (mean - expected).abs() <= 10.0,
        "mean loss {mean:.1}% of {values:?}, expected {expected}% ± 10"
    );
}

/// ICMP echo on the namespace's loopback with 20 % of ICMP packets dropped on output: requests
/// and replies both pass there, so 1 - 0.8² = 36 % of echoes are lost.
#[test]
fn icmp_loss_warns_and_crits_after_for_then_recovers() {
    let ns = Netns::new("0 2147483647");
    let dir = tempfile::tempdir().unwrap();
    let target = "target = \"127.0.0.1\"";
    let cfg = config(
        dir.path(),
        &(ping("warned", target, (20, 60), "300ms") + &ping("critical", target, (10, 25), "300ms")),
    );
    let d = ns.daemon(&cfg, &dir.path().join("daemon.log"));
    let clean = watch(&cfg, &d, "two clean rounds", "critical", |all| {
        ["warned", "critical"].iter().all(|n| {
            find(all, n).is_some_and(|c| c["state"] == "OK" && c["value"].as_f64() == Some(0.0))
        })
    });
    let detail = clean.last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.starts_with("127.0.0.1: loss 0% (100/100 answered), rtt avg ")
            && detail.contains(" ms, p95 "),
        "{detail}"
    );

    let all = lossy(
        &ns,
        &cfg,
        &d,
        "meta l4proto icmp numgen random mod 10 < 2 drop",
        36.0,
    );
    // The CRIT samples name the threshold they crossed.
    assert!(
        all.iter().any(|c| c["state"] == "CRIT"
            && c["detail"]
                .as_str()
                .unwrap()
                .contains("at or above loss_crit 25%")),
        "{all:#?}"
    );
    recovers(&ns, &cfg, &d);
    let cat = opsagent::catalog::Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap();
    let hist = cat
        .history("critical", chrono::Utc::now() - chrono::Duration::hours(1))
        .unwrap();
    assert!(!hist.is_empty(), "no history for the ping check");
    d.stop();
}

/// TCP mode: 30 % of the SYNs to a listener dropped in the namespace (the kernel resends a SYN
/// after 1 s, past the 500 ms probe timeout, so each drop is a lost probe); a refused connect
/// (nothing listens on port 9 there) is an answer, not loss.
#[test]
fn tcp_syn_loss_warns_and_crits_then_recovers_and_refused_is_answered() {
    let ns = Netns::new("1 0");
    let (port, _listener) = ns.tcp_listener();
    let dir = tempfile::tempdir().unwrap();
    let tcp = format!("tcp = \"127.0.0.1:{port}\"");
    let cfg = config(
        dir.path(),
        &(ping("warned", &tcp, (15, 60), "500ms")
            + &ping("critical", &tcp, (10, 20), "500ms")
            + &ping("refused", "tcp = \"127.0.0.1:9\"", (10, 20), "500ms")),
    );
    let d = ns.daemon(&cfg, &dir.path().join("daemon.log"));
    let names = ["warned", "critical", "refused"];
    watch(&cfg, &d, "clean rounds", "refused", |all| {
        names.iter().all(|n| {
            find(all, n).is_some_and(|c| c["state"] == "OK" && c["value"].as_f64() == Some(0.0))
        })
    });
    let refused = find(&checks(&cfg), "refused").unwrap().clone();
    let detail = refused["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("tcp 127.0.0.1:9: loss 0% (100/100 answered), rtt avg"),
        "{detail}"
    );

    let rule =
        format!("tcp dport {port} tcp flags & (syn | ack) == syn numgen random mod 10 < 3 drop");
    lossy(&ns, &cfg, &d, &rule, 30.0);
    let all = checks(&cfg);
    let refused = find(&all, "refused").unwrap();
    assert_eq!(
        (refused["state"].as_str(), refused["value"].as_f64()),
        (Some("OK"), Some(0.0))
    );

    recovers(&ns, &cfg, &d);
    d.stop();
}

/// Loads `rule` into an output chain of the namespace; `warned` must go WARN and `critical`
/// CRIT, not before their `for` of 5 s, with the loss of the rounds meanwhile `expected` ± 10
/// points. Returns the samples of `critical`.
fn lossy(ns: &Netns, cfg: &Path, d: &Daemon, rule: &str, expected: f64) -> Vec<Value> {
    ns.nft(&format!(
        "table inet f {{\n chain out {{\n  type filter hook output priority 0;\n  {rule}\n }}\n}}\n"
    ));
    let from = Instant::now();
    let lossy = watch(cfg, d, "WARN and CRIT", "critical", |all| {
        state(all, "warned") == "WARN" && state(all, "critical") == "CRIT"
    });
    assert!(
        from.elapsed() >= Duration::from_secs(5),
        "CRIT before `for` passed"
    );
    // A few more rounds for the statistics.
    let more_from = Instant::now();
    let more = watch(cfg, d, "more rounds", "critical", |_| {
        more_from.elapsed() >= Duration::from_secs(10)
    });
    let all: Vec<Value> = lossy.into_iter().chain(more).collect();
    assert_loss_near(&all, expected);
    all
}

/// Deletes the rule; `warned` and `critical` must be OK again.
fn recovers(ns: &Netns, cfg: &Path, d: &Daemon) {
    ns.nft("delete table inet f\n");
    watch(cfg, d, "back to OK", "critical", |all| {
        state(all, "warned") == "OK" && state(all, "critical") == "OK"
    });
}

/// Where the namespace's ping_group_range leaves the agent out (the host's is not touched), the
/// check is UNKNOWN and names the sysctl to set and the TCP mode.
#[test]
fn without_icmp_permission_the_check_says_what_to_set() {
    let ns = Netns::new("1 0");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &ping("lo", "target = \"127.0.0.1\"", (10, 25), "300ms"),
    );
    let d = ns.daemon(&cfg, &dir.path().join("daemon.log"));
    watch(&cfg, &d, "UNKNOWN", "lo", |all| {
        state(all, "lo") == "UNKNOWN"
    });
    let all = checks(&cfg);
    let detail = find(&all, "lo").unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    for needed in [
        "not permitted",
        "net.ipv4.ping_group_range (now \"1 0\")",
        "net.ipv4.ping_group_range = 0 2147483647",
        "tcp = \"host:port\"",
    ] {
        assert!(detail.contains(needed), "`{needed}` missing in: {detail}");
    }
    let out = opsagent(&cfg, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    d.stop();
}
