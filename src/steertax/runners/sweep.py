"""Run the (task x strength) grid into a ResultStore, resumably.

Each task's items are cut into fixed chunks; a chunk is evaluated at every strength at once
(strengths batched per row) and committed as one cell. Rerunning skips committed cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from tqdm.auto import tqdm

from steertax.interventions.steering.vectors import now_iso
from steertax.store import ResultStore
from steertax.tasks import Item, Task, evaluate

__all__ = ["TaskSpec", "run_sweep", "cell_plan", "eval_cell"]


@dataclass
class TaskSpec:
    task: Task
    limit: int | None = None
    key: str | None = None  # name in the store (defaults to task.name)
    growable: bool = False  # cells cut from the seeded shuffle itself: a larger limit adds cells, never changes one

    def cell_items(self, seed: int) -> list[Item]:
        """The items in cell order: the task's own order, or (growable) the seeded shuffle's order, so the
        first k·chunk items are the same for every limit ≥ k·chunk (the same set as ``task.items``)."""
        if not self.growable:
            return self.task.items(self.limit, seed)
        items = self.task.load_items()
        idx = list(range(len(items)))
        random.Random(seed).shuffle(idx)
        return [items[i] for i in idx[: self.limit if self.limit is not None else len(items)]]

    @property
    def name(self) -> str:
        return self.key or self.task.name


def run_sweep(
    model: Any,
    tokenizer: Any,
    vector: Any,
    specs: Sequence[TaskSpec],
    strengths: Sequence[float],
    store: ResultStore,
    run_id: str,
    *,
    seed: int = 0,
    chunk: int = 16,
    batch_size: int = 32,
    progress: bool = True,
    method: str = "steering",
    setting: str | None = None,
    reference: Any = None,
    condition: Any = None,
    backend: str = "hf",
) -> dict[str, int]:
    """Evaluate every task chunk not yet in the store; returns rows written per task."""
    written: dict[str, int] = {}
    for spec in specs:
        cells = cell_plan(spec, seed, chunk)
        done = store.done_cells(run_id, spec.name)
        todo = [(k, its) for k, its in cells if k not in done]
        written[spec.name] = 0
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=spec.name, unit="cell", disable=not progress)
        for key, its in todo:
            records = eval_cell(
                model,
                tokenizer,
                spec,
                its,
                vector,
                strengths,
                seed=seed,
                batch_size=batch_size,
                reference=reference,
                condition=condition,
                backend=backend,
            )
            store.write_cell(run_id, spec.name, key, records, now_iso(), method=method, setting=setting)
            written[spec.name] += len(records)
            bar.update(1)
        bar.close()
    return written


def cell_plan(spec: TaskSpec, seed: int, chunk: int) -> list[tuple[str, list[Item]]]:
    """A task's items cut into the store's cells: (cell key, items), in order."""
    items = spec.cell_items(seed)
    tag = "g" if spec.growable else ""
    return [(f"{tag}{c:05d}", items[c * chunk : (c + 1) * chunk]) for c in range((len(items) + chunk - 1) // chunk)]


def eval_cell(
    model: Any,
    tokenizer: Any,
    spec: TaskSpec,
    items: Sequence[Item],
    vector: Any,
    strengths: Sequence[float],
    *,
    seed: int,
    batch_size: int,
    reference: Any = None,
    condition: Any = None,
    backend: str = "hf",
) -> list[dict[str, Any]]:
    """One cell's records: its items at every strength. Every executor computes a cell with this."""
    res = evaluate(
        model,
        tokenizer,
        spec.task,
        vector if any(strengths) else None,
        strengths,
        seed=seed,
        items=list(items),
        batch_size=batch_size,
        progress=False,
        force=True,
        reference=reference,
        condition=condition,
        backend=backend,
    )
    return res.records
