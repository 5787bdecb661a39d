//! A Python sandbox for tool-integrated reasoning: each snippet runs in a fresh interpreter in
//! a fresh temporary directory, under the limits of [`SandboxConfig`] and the isolation layers of
//! [`super::isolation`], and comes back as the short text the Qwen2.5-Math evaluation shows the
//! model (stdout, or the last traceback line; "Timeout Error" past the deadline; 400 characters
//! at most). What is and is not isolated is written down in `sandbox/SANDBOX.md`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use super::config::SandboxConfig;
use super::isolation::{self, ChildPlan, Isolation, Limit, RECORD_LEN};
use super::layers;
use super::mounts::{self, RootPlan};
pub use super::outcome::{ExecutionResult, ExecutionStatus, SandboxError};
use super::output::{self, DONE_MESSAGE, TIMEOUT_MESSAGE};
use super::pipes::{Exchange, Stop, REPORT, STDERR, STDOUT};
use super::seccomp::SeccompFilter;
use super::uid_pool::{self, UidLease};
use super::userns::IdMaps;

/// The Python prelude that runs every snippet the way the reference executor does.
const PRELUDE: &str = include_str!("prelude.py");

/// Reports the interpreter's location, so that the sandbox can run it directly (a pyenv shim
/// needs an environment the sandbox does not give).
const PROBE: &str = "import sys, json; print(json.dumps([sys.executable, sys.prefix, \
                     sys.base_prefix, sys.version_info[0], sys.version_info[1]]))";

/// How long a killed program's processes get to disappear before `run` gives up waiting.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a program that closed its pipes may take to exit (its namespace to be torn down).
const TEARDOWN_GRACE: Duration = Duration::from_millis(500);
/// Bytes of the report pipe read at most (the prelude writes a short JSON object).
const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Bytes of stderr kept in an [`ExecutionResult`].
const KEPT_STDERR_BYTES: usize = 4096;

/// The interpreter the sandbox runs, located once.
#[derive(Debug, Clone)]
struct Interpreter {
    executable: PathBuf,
    /// Its prefix, base prefix and the executable's directory (canonical).
    directories: Vec<PathBuf>,
    /// An unprivileged uid can reach the executable and its prefixes.
    reachable: bool,
    /// ... in the allowlist view, where the directories above the interpreter's are synthetic.
    reachable_when_mounted: bool,
    version: (u32, u32),
}

/// Runs Python snippets in isolation; cheap to share between threads (`&self` everywhere).
#[derive(Debug)]
pub struct PythonSandbox {
    config: SandboxConfig,
    interpreter: Interpreter,
    is_root: bool,
    warned_weaker_isolation: AtomicBool,
}

