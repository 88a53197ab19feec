"""Build the Cython extensions of the hot modules (kvcache/compiled.py lists them).

Metadata lives in pyproject.toml; this file only adds the extension modules.
They are built when Cython and a C compiler are present and
KVCACHE_NO_EXTENSIONS is unset (or empty); otherwise, or when compiling
fails, the package installs as pure Python (every module runs uncompiled;
kvcache warns at startup). `pip install -e .` builds them in place, beside
their `.py` sources.

KVCACHE_REQUIRE_EXTENSIONS=1 turns that fallback into an error: a missing
Cython or C compiler, or any module that fails to compile, fails the build
(the Dockerfile's builder stage sets it, so an image never ships pure Python
by accident).
"""

from __future__ import annotations

import ast
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))
REQUIRED = bool(os.environ.get("KVCACHE_REQUIRE_EXTENSIONS"))  # no pure-Python fallback


def hot_modules() -> list[str]:
    """MODULES from kvcache/compiled.py, read without importing the package."""
    with open(os.path.join(ROOT, "kvcache", "compiled.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODULES":
            return list(ast.literal_eval(node.value))
    raise RuntimeError("kvcache/compiled.py defines no MODULES")


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python when a module fails to compile."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers: install pure Python
            _fall_back(exc, f"building the extensions failed ({exc})", "installing pure Python")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _fall_back(exc, f"{ext.name} failed to compile ({exc})", "it stays pure Python")


def _warn(message: str) -> None:
    print(f"kvcache setup: {message}", file=sys.stderr)


def _fall_back(exc: BaseException, failure: str, outcome: str) -> None:
    """Warn that part of the build goes pure Python; raise exc under KVCACHE_REQUIRE_EXTENSIONS."""
    if REQUIRED:
        _warn(f"{failure}; KVCACHE_REQUIRE_EXTENSIONS is set: failing the build")
        raise exc
    _warn(f"{failure}; {outcome}")


def extensions() -> list:
    """The Cython extensions, or [] for a pure-Python build."""
    if os.environ.get("KVCACHE_NO_EXTENSIONS"):
        if REQUIRED:
            raise SystemExit(
                "kvcache setup: KVCACHE_NO_EXTENSIONS and KVCACHE_REQUIRE_EXTENSIONS are both set"
            )
        _warn("KVCACHE_NO_EXTENSIONS is set: pure Python")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _fall_back(exc, "Cython is missing", "pure Python")
        return []
    from Cython.Compiler.Errors import CompileError

    built = []
    for module in hot_modules():
        try:
            built += cythonize(
                [module],
                compiler_directives={"language_level": 3},
                quiet=True,
            )
        except CompileError as exc:  # a bug of ours: KVCACHE_EXPECT_COMPILED tests catch it
            _fall_back(exc, f"Cython could not compile {module}", "it stays pure Python")
    return built


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
