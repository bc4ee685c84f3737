"""The import layering of a package, checked statically (part of `make lint`).

Fails (exit 1, one line per problem) when the package's modules import each other in a circle: every
module-level import of a first-party module (``from . import x``, ``from .a import b``, ``import pkg.a``),
``if TYPE_CHECKING:`` blocks excluded, is an edge; any strongly connected component of more than one
module, or a module importing itself, is reported with its cycle. Importing a package runs its
``__init__``, so ``from .a.b import c`` is an edge to ``a`` and to ``a.b`` (but a submodule's import of a
sibling is no edge to its own package, which is already being imported).

The order of the layers and private names across modules are requirements/check_layers.py's job.

Function-level imports are ruff's job (PLC0415, with the heavy optional dependencies listed under
``banned-module-level-imports`` in pyproject.toml and the CLI entry point allowed per file).

    python requirements/check_imports.py src/steertax
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []

    def walk(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                for h in node.handlers:
                    walk(h.body)
                walk(node.orelse)
                walk(node.finalbody)

    walk(tree.body)
    return out


def graph(root: Path) -> dict[str, set[str]]:
    pkg = root.name
    files = {module_name(root, p): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}

    def add(src: str, target: str) -> None:
        parts = target.split(".")
        for k in range(2, len(parts) + 1):  # importing a.b.c runs a.b's __init__ too (unless a.b is src's own package)
            t = ".".join(parts[:k])
            if t in files and t != src and not src.startswith(t + "."):
                edges[src].add(t)

    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == pkg:
                        add(mod, a.name)
                continue
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
                if target.split(".")[0] != pkg:
                    continue
            add(mod, target)
            for a in node.names:  # `from . import x` / `from .a import b` where b is a module
                add(mod, f"{target}.{a.name}")
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            strong(v)
    out = []
    for comp in comps:
        members = set(comp)
        path, seen = [comp[0]], {comp[0]}
        while True:  # walk inside the component until a module repeats: one concrete cycle
            nxt = sorted(w for w in edges[path[-1]] if w in members)
            w = next((x for x in nxt if x == comp[0]), None) or next((x for x in nxt if x not in seen), nxt[0])
            if w in seen:
                path = path[path.index(w) :] + [w]
                break
            path.append(w)
            seen.add(w)
        out.append(path)
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "src/steertax").resolve()
    found = cycles(graph(root))
    for c in found:
        print(f"import circle in {root.name}: " + " -> ".join(c) + "  (move the shared code into a module both can import)")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
