//! Which isolation layers a run got, which the config asked for and did not get, and why: the
//! basis of the refusal to start with weaker isolation and of `mathrl --recipe sandbox-check`.

use std::io;
use std::path::Path;

use serde::Serialize;

use super::isolation::Isolation;
use super::sandbox::SandboxConfig;

/// `statfs` magic of a cgroup v2 mount.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One layer of the sandbox on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    /// The layer's name.
    pub layer: &'static str,
    /// It applied to the probe run.
    pub active: bool,
    /// The config asks for it (a missing wanted layer refuses the sandbox).
    pub wanted: bool,
    /// Why it is missing, or what it does.
    pub detail: String,
}

/// Why a namespace layer is missing, from the errno of the failed `unshare`.
fn namespace_reason(isolation: &Isolation, is_root: bool) -> String {
    match isolation.namespace_errno {
        0 => "not created".to_string(),
        errno @ (libc::EPERM | libc::ENOSPC | libc::EACCES) if !is_root => format!(
            "unshare(CLONE_NEWUSER | ...) failed: {}; unprivileged user namespaces are disabled \
             here (user.max_user_namespaces = 0, kernel.unprivileged_userns_clone = 0, an \
             AppArmor restriction, or a container's seccomp profile)",
            io::Error::from_raw_os_error(errno)
        ),
        errno => format!("unshare failed: {}", io::Error::from_raw_os_error(errno)),
    }
}

fn mount_reason(isolation: &Isolation, is_root: bool) -> String {
    if !isolation.mount_namespace {
        return namespace_reason(isolation, is_root);
    }
    match isolation.mount_errno {
        0 => "not applied".to_string(),
        errno => format!(
            "a mount step failed: {}",
            io::Error::from_raw_os_error(errno)
        ),
    }
}

/// Every layer with its state, for `sandbox-check`.
pub fn layer_statuses(
    config: &SandboxConfig,
    is_root: bool,
    isolation: &Isolation,
) -> Vec<LayerStatus> {
    let namespaces = config.namespaces;
    let ns = |active: bool, what: &str| {
        if active {
            what.to_string()
        } else if !namespaces {
            "off in the config (namespaces = false)".to_string()
        } else {
            namespace_reason(isolation, is_root)
        }
    };
    let fs = |active: bool, what: &str| {
        if active {
            what.to_string()
        } else if !namespaces {
            "off in the config (namespaces = false)".to_string()
        } else {
            mount_reason(isolation, is_root)
        }
    };
    let mut rows = vec![
        LayerStatus {
            layer: "user namespace",
            active: isolation.user_namespace,
            wanted: namespaces && !is_root,
            detail: if is_root {
                "not needed: running as root".to_string()
            } else {
                ns(
                    isolation.user_namespace,
                    "own uid mapped to itself; no capability after exec",
                )
            },
        },
        LayerStatus {
            layer: "network namespace",
            active: isolation.network_namespace,
            wanted: namespaces,
            detail: ns(
                isolation.network_namespace,
                "no network: only a down loopback",
            ),
        },
        LayerStatus {
            layer: "pid namespace",
            active: isolation.pid_namespace,
            wanted: namespaces,
            detail: ns(
                isolation.pid_namespace,
                "only the run's processes are visible and signallable; all die with it",
            ),
        },
        LayerStatus {
            layer: "ipc/uts namespaces",
            active: isolation.ipc_uts_namespaces,
            wanted: namespaces,
            detail: ns(
                isolation.ipc_uts_namespaces,
                "no SysV IPC or host name shared",
            ),
        },
        LayerStatus {
            layer: "allowlist file system",
            active: isolation.allowlist_root && isolation.read_only_root,
            wanted: namespaces,
            detail: fs(
                isolation.allowlist_root && isolation.read_only_root,
                "read-only view of readable_paths and the interpreter only",
            ),
        },
        LayerStatus {
            layer: "private /proc",
            active: isolation.private_proc,
            wanted: namespaces,
            detail: fs(isolation.private_proc, "no other process's /proc entries"),
        },
        LayerStatus {
            layer: "work directory in memory",
            active: isolation.work_dir_in_memory,
            wanted: namespaces,
            detail: fs(
                isolation.work_dir_in_memory,
                "private size-limited tmpfs, noexec",
            ),
        },
        LayerStatus {
            layer: "seccomp filter",
            active: isolation.seccomp,
            wanted: config.seccomp,
            detail: match (isolation.seccomp, config.seccomp, isolation.seccomp_errno) {
                (true, _, _) => "ptrace, mounts, namespaces, keyrings, bpf, perf, non-Unix \
                                 sockets and outside signals refused"
                    .to_string(),
                (false, false, _) => "off in the config (seccomp = false)".to_string(),
                (false, true, errno) => format!(
                    "installing the filter failed: {}",
                    io::Error::from_raw_os_error(errno)
                ),
            },
        },
        LayerStatus {
            layer: "fresh uid per run",
            active: isolation.uid.is_some(),
            wanted: is_root && config.switch_user,
            detail: match (isolation.uid, is_root, config.switch_user) {
                (Some(uid), _, _) => format!("ran as uid {uid}"),
                (None, false, _) => "needs root; the program runs as the calling user".to_string(),
                (None, true, false) => "off in the config (switch_user = false)".to_string(),
                (None, true, true) => "the uid change failed".to_string(),
            },
        },
        LayerStatus {
            layer: "no new privileges",
            active: isolation.no_new_privileges,
            wanted: true,
            detail: "set-uid programs cannot raise privileges".to_string(),
        },
        LayerStatus {
            layer: "RLIMIT_NPROC",
            active: isolation.process_limit,
            wanted: false,
            detail: match (
                isolation.process_limit,
                isolation.user_namespace || isolation.uid.is_some(),
            ) {
                (true, true) => {
                    "in force per run (a user namespace or a fresh uid counts apart)".to_string()
                }
                (true, false) => {
                    "in force, but it counts every process of the calling user".to_string()
                }
                (false, _) => "not applied to root (switch_user = false)".to_string(),
            },
        },
        LayerStatus {
            layer: "audit hook",
            active: isolation.audit_hook,
            wanted: false,
            detail: "Python-level first line with clear messages; not a boundary".to_string(),
        },
    ];
    let (cgroup_active, cgroup_detail) = cgroup_status();
    rows.push(LayerStatus {
        layer: "cgroup v2 memory/pids",
        active: cgroup_active,
        wanted: false,
        detail: cgroup_detail,
    });
    rows
}

