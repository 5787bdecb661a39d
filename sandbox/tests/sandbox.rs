//! The Python sandbox against real snippets: outputs as the Qwen2.5-Math executor shows them,
//! every limit, the isolation layers, and no process left behind after any run.
//!
//! Needs `python3` on PATH (with sympy for one test). Tests of kernel-level layers (namespaces,
//! the unprivileged uid) run only where the sandbox reports them applied (as root on Linux) and
//! say so on stderr otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mathrl::generation::tool::extract_program;
use mathrl::generation::ToolExecutor;
use mathrl_sandbox::{
    ExecutionResult, ExecutionStatus, Isolation, PythonSandbox, SandboxConfig, SandboxExecutor,
};

fn sandbox_with(config: SandboxConfig) -> PythonSandbox {
    PythonSandbox::new(config).expect("python3 on PATH")
}

/// A sandbox with a short timeout, so that the suite stays fast.
fn sandbox() -> PythonSandbox {
    sandbox_with(SandboxConfig {
        timeout_ms: 2000,
        ..SandboxConfig::default()
    })
}

fn run(sandbox: &PythonSandbox, code: &str) -> ExecutionResult {
    let result = sandbox.run(code).expect("the sandbox itself works");
    assert_nothing_left(&result);
    result
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails if any process of the run's process group or of its uid is still alive (zombies
/// included). With a PID namespace this holds when `run` returns; without one, killed
/// processes may take a moment to be reaped by init.
fn assert_nothing_left(result: &ExecutionResult) {
    let patience = if result.isolation.pid_namespace {
        Duration::ZERO
    } else {
        Duration::from_secs(2)
    };
    let until = Instant::now() + patience;
    loop {
        let left = processes_of(result.process_group, result.isolation.uid);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < until,
            "processes left behind by {result:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids in process group `group` or owned by `uid`, read from /proc.
fn processes_of(group: i32, uid: Option<u32>) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|field| field.parse::<i32>().ok());
        let owner = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status
                    .lines()
                    .find(|line| line.starts_with("Uid:"))?
                    .to_string();
                line.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if pgrp == Some(group) || (uid.is_some() && owner == uid) {
            found.push(pid);
        }
    }
    found
}

fn isolation_here() -> Isolation {
    sandbox()
        .probe_isolation()
        .expect("the sandbox itself works")
}

#[test]
fn prints_are_the_output() {
    let result = run(&sandbox(), "print(1+1)");
    assert_eq!(result.output, "2");
    assert_eq!(result.status, ExecutionStatus::Success);
}

#[test]
fn last_expression_is_evaluated_and_earlier_prints_discarded_as_in_reference() {
    let sandbox = sandbox();
    assert_eq!(run(&sandbox, "print('hidden')\nx = 3\nx * 2").output, "6");
    // A silent program reports "Done"; a statement on the last line is evaluated, so it is a
    // SyntaxError in the reference too (and `while True: pass` therefore returns at once).
    assert_eq!(run(&sandbox, "import math\nprint('')").output, "Done");
    let statement = run(&sandbox, "while True: pass");
    assert_eq!(statement.output, "SyntaxError: invalid syntax");
    assert_eq!(
        run(&sandbox, "x = input()\nprint(x)").output,
        "RuntimeError"
    );
}

#[test]
fn an_exception_shows_the_last_traceback_line() {
    let result = run(&sandbox(), "print('partial')\nx = [1]\nprint(x[5])");
    assert_eq!(result.output, "IndexError: list index out of range");
    assert_eq!(result.status, ExecutionStatus::Error);
}

#[test]
fn long_outputs_are_truncated_as_in_reference() {
    let result = run(&sandbox(), "print('a' * 300 + 'b' * 300)");
    assert_eq!(
        result.output,
        format!("{}...{}", "a".repeat(200), "b".repeat(200))
    );
}

#[test]
fn an_infinite_loop_times_out() {
    let sandbox = sandbox_with(SandboxConfig {
        timeout_ms: 1000,
        ..SandboxConfig::default()
    });
    let result = run(&sandbox, "while True:\n    pass\nprint(1)");
    assert_eq!(result.status, ExecutionStatus::Timeout);
    assert_eq!(result.output, "Timeout Error");
    assert!(result.elapsed_ms >= 1000, "{}", result.elapsed_ms);
    assert!(
        result.elapsed_ms < 1000 + 1000,
        "slow to stop: {} ms",
        result.elapsed_ms
    );
}

#[test]
fn the_cpu_time_limit_stops_a_busy_program() {
    let config = SandboxConfig {
        cpu_seconds: 1,
        timeout_ms: 10_000,
        ..SandboxConfig::default()
    };
    let result = run(&sandbox_with(config), "while True:\n    pass\nprint(1)");
    assert_eq!(result.status, ExecutionStatus::CpuTimeLimit);
    assert_eq!(result.output, "Timeout Error");
    assert!(result.elapsed_ms < 10_000, "{}", result.elapsed_ms);
}

