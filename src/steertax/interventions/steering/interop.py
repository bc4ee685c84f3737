"""Vectors that travel: llama.cpp control-vector GGUF (export and import) and lm-evaluation-harness
``steered`` files (export).

llama.cpp's control-vector GGUF (written by repeng's ``export_gguf``, llama.cpp's ``cvector-generator``
and others): architecture ``controlvector``, keys ``controlvector.model_hint`` and
``controlvector.layer_count``, and one float32 tensor ``direction.<k>`` per steered layer. llama.cpp
adds ``direction.<k>`` (times the scale given on the command line) to the output of decoder block k,
counting blocks from 0 as steertax does; block 0 is never steered there (its slot does not exist), so
a direction for layer 0 cannot be exported. steertax writes unit directions with ``+`` = aligned, so

    llama-cli -m model.gguf --control-vector-scaled vector.gguf R

adds ``R · v̂`` at every exported layer: the same ``r_e = R`` as ``steer(model, vector, R)``.

lm-evaluation-harness (``lm_eval --model steered --model_args pretrained=...,steer_path=FILE.pt``)
reads a ``torch.save``-d dict ``{hookpoint: {"steering_vector", "steering_coefficient", "action",
"bias"}}``; the hookpoint is the block's module name inside ``model.base_model`` (``layers.10`` for
Llama-family models). steertax writes that file and never loads such files back.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from steertax._util import atomic_write_bytes, format_layers
from steertax.errors import VectorError
from steertax.interventions.steering.hooks import check_strength
from steertax.interventions.steering.vectors import SteeringVector, now_iso
from steertax.models import find_blocks, hidden_size, model_id, num_layers

log = logging.getLogger("steertax")

__all__ = ["export_gguf", "import_gguf", "export_lm_eval", "lm_eval_hookpoints"]

_DIRECTION = re.compile(r"^direction\.(\d+)$")
_PROVENANCE_KEY = "steertax.vector"


def export_gguf(vector: SteeringVector, path: str | Path, *, model_hint: str | None = None) -> tuple[Path, list[int]]:
    """Write ``vector`` as a llama.cpp control-vector GGUF (atomic). Returns the path and the layers
    written; layer 0 is left out (llama.cpp cannot steer it) with a warning."""

    path = Path(path)
    if path.suffix != ".gguf":
        path = path.with_name(path.name + ".gguf")
    layers = [i for i in vector.layers if i >= 1]
    if 0 in vector.directions:
        log.warning("layer 0 is not exported: llama.cpp never steers the output of block 0")
    if not layers:
        raise VectorError("the vector has only layer 0, which llama.cpp cannot steer: extract it at later layers")
    hint = model_hint or _model_hint(vector)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, "controlvector")
        w.add_string("controlvector.model_hint", hint)
        w.add_uint32("controlvector.layer_count", len(layers))
        w.add_string(_PROVENANCE_KEY, json.dumps(vector.metadata(), sort_keys=True))
        for i in layers:
            w.add_tensor(f"direction.{i}", _unit(vector.directions[i]).cpu().numpy())
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: the file gets the user's umask, like any other output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path, layers


def _unit(v: torch.Tensor) -> torch.Tensor:
    """float32 unit vector; one that is already unit (to 1e-6) is kept bit for bit, so round trips are exact."""
    v = v.detach().float()
    n = float(v.double().norm())
    return v.clone() if abs(n - 1.0) <= 1e-6 else v / n


def _model_hint(vector: SteeringVector) -> str:
    arch = vector.extra.get("model_type")
    if arch:
        return str(arch)
    mid = vector.model_id.lower()
    for name in ("llama", "qwen2", "mistral", "gemma", "phi3", "gpt2"):
        if name in mid:
            return name
    return "llama" if "smollm" in mid else mid


def import_gguf(
    path: str | Path,
    *,
    model: Any = None,
    negate: bool = False,
    aligned_pole: str | None = None,
    misaligned_pole: str | None = None,
) -> SteeringVector:
    """Read a control-vector GGUF (steertax's own, repeng's, llama.cpp cvector-generator's, ...).

    Directions are rescaled to unit norm; the file's norms go to ``extra["gguf_norms"]`` (in llama.cpp
    a file scale S applies ``r_e = S · norm`` at each layer). A steertax-written file restores the
    full provenance. Other files carry no sign convention: ``+`` means the file's positive pole, so
    say what it is (``aligned_pole``) or pass ``negate=True``. With ``model`` the vector is bound to
    that model (its id, layer count and hidden size are checked)."""
    path = Path(path)
    fields, reader = _open_control_vector(path)
    dirs, norms = _read_directions(reader, path)
    sizes = {v.shape[0] for v in dirs.values()}
    if len(sizes) != 1:
        raise VectorError(f"{path}: directions have different sizes {sorted(sizes)}")
    d = sizes.pop()
    prov = fields.get(_PROVENANCE_KEY)
    if prov:
        vec = SteeringVector.from_metadata(dirs, json.loads(prov), where=str(path))
    else:
        hint = str(fields.get("controlvector.model_hint") or "unknown")
        vec = SteeringVector(
            directions=dirs,
            model_id=f"gguf:{hint}",
            hidden_size=d,
            num_layers=max(dirs) + 1,
            method="imported",
            position="unknown",
            pair_source=f"control-vector GGUF {path.name}",
            aligned_pole=aligned_pole or "the file's positive pole",
            misaligned_pole=misaligned_pole or "the file's negative pole",
            extra={"imported_from": str(path), "imported": now_iso(), "model_hint": hint},
        )
    vec.extra["gguf_norms"] = norms
    if model is not None:
        _bind_to_model(vec, model, path, rebind=not prov)
    if negate:
        vec = -vec
    if aligned_pole and prov:
        vec.aligned_pole = aligned_pole
    if misaligned_pole and prov:
        vec.misaligned_pole = misaligned_pole
    return vec


def _open_control_vector(path: Path) -> tuple[dict[str, Any], Any]:
    """The GGUF's key-value fields and its reader; VectorError unless it is a readable control vector."""

    if not path.is_file():
        raise VectorError(f"GGUF file {path} does not exist: check the path")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:
        raise VectorError(f"{path} is not a readable GGUF file ({e.__class__.__name__}: {e})") from None
    fields = {name: _field_value(f) for name, f in reader.fields.items()}
    arch = fields.get("general.architecture")
    if arch not in (None, "controlvector"):
        raise VectorError(f"{path} is a GGUF of architecture {arch!r}, not a control vector (architecture 'controlvector')")
    return fields, reader


