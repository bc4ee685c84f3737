"""The layers of a package, checked statically (part of `make lint`, beside check_imports.py's import circles).

Fails (exit 1, one ``path:line: ...`` line per problem) on

1. an import that runs up the layers. ``LAYERS`` below is the one place that orders the package's modules,
   lowest first: a module may import modules of its own layer and of the layers below it, never above.
   Importing a name from a package's ``__init__`` from inside that package (``from steertax import __version__``
   in any steertax module, ``from steertax.data import read_csv`` in steertax.data.loaders) runs up too: the
   ``__init__`` imports the package's modules, the importer's siblings above it among them; import the name
   from the module that defines it. The package's top ``__init__`` is exempt (re-exporting is its job).
2. a module importing another module's private name: ``from steertax.a import _helper``, or ``a._helper``
   through an imported module ``a``. Make the name public instead. A private *module* (``steertax._util``)
   is meant to be shared inside the package and may be imported; dunder names (``__version__``) are public.

Every import counts: module-level, function-level and ``if TYPE_CHECKING:`` ones (a type-only import is a
dependency too). With ``--require-layers``, every module must have a layer (a new top-level module or package
is added to ``LAYERS`` where it belongs).

    python requirements/check_layers.py [--require-layers] src/steertax
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_imports import module_name  # noqa: E402

# Lowest first; each entry names modules or packages relative to the package root (a dotted entry, e.g.
# "interventions.merge", would give a subpackage a layer of its own: the longest matching entry wins).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("_util", "_faults", "_version", "errors", "timing", "params", "outputs")),
    ("data", ("data", "store", "manifest")),
    ("models", ("models", "vllm_backend")),
    ("interventions", ("interventions",)),
    ("scoring", ("scoring", "generation")),
    ("judges", ("judges",)),
    ("tasks", ("tasks", "training")),
    ("analysis", ("analysis",)),
    ("config", ("config", "executor_config")),
    ("reports", ("reports",)),
    ("runners", ("runners",)),
    ("cli", ("cli",)),
]


def layer_of(pkg: str, mod: str) -> tuple[int, str] | None:
    """(index, name) of ``mod``'s layer: that of the longest entry of LAYERS that is ``mod`` or a package above it."""
    rel = mod[len(pkg) + 1 :] if mod.startswith(pkg + ".") else ""
    best: tuple[int, int, str] | None = None  # (entry length, index, name)
    for k, (name, entries) in enumerate(LAYERS):
        for e in entries:
            if rel == e or rel.startswith(e + "."):
                if best is None or len(e) > best[0]:
                    best = (len(e), k, name)
    return None if best is None else (best[1], best[2])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _source_of(init: Path, pkg_mod: str, name: str) -> str | None:
    """The module a package's ``__init__`` takes ``name`` from (``from .x import name``), if it re-exports it."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            if node.level:
                return ".".join(pkg_mod.split(".")[: len(pkg_mod.split(".")) - (node.level - 1)] + ([node.module] if node.module else []))
            return node.module
    return None


class _Module:
    """The checks of one module ``mod`` (file ``path``) of the package, appending to ``out``."""

    def __init__(self, pkg: str, files: dict[str, Path], mod: str, out: list[tuple[Path, int, str]]) -> None:
        self.pkg, self.files, self.mod, self.out = pkg, files, mod, out
        self.path = files[mod]
        self.layer = layer_of(pkg, mod)
        self.bound: dict[str, str] = {}  # local name -> the first-party module it is bound to

    def report(self, line: int, msg: str) -> None:
        self.out.append((self.path, line, msg))

    def upward(self, line: int, target: str, what: str) -> None:
        theirs = layer_of(self.pkg, target)
        if self.mod != self.pkg and self.layer is not None and theirs is not None and theirs[0] > self.layer[0]:
            self.report(line, f"{what} runs up the layers: {self.mod} is in layer {self.layer[1]!r}, {target} in {theirs[1]!r} (LAYERS)")

    def from_init(self, line: int, target: str, name: str) -> bool:
        """Report ``name`` taken from the ``__init__`` of a package this module is inside of."""
        if self.mod == self.pkg or not (self.files[target].name == "__init__.py" and self.mod.startswith(target + ".")):
            return False
        src = _source_of(self.files[target], target, name)
        fix = f"import it from {src}" if src else "import it from the module that defines it"
        self.report(line, f"imports {name} from {target}'s __init__ from inside {target}: that runs up the layers; {fix}")
        return True

    def imports(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name.split(".")[0] != self.pkg or a.name not in self.files:
                continue
            if a.name == self.pkg:
                self.from_init(node.lineno, self.pkg, self.pkg)
            else:
                self.upward(node.lineno, a.name, f"import {a.name}")
            self.bound[a.asname or self.pkg] = a.name if a.asname else self.pkg

    def imports_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.mod.split(".") if self.path.name == "__init__.py" else self.mod.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target.split(".")[0] != self.pkg or target not in self.files:
            return
        for a in node.names:
            sub = f"{target}.{a.name}"
            if sub in self.files:  # a module (a private module may be shared)
                self.upward(node.lineno, sub, f"from {target} import {a.name}")
                self.bound[a.asname or a.name] = sub
                continue
            if _private(a.name) and target != self.mod:
                self.report(node.lineno, f"imports the private name {a.name} of {target}: make it public there")
            if not self.from_init(node.lineno, target, a.name):
                self.upward(node.lineno, target, f"from {target} import {a.name}")

    def attribute(self, node: ast.Attribute) -> None:
        """A private name reached through an imported module: ``acts._helper``."""
        parts = _dotted(node)
        if isinstance(node.ctx, ast.Store) or not parts or parts[0] not in self.bound:
            return
        full = self.bound[parts[0]].split(".") + parts[1:]
        for k in range(len(full) - 1, 0, -1):
            owner, name = ".".join(full[:k]), full[k]
            if owner in self.files and f"{owner}.{name}" not in self.files:
                if _private(name) and owner != self.mod and k == len(full) - 1:
                    self.report(node.lineno, f"uses the private name {name} of {owner}: make it public there")
                return


def violations(root: Path, require_layers: bool = False) -> list[tuple[Path, int, str]]:
    pkg = root.name
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    out: list[tuple[Path, int, str]] = []
    for mod, path in files.items():
        m = _Module(pkg, files, mod, out)
        if require_layers and m.layer is None and mod != pkg:
            m.report(1, f"{mod} has no layer: add it to LAYERS in requirements/check_layers.py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                m.imports(node)
            elif isinstance(node, ast.ImportFrom):
                m.imports_from(node)
        for node in ast.walk(tree):  # once every import has bound its names
            if isinstance(node, ast.Attribute):
                m.attribute(node)
    unique = sorted(set(out), key=lambda v: (str(v[0]), v[1], v[2]))
    return unique


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    root = Path(args[0] if args else "src/steertax").resolve()
    found = violations(root, require_layers="--require-layers" in argv)
    for path, line, msg in found:
        print(f"{os.path.relpath(path)}:{line}: {msg}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
