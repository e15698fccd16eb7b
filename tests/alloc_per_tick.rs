//! Allocations per sampling tick (issue 6: "sampling must not allocate per tick"), counted by a
//! test-only global allocator, per thread so tests running in parallel do not mix. Not a timed
//! test: each figure is a count. Run with `--nocapture` to see them (docs/BENCHMARKS.md).
//!
//! Host sampling (cpu, load, memory, swap, disks) must allocate nothing once warmed up while
//! every value is good; the thresholds here are set so that a busy CI host cannot make a value
//! bad (a bad value's detail, the top processes or biggest directories, is built when needed).
//! TCP and HTTP probes open sockets and parse answers, so they allocate: their counts are
//! reported and bounded to catch a regression. So is the collector's round in the catalog.

use opsagent::catalog::Catalog;
use opsagent::health::disk::DiskConfig;
use opsagent::health::host::{HostCheck, HostConfig, HostSampler};
use opsagent::health::runner::Collector;
use opsagent::health::state::Limits;
use opsagent::health::{CheckSpec, HealthConfig, Prober};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is bumped.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

const WARM_UP: usize = 3;
const TICKS: usize = 20;

/// Allocations on this thread per call of `tick`, after a warm-up.
fn per_tick(mut tick: impl FnMut()) -> f64 {
    for _ in 0..WARM_UP {
        tick();
    }
    let before = ALLOCS.with(Cell::get);
    for _ in 0..TICKS {
        tick();
    }
    (ALLOCS.with(Cell::get) - before) as f64 / TICKS as f64
}

fn never_bad() -> HostCheck {
    HostCheck {
        limits: Limits::above(1e12, 2e12),
        hold: Duration::ZERO,
    }
}

fn only(kind: &str) -> HostConfig {
    let disk = DiskConfig {
        space: Limits::above(1e12, 2e12),
        inodes: Limits::above(1e12, 2e12),
        ..DiskConfig::default()
    };
    HostConfig {
        cpu: (kind == "cpu").then_some(never_bad()),
        load: (kind == "load").then_some(never_bad()),
        memory: (kind == "memory").then_some(HostCheck {
            limits: Limits::below(-1.0, -2.0),
            hold: Duration::ZERO,
        }),
        swap: (kind == "swap").then_some(never_bad()),
        disk: (kind == "disk").then_some(disk),
    }
}

#[test]
fn host_sampling_allocates_nothing_per_tick() {
    let mut report = Vec::new();
    for kind in ["cpu", "load", "memory", "swap", "disk"] {
        let cfg = only(kind);
        let mut sampler = HostSampler::new();
        let mut batch = Vec::with_capacity(16);
        let mut samples = 0;
        let n = per_tick(|| {
            // CPU time moves in 10 ms steps: give each tick some.
            std::thread::sleep(Duration::from_millis(20));
            batch.clear();
            sampler.sample_into(&cfg, &mut batch);
            samples = batch.len();
        });
        println!("host {kind}: {n} allocations per tick ({samples} samples)");
        report.push((kind, n, samples));
    }
    for (kind, n, samples) in &report {
        assert_eq!(*n, 0.0, "{kind} sampling allocates: {report:?}");
        if *kind != "swap" {
            assert!(*samples > 0, "{kind} produced no sample: {report:?}");
        }
    }
}

/// An HTTP/1.1 server answering every request on a kept-alive connection with a short page.
fn http_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    let r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
                    if s.write_all(r.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn specs(dir: &std::path::Path, checks: &str) -> Vec<CheckSpec> {
    let text = format!(
        "[agent]\nstate_dir = \"{0}/state\"\n[storage]\ntype = \"local\"\npath = \"{0}/b\"\n{checks}",
        dir.display()
    );
    let cfg = opsagent::config::parse(&dir.join("opsagent.toml"), &text).unwrap();
    cfg.health.checks
}

#[test]
fn tcp_and_http_probes_per_tick() {
    let dir = tempfile::tempdir().unwrap();
    let port = http_server();
    let checks = format!(
        "[[checks.tcp]]\nname = \"t\"\naddress = \"127.0.0.1:{port}\"\n\
         [[checks.http]]\nname = \"h\"\nurl = \"http://127.0.0.1:{port}/\"\n"
    );
    let cat = Arc::new(Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap());
    // One thread runs every task, so the count sees the probes' connection tasks too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut figures = Vec::new();
    for spec in specs(dir.path(), &checks) {
        let kind = spec.probe.kind();
        let mut prober = Prober::new(spec, &cat);
        let n = per_tick(|| {
            let s = rt.block_on(prober.probe());
            assert!(s.detail.contains("in "), "{s:?}");
        });
        println!("{kind} probe: {n} allocations per tick");
        figures.push((kind, n));
    }
    // Bounds a little above what was measured (docs/BENCHMARKS.md), to catch a regression.
    for (kind, n) in figures {
        let bound = if kind == "tcp" { 20.0 } else { 150.0 };
        assert!(n > 0.0 && n <= bound, "{kind}: {n} allocations per tick");
    }
}

#[test]
fn collector_round_per_tick() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Arc::new(Catalog::open(&dir.path().join("state/catalog.sqlite")).unwrap());
    let cfg = HealthConfig {
        host: only("cpu"),
        ..HealthConfig::default()
    };
    let mut col = Collector::load(cat);
    col.configure(&cfg);
    let mut sampler = HostSampler::new();
    let host = HostConfig {
        disk: None,
        ..HostConfig::default()
    };
    sampler.sample(&host);
    std::thread::sleep(Duration::from_millis(20));
    let batch = sampler.sample(&host);
    assert!(!batch.is_empty());
    let n = per_tick(|| col.handle(batch.clone(), chrono::Utc::now()));
    println!(
        "collector: {n} allocations per round of {} host samples (states, history in SQLite)",
        batch.len()
    );
    assert!(n > 0.0 && n < 400.0 * batch.len() as f64, "{n}");
}
