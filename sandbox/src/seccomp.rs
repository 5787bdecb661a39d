//! The seccomp filter of a sandboxed program: a small classic-BPF program, assembled here by
//! hand rather than with the `seccompiler` crate (not in this workspace's seeded dependencies;
//! the filter is about forty instructions, each rule below is a few lines, and its tests run it
//! for real in `sandbox/tests/`).
//!
//! Denied with `EPERM` (the program sees `PermissionError`), by system call number:
//! - other processes' memory: `ptrace`, `process_vm_readv`/`writev`;
//! - the mount table: `mount`, `umount2`, `pivot_root` and the new mount API;
//! - kernel keyrings, `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*` (whose operations
//!   seccomp cannot see), module loading, `kexec`;
//! - new namespaces after setup: `unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag
//!   (`clone3` passes its flags in memory a filter cannot read, so it returns `ENOSYS` and libc
//!   falls back to `clone`);
//! - `socket` of any family but `AF_UNIX` (no raw, packet, netlink or inet sockets);
//! - without a PID namespace, `kill` of anything but the program's own process group (pid 0),
//!   and `tkill`/`tgkill`. With one, signals are left alone: pids are resolved in the
//!   namespace, where only the run's own processes exist, so the trainer cannot be named.
//!
//! Any other architecture than the one this was built for (a 32-bit ABI entered from a 64-bit
//! process) kills the process: system call numbers would mean something else there.

use std::io;

/// `struct seccomp_data` offsets: the system call number, the audit architecture, the arguments.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

/// `BPF_LD | BPF_W | BPF_ABS` (the first two are 0): load a 32-bit word of `seccomp_data`.
const BPF_LD_W_ABS: u16 = 0x20;
/// `BPF_JMP | BPF_JEQ | BPF_K`, `... BPF_JGE ...`, `... BPF_JSET ...` (`BPF_K` is 0).
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_JSET_K: u16 = 0x05 | 0x40;
/// `BPF_RET | BPF_K`: return the constant.
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_003e);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_00b7);
/// Elsewhere the filter is not installed (`ENOSYS`, reported as a missing layer): argument
/// positions and the socket call differ (s390x, 32-bit `socketcall`) and are not written here.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// The x32 ABI's system calls carry this bit; they would bypass the x86_64 numbers below.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

/// Flags of `clone` that create namespaces.
const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWCGROUP) as u32;

/// System calls refused outright.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
];

/// A seccomp filter assembled in the parent, installed by the child just before `exec`.
pub(crate) struct SeccompFilter {
    program: Vec<libc::sock_filter>,
}

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

impl SeccompFilter {
    /// The filter; `pid_namespace` says whether the program's signals are confined by one.
    pub fn new(pid_namespace: bool) -> Self {
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let mut program = vec![
            statement(BPF_LD_W_ABS, OFFSET_ARCH),
            jump(BPF_JEQ_K, AUDIT_ARCH.unwrap_or(0), 1, 0),
            statement(BPF_RET_K, RET_KILL_PROCESS),
            statement(BPF_LD_W_ABS, OFFSET_NR),
        ];
        if let Some(bit) = X32_SYSCALL_BIT {
            program.push(jump(BPF_JGE_K, bit, 0, 1));
            program.push(statement(BPF_RET_K, eperm));
        }
        let mut denied: Vec<libc::c_long> = DENIED.to_vec();
        if !pid_namespace {
            denied.extend([libc::SYS_tkill, libc::SYS_tgkill]);
        }
        for &number in &denied {
            program.push(jump(BPF_JEQ_K, number as u32, 0, 1));
            program.push(statement(BPF_RET_K, eperm));
        }
        // Each block: if the number matches, look at the first argument; every path returns.
        let mut argument_rule = |number: libc::c_long, test: libc::sock_filter, pass_on_true| {
            let (on_true, on_false) = if pass_on_true {
                (RET_ALLOW, eperm)
            } else {
                (eperm, RET_ALLOW)
            };
            program.extend([
                jump(BPF_JEQ_K, number as u32, 0, 4),
                statement(BPF_LD_W_ABS, OFFSET_ARG0_LOW),
                test,
                statement(BPF_RET_K, on_true),
                statement(BPF_RET_K, on_false),
            ]);
        };
        let unix = jump(BPF_JEQ_K, libc::AF_UNIX as u32, 0, 1);
        argument_rule(libc::SYS_socket, unix, true);
        let new_namespace = jump(BPF_JSET_K, NAMESPACE_FLAGS, 0, 1);
        argument_rule(libc::SYS_clone, new_namespace, false);
        if !pid_namespace {
            // pid 0: the program's own process group, the run's own since `setsid`.
            argument_rule(libc::SYS_kill, jump(BPF_JEQ_K, 0, 0, 1), true);
        }
        program.extend([
            jump(BPF_JEQ_K, libc::SYS_clone3 as u32, 0, 1),
            statement(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32),
            statement(BPF_RET_K, RET_ALLOW),
        ]);
        SeccompFilter { program }
    }

