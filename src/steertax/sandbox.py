"""Run untrusted (model-written) Python in a separate, limited process.

The child runs ``python -I`` (isolated mode: no user site, no PYTHON* env) in a fresh temporary
directory with: a wall-clock timeout (killed with its whole process group), CPU-time, address-space,
file-size and process-count limits (setrlimit), no inherited environment beyond PATH, and no network
(a new network namespace where the OS allows it, and in any case a socket guard installed before the
code runs). The code never runs in the evaluating process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

__all__ = ["run_python", "SandboxResult"]

_GUARD = r'''
import socket as _s, sys as _sys
def _blocked(*a, **k):
    raise PermissionError("network access is disabled in the steertax sandbox")
for _n in ("socket", "create_connection", "create_server", "socketpair", "fromfd"):
    setattr(_s, _n, _blocked)
del _s, _n
'''


@dataclass
class SandboxResult:
    passed: bool
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str


def _limits(mem_bytes: int, cpu_s: int, nproc: int, fsize: int, isolate_net: bool):
    def apply() -> None:
        import resource

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
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.unshare(0x40000000)  # CLONE_NEWNET; fails harmlessly without privileges
            except Exception:
                pass

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
        with open(path, "w", encoding="utf-8") as f:
            f.write(_GUARD + "\n" + code)
        env = {"PATH": "/usr/bin:/bin", "HOME": d, "TMPDIR": d, "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", path], cwd=d, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=_limits(memory_mb << 20, max(1, int(timeout) + 1), max_processes, max_file_mb << 20,
                                   isolate_network),
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
        return SandboxResult(rc == 0 and not timed_out, rc, timed_out, out.decode("utf-8", "replace")[-4000:],
                             err.decode("utf-8", "replace")[-4000:])
