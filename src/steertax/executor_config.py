"""``executor:`` in a run/align/merge config: its dataclass and its checks. Kept apart from
:mod:`steertax.runners.executors` (which runs the cells, and re-exports these) so that the configuration
layer can validate it without importing the runners above it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from steertax.errors import ConfigError

__all__ = ["KINDS", "ExecutorConfig", "check_executor"]

KINDS = ("local", "ray")


@dataclass
class ExecutorConfig:
    """``executor:`` in a run/align/merge config (the CLI's ``--executor`` / ``--ray-address`` override it)."""

    kind: str = "local"  # local | ray
    address: Optional[str] = None  # ray: a running cluster ("auto", "HOST:6379", "ray://HOST:10001"); None starts a local one
    num_workers: Optional[int] = None  # ray: actors (default: the cluster's GPUs, else its CPUs / num_cpus)
    num_cpus: float = 1.0  # ray: CPUs per actor (its torch threads)
    num_gpus: Optional[float] = None  # ray: GPUs per actor (default: 1 where the cluster has GPUs, else 0)
    max_retries: int = 3  # ray: how often one piece of work is retried after its worker died


def check_executor(e: ExecutorConfig) -> None:
    if e.kind not in KINDS:
        raise ConfigError(f"executor.kind {e.kind!r} is unknown: use one of {', '.join(KINDS)}")
    if e.num_workers is not None and e.num_workers < 1:
        raise ConfigError(f"executor.num_workers must be >= 1 (got {e.num_workers})")
    if e.num_cpus <= 0 or (e.num_gpus is not None and e.num_gpus < 0):
        raise ConfigError("executor.num_cpus must be > 0 and executor.num_gpus >= 0")