impl PythonSandbox {
    /// Checks the config and locates the interpreter (it is run once to report its path).
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        config.validate()?;
        let interpreter = locate_interpreter(&config.python)?;
        // SAFETY: geteuid has no preconditions.
        let is_root = unsafe { libc::geteuid() } == 0;
        let sandbox = PythonSandbox {
            config,
            interpreter,
            is_root,
            warned_weaker_isolation: AtomicBool::new(false),
        };
        let missing = layers::missing_layers(&sandbox.config, is_root, &sandbox.probe_isolation()?);
        if !missing.is_empty() {
            let missing = missing.join("; ");
            if !sandbox.config.allow_weaker_isolation {
                return Err(SandboxError::WeakerIsolation { missing });
            }
            tracing::warn!(
                "python sandbox: running with weaker isolation (allow_weaker_isolation): {missing}"
            );
            sandbox
                .warned_weaker_isolation
                .store(true, Ordering::Relaxed);
        }
        Ok(sandbox)
    }

    /// Whether this process runs as root (namespaces directly, a fresh uid per run).
    pub fn is_root(&self) -> bool {
        self.is_root
    }

    /// The config this sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Runs one snippet. `Err` only when the sandbox itself failed; whatever the snippet does
    /// (raise, loop, allocate, print, fork) comes back as an [`ExecutionResult`].
    pub fn run(&self, code: &str) -> Result<ExecutionResult, SandboxError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.timeout_ms);
        let lease = (self.is_root && self.config.switch_user).then(UidLease::acquire);
        let uid = lease.as_ref().map(|lease| lease.uid);
        let root = self
            .config
            .temp_root
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let workdir_error = |source| SandboxError::WorkDir {
            dir: root.clone(),
            source,
        };
        let workdir = tempfile::Builder::new()
            .prefix("mathrl-sandbox-")
            .tempdir_in(&root)
            .map_err(workdir_error)?;
        let workdir_path = workdir.path().canonicalize().map_err(workdir_error)?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&workdir_path, Some(uid), Some(uid)).map_err(workdir_error)?;
        }
        let (mut child, report) = self
            .spawn(&workdir_path, uid)
            .map_err(|error| match error {
                Spawned::WorkDir(source) => workdir_error(source),
                Spawned::Weaker(missing) => SandboxError::WeakerIsolation { missing },
                Spawned::Spawn(source) => SandboxError::Spawn {
                    executable: self.interpreter.executable.clone(),
                    source,
                },
            })?;
        let pid = child.id() as i32;
        let finished = self
            .wait_for(&mut child, report, code, deadline, uid)
            .map_err(|source| {
                // The pipe error is what the caller needs; the kill is best effort.
                let _ = terminate(&mut child, false);
                SandboxError::Pipe { pid, source }
            })?;
        drop(workdir);
        drop(lease);
        let isolation = finished.isolation.unwrap_or_default();
        self.warn_if_weaker(&isolation);
        let captured = &finished.captured;
        let (status, output) = classify(
            finished.stop,
            captured,
            finished.exit,
            self.config.output_chars,
        );
        let stderr = &captured[STDERR][..captured[STDERR].len().min(KEPT_STDERR_BYTES)];
        Ok(ExecutionResult {
            output,
            status,
            elapsed_ms: started.elapsed().as_millis() as u64,
            isolation,
            process_group: pid,
            stderr: String::from_utf8_lossy(stderr).into_owned(),
        })
    }

    /// Starts the prelude in `workdir`, confined by the plan of this config; returns the child
    /// and the read end of its report pipe.
    fn spawn(&self, workdir: &Path, uid: Option<u32>) -> Result<(Child, OwnedFd), Spawned> {
        let (report_read, report_write) = report_pipe().map_err(Spawned::WorkDir)?;
        let mounts = RootPlan::new(
            workdir,
            &self.config.readable_paths,
            &self.interpreter.directories,
            self.config.work_dir_bytes,
            uid,
        )
        .map_err(Spawned::WorkDir)?;
        let workdir_c = CString::new(workdir.as_os_str().as_bytes()).map_err(|error| {
            Spawned::WorkDir(io::Error::new(io::ErrorKind::InvalidInput, error))
        })?;
        let seccomp = self
            .config
            .seccomp
            .then(|| [SeccompFilter::new(false), SeccompFilter::new(true)]);
        let plan = ChildPlan {
            workdir: workdir_c,
            namespaces: self.config.namespaces,
            user_namespace: (!self.is_root).then(IdMaps::own),
            uid,
            interpreter_unreachable: !self.interpreter.reachable,
            reachable_when_mounted: self.interpreter.reachable_when_mounted,
            mounts,
            limits: self.limits(),
            seccomp,
            report_fd: report_write.as_raw_fd(),
            required: if self.config.allow_weaker_isolation {
                0
            } else {
                isolation::required_bits(
                    self.config.namespaces,
                    !self.is_root,
                    self.config.seccomp,
                    uid.is_some(),
                )
            },
        };
        let mut command = self.command(workdir);
        // SAFETY: `apply` makes only async-signal-safe calls on data prepared before the fork.
        unsafe { command.pre_exec(move || plan.apply()) };
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                drop(command);
                drop(report_write);
                return Err(self.refused_or(error, &report_read, uid));
            }
        };
        // `command` (holding the plan) and the write end close here: only the child holds it.
        Ok((child, report_read))
    }

    /// Feeds the program, reads it until it ends, is stopped, or passes the deadline, and makes
    /// sure none of its processes is left.
    fn wait_for(
        &self,
        child: &mut Child,
        report: OwnedFd,
        code: &str,
        deadline: Instant,
        uid: Option<u32>,
    ) -> io::Result<Finished> {
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three standard streams were configured as pipes");
        };
        let output_cap = self.config.max_output_bytes;
        let caps = [output_cap, output_cap, MAX_REPORT_BYTES];
        let mut exchange = Exchange::new(stdin, stdout, stderr, report, caps)?;
        let mut stop = exchange.run(code.as_bytes(), deadline)?;
        let isolation =
            Isolation::from_record(&exchange.captured[REPORT], uid, self.config.audit_hook);
        let pid_namespace = isolation.is_some_and(|isolation| isolation.pid_namespace);
        let exit = match stop {
            // The supervisor exits once every process of the namespace is gone; tearing the
            // namespace down is not the program's time, hence the grace after the deadline.
            None if pid_namespace => {
                wait_until(child, deadline.max(Instant::now() + TEARDOWN_GRACE))?
            }
            None => {
                kill_group(child.id() as i32);
                Some(child.wait()?)
            }
            Some(_) => None,
        };
        let exit = match exit {
            Some(exit) => exit,
            None => {
                stop.get_or_insert(Stop::Deadline);
                let exit = terminate(child, pid_namespace);
                exchange.drain(Instant::now() + KILL_GRACE)?;
                exit?
            }
        };
        if let (Some(uid), false) = (uid, pid_namespace) {
            uid_pool::kill_all_of_uid(uid);
        }
        Ok(Finished {
            stop,
            captured: exchange.captured,
            exit,
            isolation,
        })
    }

    /// The isolation a run gets here, found by running an empty snippet.
    pub fn probe_isolation(&self) -> Result<Isolation, SandboxError> {
        Ok(self.run("print(0)")?.isolation)
    }

    /// Every isolation layer with its state on this machine and why a missing one is missing.
    pub fn layer_statuses(&self) -> Result<Vec<layers::LayerStatus>, SandboxError> {
        let isolation = self.probe_isolation()?;
        Ok(layers::layer_statuses(
            &self.config,
            self.is_root,
            &isolation,
        ))
    }

    fn command(&self, workdir: &Path) -> Command {
        let mut command = Command::new(&self.interpreter.executable);
        match self.config.hash_seed {
            Some(seed) => {
                command.args(["-s", "-B"]);
                if self.interpreter.version >= (3, 11) {
                    command.arg("-P");
                }
                command.env_clear().env("PYTHONHASHSEED", seed.to_string());
            }
            None => {
                command.args(["-I", "-B"]).env_clear();
            }
        }
        let audit = if self.config.audit_hook {
            "audit=1"
        } else {
            "audit=0"
        };
        command
            .args(["-c", PRELUDE, audit])
            .envs(self.config.env.iter().map(|(name, value)| (name, value)))
            .env("HOME", workdir)
            .env("TMPDIR", workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn limits(&self) -> Vec<Limit> {
        let config = &self.config;
        vec![
            (libc::RLIMIT_AS, config.memory_bytes, config.memory_bytes),
            (libc::RLIMIT_CPU, config.cpu_seconds, config.cpu_seconds + 1),
            (
                libc::RLIMIT_NPROC,
                config.max_processes,
                config.max_processes,
            ),
            (
                libc::RLIMIT_FSIZE,
                config.max_file_bytes,
                config.max_file_bytes,
            ),
            (
                libc::RLIMIT_NOFILE,
                config.max_open_files,
                config.max_open_files,
            ),
            (libc::RLIMIT_CORE, 0, 0),
        ]
    }

    /// Logs once when a layer the config asked for could not be applied on this platform.
    fn warn_if_weaker(&self, isolation: &Isolation) {
        if !layers::missing_layers(&self.config, self.is_root, isolation).is_empty()
            && !self.warned_weaker_isolation.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                ?isolation,
                "python sandbox: some isolation layers are unavailable"
            );
        }
    }
}

