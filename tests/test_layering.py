"""`make lint` enforces the layering: an import circle between steertax's modules, or a function-level import
of anything but the listed heavy optional dependencies, fails it (shown on fixtures; the package passes)."""
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
