//! Running heavy work gently (`[agent] io_priority`, `nice`): the IO scheduling class a thread
//! or child process gets from the kernel (`ioprio_set`), and its CPU priority: a nice value
//! (`setpriority`) or the idle policy (`sched_setscheduler(SCHED_IDLE)`, `chrt --idle 0`: the
//! CPU only when no other thread wants it, and any other thread that wakes takes it at once).
//! Used for the dump tool (set in the child between fork and exec, so the tool runs so from its
//! first read), for the media backup's reading threads, and for the threads a whole job runs on
//! ([`Priority::run_gently`]: its storage writes and the sends of its uploads too).
//!
//! The dump tool is never put in the idle policy: with `--master-data` (a job with `binlog`)
//! `mariadb-dump` takes the server's global read lock for an instant at its start, to read the
//! binary log position, and its transaction holds metadata locks on the tables it has read; a
//! tool that gets no CPU on a saturated machine would keep writes (and `ALTER`s) waiting behind
//! them. So `nice = "idle"` gives a child nice 19 instead, the lowest value that still gets its
//! share.
//!
//! The syscalls, not the `ionice`/`nice` binaries: no second process and no `PATH` lookup, and
//! both are in systemd's `@system-service` filter (`@resources`), which the unit uses. On Linux
//! both attributes belong to a thread; a child inherits them. An unprivileged thread may lower
//! its IO class to idle and raise it back to best-effort, but it can only ever raise its nice
//! value: so [`IoGuard`] restores the class of a thread that lives on (a pool thread), and nice
//! is only set on threads that end with their work and in children.

use std::future::Future;
use std::io;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock, PoisonError};

use tokio::runtime::Runtime;
use tracing::Instrument;

/// `IOPRIO_WHO_PROCESS`: `who` is a thread id (0: the calling thread).
const WHO_PROCESS: libc::c_int = 1;
/// Bits of the class in an ioprio value.
const CLASS_SHIFT: u32 = 13;
/// `IOPRIO_CLASS_BE`.
const CLASS_BEST_EFFORT: libc::c_int = 2;
/// `IOPRIO_CLASS_IDLE`.
const CLASS_IDLE: libc::c_int = 3;
/// The lowest level of the best-effort class (0 is the highest).
const LOWEST_BEST_EFFORT_LEVEL: libc::c_int = 7;

/// The IO scheduling class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoClass {
    /// Disk time only when no other process wants it (`ionice -c3`).
    Idle,
    /// The normal class, at its lowest level (`ionice -c2 -n7`).
    BestEffort,
}

impl IoClass {
    /// The config word: `idle`, `best-effort`.
    pub fn as_str(self) -> &'static str {
        match self {
            IoClass::Idle => "idle",
            IoClass::BestEffort => "best-effort",
        }
    }

    fn ioprio(self) -> libc::c_int {
        match self {
            IoClass::Idle => CLASS_IDLE << CLASS_SHIFT,
            IoClass::BestEffort => (CLASS_BEST_EFFORT << CLASS_SHIFT) | LOWEST_BEST_EFFORT_LEVEL,
        }
    }
}

/// The CPU priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    /// A nice value, 0–19 (0 leaves it as inherited).
    Nice(i32),
    /// The idle policy (`SCHED_IDLE`) for threads; nice 19 for a child (see the module).
    Idle,
}

impl Cpu {
    /// The nice value a child process gets.
    fn child_nice(self) -> i32 {
        match self {
            Cpu::Nice(n) => n,
            Cpu::Idle => 19,
        }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cpu::Nice(n) => write!(f, "nice {n}"),
            Cpu::Idle => f.write_str("CPU idle (SCHED_IDLE; the dump tool at nice 19)"),
        }
    }
}

/// How gently heavy work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// Its IO class.
    pub io: IoClass,
    /// Its CPU priority.
    pub cpu: Cpu,
}

fn ioprio_set(who: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain syscall with integer arguments; async-signal-safe.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, WHO_PROCESS, who, value) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The ioprio value of thread `tid` (0: the calling thread).
fn ioprio_get(tid: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: a plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_get, WHO_PROCESS, tid) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as libc::c_int)
}

