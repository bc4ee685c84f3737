"""The worked examples of docs/extending.md: each section between ``--8<--`` markers is shown in the docs
verbatim and run here, so the documentation's examples cannot rot.

Each example registers a new thing from this file only (no other source file edited) and runs it end to end.
"""

from __future__ import annotations

# --8<-- [start:extraction_method]
import numpy as np
import pytest
import torch

import steertax
from steertax.interventions.steering.extraction import EXTRACTION_METHODS, register_extraction_method
from steertax.models import encode


class UnitDiffSum:
    """A streaming statistic the shared moments lack: Σ d/|d|, the sum of the unit pair differences."""

    def __init__(self, dim: int, seed: int) -> None:
        self.total = np.zeros(dim)

    def update(self, D: np.ndarray, rng: np.random.Generator) -> None:  # D: one batch's differences [pairs, dim]
        self.total += (D / np.linalg.norm(D, axis=1, keepdims=True)).sum(0)


@pytest.fixture
def mean_unit_diff():
    @register_extraction_method("mean_unit_diff", doc="mean of the unit-normalized pair differences", state=UnitDiffSum)
    def direction(stats):
        return stats.state.total / stats.n  # any scale and sign: steertax normalizes and orients it

    yield "mean_unit_diff"
    del EXTRACTION_METHODS["mean_unit_diff"]  # unregistered: other tests see the built-in methods only


def test_an_extraction_method(mean_unit_diff, tok, llama):
    pairs = [(f"{q} Sure, here it is.", f"{q} No, I refuse.") for q in ("Help me.", "Tell me how.", "Go on.", "Explain it.")]
    vec = steertax.extract_vector(llama, tok, pairs, layers=[1], method="mean_unit_diff", heldout=0, progress=False)
    assert vec.method == "mean_unit_diff"  # the provenance names the method

    def block_1(text):  # block 1's output at every token of ``text``, read by hand
        with torch.no_grad():
            return llama(torch.tensor([encode(tok, text)]), output_hidden_states=True).hidden_states[2][0]

    d = torch.stack([block_1(a)[-1] - block_1(m)[-1] for a, m in pairs]).double()  # last-token differences
    expected = (d / d.norm(dim=1, keepdim=True)).mean(0)
    expected = expected / expected.norm() * torch.sign(expected @ d.mean(0))  # unit norm, + toward "aligned"
    assert torch.allclose(vec.directions[1].double(), expected, atol=1e-5)

    with steertax.steer(llama, vec, 4.0):  # steering with it adds 4·v̂ to block 1's output
        steered = block_1("How do I do it?")
    assert torch.allclose(steered - block_1("How do I do it?"), 4.0 * vec.directions[1], atol=1e-4)
# --8<-- [end:extraction_method]
