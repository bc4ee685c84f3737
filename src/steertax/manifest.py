"""The run manifest: what a run folder holds, typed and versioned (``manifest.json``).

Every command that writes a run folder (``steertax run``, ``align``, ``merge``) writes one manifest, and every
reader (``compare``, ``fit``, ``tax``, the summaries and figures, the CLI's folder checks) reads it through
:func:`read_manifest`. Nothing reads a method, a knob or a family out of a display label: each evaluated
setting says what it is.

- An :class:`Entry` is one store key (one intervention): its method, label, adapter folder and its
  :class:`Row` s. A single setting has one row (``strength`` None: all the key's rows); a batched knob sweep
  (an adapter's α grid, a merge's λ grid, a steering grid) has one row per value, selected by the strength
  its rows carry.
- A row sits on zero or more *curves*: ``on`` maps a :class:`Family` name to the row's knob value there. One
  setting can sit on two curves (DPO at β = 0.1 is a point of DPO's β curve and the λ = 0 end of regularized
  DPO's λ curve at β = 0.1).
- A :class:`Family` is a curve: its method, group (steering, fine-tuning, merging), its :class:`Knob` and
  whether it is primary (a secondary curve, the α curve of one point of another curve, is compared with the
  steering curves only).
- A :class:`Knob` says where the base sits (0 for r, α, a merge's scale; ∞ for β and regularized DPO's λ; None
  when the curve does not start at the base, as the flipped-preference fraction f, whose 0 is DPO itself) and
  the axis the paper's laws are fitted along (r, α, 1/β, 1/λ, …), or why none is.

Folders written before the manifest are refused in one line naming the fix (rerun the same command into the
folder: finished work is reused).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from steertax._util import atomic_write_text
from steertax.errors import DataError

__all__ = ["MANIFEST_VERSION", "MANIFEST_FILE", "Knob", "Family", "Row", "Entry", "Manifest", "read_manifest", "folder_kind"]

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
KINDS = ("run", "align", "merge")
# the resolved config each kind of folder writes (for the folder's own settings; the manifest is the index)
RESOLVED_FILES = {"run": "config.resolved.yaml", "align": "align.resolved.yaml", "merge": "merge.resolved.yaml"}


@dataclass(frozen=True)
class Knob:
    """A knob: the parameter a curve moves along.

    ``name`` is the parameter (``beta``, ``lambda``, ``alpha``, ``r``, ``scale``, ``flip``, ``share``, ``weight``),
    ``symbol`` how reports write it, ``base`` the knob value at which the setting is the base model (0.0, ``inf``,
    or None: the curve does not start at the base), ``axis`` the strength the paper's laws are fitted along
    (``"value"``: the knob as it is; ``"inverse"``: 1/knob, for knobs whose base is at ∞), None when no law is
    fitted, with ``why``."""

    name: str
    symbol: str
    base: Optional[float] = 0.0
    axis: Optional[str] = "value"
    why: str = ""

    def __post_init__(self) -> None:
        if self.axis not in (None, "value", "inverse"):
            raise ValueError(f"knob {self.name}: axis {self.axis!r} is not value, inverse or None")
        if self.axis == "inverse" and self.base != math.inf:
            raise ValueError(f"knob {self.name}: an inverse axis needs the base at ∞")

    @property
    def law_axis(self) -> Optional[str]:
        """How the fitted strength is written: ``β`` as it is, ``1/β`` for an inverse knob; None if not fitted."""
        if self.axis is None:
            return None
        return self.symbol if self.axis == "value" else f"1/{self.symbol}"

    def law_value(self, v: float) -> float:
        return float(v) if self.axis == "value" else 1.0 / float(v)

    def sort_key(self, v: Optional[float]) -> tuple[bool, float]:
        """Knob order from the base outwards: ascending from a base at 0 (or none), descending from a base at ∞."""
        if v is None:
            return (True, 0.0)
        return (False, -v if self.base == math.inf else v)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["base"] = _num_out(self.base)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Knob":
        return cls(d["name"], d["symbol"], _num_in(d.get("base")), d.get("axis"), d.get("why", ""))


# the knobs every family of this package uses; a method declares its own (one of these or a new one)
R_KNOB = Knob("r", "r")
ALPHA_KNOB = Knob("alpha", "α")
SCALE_KNOB = Knob("scale", "λ")
POINT_KNOB = Knob("setting", "setting", None, None, "a single setting, not a curve")


@dataclass
class Family:
    """A curve (or a single setting): ``name`` is unique in its folder, ``method`` the method it runs,
    ``group`` the family of methods (steering, fine-tuning, merging) reports colour by."""

    name: str
    method: str
    group: str
    knob: Knob
    primary: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "group": self.group, "knob": self.knob.to_dict(), "primary": self.primary}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Family":
        return cls(d["name"], d["method"], d["group"], Knob.from_dict(d["knob"]), bool(d.get("primary", True)))


@dataclass
class Row:
    """One setting of an entry: its label, the strength its rows carry (None: all of the entry's rows) and the
    curves it sits on (family name -> knob value)."""

    label: str
    strength: Optional[float] = None
    on: dict[str, Optional[float]] = field(default_factory=dict)  # None: a point family (no knob value)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "strength": self.strength, "on": {k: _num_out(v) for k, v in self.on.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Row":
        s = d.get("strength")
        on = {k: None if v is None else float(_num_in(v)) for k, v in (d.get("on") or {}).items()}
        return cls(d["label"], None if s is None else float(s), on)


@dataclass
class Entry:
    """One store key: an intervention, its method and label, where its adapter lives, its rows, and what a
    reader needs to rebuild it (``extra``: e.g. the setting an α sweep scales, the values of its grid)."""

    key: str
    method: str
    label: str
    rows: list[Row]
    adapter: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "method": self.method,
            "label": self.label,
            "adapter": self.adapter,
            "rows": [r.to_dict() for r in self.rows],
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Entry":
        return cls(d["key"], d["method"], d["label"], [Row.from_dict(r) for r in d["rows"]], d.get("adapter"), dict(d.get("extra") or {}))


@dataclass
class Manifest:
    """A run folder's index: its kind, run id, model, dtype, seed, tasks (the resolved task configs), the base
    (an entry's key and the strength of its base rows, None for all), every family and every entry."""

    kind: str
    run_id: str
    model: str
    dtype: Optional[str]
    seed: int
    tasks: list[dict[str, Any]]
    base_key: str
    base_strength: Optional[float] = None
    families: list[Family] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def family(self, name: str) -> Family:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    def add_family(self, fam: Family) -> Family:
        """``fam``, or the family of that name already there (which must agree on method and knob)."""
        for f in self.families:
            if f.name == fam.name:
                if (f.method, f.knob) != (fam.method, fam.knob):
                    raise ValueError(f"family {fam.name!r} declared twice with different methods or knobs")
                return f
        self.families.append(fam)
        return fam

    def entry(self, key: str) -> Entry:
        for e in self.entries:
            if e.key == key:
                return e
        raise KeyError(key)

    def rows(self) -> Iterator[tuple[Entry, Row]]:
        for e in self.entries:
            for r in e.rows:
                yield e, r

    def points(self, family: str) -> list[tuple[Entry, Row, Optional[float]]]:
        """A family's settings, in knob order from the base outwards: (entry, row, knob value)."""
        fam = self.family(family)
        pts = [(e, r, r.on[family]) for e, r in self.rows() if family in r.on]
        return sorted(pts, key=lambda p: fam.knob.sort_key(p[2]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": self.version,
            "kind": self.kind,
            "run_id": self.run_id,
            "model": self.model,
            "dtype": self.dtype,
            "seed": self.seed,
            "tasks": self.tasks,
            "base": {"key": self.base_key, "strength": self.base_strength},
            "families": [f.to_dict() for f in self.families],
            "entries": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        return cls(
            d["kind"],
            d["run_id"],
            d["model"],
            d.get("dtype"),
            int(d.get("seed", 0)),
            list(d.get("tasks") or []),
            d["base"]["key"],
            d["base"].get("strength"),
            [Family.from_dict(f) for f in d.get("families") or []],
            [Entry.from_dict(e) for e in d.get("entries") or []],
            int(d["manifest_version"]),
        )

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/manifest.json`` atomically (checked first: every row's curve is a declared family)."""
        names = {f.name for f in self.families}
        for e, r in self.rows():
            missing = [k for k in r.on if k not in names]
            if missing:
                raise ValueError(f"manifest: row {r.label!r} of {e.label!r} sits on undeclared families {missing}")
        path = Path(folder) / MANIFEST_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        return path


def folder_kind(folder: str | Path) -> str:
    """``run``, ``align`` or ``merge``: the command that wrote the folder (from its manifest, else its resolved
    config); a DataError naming the fix if it is none of them."""
    d = Path(folder)
    if (d / MANIFEST_FILE).is_file():
        return str(read_manifest(d).kind)
    for kind, name in RESOLVED_FILES.items():
        if (d / name).is_file():
            return kind
    raise DataError(f"{d} is not a steertax run, align or merge output folder (no manifest.json): give a folder those commands wrote")


def read_manifest(folder: str | Path) -> Manifest:
    """A run folder's manifest; a folder from before manifests (or from a newer steertax) is refused in one line."""
    d = Path(folder)
    path = d / MANIFEST_FILE
    if not path.is_file():
        kind = next((k for k, n in RESOLVED_FILES.items() if (d / n).is_file()), None)
        if kind is None:
            raise DataError(
                f"{d} is not a steertax run, align or merge output folder (no manifest.json): give a folder those commands wrote"
            )
        raise DataError(
            f"{d} was written by an older steertax (no manifest.json) or its run has not finished: rerun the same "
            f"`steertax {kind}` command into it (finished work is reused)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}): rerun the command that wrote the folder") from None
    v = raw.get("manifest_version") if isinstance(raw, dict) else None
    if not isinstance(v, int) or v > MANIFEST_VERSION:
        raise DataError(f"{path} has manifest version {v!r}; this steertax reads up to {MANIFEST_VERSION}: upgrade steertax")
    try:
        return Manifest.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path} is incomplete ({e!r}): rerun the command that wrote the folder") from None


def _num_out(v: Optional[float]) -> Any:
    """JSON has no ∞: written as the string "inf"."""
    return "inf" if v == math.inf else v


def _num_in(v: Any) -> Any:
    return math.inf if v == "inf" else v
