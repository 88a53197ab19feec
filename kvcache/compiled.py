"""Which modules Cython compiles, and whether this process runs them compiled.

The hot modules stay valid Python: Cython compiles them in its pure-Python
mode (annotations and `cython.*` declarations in the `.py`, a `.pxd` of the
same name beside it for C types) when `pip install` finds a C compiler, as
uvloop and asyncpg compile their cores. `KVCACHE_NO_EXTENSIONS=1` at build
time gives the pure-Python package. setup.py reads MODULES from this file
(without importing it); kvcache warns at startup when it runs uncompiled and
`stats settings` says `compiled yes|no`.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["MODULES", "compiled", "older_than_source", "stale", "status"]

# Source paths, relative to the project root, of the modules Cython compiles.
MODULES = (
    "runtime/pointer.py",
    "runtime/hugepages.py",
    "runtime/heap.py",
    "runtime/scope.py",
    "runtime/slotindex.py",
    "runtime/structures.py",
    "runtime/cuckoo.py",
    "runtime/hashtable.py",
    "runtime/evacuator.py",
    "runtime/hub.py",
    "runtime/manager.py",
    "runtime/farclient.py",
    "runtime/placement.py",
    "protocol/far/frames.py",
    "protocol/far/bodies.py",
    "protocol/memcache/numbers.py",
    "protocol/memcache/requests.py",
    "protocol/memcache/replies.py",
    "protocol/memcache/text.py",
    "protocol/memcache/meta.py",
    "protocol/memcache/parser.py",
    "kvcache/dispatcher.py",
    "kvcache/server.py",
)


def _dotted(path: str) -> str:
    return path[: -len(".py")].replace("/", ".")


def status() -> dict[str, bool]:
    """Per hot module (dotted name): True if the imported module is the compiled one."""
    out = {}
    for path in MODULES:
        module = importlib.import_module(_dotted(path))
        out[_dotted(path)] = not str(getattr(module, "__file__", "")).endswith(".py")
    return out


def stale() -> list[str]:
    """Extensions built in place that are older than their .py or .pxd: their paths."""
    out = []
    for path in MODULES:
        module = importlib.import_module(_dotted(path))
        ext = str(getattr(module, "__file__", ""))
        if not ext.endswith(".py") and older_than_source(ext, path):
            out.append(ext)
    return out


def older_than_source(ext: str, path: str) -> bool:
    """Whether ext, built in place from path (as in MODULES), is older than its .py or .pxd.

    Only an extension inside a source tree (setup.py at the root that path is relative to)
    can run stale code; an installed wheel's files carry the times pip unpacked them, in no
    useful order, so an extension outside a source tree is never stale.
    """
    root = os.path.dirname(ext)
    for _ in range(path.count("/")):
        root = os.path.dirname(root)
    if not os.path.exists(os.path.join(root, "setup.py")):
        return False
    built = os.path.getmtime(ext)
    base = os.path.join(os.path.dirname(ext), os.path.basename(path)[: -len(".py")])
    sources = (base + ".py", base + ".pxd")
    return any(os.path.exists(s) and os.path.getmtime(s) > built for s in sources)


def compiled() -> bool:
    """True if every hot module runs compiled."""
    return all(status().values())