/// Puts the calling thread in the idle policy. Async-signal-safe.
fn set_idle_policy() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall; pid 0 is the calling thread on Linux, `param` lives across it.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nice(nice: i32) -> io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: a plain syscall; `who` 0 is the calling thread on Linux. Async-signal-safe.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Priority {
    /// Sets the calling thread's IO class and nice value, for good: for a thread that ends with
    /// its work. The first error, if any (the other setting is still tried).
    pub fn apply_to_thread(&self) -> io::Result<()> {
        let io = ioprio_set(0, self.io.ioprio());
        io.and(self.cpu.apply_to_thread())
    }

    /// [`Priority::apply_to_thread`] for a `pre_exec` hook: only async-signal-safe syscalls, and
    /// errors are left for [`Priority::holds_for`] to find in the parent (a spawn must not
    /// fail because a sandbox forbids lowering a priority).
    pub fn apply_in_child(&self) {
        let _ = ioprio_set(0, self.io.ioprio());
        let _ = set_nice(self.cpu.child_nice());
    }

    /// Whether process (or thread) `pid` runs in this IO class.
    pub fn holds_for(&self, pid: u32) -> bool {
        let Ok(pid) = libc::c_int::try_from(pid) else {
            return false;
        };
        ioprio_get(pid).is_ok_and(|v| v == self.io.ioprio())
    }

    /// Sets the calling thread's IO class until the guard is dropped (for a pool thread that
    /// goes on with other work); the nice value is left alone, as it could not be restored.
    pub fn io_for_now(&self) -> io::Result<IoGuard> {
        let before = ioprio_get(0)?;
        ioprio_set(0, self.io.ioprio())?;
        Ok(IoGuard { before })
    }
}

/// The calling thread's former IO class, restored on drop (see [`Priority::io_for_now`]).
#[derive(Debug)]
pub struct IoGuard {
    before: libc::c_int,
}

impl Drop for IoGuard {
    fn drop(&mut self) {
        let _ = ioprio_set(0, self.before);
    }
}

/// The runtimes jobs run on ([`Priority::run_gently`]), one per CPU priority: made on first use
/// and kept for the life of the process, since a thread's priority cannot be raised back.
static JOB_RUNTIMES: Mutex<Vec<(Cpu, &'static Runtime)>> = Mutex::new(Vec::new());

/// Threads of each job runtime (the main runtime has two as well).
const JOB_WORKERS: usize = 2;

impl Cpu {
    /// Sets the calling thread's CPU priority, for good.
    fn apply_to_thread(self) -> io::Result<()> {
        match self {
            Cpu::Nice(n) => set_nice(n),
            Cpu::Idle => set_idle_policy(),
        }
    }

    /// The runtime whose every thread (workers and blocking pool) runs at this priority.
    fn job_runtime(self) -> io::Result<&'static Runtime> {
        let mut all = JOB_RUNTIMES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rt)) = all.iter().find(|(cpu, _)| *cpu == self) {
            return Ok(rt);
        }
        if self == Cpu::Idle {
            // Made here, by a thread at the process's priority, before any thread is idle.
            make_launcher();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(JOB_WORKERS)
            .thread_name("opsagent-job")
            // A sandbox that forbids lowering it leaves the thread as it is.
            .on_thread_start(move || drop(self.apply_to_thread()))
            .enable_all()
            .build()?;
        let rt: &'static Runtime = Box::leak(Box::new(rt));
        all.push((self, rt));
        Ok(rt)
    }
}

impl Priority {
    /// Runs `work` to its end on threads at this CPU priority (the IO class is left to the
    /// readers, which set it themselves): a backup's every step, its storage writes and the
    /// sends of its uploads included, takes the CPU only as its readers do, while the caller's
    /// runtime (the daemon's scheduler, health checks and alerts) keeps its own. Dropping the
    /// returned future cancels the work; a panic in it is resumed here. At nice 0, or when no
    /// runtime can be made (logged), the work runs on the caller's runtime.
    pub async fn run_gently<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.cpu == Cpu::Nice(0) {
            return work.await;
        }
        let rt = match self.cpu.job_runtime() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, priority = %self.cpu, "cannot start the threads jobs run on at their priority; running this one at the daemon's");
                return work.await;
            }
        };
        let mut task = AbortOnDrop(rt.spawn(work.in_current_span()));
        match (&mut task.0).await {
            Ok(out) => out,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("a job's task ended without its result: {e}"),
            },
        }
    }
}

/// What the launcher thread runs: one fork and exec.
type Launch = Box<dyn FnOnce() + Send>;

/// The thread that starts child processes for threads in the idle policy ([`spawn_child`]):
/// `None` inside when it could not be made; unset until the first idle job runtime.
static LAUNCHER: OnceLock<Option<Mutex<mpsc::Sender<Launch>>>> = OnceLock::new();

/// Makes the launcher thread, once. Call it from a thread at the process's priority (the thread
/// inherits the caller's).
fn make_launcher() {
    LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Launch>();
        let thread = std::thread::Builder::new().name("opsagent-spawn".into());
        let made = thread.spawn(move || rx.into_iter().for_each(|launch| launch()));
        made.map_err(|e| tracing::warn!(error = %e, "cannot start the thread that starts the MySQL tools; they will inherit the idle policy"))
            .ok()
            .map(|_| Mutex::new(tx))
    });
}

