"""setup.py's build switches: the pure-Python fallback and KVCACHE_REQUIRE_EXTENSIONS.

Spec (issue 11): a hot module that fails to compile (in Cython or in the C
compiler) stays pure Python and the build goes on, unless
KVCACHE_REQUIRE_EXTENSIONS is set: then the build fails (the Dockerfile's
builder relies on it), and set together with KVCACHE_NO_EXTENSIONS it is
refused. Each case runs `setup.py build_ext --inplace` on a one-module copy of
the project in a temporary directory (this setup.py, pyproject.toml,
README.md, and a kvcache/compiled.py listing that one module), so nothing of
the real tree is built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOOD = "def double(x: int) -> int:\n    return 2 * x\n"
BROKEN = "def double(x: int) -> int:\n    return 2 *\n"  # Cython rejects it (a syntax error)
FAILING = "KVCACHE_REQUIRE_EXTENSIONS is set: failing the build"


def _project(tmp_path: Path, source: str) -> Path:
    """A copy of the project whose only hot module is kvcache/hot.py with source."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    package = tmp_path / "kvcache"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "compiled.py").write_text('MODULES = ("kvcache/hot.py",)\n')
    (package / "hot.py").write_text(source)
    return tmp_path


def _build(project: Path, **env: str) -> subprocess.CompletedProcess:
    """setup.py build_ext --inplace in project, with env over ours less any KVCACHE_ variable."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")} | env
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _extensions(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "kvcache").glob("hot.*.so"))


def test_a_required_build_compiles_the_module(tmp_path):
    project = _project(tmp_path, GOOD)
    done = _build(project, KVCACHE_REQUIRE_EXTENSIONS="1")
    assert done.returncode == 0, done.stderr
    assert len(_extensions(project)) == 1


def test_a_module_cython_rejects_stays_pure_unless_required(tmp_path):
    project = _project(tmp_path, BROKEN)
    done = _build(project)
    assert done.returncode == 0, done.stderr
    assert "Cython could not compile kvcache/hot.py; it stays pure Python" in done.stderr
    required = _build(project, KVCACHE_REQUIRE_EXTENSIONS="1")
    assert required.returncode != 0
    assert f"Cython could not compile kvcache/hot.py; {FAILING}" in required.stderr
    assert _extensions(project) == []


def test_a_c_compiler_failure_stays_pure_unless_required(tmp_path):
    project = _project(tmp_path, GOOD)
    done = _build(project, CC="false")  # a compiler that fails every file
    assert done.returncode == 0, done.stderr
    assert "kvcache.hot failed to compile" in done.stderr
    assert "it stays pure Python" in done.stderr
    required = _build(project, CC="false", KVCACHE_REQUIRE_EXTENSIONS="1")
    assert required.returncode != 0
    assert FAILING in required.stderr
    assert _extensions(project) == []


def test_required_and_no_extensions_together_are_refused(tmp_path):
    project = _project(tmp_path, GOOD)
    done = _build(project, KVCACHE_NO_EXTENSIONS="1", KVCACHE_REQUIRE_EXTENSIONS="1")
    assert done.returncode != 0
    assert "KVCACHE_NO_EXTENSIONS and KVCACHE_REQUIRE_EXTENSIONS are both set" in done.stderr
    assert _build(project, KVCACHE_NO_EXTENSIONS="1").returncode == 0
    assert _extensions(project) == []