#[test]
fn a_huge_allocation_is_a_memory_error() {
    let result = run(&sandbox(), "x = bytearray(4 << 30)\nprint(len(x))");
    assert_eq!(result.status, ExecutionStatus::MemoryExceeded);
    assert_eq!(result.output, "MemoryError");
}

#[test]
fn an_endless_print_is_cut_at_the_output_cap() {
    let config = SandboxConfig {
        timeout_ms: 5000,
        ..SandboxConfig::default()
    };
    let result = run(&sandbox_with(config), "while True:\n    print('x' * 1000)");
    assert_eq!(result.status, ExecutionStatus::OutputLimit);
    assert!(
        result.output.chars().count() <= 403,
        "{}",
        result.output.len()
    );
    assert!(result.output.starts_with("xxx") && result.output.contains("..."));
    assert!(
        result.elapsed_ms < 5000,
        "stopped by the timeout, not the cap"
    );
}

#[test]
fn a_fork_bomb_is_bounded_and_leaves_nothing_behind() {
    let sandbox = sandbox();
    if !sandbox
        .probe_isolation()
        .expect("sandbox works")
        .process_limit
    {
        eprintln!("skipped: RLIMIT_NPROC is not in force (running as root without switch_user)");
        return;
    }
    let result = run(
        &sandbox,
        "import os\nwhile True:\n    os.fork()\nprint('unreachable')",
    );
    assert_eq!(result.status, ExecutionStatus::Error, "{result:?}");
    assert!(
        result.output.contains("Resource temporarily unavailable"),
        "{}",
        result.output
    );
}

fn evil_path() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!("/tmp/evil-{}-{nanos}", std::process::id())
}

#[test]
fn writing_outside_the_work_directory_is_refused() {
    let path = evil_path();
    let code = format!("open('{path}', 'w').write('x')\nprint('wrote')");
    let result = run(&sandbox(), &code);
    assert_eq!(result.status, ExecutionStatus::Error);
    assert!(
        result
            .output
            .starts_with("PermissionError: [sandbox] writing outside"),
        "{}",
        result.output
    );
    assert!(!std::path::Path::new(&path).exists());
    let inside = run(
        &sandbox(),
        "open('a.txt', 'w').write('hi')\nprint(open('a.txt').read())",
    );
    assert_eq!(inside.output, "hi");
}

#[test]
fn the_read_only_file_system_refuses_writes_without_the_audit_hook() {
    let config = SandboxConfig {
        audit_hook: false,
        ..SandboxConfig::default()
    };
    let sandbox = sandbox_with(config);
    if !sandbox
        .probe_isolation()
        .expect("sandbox works")
        .read_only_root
    {
        eprintln!("skipped: no mount namespace here (needs root and mount_setattr)");
        return;
    }
    let path = evil_path();
    let result = run(
        &sandbox,
        &format!("open('{path}', 'w').write('x')\nprint('wrote')"),
    );
    assert!(
        result.output.contains("Read-only file system"),
        "{}",
        result.output
    );
    assert!(!std::path::Path::new(&path).exists());
    let inside = run(
        &sandbox,
        "open('a.txt', 'w').write('hi')\nprint(open('a.txt').read())",
    );
    assert_eq!(inside.output, "hi");
}

#[test]
fn network_and_other_programs_are_refused() {
    let sandbox = sandbox();
    let connect =
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')";
    let result = run(&sandbox, connect);
    assert_eq!(
        result.output,
        "PermissionError: [sandbox] network access is not allowed"
    );
    let spawn = run(
        &sandbox,
        "import subprocess\nprint(subprocess.run(['id']).returncode)",
    );
    assert_eq!(
        spawn.output,
        "PermissionError: [sandbox] running other programs is not allowed"
    );
}

#[test]
fn the_network_namespace_has_no_route_without_the_audit_hook() {
    // The namespace alone: seccomp would refuse the socket before the route is looked up.
    let config = SandboxConfig {
        audit_hook: false,
        seccomp: false,
        ..SandboxConfig::default()
    };
    let sandbox = sandbox_with(config);
    if !sandbox
        .probe_isolation()
        .expect("sandbox works")
        .network_namespace
    {
        eprintln!("skipped: no network namespace here (needs root)");
        return;
    }
    let connect =
        "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\nprint('connected')";
    let result = run(&sandbox, connect);
    assert_eq!(result.output, "OSError: [Errno 101] Network is unreachable");
}

#[test]
fn as_root_every_layer_is_applied() {
    let isolation = isolation_here();
    eprintln!("isolation here: {isolation:?}");
    assert!(isolation.audit_hook);
    if !is_root() {
        eprintln!("skipped the kernel-level checks: not running as root");
        return;
    }
    assert!(isolation.uid.is_some() && isolation.process_limit && isolation.no_new_privileges);
    if isolation.pid_namespace && isolation.private_proc {
        let listed = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))";
        assert_eq!(run(&sandbox(), listed).output, "[1]");
    }
    if isolation.allowlist_root {
        // The interpreter was re-exposed, so no capability is left at all.
        assert!(!isolation.read_search_capability);
        let capabilities =
            "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0])";
        assert_eq!(
            run(&sandbox(), capabilities).output,
            "CapEff:\t0000000000000000"
        );
    }
}

