"""What the classifier judges share: a model named by hub id, local folder or built-in name (loaded on first
use, or given loaded), its published prompt, greedy decoding of its short verdict, and the parse of that
verdict. Each classifier is one file (:mod:`~steertax.judges.llama_guard`, :mod:`~steertax.judges.wildguard`,
:mod:`~steertax.judges.harmbench`) that declares its prompt and its parser."""

from __future__ import annotations

from typing import Any, Sequence

from steertax.generation import generate
from steertax.judges.base import ModelBackedJudge, Verdict

__all__ = ["ClassifierJudge"]


class ClassifierJudge(ModelBackedJudge):
    """A classifier judge: ``model`` (a name loaded on first use with ``dtype``/``device``, or a loaded model with
    its ``tokenizer``); subclasses set ``default_model`` and ``max_new_tokens`` and implement :meth:`prompt`
    (the published prompt of one prompt/answer pair, as text the model reads) and :meth:`parse` (its output)."""

    default_model: str = ""
    max_new_tokens: int = 16

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        batch_size: int = 8,
        dtype: Any = None,
        device: Any = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(self.default_model if model is None else model, tokenizer, dtype, device, backend)
        self.batch_size = int(batch_size)

    def prompt(self, tokenizer: Any, prompt: str, answer: str) -> str:
        raise NotImplementedError

    def parse(self, output: str) -> Verdict:
        raise NotImplementedError

    def outputs(self, answers: Sequence[str], prompts: Sequence[str]) -> list[str]:
        """The classifier's raw outputs (greedy, ``max_new_tokens``), one per answer."""
        model, tok = self.loaded()
        texts = [self.prompt(tok, p, a) for p, a in zip(prompts, answers, strict=True)]
        return generate(
            model, tok, texts, chat=False, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, backend=self.resolved_backend
        )

    def judge(self, answers: Sequence[str], prompts: Sequence[str]) -> list[Verdict]:
        if not answers:
            return []
        return [self.parse(o) for o in self.outputs(answers, prompts)]