impl PythonSandbox {
    /// A failed start: the missing layers when the child refused to run with weaker isolation
    /// (it wrote its record first), or the start's own error.
    fn refused_or(&self, error: io::Error, report: &OwnedFd, uid: Option<u32>) -> Spawned {
        let mut record = [0u8; RECORD_LEN];
        // SAFETY: a non-blocking read into a buffer we own; the child wrote before it exited.
        let read = unsafe {
            let fd = report.as_raw_fd();
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
            libc::read(fd, record.as_mut_ptr().cast(), RECORD_LEN)
        };
        let isolation = (read == RECORD_LEN as isize)
            .then(|| Isolation::from_record(&record, uid, self.config.audit_hook))
            .flatten();
        if let Some(isolation) = isolation {
            let missing = layers::missing_layers(&self.config, self.is_root, &isolation);
            if !missing.is_empty() {
                return Spawned::Weaker(missing.join("; "));
            }
        }
        Spawned::Spawn(error)
    }
}

/// Why a program could not be started.
enum Spawned {
    /// A layer the config asks for is missing, and weaker isolation is not allowed.
    Weaker(String),
    /// Preparing its directory, pipe or mounts failed.
    WorkDir(io::Error),
    /// The spawn itself (or a step of the confinement) failed.
    Spawn(io::Error),
}

