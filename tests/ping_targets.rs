//! Ping checks' targets and settings, each in a network namespace of its own: a target that
//! answers late (a userspace echo responder; this kernel has no netem) judged on the round's p95
//! round-trip time, the automatic check of the default gateway (on only where there is one),
//! and the configuration errors.

mod common;

use common::agent::check_config_fails;
use common::netns::Netns;
use common::pingkit::{checks, config, find, ping, state, watch};
use std::path::Path;
use std::time::Duration;

/// Ten echoes 100 ms apart to 127.0.0.1 with `extra` keys.
fn few(name: &str, extra: &str) -> String {
    format!(
        "[[checks.ping]]\nname = \"{name}\"\ntarget = \"127.0.0.1\"\ncount = 10\n\
         probe_interval = \"100ms\"\nprobe_timeout = \"1s\"\n{extra}"
    )
}

/// Echo replies sent 60 ms late: p95 at or above rtt_crit 40 ms is CRIT with no loss; the same
/// answers against 500 ms/900 ms thresholds are OK; ICMPv6 to ::1, answered by the kernel, is
/// OK against the tight thresholds.
#[test]
fn a_slow_target_trips_the_rtt_thresholds() {
    let ns = Netns::new("0 2147483647");
    let _echo = ns.slow_echo(Duration::from_millis(60));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &(few("slow", "rtt_warn = \"20ms\"\nrtt_crit = \"40ms\"\n")
            + &few("patient", "rtt_warn = \"500ms\"\nrtt_crit = \"900ms\"\n")
            + &few("v6", "rtt_warn = \"20ms\"\nrtt_crit = \"40ms\"\n").replace("127.0.0.1", "::1")),
    );
    let d = ns.daemon(&cfg, &dir.path().join("daemon.log"));
    watch(&cfg, &d, "slow CRIT, patient OK", "slow", |all| {
        state(all, "slow") == "CRIT" && state(all, "patient") == "OK"
    });
    // ICMPv6 is answered by the kernel at once (the slow responder is IPv4 only).
    watch(&cfg, &d, "v6 OK", "v6", |all| state(all, "v6") == "OK");
    let all = checks(&cfg);
    let slow = find(&all, "slow").unwrap();
    let detail = slow["detail"].as_str().unwrap();
    assert_eq!(slow["value"].as_f64(), Some(0.0), "{detail}");
    assert!(
        detail.contains("p95 at or above rtt_crit 40 ms"),
        "{detail}"
    );
    let p95: f64 = detail
        .split("p95 ")
        .nth(1)
        .and_then(|r| r.split(" ms").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no p95 in {detail}"));
    assert!((60.0..600.0).contains(&p95), "p95 {p95} ms: {detail}");
    let v6 = find(&all, "v6").unwrap()["detail"].as_str().unwrap();
    assert!(v6.starts_with("::1: loss 0% (10/10 answered)"), "{v6}");
    d.stop();
}

/// `config` with the gateway ping turned back on (3 probes, no `for`) and the Prometheus
/// endpoint on 127.0.0.1:9187 (of the namespace the daemon runs in).
fn with_gateway(dir: &Path) -> std::path::PathBuf {
    let cfg = config(
        dir,
        &ping("lo", "target = \"127.0.0.1\"", (10, 25), "300ms"),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[checks.gateway]\nenabled = false\n",
        "[checks.gateway]\ncount = 3\nprobe_interval = \"50ms\"\nprobe_timeout = \"500ms\"\nfor = \"0s\"\n",
    );
    std::fs::write(&cfg, text + "[metrics]\nlisten = \"127.0.0.1:9187\"\n").unwrap();
    cfg
}

