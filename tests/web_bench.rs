//! The status page's cost (run by `scripts/bench-web`, which builds it with `--release`):
//! a catalog with 100 checks, each with 90 days of hourly and 2 days of 1-minute history, and
//! the daemon serving it with `[web]`: the time `/`, `/check/NAME` and `/api/status` take
//! (median and worst of 30 requests each; `/` must answer in ≤ 50 ms), and the idle daemon's
//! resident memory with `[web]` off and on (after serving those pages and settling again).
//! Ignored in the normal test run: it takes a minute and measures a release build.

mod common;

use chrono::{Duration, Utc};
use common::agent::{wait_for, Daemon};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

const CHECKS: usize = 100;

fn get(port: u16, path: &str) -> (f64, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    (
        t.elapsed().as_secs_f64() * 1000.0,
        String::from_utf8_lossy(&out).into_owned(),
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn config(dir: &Path, target: u16, web: Option<u16>) -> std::path::PathBuf {
    let d = dir.display();
    let mut s = format!(
        "[agent]\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\n[storage]\ntype = \"local\"\npath = \"{d}/b\"\n\
         [[mysql]]\nname = \"main\"\ndatabases = [\"shop\"]\nport = 1\nschedule = \"30 2 * * *\"\n\
         [checks]\ninterval = \"1h\"\n"
    );
    for i in 0..CHECKS {
        s += &format!("[[checks.tcp]]\nname = \"c{i:03}\"\naddress = \"127.0.0.1:{target}\"\n");
    }
    if let Some(p) = web {
        s += &format!("[web]\nlisten = \"127.0.0.1:{p}\"\n");
    }
    let f = dir.join(if web.is_some() {
        "web.toml"
    } else {
        "plain.toml"
    });
    std::fs::write(&f, s).unwrap();
    f
}

#[test]
#[ignore = "a benchmark: scripts/bench-web runs it on a release build"]
fn the_page_answers_in_50_ms_with_100_checks_and_90_days_of_history() {
    let dir = tempfile::tempdir().unwrap();
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = target.local_addr().unwrap().port();
    let port = common::free_port();
    let plain = config(dir.path(), tport, None);
    let web = config(dir.path(), tport, Some(port));

    // The history: hourly samples for 90 days (folded into hourly points), one a minute for
    // the last 2 days.
    let cfg = opsagent::config::load(&web).unwrap();
    let cat = opsagent::catalog::Catalog::open(&cfg.catalog_path()).unwrap();
    let now = Utc::now();
    let t = Instant::now();
    let names: Vec<String> = (0..CHECKS).map(|i| format!("c{i:03}")).collect();
    let mut samples = Vec::new();
    for n in &names {
        for h in (48..90 * 24).rev() {
            samples.push((n.as_str(), now - Duration::hours(h), 20.0 + (h % 17) as f64));
        }
        for m in (0..2 * 24 * 60).rev() {
            samples.push((
                n.as_str(),
                now - Duration::minutes(m),
                30.0 + (m % 23) as f64,
            ));
        }
    }
    cat.add_samples(&samples).unwrap();
    cat.downsample_history(now, Duration::days(2), Duration::days(90))
        .unwrap();
    eprintln!(
        "filled {} samples for {CHECKS} checks in {:.1}s; hourly points of one check: {}, minute points: {}",
        samples.len(),
        t.elapsed().as_secs_f64(),
        cat.history_hourly("c000").unwrap().len(),
        cat.history("c000", now - Duration::days(3)).unwrap().len()
    );
    drop(cat);

    let settle = std::time::Duration::from_secs(
        std::env::var("BENCH_SETTLE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    // The idle daemon without [web].
    let d = Daemon::start(&plain, &dir.path().join("plain.log"));
    std::thread::sleep(settle);
    let rss_plain = rss_kib(d.0.id());
    d.stop();

    // With [web]: idle, then serving, then idle again.
    let d = Daemon::start(&web, &dir.path().join("web.log"));
    wait_for("the page", std::time::Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(settle);
    let rss_web = rss_kib(d.0.id());
    let mut report = Vec::new();
    for path in ["/", "/check/c042", "/api/status"] {
        let (_, first) = get(port, path);
        assert!(
            first.starts_with("HTTP/1.1 200"),
            "{path}: {}",
            &first[..200.min(first.len())]
        );
        let mut times: Vec<f64> = (0..30).map(|_| get(port, path).0).collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
        eprintln!(
            "GET {path:<14} {:>7} bytes: median {p50:.1} ms, worst {max:.1} ms",
            first.len()
        );
        report.push((path, p50, first));
    }
    std::thread::sleep(settle);
    let rss_after = rss_kib(d.0.id());
    d.stop();
    eprintln!(
        "idle RSS: without [web] {rss_plain} KiB, with [web] {rss_web} KiB ({:+} KiB), after serving {} requests and {}s idle {rss_after} KiB ({:+} KiB)",
        rss_web as i64 - rss_plain as i64,
        report.len() * 31,
        settle.as_secs(),
        rss_after as i64 - rss_plain as i64
    );
    let (_, index_p50, index) = &report[0];
    assert_eq!(
        index.matches("data-check=").count(),
        CHECKS + 7,
        "checks on the page"
    );
    assert!(*index_p50 <= 50.0, "/ took {index_p50:.1} ms (median)");
    drop(target);
}
