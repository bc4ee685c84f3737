"""Where a command writes: its output paths checked before any work (writable, not a file where a folder is
wanted, a parent that can be created), one writer per run folder (an OS advisory lock held for the life of the
command, released on any exit), and storage errors (disk full, read-only, permission, quota) said in one line."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Iterator

from steertax.errors import SteertaxError

__all__ = ["OutputError", "check_output", "locked_folder", "storage_error", "LOCK_FILE"]

LOCK_FILE = ".steertax.lock"
_CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space or choose another output path"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space or choose another output path"),
    errno.EROFS: ("the file system is read-only", "choose an output path on a writable disk"),
    errno.EACCES: ("permission denied", "choose an output path you can write"),
    errno.EPERM: ("permission denied", "choose an output path you can write"),
}


class OutputError(SteertaxError):
    """An output path that cannot be written, or a run folder another command is writing."""


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: str | os.PathLike[str], flag: str, kind: str) -> None:
    """Refuse (one line naming the fix) an output ``path`` that cannot be written, before any work: for a
    ``file``, an existing folder there; for a ``folder``, an existing file there; for both, an ancestor that is a
    file, or a first existing ancestor that is read-only or not writable. Creates nothing."""
    p = Path(path).expanduser()
    if kind == "file" and p.is_dir():
        raise OutputError(f"{flag} {p} is a folder: give a file path like {p / 'out.json'}")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise OutputError(f"{flag} {p} is a file: give a folder (it is created if missing)")
    anc = _first_existing(p if kind == "folder" else p.parent)
    if anc.exists() and not anc.is_dir():
        raise OutputError(f"{flag} {p} cannot be created: {anc} is a file, not a folder: choose a path inside a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(anc) else "is not writable by you"
        raise OutputError(f"{flag} {p}: {anc} {why}: choose another {flag}")
    if kind == "folder" and p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {p} is not writable by you: choose another {flag}")


def _read_only(p: Path) -> bool:
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextlib.contextmanager
def locked_folder(path: str | os.PathLike[str], flag: str = "--out") -> Iterator[Path]:
    """Hold an exclusive advisory lock on run folder ``path`` while the block runs (the folder is created if
    missing). Another command holding it: one line naming that command and the fix. The lock file (and a folder
    this call created that is still empty) is removed on the way out, so a refused command leaves the folder as
    it was; the OS releases the lock when the process ends, even on SIGKILL (the file stays then, unlocked)."""
    p = Path(path).expanduser()
    created = not p.exists()
    p.mkdir(parents=True, exist_ok=True)
    lock = p / LOCK_FILE
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise OutputError(
                f"{flag} {p} is being written by another steertax command ({holder}): wait for it to finish, or choose another {flag}"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: steertax {' '.join(sys.argv[1:])}"[:500].encode(), 0)
        yield p
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still holding it: a waiting opener re-checks the inode
        os.close(fd)
        if created and p.is_dir() and not any(p.iterdir()):  # refused, or a check that writes nothing (--check)
            shutil.rmtree(p, ignore_errors=True)


def storage_error(e: BaseException) -> str | None:
    """One line for a storage error (disk full, read-only, permission, quota) while writing, or None when ``e`` is
    not one. Finished cells are committed one by one, so the line says a rerun resumes."""
    resume = "finished cells are kept; rerun the same command to resume"
    if isinstance(e, OSError) and e.errno in _CAUSES:
        cause, fix = _CAUSES[e.errno]
        where = _final_name(e.filename) if e.filename else "a file"
        return f"cannot write {where}: {cause}: {fix} ({resume})"
    if isinstance(e, sqlite3.OperationalError):
        msg = str(e).lower()
        if "disk is full" in msg or "database or disk is full" in msg:
            return f"cannot write the results store: the disk is full: free space or choose another output path ({resume})"
        if "readonly" in msg or "read-only" in msg:
            return f"cannot write the results store: it is read-only: choose an output path you can write ({resume})"
        if "disk i/o error" in msg:
            return f"cannot write the results store: a disk I/O error (a full or failing disk?): free space or move the output ({resume})"
    return None


def _final_name(filename: str | os.PathLike[str]) -> str:
    """The file a temporary name was written for (``.out.json.x1y2.tmp`` -> ``out.json``), else the name itself."""
    p = Path(filename)
    name = p.name
    if name.startswith(".") and ".tmp" in name:
        name = name[1:].split(".tmp")[0]
        name = name.rsplit(".", 1)[0] if name.count(".") > 1 else name
    return str(p.with_name(name))