    /// Installs the filter on the calling thread (the forked child, single-threaded).
    ///
    /// # Safety
    /// Needs `PR_SET_NO_NEW_PRIVS` (or `CAP_SYS_ADMIN`); async-signal-safe (no allocation).
    pub unsafe fn install(&self) -> io::Result<()> {
        if AUDIT_ARCH.is_none() {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let program = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
        let pointer = &program as *const libc::sock_fprog as libc::c_ulong;
        if libc::prctl(libc::PR_SET_SECCOMP, mode, pointer, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic-BPF program on one system call, as the kernel would.
    fn verdict(filter: &SeccompFilter, arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut pc = 0usize;
        let mut accumulator = 0u32;
        loop {
            let op = filter.program[pc];
            match op.code {
                BPF_LD_W_ABS => {
                    accumulator = match op.k {
                        OFFSET_NR => nr,
                        OFFSET_ARCH => arch,
                        OFFSET_ARG0_LOW => arg0,
                        other => panic!("unexpected load offset {other}"),
                    };
                    pc += 1;
                }
                BPF_RET_K => return op.k,
                code => {
                    let taken = match code {
                        BPF_JEQ_K => accumulator == op.k,
                        BPF_JGE_K => accumulator >= op.k,
                        BPF_JSET_K => accumulator & op.k != 0,
                        other => panic!("unexpected opcode {other:#x}"),
                    };
                    pc += 1 + usize::from(if taken { op.jt } else { op.jf });
                }
            }
        }
    }

    #[test]
    fn the_filter_denies_what_it_lists_and_allows_the_rest() {
        let filter = SeccompFilter::new(true);
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let call = |nr: libc::c_long, arg0: i32| {
            verdict(&filter, AUDIT_ARCH.unwrap_or(0), nr as u32, arg0 as u32)
        };
        assert_eq!(call(libc::SYS_ptrace, 0), eperm);
        assert_eq!(call(libc::SYS_mount, 0), eperm);
        assert_eq!(call(libc::SYS_unshare, 0), eperm);
        assert_eq!(call(libc::SYS_socket, libc::AF_INET), eperm);
        assert_eq!(call(libc::SYS_socket, libc::AF_PACKET), eperm);
        assert_eq!(call(libc::SYS_socket, libc::AF_UNIX), RET_ALLOW);
        assert_eq!(call(libc::SYS_clone, libc::SIGCHLD), RET_ALLOW);
        assert_eq!(
            call(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD),
            eperm
        );
        assert_eq!(call(libc::SYS_clone3, 0), RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(call(libc::SYS_read, 0), RET_ALLOW);
        // Signals are left to the PID namespace.
        assert_eq!(call(libc::SYS_kill, -1), RET_ALLOW);
        assert_eq!(verdict(&filter, 0x4000_0003, 1, 0), RET_KILL_PROCESS);
    }

    #[test]
    fn without_a_pid_namespace_only_the_own_group_may_be_signalled() {
        let filter = SeccompFilter::new(false);
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let call = |nr: libc::c_long, arg0: i32| {
            verdict(&filter, AUDIT_ARCH.unwrap_or(0), nr as u32, arg0 as u32)
        };
        assert_eq!(call(libc::SYS_kill, 0), RET_ALLOW);
        assert_eq!(call(libc::SYS_kill, -1), eperm);
        assert_eq!(call(libc::SYS_kill, 1234), eperm);
        assert_eq!(call(libc::SYS_tgkill, 1234), eperm);
        assert_eq!(call(libc::SYS_write, 1), RET_ALLOW);
    }
}