/// A program that ended, with everything read from it.
struct Finished {
    stop: Option<Stop>,
    captured: [Vec<u8>; 3],
    exit: ExitStatus,
    isolation: Option<Isolation>,
}

/// The JSON object the prelude writes to fd 3.
#[derive(Debug, Deserialize)]
struct Report {
    ok: bool,
    error: String,
    #[serde(default)]
    cpu_limit: bool,
}

/// The status and model-visible output of a finished run.
fn classify(
    stop: Option<Stop>,
    captured: &[Vec<u8>; 3],
    exit: ExitStatus,
    output_chars: usize,
) -> (ExecutionStatus, String) {
    let stdout = String::from_utf8_lossy(&captured[STDOUT]);
    match stop {
        Some(Stop::Deadline) => return (ExecutionStatus::Timeout, TIMEOUT_MESSAGE.to_string()),
        Some(Stop::OutputLimit) => {
            let output = output::visible_output(&stdout, "Output Limit Error", output_chars);
            return (ExecutionStatus::OutputLimit, output);
        }
        None => {}
    }
    let report = captured[REPORT]
        .get(RECORD_LEN..)
        .and_then(|json| serde_json::from_slice::<Report>(json).ok());
    match report {
        Some(report) if report.cpu_limit => {
            (ExecutionStatus::CpuTimeLimit, TIMEOUT_MESSAGE.to_string())
        }
        Some(report) if report.ok => (
            ExecutionStatus::Success,
            output::visible_output(&stdout, DONE_MESSAGE, output_chars),
        ),
        Some(report) => {
            let status = if report.error.starts_with("MemoryError") {
                ExecutionStatus::MemoryExceeded
            } else {
                ExecutionStatus::Error
            };
            (
                status,
                output::visible_output("", &report.error, output_chars),
            )
        }
        None => crashed(exit, &String::from_utf8_lossy(&captured[STDERR])),
    }
}

/// A run that ended without the prelude's report.
fn crashed(exit: ExitStatus, stderr: &str) -> (ExecutionStatus, String) {
    if exit.signal() == Some(libc::SIGXCPU) {
        return (ExecutionStatus::CpuTimeLimit, TIMEOUT_MESSAGE.to_string());
    }
    if stderr.contains("MemoryError") {
        return (ExecutionStatus::MemoryExceeded, "MemoryError".to_string());
    }
    let how = match (exit.signal(), exit.code()) {
        (Some(signal), _) => format!("was killed by signal {signal}"),
        (None, Some(code)) => format!("exited with status {code}"),
        (None, None) => "ended".to_string(),
    };
    (
        ExecutionStatus::Crashed,
        format!("Error: the program {how} without a result"),
    )
}

