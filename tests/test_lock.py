"""The locks of requirements/ (see `make lock`): well-formed, CPU-only, and what `make install` installed."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REQ = Path(__file__).resolve().parent.parent / "requirements"
LOCKS = [REQ / "lock.txt", REQ / "models.txt"]
if not all(p.is_file() for p in [*LOCKS, REQ / "check_lock.py"]):
    pytest.skip("not run from a checkout with requirements/ (the locks)", allow_module_level=True)


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_lock", REQ / "check_lock.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check_lock = _load_checker()


def _entries(path: Path) -> dict[str, list[str]]:
    """name -> hashes of each pinned requirement (a `name==version \\` line and its continuation lines)."""
    entries: dict[str, list[str]] = {}
    name = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if (m := check_lock.PIN.match(line)) is not None:
            name = check_lock.canon(m.group(1))
            entries[name] = []
        elif name and line.strip().startswith("--hash=sha256:"):
            entries[name].append(line.strip())
        elif not line.startswith(" "):
            name = None
    return entries


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_pin_has_a_hash_and_no_cuda(lock: Path):
    entries = _entries(lock)
    assert entries, f"{lock} pins nothing"
    assert [n for n, h in entries.items() if not h] == [], f"{lock}: pins without a hash (pip --require-hashes would refuse them)"
    gpu = [n for n in entries if n == "torch" or re.match(r"(nvidia|triton|cuda)", n)]
    assert gpu == [], f"{lock} must leave torch and its CUDA packages to TORCH_SPEC"


def test_lock_covers_every_declared_dependency():
    """pyproject.toml's dependencies and `dev` extra are all in the lock (else it is stale: `make lock`)."""
    text = (REQ.parent / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    dev = re.search(r"^dev = \[(.*?)\]", text, re.M).group(1)
    declared = {check_lock.canon(m) for m in re.findall(r'"([A-Za-z0-9][A-Za-z0-9._-]*)', block + dev)}
    assert declared - set(_entries(REQ / "lock.txt")) == {"torch"}


def test_checker_names_the_package_that_differs(tmp_path: Path):
    lock = tmp_path / "lock.txt"
    lock.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\nno-such-package-xyz==1.0 \\\n    --hash=sha256:00\n")
    problems, n = check_lock.check([lock])
    assert n == 2
    assert any(p.startswith(f"pytest {pytest.__version__} is installed (lock: 0.0.1)") for p in problems), problems
    assert "no-such-package-xyz is not installed (lock: 1.0)" in problems


@pytest.mark.locked
def test_installed_packages_match_the_lock():
    """`pip freeze` agrees with the locks in the environment that `make install` set up. `make test-latest`'s
    deliberately unlocked .venv-latest deselects it (marker `locked`)."""
    problems, n = check_lock.check(LOCKS)
    assert problems == [], "the installed packages differ from the locks (run `make install`): " + "; ".join(problems)
    assert n > 50