/// Whether the calling thread is in the idle policy.
fn in_idle_policy() -> bool {
    // SAFETY: a plain syscall; pid 0 is the calling thread.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

/// Starts `cmd` as a child that is not in the idle policy. A child inherits the policy of the
/// thread that forks it, an unprivileged process cannot leave it (its `RLIMIT_NICE` is 0), and
/// the MySQL tools must not run in it (see the module): so from a thread in the idle policy (a
/// job's) the fork is done by a thread at the process's own priority, made with the first job
/// runtime; from any other thread, here. The child's other attributes are set by `cmd`'s
/// `pre_exec` hooks as usual (and a tied child is tied to that thread, which lives as long as
/// the process).
pub fn spawn_child(mut cmd: Command) -> io::Result<Child> {
    // Never made here: from an idle thread it would be idle too, from any other not needed.
    let made = || LAUNCHER.get().and_then(Option::as_ref);
    let Some(launcher) = in_idle_policy().then(made).flatten() else {
        return cmd.spawn();
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let launch: Launch = Box::new(move || drop(tx.send(cmd.spawn())));
    let sent = launcher
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(launch);
    let gone = || io::Error::other("the thread that starts child processes has stopped");
    sent.map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// Cancels the task when the future awaiting it is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioprio_values_are_the_kernels() {
        // As `ionice -c3` and `ionice -c2 -n7` set them.
        assert_eq!(IoClass::Idle.ioprio(), 0x6000);
        assert_eq!(IoClass::BestEffort.ioprio(), 0x4007);
    }

    #[test]
    fn a_thread_goes_idle_and_back() {
        std::thread::spawn(|| {
            let before = ioprio_get(0).unwrap();
            let p = Priority {
                io: IoClass::Idle,
                cpu: Cpu::Nice(0),
            };
            let guard = p.io_for_now().unwrap();
            assert_eq!(ioprio_get(0).unwrap(), IoClass::Idle.ioprio());
            drop(guard);
            assert_eq!(ioprio_get(0).unwrap(), before);
            // SAFETY (both): read the calling thread's nice value.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let p = Priority {
                io: IoClass::BestEffort,
                cpu: Cpu::Nice((nice + 1).min(19)),
            };
            p.apply_to_thread().unwrap();
            assert_eq!(ioprio_get(0).unwrap(), 0x4007);
            let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(Cpu::Nice(after), p.cpu);
        })
        .join()
        .unwrap();
    }

    /// The scheduling policy of process `pid` (field 41 of its stat).
    fn policy_of(pid: u32) -> String {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(41 - 3).unwrap().to_string()
    }

    #[test]
    fn a_child_started_from_a_job_thread_is_not_in_the_idle_policy() {
        let rt = Cpu::Idle.job_runtime().unwrap();
        let (plain, launched) = rt.block_on(async {
            tokio::task::spawn_blocking(|| {
                assert!(in_idle_policy(), "the job runtime's threads are idle");
                let sleep = || {
                    let mut cmd = Command::new("sleep");
                    cmd.arg("30");
                    cmd
                };
                let mut plain = sleep().spawn().unwrap();
                let mut launched = spawn_child(sleep()).unwrap();
                let policies = (policy_of(plain.id()), policy_of(launched.id()));
                for c in [&mut plain, &mut launched] {
                    c.kill().unwrap();
                    c.wait().unwrap();
                }
                policies
            })
            .await
            .unwrap()
        });
        // A plain fork inherits the idle policy (5); one through the launcher does not.
        assert_eq!((plain.as_str(), launched.as_str()), ("5", "0"));
        // Elsewhere the child is started by the calling thread.
        assert!(!in_idle_policy());
        let mut here = spawn_child(Command::new("true")).unwrap();
        assert!(here.wait().unwrap().success());
    }

    #[test]
    fn a_job_runs_on_threads_at_its_priority_and_its_panic_comes_back() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let idle = Priority {
            io: IoClass::BestEffort,
            cpu: Cpu::Idle,
        };
        let policy = rt.block_on(idle.run_gently(async { in_idle_policy() }));
        assert!(policy);
        assert!(!in_idle_policy(), "the caller's thread is left as it was");
        let panicked = std::panic::catch_unwind(|| {
            rt.block_on(idle.run_gently(async { panic!("job panic") }))
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn idle_puts_a_thread_in_the_idle_policy_and_a_child_at_nice_19() {
        std::thread::spawn(|| {
            // SAFETY (both): read the calling thread's policy.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
            let p = Priority {
                io: IoClass::Idle,
                cpu: Cpu::Idle,
            };
            p.apply_to_thread().unwrap();
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
            assert_eq!(ioprio_get(0).unwrap(), IoClass::Idle.ioprio());
        })
        .join()
        .unwrap();
        assert_eq!(Cpu::Idle.child_nice(), 19);
        assert_eq!(Cpu::Nice(10).child_nice(), 10);
    }
}