/// Runs the interpreter once (with this process's environment, as a pyenv shim needs) to learn
/// its real executable, version and prefixes.
fn locate_interpreter(python: &str) -> Result<Interpreter, SandboxError> {
    let output = Command::new(python)
        .args(["-I", "-c", PROBE])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SandboxError::Interpreter {
            python: python.to_string(),
            source,
        })?;
    let probe_error = |detail: String| SandboxError::Probe {
        python: python.to_string(),
        status: output.status.to_string(),
        detail,
    };
    if !output.status.success() {
        return Err(probe_error(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    let (executable, prefix, base_prefix, major, minor): (PathBuf, PathBuf, PathBuf, u32, u32) =
        serde_json::from_slice(&output.stdout).map_err(|error| {
            probe_error(format!(
                "{error} in {:?}",
                String::from_utf8_lossy(&output.stdout)
            ))
        })?;
    let canonical = |path: &Path| {
        path.canonicalize()
            .map_err(|error| probe_error(format!("{}: {error}", path.display())))
    };
    let real_executable = canonical(&executable)?;
    let mut directories = vec![canonical(&prefix)?, canonical(&base_prefix)?];
    if let Some(bin) = real_executable.parent() {
        directories.push(bin.to_path_buf());
    }
    let paths = [&real_executable, &directories[0], &directories[1]];
    let reachable = paths
        .iter()
        .all(|path| mounts::reachable_in_view(path, &[]));
    let reachable_when_mounted = paths
        .iter()
        .all(|path| mounts::reachable_in_view(path, &directories));
    Ok(Interpreter {
        executable,
        directories,
        reachable,
        reachable_when_mounted,
        version: (major, minor),
    })
}

/// A close-on-exec pipe whose write end sits at fd 10 or above (never 3 itself, which `dup2`
/// onto 3 would leave close-on-exec).
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 and fcntl on descriptors created and owned right here.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        let read = OwnedFd::from_raw_fd(fds[0]);
        let low_write = OwnedFd::from_raw_fd(fds[1]);
        let write = libc::fcntl(low_write.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        if write < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((read, OwnedFd::from_raw_fd(write)))
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: signals a process group this run created; ESRCH (already gone) is fine.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// Polls for the child's exit until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Ends a running program and reaps it. With a PID namespace the supervisor is asked (SIGTERM)
/// to kill the namespace and exits once it is gone; otherwise, or if it does not exit within
/// the grace period, the whole process group is killed.
fn terminate(child: &mut Child, pid_namespace: bool) -> io::Result<ExitStatus> {
    let pid = child.id() as i32;
    if pid_namespace {
        // SAFETY: signals our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if let Some(status) = wait_until(child, Instant::now() + KILL_GRACE)? {
            return Ok(status);
        }
    }
    kill_group(pid);
    child.wait()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> Vec<u8> {
        let mut bytes = vec![0; RECORD_LEN];
        bytes[0] = crate::isolation::RECORD_TAG;
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn success_shows_stdout_or_done() {
        let captured = [
            b"2\n".to_vec(),
            vec![],
            report(r#"{"ok": true, "error": "Done"}"#),
        ];
        assert_eq!(
            classify(None, &captured, exited(0), 400),
            (ExecutionStatus::Success, "2".to_string())
        );
        let silent = [
            b"\n".to_vec(),
            vec![],
            report(r#"{"ok": true, "error": "Done"}"#),
        ];
        assert_eq!(classify(None, &silent, exited(0), 400).1, "Done");
    }

    #[test]
    fn errors_drop_stdout_and_memory_errors_are_told_apart() {
        let json = r#"{"ok": false, "error": "ZeroDivisionError: division by zero"}"#;
        let captured = [b"partial".to_vec(), vec![], report(json)];
        assert_eq!(
            classify(None, &captured, exited(0), 400),
            (
                ExecutionStatus::Error,
                "ZeroDivisionError: division by zero".to_string()
            )
        );
        let memory = [
            vec![],
            vec![],
            report(r#"{"ok": false, "error": "MemoryError"}"#),
        ];
        assert_eq!(
            classify(None, &memory, exited(0), 400).0,
            ExecutionStatus::MemoryExceeded
        );
    }

    #[test]
    fn stops_and_crashes_have_their_own_texts() {
        let empty = [vec![], vec![], vec![]];
        assert_eq!(
            classify(Some(Stop::Deadline), &empty, exited(0), 400),
            (ExecutionStatus::Timeout, "Timeout Error".to_string())
        );
        let flood = [b"x".repeat(1000), vec![], vec![]];
        let (status, output) = classify(Some(Stop::OutputLimit), &flood, exited(0), 400);
        assert_eq!(status, ExecutionStatus::OutputLimit);
        assert_eq!(output, format!("{}...{}", "x".repeat(200), "x".repeat(200)));
        let killed = ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(
            classify(None, &empty, killed, 400),
            (
                ExecutionStatus::Crashed,
                "Error: the program was killed by signal 11 without a result".to_string()
            )
        );
        let cpu = ExitStatus::from_raw(libc::SIGXCPU);
        assert_eq!(
            classify(None, &empty, cpu, 400).0,
            ExecutionStatus::CpuTimeLimit
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let config = SandboxConfig {
            timeout_ms: 0,
            ..SandboxConfig::default()
        };
        let error = config.validate().expect_err("zero timeout");
        assert!(error.to_string().contains("timeout_ms"), "{error}");
        let config = SandboxConfig {
            memory_bytes: 1024,
            ..SandboxConfig::default()
        };
        assert!(config
            .validate()
            .expect_err("tiny memory")
            .to_string()
            .contains("memory_bytes"));
    }
}
