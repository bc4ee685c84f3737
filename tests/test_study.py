"""`steertax run --quick` on the real SmolLM2: every output file, sane numbers, resume, report."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    r = subprocess.run([sys.executable, "-m", "steertax.cli", "--quiet", "run", "--quick", "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout, r.stderr


def test_quick_run_writes_everything(quick_run):
    out, stdout, stderr = quick_run
    # a quick run prints no warning lines (deprecations, future warnings, fallbacks) into the terminal
    assert not [ln for ln in stderr.splitlines() if "warning" in ln.lower()], stderr[-3000:]
    for f in ("config.resolved.yaml", "results.sqlite", "results.parquet", "summary.json", "report.html"):
        assert (out / f).is_file(), f
    for f in ("alignment", "helpfulness", "tradeoff", "drift", "theory"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 10_000
    s = json.loads((out / "summary.json").read_text())
    for k in ("model", "vector", "strengths", "tasks", "efficient_strength", "break_even_strength", "alignment_tax", "theory"):
        assert k in s
    ref = {b["strength"]: b["mean"] for b in s["tasks"]["refusal"]["by_strength"]}
    grid = s["strengths"]
    assert min(grid) < 0 < max(grid) and len(grid) >= 7  # both signs, as in the paper's figures (quick: 7)
    assert sum(abs(x) <= 0.25 * max(grid) + 1e-9 for x in grid) >= 5  # enough strengths for the local test
    assert ref[max(grid)] > ref[0.0] > ref[min(grid)]
    arc = {b["strength"]: b["mean"] for b in s["tasks"]["arc_easy"]["by_strength"]}
    assert arc[max(grid)] < arc[0.0]
    for name, t in s["tasks"].items():
        fit = t["fit"]
        assert fit["ok"] and "ci95" in next(iter(fit["params"].values())), name
        if t["metric"] == "kl":  # drift grows with |r|: one quadratic, no law selection
            assert fit["law"] == "quadratic"
            continue
        assert fit["law"] in fit["candidates"], name
        assert all(c["aic"] is not None and "aicc" in c and "r2" in c for c in fit["candidates"].values() if c["ok"]), name
        assert fit["selection"]["criterion"] == "AICc" and fit["selection"]["reason"], name
        pt = fit["paper_law_test"]
        assert pt["term"] == ("h1" if t["axis"] == "helpfulness" else "h2"), name
        assert pt["holds"] is None or isinstance(pt["holds"], bool), name
        assert (pt["holds"] is None) == pt["verdict"].startswith("can't tell"), (name, pt["verdict"])  # the sentence matches
        assert {"estimate", "ci95", "verdict"} <= set(pt), name
    assert "tanh" in s["tasks"]["refusal"]["fit"]["candidates"]
    assert "inverse_quadratic_floor" in s["tasks"]["arc_easy"]["fit"]["candidates"]
    assert all(c["test"] and isinstance(c["holds"], bool) for c in s["theory"]["checks"].values())
    assert "refusal" in s["theory"]["bounds"] and "arc_easy" in s["theory"]["bounds"]
    assert set(s["theory"]["checks"]) == {"A-norm", "A-margin", "A-Gaussian"}
    eff = s["efficient_strength"]
    assert eff["ok"] and eff["U_star"] >= max(eff["curve"]["U"]) - 1e-12  # r* maximizes U on the grid it searched
    assert eff["at_boundary"] == (eff["r_star"] in (min(grid), max(grid)))
    assert eff["heldout"]["dB"] is not None and eff["heldout"]["dH"] is not None
    # r* on the rates: the harmless rate on the harmful requests, the helpful rate on the shared pool's safe prompts
    assert eff["alignment_task"] == "refusal:harmless" and eff["helpfulness_task"] == "over_refusal"
    rows = {r["task"]: r for r in s["alignment_tax"]}  # the tax at r*: held-out items of the tasks r* was chosen on
    assert rows["refusal"]["items"] == rows["over_refusal"]["items"] == "held-out"
    assert rows["over_refusal"]["n"] <= eff["n_test_items"] and rows["arc_easy"]["r_star"] == eff["r_star"]
    assert rows["arc_easy"]["items"] != "held-out"  # a capability benchmark r* never read: every item
    # the aligning-prompt ladder (quick: the base and its top rung) and the rates checked against judged answers
    assert [g["label"] for g in s["prompting"]["rungs"]] == ["system prompt + 4 demos"]
    assert "after its own default system prompt" in s["prompting"]["placement"]
    assert s["rate_check"]["n_pairs"] > 0 and 0 <= s["rate_check"]["agreement"] <= 1
    for b in s["theory"]["bounds"].values():  # holds and verdict say the same thing
        assert (b["holds"] is None) == b["verdict"].startswith("can't tell")
        assert (b["holds"] is True) == b["verdict"].startswith("respected")
    # one row per (intervention, task, item, strength, scorer)
    db = sqlite3.connect(out / "results.sqlite")
    n, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT run_id||task||item||strength||scorer) FROM results").fetchone()
    assert n == distinct > 0
    import pandas as pd

    assert len(pd.read_parquet(out / "results.parquet")) == n


def test_rerun_resumes_without_recomputing(quick_run, tmp_path):
    out = quick_run[0]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = sqlite3.connect(copy / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    summary = json.loads((copy / "summary.json").read_text())
    r = subprocess.run([sys.executable, "-m", "steertax.cli", "--quiet", "run", "--quick", "--out", str(copy)],
                       capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    after = sqlite3.connect(copy / "results.sqlite").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert after == before
    again = json.loads((copy / "summary.json").read_text())
    assert again["tasks"] == summary["tasks"] and again["efficient_strength"] == summary["efficient_strength"]
    # the analysis commands work on the folder
    for cmd in ("fit", "tax"):
        r = subprocess.run([sys.executable, "-m", "steertax.cli", cmd, str(copy)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert "arc_easy" in r.stdout


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def images_in_chromium(exe, page: str, tmp_path):
    """(images, images decoded) of an HTML page rendered in headless Chromium: a probe script counts them on load."""
    import re

    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.title='IMAGES '+im.length+' '+im.filter(i=>i.complete&&i.naturalWidth>0).length;});</script>")
    test_page = tmp_path / "probe.html"
    test_page.write_text(page.replace("</body>", probe + "</body>"))
    r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
                        "--virtual-time-budget=5000", "--dump-dom", test_page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"<title>IMAGES (\d+) (\d+)</title>", r.stdout)
    assert m, r.stderr[-2000:]
    return int(m.group(1)), int(m.group(2))


def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    out = quick_run[0]
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium where apt is available)")
    total, loaded = images_in_chromium(exe, (out / "report.html").read_text(), tmp_path)
    assert total >= 5 and loaded == total
    shot = tmp_path / "shot.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'prof2'}",
                    f"--screenshot={shot}", "--window-size=1200,2000", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
