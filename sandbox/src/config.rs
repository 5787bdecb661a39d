//! The sandbox's settings: its limits and isolation layers (the recipes' `tool` table).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::outcome::SandboxError;
use crate::output::OUTPUT_TRUNCATION_CHARS;

/// What the program sees of the host file system by default (besides the interpreter).
const DEFAULT_READABLE_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
];

/// Limits and isolation of the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Wall-clock limit of one snippet, interpreter start-up included. The reference uses 5 s.
    pub timeout_ms: u64,
    /// Address space of each process (`RLIMIT_AS`): 1 GiB. Allocations past it raise MemoryError.
    pub memory_bytes: u64,
    /// CPU time of each process (`RLIMIT_CPU` soft limit; the hard limit is one second more): 6 s,
    /// a backstop behind the wall-clock timeout.
    pub cpu_seconds: u64,
    /// Processes and threads the sandbox's uid may own (`RLIMIT_NPROC`): 16. Only in force when
    /// the program does not run as root (see `switch_user`).
    pub max_processes: u64,
    /// Largest file the program may write (`RLIMIT_FSIZE`): 16 MiB.
    pub max_file_bytes: u64,
    /// Open file descriptors per process (`RLIMIT_NOFILE`): 256.
    pub max_open_files: u64,
    /// Bytes read from each of stdout and stderr; past them the program is killed: 1 MiB.
    pub max_output_bytes: usize,
    /// Characters of an output the model sees (first half, "...", last half): 400, as the reference.
    pub output_chars: usize,
    /// The interpreter: a name looked up in `PATH` or a path. "python3".
    pub python: String,
    /// Where the per-run work directories are created; `None`: the system temporary directory.
    /// With a mount namespace the program's work directory is a tmpfs mounted over it instead.
    pub temp_root: Option<PathBuf>,
    /// Size of the work directory's tmpfs (mount namespace only): 64 MiB. Counts as memory.
    pub work_dir_bytes: u64,
    /// The only host paths the program sees (mount namespace only), read-only, besides the
    /// interpreter's own directories, a few devices and its work directory: system libraries
    /// and the `/etc` files the dynamic linker and Python read. Missing paths are skipped.
    pub readable_paths: Vec<PathBuf>,
    /// The program's environment, besides `HOME` and `TMPDIR` (the work directory) and
    /// `PYTHONHASHSEED`. Default: one thread for OpenMP/OpenBLAS/MKL, so that numpy neither
    /// oversubscribes the cores when many snippets run at once nor reserves per-core buffers
    /// that break the address-space limit.
    pub env: Vec<(String, String)>,
    /// `PYTHONHASHSEED`: Some(0) makes set and dict orders (and so outputs) reproducible. Since
    /// `-E` would ignore it, a seed runs `python -s -P -B` in a cleared environment instead of
    /// `python -I -B`; `None` runs `-I` with a random seed.
    pub hash_seed: Option<u32>,
    /// Install the prelude's audit hook (refuses writes outside the work directory, other
    /// programs and sockets at the Python level; best effort, see SANDBOX.md). Default true.
    pub audit_hook: bool,
    /// New mount (allowlist file system), network, PID, IPC and UTS namespaces: as root
    /// directly, otherwise inside a new user namespace.
    pub namespaces: bool,
    /// The seccomp filter (`sandbox/src/seccomp.rs`): no ptrace, mounts, namespaces, keyrings,
    /// bpf, perf, non-Unix sockets, signals outside the run.
    pub seccomp: bool,
    /// Run even when a layer asked for above is unavailable here (logged as a warning whenever a
    /// sandbox is built); by default such a sandbox refuses to start and names the layer.
    pub allow_weaker_isolation: bool,
    /// When root: run as a fresh unprivileged uid, so that `RLIMIT_NPROC` applies and root-owned
    /// files cannot be changed.
    pub switch_user: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let one_thread = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"];
        SandboxConfig {
            timeout_ms: 5000,
            memory_bytes: 1 << 30,
            cpu_seconds: 6,
            max_processes: 16,
            max_file_bytes: 16 << 20,
            max_open_files: 256,
            max_output_bytes: 1 << 20,
            output_chars: OUTPUT_TRUNCATION_CHARS,
            python: "python3".to_string(),
            temp_root: None,
            work_dir_bytes: 64 << 20,
            readable_paths: DEFAULT_READABLE_PATHS.iter().map(PathBuf::from).collect(),
            env: one_thread
                .iter()
                .map(|name| (name.to_string(), "1".to_string()))
                .collect(),
            hash_seed: Some(0),
            audit_hook: true,
            namespaces: true,
            seccomp: true,
            allow_weaker_isolation: false,
            switch_user: true,
        }
    }
}

impl SandboxConfig {
    /// Checks that the limits are in range.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let positive = [
            ("timeout_ms", self.timeout_ms),
            ("cpu_seconds", self.cpu_seconds),
            ("max_processes", self.max_processes),
            ("max_open_files", self.max_open_files),
            ("max_output_bytes", self.max_output_bytes as u64),
            ("output_chars", self.output_chars as u64),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(SandboxError::Config {
                    field,
                    reason: "must be positive".to_string(),
                });
            }
        }
        if self.memory_bytes < 64 << 20 {
            let reason = format!(
                "{} bytes is too small to start Python (64 MiB at least)",
                self.memory_bytes
            );
            return Err(SandboxError::Config {
                field: "memory_bytes",
                reason,
            });
        }
        Ok(())
    }
}
