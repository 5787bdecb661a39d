# The prelude of every sandboxed program (run as `python -c PRELUDE audit=0|1`; see
# sandbox/SANDBOX.md). It reads the program from stdin and runs it the way the Qwen2.5-Math
# evaluation's PythonExecutor does in its `auto_mode`:
#   - the program is stripped and split into lines;
#   - if the last line contains "print(", the whole program runs and its stdout is the result;
#   - otherwise all but the last line run (their prints are discarded) and the last line is
#     evaluated; str() of its value is the result (it must also pickle, as in the reference);
#   - a program containing "input(" raises RuntimeError();
#   - on any exception (SystemExit included: the reference uses a bare except) the result is
#     dropped and the report is the last line of the traceback.
# The program runs in a fresh globals dict, as the reference's exec(code, {}) does (so __name__
# resolves to "builtins"). The result goes to fd 1, a JSON report {"ok", "error", "cpu_limit"}
# to fd 3, then the process exits at once (os._exit: lingering threads and atexit handlers do not
# run). Processes forked by the program never report.


def _sandbox_main():
    import io
    import json
    import os
    import pickle
    import signal
    import sys
    import traceback

    write, exit_now, getpid, dumps = os.write, os._exit, os.getpid, json.dumps
    format_exc = traceback.format_exc
    main_pid = getpid()
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    sys.stdin = io.StringIO("")
    stdout = sys.stdout
    stdout.reconfigure(errors="backslashreplace")
    discard = open(os.devnull, "w")

    def report(ok, error, cpu_limit=False):
        if getpid() != main_pid:
            exit_now(0 if ok else 1)
        try:
            stdout.flush()
        except BaseException:
            pass
        try:
            write(3, dumps({"ok": ok, "error": error, "cpu_limit": cpu_limit}).encode())
        finally:
            exit_now(0)

    def on_cpu_limit(signum, frame):
        report(False, "Timeout Error", cpu_limit=True)

    signal.signal(signal.SIGXCPU, on_cpu_limit)
    if "audit=1" in sys.argv[1:]:
        _install_audit_hook(os.getcwd())

    def run(source, scope):
        if "input(" in source:
            raise RuntimeError()
        exec(source, scope)

    ok, error = True, "Done"
    try:
        lines = code.strip().split("\n")
        scope = {}
        if "print(" in lines[-1]:
            run("\n".join(lines), scope)
        else:
            sys.stdout = discard
            try:
                run("\n".join(lines[:-1]), scope)
                result = eval(lines[-1], scope)
            finally:
                sys.stdout = stdout
            text = str(result)
            pickle.dumps(result)
            stdout.write(text)
    except BaseException:
        ok, error = False, format_exc().split("\n")[-2]
    report(ok, error)


def _install_audit_hook(workdir):
    # Best effort only (PEP 578 hooks are not a security boundary: ctypes, dir_fd arguments and
    # C extensions get around them); the kernel-level layers are the real isolation.
    import os
    import sys

    realpath, join, fspath, fsdecode, getcwd = (
        os.path.realpath, os.path.join, os.fspath, os.fsdecode, os.getcwd)
    workdir = realpath(workdir)
    prefix = workdir + os.sep
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    one_path = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                "os.utime", "os.chflags", "os.lchflags", "os.chdir", "os.mkfifo", "os.mknod",
                "os.setxattr", "os.removexattr", "shutil.rmtree"}
    two_paths = {"os.rename", "os.link"}
    programs = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
                "os.startfile", "pty.spawn"}
    network = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
               "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
               "socket.gethostbyaddr", "socket.getnameinfo"}

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            path = fspath(path)
            if isinstance(path, bytes):
                path = fsdecode(path)
            full = realpath(join(getcwd(), path))
        except Exception:
            return False
        return full == workdir or full.startswith(prefix)

    def check(event, paths):
        for path in paths:
            if not inside(path):
                raise PermissionError(
                    f"[sandbox] {event} outside the work directory is not allowed: {path!r}")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                (flags or 0) & write_flags)
            if writing and not inside(path):
                raise PermissionError(
                    f"[sandbox] writing outside the work directory is not allowed: {path!r}")
        elif event in one_path:
            check(event, args[:1])
        elif event in two_paths:
            check(event, args[:2])
        elif event == "os.symlink":
            check(event, args[1:2])
        elif event in programs:
            raise PermissionError("[sandbox] running other programs is not allowed")
        elif event in network:
            raise PermissionError("[sandbox] network access is not allowed")

    sys.addaudithook(hook)


_sandbox_main()