/// The wanted layers the run did not get, as "layer, layer: why", one entry per reason.
pub fn missing_layers(config: &SandboxConfig, is_root: bool, isolation: &Isolation) -> Vec<String> {
    let mut by_reason: Vec<(Vec<&'static str>, String)> = Vec::new();
    for row in layer_statuses(config, is_root, isolation) {
        if !row.wanted || row.active {
            continue;
        }
        match by_reason
            .iter_mut()
            .find(|(_, reason)| *reason == row.detail)
        {
            Some((layers, _)) => layers.push(row.layer),
            None => by_reason.push((vec![row.layer], row.detail)),
        }
    }
    by_reason
        .into_iter()
        .map(|(layers, reason)| format!("{}: {reason}", layers.join(", ")))
        .collect()
}

/// Whether per-run cgroup v2 limits could be used here. They are never applied yet: the
/// sandbox bounds memory per process (`RLIMIT_AS`) and processes per run (`RLIMIT_NPROC`).
fn cgroup_status() -> (bool, String) {
    let root = Path::new("/sys/fs/cgroup");
    let Ok(root_c) = std::ffi::CString::new("/sys/fs/cgroup") else {
        return (false, "unavailable".to_string());
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let is_cgroup2 = unsafe { libc::statfs(root_c.as_ptr(), &mut stat) } == 0
        && stat.f_type as i64 == CGROUP2_SUPER_MAGIC;
    if !is_cgroup2 {
        return (
            false,
            "unavailable: /sys/fs/cgroup is not a cgroup2 mount (cgroup v1 or hybrid layout); \
             memory is bounded per process by RLIMIT_AS only"
                .to_string(),
        );
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_default();
    let dir = root.join(own.trim_start_matches('/'));
    let writable = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        // SAFETY: access only reads the path.
        .map(|path| unsafe { libc::access(path.as_ptr(), libc::W_OK) } == 0)
        .unwrap_or(false);
    let state = if writable { "writable" } else { "not writable" };
    (
        false,
        format!(
            "not applied: {} is {state}, but per-run cgroups are not implemented yet; memory is \
             bounded per process by RLIMIT_AS only",
            dir.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_wanted_layer_is_named_with_its_errno() {
        let config = SandboxConfig::default();
        let isolation = Isolation {
            namespace_errno: libc::EPERM,
            seccomp: true,
            no_new_privileges: true,
            ..Isolation::default()
        };
        let missing = missing_layers(&config, false, &isolation);
        // One reason, every namespace layer named once before it.
        assert_eq!(missing.len(), 1, "{missing:?}");
        let layers = "user namespace, network namespace, pid namespace, ipc/uts namespaces, \
                      allowlist file system, private /proc, work directory in memory: ";
        let reason = "unshare(CLONE_NEWUSER | ...) failed: Operation not permitted";
        assert!(
            missing[0].starts_with(&format!("{layers}{reason}")),
            "{missing:?}"
        );
        assert!(!missing.iter().any(|m| m.starts_with("seccomp")));
        // Nothing wanted, nothing missing.
        let off = SandboxConfig {
            namespaces: false,
            seccomp: false,
            ..SandboxConfig::default()
        };
        assert!(missing_layers(&off, false, &isolation).is_empty());
    }
}
