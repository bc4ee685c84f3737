"""The ``steertax`` command: thin wrappers over the Python API.

Each command declares itself where its handler is: ``@command(name, help=..., description=..., args=[...])``
over the handler, with its arguments written as ``arg(...)`` (``add_argument``'s own signature) and the
groups several commands share (``MODEL``, ``EXECUTOR``, ...) defined once below; ``COMMANDS`` lists them in
the order ``steertax --help`` shows, and the parser is built from that list. A handler imports what it runs
inside its body, so ``steertax --help`` loads no command's runner.

Errors from bad input print one line (``steertax: error: ...``) and exit with code 2; ``--debug``
shows the traceback instead. Nothing is written before the input is validated, and every write is
atomic, so a failed command leaves earlier results as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sqlite3
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from steertax.errors import SteertaxError
from steertax.outputs import check_output, locked_folder, storage_error


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# --------------------------------------------------------------------------- how a command declares itself


@dataclasses.dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call: the positional name or the flags, and the keywords. A callable ``choices``
    is called when the parser is built (the names a registry holds then). ``output``: what the argument names
    when the command writes there (``file`` or ``folder``): checked before any work, and a folder is locked for
    the command's life (one writer per run folder)."""

    names: tuple[str, ...]
    kwargs: dict[str, Any]
    output: str | None = None

    @property
    def dest(self) -> str:
        return str(self.kwargs.get("dest") or self.names[0].lstrip("-").replace("-", "_"))

    def add_to(self, p: argparse.ArgumentParser) -> None:
        kw = dict(self.kwargs)
        if callable(kw.get("choices")):
            kw["choices"] = kw["choices"]()
        p.add_argument(*self.names, **kw)


def arg(*names: str, output: str | None = None, **kwargs: Any) -> Arg:
    """An argument, written as to ``add_argument`` (``output``: see :class:`Arg`)."""
    return Arg(names, kwargs, output)


Handler = Callable[[argparse.Namespace], int]


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, its line in ``steertax --help``, the description ``steertax NAME --help``
    opens with (None: none), its arguments in help order, and its handler (returns the exit code)."""

    name: str
    help: str
    description: str | None
    args: tuple[Arg, ...]
    run: Handler
    checks_own_outputs: bool = False  # the handler reports bad output paths among all its problems at once


def command(
    name: str, *, help: str, description: str | None = None, args: Sequence[Arg] = (), checks_own_outputs: bool = False
) -> Callable[[Handler], Command]:
    """Declare the decorated handler as the command ``name`` (COMMANDS puts it on the command line)."""

    def declare(run: Handler) -> Command:
        return Command(name, help, description, tuple(args), run, checks_own_outputs)

    return declare


# --------------------------------------------------------------------------- arguments several commands share

MODEL = (
    arg("--model", default="smollm2", help="built-in name (smollm2, qwen2.5-coder-0.5b), .gguf file, model dir or hub id [smollm2]"),
    arg("--dtype", default=None, help="float32 | float16 | bfloat16 [float32 on CPU]"),
    arg("--device", default=None, help="cpu, cuda, cuda:1 ... [cuda if available]"),
    arg("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)"),
)
SEED = arg("--seed", type=int, default=0)
VECTOR_LAYERS = arg("--layers", default=None, help="subset of the vector's layers [all of them]")
STUDY_DIR = "a `steertax run` output folder"
EXECUTOR = (  # run, align, merge
    arg("--executor", default=None, choices=["local", "ray"], help="where cells run [the config's executor.kind: local]"),
    arg("--ray-address", default=None, help="a running Ray cluster (auto, HOST:6379, ray://HOST:10001) [start a local one]"),
)


def config_file(help: str) -> Arg:
    """run, align, merge: the YAML config, optional (a built-in one by default)."""
    return arg("config", nargs="?", default=None, help=help)


def out_folder(help: str) -> Arg:
    """run, align, merge: --out, the run folder (not needed with --print-default-config or --check)."""
    return arg("--out", default=None, help=help, output="folder")


def quick(help: str) -> Arg:
    """--quick: the command's scaled-down version."""
    return arg("--quick", action="store_true", help=help)


def print_default_config(which: str) -> Arg:
    return arg("--print-default-config", action="store_true", help=f"print {which} config and exit")


def backend(help: str) -> Arg:
    return arg("--backend", default="hf", choices=["hf", "vllm"], help=help)


def _check_model_inputs(a: argparse.Namespace, *, layers: str | None = None, vec: Any = None) -> None:
    """What a command's model, layers and vector can be checked for from the model's config alone, before it
    loads: an unknown model, layers outside the model, a vector of another hidden size."""
    from steertax._util import parse_layers
    from steertax.errors import VectorError
    from steertax.runners.preflight import model_shape, resolve_model

    resolve_model(str(a.model), {})
    n, h = model_shape(str(a.model))
    if layers is not None and layers != "all" and n is not None:
        parse_layers(layers, n)
    if vec is not None and h is not None and vec.hidden_size != h:
        raise VectorError(
            f"{a.vector} holds a vector of hidden size {vec.hidden_size}, but {a.model} has hidden size {h}: "
            f"extract a vector from this model (steertax extract --model {a.model})"
        )


# --------------------------------------------------------------------------- the commands, in help order


def _extraction_methods() -> tuple[str, ...]:
    from steertax.interventions.steering.extraction import extraction_methods

    return extraction_methods()


@command(
    "extract",
    help="extract a steering vector from contrast pairs",
    description="Extract a per-layer steering vector (+ = aligned) and save it as safetensors + JSON.",
    args=[
        *MODEL,
        arg(
            "--pairs",
            default="refusal",
            help="refusal | harmful_harmless | a .csv/.jsonl with aligned,misaligned[,prompt] columns [refusal]",
        ),
        arg("--n-pairs", type=int, default=None, help="use at most this many pairs"),
        arg("--layers", default="8-12", help="e.g. 8-12,14 or all [8-12]"),
        arg("--method", default="pca", choices=_extraction_methods),
        arg("--position", default=None, choices=["last", "answer_mean"], help="[answer_mean for refusal pairs, else last]"),
        arg("--raw", action="store_true", help="no chat template (the paper's base-model prompts)"),
        arg("--heldout", type=float, default=0.2, help="fraction of pairs held out for accuracy [0.2]"),
        SEED,
        arg("--batch-size", type=int, default=16),
        arg("--out", required=True, help="output .safetensors path (a .json sidecar is written beside it)", output="file"),
    ],
)
def _cmd_extract(a: argparse.Namespace) -> int:
    from steertax.interventions.steering.extract import extract_vector
    from steertax.interventions.steering.pairs import get_pairs
    from steertax.models import load_model

    out = Path(a.out)
    from steertax.interventions.steering.pairs import PAIR_BUILDERS, check_pairs_file

    if a.pairs not in PAIR_BUILDERS:  # a bad pairs file (or name) first: it is the input the user just wrote
        if Path(a.pairs).suffix.lower() not in (".csv", ".jsonl", ".json"):
            raise SteertaxError(
                f"unknown pairs {a.pairs!r}: use one of {sorted(PAIR_BUILDERS)} or a .csv/.jsonl file with aligned,misaligned columns"
            )
        check_pairs_file(a.pairs)
    _check_model_inputs(a, layers=a.layers)
    if not 0 <= a.heldout < 1:
        raise SteertaxError(f"--heldout {a.heldout}: give a fraction in [0, 1) of the pairs to hold out (e.g. 0.2)")
    model, tok = load_model(a.model, a.dtype, a.device, trust_remote_code=a.trust_remote_code)
    ps = get_pairs(a.pairs, tok, a.n_pairs, seed=a.seed, chat=not a.raw)
    v = extract_vector(
        model,
        tok,
        ps,
        layers=a.layers,
        method=a.method,
        position=a.position,
        heldout=a.heldout,
        seed=a.seed,
        batch_size=a.batch_size,
        progress=not a.quiet,
    )
    path = v.save(out)
    print(v.summary())
    print(f"saved {path} (+ {path.with_suffix('.json').name})")
    return 0


