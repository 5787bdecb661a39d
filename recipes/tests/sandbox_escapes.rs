//! Hostile programs against the TIR sandbox, through the built `mathrl --recipe python`, run as
//! `nobody` (the unprivileged case: user namespaces) and as root: one program per escape of
//! issue 18, each contained, and the "trainer" (the `mathrl` process) survives them all.
//!
//! The tests need root, to drop to `nobody` with `setpriv` and to wrap each run in its own PID
//! namespace (`unshare --pid --fork --mount-proc`): were the sandbox broken, `kill(-1)` by
//! `nobody` could then hit only this run's processes, and `ps` afterwards lists exactly the
//! processes the run left behind. Sessions and CI run as root; elsewhere they fail, saying why.
//! They fail too, loudly, where the sandbox cannot get its layers (it refuses to start).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// On the trainer's command line and in its environment: no program may read it.
const COOKIE: &str = "SECRET-COOKIE-4f2a";

/// Replaces the audit hook's closure cells through `gc`, so that it allows everything: what a
/// program can do from pure Python. The kernel layers must stop what follows.
const DISABLE_AUDIT_HOOK: &str = "import gc
for f in gc.get_objects():
    if type(f).__name__ == 'function' and f.__name__ == 'hook' and f.__closure__:
        for c in f.__closure__:
            v = c.cell_contents
            if callable(v) and getattr(v, '__name__', '') == 'inside':
                c.cell_contents = lambda path: True
            elif isinstance(v, set):
                c.cell_contents = set()
";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the recipes crate lies in the repository")
        .to_path_buf()
}

/// What one run of `mathrl --recipe python` gave.
struct Outcome {
    rows: Vec<Value>,
    /// The run's shell output: mathrl's stderr, its exit code, then `ps` of what was left.
    log: String,
}

/// Runs `programs` through the binary in a fresh PID namespace, as `nobody` or as root.
fn run_programs(dir: &Path, programs: &[String], as_nobody: bool, extra: &[&str]) -> Outcome {
    assert!(
        is_root(),
        "these tests drop to nobody with setpriv and need root (sessions and CI run as root)"
    );
    let input = dir.join("programs.jsonl");
    let output = dir.join("results.jsonl");
    let lines: Vec<String> = programs
        .iter()
        .map(|code| serde_json::json!({ "code": code }).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write programs");
    std::fs::set_permissions(&input, PermissionsExt::from_mode(0o644)).expect("chmod");
    let user = if as_nobody {
        "setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin"
    } else {
        "env"
    };
    // fd 7 is open in the trainer without close-on-exec: it must not reach the programs.
    let script = format!(
        "exec 7<{input}; {user} MATHRL_SECRET={COOKIE} {mathrl} --recipe python --input {input} --output {output} \
         --cookie {COOKIE} {extra} 2>&1; echo mathrl-exit=$?; sleep 0.3; ps -eo user,pid,comm",
        mathrl = env!("CARGO_BIN_EXE_mathrl"),
        input = input.display(),
        output = output.display(),
        extra = extra.join(" "),
    );
    let result = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    let log = String::from_utf8_lossy(&result.stdout).into_owned()
        + &String::from_utf8_lossy(&result.stderr);
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(&output) {
        file.read_to_string(&mut text).expect("read results");
    }
    let rows = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON result line"))
        .collect();
    Outcome { rows, log }
}

/// A temporary directory every user may write: the escape targets live here, on the host.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o777)).expect("chmod");
    dir
}

fn output(rows: &[Value], index: usize) -> &str {
    rows[index]["output"].as_str().expect("output is a string")
}

