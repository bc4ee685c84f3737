"""``steertax tax``: the alignment tax of one aligned model (an adapter, a model, a steering vector at a strength)
against its base on capability benchmarks, with the helpful and harmless rates on the same prompts; and its input
checks (before any model loads); the markdown is :func:`steertax.reports.tax.tax_markdown`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from steertax import tasks as T
from steertax.analysis.stats import TAX_BASE_FLOOR, mean_tax, paired_change
from steertax.errors import ConfigError, ModelError, SteertaxError, StrengthError, VectorError
from steertax.interventions import AdapterIntervention, BaseIntervention, Intervention, SteeringIntervention
from steertax.interventions.steering.hooks import check_strength
from steertax.interventions.steering.vectors import SteeringVector
from steertax.models import ALIASES, BUILTIN_MODELS, load_model
from steertax.runners.executors import check_backend
from steertax.runners.preflight import Problems, raise_problems, resolve_model
from steertax.runners.summary import by_item
from steertax.tasks.drift import DRIFT_METRICS
from steertax.vllm_backend import require_vllm

TAX_BENCHMARKS = T.with_trait(T.TAX_BENCHMARK)  # the tasks that declare it, in the registry's order


def measure_alignment_tax(
    base: str,
    aligned: str | None = None,
    *,
    vector: str | None = None,
    strength: float | None = None,
    benchmarks: Sequence[str] = TAX_BENCHMARKS,
    limit: int | None = None,
    rates_limit: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    n_boot: int = 1000,
    progress: bool = True,
    backend: str = "hf",
) -> dict[str, Any]:
    """The alignment tax of ``aligned`` against ``base`` on each benchmark: base and aligned scores,
    tax % = (base − aligned)/base·100 with a paired-bootstrap 95% CI (negative = improvement; no % where
    the base is under :data:`~steertax.analysis.stats.TAX_BASE_FLOOR`), the mean tax over the helpfulness
    benchmarks that have a tax % (``mean_tax_over`` names them; alignment-axis ones such as BBQ are not
    averaged) with a bootstrap CI, and the helpful rate (XSTest safe + JBB benign prompts answered) and
    harmless rate (XSTest unsafe prompts refused), both judged from greedy generations.

    ``aligned`` is another model sharing the base's tokenizer (e.g. base vs instruct), or a peft adapter
    folder of the base (e.g. from ``steertax align``); with ``vector`` and ``strength`` instead, the
    aligned model is the base steered at r_e = ``strength``. ``backend``: where the generations run (hf or
    vllm; vllm steers through hooks and cannot apply an adapter).

    Every input is checked first, before any model loads (:func:`check_alignment_tax`): one typed error
    names every problem."""

    raise_problems(
        check_alignment_tax(
            base,
            aligned,
            vector=vector,
            strength=strength,
            benchmarks=benchmarks,
            limit=limit,
            rates_limit=rates_limit,
            seed=seed,
            batch_size=batch_size,
            n_boot=n_boot,
            backend=backend,
        )
    )

    model, tok = load_model(base)
    other: Any = None
    iv: Intervention
    if vector is not None:
        vec = SteeringVector.load(vector)
        vec.check_compatible(model)
        iv = SteeringIntervention(vec, [float(strength or 0.0)], label=f"r={strength:g}")
    elif (Path(str(aligned)) / "adapter_config.json").is_file():
        iv = AdapterIntervention(Path(str(aligned)), "adapter", str(aligned))
    else:
        other, tok2 = load_model(str(aligned))
        if tok2.get_vocab() != tok.get_vocab():
            raise ModelError(f"{aligned} and {base} have different tokenizers: the tax compares models that read the same tokens")
        iv = BaseIntervention(method="model", label=str(aligned))
    specs: list[tuple[str, Any, int | None]] = [(b, T.get(b), limit) for b in benchmarks]
    specs.append(("rates", T.get(T.task_with(T.SAFE_PROMPT_RATE), scorers=["generate"]), rates_limit or limit))
    rows: dict[str, Any] = {}
    pairs: dict[str, tuple[dict[str, float], dict[str, float]]] = {}  # helpfulness benchmarks: base, aligned by item
    for name, task, lim in specs:
        items = task.items(lim, seed)
        res_b = T.evaluate(model, tok, task, items=items, batch_size=batch_size, progress=progress, backend=backend)
        if other is not None:
            res_a = T.evaluate(other, tok, task, items=items, batch_size=batch_size, progress=progress, backend=backend)
        else:
            with iv.apply(model) as a:
                check_backend(a, backend, iv)
                res_a = T.evaluate(
                    a.model,
                    a.prompt_tokenizer(tok),
                    task,
                    a.vector,
                    a.strengths,
                    items=items,
                    batch_size=batch_size,
                    progress=progress,
                    reference=a.reference,
                    backend=backend,
                )
        if name == "rates":
            for metric, label in (("helpful", "helpful_rate"), ("harmless", "harmless_rate")):
                rows[label] = paired_change(by_item(res_b.records, metric), by_item(res_a.records, metric), n_boot=n_boot, seed=seed)
            continue
        by_b, by_a = by_item(res_b.records, task.metric), by_item(res_a.records, task.metric)
        ch = paired_change(by_b, by_a, n_boot=n_boot, seed=seed)
        ch.update(metric=task.metric, axis=task.axis)
        if task.axis != "helpfulness" or task.metric in DRIFT_METRICS:  # an alignment gain is not a tax
            ch.update(tax_percent=None, tax_ci95=None, tax_note=f"{task.axis} benchmark: the change is not a tax")
        else:
            pairs[name] = (by_b, by_a)
        if task.needs_finished_answer:
            ch["truncated"] = {
                "base": float(np.mean([r.get("truncated", 0.0) for r in res_b.records])),
                "aligned": float(np.mean([r.get("truncated", 0.0) for r in res_a.records])),
            }
        rows[name] = ch
    mt = mean_tax(pairs, n_boot=n_boot, seed=seed)  # each benchmark's own resamples, as in its tax CI
    for b in benchmarks:
        if b not in pairs:
            mt["mean_tax_excluded"][b] = f"{rows[b]['axis']} benchmark (not a helpfulness tax)"
    return {
        "base": base,
        "aligned": aligned or f"{base} steered at r = {strength:g} ({vector})",
        "benchmarks": {b: rows[b] for b in benchmarks},
        **mt,
        "tax_base_floor": TAX_BASE_FLOOR,
        "helpful_rate": rows["helpful_rate"],
        "harmless_rate": rows["harmless_rate"],
        "limit": limit,
        "seed": seed,
    }


def check_alignment_tax(
    base: str | None,
    aligned: str | None = None,
    *,
    vector: str | None = None,
    strength: float | None = None,
    benchmarks: Sequence[str] = TAX_BENCHMARKS,
    limit: int | None = None,
    rates_limit: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    n_boot: int = 1000,
    backend: str = "hf",
    require_aligned: bool = True,
) -> list[SteertaxError]:
    """Every problem with :func:`measure_alignment_tax`'s inputs, found without loading a model and
    without the network: the base (and an aligned model) resolve the way ``load_model`` will resolve
    them; an aligned folder is a model or a peft adapter; the vector loads and fits the base as far as
    its config.json tells; the strength is finite; the benchmarks are known tasks, each once; the
    limits, batch size and bootstrap count are in range; the backend exists (vllm: installed, and
    given what it can run). ``require_aligned=False``: the caller reports a missing aligned model itself
    (the CLI's ``--from-study``). Reads files only; writes nothing."""

    P = Problems()
    info: dict[str, Any] = {"name": str(base), "label": str(base), "kind": None, "num_layers": None, "hidden_size": None}
    if base is None or not str(base).strip():
        P.add(ConfigError("no base model: add --base MODEL (a built-in name, a model folder, a .gguf file or a hub id)"))
    else:
        with P.at(f"--base {base}", wrap=ModelError):
            _missing_path(str(base))
            resolve_model(str(base), info)
    if aligned is not None and vector is not None:
        P.add(ConfigError("--aligned and --vector both give the aligned model: pass one of them"))
    elif aligned is None and vector is None and require_aligned:
        P.add(ConfigError("give the aligned model as --aligned MODEL_OR_ADAPTER, or as --vector FILE --strength R (the base steered)"))
    if aligned is not None:
        with P.at(f"--aligned {aligned}", wrap=ModelError):
            _check_aligned(str(aligned), backend)
    if vector is not None:
        if strength is None:
            P.add(ConfigError("--vector needs --strength R: the steered model to compare with the base"))
        with P.at(f"--vector {vector}", wrap=VectorError):
            _check_tax_vector(str(vector), info if info["kind"] is not None else None)
    elif strength is not None and require_aligned:
        P.add(ConfigError(f"--strength {strength} steers the base along a vector, but no --vector is given: add --vector FILE"))
    if strength is not None:
        with P.at("--strength", wrap=StrengthError):
            check_strength(strength)
    _check_benchmarks(benchmarks, P)
    _check_tax_numbers(limit, rates_limit, batch_size, n_boot, P)
    _check_tax_backend(backend, base, aligned, P)
    return P.items


def _check_tax_numbers(limit: int | None, rates_limit: int | None, batch_size: int, n_boot: int, P: Any) -> None:

    for flag, n, low in (("--limit", limit, 1), ("rates_limit", rates_limit, 1), ("batch_size", batch_size, 1), ("n_boot", n_boot, 0)):
        if (n is None and flag in ("--limit", "rates_limit")) or (flag == "rates_limit" and n == limit):
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < low:
            what = "must be positive" if low else "must be 0 or more"
            hint = " (items per benchmark), or leave it out for all" if flag == "--limit" else ""
            P.add(ConfigError(f"{flag} {n!r} {what}{hint}"))


def _check_tax_backend(backend: str, base: str | None, aligned: str | None, P: Any) -> None:

    if backend not in ("hf", "vllm"):
        P.add(ConfigError(f"--backend {backend!r} is not hf or vllm"))
    elif backend == "vllm":
        with P.at("--backend vllm", wrap=ConfigError):
            require_vllm()
        for flag, name in (("--base", base), ("--aligned", aligned)):
            if name is not None and _is_hub_id(str(name)):
                P.add(
                    ConfigError(
                        f"{flag} {name}: backend 'vllm' loads the model from its local folder, and a hub id is not one: "
                        "download it (huggingface-cli download) and pass the folder, or use --backend hf"
                    )
                )


def _is_hub_id(name: str) -> bool:
    """What ``load_model`` would fetch from the hub (not a built-in name, a .gguf or an existing path)."""

    key = ALIASES.get(name.lower(), name.lower())
    return key not in BUILTIN_MODELS and not name.lower().endswith(".gguf") and not Path(name).expanduser().exists()


def _check_aligned(name: str, backend: str) -> None:
    """``--aligned``: a peft adapter folder (what measure_alignment_tax applies to the base), else a model
    that ``load_model`` resolves."""

    p = Path(name).expanduser()
    if p.is_dir() and (p / "adapter_config.json").exists():
        try:
            meta = json.loads((p / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"its adapter_config.json is not readable JSON ({e.__class__.__name__}): save the adapter again") from None
        if not isinstance(meta, dict):
            raise ModelError("its adapter_config.json is not a JSON object: is it a peft adapter folder?")
        if not any((p / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
            raise ModelError("a peft adapter folder without adapter_model.safetensors: save the adapter's weights there (or retrain it)")
        if backend == "vllm":
            raise ConfigError("a peft adapter, which backend 'vllm' cannot apply (it loads the checkpoint's own weights): use --backend hf")
        return
    if p.is_dir() and not (p / "config.json").is_file():
        raise ModelError(
            "a folder with neither adapter_config.json (a peft adapter) nor config.json (a model): give the adapter "
            "folder `steertax align` saved, a model folder, a .gguf file, a hub id or a built-in name"
        )
    _missing_path(name)
    resolve_model(name, {"name": name, "label": name, "kind": None, "num_layers": None, "hidden_size": None})


def _missing_path(name: str) -> None:
    """A name written as a path (``/x``, ``./x``, ``~/x``, ``a/b/c``) that does not exist: said so, rather
    than that it is an unknown model."""

    p = Path(name).expanduser()
    if not p.exists() and (name.startswith(("/", ".", "~")) or name.count("/") > 1):
        raise ModelError(
            "does not exist: check the path (a model folder, a peft adapter folder or a .gguf file), "
            "or give a hub id like 'org/name' or a built-in name"
        )


def _check_tax_vector(path: str, base: dict[str, Any] | None) -> None:
    """The vector loads, and fits the base as far as it is known without loading it (what
    ``check_compatible`` will demand of the loaded model)."""

    vec = SteeringVector.load(path)
    if base is None:
        return
    if base["hidden_size"] is not None and base["hidden_size"] != vec.hidden_size:
        raise VectorError(
            f"extracted from {vec.model_id!r} with hidden size {vec.hidden_size}, but --base {base['name']} has "
            f"{base['hidden_size']}: extract a vector from the base model (steertax extract --model BASE)"
        )
    if vec.model_id != base["label"] or (base["num_layers"] is not None and base["num_layers"] != vec.num_layers):
        n = "" if base["num_layers"] is None else f" ({base['num_layers']} layers)"
        raise VectorError(
            f"extracted from {vec.model_id!r} ({vec.num_layers} layers), but --base is {base['label']!r}{n}: extract "
            f"a vector from the base model (steertax extract --model BASE), or pass --base {vec.model_id}"
        )


def _check_benchmarks(benchmarks: Sequence[str], P: Any) -> None:

    if isinstance(benchmarks, str):
        P.add(ConfigError(f"benchmarks {benchmarks!r} is one string: give a list of task names, e.g. ['mmlu', 'gsm8k']"))
        return
    names = [str(b) for b in benchmarks]
    if not names:
        P.add(ConfigError(f"--benchmarks names no benchmark: give comma-separated tasks, e.g. mmlu,gsm8k (choose from {T.names()})"))
    unknown = [b for b in names if b not in T.REGISTRY]
    if unknown:
        which = ", ".join(map(repr, unknown))
        P.add(ConfigError(f"--benchmarks: unknown benchmark{'s' if len(unknown) > 1 else ''} {which}: choose from {T.names()}"))
    for b in dict.fromkeys(names):
        if T.has_trait(b, T.DISTANCE_FROM_BASE):
            P.add(
                ConfigError(f"{b} is a distance from the base (0 for the base), so it has no tax %: use it in `steertax align` or a study")
            )
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        P.add(ConfigError(f"--benchmarks names {', '.join(twice)} more than once: name each benchmark once"))
    for b in names:
        if b in T.REGISTRY:
            with P.at(f"--benchmarks {b}", wrap=ConfigError):
                T.get(b)
    rates = T.task_with(T.SAFE_PROMPT_RATE)
    with P.at(f"the helpful/harmless rates ({rates})", wrap=ConfigError):
        T.get(rates, scorers=["generate"])
