"""The code sandbox: real HumanEval solutions pass, wrong ones fail, hostile code is contained."""
from __future__ import annotations

import os
import time

import pytest

import steertax as st
from steertax.sandbox import run_python
from steertax.tasks.generative import extract_code


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
])
def test_hostile_code_is_contained(code, what):
    t0 = time.time()
    res = run_python(code, timeout=3)
    assert not res.passed, what
    assert time.time() - t0 < 30
    # the evaluating process is alive and well
    assert os.getpid() > 0


def test_runs_in_temp_dir_with_empty_env():
    res = run_python("import os, sys\nprint(os.getcwd())\nprint(sorted(os.environ))\n")
    assert res.passed
    cwd, env = res.stdout.splitlines()[:2]
    assert "steertax-sbx-" in cwd
    assert "HOME" in env and "PYTHONPATH" not in env
    assert not os.path.exists(cwd)  # removed afterwards
