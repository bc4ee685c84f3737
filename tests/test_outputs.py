"""One writer per run folder, storage errors in one line, output paths checked before any work.

The concurrency test is deterministic: the first `steertax run` is held inside its work (after its inputs are
checked, before the model loads) by ``STEERTAX_TEST_HOLD_AT=start:FILE`` (steertax._faults) until the test
creates FILE; the second command starts while the first is known to hold the folder."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steertax._faults import HOLD_ENV
from steertax.cli import COMMANDS, main
from steertax.outputs import LOCK_FILE, check_output, locked_folder, storage_error
from test_crash import rows, start, tiny_study


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    return err[0]


def _held(lock) -> bool:
    try:
        return lock.read_text().startswith("pid")
    except FileNotFoundError:
        return False


def test_two_runs_into_one_folder_one_writes_the_other_exits_2(tmp_path):
    d, cfg = tiny_study(tmp_path)
    ref, out, go = tmp_path / "ref", tmp_path / "out", tmp_path / "go"
    assert start(cfg, ref).wait(timeout=600) == 0
    env = {**os.environ, "TQDM_DISABLE": "1", HOLD_ENV: f"start:{go}"}
    first = subprocess.Popen([sys.executable, "-m", "steertax.cli", "--quiet", "run", str(cfg), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lock = out / LOCK_FILE
    end = time.monotonic() + 120
    while not _held(lock) and time.monotonic() < end:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "steertax.cli", "--quiet", "run", str(cfg), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    go.touch()
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    err = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert second.returncode == 2 and len(err) == 1, second.stderr
    assert f"pid {first.pid}" in err[0] and "being written by another steertax command" in err[0] and "internal error" not in err[0]
    assert rows(out) == rows(ref)  # the writer's rows are a single run's


def test_a_killed_writer_releases_the_lock(tmp_path):
    d, cfg = tiny_study(tmp_path)
    out = tmp_path / "out"
    p = start(cfg, out, kill_at="start")
    assert p.wait(timeout=600) == -9
    assert start(cfg, out).wait(timeout=600) == 0  # the OS released the SIGKILLed holder's lock


def test_the_lock_names_its_holder_and_a_refused_fresh_folder_is_removed(tmp_path):
    out = tmp_path / "fresh"
    with locked_folder(out):
        assert (out / LOCK_FILE).read_text().startswith(f"pid {os.getpid()}")
        (out / "summary.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # a folder that holds work stays; the lock file goes
    with locked_folder(tmp_path / "checked"):
        pass
    assert not (tmp_path / "checked").exists()  # a check that wrote nothing (--check) leaves no folder
    gone = tmp_path / "gone"
    with pytest.raises(RuntimeError), locked_folder(gone):
        raise RuntimeError("refused")
    assert not gone.exists()  # a fresh folder a failed command made is not left behind


def test_storage_errors_are_one_line_naming_the_file_and_the_fix():
    e = OSError(errno.ENOSPC, "No space left on device", "/data/run/.summary.json.ab12cd.tmp")
    assert storage_error(e) == (
        "cannot write /data/run/summary.json: the disk is full: free space or choose another output path "
        "(finished cells are kept; rerun the same command to resume)"
    )
    assert "read-only" in storage_error(OSError(errno.EROFS, "Read-only file system", "/ro/x.json"))
    assert "the disk is full" in storage_error(sqlite3.OperationalError("database or disk is full"))
    assert storage_error(ValueError("x")) is None and storage_error(OSError(errno.ENOENT, "missing", "x")) is None


def test_a_full_disk_in_the_store_is_one_line_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    """A simulated ENOSPC at the store's third cell commit: one plain line, exit 2, the committed cells kept,
    and a rerun with room resumes to the rows of an uninterrupted run."""
    from steertax.store import ResultStore

    d, cfg = tiny_study(tmp_path)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main(["--quiet", "run", str(cfg), "--out", str(ref)]) == 0
    capsys.readouterr()
    real = ResultStore.write_cell
    calls = {"n": 0}

    def full(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *a, **k)

    monkeypatch.setattr(ResultStore, "write_cell", full)
    assert main(["--quiet", "run", str(cfg), "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert line.startswith("steertax: error: cannot write the results store: the disk is full") and "rerun" in line
    con = sqlite3.connect(out / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 2 and con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    monkeypatch.setattr(ResultStore, "write_cell", real)
    assert main(["--quiet", "run", str(cfg), "--out", str(out)]) == 0
    assert rows(out) == rows(ref)


def test_every_declared_output_is_checked_before_any_work(tmp_path, capsys):
    """Each command that writes declares where (a file or a folder): a folder where a file goes, a file where a
    folder goes, and a path under a file are refused in one line before anything loads, and nothing is created."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    declared = {c.name: [x for x in c.args if x.output] for c in COMMANDS}
    writers = {"extract", "condition", "eval", "run", "align", "merge", "compare", "experiment", "tax", "judge", "export", "import"}
    assert {n for n, xs in declared.items() if xs} >= writers
    with pytest.raises(Exception, match="is a folder"):
        check_output(a_dir, "--json", "file")
    with pytest.raises(Exception, match="is a file"):
        check_output(a_file, "--out", "folder")
    with pytest.raises(Exception, match="is a file, not a folder"):
        check_output(a_file / "sub" / "out.json", "--json", "file")
    for argv, says in (
        (["eval", "--task", "arc_easy", "--limit", "2", "--json", str(a_dir)], "--json"),
        (["extract", "--out", str(a_file / "v.safetensors")], "is a file, not a folder"),
        (["run", "--quick", "--out", str(a_file)], "is a file"),
        (["judge", "validate", "--out", str(a_dir)], "is a folder"),
    ):
        assert main(argv) == 2, argv
        assert says in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"] and not any(a_dir.iterdir())


def test_a_read_only_parent_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A parent the user cannot write (os.access says so: root passes chmod, so the answer is given here, not by
    the machine's user) is refused in one line before the task or model loads, and nothing is created."""
    import steertax.outputs as O

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(O.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    assert main(["eval", "--task", "arc_easy", "--limit", "2", "--json", str(ro / "out.json")]) == 2
    assert "is not writable by you" in _one_line(capsys)
    assert not any(ro.iterdir())
