//! Network namespaces for network-fault tests: each test makes its own (`ip netns add`, its own
//! loopback up, its own `net.ipv4.ping_group_range`: the sysctl is per namespace, the host's is
//! never touched), injects loss there with nftables, runs the agent inside it with
//! `ip netns exec`, and serves TCP from a thread that entered it. Dropping the [`Netns`] deletes
//! the namespace, also when the test fails.

use super::agent::Daemon;
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A network namespace of this test, deleted on drop.
pub struct Netns {
    /// Its name (`ip netns list`).
    pub name: String,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        super::output_text(&out)
    );
    out
}

impl Netns {
    /// A new namespace with `lo` up and `net.ipv4.ping_group_range` set to `ping_range`
    /// (`"0 2147483647"`: every group may ping; `"1 0"`: none).
    pub fn new(ping_range: &str) -> Netns {
        let name = super::unique_name("opsagent-t");
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.ping_group_range={ping_range}"),
        ]);
        ns
    }

    /// `ip -n NAME args…`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Output {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NAME args…`, which must succeed.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// Loads an nftables script inside the namespace (`nft -f -`).
    pub fn nft(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nft (apt-get install nftables)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft {script}: {}",
            super::output_text(&out)
        );
    }

    /// Starts `opsagent --config <cfg> run` inside the namespace, logging into `log`; killed
    /// when the returned daemon drops (and with the test process).
    pub fn daemon(&self, cfg: &Path, log: &Path) -> Daemon {
        let err = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(env!("CARGO_BIN_EXE_opsagent"))
            .arg("--config")
            .arg(cfg)
            .arg("run")
            .env("OPSAGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        Daemon(super::spawn(cmd).unwrap(), log.to_path_buf())
    }

    /// Runs `f` on a new thread that has entered this namespace (sockets it makes live there);
    /// returns what `f` sends first.
    pub fn thread<T: Send + 'static>(&self, f: impl FnOnce(mpsc::Sender<T>) + Send + 'static) -> T {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.name)).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace file we hold open; it changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f(tx)
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the thread in the namespace did not start")
    }

    /// A TCP listener on 127.0.0.1 inside the namespace that accepts and closes every connection
    /// until the returned guard drops; returns its port.
    pub fn tcp_listener(&self) -> (u16, Stop) {
        let stop = Stop(Arc::new(AtomicBool::new(false)));
        let flag = stop.0.clone();
        let port = self.thread(move |tx| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        (port, stop)
    }
}

impl Netns {
    /// An echo responder that answers late: the kernel's own echo replies are turned off in the
    /// namespace (`icmp_echo_ignore_all`), and a thread reads each IPv4 echo request from a raw
    /// socket there and sends its reply `delay` later (one at a time). Stops when the guard drops.
    pub fn slow_echo(&self, delay: Duration) -> Stop {
        self.exec(&["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"]);
        let stop = Stop(Arc::new(AtomicBool::new(false)));
        let flag = stop.0.clone();
        self.thread(move |tx| {
            let sock = RawIcmp::open();
            tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                if let Some((from, reply)) = sock.echo_request() {
                    std::thread::sleep(delay);
                    sock.send(from, &reply);
                }
            }
        });
        stop
    }
}

/// A raw IPv4 ICMP socket (the test runs as root) with a 50 ms read timeout.
struct RawIcmp(std::os::fd::OwnedFd);

impl RawIcmp {
    fn open() -> RawIcmp {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a fd we own; the timeval is fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            let p = &tv as *const libc::timeval as *const libc::c_void;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, p, len);
            RawIcmp(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    }

    /// The next echo request's sender and the reply to it (type 0, checksum redone).
    fn echo_request(&self) -> Option<(libc::sockaddr_in, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        // SAFETY: recvfrom into buffers we own, with their true sizes.
        let (n, from) = unsafe {
            let mut from: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let n = libc::recvfrom(
                self.0.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
                &mut from as *mut libc::sockaddr_in as *mut libc::sockaddr,
                &mut len,
            );
            (n, from)
        };
        let packet = &buf[..usize::try_from(n).ok()?];
        let icmp = packet.get(usize::from(packet.first()? & 0x0f) * 4..)?;
        if icmp.len() < 8 || icmp[0] != 8 {
            return None;
        }
        let mut reply = icmp.to_vec();
        reply[0] = 0;
        reply[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        Some((from, reply))
    }

    fn send(&self, to: libc::sockaddr_in, reply: &[u8]) {
        // SAFETY: sendto from buffers we own, with their true sizes.
        unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                reply.as_ptr() as *const libc::c_void,
                reply.len(),
                0,
                &to as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
        }
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Stops a thread's loop when dropped.
pub struct Stop(pub Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
