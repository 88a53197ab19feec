"""kvcache.compiled: which hot modules run compiled, and which extensions are stale.

Spec: an extension built in place in a source tree (setup.py at its root) is
stale when its .py or .pxd is newer, and kvcache warns about it at startup;
an extension installed from a wheel (no setup.py above it) is never stale,
whatever order pip unpacked its files in (issue 11: the Docker image warned
about all 21).
"""

from __future__ import annotations

import os

from kvcache import compiled

SO = ".cpython-311-x86_64-linux-gnu.so"


def _tree(root, path: str, *, setup: bool) -> str:
    """path's .py and its extension under root, the .py written after the extension."""
    base = os.path.join(root, path[: -len(".py")])
    os.makedirs(os.path.dirname(base), exist_ok=True)
    for name in (base + SO, base + ".py"):
        with open(name, "w") as f:
            f.write("")
    os.utime(base + SO, (1_000_000, 1_000_000))
    os.utime(base + ".py", (2_000_000, 2_000_000))
    if setup:
        open(os.path.join(root, "setup.py"), "w").close()
    return base + SO


def test_in_a_source_tree_an_extension_older_than_its_py_is_stale(tmp_path):
    for path in ("runtime/heap.py", "protocol/far/frames.py"):
        ext = _tree(tmp_path, path, setup=True)
        assert compiled.older_than_source(ext, path)
        os.utime(ext, (3_000_000, 3_000_000))
        assert not compiled.older_than_source(ext, path)


def test_a_newer_pxd_makes_it_stale_too(tmp_path):
    ext = _tree(tmp_path, "runtime/heap.py", setup=True)
    os.utime(ext, (3_000_000, 3_000_000))
    pxd = os.path.join(tmp_path, "runtime", "heap.pxd")
    open(pxd, "w").close()
    os.utime(pxd, (4_000_000, 4_000_000))
    assert compiled.older_than_source(ext, "runtime/heap.py")


def test_an_installed_extension_is_never_stale(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for path in ("runtime/heap.py", "protocol/far/frames.py"):
        ext = _tree(site, path, setup=False)  # the .py unpacked after the extension
        assert not compiled.older_than_source(ext, path)


def test_status_names_every_hot_module():
    assert set(compiled.status()) == {p[:-3].replace("/", ".") for p in compiled.MODULES}
