"""The Ray executor: the same rows as the local executor (exact scores), a worker killed mid-run loses and
duplicates nothing, a killed driver resumes as the local path does. Ray runs on a local cluster this module
starts (2 CPUs), with its temp dir and auth token inside the test's folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tokenizer, tiny_model
from test_crash import rows, summary, tiny_study

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    token = d / "token"
    token.write_text(secrets.token_hex(32))
    env = {"RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(d), "TQDM_DISABLE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(d / "t"), log_to_driver=False)
    try:
        yield d, ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def study_cfg(tmp_path_factory):
    return tiny_study(tmp_path_factory.mktemp("exec"))


@contextlib.contextmanager
def one_thread():
    """The local reference with the workers' thread count (one each): float sums are ordered by the number of
    threads, so rows are bit-identical across executors at equal thread counts (up to ~1e-7 apart otherwise)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _load(cfg_path: Path, **executor):
    from steertax.config import load_config
    from steertax.runners.executors import ExecutorConfig

    cfg = load_config(str(cfg_path))
    return dataclasses.replace(cfg, executor=ExecutorConfig(**executor)) if executor else cfg


def test_ray_study_writes_the_local_rows(cluster, study_cfg):
    from steertax.runners.study import run_study

    d, cfg = study_cfg
    local, remote = d / "local", d / "ray"
    with one_thread():
        s_local = run_study(_load(cfg), local, progress=False)
    s_ray = run_study(_load(cfg, kind="ray", num_workers=2), remote, progress=False)
    assert rows(remote) == rows(local) and len(rows(local)) > 0  # exact scores, every row, nothing more
    assert s_ray["run_id"] == s_local["run_id"]  # the executor is not part of the run id
    assert summary(remote) == summary(local)
    run_study(_load(cfg, kind="ray", num_workers=2), remote, progress=False)  # resume: nothing new
    assert rows(remote) == rows(local)


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, study_cfg):
    """SIGKILL one worker right after the first chunk is written; its work is retried on a new actor."""
    import steertax as st
    from steertax.interventions import SteeringIntervention
    from steertax.runners.executors import ExecutorConfig, RayExecutor, plan_work
    from steertax.runners.sweep import TaskSpec, run_sweep
    from steertax.store import ResultStore
    from test_steering import unit_vector

    d, _ = study_cfg
    model, tok = tiny_model("llama", n_layers=4, seed=2), make_tokenizer()
    vec = unit_vector(model, [1, 2])
    specs = [TaskSpec(st.tasks.get("arc_easy"), 16), TaskSpec(st.tasks.get("refusal", scorers=["logprob"]), 16)]
    grid = [0.0, 1.0, 3.0]
    with ResultStore(d / "fault-local.sqlite") as store, one_thread():
        store.begin_run("r", {}, "now")
        run_sweep(model, tok, vec, specs, grid, store, "r", chunk=2, progress=False)
        want = sorted(store.records("r"), key=lambda r: (r["task"], r["item"], r["strength"], r["scorer"]))
    killed: list[int] = []

    def kill_one(ex, key, cell):
        if not killed:
            pid = ex.worker_pids()[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    tiny = d / "tiny"
    with ResultStore(d / "fault-ray.sqlite") as store:
        store.begin_run("r", {}, "now")
        ex = RayExecutor(
            ExecutorConfig(kind="ray", num_workers=2),
            model=str(tiny),
            dtype=None,
            device=None,
            specs=specs,
            seed=0,
            chunk=2,
            batch_size=32,
            store=store,
            progress=False,
            on_write=kill_one,
        )
        with ex:
            ex.submit(
                plan_work(
                    SteeringIntervention(vec, grid), "r", specs, store, seed=0, chunk=2, method="steering", setting=None, per_chunk=True
                )
            )
            ex.drain()
            assert killed and ex.retried >= 1 and len(ex.actors) == 2
        got = sorted(store.records("r"), key=lambda r: (r["task"], r["item"], r["strength"], r["scorer"]))
    assert got == want


@pytest.mark.slow
def test_killing_the_ray_driver_resumes(cluster, study_cfg):
    """SIGKILL `steertax run --executor ray` once the store holds some rows; rerun: the local executor's rows."""
    d, cfg = study_cfg
    _, address = cluster
    local, out = d / "local-2", d / "killed"
    from steertax.runners.study import run_study

    with one_thread():
        run_study(_load(cfg), local, progress=False)
    want = rows(local)
    cmd = [
        sys.executable,
        "-m",
        "steertax.cli",
        "--quiet",
        "run",
        str(cfg),
        "--out",
        str(out),
        "--executor",
        "ray",
        "--ray-address",
        address,
    ]
    # the driver SIGKILLs itself right after it commits its 8th cell (of 26): steertax._faults, no timing
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "STEERTAX_TEST_KILL_AT": "cell:8"})
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    partial = rows(out)
    db = sqlite3.connect(out / "results.sqlite")
    try:
        n_cells, n_rows = db.execute("SELECT COUNT(*), SUM(n_rows) FROM cells").fetchone()
    finally:
        db.close()
    assert n_cells == 8 and len(partial) == n_rows  # exactly 8 whole cells
    assert 0 < len(partial) < len(want) and set(partial) <= set(want)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert rows(out) == want
    split = json.loads((out / "timing.json").read_text())["split"]  # the workers' time, reported by the driver
    assert split and {r["task"] for r in split} <= {"refusal", "arc_easy", "drift"} and all(r["seconds"] >= 0 for r in split)


def test_ray_merge_writes_the_local_rows(cluster, tmp_path):
    """A merge run's settings (base, specialists, mixture, merges) on Ray workers: the local rows exactly."""
    from steertax.runners.executors import ExecutorConfig
    from steertax.runners.merge import run_merge
    from steertax.runners.merge_config import load_merge_config
    from test_merging import _merge_cfg

    d = tmp_path / "tiny"
    tiny_model("llama", n_layers=2, seed=1).save_pretrained(d)
    make_tokenizer().save_pretrained(d)
    cfg = load_merge_config(_merge_cfg(d, tmp_path / "m.yaml"))
    with one_thread():
        run_merge(cfg, tmp_path / "local", progress=False)
    shutil.copytree(tmp_path / "local" / "adapters", tmp_path / "ray" / "adapters")  # the same specialists, not retrained
    run_merge(dataclasses.replace(cfg, executor=ExecutorConfig(kind="ray", num_workers=2)), tmp_path / "ray", progress=False)
    assert rows(tmp_path / "ray") == rows(tmp_path / "local") and len(rows(tmp_path / "local")) > 0


def test_bad_executor_input_is_one_line(tmp_path, capsys, study_cfg):
    from steertax.cli import main

    _, cfg = study_cfg
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--ray-address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text() + "executor: {kind: spark}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "executor.kind" in err and "local, ray" in err and len(err.strip().splitlines()) == 1
