//! The pool of fresh unprivileged uids of runs started as root (one per run in flight), and the
//! sweep that kills whatever a run left behind under its uid when there is no PID namespace.

use std::io;
use std::sync::{Condvar, Mutex, OnceLock};

/// Slots of unprivileged uids per process: runs in flight at once hold distinct uids, so one
/// run's processes never count against another's `RLIMIT_NPROC`.
const UID_SLOTS: usize = 256;
/// First uid of the sandbox range. A process uses `BASE + (pid mod 2^22) * 256 + slot`, so
/// concurrent processes (pids are unique) never share a uid; the range stays below 2^31.
const UID_BASE: u32 = 0x1000_0000;

/// A uid held by one run, returned to the pool on drop.
pub(crate) struct UidLease {
    slot: usize,
    pub uid: u32,
}

struct UidPool {
    base: u32,
    slots: Mutex<Slots>,
    freed: Condvar,
}

/// Which slots are held, and where the next search starts.
struct Slots {
    used: Vec<bool>,
    /// Slots are handed out round-robin: a just-released uid is reused last, so that processes
    /// of a finished run still being reaped (zombies count against `RLIMIT_NPROC`) never share
    /// a uid with a new run.
    next: usize,
}

fn pool() -> &'static UidPool {
    static POOL: OnceLock<UidPool> = OnceLock::new();
    POOL.get_or_init(|| UidPool {
        base: UID_BASE + (std::process::id() & 0x3f_ffff) * UID_SLOTS as u32,
        slots: Mutex::new(Slots {
            used: vec![false; UID_SLOTS],
            next: 0,
        }),
        freed: Condvar::new(),
    })
}

impl UidLease {
    /// Takes a free uid, waiting while all are held.
    pub fn acquire() -> Self {
        let pool = pool();
        let mut slots = pool
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        loop {
            let start = slots.next;
            let free = (0..UID_SLOTS)
                .map(|offset| (start + offset) % UID_SLOTS)
                .find(|&slot| !slots.used[slot]);
            if let Some(slot) = free {
                slots.used[slot] = true;
                slots.next = (slot + 1) % UID_SLOTS;
                return UidLease {
                    slot,
                    uid: pool.base + slot as u32,
                };
            }
            slots = pool
                .freed
                .wait(slots)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        let pool = pool();
        let mut slots = pool
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        slots.used[self.slot] = false;
        pool.freed.notify_one();
    }
}

/// Kills every process of `uid` (those that left the process group, when there is no PID
/// namespace to end them): a forked helper becomes `uid` and sends `kill(-1, SIGKILL)`, which
/// reaches exactly the processes of that uid.
pub(crate) fn kill_all_of_uid(uid: u32) {
    // SAFETY: the child only makes async-signal-safe system calls and exits.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0 {
                libc::kill(-1, libc::SIGKILL);
                libc::kill(-1, libc::SIGKILL);
            }
            libc::_exit(0);
        }
        if pid > 0 {
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_leases_hold_distinct_uids_in_range() {
        let a = UidLease::acquire();
        let b = UidLease::acquire();
        assert_ne!(a.uid, b.uid);
        let released = a.uid;
        drop(a);
        // Round-robin: the uid just released is not handed out again at once.
        let c = UidLease::acquire();
        assert_ne!(c.uid, released);
        for uid in [released, b.uid, c.uid] {
            assert!(uid >= UID_BASE && uid < i32::MAX as u32);
        }
    }
}