#[test]
fn only_allowed_paths_are_visible() {
    if !isolation_here().allowlist_root {
        eprintln!("skipped: no mount namespace here");
        return;
    }
    // Readable by every uid (the run's fresh uid as root, or nobody), so only the view hides it.
    let base = tempfile::tempdir().expect("test directory");
    let dir = base.path().canonicalize().expect("canonical");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "s3cret").expect("secret file");
    let read = format!("print(open('{}').read())", secret.display());
    let mut readable_paths = SandboxConfig::default().readable_paths;
    readable_paths.push(dir.clone());
    let visible = sandbox_with(SandboxConfig {
        readable_paths,
        ..SandboxConfig::default()
    });
    let control = run(&visible, &read);
    let hidden = run(&sandbox(), &read);
    assert_eq!(
        control.output, "s3cret",
        "the control run, with the directory allowed, can read the file"
    );
    let missing = format!(
        "FileNotFoundError: [Errno 2] No such file or directory: '{}'",
        secret.display()
    );
    assert_eq!(hidden.output, missing);
    assert!(hidden.isolation.work_dir_in_memory);
}

#[test]
fn eight_snippets_in_parallel_threads_return_their_own_outputs() {
    let sandbox = Arc::new(sandbox_with(SandboxConfig {
        timeout_ms: 10_000,
        ..SandboxConfig::default()
    }));
    let handles: Vec<_> = (1..=8u64)
        .map(|k| {
            let sandbox = Arc::clone(&sandbox);
            std::thread::spawn(move || {
                let result = run(&sandbox, &format!("print(sum(range({})))", k * 1000));
                (k, result)
            })
        })
        .collect();
    let mut groups = Vec::new();
    for handle in handles {
        let (k, result) = handle.join().expect("thread did not panic");
        let n = k * 1000;
        assert_eq!(result.status, ExecutionStatus::Success, "{result:?}");
        assert_eq!(result.output, (n * (n - 1) / 2).to_string());
        groups.push(result.process_group);
    }
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(groups.len(), 8);
}

#[test]
fn a_program_larger_than_a_pipe_buffer_is_fed_whole() {
    let code = format!("# {}\nprint(7)", "x".repeat(200_000));
    assert_eq!(run(&sandbox(), &code).output, "7");
}

#[test]
fn set_order_is_reproducible_with_a_hash_seed() {
    let sandbox = sandbox();
    let code = "print(list({'alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'}))";
    assert_eq!(run(&sandbox, code).output, run(&sandbox, code).output);
}

#[test]
fn sympy_is_importable_under_the_limits() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import sympy"])
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        eprintln!("skipped: python3 has no sympy");
        return;
    }
    let sandbox = sandbox_with(SandboxConfig {
        timeout_ms: 20_000,
        ..SandboxConfig::default()
    });
    let code = "from sympy import Rational\nprint(Rational(1, 3) + Rational(1, 6))";
    let result = run(&sandbox, code);
    assert_eq!(result.output, "1/2", "{result:?}");
}

/// The reference's output block after a program ran (`math_eval.py`).
fn output_block(output: &str) -> String {
    format!("\n```output\n{output}\n```\n")
}

/// Four tool calls of one completion, as the engine makes them: the core extracts each program
/// from the whole text so far (earlier programs kept, their prints dropped), the sandbox runs it
/// in a fresh interpreter, and its output block is appended before the next round.
#[test]
fn successive_programs_of_one_completion_see_earlier_definitions() {
    let sandbox = Arc::new(sandbox_with(SandboxConfig {
        timeout_ms: 10_000,
        ..SandboxConfig::default()
    }));
    let mut text = String::from("Question: add numbers.\n");
    for call in 1..=4u32 {
        let sum: Vec<String> = (1..=call).map(|c| format!("x{c}")).collect();
        text.push_str(&format!(
            "Step {call}.\n```python\nx{call} = {call} * 10\nprint({})\n```",
            sum.join(" + ")
        ));
        let program = extract_program(&text);
        let result = run(&sandbox, &program);
        // One line: the earlier programs' definitions ran, their prints did not.
        let total: u32 = (1..=call).map(|c| c * 10).sum();
        assert_eq!(result.status, ExecutionStatus::Success, "{result:?}");
        assert_eq!(result.output, total.to_string(), "{program}");
        text.push_str(&output_block(&result.output));
    }
    assert!(text.ends_with("```\n```output\n100\n```\n"), "{text}");
    // The engine's hook runs a program the same way.
    let executor = SandboxExecutor::new(sandbox);
    assert_eq!(executor.execute("print(6 * 7)"), "42");
}
