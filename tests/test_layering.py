"""`make lint` enforces the layering: an import circle between steertax's modules, an import up the layers or
of another module's private name, or a function-level import of anything but the listed heavy optional
dependencies, fails it (shown on fixtures; the package passes)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "requirements" / "check_imports.py"
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent))


def _check(pkg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(pkg)], capture_output=True, text=True)


def test_the_package_has_no_import_circle():
    r = _check(ROOT / "src" / "steertax")
    assert r.returncode == 0, r.stdout


def test_a_new_import_circle_fails(tmp_path):
    pkg = tmp_path / "steertax"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("from .sub.c import g\n\ndef f():\n    from .a import nothing  # a function-level import is no edge\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n")
    assert _check(pkg).returncode == 0  # TYPE_CHECKING and function-level imports are not circles
    (pkg / "sub" / "c.py").write_text("from .. import a\n")
    r = _check(pkg)
    assert r.returncode == 1 and "import circle" in r.stdout and "steertax.a" in r.stdout and "steertax.sub.c" in r.stdout
    # a package whose __init__ imports a module that imports the package's sibling through it
    (pkg / "sub" / "c.py").write_text("")
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "b.py").write_text("from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from ..a import f\n")
    r = _check(pkg)
    assert r.returncode == 1 and "steertax.sub" in r.stdout


@pytest.mark.skipif(RUFF is None, reason="ruff is installed by `make install`")
def test_an_unlisted_function_level_import_fails_lint(tmp_path):
    mod = ROOT / "src" / "steertax" / "_lint_fixture_tmp.py"
    try:
        mod.write_text('"""x"""\n\n\ndef f() -> object:\n    import json\n\n    return json\n\n\n'
                       'def g() -> object:\n    import peft\n\n    return peft\n')
        r = subprocess.run([RUFF, "check", "--no-cache", "--output-format", "concise", str(mod)], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 1 and "PLC0415" in r.stdout
        assert ":5:" in r.stdout and ":11:" not in r.stdout  # json is flagged; peft (a listed heavy optional) is allowed
    finally:
        mod.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the layers (requirements/check_layers.py)

LAYERS = ROOT / "requirements" / "check_layers.py"


def _layers(pkg: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LAYERS), *flags, str(pkg)], capture_output=True, text=True)


def test_the_package_keeps_its_layers():
    r = _layers(ROOT / "src" / "steertax", "--require-layers")
    assert r.returncode == 0, r.stdout


def test_a_private_name_imported_across_modules_fails(tmp_path):
    pkg = tmp_path / "steertax"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_util.py").write_text("__all__ = ['helper']\n\n\ndef helper():\n    pass\n\n\ndef _secret():\n    pass\n")
    (pkg / "models.py").write_text("from steertax import _util\nfrom steertax._util import __all__, helper\n\n_util.helper()\n")
    assert _layers(pkg).returncode == 0  # a private *module* is shared on purpose; dunder names are public
    (pkg / "models.py").write_text("import json\nfrom steertax._util import _secret, helper\n")
    r = _layers(pkg)
    assert r.returncode == 1 and "models.py:2: imports the private name _secret of steertax._util" in r.stdout
    (pkg / "models.py").write_text("from steertax import _util\n\n\ndef f():\n    return _util._secret()\n")
    r = _layers(pkg)  # reaching it through the imported module is the same thing
    assert r.returncode == 1 and "models.py:5: uses the private name _secret of steertax._util" in r.stdout


def test_an_import_up_the_layers_fails(tmp_path):
    pkg = tmp_path / "steertax"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from steertax.models import load\n")  # the top __init__ re-exports: exempt
    (pkg / "models.py").write_text("from steertax.data.readers import read\n\n\ndef load():\n    pass\n")
    (pkg / "data" / "__init__.py").write_text("from steertax.data.readers import read\n")
    (pkg / "data" / "readers.py").write_text("def read():\n    pass\n")
    (pkg / "data" / "loaders.py").write_text("from steertax.data.readers import read\n")
    assert _layers(pkg, "--require-layers").returncode == 0  # models imports data: down the layers
    (pkg / "data" / "readers.py").write_text("def read():\n    from steertax.models import load  # function-level counts too\n")
    r = _layers(pkg)
    assert r.returncode == 1 and "readers.py:2: from steertax.models import load runs up the layers" in r.stdout
    assert "layer 'data'" in r.stdout and "in 'models'" in r.stdout
    (pkg / "data" / "readers.py").write_text("def read():\n    pass\n")
    (pkg / "data" / "loaders.py").write_text("from steertax.data import read\n")  # the own package's __init__: upward
    r = _layers(pkg)
    assert r.returncode == 1 and "loaders.py:1: imports read from steertax.data's __init__" in r.stdout
    assert "import it from steertax.data.readers" in r.stdout
    (pkg / "data" / "loaders.py").write_text("from steertax import load\n")  # and the top package's
    r = _layers(pkg)
    assert r.returncode == 1 and "loaders.py:1: imports load from steertax's __init__" in r.stdout
    (pkg / "data" / "loaders.py").write_text("")
    (pkg / "plugins.py").write_text("")  # a module LAYERS does not place
    assert _layers(pkg).returncode == 0
    r = _layers(pkg, "--require-layers")
    assert r.returncode == 1 and "steertax.plugins has no layer" in r.stdout