@command(
    "condition",
    help="fit a condition for conditional steering (steer only prompts it fires on)",
    description="Fit a CAST condition: a direction, layer and threshold that separate two prompt sets; saved as safetensors + JSON.",
    args=[
        *MODEL,
        arg("--positive", default="harmful", help="prompts it should fire on: harmful | harmless | a .txt/.jsonl [harmful]"),
        arg("--negative", default="harmless", help="prompts it should not fire on [harmless]"),
        arg("--n", type=int, default=128, help="prompts per side, half fit and half validate [128]"),
        arg("--layers", default="0-7", help="candidate layers, below the layers you will steer [0-7]"),
        arg("--objective", default="f1", choices=["f1", "fpr"], help="maximize F1, or catch most at FPR <= --target-fpr [f1]"),
        arg("--target-fpr", type=float, default=0.05),
        arg(
            "--read",
            default="mean",
            choices=["mean", "last", "all"],
            help="mean of the prompt's token states after the first, the last one's, or all [mean]",
        ),
        arg(
            "--score",
            default="cosine",
            choices=["cosine", "reference"],
            help="cos(h, c), or IBM activation-steering's cos(h, tanh(P h)) [cosine]",
        ),
        arg("--chat", action="store_true", help="read requests inside the chat template (default: the request's own text)"),
        SEED,
        arg("--batch-size", type=int, default=32),
        arg("--out", required=True, help="output .safetensors path", output="file"),
    ],
)
def _cmd_condition(a: argparse.Namespace) -> int:
    from steertax._util import parse_layers
    from steertax.interventions.conditional import fit_from_sources, prompt_set
    from steertax.models import find_blocks, load_model

    out = Path(a.out)
    if not 0 < a.target_fpr < 1:
        raise SteertaxError(f"--target-fpr {a.target_fpr}: give a false-positive rate in (0, 1), e.g. 0.05")
    if a.n < 4:
        raise SteertaxError(f"--n {a.n}: give at least 4 prompts per side (half fit the condition, half validate it)")
    prompt_set(a.positive, 8, a.seed), prompt_set(a.negative, 8, a.seed)  # a bad source fails before the model loads
    _check_model_inputs(a, layers=a.layers)
    model, tok = load_model(a.model, a.dtype, a.device, trust_remote_code=a.trust_remote_code)
    cond = fit_from_sources(
        model,
        tok,
        a.positive,
        a.negative,
        a.n,
        chat=a.chat,
        seed=a.seed,
        layers=parse_layers(a.layers, len(find_blocks(model))),
        objective=a.objective,
        target_fpr=a.target_fpr,
        batch_size=a.batch_size,
        read=a.read,
        score=a.score,
    )
    path = cond.save(out)
    print("layer  balanced-acc  F1     FPR    threshold")
    for k, v in cond.validation["per_layer"].items():
        mark = "  <- chosen" if int(k) == cond.layer else ""
        print(f"{k:>5}  {v['balanced_accuracy']:.3f}         {v['f1']:.3f}  {v['fpr']:.3f}  {v['threshold']:+.4f}{mark}")
    print(f"saved {path}: fires when cos(h[layer {cond.layer}], c) {cond.comparator} {cond.threshold:+.4f}")
    return 0


