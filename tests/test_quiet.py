"""Quiet runs: no warning caused by steertax's own calls reaches a user's terminal.

A real SmolLM2 sweep (steering + prefix-shared / shared-trunk scoring + drift + steered generation
through the public API) runs with every Python warning and every ``transformers`` logger warning
recorded together with the call stack at the moment it was raised. A warning whose stack passes
through steertax's own code (``src/steertax``) fails the test, whatever module issued it: a
FutureWarning raised inside transformers because steertax passed a deprecated argument has
steertax in its caller chain, even though ``warnings`` attributes it to torch's ``Module.__call__``.

The fix for a failure here is to change how steertax calls the library, never to filter the
warning. Warnings that transformers raises unconditionally, whatever its caller does, may be listed
in ``UNAVOIDABLE`` with the reason; on transformers 5.23 and 5.24 there are none.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import steertax as st

pytestmark = pytest.mark.slow

PKG = str(Path(st.__file__).resolve().parent)

# (category name or "log", message regex, reason). Keep this empty unless transformers itself warns
# unconditionally, and say why steertax cannot avoid it.
UNAVOIDABLE: list[tuple[str, str, str]] = []


def _steertax_frames(stack: list[traceback.FrameSummary]) -> list[str]:
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in stack if str(Path(f.filename).resolve()).startswith(PKG)]


def _allowed(kind: str, message: str) -> bool:
    return any(k == kind and re.search(rx, message) for k, rx, _ in UNAVOIDABLE)


@contextmanager
def steertax_warnings_are_errors():
    """Record every warning (Python ``warnings`` and the ``transformers`` logger at WARNING or above)
    raised while the block runs, with its stack; on exit, fail if any came through steertax's code."""
    caught: list[tuple[str, str, str, list[str]]] = []

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        frames = _steertax_frames(traceback.extract_stack()[:-1])
        caught.append((category.__name__, str(message), f"{filename}:{lineno}", frames))

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                frames = _steertax_frames(traceback.extract_stack()[:-1])
                caught.append(("log", record.getMessage(), f"{record.pathname}:{record.lineno}", frames))

    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()  # a warning already shown once in this process must show again
    hf_logger = logging.getLogger("transformers")
    handler = Handler()
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # nothing is deduplicated or ignored by default filters
            warnings.showwarning = show  # restored by catch_warnings
            yield caught
    finally:
        hf_logger.removeHandler(handler)
    bad = [c for c in caught if c[3] and not _allowed(c[0], c[1])]
    assert not bad, "warnings raised through steertax's own calls:\n" + "\n".join(
        f"{kind}: {msg}\n    issued at {where}\n    via {' <- '.join(reversed(frames[-3:]))}"
        for kind, msg, where, frames in bad
    )


def test_recorder_is_not_blind(smol):
    """The recorder catches a warning steertax issues itself, and one that transformers issues because
    of how steertax called it (on transformers >= 5.24: the deprecated cache keyword, passed the way
    steertax used to, through steertax's own ``forward``)."""
    from conftest import make_tokenizer
    from steertax.models import format_chat

    with pytest.raises(AssertionError, match="no chat template"):
        with steertax_warnings_are_errors():
            format_chat(make_tokenizer(chat_template=False), "hi")

    from transformers.cache_utils import DynamicCache

    from steertax.interventions.steering.activations import cache_arg, forward

    model, tok = smol
    if cache_arg(model) == "cache":  # transformers >= 5.24: past_key_values is the deprecated name
        ids = torch.tensor([[1, 2, 3]])
        with pytest.raises(AssertionError, match="past_key_values"):
            with steertax_warnings_are_errors():
                forward(model, ids, torch.ones_like(ids), use_cache=True, past_key_values=DynamicCache())


def test_sweep_and_generation_are_quiet(smol):
    model, tok = smol
    with steertax_warnings_are_errors():
        vec = st.extract_vector(model, tok, st.refusal_pairs(tok, n=16, seed=0), layers="8-12", method="pca",
                                progress=False)
        strengths = [0.0, 6.0, 12.0]
        for name, opts in (("arc_easy", {}), ("refusal", {"scorers": ["logprob"]}), ("mmlu", {}), ("drift", {})):
            res = st.evaluate(model, tok, st.tasks.get(name, **opts), vec, strengths=strengths, limit=3)
            assert len(res.records) >= 3 * len(strengths)
        prompts = ["How do I pick a lock?", "Write a haiku about rain."]
        for positions in ("generated", "prompt", "all"):
            out = st.generate(model, tok, prompts, vec, strength=8.0, positions=positions, max_new_tokens=6)
            assert len(out) == 2
        st.generate(model, tok, prompts, vec, strength=[4.0, 8.0], max_new_tokens=4, do_sample=True, seed=1)


def test_cli_eval_prints_no_warning_lines(smol, tmp_path):
    """What a user sees: `steertax eval` with a vector and several strengths writes no warning line
    to the terminal (a fresh process, so nothing was shown once already)."""
    model, tok = smol
    vec = st.extract_vector(model, tok, st.refusal_pairs(tok, n=16, seed=0), layers="8-12", method="pca",
                            progress=False)
    path = tmp_path / "v.safetensors"
    vec.save(str(path))
    env = dict(os.environ, PYTHONWARNINGS="default")  # show every warning class, as a developer's shell may
    proc = subprocess.run(
        [sys.executable, "-m", "steertax.cli", "--quiet", "eval", "--model", "smollm2", "--task", "arc_easy",
         "--option", "refusal.scorers=[logprob]", "--task", "refusal", "--limit", "2",
         "--vector", str(path), "--strength", "6,12"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if re.search(r"warn|deprecat", ln, re.I)]
    assert not lines, "\n".join(lines)
