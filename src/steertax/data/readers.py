"""Readers of the bundled data files and of users' files: one-line DataErrors for a missing, non-UTF-8 or
malformed file."""

from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path
from typing import Any

from steertax.errors import DataError

__all__ = ["data_path", "read_json", "read_jsonl", "read_csv"]


def data_path(*parts: str) -> Path:
    """Path of a bundled data file, e.g. ``data_path("advbench", "harmful_behaviors.csv")``."""
    p = Path(str(resources.files(__package__))).joinpath(*parts)
    if not p.exists():
        raise DataError(f"bundled data file {'/'.join(parts)} is missing: reinstall steertax")
    return p


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"data file {path} does not exist: check the path")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}): re-save it as UTF-8") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(_open_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}: {e.msg}): fix the file") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    rows = []
    for n, line in enumerate(_open_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n} is not valid JSON ({e.msg}): one JSON object per line expected") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path} line {n} is not a JSON object: one object per line expected")
        rows.append(obj)
    return rows


def read_csv(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    path = Path(path)
    text = _open_text(path)
    csv.field_size_limit(1 << 28)
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None:
        raise DataError(f"{path} is empty: a header row with columns {list(required)} is needed")
    longest = max((len(f or "") for f in reader.fieldnames), default=0)
    if longest > 10_000:
        raise DataError(f"{path}: the header row is {longest:,} characters: the file seems to lack newlines or is not CSV")
    missing = [c for c in required if c not in reader.fieldnames]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing} (has {reader.fieldnames}): add them to the header row")
    return list(reader)
