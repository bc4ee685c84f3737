"""Run untrusted (model-written) Python in a separate, limited process.

The child runs ``python -I`` (isolated mode: no user site, no PYTHON* env) in a fresh temporary
directory with: a wall-clock timeout (killed with its whole process group), CPU-time, address-space,
file-size and process-count limits (setrlimit), no inherited environment beyond PATH, and no network
(a new network namespace where the OS allows it, and in any case a socket guard installed before the
code runs). The code never runs in the evaluating process.

Filesystem: on Linux 5.13+ a Landlock ruleset (unprivileged, inherited by every child, cannot be
lifted) lets the program read only the Python installation and system libraries, read and write only
its temporary directory, and (Landlock ABI 4+, Linux 6.7+) neither bind nor connect TCP sockets.
Everything else, the user's home included, is invisible to it. Where Landlock is unavailable an
audit hook in the child refuses the same opens (a weaker, Python-level guard); ``sandbox_info()``
says which protections this machine gives.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass

__all__ = ["run_python", "SandboxResult", "sandbox_info"]

_GUARD = r"""
import socket as _s, sys as _sys, os as _os
def _blocked(*a, **k):
    raise PermissionError("network access is disabled in the steertax sandbox")
for _n in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
    setattr(_s, _n, _blocked)
_HOME = _os.path.realpath(_os.getcwd())
_READ = tuple(_os.path.realpath(p) for p in __READ__)
def _audit(event, args, _HOME=_HOME, _READ=_READ, _rp=_os.path.realpath, _fs=_os.fsdecode):
    if event == "open" and isinstance(args[0], (str, bytes)):
        p = _rp(_fs(args[0]))
        mode = args[1] or "r"
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writing = any(c in str(mode) for c in "wax+") or (flags & 3) != 0
        inside = p == _HOME or p.startswith(_HOME + "/")
        if writing and not inside:
            raise PermissionError(f"the steertax sandbox only writes inside its temporary directory, not {p}")
        if not writing and not inside and not any(p == r or p.startswith(r.rstrip("/") + "/") for r in _READ):
            raise PermissionError(f"the steertax sandbox cannot read {p}")
    elif event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        raise PermissionError("network access is disabled in the steertax sandbox")
    elif event in ("os.kill", "os.killpg") and args[0] != _os.getpid() and args[0] != 0 and args[0] != _os.getpgid(0):
        raise PermissionError("the steertax sandbox may only signal its own processes")
_sys.addaudithook(_audit)
del _s, _n, _audit
"""


def _read_roots() -> list[str]:
    """Paths the child may read: the interpreter, its libraries, system libraries and devices it needs."""

    roots = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        sysconfig.get_paths().get("stdlib", ""),
        sysconfig.get_paths().get("platstdlib", ""),
        "/usr/lib",
        "/usr/lib64",
        "/usr/local/lib",
        "/lib",
        "/lib64",
        "/usr/share/zoneinfo",
        "/etc/localtime",
        "/etc/ld.so.cache",
        "/dev/null",
        "/dev/urandom",
        "/dev/random",
        "/proc/self",
    }
    return sorted(r for r in roots if r and os.path.exists(r))


# Landlock (linux/landlock.h): syscalls and access rights
_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL = [(1 << 13) - 1, (1 << 14) - 1, (1 << 15) - 1, (1 << 15) - 1, (1 << 16) - 1]  # by ABI 1..5+
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)  # + TRUNCATE, IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: unavailable)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        v = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        return int(v) if v > 0 else 0
    except Exception:
        return 0


def _landlock(read_roots: list[str], rw_root: str) -> bool:
    """Restrict this process (and its future children) to reading ``read_roots`` and reading/writing
    ``rw_root``; no TCP where the ABI allows. Called in the child before exec. False if unsupported."""

    abi = landlock_abi()
    if abi < 1:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fs_all = _FS_ALL[min(abi, 5) - 1]

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    # ABI 6+: no signals to processes outside the sandbox (the evaluator), no abstract unix sockets
    attr = RulesetAttr(fs_all, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    rs = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rs < 0:
        return False
    try:

        def allow(path: str, rights: int) -> None:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_RIGHTS
                pb = PathBeneath(rights & fs_all, fd)
                libc.syscall(_SYS_ADD, ctypes.c_int(rs), ctypes.c_int(1), ctypes.byref(pb), ctypes.c_uint32(0))
            finally:
                os.close(fd)

        for r in read_roots:
            allow(r, _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR)
        allow(rw_root, fs_all)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return False
        return libc.syscall(_SYS_RESTRICT, ctypes.c_int(rs), ctypes.c_uint32(0)) == 0
    finally:
        os.close(rs)


def sandbox_info() -> dict[str, object]:
    """Which protections this machine gives the sandbox."""
    abi = landlock_abi()
    return {
        "landlock_abi": abi,
        "filesystem": "landlock" if abi >= 1 else "audit hook (Python-level)",
        "network": ("landlock TCP + " if abi >= 4 else "") + "network namespace (if permitted) + socket guard",
        "signals": "landlock scope (only its own processes)" if abi >= 6 else "audit hook (Python-level)",
        "limits": "timeout, CPU, address space, file size, processes",
    }


@dataclass
class SandboxResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str


def _limits(mem_bytes: int, cpu_s: int, nproc: int, fsize: int, isolate_net: bool, fs: tuple[list[str], str] | None = None):
    def apply() -> None:

        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        except (ValueError, OSError):
            pass
        if isolate_net:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.unshare(0x40000000)  # CLONE_NEWNET; fails harmlessly without privileges
            except Exception:
                pass
        if fs is not None:
            try:
                _landlock(*fs)
            except Exception:
                pass  # the audit hook still guards the opens

    return apply


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    isolate_network: bool = True,
) -> SandboxResult:
    """Execute ``code`` in a sandboxed child process; ``passed`` is exit status 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="steertax-sbx-") as d:
        path = os.path.join(d, "prog.py")
        roots = _read_roots()
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD.replace("__READ__", repr(tuple(roots))) + "\n" + code)
        env = {"PATH": "/usr/bin:/bin", "HOME": d, "TMPDIR": d, "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", path],
                cwd=d,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_limits(
                    memory_mb << 20, max(1, int(timeout) + 1), max_processes, max_file_mb << 20, isolate_network, (roots, d)
                ),
            )
        except OSError as e:
            return SandboxResult(False, None, False, "", f"could not start sandbox: {e}")
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # reap any children left behind
            except (ProcessLookupError, PermissionError):
                pass
        rc = proc.returncode
        return SandboxResult(
            rc == 0 and not timed_out, rc, timed_out, out.decode("utf-8", "replace")[-4000:], err.decode("utf-8", "replace")[-4000:]
        )
