"""Every command the project ships answers --help: exit 0 and a usage line naming it.

Spec (issue 10): kvcache and farserver (console scripts and `python -m`),
every module of ours that runs as `python -m X` (found by its
`if __name__ == "__main__":` or a package's `__main__.py`, so a new one is
covered without being listed here), and the subcommands of those that have
them. Each runs as its own process from the venv, as a user would type it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)  # the venv's console scripts
PACKAGES = ("kvcache", "farserver", "loadtest", "protocol", "runtime")
SCRIPTS = {"kvcache": "kvcache", "farserver": "farserver"}  # pyproject's [project.scripts]
SUBCOMMANDS = {"loadtest.webfrontend": ("run", "sweep")}


def _runnable_modules() -> list[str]:
    """Dotted names of our modules that `python -m` runs."""
    found = []
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            dotted = os.path.relpath(dirpath, ROOT).replace(os.sep, ".")
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                if name == "__main__.py":
                    found.append(dotted)
                    continue
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    if 'if __name__ == "__main__":' in f.read():
                        found.append(f"{dotted}.{name[:-3]}")
    return sorted(found)


MODULES = _runnable_modules()
COMMANDS = (
    [[os.path.join(BIN, script)] for script in SCRIPTS]
    + [[sys.executable, "-m", module] for module in MODULES]
    + [[sys.executable, "-m", m, sub] for m, subs in SUBCOMMANDS.items() for sub in subs]
)


def _name(argv: list[str]) -> str:
    return " ".join(["python" if a == sys.executable else os.path.basename(a) for a in argv])


def test_the_modules_found_include_the_known_ones():
    assert {"kvcache", "farserver", "kvcache.healthcheck", "loadtest.webfrontend"} <= set(MODULES)
    assert {"loadtest.bench_memcached", "loadtest.rss_fill"} <= set(MODULES)
    assert set(SUBCOMMANDS) <= set(MODULES)


@pytest.mark.parametrize("argv", COMMANDS, ids=_name)
def test_help_exits_0_with_a_usage_line(argv):
    done = subprocess.run([*argv, "--help"], capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
    module = argv[2] if len(argv) > 2 else os.path.basename(argv[0])
    prog = SCRIPTS.get(module, f"python -m {module}")
    usage = f"usage: {' '.join([prog, *argv[3:]])} "
    assert done.stdout.decode().startswith(usage), done.stdout.decode()[:300]
