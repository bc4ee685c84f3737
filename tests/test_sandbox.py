"""The code sandbox: real HumanEval solutions pass, wrong ones fail, hostile code is contained."""
from __future__ import annotations

import os
import time

import pytest

import steertax as st
from steertax.tasks.generative import extract_code
from steertax.tasks.sandbox import run_python


@pytest.fixture(scope="module")
def he():
    t = st.tasks.get("humaneval")
    return t, {it.id: it for it in t.load_items()}


def test_canonical_passes_wrong_fails(he):
    task, items = he
    assert len(items) == 164
    for tid in ("HumanEval/0", "HumanEval/2", "HumanEval/53"):
        it = items[tid]
        assert task.check(it, it.data["prompt"] + it.data["canonical_solution"])
        assert not task.check(it, it.data["prompt"] + "    return None\n")


def test_extract_code():
    prompt = "def add(a, b):\n    \"\"\"Add.\"\"\"\n"
    assert "return a + b" in extract_code(prompt, "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", "add")
    body = extract_code(prompt, "    return a + b\n\nprint('x')\n", "add")
    assert body.startswith(prompt) and "print" not in body


@pytest.mark.parametrize("code,what", [
    ("while True:\n    pass\n", "timeout"),
    ("x = bytearray(8 * 1024 ** 3)\n", "memory"),
    ("import os\nwhile True:\n    os.fork()\n", "fork bomb"),
    ("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 9))\n", "network"),
    ("open('/tmp/../root/steertax_escape', 'w').write('x')\nraise SystemExit(1)\n", "exit code"),
    ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('8.8.8.8', 53))\n", "udp"),
    ("import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', 22))\n", "raw socket module"),
    ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "kill the evaluator"),
])
def test_hostile_code_is_contained(code, what):
    t0 = time.time()
    res = run_python(code, timeout=3)
    assert not res.passed, what
    assert time.time() - t0 < 30
    # the evaluating process survived (this line runs) and the sandbox still works afterwards
    assert run_python("print(6 * 7)\n").stdout.strip() == "42"


@pytest.fixture
def outside(tmp_path):
    """A secret file standing for the user's home, and a path outside the sandbox's temp dir."""
    secret = tmp_path / "home" / ".ssh" / "id_secret"
    secret.parent.mkdir(parents=True)
    secret.write_text("TOP SECRET")
    return secret, tmp_path / "escaped.txt"


def test_hostile_filesystem_access_is_contained(outside):
    secret, target = outside
    home = os.path.expanduser("~")
    hostile = {
        "write outside": f"open({str(target)!r}, 'w').write('pwned')\n",
        "append outside": f"import os\nfd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')\n",
        "read a secret": f"print(open({str(secret)!r}).read())\n",
        "list the home dir": f"import os\nprint(os.listdir({home!r}))\n",
        "read via pwd home": "import os, pwd\nh = pwd.getpwuid(os.getuid()).pw_dir\nprint(os.listdir(h))\n",
        "copy a secret": f"import shutil\nshutil.copy({str(secret)!r}, 'stolen')\nprint(open('stolen').read())\n",
        "subprocess cat": f"import subprocess\nprint(subprocess.run(['cat', {str(secret)!r}], capture_output=True, check=True).stdout)\n",
        "ctypes open": f"import ctypes\nlibc = ctypes.CDLL(None)\nfd = libc.open({str(secret).encode()!r}, 0)\nassert fd >= 0\n"
                       "buf = ctypes.create_string_buffer(64)\nassert libc.read(fd, buf, 64) > 0\nprint(buf.value)\n",
    }
    for what, code in hostile.items():
        res = run_python(code, timeout=5)
        assert not res.passed, (what, res.stdout, res.stderr[-500:])
        assert "TOP SECRET" not in res.stdout, what
    assert not target.exists()
    assert secret.read_text() == "TOP SECRET"


def test_sandbox_reports_its_protections():
    from steertax.tasks.sandbox import sandbox_info

    info = sandbox_info()
    assert set(info) >= {"landlock_abi", "filesystem", "network"}
    # inside the sandbox the program can still work in its own directory
    res = run_python("open('a.txt', 'w').write('hi')\nimport json, math, re, collections\nprint(open('a.txt').read())\n")
    assert res.passed and res.stdout.strip() == "hi", res.stderr


def test_runs_in_temp_dir_with_empty_env():
    res = run_python("import os, sys\nprint(os.getcwd())\nprint(sorted(os.environ))\n")
    assert res.passed
    cwd, env = res.stdout.splitlines()[:2]
    assert "steertax-sbx-" in cwd
    assert "HOME" in env and "PYTHONPATH" not in env
    assert not os.path.exists(cwd)  # removed afterwards