/// One program per escape of issue 18, writing below `dir` and connecting to `port` on the host.
fn escape_programs(dir: &Path, port: u16) -> Vec<String> {
    let target = |name: &str| dir.join(name).display().to_string();
    let repo = repository();
    let gold = repo.join("data/eval/gsm8k/test.jsonl");
    assert!(gold.exists(), "the gold file the program tries to read");
    vec![
        // 0: files outside the work directory through ctypes (below the audit hook).
        format!(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             a = libc.open(b'{}', 0o101, 0o644)\nb = libc.creat(b'{}', 0o644)\nprint(a, b)",
            target("ctypes-open"),
            target("ctypes-creat")
        ),
        // 1: and through sqlite3.
        format!(
            "import sqlite3\ncon = sqlite3.connect('{}')\ncon.execute('create table t(x)')\n\
             con.commit()\nprint('created')",
            target("escape.db")
        ),
        // 2: the audit hook switched off from pure Python, then a write outside.
        format!(
            "{DISABLE_AUDIT_HOOK}open('{}', 'w').write('x')\nprint('wrote')",
            target("after-gc")
        ),
        // 3: the hook off, a TCP connection to a port listening on the host.
        format!(
            "{DISABLE_AUDIT_HOOK}import socket\n\
             socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        ),
        // 4: a raw socket.
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
         print('raw')"
            .to_string(),
        // 5: SIGKILL the parent.
        "import os\nos.kill(os.getppid(), 9)\nprint('after')".to_string(),
        // 6: SIGKILL every process the program may signal.
        "import os\nos.kill(-1, 9)\nprint('after')".to_string(),
        // 7: SIGKILL every pid it can name.
        "import os\nhit = []\nfor pid in range(2, 1 << 16):\n    try:\n        os.kill(pid, 9)\n\
         \x20       hit.append(pid)\n    except OSError:\n        pass\nprint(hit)"
            .to_string(),
        // 8: the trainer's command line and environment through /proc.
        "import os\nfound = []\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n\
         \x20       for name in ('cmdline', 'environ'):\n            try:\n\
         \x20               data = open(f'/proc/{pid}/{name}', 'rb').read()\n\
         \x20           except OSError:\n                continue\n\
         \x20           if b'SECRET' in data:\n                found.append((pid, name))\n\
         print(found, os.getppid())"
            .to_string(),
        // 9: a child in its own session, meant to outlive the call.
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n\
         print('parent done')"
            .to_string(),
        // 10: gold answers, the repository, home directories.
        format!(
            "import os, glob\npaths = ['{}', '{}', '{}', '/home', '/root/.cargo', '/work']\n\
             print([p for p in paths if os.path.exists(p)], glob.glob('/work/*'))",
            gold.display(),
            repo.join("data/eval").display(),
            repo.display()
        ),
        // 11: descriptors the trainer inherited without close-on-exec (fd 7, see run_programs).
        "import os\nprint(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))".to_string(),
        // 12: the trainer is still running programs.
        "print('still here')".to_string(),
    ]
}

/// Every escape of issue 18, as `nobody` or as root.
fn escapes_are_contained(as_nobody: bool) {
    let dir = shared_dir();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a host port");
    let port = listener.local_addr().expect("address").port();
    let programs = escape_programs(dir.path(), port);
    let outcome = run_programs(dir.path(), &programs, as_nobody, &[]);
    let (rows, log) = (&outcome.rows, &outcome.log);
    assert!(
        log.contains("mathrl-exit=0"),
        "the trainer died or failed:\n{log}"
    );
    assert_eq!(rows.len(), programs.len(), "{log}");
    for name in ["ctypes-open", "ctypes-creat", "escape.db", "after-gc"] {
        assert!(
            !dir.path().join(name).exists(),
            "{name} was created on the host: {rows:?}"
        );
    }
    assert_eq!(output(rows, 0), "-1 -1");
    assert!(
        output(rows, 1).starts_with("sqlite3.OperationalError"),
        "{rows:?}"
    );
    // The bypass worked (no "[sandbox]" message): the mounts refused the write.
    let after_gc = output(rows, 2);
    assert!(
        after_gc.contains("Errno") && !after_gc.contains("[sandbox]"),
        "{after_gc}"
    );
    assert_eq!(
        output(rows, 3),
        "PermissionError: [Errno 1] Operation not permitted"
    );
    assert_eq!(
        output(rows, 4),
        "PermissionError: [Errno 1] Operation not permitted"
    );
    // getppid() is 0 in the PID namespace: kill(0) reaches only the program's own group, whose
    // leader is the namespace's init (which the kernel may shield from its own SIGKILL).
    assert!(
        rows[5]["status"] == "Crashed" || output(rows, 5) == "after",
        "{rows:?}"
    );
    // kill(-1) reaches only the namespace: no other process, or none but the caller.
    assert!(
        ["after", "ProcessLookupError: [Errno 3] No such process"].contains(&output(rows, 6)),
        "{rows:?}"
    );
    assert_eq!(output(rows, 7), "[]");
    assert_eq!(output(rows, 8), "[] 0");
    assert_eq!(output(rows, 9), "parent done");
    assert_eq!(output(rows, 10), "[] []");
    // 0-2, the report pipe 3, the prelude's /dev/null 4 and the listing's own 5; not 7.
    assert_eq!(output(rows, 11), "[0, 1, 2, 3, 4, 5]");
    assert_eq!(output(rows, 12), "still here");
    let (_, left) = log.split_once("mathrl-exit=0").expect("exit line");
    assert!(!left.contains("python"), "processes left behind:\n{left}");
    drop(listener);
}

#[test]
fn as_nobody_every_escape_is_contained_and_the_trainer_survives() {
    escapes_are_contained(true);
}

#[test]
fn as_root_every_escape_is_contained_and_the_trainer_survives() {
    escapes_are_contained(false);
}

/// The control: with the kernel layers off, the same programs do escape (so the containment
/// above is the layers' doing, not the programs' failing). The kill programs are left out: as
/// `nobody` without a PID namespace they would end the trainer itself.
#[test]
fn as_nobody_without_the_kernel_layers_the_escapes_are_real() {
    let dir = shared_dir();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a host port");
    let port = listener.local_addr().expect("address").port();
    let all = escape_programs(dir.path(), port);
    let programs: Vec<String> = [0, 1, 2, 3, 8, 10]
        .iter()
        .map(|&i| all[i].clone())
        .collect();
    // Layers the config does not ask for are not missing: no refusal, no warning.
    let weak = ["--set tool.namespaces=false", "--set tool.seccomp=false"];
    let outcome = run_programs(dir.path(), &programs, true, &weak);
    let (rows, log) = (&outcome.rows, &outcome.log);
    assert!(log.contains("mathrl-exit=0"), "{log}");
    for name in ["ctypes-open", "ctypes-creat", "escape.db", "after-gc"] {
        assert!(
            dir.path().join(name).exists(),
            "{name} not created: {rows:?}"
        );
    }
    assert_eq!(output(rows, 3), "connected");
    assert!(output(rows, 4).contains("'cmdline'"), "{rows:?}");
    assert!(output(rows, 5).contains("data/eval"), "{rows:?}");
    drop(listener);
}

#[test]
fn bad_input_lines_name_the_file_and_line() {
    let dir = shared_dir();
    let input = dir.path().join("programs.jsonl");
    std::fs::write(&input, "{\"code\": \"print(1)\"}\n{\"code\": 3}\n").expect("write");
    let result = Command::new(env!("CARGO_BIN_EXE_mathrl"))
        .args(["--recipe", "python", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .output()
        .expect("mathrl runs");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    let expected = format!("{}:2: `code` must be a string, got 3", input.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!dir.path().join("out.jsonl").exists());
}

/// Runs `args` of `mathrl` as nobody in a chroot (a recursive bind of `/`, so every path is
/// the same): the kernel refuses user namespaces in a chroot, the way a laptop or cluster
/// node that disables them would.
fn mathrl_without_user_namespaces(args: &str) -> String {
    assert!(
        is_root(),
        "this test needs root to chroot and drop to nobody"
    );
    let root = shared_dir();
    let script = format!(
        "mount --rbind / {root} && chroot {root} setpriv --reuid=65534 --regid=65534 \
         --clear-groups env -i PATH=/usr/bin:/bin {mathrl} {args} 2>&1; echo mathrl-exit=$?",
        root = root.path().display(),
        mathrl = env!("CARGO_BIN_EXE_mathrl"),
    );
    let result = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    String::from_utf8_lossy(&result.stdout).into_owned() + &String::from_utf8_lossy(&result.stderr)
}

#[test]
fn without_user_namespaces_tir_refuses_to_start_unless_allowed() {
    let check = mathrl_without_user_namespaces("--recipe sandbox-check");
    assert!(check.contains("mathrl-exit=0"), "{check}");
    let line = |name: &str| {
        check
            .lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let user = line("user namespace");
    assert!(
        user.contains("MISSING") && user.contains("Operation not permitted"),
        "{check}"
    );
    assert!(line("seccomp filter").contains("active"), "{check}");
    assert!(check.contains("TIR refuses to start"), "{check}");

    let dir = shared_dir();
    let input = dir.path().join("programs.jsonl");
    std::fs::write(&input, "{\"code\": \"print(6 * 7)\"}\n").expect("write");
    std::fs::set_permissions(&input, PermissionsExt::from_mode(0o644)).expect("chmod");
    let output = dir.path().join("out.jsonl");
    let args = format!(
        "--recipe python --input {} --output {}",
        input.display(),
        output.display()
    );
    let refused = mathrl_without_user_namespaces(&args);
    assert!(
        refused.contains("refuses to start: user namespace, network namespace, pid namespace")
            && refused.contains("allow_weaker_isolation"),
        "{refused}"
    );
    assert!(!output.exists());
    let allowed =
        mathrl_without_user_namespaces(&format!("{args} --set tool.allow_weaker_isolation=true"));
    assert!(allowed.contains("mathrl-exit=0"), "{allowed}");
    assert!(
        allowed.contains("running with weaker isolation"),
        "{allowed}"
    );
    let result = std::fs::read_to_string(&output).expect("results written");
    assert!(result.contains("\"output\":\"42\""), "{result}");
}
