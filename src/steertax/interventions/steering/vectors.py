"""SteeringVector: per-layer unit directions plus full provenance; safetensors + JSON, no pickle."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from steertax._util import atomic_write_bytes, atomic_write_json, format_layers, parse_layers
from steertax.errors import VectorError
from steertax.models import hidden_size, model_id, num_layers

__all__ = ["SteeringVector", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META_KEY = "steertax"


@dataclass
class SteeringVector:
    """Unit directions per layer; ``+`` points to the aligned pole.

    Attributes:
        directions: layer index -> float32 unit vector of the model's hidden size.
        model_id, hidden_size, num_layers: the model it was extracted from.
        method: the extraction method's name: ``pca`` (RepE reading vector), ``mean_diff``, ``probe`` or one
            registered in :mod:`steertax.interventions.steering.extraction`.
        position: where activations were read (``last`` token or ``answer_mean``).
        pair_source, n_pairs, n_heldout: the contrast data.
        accuracy: layer -> fraction of held-out pairs whose aligned member projects higher.
        layer_norms: layer -> mean L2 norm of the residual stream at the read position (position 0 excluded).
        aligned_pole, misaligned_pole: what + and - mean, in words.
        extra: free-form provenance (seed, steertax version, timestamps, raw norms).
    """

    directions: dict[int, torch.Tensor]
    model_id: str
    hidden_size: int
    num_layers: int
    method: str
    position: str = "last"
    pair_source: str = ""
    n_pairs: int = 0
    n_heldout: int = 0
    accuracy: dict[int, float] = field(default_factory=dict)
    layer_norms: dict[int, float] = field(default_factory=dict)
    aligned_pole: str = "aligned"
    misaligned_pole: str = "misaligned"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directions = {int(k): v for k, v in self.directions.items()}
        self.accuracy = {int(k): float(v) for k, v in self.accuracy.items()}
        self.layer_norms = {int(k): float(v) for k, v in self.layer_norms.items()}
        for k, v in self.directions.items():
            if not isinstance(v, torch.Tensor) or v.ndim != 1 or v.shape[0] != self.hidden_size:
                raise VectorError(f"direction for layer {k} must be a 1-D tensor of size {self.hidden_size}")

    # ------------------------------------------------------------------ basics
    @property
    def layers(self) -> list[int]:
        return sorted(self.directions)

    def __neg__(self) -> "SteeringVector":
        """The same axis with the poles swapped: steering with -v at -r equals v at r."""
        return self.replace(
            directions={k: -v for k, v in self.directions.items()},
            aligned_pole=self.misaligned_pole,
            misaligned_pole=self.aligned_pole,
            accuracy={k: 1.0 - a for k, a in self.accuracy.items()},
        )

    def replace(self, **changes: Any) -> "SteeringVector":
        d = {
            "directions": {k: v.clone() for k, v in self.directions.items()},
            "model_id": self.model_id,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "method": self.method,
            "position": self.position,
            "pair_source": self.pair_source,
            "n_pairs": self.n_pairs,
            "n_heldout": self.n_heldout,
            "accuracy": dict(self.accuracy),
            "layer_norms": dict(self.layer_norms),
            "aligned_pole": self.aligned_pole,
            "misaligned_pole": self.misaligned_pole,
            "extra": json.loads(json.dumps(self.extra)),
        }
        d.update(changes)
        return SteeringVector(**d)

    def select(self, layers: Any) -> "SteeringVector":
        """A copy restricted to some layers (``"8-12"`` or a list)."""

        chosen = parse_layers(layers, self.num_layers)
        missing = [i for i in chosen if i not in self.directions]
        if missing:
            raise VectorError(f"vector has no layer(s) {missing}; it covers {format_layers(self.layers)}")
        return self.replace(directions={i: self.directions[i].clone() for i in chosen})

    def check_compatible(self, model: Any, *, force: bool = False) -> None:
        """Raise VectorError if this vector was made for a model of another shape (or another model, unless forced)."""

        d = hidden_size(model)
        if d != self.hidden_size:
            raise VectorError(
                f"vector was extracted from {self.model_id!r} with hidden size {self.hidden_size}, but this model's is {d}: "
                "extract a vector from this model (steertax extract --model ...)"
            )
        n = num_layers(model)
        mid = model_id(model)
        if not force and (n != self.num_layers or mid != self.model_id):
            raise VectorError(
                f"vector was extracted from {self.model_id!r} ({self.num_layers} layers) but the model is {mid!r} ({n} layers): "
                "extract a vector from this model, or pass force=True (--force) if they really share weights"
            )

    def metadata(self) -> dict[str, Any]:
        return {
            "format": "steertax.SteeringVector",
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "method": self.method,
            "position": self.position,
            "pair_source": self.pair_source,
            "n_pairs": self.n_pairs,
            "n_heldout": self.n_heldout,
            "layers": self.layers,
            "accuracy": {str(k): v for k, v in sorted(self.accuracy.items())},
            "layer_norms": {str(k): v for k, v in sorted(self.layer_norms.items())},
            "aligned_pole": self.aligned_pole,
            "misaligned_pole": self.misaligned_pole,
            "extra": self.extra,
        }

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors; metadata embedded) and a human-readable ``<path>.json`` sidecar.
        Both writes are atomic. Returns the safetensors path."""

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        meta = self.metadata()
        tensors = {f"layer.{k}": v.detach().to("cpu").contiguous() for k, v in sorted(self.directions.items())}
        blob = save(tensors, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
        atomic_write_bytes(path, blob)
        atomic_write_json(sidecar_path(path), meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        """Read a vector written by :meth:`save` (the sidecar is optional; the embedded metadata suffices)."""

        path = Path(path)
        if not path.is_file():
            raise VectorError(f"vector file {path} does not exist: check the path or create it with `steertax extract`")
        if path.suffix.lower() == ".gguf":
            raise VectorError(f"{path} is a GGUF file: read a control vector with `steertax import {path} --out vector.safetensors`")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta_s = (f.metadata() or {}).get(_META_KEY)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise VectorError(
                f"{path} is not a readable safetensors file ({e.__class__.__name__}: {e}): re-create it with `steertax extract`"
            ) from None
        if meta_s is None:
            side = sidecar_path(path)
            if side.is_file():
                meta_s = side.read_text()
            else:
                raise VectorError(
                    f"{path} has no steertax metadata and no {side.name} sidecar: "
                    "is it a steertax vector? Use `steertax import` for other formats"
                )
        try:
            meta = json.loads(meta_s)
        except json.JSONDecodeError as e:
            raise VectorError(f"{path}: metadata is not valid JSON ({e}); re-create the vector") from None
        if meta.get("format_version", 1) > FORMAT_VERSION:
            raise VectorError(f"{path} was written by a newer steertax (format {meta['format_version']}): upgrade steertax")
        dirs = {}
        for k, v in tensors.items():
            if not k.startswith("layer."):
                continue
            dirs[int(k.split(".", 1)[1])] = v
        if not dirs:
            raise VectorError(f"{path} holds no 'layer.N' tensors: is it a steertax vector?")
        return cls.from_metadata(dirs, meta, where=str(path))

    @classmethod
    def from_metadata(cls, directions: dict[int, torch.Tensor], meta: dict[str, Any], *, where: str = "vector") -> "SteeringVector":
        """Rebuild a vector from its directions and :meth:`metadata` (statistics kept for its layers only)."""
        keep = {str(k) for k in directions}
        try:
            return cls(
                directions=directions,
                model_id=meta["model_id"],
                hidden_size=int(meta["hidden_size"]),
                num_layers=int(meta["num_layers"]),
                method=meta["method"],
                position=meta.get("position", "last"),
                pair_source=meta.get("pair_source", ""),
                n_pairs=int(meta.get("n_pairs", 0)),
                n_heldout=int(meta.get("n_heldout", 0)),
                accuracy={k: v for k, v in meta.get("accuracy", {}).items() if str(k) in keep},
                layer_norms={k: v for k, v in meta.get("layer_norms", {}).items() if str(k) in keep},
                aligned_pole=meta.get("aligned_pole", "aligned"),
                misaligned_pole=meta.get("misaligned_pole", "misaligned"),
                extra=dict(meta.get("extra", {})),
            )
        except KeyError as e:
            raise VectorError(f"{where}: metadata lacks {e.args[0]!r}; re-create the vector") from None

    def summary(self) -> str:
        lines = [
            f"SteeringVector  method={self.method}  position={self.position}  model={self.model_id}",
            f"  + = {self.aligned_pole}   - = {self.misaligned_pole}",
            f"  pairs: {self.pair_source} (train {self.n_pairs}, held-out {self.n_heldout})",
            "  layer  held-out acc  mean residual norm",
        ]
        for k in self.layers:
            acc = self.accuracy.get(k)
            nrm = self.layer_norms.get(k)
            lines.append(f"  {k:>5}  {'' if acc is None else f'{acc:12.3f}'}  {'' if nrm is None else f'{nrm:18.2f}'}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SteeringVector(method={self.method!r}, model_id={self.model_id!r}, layers={format_layers(self.layers)!r}, "
            f"aligned_pole={self.aligned_pole!r})"
        )


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".safetensors")] + ".json" if path.name.endswith(".safetensors") else path.name + ".json")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
