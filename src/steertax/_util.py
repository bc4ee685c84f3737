"""Small shared helpers: atomic writes, strict JSON, hashing, cache directory, layer-range parsing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from steertax.errors import LayerError


def cache_dir() -> Path:
    """The user cache directory: $STEERTAX_CACHE, else $XDG_CACHE_HOME/steertax, else ~/.cache/steertax."""
    env = os.environ.get("STEERTAX_CACHE")
    if env:
        d = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        d = Path(base) / "steertax"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temporary file in the same directory, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def json_default(o: object) -> object:
    """``json.dumps``' ``default`` for numpy values: floats (NaN and infinities as null), integers, booleans,
    arrays; anything else as its text."""
    if isinstance(o, np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def sanitize_json(o: Any) -> Any:
    """Strict JSON: NaN and infinities become null, inside dicts and lists too."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: sanitize_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [sanitize_json(v) for v in o]
    return o


def parse_layers(spec: str | int | Iterable[int] | None, num_layers: int | None = None) -> list[int]:
    """Parse a layer selection: ``"8-12,14"``, ``"10"``, ``[8, 9]``, ``8``; negative ints count from the end.

    Returns a sorted list of unique non-negative indices. With ``num_layers`` given, every index is
    checked against the model's depth.
    """
    if spec is None:
        raise LayerError("no layers given: pass layers like '8-12' or [8, 9, 10]")
    if isinstance(spec, bool):
        raise LayerError(f"invalid layer selection {spec!r}: use an int, a list of ints, or a string like '8-12,14'")
    if isinstance(spec, int):
        out = [spec]
    elif isinstance(spec, str):
        out = _parse_layer_string(spec)
    else:
        out = _parse_layer_list(spec)
    if not out:
        raise LayerError("empty layer selection: give at least one layer")
    if num_layers is not None:
        out = _resolve_negative_layers(out, num_layers)
    elif any(i < 0 for i in out):
        raise LayerError(f"negative layer in {spec!r} needs the model's depth to resolve")
    return sorted(set(out))


def _parse_layer_string(spec: str) -> list[int]:
    """``"8-12,14"`` -> [8, 9, 10, 11, 12, 14] (unsorted, with repeats; negatives kept)."""
    s = spec.replace(" ", "")
    if not s:
        raise LayerError("empty layer selection: use a string like '8-12,14'")
    out: list[int] = []
    for part in s.split(","):
        if not part:
            raise LayerError(f"invalid layer selection {spec!r}: empty item between commas")
        try:
            out.extend(_parse_layer_item(part, spec))
        except ValueError:
            raise LayerError(f"invalid layer selection {spec!r}: {part!r} is not an int or a range like '8-12'") from None
    return out


def _parse_layer_item(part: str, spec: str) -> list[int]:
    """One comma-separated item: ``"10"``, ``"-1"`` or a range ``"8-12"`` (ValueError if not an int)."""
    if "-" not in part[1:]:
        return [int(part)]
    i = part.index("-", 1)
    lo, hi = int(part[:i]), int(part[i + 1 :])
    if hi < lo:
        raise LayerError(f"invalid layer range {part!r} in {spec!r}: the end is before the start")
    return list(range(lo, hi + 1))


def _parse_layer_list(spec: Iterable[int]) -> list[int]:
    out: list[int] = []
    try:
        for x in spec:
            if isinstance(x, bool) or not float(x).is_integer():
                raise ValueError
            out.append(int(x))
    except (TypeError, ValueError):
        raise LayerError(f"invalid layer selection {spec!r}: use a list of ints or a string like '8-12'") from None
    return out


def _resolve_negative_layers(layers: list[int], num_layers: int) -> list[int]:
    """Negative indices counted from the end; every index checked against the model's depth."""
    fixed = []
    for i in layers:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise LayerError(f"layer {i} is out of range: this model has {num_layers} layers (valid: 0-{num_layers - 1})")
        fixed.append(j)
    return fixed


def format_layers(layers: Sequence[int]) -> str:
    """Inverse of parse_layers for display: [8,9,10,12] -> '8-10,12'."""
    layers = sorted(set(layers))
    parts: list[str] = []
    i = 0
    while i < len(layers):
        j = i
        while j + 1 < len(layers) and layers[j + 1] == layers[j] + 1:
            j += 1
        parts.append(str(layers[i]) if i == j else f"{layers[i]}-{layers[j]}")
        i = j + 1
    return ",".join(parts)


@contextlib.contextmanager
def quiet_renamed_checkpointing() -> Iterator[None]:
    """transformers 5 renamed gradient -> activation checkpointing and warns on the old names, which trl
    and peft still call; those FutureWarnings say nothing to a steertax user, so they are muted here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning)
        yield
