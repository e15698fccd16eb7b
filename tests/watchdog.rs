//! The systemd watchdog is fed only while the health checks make progress. The daemon runs
//! in-process with its host figures from a source the test controls (`daemon::run_with`, the
//! seam the daemon offers for another host source); the test is the service manager: it owns
//! the `NOTIFY_SOCKET` and sets `WATCHDOG_USEC`. When the source hangs (as a disk check on a
//! dead NFS mount does), `WATCHDOG=1` stops arriving, so systemd would restart the service; when
//! it answers again, the pings resume.

use opsagent::daemon::{self, Control};
use opsagent::health::{HostSource, Sample};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Host figures that never come while `hang` is set.
struct Source {
    hang: Arc<AtomicBool>,
}

impl HostSource for Source {
    fn sample(&mut self, _: &opsagent::health::host::HostConfig) -> Vec<Sample> {
        while self.hang.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        Vec::new()
    }
}

/// Lets the source answer again when dropped (a failed assertion must not leave the runtime
/// waiting for a thread that never returns).
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Every datagram the daemon sent, with when it arrived.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(sock: UnixDatagram) -> Received {
    let got: Received = Arc::default();
    let g = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            g.lock().unwrap().push((Instant::now(), text));
        }
    });
    got
}

fn pings_since(got: &Received, t: Instant) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(at, m)| *at >= t && m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[test]
fn a_hung_host_source_stops_the_watchdog_pings_and_they_resume_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let got = listen(UnixDatagram::bind(&sock_path).unwrap());
    // Only this test runs in this binary: the environment is the service manager's.
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    std::env::set_var("WATCHDOG_USEC", "1000000");
    let path = dir.path().join("opsagent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nstate_dir = \"{0}/state\"\ntimezone = \"UTC\"\n\
             [storage]\ntype = \"local\"\npath = \"{0}/backups\"\n\
             [checks]\ninterval = \"1s\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let config = opsagent::config::load(&path).unwrap();
    let hang = Arc::new(AtomicBool::new(false));
    let source = Box::new(Source { hang: hang.clone() });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let daemon = rt.spawn(daemon::run_with(path, config, rx, source));
    let _release = Release(hang.clone());

    // Healthy: READY, then a ping every half second.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let ready = got
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m.contains("READY=1"));
    assert!(ready, "no READY=1: {:?}", got.lock().unwrap());
    let fed = pings_since(&got, t0);
    assert!(fed >= 4, "{fed} pings in 4 s while healthy");

    // The host source hangs: within its loop's limit (20 s), a look (5 s) and the health beat's
    // limit (10 s), no more pings.
    let hung = Instant::now();
    hang.store(true, Ordering::SeqCst);
    let stopped = loop {
        let quiet_since = Instant::now() - Duration::from_secs(3);
        if quiet_since > hung && pings_since(&got, quiet_since) == 0 {
            break quiet_since;
        }
        assert!(
            hung.elapsed() < Duration::from_secs(55),
            "still fed {:?} after the host source hung",
            hung.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Not at once: a loop is given a few intervals (and 20 s at least) before it counts as stuck.
    assert!(
        stopped - hung >= Duration::from_secs(15),
        "pings stopped after {:?}",
        stopped - hung
    );

    // It answers again: so do the pings.
    hang.store(false, Ordering::SeqCst);
    let back = Instant::now();
    while pings_since(&got, back) == 0 {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "pings did not resume"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(tx.send(Control::Stop)).unwrap();
    let stopped = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), daemon).await })
        .expect("the daemon stops when told")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
}
