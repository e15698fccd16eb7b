//! Running heavy work gently (`[agent] io_priority`, `nice`): the IO scheduling class a thread
//! or child process gets from the kernel (`ioprio_set`), and its CPU priority: a nice value
//! (`setpriority`) or the idle policy (`sched_setscheduler(SCHED_IDLE)`, `chrt --idle 0`: the
//! CPU only when no other thread wants it, and any other thread that wakes takes it at once).
//! Used for the dump tool (set in the child between fork and exec, so the tool runs so from its
//! first read) and for the media backup's reading threads.
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

use std::io;

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
        let cpu = match self.cpu {
            Cpu::Nice(n) => set_nice(n),
            Cpu::Idle => set_idle_policy(),
        };
        io.and(cpu)
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
