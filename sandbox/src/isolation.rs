//! What confines a sandboxed Python process, applied between `fork` and `exec` (see
//! `sandbox/SANDBOX.md` for what each layer does and does not stop).
//!
//! The child enters new mount, network, IPC, UTS and PID namespaces: as root directly, without
//! root inside a new user namespace ([`super::userns`]) where the kernel allows one. A PID
//! namespace needs one more process: the child forks the namespace's init (which execs Python)
//! and stays behind as a small supervisor that kills the namespace on `SIGTERM` and exits with
//! the init's status once the namespace is gone. The init builds its allowlist view of the file
//! system ([`super::mounts`]), with a private `/proc`; as root it then drops to a fresh
//! unprivileged uid so that `RLIMIT_NPROC` counts (the kernel never applies it to root). Last,
//! the seccomp filter ([`super::seccomp`]). Every step is recorded in [`Isolation`], written to
//! fd 3 before `exec`, with the errno of the first failure of each layer.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use serde::{Deserialize, Serialize};

use super::mounts::RootPlan;
use super::seccomp::SeccompFilter;
use super::userns::IdMaps;

/// The isolation layers that were actually applied to one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Isolation {
    /// A new user namespace (the unprivileged way to get the other namespaces).
    pub user_namespace: bool,
    /// A new network namespace: no interface but a down loopback, so no network at all.
    pub network_namespace: bool,
    /// A new private mount namespace (nothing propagates back to the host).
    pub mount_namespace: bool,
    /// Every mount is read-only and nosuid, except the work directory.
    pub read_only_root: bool,
    /// The root is the allowlist view: only `SandboxConfig::readable_paths`, the interpreter,
    /// a few devices, `/proc` of the run and the work directory exist.
    pub allowlist_root: bool,
    /// The work directory is a private, size-limited tmpfs (noexec): writes never reach the disk.
    pub work_dir_in_memory: bool,
    /// A new PID namespace: the program sees only its own processes, and they all die with it.
    pub pid_namespace: bool,
    /// A private `/proc` mounted for the PID namespace (host processes are not listed).
    pub private_proc: bool,
    /// New IPC and UTS namespaces (no SysV shared memory or host name shared with the host).
    pub ipc_uts_namespaces: bool,
    /// The unprivileged uid (and gid) the program ran as, when it was started as root.
    pub uid: Option<u32>,
    /// `CAP_DAC_READ_SEARCH` was kept so that the unprivileged uid can reach an interpreter below
    /// a private directory that the view could not expose: reads are then unrestricted.
    pub read_search_capability: bool,
    /// `PR_SET_NO_NEW_PRIVS`: executing a set-uid program cannot raise privileges.
    pub no_new_privileges: bool,
    /// `RLIMIT_NPROC` is in force (the program does not run as root).
    pub process_limit: bool,
    /// The seccomp filter is installed.
    pub seccomp: bool,
    /// The Python audit hook of the prelude was installed.
    pub audit_hook: bool,
    /// errno of the failed `unshare` (0: none failed or none was tried).
    pub namespace_errno: i32,
    /// errno of the first failed step of the file-system view.
    pub mount_errno: i32,
    /// errno of the failed seccomp installation.
    pub seccomp_errno: i32,
}

/// Bits of the isolation record the child writes to fd 3 just before `exec`.
mod bit {
    pub const NETWORK: u64 = 1 << 0;
    pub const MOUNT: u64 = 1 << 1;
    pub const READ_ONLY_ROOT: u64 = 1 << 2;
    pub const PID: u64 = 1 << 3;
    pub const PROC: u64 = 1 << 4;
    pub const IPC_UTS: u64 = 1 << 5;
    pub const UID: u64 = 1 << 6;
    pub const READ_SEARCH: u64 = 1 << 7;
    pub const NO_NEW_PRIVS: u64 = 1 << 8;
    pub const NOT_ROOT: u64 = 1 << 9;
    pub const ALLOWLIST_ROOT: u64 = 1 << 10;
    pub const WORK_DIR_IN_MEMORY: u64 = 1 << 11;
    pub const USER: u64 = 1 << 12;
    pub const SECCOMP: u64 = 1 << 13;
}