def _columns(texts: Sequence[str], headers: Sequence[str], width: int) -> str:
    ncol = len(texts)
    colw = max(20, (width - 3 * (ncol - 1)) // ncol)
    wrapped = [textwrap.wrap(t.replace("\n", " ⏎ "), colw) or [""] for t in texts]
    rows = max(len(w) for w in wrapped)
    lines = [" | ".join(h[:colw].ljust(colw) for h in headers), "-+-".join("-" * colw for _ in headers)]
    for r in range(rows):
        lines.append(" | ".join((w[r] if r < len(w) else "").ljust(colw) for w in wrapped))
    return "\n".join(lines)


@command(
    "generate",
    help="print unsteered and steered completions side by side",
    args=[
        *MODEL,
        arg("--vector", required=True, help="a .safetensors vector from `steertax extract`"),
        arg("--strength", action="append", required=True, help="r_e, the L2 norm added per layer (+ = aligned); repeat for several"),
        VECTOR_LAYERS,
        arg("--relative", action="store_true", help="strength in multiples of each layer's mean residual norm"),
        arg("--positions", default="all", choices=["all", "prompt", "generated"]),
        arg("--condition", default=None, help="a condition file (steertax condition): steer only prompts it fires on"),
        arg("--prompt", action="append", required=True, help="user message; repeat for several"),
        arg("--max-new-tokens", type=int, default=64),
        arg("--raw", action="store_true", help="no chat template"),
        arg("--force", action="store_true", help="allow a vector recorded for another model of the same shape"),
        arg("--width", type=int, default=0, help="column width [terminal width]"),
        backend("where generation runs (vllm: its own environment, make vllm) [hf]"),
    ],
)
def _cmd_generate(a: argparse.Namespace) -> int:
    import shutil

    from steertax.generation import generate
    from steertax.interventions.steering.hooks import check_strength
    from steertax.interventions.steering.vectors import SteeringVector
    from steertax.models import load_model

    strengths = [float(check_strength(s)) for s in a.strength]
    if a.max_new_tokens < 1:
        raise SteertaxError(f"--max-new-tokens {a.max_new_tokens}: give a positive number of tokens (e.g. 64)")
    if any(not p.strip() for p in a.prompt):
        raise SteertaxError("--prompt is empty: give the user message to answer")
    vec = SteeringVector.load(a.vector)
    _check_model_inputs(a, vec=vec)
    if a.backend == "vllm":  # before the model loads
        from steertax.vllm_backend import require_vllm

        require_vllm()
    model, tok = load_model(a.model, a.dtype, a.device, trust_remote_code=a.trust_remote_code)
    vec.check_compatible(model, force=a.force)
    if a.layers is not None:
        vec = vec.select(a.layers)
    width = a.width or shutil.get_terminal_size((160, 40)).columns
    cond, fired = None, None
    if a.condition is not None:
        from steertax.interventions.conditional import Condition, check_condition_layer
        from steertax.interventions.steering.hooks import steered_layers

        cond = Condition.load(a.condition)
        cond.check_model(model)
        check_condition_layer(cond, steered_layers(model, vec))
        fired = cond.fires_on_requests(model, tok, a.prompt)
    base = generate(model, tok, a.prompt, None, 0.0, max_new_tokens=a.max_new_tokens, chat=not a.raw, backend=a.backend)
    steered = [
        generate(
            model,
            tok,
            a.prompt,
            vec,
            s,
            relative=a.relative,
            positions=a.positions,
            max_new_tokens=a.max_new_tokens,
            chat=not a.raw,
            force=a.force,
            condition=cond,
            backend=a.backend,
        )
        for s in strengths
    ]
    unit = "x mean residual norm" if a.relative else ""
    for k, p in enumerate(a.prompt):
        print(f"\n### {p}" + ("" if fired is None else f"   [condition {'fired: steered' if fired[k] else 'did not fire: not steered'}]"))
        heads = ["unsteered (r_e = 0)"] + [f"steered (r_e = {s:g}{unit})" for s in strengths]
        print(_columns([base[k]] + [st[k] for st in steered], heads, width))
    return 0


def _parse_strengths(values: Sequence[str] | None) -> list[float]:
    from steertax.interventions.steering.hooks import check_strength

    out: list[float] = []
    for v in values or []:
        for part in str(v).split(","):
            if part.strip():
                out.append(float(check_strength(part.strip())))
    return out


@command(
    "eval",
    help="score a task at one or more strengths and print a table",
    description="Evaluate an alignment or helpfulness task under steering.",
    args=[
        *MODEL,
        arg("--task", required=True, action="append", help="task name (repeatable); see `steertax tasks`"),
        arg("--limit", type=int, default=None, help="deterministic subset of this many items"),
        SEED,
        arg("--vector", default=None, help="a .safetensors vector (needed for non-zero strengths)"),
        arg(
            "--strength",
            action="append",
            default=None,
            help="r_e (repeatable, or comma-separated); 0 is always included when a vector is given",
        ),
        arg("--layers", default=None, help="subset of the vector's layers"),
        arg(
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="task option for every --task, or TASK.KEY=VALUE for one, e.g. refusal.scorers=[logprob] (YAML values)",
        ),
        arg("--batch-size", type=int, default=32),
        arg("--force", action="store_true"),
        arg("--json", default=None, help="write records and summaries to this JSON file", output="file"),
    ],
)
def _cmd_eval(a: argparse.Namespace) -> int:
    import json

    import yaml

    from steertax import tasks as T
    from steertax._util import atomic_write_json
    from steertax.interventions.steering.vectors import SteeringVector
    from steertax.models import load_model

    opts: dict[str, dict[str, Any]] = {n: {} for n in a.task}
    for o in a.option:
        if "=" not in o:
            raise SteertaxError(f"--option {o!r} is not KEY=VALUE: write e.g. --option scorers=[logprob] or refusal.scorers=[logprob]")
        k, v = o.split("=", 1)
        k = k.strip()
        target = a.task
        if "." in k:
            tname, k = k.split(".", 1)
            if tname not in opts:
                raise SteertaxError(f"--option {o!r} names task {tname!r}, which is not among --task {a.task}")
            target = [tname]
        for n in target:
            opts[n][k] = yaml.safe_load(v)
    tasks = [T.get(n, **opts[n]) for n in a.task]  # validate before loading the model
    if a.limit is not None and a.limit < 1:
        raise SteertaxError(f"--limit {a.limit}: give a positive number of items (or leave it out for all)")
    strengths = _parse_strengths(a.strength)
    vec = SteeringVector.load(a.vector) if a.vector else None
    _check_model_inputs(a, vec=vec)
    if vec is None and any(s != 0 for s in strengths):
        raise SteertaxError("non-zero --strength needs --vector: extract one with `steertax extract`")
    if vec is not None:
        strengths = sorted(set([0.0] + strengths))
        if a.layers is not None:
            vec = vec.select(a.layers)
    strengths = strengths or [0.0]
    model, tok = load_model(a.model, a.dtype, a.device, trust_remote_code=a.trust_remote_code)
    results = []
    for t in tasks:
        res = T.evaluate(
            model, tok, t, vec, strengths, limit=a.limit, seed=a.seed, batch_size=a.batch_size, progress=not a.quiet, force=a.force
        )
        print(res.table())
        print()
        results.append(
            {
                "task": res.task,
                "axis": res.axis,
                "metric": res.metric,
                "config": t.config(),
                "summary": res.summary,
                "extra": res.extra,
                "records": res.records,
            }
        )
    if a.json:
        atomic_write_json(
            a.json,
            {
                "model": a.model,
                "vector": a.vector,
                "strengths": strengths,
                "limit": a.limit,
                "seed": a.seed,
                "results": json.loads(json.dumps(results, default=str)),
            },
        )
        print(f"wrote {a.json}")
    return 0


@command("tasks", help="list the tasks")
def _cmd_tasks(a: argparse.Namespace) -> int:
    from steertax import tasks as T

    for n in T.names():
        cls = T.REGISTRY[n]
        print(f"{n:<16} {cls.axis:<12} {cls.metric:<10} {cls.description}")
    return 0


@command(
    "run",
    help="the tradeoff study: sweep, fitted laws, theory, efficient strength, tax, report",
    description="Run the study from a YAML config (default: the built-in SmolLM2 study).",
    args=[
        config_file("YAML file or built-in name (default, paper-qwen, conditional)"),
        out_folder("output folder (rerun the same command to resume)"),
        quick("a scaled-down smoke run (minutes on a CPU)"),
        print_default_config("the default"),
        arg(
            "--check",
            action="store_true",
            help="only check the config, data files, pairs/vector, model name and --out (nothing is loaded or written)",
        ),
        *EXECUTOR,
    ],
)
def _cmd_run(a: argparse.Namespace) -> int:
    from importlib import resources

    from steertax.config import load_config

    if a.print_default_config:
        print(resources.files("steertax").joinpath("configs").joinpath("default.yaml").read_text(encoding="utf-8"), end="")
        return 0
    if not a.out and not a.check:
        raise SteertaxError("steertax run needs --out DIR (where results, summary and report go)")
    cfg = _with_executor(load_config(a.config), a)
    if a.quick:
        cfg = cfg.quick_version()
    if a.check:
        from steertax.runners.preflight import preflight

        info = preflight(cfg, a.out)  # raises one line naming every problem
        items = ", ".join(f"{k} {n}" for k, n in info["tasks"].items())
        print(f"ok: model {cfg.model} ({info['model']['kind']}), items per task: {items}; no model was loaded")
        return 0
    from steertax.runners.study import run_study

    with _time_split(a.out, a.quiet):
        summ = run_study(cfg, a.out, progress=not a.quiet)
    _print_headline(summ, a.out)
    return 0


def _with_executor(cfg: Any, a: argparse.Namespace) -> Any:
    """--executor / --ray-address over the config's ``executor``."""
    from steertax.runners.executors import check_executor

    ex = cfg.executor
    if a.executor is not None:
        ex = dataclasses.replace(ex, kind=a.executor)
    if a.ray_address is not None:
        if ex.kind != "ray":
            raise SteertaxError("--ray-address needs the ray executor: add --executor ray")
        ex = dataclasses.replace(ex, address=a.ray_address)
    check_executor(ex)
    return dataclasses.replace(cfg, executor=ex)


@contextlib.contextmanager
def _time_split(out: str, quiet: bool = False) -> Iterator[None]:
    """Print where this invocation's time went (per task and scorer; not with --quiet) and write it to
    OUT/timing.json."""
    import time

    from steertax import timing
    from steertax._util import atomic_write_json

    t0, before = time.perf_counter(), timing.snapshot()
    yield
    wall, split = time.perf_counter() - t0, timing.since(before)
    if not quiet:
        print(timing.format_split(split, wall), file=sys.stderr)
    rows = [{"task": k.rpartition("/")[0], "scorer": k.rpartition("/")[2], "seconds": v[0], "rows": v[1]} for k, v in split.items()]
    atomic_write_json(Path(out) / "timing.json", {"wall_seconds": wall, "split": rows})


def _print_headline(summ: dict[str, Any], out: str) -> None:
    eff = summ.get("efficient_strength") or {}
    print(f"run {summ['run_id']}  model {summ['model']}  strengths {summ['strengths']}")
    for name, t in summ["tasks"].items():
        bs = t["by_strength"]
        first, last = bs[0], bs[-1]
        print(f"  {name:<24} {t['metric']:<10} r={first['strength']:g}: {first['mean']:.3f}   r={last['strength']:g}: {last['mean']:.3f}")
        if t.get("truncation"):
            tr = t["truncation"]
            print(f"  {'':<24} unfinished (hit max_new_tokens): {100 * tr['overall']:.0f}% overall, {100 * tr['max']:.0f}% at worst")
        pt = t["fit"].get("paper_law_test") or {}
        if pt:
            word = {None: "can't tell", True: "holds", False: "does not hold"}[pt.get("holds")]
            print(f"  {'':<24} law {t['fit'].get('law')}; paper's local law: {word}")
    if eff.get("ok"):
        w = eff["helpfulness_weight"]
        print(f"efficient strength r* = {eff['r_star']:.2f} (helpfulness weight {w}); break-even {eff.get('break_even')}")
        if eff.get("note"):
            print(f"  {eff['note']}")
    else:
        print(f"efficient strength: {_no_r_star(eff)}; no alignment tax")
    print(f"wrote {out}/summary.json, {out}/report.html, {out}/results.sqlite, {out}/results.parquet")


def _no_r_star(eff: dict[str, Any]) -> str:
    """Why a study has no r*: its reason (e.g. "no law fits, r* not chosen") and the detail, if any."""
    why = eff.get("reason") or "r* not chosen"
    return f"{why} ({eff['detail']})" if eff.get("detail") else why


SETTINGS_OUT = "output folder: adapters/, results.sqlite, summary.json, table.md, figures/"  # align, merge


def _run_settings(a: argparse.Namespace, load: Any, run: Any, figure: str) -> int:
    """`align` and `merge`: load the config (quick version on request), run it, print its table."""
    if a.print_default_config:
        from importlib import resources

        print(resources.files("steertax").joinpath("configs").joinpath(f"{a.cmd}.yaml").read_text(encoding="utf-8"), end="")
        return 0
    if not a.out:
        raise SteertaxError(f"steertax {a.cmd} needs --out DIR (where adapters, results, summary and figures go)")
    cfg = _with_executor(load(a.config), a)
    if a.quick:
        cfg = cfg.quick_version()
    with _time_split(a.out, a.quiet):
        summ = run(cfg, a.out, progress=not a.quiet)
    print((Path(a.out) / "table.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {a.out}/summary.json, {a.out}/table.md, {a.out}/figures/{figure}, {a.out}/results.sqlite, {a.out}/adapters/")
    return 0 if summ["settings"] else 1


@command(
    "align",
    help="alignment by fine-tuning (each registered trained method: trl + peft LoRA) on the study's axes",
    description="Train one LoRA adapter per setting of a YAML config (default: the built-in 'align' on SmolLM2) "
    "and evaluate every setting and the base model with the study's tasks. Rerun to resume.",
    args=[
        config_file("YAML file (default: the built-in 'align')"),
        out_folder(SETTINGS_OUT),
        print_default_config("the built-in 'align'"),
        quick("fewer pairs, steps, settings and items (a few minutes on a CPU)"),
        *EXECUTOR,
    ],
)
def _cmd_align(a: argparse.Namespace) -> int:
    from steertax.runners.align import load_align_config, run_align

    return _run_settings(a, load_align_config, run_align, "align.png")


@command(
    "merge",
    help="alignment by model merging (task arithmetic, TIES, DARE, TSV-M, R-TSVM) vs a data mixture, on the study's axes",
    description="Train (or load) specialist adapters, merge their task vectors with every configured method and scale, "
    "and evaluate the base, the specialists, the data-mixture baseline and every merge with the study's tasks. Rerun to resume.",
    args=[
        config_file("YAML file (default: the built-in 'merge' on SmolLM2)"),
        out_folder(SETTINGS_OUT),
        print_default_config("the built-in 'merge'"),
        quick("fewer pairs, steps, merges and items (a few minutes on a CPU)"),
        *EXECUTOR,
    ],
)
def _cmd_merge(a: argparse.Namespace) -> int:
    from steertax.runners.merge import run_merge
    from steertax.runners.merge_config import load_merge_config

    return _run_settings(a, load_merge_config, run_merge, "merge_3h.png")


@command(
    "compare",
    help="which method buys alignment cheapest: every method on one item set and base, paired decisions at matched alignment",
    description="Put `steertax run`, `steertax align` and `steertax merge` output folders of one model on one "
    "alignment-vs-helpfulness frontier on the same items against one base: every setting with paired 95% CIs, each "
    "method's curve along its knob (r, β, λ, merge scale), ΔH at matched ΔB from one bootstrap over items for the whole "
    "chain, pairwise verdicts with max-T (or Holm, BH) adjusted bootstrap-t p-values, and the items that would decide what is undecided. "
    "Without --evaluate the folders' own rows on their common items are used (their base rows must agree); with "
    "--evaluate the model scores every folder's interventions on one item list per task into OUT/results.sqlite.",
    args=[
        arg("dirs", nargs="+", help="output folders of `steertax run`, `steertax align` and/or `steertax merge`"),
        arg("--out", required=True, help="where compare.json, compare.md and figures/frontier.png go", output="folder"),
        arg(
            "--alignment",
            default=None,
            help="the alignment entry matched on, e.g. refusal (B), refusal:harmless, refusal_attack:harmless "
            "[the harmless rate on the harmful requests: refusal:harmless]",
        ),
        arg(
            "--helpfulness",
            default=None,
            help="the helpfulness axes decided, comma-separated (one: the single-axis tables) [every helpfulness axis the folders "
            "share: the helpful rate on the shared over-refusal pool, capability benchmarks, drift as −KL]",
        ),
        arg(
            "--helpfulness-weight",
            type=float,
            default=0.5,
            help="w in U = w·helpful + (1 − w)·harmless (changes from the base) for the figure's efficient point; points at "
            "w = 0.25, 0.5, 0.75 are always reported (default 0.5)",
        ),
        arg("--max-tax", type=float, default=None, help="the largest capability tax (%%) an efficient point may have [none]"),
        arg("--levels", default=None, help="matched ΔB levels, comma-separated [25/50/75%% of the highest ΔB any curve reaches]"),
        arg("--alpha", type=float, default=0.05, help="error rate of the verdicts, in (0, 0.5) (default 0.05)"),
        arg(
            "--adjust",
            default="maxt",
            choices=["maxt", "holm", "bh"],
            help="multiplicity control: max-T over the joint bootstrap (FWER), Holm (FWER) or BH (FDR) [maxt]",
        ),
        arg("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)"),
        arg("--exclude", default="", help="methods to leave out, comma-separated, by their names in compare.md"),
        arg("--evaluate", action="store_true", help="load the model and score every method on the same items and base"),
        arg("--limit", type=int, default=None, help="--evaluate: items per compared task [the largest any folder used]"),
        arg("--until-decided", action="store_true", help="--evaluate: add items while comparisons are undecided"),
        arg("--budget", type=int, default=None, help="--until-decided: the most items to add per task"),
        arg("--step", type=int, default=16, help="--until-decided: items added per task per look (default 16)"),
        arg(
            "--cap",
            type=int,
            default=None,
            help="--until-decided: the design's most items per task, fixed when it starts [its first run's items + --budget]; "
            "a rerun with a larger --budget adds looks up to it",
        ),
        arg(
            "--spending",
            default=None,
            help="--until-decided: how α is spent over the looks, fixed when the design starts: lan-demets-obf (O'Brien–Fleming-"
            "like) or power-6 (α·t⁶: more of α kept for the last looks, more power at the cap, but its simulated error was "
            "above α: see the compare guide) [lan-demets-obf]",
        ),
    ],
)
def _cmd_compare(a: argparse.Namespace) -> int:
    from steertax.runners.compare import compare, default_alignment
    from steertax.runners.preflight import check_compare, parse_levels, raise_problems

    a.alignment = a.alignment or default_alignment()  # the defaults are declared by the tasks (traits)
    named = [x.strip() for x in (a.helpfulness or "").split(",") if x.strip()]
    a.helpfulness = None if not named else named[0] if len(named) == 1 else named
    raise_problems(check_compare(a), "before reading any results")  # every input, before anything is read or written
    compare(
        a.dirs,
        a.out,
        alignment=a.alignment,
        helpfulness=a.helpfulness,
        helpfulness_weight=a.helpfulness_weight,
        max_tax=a.max_tax,
        levels=parse_levels(a.levels),
        alpha=a.alpha,
        adjust=a.adjust,
        n_boot=a.n_boot,
        evaluate=a.evaluate,
        limit=a.limit,
        until_decided=a.until_decided,
        budget=a.budget,
        step=a.step,
        cap=a.cap,
        spending=a.spending,
        progress=not a.quiet,
        exclude=[x.strip() for x in a.exclude.split(",") if x.strip()],
    )
    print((Path(a.out) / "compare.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {a.out}/compare.json, {a.out}/compare.md, {a.out}/figures/frontier.png")
    return 0


@command(
    "experiment",
    help="every way of aligning one model, run and decided by one command (resumable), with an HTML decision report",
    description="Run every run an experiment config lists (`steertax run`, `align` and `merge` configs over one model) "
    "into OUT/runs/<name>, reusing finished folders and cells, then decide them with `steertax compare` on every shared "
    "helpfulness axis at the harmless rate: OUT/report.html, compare.json, compare.md, figures/, experiment.json.",
    args=[
        config_file("YAML file (default: the built-in 'experiment' on SmolLM2)"),
        out_folder("output folder: runs/<name>/, report.html, compare.json, compare.md, experiment.json, figures/"),
        print_default_config("the built-in 'experiment'"),
        quick("every run's quick version (a few minutes on a CPU)"),
    ],
)
def _cmd_experiment(a: argparse.Namespace) -> int:
    from steertax.runners.experiment import load_experiment_config, run_experiment

    if a.print_default_config:
        from importlib import resources

        print(resources.files("steertax").joinpath("configs").joinpath("experiment.yaml").read_text(encoding="utf-8"), end="")
        return 0
    if not a.out:
        raise SteertaxError("steertax experiment needs --out DIR (where the runs, the decision and its report go)")
    cfg = load_experiment_config(a.config)
    with _time_split(a.out, a.quiet):
        run_experiment(cfg, a.out, quick=a.quick, progress=not a.quiet)
    print((Path(a.out) / "compare.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {a.out}/report.html, {a.out}/compare.json, {a.out}/compare.md, {a.out}/experiment.json, {a.out}/runs/")
    return 0


@command("fit", help="refit the laws and rewrite summary.json and the report", args=[arg("dir", help=STUDY_DIR)])
def _cmd_fit(a: argparse.Namespace) -> int:
    from steertax.runners.study_summary import analyze

    summ = analyze(a.dir)
    print_fits(summ)
    eff = summ.get("efficient_strength") or {}
    if eff.get("ok"):
        print(f"efficient strength r* = {eff['r_star']:.2f} (helpfulness weight {eff['helpfulness_weight']})")
    else:
        print(f"efficient strength: {_no_r_star(eff)}")
    return 0


def _ci(v: dict[str, Any]) -> str:
    lo, hi = v.get("ci95") or (None, None)
    f = lambda x: "nan" if x is None else f"{x:.4g}"  # noqa: E731
    return f"{v['value']:.4g} [{f(lo)}, {f(hi)}]"


def print_fits(summ: dict[str, Any]) -> None:
    """Per task: the selected law with its parameters, the paper's law's standing and the local-law verdict."""
    from steertax.analysis.laws import paper_gap

    for name, t in summ["tasks"].items():
        f = t["fit"]
        ps = ", ".join(f"{k}={_ci(v)}" for k, v in (f.get("params") or {}).items())
        r2 = f.get("r2")
        print(f"{name:<24} {f.get('law') or '-':<26} {ps}  R2={'-' if r2 is None else f'{r2:.3f}'}")
        sel = f.get("selection") or {}
        if sel.get("paper_law") and sel["paper_law"] != f.get("law"):
            word = "as good" if sel.get("paper_law_consistent") else "worse"
            print(f"{'':<24} paper's law {sel['paper_law']}: {paper_gap(sel)} ({word} by AICc)")
        pt = f.get("paper_law_test") or {}
        if pt.get("verdict"):
            print(f"{'':<24} {pt['verdict']}")
    for name, b in ((summ.get("theory") or {}).get("bounds") or {}).items():
        print(f"{name:<24} theory bound {b['bound']}: {b['verdict']}")


@command("theory", help="estimate the theory's constants from logits, then refit and report", args=[arg("dir", help=STUDY_DIR)])
def _cmd_theory(a: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from steertax._util import atomic_write_json
    from steertax.config import from_dict, upgrade_resolved
    from steertax.interventions.steering.vectors import SteeringVector
    from steertax.models import load_model
    from steertax.runners.study import compute_theory
    from steertax.runners.study_summary import analyze

    d = Path(a.dir)
    if not (d / "config.resolved.yaml").is_file():
        raise SteertaxError(f"{d} has no config.resolved.yaml: is it a `steertax run` output folder?")
    resolved = yaml.safe_load((d / "config.resolved.yaml").read_text())
    cfg = from_dict(upgrade_resolved(resolved["config"]))
    model, tok = load_model(cfg.model, cfg.dtype, cfg.device)
    vec = SteeringVector.load(resolved["resolved"]["vector_file"])
    if cfg.vector.negate:
        vec = -vec
    vec = vec.select(cfg.vector.layers)
    th = compute_theory(cfg, model, tok, vec, resolved["resolved"]["strengths"])
    atomic_write_json(d / f"theory-{resolved['run_id']}.json", th)
    summ = analyze(d)
    t = summ["theory"]
    print(f"c = {t['c']:.4g}  m = cΔ = {t['m']:.4g}  Δ = {t['delta']:.4g}  σ = {t['sigma']:.4g}  B0 = {t.get('B0')}  p0 = {t.get('p0')}")
    for k, c in t["checks"].items():
        print(f"  {k:<11} {'holds' if c['holds'] else 'FAILS'}  {c['detail']}")
    return 0


@command(
    "tax",
    help="the alignment tax: a study's table at r* (DIR), or base vs aligned model on benchmarks (--base/--aligned)",
    description="With DIR (a `steertax run` folder): print its tax table at r* after refitting. With --base: score the "
    "base and the aligned model (another model with the same tokenizer, a peft adapter folder, or --vector/--strength "
    "for the base steered) on each benchmark; tax % = (base − aligned)/base·100 with a paired-bootstrap 95% CI, the "
    "mean tax, and the helpful (XSTest safe) and harmless (XSTest unsafe) rates judged from generations.",
    checks_own_outputs=True,  # --json and --markdown among all its problems at once
    args=[
        arg("dir", nargs="?", default=None, help=STUDY_DIR),
        arg("--base", help="the base model (hub id, folder, .gguf, built-in name)"),
        arg("--aligned", help="the aligned model, or a peft adapter folder of the base"),
        arg("--vector", help="instead of --aligned: a steering vector; the aligned model is the base steered at --strength"),
        arg("--strength", type=float, help="r_e for --vector"),
        arg("--from-study", default=None, help="instead of --aligned: a `steertax run` folder (its vector at its r*)"),
        arg(
            "--benchmarks",
            default=None,
            help="comma-separated tasks (default: the tasks declaring TAX_BENCHMARK: mmlu, humaneval, gsm8k, truthfulqa, bbq)",
        ),
        arg("--limit", type=int, default=None, help="items per benchmark (default: all)"),
        quick("16 items per benchmark and for the rates"),
        backend("where generations run (vllm: its own environment, make vllm) [hf]"),
        arg("--json", default=None, help="write the result as JSON", output="file"),
        arg("--markdown", default=None, help="write the table as markdown", output="file"),
    ],
)
def _cmd_tax(a: argparse.Namespace) -> int:
    if a.base is not None or a.aligned is not None or a.vector is not None or a.strength is not None or a.from_study is not None:
        return _cmd_tax_models(a)
    if a.dir is None:
        raise SteertaxError("steertax tax needs a study folder (steertax tax DIR) or models (steertax tax --base M --aligned A)")
    from steertax.runners.study_summary import analyze

    summ = analyze(a.dir)
    eff = summ["efficient_strength"]
    if not eff.get("ok") or summ.get("alignment_tax") is None:
        print(f"{_no_r_star(eff)}: no alignment tax")
        return 0
    print(f"r* = {eff.get('r_star')}" + (f" ({eff['note']})" if eff.get("note") else ""))
    print(f"{'benchmark':<24} {'metric':<10} {'items':<9} {'n':>5} {'base':>8} {'at r*':>8} {'tax %':>8}")
    notes = []
    for r in summ["alignment_tax"]:
        f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        print(
            f"{r['task']:<24} {r['metric']:<10} {r.get('items') or '-':<9} {r.get('n') if r.get('n') is not None else '-':>5} "
            f"{f(r['base']):>8} {f(r['at_r_star']):>8} {'-' if r['tax_percent'] is None else format(r['tax_percent'], '.1f'):>8}"
        )
        if r["tax_percent"] is None and r.get("tax_note") and r.get("axis") == "helpfulness":
            notes.append(f"  {r['task']}: {r['tax_note']}")
    print("held-out: the items r* was not chosen on; all: a task r* was not chosen on", *notes, sep="\n")
    return 0


def _cmd_tax_models(a: argparse.Namespace) -> int:
    import json

    from steertax.reports.tax import tax_markdown
    from steertax.runners.tax import TAX_BENCHMARKS, measure_alignment_tax

    limit = a.limit if a.limit is not None else (16 if a.quick else None)
    benches = list(TAX_BENCHMARKS) if a.benchmarks is None else [b.strip() for b in a.benchmarks.split(",") if b.strip()]
    vector, strength = _check_tax_inputs(a, limit, benches)  # every input, before any model loads
    res = measure_alignment_tax(
        a.base,
        a.aligned,
        vector=vector,
        strength=strength,
        benchmarks=benches,
        limit=limit,
        rates_limit=limit if limit is not None else 64,
        progress=not a.quiet,
        backend=a.backend,
    )
    md = tax_markdown(res)
    if a.json:
        from steertax._util import atomic_write_text

        atomic_write_text(a.json, json.dumps(res, indent=1))
    if a.markdown:
        from steertax._util import atomic_write_text

        atomic_write_text(a.markdown, md)
    print(md, end="")
    return 0


def _check_tax_inputs(a: argparse.Namespace, limit: int | None, benches: list[str]) -> tuple[str | None, float | None]:
    """Every problem with `steertax tax --base ...`'s inputs in one error, before any model loads; returns
    the vector and strength to measure (``--from-study``'s vector at its r*, else --vector/--strength)."""
    from steertax.errors import ConfigError
    from steertax.runners.preflight import output_problem, raise_problems
    from steertax.runners.tax import check_alignment_tax

    problems: list[SteertaxError] = []
    if a.dir is not None:
        problems.append(ConfigError(f"give either a study folder ({a.dir}) or --base/--aligned, not both"))
    vector, strength = a.vector, a.strength
    from_study_failed = False
    if a.from_study is not None:
        given = [f for f, v in (("--aligned", a.aligned), ("--vector", a.vector), ("--strength", a.strength)) if v is not None]
        if given:
            problems.append(ConfigError(f"--from-study gives the aligned model (its vector at its r*): drop {', '.join(given)}"))
        else:
            try:
                vector, strength = _study_vector_and_r_star(Path(a.from_study))
            except SteertaxError as e:
                problems.append(e)
                from_study_failed = True
    for flag, path in (("--json", a.json), ("--markdown", a.markdown)):
        if path is not None:
            err = output_problem(flag, path, folder=False)
            if err is not None:
                problems.append(err)
    if a.json is not None and a.markdown is not None and Path(a.json).absolute() == Path(a.markdown).absolute():
        problems.append(ConfigError(f"--json and --markdown are both {a.json}: give two files"))
    problems += check_alignment_tax(
        a.base,
        a.aligned,
        vector=vector,
        strength=strength,
        benchmarks=benches,
        limit=limit,
        rates_limit=limit if limit is not None else 64,
        backend=a.backend,
        require_aligned=not from_study_failed,
    )
    raise_problems(problems)
    return vector, strength


def _study_vector_and_r_star(d: Path) -> tuple[str, float]:
    import json

    from steertax.errors import DataError

    if not d.is_dir():
        what = "does not exist" if not d.exists() else "is a file"
        raise DataError(f"--from-study {d} {what}: give a finished `steertax run` output folder")
    summ = d / "summary.json"
    if not summ.is_file():
        raise DataError(f"--from-study {d} has no summary.json: give a finished `steertax run` folder to --from-study")
    try:
        s = json.loads(summ.read_text(encoding="utf-8"))
        eff = s.get("efficient_strength") or {}
        vector_file = s["vector"]["file"] if eff.get("ok") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(
            f"--from-study {d}: its summary.json is unreadable ({e.__class__.__name__}): refit it with `steertax fit {d}`"
        ) from None
    if not eff.get("ok"):
        raise DataError(
            f"--from-study {d} has no efficient strength r* ({eff.get('reason', 'not computed')}): pass --vector and --strength instead"
        )
    return str(vector_file), float(eff["r_star"])


@command(
    "judge",
    help="validate a judge against human labels (XSTest v2's 2,250 labelled answers by default)",
    description="Score a judge against human-labelled answers: per answering model, Cohen's κ of full refusal vs full "
    "compliance with a bootstrap 95% CI, precision and recall of refusal, the human partial refusals and a few "
    "disagreements. The rule judge was written on the tune half of XSTest's prompts of three models; report it on "
    "--split test and on the held-out models.",
    args=[
        arg("action", choices=["validate"], help="validate: score the judge on labelled answers"),
        arg(
            "--judge",
            default="rules",
            help="a registered judge (rules, paper_keyword, model, llama_guard, wildguard, harmbench, strongreject) [rules]",
        ),
        arg("--judge-model", default=None, help="the judge's model (model, strongreject: a chat model; classifiers: a hub id or folder)"),
        arg("--backend", choices=("hf", "vllm"), default=None, help="where a judge model runs (vllm: its own environment, make vllm) [hf]"),
        arg("--labels", default=None, help="a CSV/JSONL with prompt, answer, label (and group/model) [XSTest v2's human labels]"),
        arg("--split", default="all", choices=["all", "tune", "test"], help="XSTest prompts: all, the tune half or the test half [all]"),
        arg("--words", type=int, default=None, help="judge each answer cut to its first N words (the product's 24-32 tokens: ~20)"),
        arg("--limit", type=int, default=None, help="at most N answers per answering model (a seeded sample; for model judges)"),
        arg("--examples", type=int, default=3, help="disagreements shown per answering model [3]"),
        arg("--out", default=None, help="also write the result as JSON here", output="file"),
        SEED,
    ],
)
def _cmd_judge(a: argparse.Namespace) -> int:
    from steertax.judges import build_judge
    from steertax.judges.validate import read_labelled, validate_judge
    from steertax.reports.judge import validation_markdown

    spec: Any = a.judge if a.judge_model is None and a.backend is None else {"name": a.judge}
    if isinstance(spec, dict):
        spec.update({k: v for k, v in (("model", a.judge_model), ("backend", a.backend)) if v is not None})
    judge = build_judge(spec, "--judge")  # unknown names and options before anything loads
    judge.check()  # a judge model folder that is not a (chat) model
    if a.backend == "vllm":
        from steertax.vllm_backend import require_vllm

        require_vllm()
    if a.words is not None and a.words < 1:
        raise SteertaxError(f"--words {a.words}: give a positive number of words (e.g. 20)")
    if a.limit is not None and a.limit < 1:
        raise SteertaxError(f"--limit {a.limit}: give a positive number of answers per model")
    if a.out is not None and Path(a.out).is_dir():
        raise SteertaxError(f"--out {a.out} is a directory: give a file path like {Path(a.out) / 'validation.json'}")
    data = read_labelled(a.labels)
    t0 = time.perf_counter()
    res = validate_judge(judge, data, split=a.split, words=a.words, limit=a.limit, seed=a.seed, examples=a.examples)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(validation_markdown(res))
    if a.out is not None:
        from steertax._util import atomic_write_json

        atomic_write_json(a.out, res)
        print(f"wrote {a.out}")
    return 0


@command("info", help="describe a saved vector", args=[arg("vector")])
def _cmd_info(a: argparse.Namespace) -> int:
    from steertax.interventions.steering.vectors import SteeringVector

    print(SteeringVector.load(a.vector).summary())
    return 0


@command(
    "export",
    help="write a vector for llama.cpp (control-vector GGUF) or lm-evaluation-harness",
    description="Export a steertax vector. gguf: llama.cpp control vector (unit directions, + = aligned; "
    "`--control-vector-scaled FILE R` applies r_e = R). lm-eval: a `steered` .pt file at one "
    "strength (lm_eval --model steered --model_args pretrained=...,steer_path=FILE).",
    args=[
        arg("vector", help="a .safetensors vector from `steertax extract`"),
        arg("--format", required=True, choices=["gguf", "lm-eval"]),
        arg("--out", required=True, help="output file (.gguf or .pt)", output="file"),
        VECTOR_LAYERS,
        arg("--strength", default=None, help="lm-eval: r_e written into the file (required for lm-eval)"),
        arg("--action", default="add", choices=["add", "clamp"], help="lm-eval: add r·v̂, or clamp the v̂ component to r [add]"),
        arg("--model", default=None, help="lm-eval: read hookpoint names from this model [else --hookpoint-template]"),
        arg("--hookpoint-template", default="layers.{}", help="lm-eval hookpoint without --model [layers.{}]"),
        arg("--negate", action="store_true", help="swap the poles before exporting"),
    ],
)
def _cmd_export(a: argparse.Namespace) -> int:
    from steertax.interventions.steering.interop import export_gguf, export_lm_eval
    from steertax.interventions.steering.vectors import SteeringVector

    vec = SteeringVector.load(a.vector)
    if a.layers is not None:
        vec = vec.select(a.layers)
    if a.negate:
        vec = -vec
    if a.format == "gguf":
        if a.strength is not None:
            raise SteertaxError(
                "--strength is for lm-eval files; a GGUF control vector takes its scale at run time "
                "(llama.cpp --control-vector-scaled FILE R)"
            )
        path, layers = export_gguf(vec, a.out)
        from steertax._util import format_layers

        print(f"wrote {path}: control vector, layers {format_layers(layers)}, unit directions (+ = {vec.aligned_pole})")
        print(f"use: llama-cli -m MODEL.gguf --control-vector-scaled {path} R   (adds r_e = R at each layer)")
        return 0
    if a.strength is None:
        raise SteertaxError("lm-eval export needs --strength R (the r_e written into the file)")
    from steertax.interventions.steering.hooks import check_strength

    r = float(check_strength(a.strength))
    model = None
    if a.model:
        from steertax.models import load_model

        model, _ = load_model(a.model)
    path, info = export_lm_eval(vec, a.out, r, model=model, hookpoint_template=a.hookpoint_template, action=a.action)
    print(f"wrote {path}: hookpoints {', '.join(info['hookpoints'])}, coefficient {r:g}, action {a.action}")
    print(f"use: lm_eval --model steered --model_args pretrained=MODEL,steer_path={path} --tasks TASK")
    return 0


@command(
    "import",
    help="read a llama.cpp control-vector GGUF (repeng, cvector-generator, EasySteer, steertax)",
    description="Import a control-vector GGUF as a steertax vector (directions rescaled to unit norm; "
    "the file's norms are kept in the provenance).",
    args=[
        arg("file", help="a .gguf control vector"),
        arg("--out", required=True, help="output .safetensors path", output="file"),
        arg("--model", default=None, help="bind the vector to this model (checks hidden size and layers)"),
        arg("--negate", action="store_true", help="flip the sign (when the file's + is the misaligned pole)"),
        arg("--aligned-pole", default=None, help="what + means, in words"),
        arg("--misaligned-pole", default=None, help="what - means, in words"),
    ],
)
def _cmd_import(a: argparse.Namespace) -> int:
    from steertax.interventions.steering.interop import import_gguf

    out = Path(a.out)
    if out.exists() and out.is_dir():
        raise SteertaxError(f"--out {out} is a directory: give a file path like {out / 'vector.safetensors'}")
    model = None
    if a.model:
        from steertax.models import load_model

        model, _ = load_model(a.model)
    vec = import_gguf(a.file, model=model, negate=a.negate, aligned_pole=a.aligned_pole, misaligned_pole=a.misaligned_pole)
    path = vec.save(out)
    print(vec.summary())
    print(f"saved {path}")
    return 0


COMMANDS: tuple[Command, ...] = (
    _cmd_extract,
    _cmd_condition,
    _cmd_generate,
    _cmd_eval,
    _cmd_tasks,
    _cmd_run,
    _cmd_align,
    _cmd_merge,
    _cmd_compare,
    _cmd_experiment,
    _cmd_fit,
    _cmd_theory,
    _cmd_tax,
    _cmd_judge,
    _cmd_info,
    _cmd_export,
    _cmd_import,
)


def _parser() -> argparse.ArgumentParser:
    """The command line: --debug and --quiet, then one subcommand per entry of COMMANDS."""
    ap = _Parser(
        prog="steertax",
        description="Steer language models and measure what it buys (alignment) and costs (helpfulness).",
    )
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=_Parser)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.description)
        for x in c.args:
            x.add_to(p)
    return ap


def _run_command(c: Command, a: argparse.Namespace) -> int:
    """Check every output path the command declares before any work, hold its output folder's lock while it
    runs (one writer per run folder), then run it."""
    outs: list[tuple[Arg, str]] = [(x, str(getattr(a, x.dest))) for x in c.args if x.output and getattr(a, x.dest, None) is not None]
    for x, v in outs:
        if not c.checks_own_outputs:
            check_output(v, x.names[0], str(x.output))
    with contextlib.ExitStack() as stack:
        for x, v in outs:
            if x.output == "folder":
                stack.enter_context(locked_folder(v, x.names[0]))
        return c.run(a)


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if not a.quiet else logging.WARNING, format="%(message)s")
    if a.quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except Exception:  # pragma: no cover
            pass
    try:
        return _run_command({c.name: c for c in COMMANDS}[a.cmd], a)
    except (SteertaxError, OSError, ValueError, sqlite3.Error) as e:
        # bad input (ours), unreadable/unwritable files (a full disk too), and values the libraries below refuse
        if a.debug:
            raise
        if (line := storage_error(e)) is not None:
            print(f"steertax: error: {line}", file=sys.stderr)
            return 2
        if isinstance(e, sqlite3.Error):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        if not isinstance(e, SteertaxError):
            msg = f"{msg} ({e.__class__.__name__}; rerun with --debug for the traceback)"
        print(f"steertax: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("steertax: interrupted (finished work is saved; rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless --debug
        if a.debug:
            raise
        print(
            f"steertax: internal error: {e.__class__.__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
            "(rerun with --debug for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
