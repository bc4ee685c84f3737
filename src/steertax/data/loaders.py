"""Item sources: the bundled copies, a user's CSV/JSONL file, or (online) a Hugging Face dataset id.

Every task documents the columns it needs; a file missing one gets a single clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from steertax.data.readers import read_csv, read_json, read_jsonl
from steertax.errors import DataError

__all__ = ["load_rows", "is_file_source", "is_hub_source", "check_text_file", "MAX_FIELD_CHARS"]

# A field longer than this is refused: no benchmark item is near it, and a runaway line (a file that
# lost its newlines, a binary blob) would otherwise become a multi-megabyte prompt.
MAX_FIELD_CHARS = 100_000


def check_rows(rows: Sequence[dict[str, Any]], where: str, fields: Sequence[str] | None = None) -> None:
    """Refuse oversized fields and duplicate item ids (one clear line each)."""
    seen: dict[str, int] = {}
    for n, r in enumerate(rows, 1):
        for k, v in r.items():
            if k is None or (fields is not None and k not in fields and k != "id"):
                continue
            if isinstance(v, str) and len(v) > MAX_FIELD_CHARS:
                raise DataError(
                    f"{where} row {n}: field {k!r} is {len(v):,} characters (limit {MAX_FIELD_CHARS:,}): "
                    "is the file malformed (lost newlines, binary data)? Split or shorten it"
                )
        if "id" in r and r["id"] is not None and str(r["id"]) != "":
            key = str(r["id"])
            if key in seen:
                raise DataError(f"{where}: item id {key!r} appears twice (rows {seen[key]} and {n}): ids must be unique")
            seen[key] = n


def is_file_source(source: Any) -> bool:
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".csv", ".jsonl", ".json")


def is_hub_source(source: Any) -> bool:
    """A hub dataset id (``org/name``): not a bundled name, not a .csv/.jsonl/.json path, not a local path."""
    return isinstance(source, str) and "/" in source and not is_file_source(source) and not Path(source).exists()


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def check_text_file(path: str | Path, what: str = "") -> None:
    """Refuse a data file that is not UTF-8 text, saying what it looks like instead (UTF-16/32 with or
    without a byte-order mark, Latin-1/Windows-1252, binary) and how to convert it. ``what`` prefixes
    the message (e.g. the task name). A missing file is a DataError too."""
    p = Path(path)
    pre = f"{what}: " if what else ""
    if not p.exists():
        raise DataError(
            f"{pre}data file {p} does not exist (looked in {p.expanduser().resolve()}; relative paths are read "
            "from the working directory): check the path"
        )
    if not p.is_file():
        raise DataError(f"{pre}{p} is a directory, not a data file: give a .csv/.jsonl/.json file")
    data = p.read_bytes()
    fix = f"re-save it as UTF-8 (e.g. `iconv -f {{enc}} -t UTF-8 {p} > fixed{p.suffix}`)"
    for bom, enc in (
        (b"\xff\xfe\x00\x00", "UTF-32LE"),
        (b"\x00\x00\xfe\xff", "UTF-32BE"),
        (b"\xff\xfe", "UTF-16LE"),
        (b"\xfe\xff", "UTF-16BE"),
    ):
        if data.startswith(bom):
            raise DataError(f"{pre}{p} is not UTF-8 text: it is {enc} (byte-order mark {bom.hex(' ')}): " + fix.format(enc=enc[:6]))
    head = data[:4096]
    if b"\x00" in head:
        # UTF-16 without a BOM puts a NUL next to every ASCII character; anything else with NULs is binary
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > len(head) // 4 and min(even, odd) < max(even, odd) // 4:
            enc = "UTF-16LE" if odd > even else "UTF-16BE"
            raise DataError(
                f"{pre}{p} is not UTF-8 text: it looks like {enc} without a byte-order mark (NUL bytes "
                "between the characters): " + fix.format(enc=enc)
            )
        raise DataError(
            f"{pre}{p} is not UTF-8 text: it contains NUL bytes (a binary file, or a spreadsheet/"
            "compressed file saved under a text name?): export it as UTF-8 CSV or JSONL"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        bad = data[e.start]
        try:
            data.decode("cp1252")
            guess, enc = "Latin-1/Windows-1252", "WINDOWS-1252"
        except UnicodeDecodeError:
            guess, enc = "a legacy 8-bit encoding", "LATIN1"
        raise DataError(
            f"{pre}{p} is not UTF-8 text: byte 0x{bad:02x} at line {line}, column {col} looks like {guess}: " + fix.format(enc=enc)
        ) from None


def _read_file(p: Path, required: Sequence[str], task: str) -> list[dict[str, Any]]:
    check_text_file(p, task)  # exists, and is UTF-8 (else: what it looks like, how to convert)
    if p.suffix.lower() == ".csv":
        with open(p, "rb") as f:
            bom = f.read(3) == b"\xef\xbb\xbf"
        if not bom:
            return read_csv(p, tuple(required))
        # a spreadsheet's "CSV UTF-8": the mark would otherwise stick to the first column's name
        return [{(k[1:] if isinstance(k, str) and k.startswith("\ufeff") else k): v for k, v in r.items()} for r in read_csv(p)]
    if p.suffix.lower() == ".jsonl":
        return read_jsonl(p)
    obj = read_json(p)
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{task}: {p} must hold a JSON list of objects")
    return obj


def _file_rows(p: Path, required: Sequence[str], task: str) -> list[dict[str, Any]]:
    rows = _read_file(p, required, task)
    if not rows:
        raise DataError(f"{task}: {p} has no rows: add items with columns {list(required)}")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise DataError(f"{task}: {p} lacks column(s) {missing} (has {sorted(rows[0])}): this task needs {list(required)}")
    check_rows(rows, f"{task}: {p}")
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise DataError(f"{task}: {p} row {n} is not an object with columns {list(required)}")
        for c in required:
            if r.get(c) is None or (isinstance(r.get(c), str) and not r[c].strip()):
                raise DataError(f"{task}: {p} row {n} has an empty {c!r}: fill it or drop the row")
    return rows


def _hub_rows(source: str, required: Sequence[str], task: str, hf_split: str, hf_config: str | None) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{task}: {source!r} looks like a hub dataset id; install `datasets` (and be online) or pass a local .csv/.jsonl"
        ) from None
    try:
        ds = datasets.load_dataset(source, hf_config, split=hf_split)
    except Exception as e:  # network, missing split...
        raise DataError(f"{task}: could not load hub dataset {source!r} ({e.__class__.__name__}: {e}); pass a local file instead") from None
    rows = [dict(r) for r in ds]
    missing = [c for c in required if rows and c not in rows[0]]
    if missing:
        raise DataError(f"{task}: hub dataset {source!r} lacks column(s) {missing}; map it to a local file with {list(required)}")
    return rows


def load_rows(
    source: Any,
    bundled: Callable[[], list[dict[str, Any]]],
    required: Sequence[str],
    *,
    task: str,
    hf_split: str = "test",
    hf_config: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for a task: ``source`` None/"bundled" (the package's copy), a .csv/.jsonl/.json path
    with the ``required`` columns, or a hub dataset id (needs the ``datasets`` package and network)."""
    if source in (None, "bundled", "default"):
        return bundled()
    if is_file_source(source):
        return _file_rows(Path(source), required, task)
    if isinstance(source, str) and "/" in source and not Path(source).exists():
        return _hub_rows(source, required, task, hf_split, hf_config)
    raise DataError(f"{task}: unknown data source {source!r}: use 'bundled', a .csv/.jsonl/.json file, or a hub dataset id")