/// Tag byte of the isolation record; the prelude's JSON report follows it and starts with '{'.
pub(crate) const RECORD_TAG: u8 = 0xA5;
/// Length of the isolation record: the tag, a little-endian u64 of bits and three i32 errnos.
pub(crate) const RECORD_LEN: usize = 21;

impl Isolation {
    /// Decodes the isolation record (the uid and the audit hook are known to the parent).
    pub(crate) fn from_record(record: &[u8], uid: Option<u32>, audit_hook: bool) -> Option<Self> {
        if record.len() < RECORD_LEN || record[0] != RECORD_TAG {
            return None;
        }
        let bits = u64::from_le_bytes(record[1..9].try_into().ok()?);
        let errno = |at: usize| -> Option<i32> {
            Some(i32::from_le_bytes(record[at..at + 4].try_into().ok()?))
        };
        let has = |b: u64| bits & b != 0;
        Some(Isolation {
            user_namespace: has(bit::USER),
            network_namespace: has(bit::NETWORK),
            mount_namespace: has(bit::MOUNT),
            read_only_root: has(bit::READ_ONLY_ROOT),
            allowlist_root: has(bit::ALLOWLIST_ROOT),
            work_dir_in_memory: has(bit::WORK_DIR_IN_MEMORY),
            pid_namespace: has(bit::PID),
            private_proc: has(bit::PROC),
            ipc_uts_namespaces: has(bit::IPC_UTS),
            uid: if has(bit::UID) { uid } else { None },
            read_search_capability: has(bit::READ_SEARCH),
            no_new_privileges: has(bit::NO_NEW_PRIVS),
            process_limit: has(bit::NOT_ROOT),
            seccomp: has(bit::SECCOMP),
            audit_hook,
            namespace_errno: errno(9)?,
            mount_errno: errno(13)?,
            seccomp_errno: errno(17)?,
        })
    }
}

/// One resource limit applied in the child: (resource, soft, hard).
pub(crate) type Limit = (libc::__rlimit_resource_t, u64, u64);

/// Everything the child needs, prepared (and allocated) in the parent: between `fork` and
/// `exec` only async-signal-safe calls are allowed, so no allocation happens in [`Self::apply`].
pub(crate) struct ChildPlan {
    pub workdir: CString,
    /// Try namespaces.
    pub namespaces: bool,
    /// Not root: get the namespaces inside a new user namespace with these maps.
    pub user_namespace: Option<IdMaps>,
    /// Drop to this uid and gid (root only).
    pub uid: Option<u32>,
    /// The unprivileged uid cannot reach the interpreter: keep `CAP_DAC_READ_SEARCH` across the
    /// uid change, unless the allowlist view exposes it (`reachable_when_mounted`).
    pub interpreter_unreachable: bool,
    /// The interpreter is reachable in the allowlist view.
    pub reachable_when_mounted: bool,
    pub mounts: RootPlan,
    pub limits: Vec<Limit>,
    /// The seccomp filters for a run with and without a PID namespace (`None`: no filter).
    pub seccomp: Option<[SeccompFilter; 2]>,
    /// Write end of the report pipe, moved to fd 3.
    pub report_fd: RawFd,
    /// Record bits that must all be set, or the child reports and fails instead of running
    /// Python with weaker isolation ([`required_bits`]; 0 when weaker isolation is allowed).
    pub required: u64,
}