/// A namespace whose default route goes via 10.200.0.2 (the far end of a veth pair, in the same
/// namespace, so it answers): the `gateway` check pings it. One without a default route has no
/// gateway check at all.
#[test]
fn the_default_gateway_is_pinged_only_where_there_is_one() {
    let ns = Netns::new("0 2147483647");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["addr", "add", "10.200.0.1/30", "dev", "v0"]);
    ns.ip(&["addr", "add", "10.200.0.2/30", "dev", "v1"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    ns.ip(&["route", "add", "default", "via", "10.200.0.2", "dev", "v0"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_gateway(dir.path());
    let d = ns.daemon(&cfg, &dir.path().join("daemon.log"));
    watch(&cfg, &d, "the gateway check", "gateway", |all| {
        state(all, "gateway") == "OK"
    });
    let all = checks(&cfg);
    let gw = find(&all, "gateway").unwrap();
    assert_eq!(gw["kind"], "ping");
    let detail = gw["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("gateway 10.200.0.2: loss 0% (3/3 answered), rtt avg"),
        "{detail}"
    );
    // Its value (the loss) on the Prometheus endpoint, which listens inside the namespace.
    let metrics = ns.thread(|tx| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9187").unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        tx.send(body).unwrap();
    });
    assert!(
        metrics.contains("opsagent_check_value{check=\"gateway\",kind=\"ping\"} 0"),
        "{metrics}"
    );
    d.stop();

    let bare = Netns::new("0 2147483647");
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_gateway(dir.path());
    let d = bare.daemon(&cfg, &dir.path().join("daemon.log"));
    watch(&cfg, &d, "the lo check", "lo", |all| {
        state(all, "lo") == "OK"
    });
    std::thread::sleep(Duration::from_secs(4));
    let all = checks(&cfg);
    assert!(find(&all, "gateway").is_none(), "{all:#?}");
    assert!(d.log().contains("no default gateway"), "{}", d.log());
    d.stop();
}

/// The default round (5 probes 200 ms apart, 1 s to answer) shrinks to fit a short timeout, so
/// a configuration with `interval = "1s"` stays valid with the gateway check on by default.
#[test]
fn the_default_round_fits_a_short_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[agent]\nstate_dir = \"{0}/s\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n\
         [checks]\ninterval = \"1s\"\n[[checks.ping]]\nname = \"p\"\ntarget = \"192.0.2.1\"\n",
        dir.path().display()
    );
    let c = opsagent::config::parse(&dir.path().join("x.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let gateway = c.health.gateway.expect("on by default");
    let pinged = [&gateway, &c.health.checks[0]];
    for spec in pinged {
        let opsagent::health::ProbeSpec::Ping(p) = &spec.probe else {
            panic!("{spec:?}")
        };
        assert_eq!(p.count, 5);
        assert!(p.round_time() <= Duration::from_millis(800), "{p:?}");
        assert!(p.wait >= Duration::from_millis(400), "{p:?}");
    }
}

#[test]
fn ping_config_errors_name_the_key_and_say_what_to_do() {
    let (_dir, _cfg, said) = check_config_fails(
        "[[checks.ping]]\nname = \"a\"\ntarget = \"not a host!\"\n\
         [[checks.ping]]\nname = \"b\"\ntarget = \"192.0.2.1\"\ntcp = \"192.0.2.1:22\"\n\
         [[checks.ping]]\nname = \"c\"\ntarget = \"192.0.2.1\"\nloss_warn = \"ten\"\nloss_crit = \"120%\"\n\
         [[checks.ping]]\nname = \"d\"\ntarget = \"192.0.2.1\"\ncount = 100\nprobe_interval = \"1s\"\n\
         [[checks.ping]]\nname = \"gateway\"\ntarget = \"[2001:db8::1]\"\n\
         [[checks.ping]]\nname = \"e\"\ntarget = \"db.example.com\"\nrtt_warn = \"200ms\"\nrtt_crit = \"100ms\"\n\
         [[checks.ping]]\nname = \"f\"\ncount = 0\n\
         [checks.gateway]\nloss_warn = \"70%\"\n",
    );
    for needed in [
        "bad.toml:8:",
        "`not a host!` is not a host name or an IP address",
        "both `target` and `tcp` are set",
        "`ten` is not a percentage",
        "120% is not between 0% and 100%",
        "a round takes up to 100s ((count - 1) × probe_interval + probe_timeout)",
        "lower count, probe_interval or probe_timeout",
        "`gateway` is the name of a host check",
        "e.g. `gateway-app`",
        "warn 200 is above crit 100",
        "count = 0 is not between 1 and 1000",
        "target = \"192.0.2.1\" (a host name or IPv4/IPv6 address), or tcp = \"host:port\"",
        "warn 70 is above crit 60",
    ] {
        assert!(said.contains(needed), "`{needed}` missing in:\n{said}");
    }
}