def _read_directions(reader: Any, path: Path) -> tuple[dict[int, torch.Tensor], dict[str, float]]:
    """The ``direction.<k>`` tensors as unit directions by layer, and their norms in the file (keyed by str(k))."""
    dirs: dict[int, torch.Tensor] = {}
    norms: dict[str, float] = {}
    for t in reader.tensors:
        m = _DIRECTION.match(t.name)
        if not m:
            continue
        k = int(m.group(1))
        arr = np.asarray(t.data, dtype=np.float32).reshape(-1).copy()
        n = float(np.linalg.norm(arr))
        if not math.isfinite(n) or n == 0:
            raise VectorError(f"{path}: tensor {t.name} has norm {n}; cannot use it as a direction")
        norms[str(k)] = n
        dirs[k] = _unit(torch.from_numpy(arr))
    if not dirs:
        raise VectorError(f"{path} has no 'direction.<layer>' tensors: is it a llama.cpp control vector?")
    return dirs, norms


def _bind_to_model(vec: SteeringVector, model: Any, path: Path, *, rebind: bool) -> None:
    """Check ``vec`` fits ``model`` (hidden size, layers); with ``rebind``, take the model's id and depth."""

    if hidden_size(model) != vec.hidden_size:
        raise VectorError(f"{path}: directions have size {vec.hidden_size} but the model's hidden size is {hidden_size(model)}")
    n_layers = num_layers(model)
    bad = [k for k in vec.directions if k >= n_layers]
    if bad:
        raise VectorError(f"{path}: layer(s) {bad} do not exist in this model ({n_layers} layers)")
    if rebind:
        vec.model_id, vec.num_layers = model_id(model), n_layers


def _field_value(f: Any) -> Any:
    try:
        return f.contents()
    except Exception:  # older gguf releases
        try:
            if f.types and f.types[0] == 8:  # string
                return bytes(f.parts[f.data[0]]).decode("utf-8")
            return f.parts[f.data[0]].tolist()[0]
        except Exception:
            return None


def lm_eval_hookpoints(model: Any, layers: list[int]) -> dict[int, str]:
    """Module names, inside ``model.base_model``, of the given decoder blocks (lm-eval's hookpoints)."""

    blocks = find_blocks(model)
    names = {id(m): n for n, m in model.base_model.named_modules()}
    out = {}
    for i in layers:
        n = names.get(id(blocks[i]))
        if n is None:
            raise VectorError(f"block {i} is not inside model.base_model: lm-eval cannot hook it")
        out[i] = n
    return out


def export_lm_eval(
    vector: SteeringVector,
    path: str | Path,
    strength: float,
    *,
    model: Any = None,
    hookpoint_template: str = "layers.{}",
    action: str = "add",
    dtype: torch.dtype = torch.float32,
) -> tuple[Path, dict[str, Any]]:
    """Write an lm-evaluation-harness ``steered`` file for ``vector`` at ``strength`` (atomic).

    ``action="add"`` adds ``strength · v̂`` at every layer (``steer(..., operator="add")``);
    ``"clamp"`` sets the v̂ component to ``strength`` (``operator="ablate_add"``). Hookpoints come from
    ``model`` when given, else from ``hookpoint_template`` (Llama, Mistral, Qwen, Gemma, Phi-3:
    ``layers.{}``; GPT-2: ``h.{}``; GPT-NeoX: ``layers.{}``).
    """

    r = check_strength(strength)
    if not isinstance(r, float):
        raise VectorError("lm-eval files take one strength: pass a single number")
    if action not in ("add", "clamp"):
        raise VectorError(f"action must be 'add' or 'clamp', got {action!r}")
    if model is not None:
        vector.check_compatible(model, force=True)
        hooks = lm_eval_hookpoints(model, vector.layers)
    else:
        if "{}" not in hookpoint_template:
            raise VectorError(f"hookpoint template {hookpoint_template!r} needs a '{{}}' for the layer number")
        hooks = {i: hookpoint_template.format(i) for i in vector.layers}
    cfg: dict[str, Any] = {}
    for i in vector.layers:
        v = vector.directions[i]
        cfg[hooks[i]] = {
            "steering_vector": _unit(v).to(dtype).contiguous(),
            "steering_coefficient": float(r),
            "action": action,
            "bias": None,
        }
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        path = path.with_name(path.name + ".pt")
    buf = io.BytesIO()
    torch.save(cfg, buf)
    atomic_write_bytes(path, buf.getvalue())
    if len(cfg) > 1:
        log.warning(
            "lm-eval's steered model builds its 'add' hooks with a late-binding lambda, so released versions add the "
            "LAST hookpoint's vector and coefficient at every hookpoint; for exact steering export one layer "
            "(e.g. --layers %d) or check your lm-eval version",
            vector.layers[len(vector.layers) // 2],
        )
    return path, {
        "layers": format_layers(vector.layers),
        "hookpoints": [hooks[i] for i in vector.layers],
        "strength": float(r),
        "action": action,
    }