/// The record bits of the layers a config asks for: the same layers as
/// `layers::missing_layers` checks, so that a child refuses exactly what the parent would.
pub(crate) fn required_bits(
    namespaces: bool,
    user_namespace: bool,
    seccomp: bool,
    uid: bool,
) -> u64 {
    let mut required = bit::NO_NEW_PRIVS;
    if namespaces {
        required |= bit::NETWORK
            | bit::PID
            | bit::IPC_UTS
            | bit::ALLOWLIST_ROOT
            | bit::READ_ONLY_ROOT
            | bit::PROC
            | bit::WORK_DIR_IN_MEMORY;
        if user_namespace {
            required |= bit::USER;
        }
    }
    if seccomp {
        required |= bit::SECCOMP;
    }
    if uid {
        required |= bit::UID;
    }
    required
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl ChildPlan {
    /// Confines the calling process (the forked child). Only async-signal-safe calls.
    ///
    /// # Safety
    /// Must run in a freshly forked child before `exec` (`Command::pre_exec`).
    pub unsafe fn apply(&self) -> io::Result<()> {
        let mut bits = 0u64;
        let mut errnos = [0i32; 3];
        check(libc::setsid())?;
        check(libc::dup2(self.report_fd, 3))?;
        let mut applied = 0;
        if self.namespaces {
            let mut all = libc::CLONE_NEWNS
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWPID;
            if self.user_namespace.is_some() {
                all |= libc::CLONE_NEWUSER;
            }
            if libc::unshare(all) == 0 {
                applied = all;
            } else {
                errnos[0] = errno();
                if self.user_namespace.is_none() {
                    // Root: record which of them this platform allows.
                    for flag in [
                        libc::CLONE_NEWNS,
                        libc::CLONE_NEWNET,
                        libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
                        libc::CLONE_NEWPID,
                    ] {
                        if libc::unshare(flag) == 0 {
                            applied |= flag;
                        }
                    }
                }
            }
            if let (Some(maps), true) = (&self.user_namespace, applied & libc::CLONE_NEWUSER != 0) {
                maps.write()?;
                bits |= bit::USER;
            }
        }
        if applied & libc::CLONE_NEWNET != 0 {
            bits |= bit::NETWORK;
        }
        if applied & libc::CLONE_NEWIPC != 0 {
            bits |= bit::IPC_UTS;
        }
        let pid_namespace = applied & libc::CLONE_NEWPID != 0;
        if pid_namespace {
            // The view is built by the init, inside the PID namespace, so that its /proc is the
            // namespace's.
            self.fork_namespace_init()?;
            bits |= bit::PID;
        }
        if applied & libc::CLONE_NEWNS != 0 {
            bits |= bit::MOUNT;
            // Synthetic directories of the view must be searchable by the program's uid.
            libc::umask(0o022);
            let outcome = self.mounts.apply(pid_namespace)?;
            errnos[1] = outcome.errno;
            for (applied, flag) in [
                (outcome.read_only, bit::READ_ONLY_ROOT),
                (outcome.allowlist_root, bit::ALLOWLIST_ROOT),
                (outcome.work_dir_in_memory, bit::WORK_DIR_IN_MEMORY),
                (outcome.private_proc, bit::PROC),
            ] {
                if applied {
                    bits |= flag;
                }
            }
        }
        // After the mounts: a cwd taken before the work directory's tmpfs would point below it.
        check(libc::chdir(self.workdir.as_ptr()))?;
        for &(resource, soft, hard) in &self.limits {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            check(libc::setrlimit(resource, &limit))?;
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 {
            bits |= bit::NO_NEW_PRIVS;
        }
        if let Some(uid) = self.uid {
            let reachable = bits & bit::ALLOWLIST_ROOT != 0 && self.reachable_when_mounted;
            let keep_read_search = self.interpreter_unreachable && !reachable;
            self.drop_to(uid, keep_read_search)?;
            bits |= bit::UID;
            if keep_read_search {
                bits |= bit::READ_SEARCH;
            }
        }
        if pid_namespace {
            // After the uid change, which clears it: the init dies with its supervisor.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        }
        if libc::geteuid() != 0 {
            bits |= bit::NOT_ROOT;
        }
        // Descriptors leaked by other threads of the parent close at exec.
        libc::close_range(4, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
        if let Some(filters) = &self.seccomp {
            // Last: the filter refuses the mount and namespace calls made above.
            match filters[usize::from(pid_namespace)].install() {
                Ok(()) => bits |= bit::SECCOMP,
                Err(error) => errnos[2] = error.raw_os_error().unwrap_or(0),
            }
        }
        let mut record = [0u8; RECORD_LEN];
        record[0] = RECORD_TAG;
        record[1..9].copy_from_slice(&bits.to_le_bytes());
        for (index, errno) in errnos.iter().enumerate() {
            record[9 + 4 * index..13 + 4 * index].copy_from_slice(&errno.to_le_bytes());
        }
        if libc::write(3, record.as_ptr().cast(), RECORD_LEN) != RECORD_LEN as isize {
            return Err(io::Error::last_os_error());
        }
        if bits & self.required != self.required {
            // The parent reads the record just written to say which layer is missing.
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    /// Forks the PID namespace's init. The init returns (and execs Python); this process becomes
    /// its supervisor and never returns.
    unsafe fn fork_namespace_init(&self) -> io::Result<()> {
        let mut supervised: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut supervised);
        libc::sigaddset(&mut supervised, libc::SIGCHLD);
        libc::sigaddset(&mut supervised, libc::SIGTERM);
        // Blocked before the fork so that an early SIGCHLD is queued, not lost.
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &supervised,
            std::ptr::null_mut(),
        ))?;
        let pid = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0);
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            check(libc::sigprocmask(
                libc::SIG_UNBLOCK,
                &supervised,
                std::ptr::null_mut(),
            ))?;
            return Ok(());
        }
        supervise(pid as libc::pid_t, &supervised)
    }

    /// Becomes `uid`/`gid` with no supplementary groups, keeping only `CAP_DAC_READ_SEARCH`
    /// (as an ambient capability, so it survives `exec`) when asked to.
    unsafe fn drop_to(&self, uid: u32, keep_read_search: bool) -> io::Result<()> {
        if keep_read_search {
            check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        }
        // Raw system calls: they change this thread only, which is the whole (forked) process.
        check_long(libc::syscall(
            libc::SYS_setgroups,
            0,
            std::ptr::null::<libc::gid_t>(),
        ))?;
        check_long(libc::syscall(libc::SYS_setresgid, uid, uid, uid))?;
        check_long(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
        if keep_read_search {
            let header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let mask = 1u32 << CAP_DAC_READ_SEARCH;
            let data = [
                CapData {
                    effective: mask,
                    permitted: mask,
                    inheritable: mask,
                },
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            check_long(libc::syscall(libc::SYS_capset, &header, data.as_ptr()))?;
            let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
            let capability = CAP_DAC_READ_SEARCH as libc::c_ulong;
            check(libc::prctl(libc::PR_CAP_AMBIENT, raise, capability, 0, 0))?;
        }
        Ok(())
    }
}

/// The supervisor of a PID namespace: waits for its init, kills it on `SIGTERM` (the parent's
/// way to end a run), and exits with the init's status once the init, and with it every process
/// of the namespace, is gone.
unsafe fn supervise(init: libc::pid_t, signals: &libc::sigset_t) -> ! {
    // Hold no descriptor: the parent's pipes and its exec-status pipe must close with the init.
    libc::close_range(0, u32::MAX, 0);
    // If the parent thread dies, end the run too.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
    loop {
        let signal = libc::sigwaitinfo(signals, std::ptr::null_mut());
        if signal == libc::SIGTERM {
            libc::kill(init, libc::SIGKILL);
        }
        let mut status = 0;
        if libc::waitpid(init, &mut status, libc::WNOHANG) == init {
            if libc::WIFSIGNALED(status) {
                // Die the same way, so that the parent sees the signal.
                let signal = libc::WTERMSIG(status);
                libc::signal(signal, libc::SIG_DFL);
                let mut only: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut only);
                libc::sigaddset(&mut only, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
                libc::kill(libc::getpid(), signal);
                libc::_exit(128 + signal);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_long(result: libc::c_long) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_record_round_trips_bits() {
        let mut record = [0u8; RECORD_LEN];
        record[0] = RECORD_TAG;
        let bits = bit::NETWORK | bit::PID | bit::UID | bit::NOT_ROOT | bit::SECCOMP;
        record[1..9].copy_from_slice(&bits.to_le_bytes());
        record[13..17].copy_from_slice(&libc::EPERM.to_le_bytes());
        let isolation = Isolation::from_record(&record, Some(7), true).expect("valid record");
        assert!(isolation.network_namespace && isolation.pid_namespace && isolation.process_limit);
        assert!(!isolation.mount_namespace && !isolation.read_only_root);
        assert_eq!(isolation.uid, Some(7));
        assert!(isolation.audit_hook && isolation.seccomp && !isolation.user_namespace);
        assert_eq!(
            (isolation.namespace_errno, isolation.mount_errno),
            (0, libc::EPERM)
        );
        assert_eq!(Isolation::from_record(b"{\"ok\"", None, false), None);
    }
}
