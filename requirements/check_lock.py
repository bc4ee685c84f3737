"""Check that the installed packages are exactly the locked ones (standard library only).

    python requirements/check_lock.py [LOCK ...]      (default: requirements/lock.txt requirements/models.txt)

Exit 0 with one summary line when every package pinned in the lock files is installed at its locked version;
exit 1 with one line naming each package that is missing or at another version. It also fails when
steertax declares a dependency (pyproject.toml's `dependencies` or its `dev` extra) that the lock lacks,
i.e. pyproject.toml changed and `make lock` was not run. torch is not in the lock (it is installed first,
from TORCH_SPEC); its version is only reported when it is not the build the lock was resolved against.
Run by `make install`, and by tests/test_lock.py.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LOCKS = [HERE / "lock.txt", HERE / "models.txt"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
NOT_LOCKED = {"torch"}  # installed from TORCH_SPEC before the lock (see the Makefile)


def canon(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a pip requirements file (hash lines are skipped)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[canon(m.group(1))] = m.group(2)
    return pins


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def same_version(installed: str, locked: str) -> bool:
    if installed == locked:
        return True
    try:  # exact PEP 440 comparison where `packaging` is importable (it is locked); plain strings otherwise
        from packaging.version import Version

        return Version(installed) == Version(locked)
    except Exception:
        return installed.lower() == locked.lower()


def declared_names(project: str = "steertax", extras: tuple[str, ...] = ("dev",)) -> set[str]:
    """Names of the project's installed requirements: the base ones and those of the given extras."""
    try:
        reqs = metadata.requires(project) or []
    except metadata.PackageNotFoundError:
        return set()
    names = set()
    for req in reqs:
        marker = req.partition(";")[2]
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) not in extras:
            continue
        m = NAME.match(req)
        if m:
            names.add(canon(m.group(1)))
    return names


def constraint_pin(name: str) -> str | None:
    """The version of `name` that requirements/lock-constraints.txt pins the lock's resolution to, if any."""
    path = HERE / "lock-constraints.txt"
    return read_pins(path).get(canon(name)) if path.exists() else None


def check(locks: list[Path]) -> tuple[list[str], int]:
    """Problems (one short phrase each) and the number of pinned packages checked."""
    problems: list[str] = []
    pinned: dict[str, str] = {}
    for lock in locks:
        pins = read_pins(lock)
        pinned.update(pins)
        for name, want in sorted(pins.items()):
            have = installed_version(name)
            if have is None:
                problems.append(f"{name} is not installed (lock: {want})")
            elif not same_version(have, want):
                problems.append(f"{name} {have} is installed (lock: {want})")
    missing = sorted(declared_names() - set(pinned) - NOT_LOCKED)
    if missing:
        problems.append(f"pyproject.toml requires {', '.join(missing)} but the lock lacks it (run `make lock`)")
    return problems, len(pinned)


def main(argv: list[str]) -> int:
    locks = [Path(a) for a in argv] or DEFAULT_LOCKS
    absent = [str(p) for p in locks if not p.is_file()]
    if absent:
        print(f"check_lock: no such lock file: {', '.join(absent)}", file=sys.stderr)
        return 2
    problems, n = check(locks)
    names = ", ".join(str(p) for p in locks)
    if problems:
        print(
            f"check_lock: the installed packages differ from {names}: {'; '.join(problems)}. "
            "Run `make install` (after `make lock` if pyproject.toml changed).",
            file=sys.stderr,
        )
        return 1
    note = ""
    torch, resolved = installed_version("torch"), constraint_pin("torch")
    if torch and resolved and not same_version(torch, resolved):
        note = f" (torch {torch} is installed; the lock was resolved against torch {resolved})"
    print(f"check_lock: all {n} locked packages are installed at their locked versions{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
